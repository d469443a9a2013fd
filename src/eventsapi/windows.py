"""Histogram windows: calendar-correct window starts for an interval in an IANA time zone."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from eventsapi.limits import MAX_WINDOWS

STEP_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


class TooManyWindows(ValueError):
    pass


def window_start(t_ms: int, interval: str, tz: ZoneInfo) -> int:
    """Start (epoch ms) of the local minute/hour/day that contains instant t_ms."""
    if interval == "minute":
        # Every UTC offset in use since 1972 is a whole number of minutes.
        return t_ms - t_ms % 60_000
    local = datetime.fromtimestamp(t_ms / 1000, tz)
    if interval == "hour":
        # Keep the fold so that the repeated hour of a DST fall-back is its own window.
        start = local.replace(minute=0, second=0, microsecond=0)
    else:
        start = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    ms = int(start.timestamp() * 1000)
    # A local midnight that does not exist (DST jump at 00:00) resolves after t; step back.
    return ms if ms <= t_ms else window_start(t_ms - STEP_MS["hour"], interval, tz)


def window_starts(now_ms: int, days: float, interval: str, tz: ZoneInfo) -> tuple[list[int], int]:
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


def _next_start(s: int, interval: str, tz: ZoneInfo) -> int:
    step = STEP_MS[interval]
    nxt = window_start(s + step, interval, tz)
    if nxt <= s:  # a 25-hour day or a 90-minute hour: one step was not enough
        nxt = window_start(s + step + step // 2, interval, tz)
    return nxt


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
