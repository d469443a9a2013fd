"""Newest-first pages over InfluxDB, shared by the influxql and influxdb2 stores.

InfluxDB orders points by time (ns) only; the contract orders by (at ms desc, id desc), and
a point's sub-millisecond part is a slot (placement.py), not the id. So rows are regrouped by
millisecond and sorted by id inside each group, and the group that a page boundary cuts is
always read whole. Every bound this module gives the engine is a whole millisecond, so no
group is ever split between two queries.

`newest` is called over a *widening* window below the upper bound (1 h, then x16 each round)
so that no query ranges over the whole history when recent data answers it.

An `offset` is skipped without reading payloads: rows are counted per window, the engine
finds the offset-th row's millisecond (its own OFFSET over the `id` column alone), and only
the ids of that one millisecond are read, to place the page start inside it exactly. Memory
does not grow with the offset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from eventsapi.limits import FUTURE_SLACK_MS
from eventsapi.stores.lineprotocol import NS_PER_MS
from eventsapi.values import EventQuery, StoredEvent

FIRST_SPAN_NS = 3600 * 10**9
GROWTH = 16
# Events may be stamped up to now + FUTURE_SLACK_MS; reads look an hour further, for the
# clocks of other replicas.
FUTURE_NS = (FUTURE_SLACK_MS + 3_600_000) * NS_PER_MS
LOOKAHEAD = 8


class Rows(Protocol):
    """What an engine answers about the rows of one filter (bucket, name, app?, server?).
    Ranges are [lower_ns, upper_ns), newest first."""

    async def newest(self, upper_ns: int, lower_ns: int, n: int) -> list[StoredEvent]:
        """Up to n whole rows, newest first (a few more than a page needs, to see where the
        last millisecond ends)."""

    async def millisecond(self, ms: int) -> list[StoredEvent]:
        """Every whole row of one millisecond."""

    async def count(self, upper_ns: int, lower_ns: int) -> int: ...

    async def nth_time(self, upper_ns: int, lower_ns: int, k: int) -> int | None:
        """The point time of the k-th row (0-based, newest first), reading ids only."""

    async def millisecond_ids(self, ms: int) -> list[str]:
        """The ids of one millisecond's rows."""


def _order(rows: list[StoredEvent]) -> list[StoredEvent]:
    return sorted(rows, key=lambda r: (r.at, r.id), reverse=True)


def _floor_ms(ns: int) -> int:
    return ns - ns % NS_PER_MS


Position = tuple[int, tuple[int, str] | None]  # (upper bound in ns, (at, id) to continue after)


def _windows(upper: int, lower: int, now_ns: int) -> Iterator[tuple[int, int]]:
    """The widening windows [lo, hi) below `upper`, newest first: 1 h measured back from now
    (not from the future-stamp slack above it), then x16 each, down to `lower`. Every bound is
    a whole millisecond, so no millisecond is ever split between two windows."""
    span = FIRST_SPAN_NS
    while upper > lower:
        lo = max(lower, _floor_ms(min(upper, now_ns) - span))
        yield upper, lo
        upper = lo
        span *= GROWTH


async def _skip(
    rows: Rows, skip: int, upper: int, lower: int, after: tuple[int, str] | None, now_ns: int
) -> Position | None:
    """The position `skip` rows further down from (upper, after); None past the last row."""
    if after is not None:
        at, last_id = after
        group: list[str] = []
        if lower <= at * NS_PER_MS < upper:
            group = sorted((i for i in await rows.millisecond_ids(at) if i < last_id), reverse=True)
        if skip <= len(group):
            return upper, (at, group[skip - 1]) if skip else after
        skip -= len(group)
        upper = min(upper, at * NS_PER_MS)
    for hi, lo in _windows(upper, lower, now_ns):
        n = await rows.count(hi, lo)
        if n > skip:
            t = await rows.nth_time(hi, lo, skip)
            if t is None:  # rows vanished between the two reads (a delete): nothing to skip to
                return None
            ms = t // NS_PER_MS
            newer = await rows.count(hi, (ms + 1) * NS_PER_MS)
            inside = skip - newer  # rows of millisecond `ms` to skip, highest ids first
            top = (ms + 1) * NS_PER_MS
            if inside <= 0:
                return top, None
            ids = sorted(await rows.millisecond_ids(ms), reverse=True)
            return top, (ms, ids[inside - 1]) if inside <= len(ids) else (ms, "")
        skip -= n
    return None


async def page(q: EventQuery, now_ns: int, rows: Rows) -> list[StoredEvent]:
    lower = max(0, q.start * NS_PER_MS) if q.start is not None else 0
    upper = q.end * NS_PER_MS if q.end is not None else _floor_ms(now_ns + FUTURE_NS)
    after = q.after
    if q.offset:
        position = await _skip(rows, q.offset, upper, lower, after, now_ns)
        if position is None:
            return []
        upper, after = position
    want = q.limit
    out: list[StoredEvent] = []
    if after is not None:
        at, last_id = after
        if lower <= at * NS_PER_MS < upper:
            out = _order([r for r in await rows.millisecond(at) if r.id < last_id])
        upper = min(upper, at * NS_PER_MS)
    for hi, lo in _windows(upper, lower, now_ns):
        if len(out) >= want:
            break
        need = want - len(out)
        got = await rows.newest(hi, lo, need + LOOKAHEAD)
        if len(got) > need:
            cut = got[need - 1].at
            if got[-1].at == cut:  # the page ends inside a run of one millisecond: read it whole
                got = [r for r in got if r.at != cut] + await rows.millisecond(cut)
            out += _order(got)
            break
        out += _order(got)
    return out[:want]
