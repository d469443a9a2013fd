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
from array import array
from bisect import bisect_left
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

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

    Each point time maps to the id mark of the event on it. Every event is placed on the first
    free slot probing from its id's first slot, so a stored (at, id) is found by the same
    probe: it meets the event's mark before a free slot. The few points the probe would not
    reach (a delete freed a slot before them) are kept whole in `displaced`. A false match
    needs a point of another id on the probe's way with the same 30-bit mark: p ~ 10⁻⁹ times
    the chance that the first slot is taken (~ points in that millisecond / 10⁶).

    Two forms, one set of points: `marks`, a dict (~113 bytes a point in CPython), and
    `keys`/`vals`, sorted arrays (12 bytes a point, searched by bisection: ~0.5 µs against
    ~0.06 for the dict), which `compact` moves the dict's points into when memory is short.
    `top` is the last compacted time: a time above it is in `marks` or nowhere, which is every
    new point of producers in time order.
    """

    __slots__ = ("displaced", "keys", "marks", "top", "vals")

    def __init__(self, points: Iterable[OccupiedPoint] = ()) -> None:
        self.marks: dict[int, int] = {}
        self.keys = array("q")
        self.vals = array("i")
        self.top = -1
        self.displaced: set[tuple[int, str]] = set()
        self.load(points)

    def __len__(self) -> int:
        return len(self.keys) + len(self.marks)

    def get(self, ns: int) -> int | None:
        """The id mark of the point at `ns`, None if the slot is free."""
        held = self.marks.get(ns)
        if held is None and ns <= self.top:
            i = bisect_left(self.keys, ns)
            if self.keys[i] == ns:
                return self.vals[i]
        return held

    def load(self, points: Iterable[OccupiedPoint]) -> None:
        """Add the points read from the engine to a Slots with nothing compacted (in `marks`:
        `compact` them if memory matters more than speed). Marks it holds already stay: a
        write acknowledged while its minute was being read is marked there (Occupancy.record),
        and the read may have missed it."""
        if len(self.keys):
            raise ValueError("load() adds to a Slots with nothing compacted")
        # Runs once per point a process reads (a bucket's history the first time): first_slot
        # and id_mark inline, and the probe only for a point off its first slot.
        points = list(points)
        marks, displaced = self.marks, self.displaced
        crc32, ns_per_ms, id_bits = zlib.crc32, NS_PER_MS, _MARK
        for ns, event_id in points:
            mark = hash(event_id) & id_bits
            if marks.setdefault(ns, mark) != mark:  # two series with a point at one time
                displaced.add((ns // ns_per_ms, event_id))
        for ns, event_id in points:
            at = ns // ns_per_ms
            base = at * ns_per_ms
            slot = crc32(event_id.encode()) % ns_per_ms
            while base + slot != ns:
                if base + slot not in marks:
                    displaced.add((at, event_id))
                    break
                slot = slot + 1 if slot + 1 < ns_per_ms else 0

    def compact(self) -> None:
        """Move `marks` into the sorted arrays. A few points into many are inserted one by one
        (a bisection and a memmove each); otherwise both are merged by one sort."""
        marks = self.marks
        if not marks:
            return
        keys, vals = self.keys, self.vals
        if len(marks) * 16 < len(keys):
            for ns in sorted(marks):
                i = bisect_left(keys, ns)
                if i < len(keys) and keys[i] == ns:
                    vals[i] = marks[ns]
                else:
                    keys.insert(i, ns)
                    vals.insert(i, marks[ns])
        else:
            merged = dict(zip(keys, vals, strict=True))
            merged.update(marks)
            ordered = sorted(merged)
            self.keys = keys = array("q", ordered)
            self.vals = array("i", map(merged.__getitem__, ordered))
        self.top = keys[-1]
        self.marks = {}


def place(
    events: Sequence[NewEvent], slots: Slots | Mapping[int, Slots], unit_ms: int = 0
) -> list[tuple[NewEvent, int]]:
    """(event, point time in ns) for each event of the batch that must be written, marked taken
    in `slots` (one Slots for every millisecond, or the Slots of each `at // unit_ms`). An event
    whose (at, id) is stored, or came earlier in the batch, is left out: first write wins."""
    out: list[tuple[NewEvent, int]] = []
    append = out.append
    if isinstance(slots, Slots):
        by_unit: Mapping[int, Slots] = {0: slots}
        unit_ms = 1 << 62  # every millisecond in unit 0
    elif unit_ms <= 0:
        raise ValueError("Slots per unit need the unit's length")
    else:
        by_unit = slots
    unit = -1
    current = Slots()
    marks, displaced, keys, top = current.marks, current.displaced, current.keys, current.top
    crc32, ns_per_ms, id_bits = zlib.crc32, NS_PER_MS, _MARK
    # One loop, first_slot and id_mark inline, the Slots looked up only when the unit changes,
    # names local: this runs once per ingested event, and it was half of placement's cost.
    for e in events:
        at = e.at
        if at // unit_ms != unit:
            unit = at // unit_ms
            current = by_unit[unit]
            marks, displaced, keys, top = current.marks, current.displaced, current.keys, current.top
        event_id = e.id
        base = at * ns_per_ms
        slot = crc32(event_id.encode()) % ns_per_ms
        first = base + slot
        # The common case: the first slot is free (not placed since the last compaction, and
        # above the compacted points or not among them; keys[-1] == top, so the index exists).
        if first not in marks and not displaced and (first > top or keys[bisect_left(keys, first)] != first):
            marks[first] = hash(event_id) & id_bits
            append((e, first))
            continue
        mark = hash(event_id) & id_bits
        get = current.get
        probes = 0
        while True:
            held = get(base + slot)
            if held is None:
                if not (displaced and (at, event_id) in displaced):
                    marks[base + slot] = mark
                    append((e, base + slot))
                break
            if held == mark:
                break
            probes += 1
            if probes == ns_per_ms:
                raise MillisecondFull(f"no free point left in millisecond {at} of the bucket")
            slot = slot + 1 if slot + 1 < ns_per_ms else 0
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
