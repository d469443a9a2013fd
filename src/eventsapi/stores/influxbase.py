"""What the two InfluxDB stores (influxql, influxdb2) share, above their query languages.

`InfluxStore` owns the parts that do not depend on the dialect: ingest (a point of its own for
every event: placement.py, then lineprotocol.py), the paged retrieve (paging.py), the live tail
over (ingested, id) positions (influxtail.py), ingest keys (influxkeys.py), eventsKeysByApp's
grouping, and the store URL's transport. A subclass supplies the dialect: the few reads below
marked abstract, each one query text (or a few) from its pure builder module.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from urllib.parse import SplitResult, parse_qs

from eventsapi.stores import influxtail
from eventsapi.stores.base import Store, StoreError, group_by_app
from eventsapi.stores.influxkeys import InfluxKeys
from eventsapi.stores.lineprotocol import NS_PER_MS, SeriesHeads, render_batches
from eventsapi.stores.occupancy import (
    CHUNK_MS,
    EVERYTHING,
    SETTLE_NS,
    Chunk,
    Intent,
    Known,
    Occupancy,
    chunk_of,
    chunk_span,
    intent_line,
    read_groups,
)
from eventsapi.stores.paging import FUTURE_NS, Rows, page
from eventsapi.stores.placement import Ledger, OccupiedPoint, place
from eventsapi.values import DeleteScope, EventQuery, ExportPosition, ExportQuery, NewEvent, StoredEvent, TailQuery

RETIRE_TIMEOUT_S = 5.0  # a close waits this long at most to record the process's retirement


def url_flag(parts: SplitResult, name: str) -> bool:
    """A `?name=1|true` option of a store URL."""
    return parse_qs(parts.query).get(name, ["0"])[0] in ("1", "true")


def http_base(parts: SplitResult) -> str:
    """The engine's HTTP base URL from a store URL (`?tls=1`: https)."""
    return f"{'https' if url_flag(parts, 'tls') else 'http'}://{parts.netloc}"


class IntentReads:
    """Reads the intents of every bucket that has batches waiting, in one go. A batch must see
    every intent acknowledged before it began (occupancy.py, "Intents"), so one that arrives
    while a read is in flight waits for the next read, which starts after it arrived and serves
    every batch that arrived meanwhile, of any bucket. Alone, a batch has a read of its own, as
    before; many small batches at once (a PM2 host each, say) share one request instead of a
    request each."""

    def __init__(self, occupancy: Occupancy, read: Callable[[dict[str, int]], Awaitable[dict[str, list[Intent]]]]):
        self._occupancy = occupancy
        self._read = read
        self._next: dict[str, list[asyncio.Future[None]]] = {}  # by bucket: the next read's waiters
        self._task: asyncio.Task[None] | None = None

    async def refresh(self, bucket: str) -> None:
        """Return once the bucket's intents, read after this call began, are applied to the
        memory; raise what the read raised."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._next.setdefault(bucket, []).append(waiter)
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        await waiter

    async def _run(self) -> None:
        waiting: dict[str, list[asyncio.Future[None]]] = {}
        try:
            while self._next:
                waiting, self._next = self._next, {}
                read_ns = time.time_ns()  # before the request: what it returns is at least this fresh
                occ = self._occupancy
                try:
                    found = await self._read({b: occ.intents_since(b, read_ns) for b in waiting})
                except Exception as exc:  # each batch fails as it would have alone
                    _wake(waiting, exc)
                else:
                    for bucket in waiting:
                        occ.apply_intents(bucket, found.get(bucket, ()), read_ns)
                    _wake(waiting, None)
                waiting = {}
        finally:
            self._task = None
            for waiters in (*waiting.values(), *self._next.values()):  # cancelled: none waits forever
                for w in waiters:
                    w.cancel()
            self._next = {}

    async def close(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _wake(waiting: dict[str, list[asyncio.Future[None]]], exc: Exception | None) -> None:
    for waiters in waiting.values():
        for w in waiters:
            if w.done():  # its batch gave up (cancelled)
                continue
            if exc is None:
                w.set_result(None)
            else:
                w.set_exception(exc)


class InfluxStore(InfluxKeys, Store):
    """An InfluxDB store, whatever its query language."""

    # Two processes that both read a point free before either wrote it both write it, and the
    # later write replaces the earlier (no compare-and-set). The later one follows its own read
    # by one small batch's write, milliseconds; 2 s covers an engine under load. A write slower
    # still is the residual docs/influx.md names.
    race_settle_s = 2.0
    one_writer_per_bucket = True

    def __init__(self, memory_points: int, write_timeout_s: float) -> None:
        self._ledger = Ledger()
        self._heads = SeriesHeads()
        self.occupancy = Occupancy(memory_points, write_timeout_s=write_timeout_s)
        self._intent_reads = IntentReads(self.occupancy, lambda since: self._intents(since))
        self._changing_now = 0  # writes and deletes of events in flight
        self._doubt_until_ns = 0  # one failed or was cut off: it may land until then

    # -- the dialect ----------------------------------------------------------------------

    @abc.abstractmethod
    async def _occupied(self, bucket: str, ranges: list[tuple[int, int]]) -> list[OccupiedPoint]:
        """The bucket's (time ns, id) points in the [lo, hi) millisecond ranges (at most 16)."""

    @abc.abstractmethod
    async def _intents(self, since: dict[str, int]) -> dict[str, list[Intent]]:
        """Each bucket's intents (occupancy.py) recorded after its time (ns), in as few
        requests as the dialect allows."""

    @abc.abstractmethod
    async def _write_lines(self, body: bytes) -> None:
        """Write line protocol; return once the engine acknowledged it."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Release the engine's connections."""

    @abc.abstractmethod
    async def _delete_all(self, bucket: str) -> None: ...

    @abc.abstractmethod
    async def _delete(self, scope: DeleteScope) -> int | None: ...

    @abc.abstractmethod
    def _rows(self, query: EventQuery) -> Rows:
        """paging.Rows for one retrieve query's filters."""

    @abc.abstractmethod
    async def _tail_ids(self, q: TailQuery, lower: int, since: int, until: int) -> Iterable[tuple[int, str]]:
        """(ingested, id) of the points stamped from `lower` and written in (since, until]."""

    @abc.abstractmethod
    async def _tail_rows(self, q: TailQuery, lower: int, since: int, until: int) -> list[tuple[int, StoredEvent]]:
        """(ingested, event) of the same points, whole."""

    @abc.abstractmethod
    async def _export_rows(
        self, q: ExportQuery, lower_ns: int, upper_ns: int, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        """Up to `limit` (point time ns, event) of `q` in [lower, upper), oldest first."""

    @abc.abstractmethod
    async def _app_event_pairs(self, bucket: str) -> Iterable[tuple[str, str]]:
        """Every (app, event name) the bucket holds, duplicates allowed."""

    # -- shared ---------------------------------------------------------------------------

    async def ingest(self, bucket: str, events: Sequence[NewEvent]) -> None:
        ms = {e.at for e in events}
        # One writer at a time per bucket and millisecond in this process (the ledger); what
        # the bucket holds comes from the occupancy memory, kept true across processes by
        # intents (occupancy.py).
        async with self._ledger.turn(bucket, ms):
            chunks = chunk_of(ms)
            known, generation = await self._known(bucket, chunks, ms)
            try:
                # place() marks the points it gives in the memory: if they are not all written,
                # forget those minutes (what landed is unknown; they are read again).
                placed = place(events, known.slots, CHUNK_MS)
                if placed:
                    lo, hi = chunk_span(chunks)
                    with self._changing():
                        for body in render_batches(bucket, placed, ingested_ns=time.time_ns(), heads=self._heads):
                            await self._intend(bucket, lo, hi)
                            await self._write_lines(body)
                    self.occupancy.record(bucket, placed, known, generation)
            except BaseException:
                self.occupancy.forget_ms(bucket, ms)
                raise
            finally:
                self.occupancy.evict()

    async def _known(self, bucket: str, chunks: set[int], ms: set[int]) -> tuple[Known, int]:
        """What the bucket holds in the batch's milliseconds, reading only the minutes this
        process does not know or may no longer trust, and of those another writer is changing
        only the batch's milliseconds when they are few (Occupancy.exact)."""
        occ = self.occupancy
        await self._intent_reads.refresh(bucket)
        while True:
            generation = occ.generation(bucket)
            exact, doubted = occ.exact(bucket, chunks, ms)
            whole = chunks - doubted if doubted else chunks
            ranges, mine, pending = occ.claim(bucket, whole)
            if mine:
                await self._read_chunks(bucket, ranges, mine)
            for read in pending:
                await read.done.wait()
            fresh = await self._occupied(bucket, exact) if doubted else ()
            known = occ.known(bucket, whole)
            if known is not None and generation == occ.generation(bucket):
                if doubted:
                    known.add_fresh(doubted, fresh)
                return known, generation

    async def _read_chunks(self, bucket: str, ranges: list[tuple[int, int]], mine: dict[int, Chunk]) -> None:
        """Fill the claimed chunks: reads of at most 16 ranges and 6 hours (read_groups), up to
        4 at once (reading a bucket's history the first time is the engine's work, done on as
        many cores), each read's chunks filled as it answers, so that memory holds one answer at
        a time per read."""
        limit = asyncio.Semaphore(4)

        async def read(group: list[tuple[int, int]]) -> None:
            async with limit:
                points = await self._occupied(bucket, group)
            part = {i: mine[i] for lo, hi in group for i in range(lo // CHUNK_MS, hi // CHUNK_MS) if i in mine}
            self.occupancy.fill(bucket, part, points)

        try:
            await asyncio.gather(*(read(group) for group in read_groups(ranges)))
        except BaseException:
            self.occupancy.abandon(bucket, {i: c for i, c in mine.items() if c.read is not None})
            raise

    async def _intend(self, bucket: str, lo_ms: int, hi_ms: int, always: bool = False) -> None:
        """Record an intent for [lo, hi) unless a recent one of this process covers it."""
        now = time.time_ns()
        if not always and self.occupancy.covering(bucket, lo_ms, hi_ms, now):
            return
        intent = self.occupancy.own_intent(bucket, lo_ms, hi_ms, now)
        await self._write_lines(intent_line(bucket, intent))
        self.occupancy.recorded(bucket, intent)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Around writes and deletes of events: one that fails or is cut off may still land,
        up to SETTLE later, so the process does not retire (close) until then."""
        self._changing_now += 1
        try:
            yield
        except BaseException:
            self._doubt_until_ns = time.time_ns() + SETTLE_NS
            raise
        finally:
            self._changing_now -= 1

    async def close(self) -> None:
        await self._intent_reads.close()
        await self._retire()
        await self._disconnect()

    async def _retire(self) -> None:
        """Tell the other writers (and this process's successor) that every write of this
        process has landed (occupancy.py, "Retirement"), when that is known to be true. Best
        effort: without it they wait for this writer's intents to settle."""
        now = time.time_ns()
        if self._changing_now or now < self._doubt_until_ns:
            return
        lines = b"".join(intent_line(bucket, it) for bucket, it in self.occupancy.retirement(now))
        if lines:
            with contextlib.suppress(StoreError, TimeoutError):
                await asyncio.wait_for(self._write_lines(lines), RETIRE_TIMEOUT_S)

    @contextlib.asynccontextmanager
    async def _deleting(self, bucket: str, lo_ms: int, hi_ms: int) -> AsyncIterator[None]:
        # Other processes forget the range when they read the intent; this one when done, and
        # its ingests in flight do not record what the delete may have removed.
        self.occupancy.deleting(bucket)
        try:
            with self._changing():
                await self._intend(bucket, lo_ms, hi_ms, always=True)
                yield
        finally:
            self.occupancy.deleting(bucket)
            self.occupancy.forget(bucket, lo_ms, hi_ms)

    async def delete_all(self, bucket: str) -> None:
        async with self._deleting(bucket, *EVERYTHING):
            await self._delete_all(bucket)

    async def delete(self, scope: DeleteScope) -> int | None:
        lo = scope.start if scope.start is not None else EVERYTHING[0]
        hi = scope.end if scope.end is not None else EVERYTHING[1]
        async with self._deleting(scope.bucket, lo, hi):
            return await self._delete(scope)

    async def retrieve(self, query: EventQuery) -> list[StoredEvent]:
        return await page(query, time.time_ns(), self._rows(query))

    position_pattern = influxtail.POSITION_PATTERN

    def position_ahead(self, position: str, newest: str) -> bool:
        return influxtail.position_ahead(position, newest)

    async def tail(self, q: TailQuery, after: str | None, limit: int) -> tuple[list[tuple[str, StoredEvent]], str]:
        if after is None:
            return [], influxtail.now_position()
        lower, since, until = influxtail.bounds(after)
        # Ids first, without payloads: the poll then reads whole rows only up to the write
        # holding the limit-th event (influxtail.narrow), never all a burst wrote.
        upto = influxtail.narrow(await self._tail_ids(q, lower, since, until), after, until, limit)
        if upto is None:
            return influxtail.cut([], after, until, limit)
        return influxtail.cut(await self._tail_rows(q, lower, since, upto), after, upto, limit)

    async def export(
        self, q: ExportQuery, after: ExportPosition | None, limit: int
    ) -> tuple[list[tuple[ExportPosition, StoredEvent]], ExportPosition | None]:
        # A position is (at, the point's time in ns): unique in the bucket, so exact.
        lower = max(int(after[1]) + 1 if after is not None else 0, (q.start or 0) * NS_PER_MS)
        upper = q.end * NS_PER_MS if q.end is not None else time.time_ns() + FUTURE_NS
        rows = [((e.at, str(ns)), e) for ns, e in await self._export_rows(q, lower, upper, limit)]
        return rows, (rows[-1][0] if len(rows) == limit else None)

    def export_position_valid(self, position: ExportPosition) -> bool:
        at, ns = position
        return ns.isdigit() and len(ns) <= 20 and int(ns) // NS_PER_MS == at

    async def keys_by_app(self, bucket: str) -> list[tuple[str, list[str]]]:
        return group_by_app(await self._app_event_pairs(bucket))
