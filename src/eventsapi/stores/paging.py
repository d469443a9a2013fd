"""Newest-first pages over InfluxDB, shared by the influxql and influxdb2 stores.

InfluxDB orders points by time (ns) only; the contract orders by (at ms desc, id desc), and
a point's sub-millisecond part is a hash slot, not the id. So rows are regrouped by
millisecond and sorted by id inside each group, and the group that a page boundary cuts is
always read whole. Engines supply two primitives:

- `newest(upper_ns, lower_ns, n)`: up to n rows with lower ≤ time < upper, newest first
  (asked for a few rows more than the page needs, to see where the last millisecond ends);
- `millisecond(ms)`: every row of one millisecond.

`newest` is called over a *widening* window below the upper bound (1 h, then x16 each round)
so that no query ranges over the whole history when recent data answers it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from eventsapi.stores.base import EventQuery, StoredEvent
from eventsapi.stores.lineprotocol import NS_PER_MS

Newest = Callable[[int, int, int], Awaitable[list[StoredEvent]]]
Millisecond = Callable[[int], Awaitable[list[StoredEvent]]]

FIRST_SPAN_NS = 3600 * 10**9
GROWTH = 16
FUTURE_NS = 25 * 3600 * 10**9  # events may be stamped up to now + 24 h
LOOKAHEAD = 8


def _order(rows: list[StoredEvent]) -> list[StoredEvent]:
    return sorted(rows, key=lambda r: (r.at, r.id), reverse=True)


async def page(q: EventQuery, now_ns: int, newest: Newest, millisecond: Millisecond) -> list[StoredEvent]:
    want = q.offset + q.limit
    lower = max(0, q.start * NS_PER_MS) if q.start is not None else 0
    upper = q.end * NS_PER_MS if q.end is not None else now_ns + FUTURE_NS
    rows: list[StoredEvent] = []
    if q.after is not None:
        at, last_id = q.after
        if lower <= at * NS_PER_MS < upper:
            rows = _order([r for r in await millisecond(at) if r.id < last_id])
        upper = min(upper, at * NS_PER_MS)
    span = FIRST_SPAN_NS
    while len(rows) < want and upper > lower:
        # Windows are measured back from now (not from the future-stamp slack above it), so
        # the first query already covers the most recent hour.
        lo = max(lower, min(upper, now_ns) - span)
        need = want - len(rows)
        # A few rows past the page show whether the last millisecond continues past it.
        got = await newest(upper, lo, need + LOOKAHEAD)
        if len(got) > need:
            cut = got[need - 1].at
            if got[-1].at == cut:  # the page ends inside a run of one millisecond: read it whole
                got = [r for r in got if r.at != cut] + await millisecond(cut)
            rows += _order(got)
            break
        rows += _order(got)
        upper = lo
        span *= GROWTH
    return rows[q.offset : q.offset + q.limit]
