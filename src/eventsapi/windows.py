"""Histogram windows: calendar-correct window starts for an interval in an IANA time zone."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from eventsapi.limits import MAX_WINDOWS

# The histogram intervals, declared here only: the wire type (wire.StatsBody) and every engine's
# window (a duration in ms: windows.engine_step) come from these.
Interval = Literal["minute", "hour", "day"]
STEP_MS: dict[Interval, int] = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


class TooManyWindows(ValueError):
    pass


def _offset(t_ms: int, tz: ZoneInfo) -> int:
    """The zone's UTC offset at instant t_ms, in ms."""
    offset = datetime.fromtimestamp(t_ms / 1000, tz).utcoffset()
    return 0 if offset is None else int(offset.total_seconds() * 1000)


def _first_with_offset(lo: int, hi: int, offset: int, tz: ZoneInfo) -> int:
    """The first instant after lo, up to hi, whose offset differs from `offset` (lo has it,
    hi does not): where the zone's clock changed."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _offset(mid, tz) == offset else (lo, mid)
    return hi


def window_start(t_ms: int, interval: Interval, tz: ZoneInfo) -> int:
    """Start (epoch ms) of the window that contains instant t_ms.

    Minute and day windows are local minutes and days. An hour window is a local clock hour,
    and a change of UTC offset inside one starts a new window: so in a zone whose offset or DST
    shift is not a whole hour (Chatham +12:45, Lord Howe's 30-minute DST) every local hour
    that exists has its window, the partial hour after a spring-forward included."""
    if interval == "minute":
        # Every UTC offset in use since 1972 is a whole number of minutes.
        return t_ms - t_ms % 60_000
    if interval == "hour":
        offset = _offset(t_ms, tz)
        start = t_ms - (t_ms + offset) % STEP_MS["hour"]  # the local hour, at this offset
        before = _offset(start, tz)
        if before != offset:  # the clock changed within it: the window starts there
            start = _first_with_offset(start, t_ms, before, tz)
        return start
    local = datetime.fromtimestamp(t_ms / 1000, tz)
    start_day = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    ms = int(start_day.timestamp() * 1000)
    # A local midnight that does not exist (DST jump at 00:00) resolves after t; step back.
    return ms if ms <= t_ms else window_start(t_ms - STEP_MS["hour"], interval, tz)


def window_starts(now_ms: int, days: float, interval: Interval, tz: ZoneInfo) -> tuple[list[int], int]:
    """Starts of every window from the one containing now-days to the one containing now,
    and the end of the last window."""
    step = STEP_MS[interval]
    first = window_start(now_ms - int(days * 86_400_000), interval, tz)
    if interval == "minute":
        last = window_start(now_ms, interval, tz)
        count = (last - first) // step + 1
        if count > MAX_WINDOWS:
            raise TooManyWindows(f"{count} windows; at most {MAX_WINDOWS}")
        return list(range(first, last + 1, step)), last + step
    starts = [first]
    s = first
    while True:
        nxt = _next_start(s, interval, tz)
        if nxt > now_ms:
            return starts, nxt
        starts.append(nxt)
        s = nxt


def _next_start(s: int, interval: Interval, tz: ZoneInfo) -> int:
    step = STEP_MS[interval]
    if interval == "hour":
        offset = _offset(s, tz)
        nxt = s - (s + offset) % step + step  # the next local hour, if the clock does not change
        if _offset(nxt - 1, tz) != offset:  # it changes before: a window starts at the change
            nxt = _first_with_offset(s, nxt - 1, offset, tz)
        return nxt
    nxt = window_start(s + step, interval, tz)
    if nxt <= s:  # a 25-hour day: one step was not enough
        nxt = window_start(s + step + step // 2, interval, tz)
    return nxt


def engine_step(starts: Sequence[int], end: int, interval: Interval) -> int:
    """The longest window (ms), aligned to the epoch, that every window of ours is made of: the
    engine counts per such window (in UTC, the same on every engine and version) and
    counts_per_window adds them up. Minutes stay minutes; hours and days of whole-hour zones
    are hours; India's, half hours; Chatham's, quarter hours."""
    step = STEP_MS[interval]
    grain = step
    for t in (*starts, end):
        grain = math.gcd(grain, t % step)
    return grain


def utc_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def counts_per_window(starts: Sequence[int], labelled: Iterable[tuple[int, int]]) -> list[int]:
    """Our windows' counts from an engine's (window start in ms, count) pairs.

    Engines label windows by their start; each pair is added to the window of `starts` that
    contains its label, so a window the engine returns before our first start (or after our
    last) is dropped, and windows the engine leaves out (no series matched) stay 0.
    """
    counts = [0] * len(starts)
    for t, n in labelled:
        i = bisect.bisect_right(starts, t) - 1
        if 0 <= i < len(counts) and n:
            counts[i] += n
    return counts
