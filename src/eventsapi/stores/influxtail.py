"""Live-tail positions on InfluxDB, shared by the influxql and influxdb2 stores.

InfluxDB has no ingest order, so every point carries `ingested`, the time (ns) the service
wrote its batch, and a tail follows (ingested, id). A poll asks for the points written in
(last position, now - SETTLE] among those stamped within LOOKBACK of now: the SETTLE delay lets
a write that began before a later one finish before the tail moves past it, and LOOKBACK bounds
what a poll reads. An event stamped (`at`) more than LOOKBACK ago, or whose write took longer
than SETTLE to become visible, is not seen by a live tail (docs/influx.md); every read route
still returns it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from eventsapi.values import StoredEvent

SETTLE_NS = 500_000_000
# Positions carry the writing process's clock; another replica's may run this far ahead.
CLOCK_SKEW_NS = 10 * 10**9
LOOKBACK_NS = 3600 * 10**9
POSITION_PATTERN = r"\d{20}:.{0,128}"


def position(ingested_ns: int, event_id: str = "") -> str:
    """`ingested:id`, zero-padded: positions compare as strings as (ingested, id) do."""
    return f"{ingested_ns:020d}:{event_id}"


def position_ahead(position: str, newest: str) -> bool:
    """Past `newest` by more than replicas' clocks may differ (Store.position_ahead)."""
    return int(position.partition(":")[0]) > int(newest.partition(":")[0]) + CLOCK_SKEW_NS


def now_position() -> str:
    """Where a tail that starts now begins: everything written from here on is new."""
    return position(time.time_ns() - SETTLE_NS)


def bounds(after: str) -> tuple[int, int, int]:
    """(lower bound on the points' time, lower and upper bounds on `ingested`) for a poll."""
    now = time.time_ns()
    return now - LOOKBACK_NS, int(after.partition(":")[0]), now - SETTLE_NS


def narrow(ids: Iterable[tuple[int, str]], after: str, until_ns: int, limit: int) -> int | None:
    """The `ingested` bound of a poll that reads about `limit` events: from the (ingested, id)
    of the points written in (after, until] — read first, without payloads — the write holding
    the limit-th one past `after`. None: there is nothing past `after`. A poll reads whole
    writes, so it holds at most `limit` events plus one ingest request (EVENTSAPI_MAX_BODY_BYTES),
    never all that a burst wrote since the last poll."""
    past = sorted(p for p in (position(t, i) for t, i in ids) if p > after)
    if not past:
        return None
    if len(past) <= limit:
        return until_ns
    return int(past[limit - 1].partition(":")[0])


def cut(
    rows: Iterable[tuple[int, StoredEvent]], after: str, until_ns: int, limit: int
) -> tuple[list[tuple[str, StoredEvent]], str]:
    """The rows past `after` in (ingested, id) order, at most `limit`, and where to go on from."""
    ordered = sorted(((position(t, e.id), e) for t, e in rows), key=lambda pe: pe[0])
    out = [(p, e) for p, e in ordered if p > after][:limit]
    if len(out) == limit:
        return out, out[-1][0]  # more may wait at the same stamp: continue right after the last one
    watermark = position(until_ns)
    return out, max(after, out[-1][0] if out else after, watermark)
