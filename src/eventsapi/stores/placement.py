"""Where each event's point goes on InfluxDB, so that one acknowledged event is one point.

InfluxDB keeps one point per (series, timestamp); a later write to the same point silently
replaces the earlier one. An event's point time is its `at` (ms) x 10⁶ plus a *slot* in
[0, 10⁶). Before a batch is written the store reads which points of the bucket already exist
in the milliseconds the batch touches (time and `id` only: no tags, no payloads), and `place`
then decides, for each event of the batch:

- an event whose (at, id) is already stored in the bucket, or came earlier in the batch, is
  not written (first write wins: a re-send is a no-op and never replaces what was stored,
  whatever its payload, name, app or server);
- every other event takes the first slot of its millisecond that no point of the bucket holds,
  whatever its series, probing from a hash of its id. (Only a point of the same series could
  be overwritten, but treating every series' times as taken lets the read skip the tags: on
  InfluxDB 1.6, 1.3 ms of CPU instead of 19 ms for a range past the cached data, 45 instead
  of 51 ms for a range holding 5,000 points. A bucket keeps 10⁶ slots per millisecond.)

So distinct events never share a point, and a re-send never lands on another event's point.

Reads and writes of concurrent ingests must not interleave, or two of them could both see a
slot free and both take it. Within a process, `Ledger` makes every ingest that touches the
same milliseconds of a bucket wait for the earlier ones to finish before it reads. Between
replicas there is no lock (InfluxDB has no compare-and-set); docs/influx.md states the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Protocol

from eventsapi.errors import MillisecondFull
from eventsapi.stores.lineprotocol import NS_PER_MS
from eventsapi.values import NewEvent

# (point time in ns, id) of a point already in the bucket.
OccupiedPoint = tuple[int, str]


class Known(Protocol):
    """What placement asks of what the bucket already holds (occupancy.Known remembers it)."""

    def taken(self, ns: int) -> bool:
        """Whether some point of the bucket, in any series, has this time."""

    def stored(self, key: tuple[int, str]) -> bool:
        """Whether an event with this (at, id) is stored in the bucket."""


class Points:
    """Known over a list of points (time ns, id), as an occupancy read returns them."""

    def __init__(self, occupied: Iterable[OccupiedPoint]) -> None:
        self._times: set[int] = set()
        self._keys: set[tuple[int, str]] = set()
        for t, event_id in occupied:
            self._times.add(t)
            self._keys.add((t // NS_PER_MS, event_id))

    def taken(self, ns: int) -> bool:
        return ns in self._times

    def stored(self, key: tuple[int, str]) -> bool:
        return key in self._keys


def first_slot(event_id: str) -> int:
    return zlib.crc32(event_id.encode()) % NS_PER_MS


def place(events: Sequence[NewEvent], known: Known) -> list[tuple[NewEvent, int]]:
    """(event, point time in ns) for each event of the batch that must be written."""
    taken, stored = known.taken, known.stored
    times: set[int] = set()  # taken by this batch
    keys: set[tuple[int, str]] = set()  # stored by this batch
    crc32 = zlib.crc32
    out: list[tuple[NewEvent, int]] = []
    for e in events:
        key = (e.at, e.id)
        if key in keys or stored(key):
            continue
        keys.add(key)
        base = e.at * NS_PER_MS
        t = base + crc32(e.id.encode()) % NS_PER_MS
        if t in times or taken(t):
            t = _probe(e.at, t - base, times, taken)
        times.add(t)
        out.append((e, t))
    return out


def _probe(at: int, slot: int, times: set[int], taken: Callable[[int], bool]) -> int:
    """The first point time of millisecond `at` after `slot` that nothing holds."""
    base = at * NS_PER_MS
    for _ in range(NS_PER_MS):
        slot = (slot + 1) % NS_PER_MS
        if base + slot not in times and not taken(base + slot):
            return base + slot
    raise MillisecondFull(f"no free point left in millisecond {at} of the bucket")


class _Turn:
    __slots__ = ("done", "ms")

    def __init__(self, ms: set[int]) -> None:
        self.ms = ms
        self.done = asyncio.Event()


class Ledger:
    """Orders the ingests of one process: an ingest that touches milliseconds an earlier,
    unfinished ingest of the same bucket touches waits for it, then reads what it wrote.

    Ingests of disjoint milliseconds run concurrently; no ingest waits for a later one, so
    there is no deadlock.
    """

    def __init__(self) -> None:
        self._active: dict[str, list[_Turn]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, bucket: str, ms: set[int]) -> AsyncIterator[None]:
        active = self._active.setdefault(bucket, [])
        earlier = [t for t in active if not t.ms.isdisjoint(ms)]
        mine = _Turn(ms)
        active.append(mine)
        try:
            for t in earlier:
                await t.done.wait()
            yield
        finally:
            active.remove(mine)
            if not active:
                del self._active[bucket]
            mine.done.set()
