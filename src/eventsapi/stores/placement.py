"""Where each event's point goes on InfluxDB, so that one acknowledged event is one point.

InfluxDB keeps one point per (series, timestamp); a later write to the same point silently
replaces the earlier one. An event's point time is its `at` (ms) x 10⁶ plus a *slot* in
[0, 10⁶). Knowing which points of the bucket already exist in the milliseconds a batch
touches (`Slots`: occupancy.py remembers them, a minute at a time), `place` decides, for each
event of the batch:

- an event whose (at, id) is already stored in the bucket, or came earlier in the batch, is
  not written (first write wins: a re-send is a no-op and never replaces what was stored,
  whatever its payload, name, app or server);
- every other event takes the first slot of its millisecond that no point of the bucket holds,
  whatever its series, probing from a hash of its id. (Only a point of the same series could
  be overwritten, but treating every series' times as taken lets the store know a bucket's
  points without their tags. A bucket keeps 10⁶ slots per millisecond.)

So distinct events never share a point, and a re-send never lands on another event's point.

Concurrent ingests must not interleave, or two of them could both see a slot free and both
take it. Within a process, `Ledger` makes every ingest that touches the same milliseconds of a
bucket wait for the earlier ones to finish. Between processes, occupancy.py's intents;
docs/influx.md states what they leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from eventsapi.errors import MillisecondFull
from eventsapi.stores.lineprotocol import NS_PER_MS
from eventsapi.values import NewEvent

# (point time in ns, id) of a point already in the bucket.
OccupiedPoint = tuple[int, str]
_MARK = (1 << 30) - 1


def first_slot(event_id: str) -> int:
    return zlib.crc32(event_id.encode()) % NS_PER_MS


def id_mark(event_id: str) -> int:
    """What a point remembers of its event's id: 30 bits of its hash (per process)."""
    return hash(event_id) & _MARK


class Slots:
    """The points of a bucket in some milliseconds, as placement needs them.

    `marks` maps each point time to the id mark of the event on it. Every event is placed on
    the first free slot probing from its id's first slot, so a stored (at, id) is found by the
    same probe: it meets the event's mark before a free slot. The few points the probe would
    not reach (a delete freed a slot before them) are kept whole in `displaced`. A false match
    needs a point of another id on the probe's way with the same 30-bit mark: p ~ 10⁻⁹ times
    the chance that the first slot is taken (~ points in that millisecond / 10⁶).
    """

    __slots__ = ("displaced", "marks")

    def __init__(self, points: Iterable[OccupiedPoint] = ()) -> None:
        self.marks: dict[int, int] = {}
        self.displaced: set[tuple[int, str]] = set()
        self.load(points)

    def __len__(self) -> int:
        return len(self.marks)

    def load(self, points: Iterable[OccupiedPoint]) -> None:
        points = list(points)
        marks = self.marks
        for ns, event_id in points:
            mark = id_mark(event_id)
            if marks.setdefault(ns, mark) != mark:  # two series with a point at one time
                self.displaced.add((ns // NS_PER_MS, event_id))
        for ns, event_id in points:
            at = ns // NS_PER_MS
            base, slot = at * NS_PER_MS, first_slot(event_id)
            while base + slot != ns:
                if base + slot not in marks:
                    self.displaced.add((at, event_id))
                    break
                slot = (slot + 1) % NS_PER_MS

    def take(self, at: int, event_id: str) -> int | None:
        """The point time of a new event (at, id), marked taken; None when that (at, id) is
        stored already (first write wins)."""
        marks = self.marks
        base = at * NS_PER_MS
        # first_slot and id_mark, inline: this runs once per ingested event.
        slot = zlib.crc32(event_id.encode()) % NS_PER_MS
        mark = hash(event_id) & _MARK
        for _ in range(NS_PER_MS):
            held = marks.get(base + slot)
            if held is None:
                if self.displaced and (at, event_id) in self.displaced:
                    return None
                marks[base + slot] = mark
                return base + slot
            if held == mark:
                return None
            slot = slot + 1 if slot + 1 < NS_PER_MS else 0
        raise MillisecondFull(f"no free point left in millisecond {at} of the bucket")


def place(events: Sequence[NewEvent], slots: Slots | Callable[[int], Slots]) -> list[tuple[NewEvent, int]]:
    """(event, point time in ns) for each event of the batch that must be written; the points
    are marked taken in `slots` (one Slots, or the Slots of each `at`)."""
    pick = (lambda at: slots) if isinstance(slots, Slots) else slots
    out: list[tuple[NewEvent, int]] = []
    for e in events:
        t = pick(e.at).take(e.at, e.id)
        if t is not None:
            out.append((e, t))
    return out


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
