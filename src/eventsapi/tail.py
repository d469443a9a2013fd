"""Live tail: newly ingested events, pushed to any number of subscribers per process.

One poller per (bucket, filters) reads the store's tail (Store.tail: ingest order, resumable
positions) every POLL_S, whatever the number of subscribers, and hands each batch to every
subscriber's bounded queue. So a replica delivers events ingested through any other replica
(they share only the store), with no new infrastructure.

A subscriber that resumes from a position (SSE `Last-Event-ID`) first joins the poller — so
nothing from then on can be missed — then reads the store from its position up to the point
where it joined, then takes its queue past that point: exactly once, in ingest order. A
subscriber that does not keep up (its queue full) is dropped and resumes with its last id;
it never makes the process's memory grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from eventsapi.problems import Problem
from eventsapi.stores.base import Store, StoreUnavailable
from eventsapi.values import StoredEvent, TailQuery

log = logging.getLogger("eventsapi.tail")

POLL_S = 0.25
BATCH = 1000
QUEUE_BATCHES = 256  # batches a subscriber may fall behind before it is dropped
HEARTBEAT_S = 15.0

Batch = list[tuple[str, StoredEvent]]
Events = AsyncIterator[Batch | None]


class Dropped(Exception):
    """The subscriber fell too far behind; it resumes from its last position."""


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[Batch | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_BATCHES))
    dropped: bool = False


class _Poller:
    def __init__(self, store: Store, query: TailQuery) -> None:
        self.store = store
        self.query = query
        self.position: str | None = None  # set once the first read answered
        self.ready = asyncio.Event()
        self.subscribers: set[_Subscriber] = set()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            try:
                batch, position = await self.store.tail(self.query, self.position, BATCH)
            except StoreUnavailable as exc:  # keep trying: the stream resumes when the store is back
                log.warning("live tail of %s: %s", self.query.bucket, exc)
                await asyncio.sleep(1.0)
                continue
            self.position = position
            self.ready.set()
            if batch:
                for sub in list(self.subscribers):
                    try:
                        sub.queue.put_nowait(batch)
                    except asyncio.QueueFull:
                        self._drop(sub)
            if len(batch) < BATCH:
                await asyncio.sleep(POLL_S)

    def _drop(self, sub: _Subscriber) -> None:
        """Let go of what a lagging subscriber holds; it wakes up, ends, and resumes later."""
        sub.dropped = True
        self.subscribers.discard(sub)
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)


class TailHub:
    """The pollers of one process, and the subscriptions to them."""

    def __init__(self, store: Store, max_streams_per_subject: int) -> None:
        self.store = store
        self.max_streams = max_streams_per_subject
        self._pollers: dict[TailQuery, _Poller] = {}
        self._streams: dict[str, int] = {}  # token subject -> open streams
        self._closing = asyncio.Event()

    @contextlib.asynccontextmanager
    async def open(self, subject: str, query: TailQuery, after: str | None) -> AsyncIterator[Events]:
        """A subscription for the length of a `with` block: batches of (position, event) in
        ingest order from `after` on (None: from now on), None every HEARTBEAT_S without
        events; Dropped when the subscriber lags. It always leaves cleanly."""
        if self._streams.get(subject, 0) >= self.max_streams:
            raise Problem(429, f"this token already has {self.max_streams} open streams", headers={"Retry-After": "5"})
        self._streams[subject] = self._streams.get(subject, 0) + 1
        poller = self._pollers.get(query)
        if poller is None:
            poller = self._pollers[query] = _Poller(self.store, query)
            poller.task = asyncio.create_task(poller.run())
        sub = _Subscriber()
        poller.subscribers.add(sub)
        try:
            yield self._deliver(poller, sub, after)
        finally:
            self._leave(subject, poller, sub)

    async def _deliver(self, poller: _Poller, sub: _Subscriber, after: str | None) -> Events:
        await poller.ready.wait()
        joined = poller.position
        if joined is None or self._closing.is_set():  # shut down before the first read
            return
        last = joined if after is None else after
        # Catch up from the subscriber's own position to where it joined the poller.
        while last < joined:
            batch, position = await self.store.tail(poller.query, last, BATCH)
            batch = [(p, e) for p, e in batch if p <= joined]
            if batch:
                last = batch[-1][0]
                yield batch
            if not batch or position >= joined:
                last = joined  # everything up to where it joined is delivered; the queue has the rest
                break
        while not self._closing.is_set():
            try:
                item = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                yield None
                continue
            if item is None:
                if sub.dropped:
                    raise Dropped()
                return
            fresh = [(p, e) for p, e in item if p > last]
            if fresh:
                last = fresh[-1][0]
                yield fresh

    def _leave(self, subject: str, poller: _Poller, sub: _Subscriber) -> None:
        self._streams[subject] -= 1
        if not self._streams[subject]:
            del self._streams[subject]
        poller.subscribers.discard(sub)
        if not poller.subscribers and poller.task is not None:
            poller.task.cancel()
            self._pollers.pop(poller.query, None)

    async def close(self) -> None:
        """Shutdown: every stream ends, every poller stops."""
        self._closing.set()
        for poller in list(self._pollers.values()):
            for sub in list(poller.subscribers):
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.put_nowait(None)
            if poller.task is not None:
                poller.task.cancel()
            poller.ready.set()  # wakes subscribers still waiting for the first read
        self._pollers.clear()
