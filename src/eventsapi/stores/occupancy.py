"""What one process remembers of the points each bucket holds on InfluxDB, so that ingest reads
a stretch of a bucket once, not before every batch.

Placement (placement.py) must know, for every millisecond a batch touches, which point times the
bucket already holds and which (at, id) it already stored. Reading that from InfluxDB before
every batch costs the engine ~40x the write itself when batches are not in time order (a probe
into its TSM files decodes whole blocks; docs/influx.md). So the store keeps it:

- **Chunks.** A bucket's time is cut into minutes (`CHUNK_MS`). A chunk is read from the
  engine once (every point time and id in that minute), then kept up to date with what this
  process writes. A chunk is its minute's `placement.Slots`: each point time, exactly, with a
  30-bit mark of its event's id (placement.py says what a false match needs), in a dict (~113
  bytes a point, the fastest to probe) or, compacted, in sorted arrays (12 bytes a point). The
  budget counts compacted points (`DICT_POINT` for one in a dict, `CHUNK_POINTS` for a chunk
  itself): past it, chunks are compacted first, in the order they got points in their dicts
  (an index of those, so that no batch walks every chunk held), and only then the least
  recently used are dropped; a read compacts them to make room for itself as dicts, and is
  compacted itself only if that is not enough. A chunk that went is read again when needed.
  Compaction matters because a batch out of time order wants every minute of the span it
  covers: a budget below that span makes every batch read back what the previous one dropped
  (a bucket of 1,000,000 points over the span: 981 events/s, 45,497 since compaction,
  docs/influx.md), so the span that fits is what counts.
- **Intents.** Other processes write the same buckets (replicas without the proxy, workers
  whose bucket's owner is down, `eventsapi migrate`). Before a process writes points (or
  deletes) in a bucket, it records an *intent*: a point in the measurement `eventsapi_writes`
  saying "writer W may change milliseconds [lo, hi) of this bucket until T + SETTLE". Before
  every batch each process reads the bucket's intents newer than the last it saw (one series,
  recent points: cheap) and treats every chunk an unsettled foreign intent covers as unknown:
  it reads it again for each batch until the intent settles (only the batch's milliseconds
  when they are close: `exact`), then once more, and trusts it again. An intent is written and
  acknowledged before the writes it covers, and a writer never writes under an intent older
  than SETTLE, so a process that trusts a chunk has read it after everything other writers
  could still change in it — the same bound as reading before every batch: only writes racing
  within the same instant (docs/influx.md says what that leaves).
- **Retirement.** A process that closes cleanly, with no write in flight or failed within
  SETTLE, records a last intent covering nothing (`retirement`): every write of its has landed.
  Other writers, and its own successor after a restart (another writer to them), then read what
  its intents covered once more and trust it, instead of for every batch until they settle.
- **Failures.** A write or delete that fails, or that a delete of the same bucket overlapped,
  makes the process forget the chunks it touched: it may or may not have landed.
- **Idle buckets.** What a process knows of a bucket beyond its chunks (its intents' state, ~540
  bytes) goes once the bucket holds no chunk and no intent of this writer younger than SETTLE:
  a process that wrote a million buckets over its life would otherwise hold them all. Nothing
  is lost: such a bucket is known as a fresh process knows it (its intents read from SETTLE
  back). Generations are unique across the process, so a batch in flight when its bucket went
  sees a new one and forgets what it wrote instead of trusting it.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from eventsapi.stores.lineprotocol import INTENTS_MEASUREMENT, NS_PER_MS, encode_tag, escape_tag
from eventsapi.stores.placement import Slots, id_mark
from eventsapi.values import NewEvent

CHUNK_MS = 60_000
# How long an intent covers its writer's writes: the writer starts no write under an intent
# older than SETTLE less the longest a write may take (the store timeout) less 10 s for clocks a
# little apart, so every write it covers has landed or failed within SETTLE.
SETTLE_NS = 120 * 1_000_000_000
EVERYTHING = (0, 1 << 53)  # a delete of all of a bucket's time
READ_AHEAD = 1_440  # chunks (a day) read past the last one a batch needs
# ... but no further than this many past the present: ahead of live producers lies the future,
# empty, and a day of empty chunks per bucket (~1.7 KB each then) filled the default budget at ~50
# buckets, after which every batch of every bucket read its day again (docs/influx.md).
AHEAD_OF_NOW = 10
READ_RANGES = 16  # ranges (statements) in one read
READ_SPAN = 360  # chunks (6 hours) one read covers at most: a long span is read in parallel
# A batch's milliseconds closer than this share a range when only they are read (`exact`).
EXACT_GAP_MS = 1_000
# The budget's unit is a compacted point (~12 bytes measured with tracemalloc); a point in a
# chunk's dict costs ~113 bytes, a chunk itself ~800 bytes even empty (its dict, set, arrays
# and LRU entry; 1,700 while each had an Event of its own).
DICT_POINT = 10
CHUNK_POINTS = 66
# How often evict() looks for idle buckets to release (module docstring, "Idle buckets").
RELEASE_EVERY_NS = 10 * 1_000_000_000


class Read:
    """One claim's read of a bucket's minutes: `done` is set once every one of them was filled
    or abandoned. Shared by the claim's chunks (an Event each was half of what an empty minute
    cost: ~850 of ~1,700 bytes, tracemalloc)."""

    __slots__ = ("done", "left")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.left = 0  # chunks of the claim not yet filled or abandoned

    def ended(self, chunk: Chunk) -> None:
        """The read of one of its chunks ended, in success or failure."""
        if chunk.read is self:
            chunk.read = None
            self.left -= 1
            if self.left == 0:
                self.done.set()


class Chunk(Slots):
    """One minute of one bucket: its points (a placement.Slots), once read from the engine.
    `usable` once they are read; `read` is the claim's Read until it ended for this chunk, in
    success or failure (then None)."""

    __slots__ = ("read", "usable")

    def __init__(self, read: Read | None = None) -> None:
        super().__init__()
        self.read = read
        self.usable = False


@dataclass(frozen=True)
class Intent:
    writer: str
    ns: int  # when it was recorded (the point's time)
    lo_ms: int
    hi_ms: int


def intent_line(bucket: str, intent: Intent) -> bytes:
    """The intent as a line-protocol point: one string field, `writer lo hi`."""
    return (
        f"{INTENTS_MEASUREMENT},bucket_id={escape_tag(encode_tag(bucket))} "
        f'm="{intent.writer} {intent.lo_ms} {intent.hi_ms}" {intent.ns}\n'
    ).encode()


def parse_intent(ns: int, value: str) -> Intent | None:
    parts = str(value).split(" ")
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        return None  # not ours: ignored
    return Intent(parts[0], int(ns), int(parts[1]), int(parts[2]))


def chunk_of(ms: Iterable[int]) -> set[int]:
    """The chunks (by index) of some milliseconds."""
    return {m // CHUNK_MS for m in ms}


def by_chunk(indexes: Iterable[int], points: Iterable[tuple[int, str]]) -> dict[int, list[tuple[int, str]]]:
    """The points (time ns, id) of each of those chunks; points of other chunks are left out."""
    per: dict[int, list[tuple[int, str]]] = {i: [] for i in indexes}
    for point in points:
        found = per.get(point[0] // NS_PER_MS // CHUNK_MS)
        if found is not None:
            found.append(point)
    return per


def chunk_span(chunks: set[int]) -> tuple[int, int]:
    """The [lo, hi) milliseconds of the chunks from the first to the last."""
    return min(chunks) * CHUNK_MS, (max(chunks) + 1) * CHUNK_MS


def chunk_ranges(indexes: Iterable[int], max_gap: int = 16) -> list[tuple[int, int]]:
    """[lo, hi) chunk-index ranges covering `indexes`: runs closer than `max_gap` chunks share a
    range (reading a few minutes more is cheaper than another statement). Runs further apart stay
    apart, however many: a batch spread over a year must not claim every minute between."""
    values = sorted(set(indexes))
    if not values:
        return []
    runs = [[values[0], values[0] + 1]]
    for v in values[1:]:
        if v - runs[-1][1] < max_gap:
            runs[-1][1] = v + 1
        else:
            runs.append([v, v + 1])
    return [(lo, hi) for lo, hi in runs]


def read_groups(ranges: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """The [lo, hi) ms ranges a claim reads, as reads: at most READ_RANGES ranges and READ_SPAN
    chunks each, a longer range cut at chunk boundaries. A bucket's whole history read as one
    statement kept one engine core busy while the others, and the service, waited."""
    span = READ_SPAN * CHUNK_MS
    pieces = [(lo, min(lo + span, hi)) for lo, hi in ranges for lo in range(lo, hi, span)]
    groups: list[list[tuple[int, int]]] = []
    covered = 0
    for lo, hi in pieces:
        if not groups or len(groups[-1]) == READ_RANGES or covered + (hi - lo) > span:
            groups.append([])
            covered = 0
        groups[-1].append((lo, hi))
        covered += hi - lo
    return groups


@dataclass
class _Bucket:
    chunks: dict[int, Chunk] = field(default_factory=dict)
    read_ns: int | None = None  # when its intents were last read (this process's clock)
    seen: dict[tuple[str, int], int] = field(default_factory=dict)  # (writer, ns) applied -> ns
    unsettled: list[Intent] = field(default_factory=list)
    retired: dict[str, int] = field(default_factory=dict)  # writer -> when it retired (ns)
    own: list[Intent] = field(default_factory=list)
    # A new one from the process's count at every delete of the bucket, and for a bucket
    # known anew after it was released: a batch in flight compares it with the one it began with.
    generation: int = 0


class Known:
    """A batch's chunks, ready, by chunk index: `slots` is what `place(events, slots, CHUNK_MS)`
    takes (a Chunk is the Slots of its minute). Some may be `fresh`: read for this batch only,
    the batch's own milliseconds of a minute another writer is changing (`Occupancy.exact`),
    and held by no one."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: dict[int, Chunk]) -> None:
        self.chunks = chunks

    def add_fresh(self, indexes: set[int], points: Iterable[tuple[int, str]]) -> None:
        """The points read of the batch's milliseconds in those minutes, as their chunks."""
        for i, found in by_chunk(indexes, points).items():
            chunk = self.chunks[i] = Chunk()
            chunk.load(found)
            chunk.usable = True

    @property
    def slots(self) -> Mapping[int, Slots]:
        return self.chunks


class Occupancy:
    """The chunks and intents of every bucket this process writes (see the module docstring)."""

    def __init__(self, budget_points: int = 10_000_000, writer: str | None = None, write_timeout_s: float = 10) -> None:
        self.writer = writer or secrets.token_hex(6)
        self.budget_points = budget_points
        # How young an own intent must be for a write to start under it (0: a new one each time).
        self.fresh_ns = max(0, SETTLE_NS - int((write_timeout_s + 10) * 1e9))
        self.points = 0
        self._buckets: dict[str, _Bucket] = {}
        self._generations = itertools.count(1)
        self._release_at_ns = 0
        # Chunk -> (bucket, index), least recently used first; keyed by the chunk itself, since
        # a batch out of time order touches thousands of minutes (a key tuple made per touch
        # was most of what the memory cost such a batch).
        self._lru: OrderedDict[Chunk, tuple[str, int]] = OrderedDict()
        # The chunks of the LRU that hold points in their dicts, in the order they got them:
        # what compaction takes from. Walking the whole LRU for them instead cost every batch
        # a pass over every minute held once the budget was full (20,000 live buckets, 11
        # minutes each: 43 ms a batch).
        self._loose: OrderedDict[Chunk, None] = OrderedDict()

    def _bucket(self, bucket: str) -> _Bucket:
        b = self._buckets.get(bucket)
        if b is None:
            b = self._buckets[bucket] = _Bucket(generation=next(self._generations))
        return b

    # -- intents ----------------------------------------------------------------------------

    def intents_since(self, bucket: str, now_ns: int) -> int:
        """The time after which the bucket's intents must be read: an intent stamped at T is
        visible by T + SETTLE, so one not seen at the last read was stamped after that read's
        time less SETTLE."""
        read = self._bucket(bucket).read_ns
        return (read if read is not None else now_ns) - SETTLE_NS

    def apply_intents(self, bucket: str, intents: Iterable[Intent], read_ns: int) -> None:
        """Forget what other writers' intents (read at `read_ns`) may have changed; remember the
        unsettled ones."""
        b = self._bucket(bucket)
        b.read_ns = read_ns
        for it in intents:
            if it.writer == self.writer or (it.writer, it.ns) in b.seen:
                continue
            b.seen[(it.writer, it.ns)] = it.ns
            if it.lo_ms == it.hi_ms:  # a retirement: the writer's writes up to it have landed
                b.retired[it.writer] = max(it.ns, b.retired.get(it.writer, 0))
                continue
            if it.ns + SETTLE_NS > read_ns:
                b.unsettled.append(it)
            self.forget(bucket, it.lo_ms, it.hi_ms)
        horizon = read_ns - 3 * SETTLE_NS  # older than any the next read can return
        if b.seen and min(b.seen.values()) < horizon:
            b.seen = {k: v for k, v in b.seen.items() if v >= horizon}
            b.retired = {k: v for k, v in b.retired.items() if v >= horizon}
        # Unsettled intents: what they cover is read again for every batch until they settle
        # or their writer retires, and once more after (this drop is that last time).
        for it in b.unsettled:
            self.forget(bucket, it.lo_ms, it.hi_ms)
        retired = b.retired
        b.unsettled = [it for it in b.unsettled if it.ns + SETTLE_NS > read_ns and it.ns > retired.get(it.writer, -1)]

    def own_intent(self, bucket: str, lo_ms: int, hi_ms: int, now_ns: int) -> Intent:
        """A new intent of this writer for [lo, hi), its time after any earlier one's."""
        b = self._bucket(bucket)
        b.own = [it for it in b.own if it.ns + SETTLE_NS > now_ns]
        last = b.own[-1].ns if b.own else 0
        return Intent(self.writer, max(now_ns, last + 1), lo_ms, hi_ms)

    def retirement(self, now_ns: int) -> list[tuple[str, Intent]]:
        """The last intents of a clean close: one covering nothing in each bucket this writer
        may have written within SETTLE, later than its other intents there. Its own intents
        end with it: a write after this (a store reused after close) records new ones."""
        out = []
        for bucket, b in self._buckets.items():
            if any(it.ns + SETTLE_NS > now_ns for it in b.own):
                out.append((bucket, Intent(self.writer, max(now_ns, b.own[-1].ns + 1), 0, 0)))
            b.own = []
        return out

    def recorded(self, bucket: str, intent: Intent) -> None:
        self._bucket(bucket).own.append(intent)

    def covering(self, bucket: str, lo_ms: int, hi_ms: int, now_ns: int) -> bool:
        """Whether a write of [lo, hi) may start now under one of this writer's intents."""
        return any(
            it.lo_ms <= lo_ms and hi_ms <= it.hi_ms and now_ns < it.ns + self.fresh_ns
            for it in self._bucket(bucket).own
        )

    # -- chunks -----------------------------------------------------------------------------

    def exact(self, bucket: str, chunks: set[int], ms: Iterable[int]) -> tuple[list[tuple[int, int]], set[int]]:
        """For the chunks of a batch that another writer's unsettled intent covers: the [lo, hi)
        ms ranges around the batch's own milliseconds in them, and those chunks. Such a chunk is
        forgotten before every batch until the intent settles, so a read of the whole minute
        would serve one batch; a read of the batch's milliseconds is as fresh for it, since
        placement looks only at an event's own millisecond. Two writers of one bucket in time
        order (workers, replicas without the proxy) read a second of points a batch instead of
        the minute (2 workers, one busy bucket: 5,300-7,100 -> 42,000-46,000 events/s,
        docs/influx.md). Nothing if no such intent covers the batch, or if the ranges would take
        more than one read (a batch out of time order): then those minutes are read whole."""
        b = self._buckets.get(bucket)
        if b is None or not b.unsettled:
            return [], set()
        spans = [(it.lo_ms // CHUNK_MS, (it.hi_ms - 1) // CHUNK_MS) for it in b.unsettled]
        doubted = {i for i in chunks if any(lo <= i <= hi for lo, hi in spans)}
        if not doubted:
            return [], set()
        ranges = chunk_ranges([m for m in ms if m // CHUNK_MS in doubted], EXACT_GAP_MS)
        if len(ranges) > READ_RANGES:
            return [], set()
        return ranges, doubted

    def claim(
        self, bucket: str, chunks: set[int], now_ms: int | None = None
    ) -> tuple[list[tuple[int, int]], dict[int, Chunk], list[Read]]:
        """For the chunks a batch touches (chunk_of): the [lo, hi) ms ranges to read, the
        chunks this caller fills from that read, and the reads of other callers filling some
        of them. `now_ms` (default: the clock) bounds how far ahead a read goes."""
        b = self._bucket(bucket)
        held = b.chunks
        pending: dict[int, Read] = {}  # by id: a read once however many of its chunks
        wanted: list[int] = []
        for i in chunks:
            c = held.get(i)
            if c is None:
                wanted.append(i)
            elif c.read is not None:
                pending[id(c.read)] = c.read
        if wanted:
            # Read a day ahead: producers in time order will want the next minutes soon, and on
            # InfluxDB 1.x every read copies what the write cache holds of each series it
            # reads, so one read of a day costs much less than many of a few minutes. Not into
            # the future, though: live producers read AHEAD_OF_NOW minutes at a time.
            last = max(wanted)
            now = (int(time.time() * 1000) if now_ms is None else now_ms) // CHUNK_MS
            end = min(last + READ_AHEAD, max(last, now) + AHEAD_OF_NOW)
            wanted += [i for i in range(last + 1, end + 1) if i not in held]
        ranges = chunk_ranges(wanted)
        mine: dict[int, Chunk] = {}
        read = Read()
        for lo, hi in ranges:
            for i in range(lo, hi):
                if i not in b.chunks:
                    mine[i] = b.chunks[i] = Chunk(read)
        read.left = len(mine)
        return [(lo * CHUNK_MS, hi * CHUNK_MS) for lo, hi in ranges], mine, list(pending.values())

    def fill(self, bucket: str, mine: dict[int, Chunk], points: Iterable[tuple[int, str]]) -> None:
        """Fill the claimed chunks from what the engine holds in their ranges (time ns, id)."""
        per = by_chunk(mine, points)
        b = self._bucket(bucket)
        # Kept as dicts (placement probes a dict ~8x faster) if compacting the least recently
        # used minutes makes room for them, else compacted at once: a bucket's whole history
        # read by one batch must not pass through dicts.
        self._compact_oldest(self.budget_points - sum(map(len, per.values())) * DICT_POINT - len(mine) * CHUNK_POINTS)
        for i, chunk in mine.items():
            chunk.load(per[i])
            if self.points + _cost(chunk) > self.budget_points:
                chunk.compact()
            chunk.usable = True
            if chunk.read is not None:
                chunk.read.ended(chunk)
            if b.chunks.get(i) is chunk:  # not forgotten while it was read
                self._lru[chunk] = (bucket, i)
                if chunk.marks:
                    self._loose[chunk] = None
                self.points += _cost(chunk)
        # No eviction here: the batch that read these has yet to use them (evict() after it).

    def abandon(self, bucket: str, mine: dict[int, Chunk]) -> None:
        """The read for claimed chunks failed: drop them, wake whoever waits."""
        b = self._bucket(bucket)
        for i, chunk in mine.items():
            if b.chunks.get(i) is chunk:
                del b.chunks[i]
            if chunk.read is not None:  # never usable: whoever waited reads it again
                chunk.read.ended(chunk)

    def known(self, bucket: str, indexes: set[int]) -> Known | None:
        """The placement view when every chunk is ready, else None (read again)."""
        b = self._buckets.get(bucket)
        if b is None:
            return None
        held = b.chunks
        chunks: dict[int, Chunk] = {}
        for i in indexes:
            c = held.get(i)
            if c is None or not c.usable:
                return None
            chunks[i] = c
        touch = self._lru.move_to_end  # every held, usable chunk is in the LRU
        for c in chunks.values():
            touch(c)
        return Known(chunks)

    def generation(self, bucket: str) -> int:
        return self._bucket(bucket).generation

    def record(self, bucket: str, placed: Sequence[tuple[NewEvent, int]], known: Known, generation: int) -> None:
        """What this process wrote and InfluxDB acknowledged. `place` marked it in the chunks
        it used; a chunk read again meanwhile may have missed it, so it is marked there too. If
        a delete of the bucket ran meanwhile, whether each point survived it is unknown: the
        chunks are forgotten instead."""
        b = self._bucket(bucket)
        if generation != b.generation:
            self.forget_ms(bucket, (ns // NS_PER_MS for _, ns in placed))
            return
        held = b.chunks
        loose = self._loose
        changed = set()
        for i, used in known.chunks.items():
            if held.get(i) is used:
                loose.setdefault(used)  # place() marked its points in the dict
            else:
                changed.add(i)  # forgotten, read again meanwhile, or fresh (read for this batch)
        # The budget counts what the held chunks gained (each chunk gives back its own cost
        # when it is compacted or goes); points of a minute no longer held are nowhere.
        if not changed:
            self.points += len(placed) * DICT_POINT
            return
        added = 0
        elsewhere: dict[int, list[tuple[NewEvent, int]]] = {}
        for e, ns in placed:  # one pass: a batch out of time order touches thousands of minutes
            i = e.at // CHUNK_MS
            if i in changed:
                elsewhere.setdefault(i, []).append((e, ns))
            else:
                added += 1
        for i, points in elsewhere.items():
            now = held.get(i)
            if now is None:
                continue
            counted = now in self._lru  # else being read: its fill() counts what it holds
            if counted:
                loose.setdefault(now)
            marks = now.marks
            for e, ns in points:
                if counted and ns not in marks:
                    added += 1
                marks[ns] = id_mark(e.id)
        self.points += added * DICT_POINT

    def deleting(self, bucket: str) -> None:
        self._bucket(bucket).generation = next(self._generations)

    def forget_ms(self, bucket: str, ms: Iterable[int]) -> None:
        b = self._bucket(bucket)
        for i in {m // CHUNK_MS for m in ms}:
            self._drop(bucket, b, i)

    def forget(self, bucket: str, lo_ms: int = EVERYTHING[0], hi_ms: int = EVERYTHING[1]) -> None:
        """Drop the chunks overlapping [lo, hi)."""
        b = self._buckets.get(bucket)
        if b is None:
            return
        lo, hi = lo_ms // CHUNK_MS, (hi_ms - 1) // CHUNK_MS
        for i in [i for i in b.chunks if lo <= i <= hi]:
            self._drop(bucket, b, i)

    def _drop(self, bucket: str, b: _Bucket, i: int) -> None:
        c = b.chunks.pop(i, None)
        if c is not None and self._lru.pop(c, None) is not None:
            self._loose.pop(c, None)
            self._uncount(c)

    def evict(self, now_ns: int | None = None) -> None:
        """While over the budget, compact chunks (`_compact_oldest`), then drop the least
        recently used (after a batch used its chunks: a batch larger than the budget still gets
        all of them first).
        Every RELEASE_EVERY_NS, also release the idle buckets (`now_ns`: default the clock)."""
        self._compact_oldest(self.budget_points)
        while self.points > self.budget_points and self._lru:
            c, (bucket, i) = self._lru.popitem(last=False)
            b = self._buckets.get(bucket)
            if b is not None and b.chunks.get(i) is c:
                del b.chunks[i]
            self._loose.pop(c, None)
            self._uncount(c)
        now = time.time_ns() if now_ns is None else now_ns
        if now >= self._release_at_ns:
            self._release_at_ns = now + RELEASE_EVERY_NS
            self.release_idle(now)

    def release_idle(self, now_ns: int) -> None:
        """Forget the buckets that hold no chunk and no intent of this writer younger than
        SETTLE (module docstring, "Idle buckets"). One pass over the buckets known: the ones
        holding chunks are at most the budget's worth."""
        idle = [
            name
            for name, b in self._buckets.items()
            if not b.chunks and not any(it.ns + SETTLE_NS > now_ns for it in b.own)
        ]
        for name in idle:
            del self._buckets[name]

    def bucket_count(self) -> int:
        """How many buckets the memory knows something of."""
        return len(self._buckets)

    def _compact_oldest(self, limit: int) -> None:
        """Compact chunks, in the order they got points in their dicts, until the memory holds at
        most `limit` (a compacted chunk stays usable: safe while a batch has yet to use its
        chunks)."""
        loose = self._loose
        while self.points > limit and loose:
            c, _ = loose.popitem(last=False)
            if c.marks:
                self.points = max(0, self.points - (DICT_POINT - 1) * len(c.marks))
                c.compact()

    def _uncount(self, chunk: Chunk) -> None:
        """A chunk left the LRU: give its share of the budget back."""
        self.points = max(0, self.points - _cost(chunk))


def _cost(chunk: Chunk) -> int:
    """What a chunk holds of the budget (see DICT_POINT)."""
    return len(chunk.keys) + DICT_POINT * len(chunk.marks) + CHUNK_POINTS
