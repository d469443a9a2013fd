"""Live tail: newly ingested events, pushed to any number of subscribers per process.

One poller per (bucket, filters) reads the store's tail (Store.tail: ingest order, resumable
positions) every POLL_S, whatever the number of subscribers, and hands each batch to every
subscriber's queue. So a replica delivers events ingested through any other replica (they
share only the store), with no new infrastructure.

A subscriber that resumes from a position (SSE `Last-Event-ID`) first joins the poller — so
nothing from then on can be missed — then reads the store from its position up to the point
where it joined, then takes its queue past that point: exactly once, in ingest order.

Memory is bounded in bytes, not batches (docs/api.md §5.10). A batch is held once however many
subscribers queue it; a subscriber whose backlog would pass `stream_bytes`, or whose backlog
would take the process's held batches past `total_bytes`, is dropped: its queue is let go at
once, its connection is cut (`on_drop`), and it resumes later with its last position. A
subscriber with nothing queued always takes the next batch, so a large batch never stops a
subscriber that keeps up. At most READS store reads run at once, so what is in flight is
bounded too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from eventsapi.errors import RETRY_AFTER
from eventsapi.problems import Problem, ValidationProblem
from eventsapi.stores.base import Store, StoreUnavailable
from eventsapi.values import StoredEvent, TailQuery

log = logging.getLogger("eventsapi.tail")

POLL_S = 0.25
BATCH = 200  # events per store read: with 64 KiB payloads, at most 13 MiB in one read
HEARTBEAT_S = 15.0
READS = 4  # store reads for live tails at once per process: each may hold BATCH events in flight
EVENT_OVERHEAD = 400  # bytes an event costs beyond its text (its objects, position, list slot)

Batch = list[tuple[str, StoredEvent]]
Events = AsyncIterator[Batch | None]


class Dropped(Exception):
    """The subscriber fell too far behind; it resumes from its last position."""


def batch_bytes(batch: Batch) -> int:
    """What a batch costs in memory, near enough to bound it."""
    return sum(len(e.data) + len(e.name) + len(e.app) + len(e.server) + len(e.id) + EVENT_OVERHEAD for _, e in batch)


@dataclass(eq=False)
class _Held:
    """One polled batch, held while any subscriber still has it queued."""

    batch: Batch
    size: int
    refs: int = 0


@dataclass(eq=False)
class _Subscriber:
    on_drop: Callable[[], None] | None
    queue: asyncio.Queue[_Held | None] = field(default_factory=asyncio.Queue)
    backlog: int = 0  # bytes queued for it, and of the batch it is being given
    current: _Held | None = None  # that batch: counted until the subscriber asks for the next
    dropped: bool = False
    ended: str | None = None  # why the hub ended it (its credential, shutdown)


@dataclass
class _Memory:
    """The process's held batches, against the configured bounds."""

    stream_bytes: int
    total_bytes: int
    held: int = 0

    def offer(self, sub: _Subscriber, item: _Held) -> bool:
        """Queue a batch for a subscriber, unless that would pass a bound."""
        if sub.backlog:  # one that keeps up always takes the next batch
            if sub.backlog + item.size > self.stream_bytes:
                return False
            if item.refs == 0 and self.held + item.size > self.total_bytes:
                return False
        if item.refs == 0:
            self.held += item.size
        item.refs += 1
        sub.backlog += item.size
        sub.queue.put_nowait(item)
        return True

    def release(self, sub: _Subscriber, item: _Held) -> None:
        sub.backlog -= item.size
        item.refs -= 1
        if item.refs == 0:
            self.held -= item.size

    def clear(self, sub: _Subscriber) -> None:
        if sub.current is not None:
            self.release(sub, sub.current)
            sub.current = None
        while not sub.queue.empty():
            item = sub.queue.get_nowait()
            if item is not None:
                self.release(sub, item)


class _Poller:
    def __init__(self, store: Store, query: TailQuery, memory: _Memory, reads: asyncio.Semaphore) -> None:
        self.store = store
        self.query = query
        self.memory = memory
        self.reads = reads
        self.position: str | None = None  # set once the first read answered
        self.ready = asyncio.Event()
        self.subscribers: set[_Subscriber] = set()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            try:
                async with self.reads:
                    batch, position = await self.store.tail(self.query, self.position, BATCH)
            except StoreUnavailable as exc:  # keep trying: the stream resumes when the store is back
                log.warning("live tail of %s: %s", self.query.bucket, exc)
                await asyncio.sleep(1.0)
                continue
            self.position = position
            self.ready.set()
            if batch:
                item = _Held(batch, batch_bytes(batch))
                for sub in list(self.subscribers):
                    if not self.memory.offer(sub, item):
                        self.drop(sub)
            if len(batch) < BATCH:
                await asyncio.sleep(POLL_S)

    def drop(self, sub: _Subscriber) -> None:
        """Let go of what a lagging subscriber holds and cut its connection; it resumes later."""
        sub.dropped = True
        self.subscribers.discard(sub)
        self.memory.clear(sub)
        sub.queue.put_nowait(None)
        if sub.on_drop is not None:
            sub.on_drop()


class Subscription:
    """What `TailHub.open` gives: iterate it for batches; `end` stops it from outside."""

    def __init__(self, hub: TailHub, poller: _Poller, sub: _Subscriber, after: str | None) -> None:
        self._hub, self._poller, self._sub, self._after = hub, poller, sub, after

    def __aiter__(self) -> Events:
        return self._hub._deliver(self._poller, self._sub, self._after)

    def end(self, reason: str) -> None:
        """End the subscription (its iteration stops; `ended` says why)."""
        if self._sub.ended is None:
            self._sub.ended = reason
            self._hub._memory.clear(self._sub)
            self._sub.queue.put_nowait(None)

    @property
    def ended(self) -> str | None:
        return self._sub.ended


class TailHub:
    """The pollers of one process, and the subscriptions to them."""

    def __init__(
        self,
        store: Store,
        max_streams_per_subject: int,
        stream_bytes: int = 4 << 20,
        total_bytes: int = 32 << 20,
        store_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.max_streams = max_streams_per_subject
        self.store_timeout = store_timeout
        self._memory = _Memory(stream_bytes, total_bytes)
        self._reads = asyncio.Semaphore(READS)
        self._pollers: dict[TailQuery, _Poller] = {}
        self._streams: dict[str, int] = {}  # token subject -> open streams
        self._closing = asyncio.Event()

    @property
    def held_bytes(self) -> int:
        """Bytes of batches queued for subscribers now (what total_bytes bounds)."""
        return self._memory.held

    @contextlib.asynccontextmanager
    async def open(
        self, subject: str, query: TailQuery, after: str | None, on_drop: Callable[[], None] | None = None
    ) -> AsyncIterator[Subscription]:
        """A subscription for the length of a `with` block: batches of (position, event) in
        ingest order from `after` on (None: from now on), None every HEARTBEAT_S without
        events; Dropped when the subscriber lags (after `on_drop` was called). A position
        ahead of the newest event is a ValidationProblem. It always leaves cleanly."""
        if self._streams.get(subject, 0) >= self.max_streams:
            too_many = f"this token already has {self.max_streams} open streams"
            raise Problem(429, too_many, headers={"Retry-After": RETRY_AFTER})
        self._streams[subject] = self._streams.get(subject, 0) + 1
        poller = self._pollers.get(query)
        if poller is None:
            poller = self._pollers[query] = _Poller(self.store, query, self._memory, self._reads)
            poller.task = asyncio.create_task(poller.run())
        sub = _Subscriber(on_drop)
        poller.subscribers.add(sub)
        try:
            if after is not None:
                await self._check_position(poller, after)
            yield Subscription(self, poller, sub, after)
        finally:
            self._leave(subject, poller, sub)

    async def _check_position(self, poller: _Poller, after: str) -> None:
        """A resume position past everything the store holds would make a stream that never
        says anything: refuse it."""
        try:
            async with asyncio.timeout(self.store_timeout):
                await poller.ready.wait()
        except TimeoutError:
            raise StoreUnavailable("live tail: the store did not answer") from None
        if poller.position is not None and self.store.position_ahead(after, poller.position):
            raise ValidationProblem([{"field": "Last-Event-ID", "message": "ahead of the newest event"}])

    async def _deliver(self, poller: _Poller, sub: _Subscriber, after: str | None) -> Events:
        await poller.ready.wait()
        joined = poller.position
        if joined is None or self._closing.is_set():  # shut down before the first read
            return
        last = joined if after is None else after
        # Catch up from the subscriber's own position to where it joined the poller.
        while last < joined and sub.ended is None and not sub.dropped:
            async with self._reads:
                batch, position = await self.store.tail(poller.query, last, BATCH)
            batch = [(p, e) for p, e in batch if p <= joined]
            if batch:
                last = batch[-1][0]
                yield batch
            if not batch or position >= joined:
                last = joined  # everything up to where it joined is delivered; the queue has the rest
                break
        while not self._closing.is_set():
            if sub.current is not None:  # the last batch is written: it no longer counts
                self._memory.release(sub, sub.current)
                sub.current = None
            try:
                item = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                yield None
                continue
            if item is None:
                if sub.dropped:
                    raise Dropped()
                return
            sub.current = item
            fresh = [(p, e) for p, e in item.batch if p > last]
            if fresh:
                last = fresh[-1][0]
                yield fresh

    def _leave(self, subject: str, poller: _Poller, sub: _Subscriber) -> None:
        self._streams[subject] -= 1
        if not self._streams[subject]:
            del self._streams[subject]
        poller.subscribers.discard(sub)
        self._memory.clear(sub)
        if not poller.subscribers and poller.task is not None:
            poller.task.cancel()
            self._pollers.pop(poller.query, None)

    async def close(self) -> None:
        """Shutdown: every stream ends, every poller stops."""
        self._closing.set()
        for poller in list(self._pollers.values()):
            for sub in list(poller.subscribers):
                sub.ended = sub.ended or "shutting down"
                self._memory.clear(sub)
                sub.queue.put_nowait(None)
            if poller.task is not None:
                poller.task.cancel()
            poller.ready.set()  # wakes subscribers still waiting for the first read
        self._pollers.clear()
