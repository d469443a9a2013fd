"""Hour histograms where a zone's offset is not a whole hour or its DST shift is not one hour
(Pacific/Chatham +12:45/+13:45, Australia/Lord_Howe +10:30/+11:00), on every store, against an
oracle that knows nothing of eventsapi.windows: every minute of the range gets the key (local
date, local hour, UTC offset), and a window is a maximal run of one key — a local clock hour,
and a change of offset starts a new one. So every local hour that exists has its window,
including the partial hour after a spring-forward and the repeated part after a fall-back."""

from __future__ import annotations

import math
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from support import Api

MINUTE = 60_000


def transitions(tz: ZoneInfo, now_ms: int, days: int) -> list[int]:
    """The instants (ms) the zone's offset changed within the last `days` days."""
    out, step = [], 15 * MINUTE
    t = (now_ms - days * 86_400_000) // MINUTE * MINUTE
    offset = datetime.fromtimestamp(t / 1000, tz).utcoffset()
    while t < now_ms:
        nxt = datetime.fromtimestamp((t + step) / 1000, tz).utcoffset()
        if nxt != offset:
            lo, hi = t, t + step  # the first minute with the new offset
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) // 2 // MINUTE * MINUTE
                lo, hi = (mid, hi) if datetime.fromtimestamp(mid / 1000, tz).utcoffset() == offset else (lo, mid)
            out.append(hi)
            offset = nxt
        t += step
    return out


def oracle(tz: ZoneInfo, first_ms: int, last_ms: int, events: list[int]) -> list[list[int]]:
    """[[window start, count]] for the minutes first..last (both included)."""
    windows: list[list[int]] = []
    key = None
    for m in range(first_ms, last_ms + 1, MINUTE):
        local = datetime.fromtimestamp(m / 1000, tz)
        k = (local.date(), local.hour, local.utcoffset())
        if k != key:
            windows.append([m, 0])
            key = k
    starts = [w[0] for w in windows]
    for at in events:
        i = max(j for j, s in enumerate(starts) if s <= at)
        windows[i][1] += 1
    return windows


@pytest.mark.parametrize("zone", ["Pacific/Chatham", "Australia/Lord_Howe"])
async def test_hour_windows_around_every_transition_of_the_last_year(api: Api, bucket: str, zone: str) -> None:
    tz = ZoneInfo(zone)
    now = int(time.time() * 1000)
    found = transitions(tz, now, 365)
    assert len(found) == 2, found  # a spring-forward and a fall-back
    for t in found:
        # An event every 7 minutes from 3 hours before the change to 3 hours after it.
        events = list(range(t - 180 * MINUTE, t + 180 * MINUTE, 7 * MINUTE))
        name = f"odd-{t}"
        for i in range(0, len(events), 500):
            await api.ingest(bucket, [{"event_name": name, "app_name": "a", "at": at, "id": f"{name}-{at}"}
                                      for at in events[i : i + 500]])  # fmt: skip
        days = math.ceil((now - t) / 86_400_000) + 1
        got = await api.stats(bucket, event_name=name, days=days, interval="hour", tz=zone)
        # The oracle over the minutes the answer spans, from the window the range starts in.
        expected = oracle(tz, got[0][0], got[-1][0], events)
        near = [w for w in expected if t - 240 * MINUTE <= w[0] <= t + 240 * MINUTE]
        assert [w for w in got if t - 240 * MINUTE <= w[0] <= t + 240 * MINUTE] == near, zone
        assert [w[0] for w in got] == [w[0] for w in expected]
        assert sum(c for _, c in got) == len(events)
