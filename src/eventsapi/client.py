"""eventsapi.client: send events from a Python program, and read them back.

    from eventsapi.client import EventsClient
    with EventsClient("http://127.0.0.1:8080", token, "app1", app="api") as events:
        events.emit("deploy", {"rev": "abc"})

`emit` only buffers: a background flush sends batches (by size, `max_batch`, and by time,
`flush_interval`), gzip-compressed. Every event gets its id and `at` when it is emitted, so a
batch sent again after a lost answer, a 429, a 503 or a restart of the service stores nothing
twice (docs/api.md §5.1). Retries back off with jitter and honour `Retry-After`. The buffer is
bounded (`max_buffer`): past it `emit` drops the oldest events and counts them, or, with
`block=True`, waits for room. Nothing buffered is lost while the service restarts: it waits in
the buffer until acknowledged.

A refused credential (401, 403; and 404, a wrong URL) means "cannot send now", never "drop":
the batch is kept and retried with backoff, `counters.refused` counts the refusals,
`refused_since` says since when, and a warning is logged. `set_token(new)` (a new token or
ingest key) takes effect at once; everything kept is then delivered exactly once. A batch too
large for the service (413) is split until it fits; only events the service refuses one by one
as invalid are dropped, counted in `counters.rejected`.

`AsyncEventsClient` is the asyncio twin (`await events.emit(...)`); `EventsClient` runs one on
a background thread. Both have the query helpers: `retrieve` (every page, through cursors),
`stats`, `keys`, `delete_all`; `send` posts a batch the caller made itself, with the same
retries. No dependency beyond the service's own (aiohttp, msgspec).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gzip
import logging
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

REFUSED_STATUSES = {401, 403, 404}  # the credential or the address: kept until it is fixed
SPLIT_STATUSES = {400, 413}  # the batch as a whole: halves may pass, a single event is invalid
log = logging.getLogger("eventsapi.client")


class EventsError(Exception):
    """The service answered a query with an error (its problem+json detail)."""


@dataclass
class Counters:
    sent: int = 0  # acknowledged by the service
    rejected: int = 0  # refused one by one by the service as invalid (reasons were logged by it)
    dropped: int = 0  # dropped here: the buffer was full, or close() gave up
    retried: int = 0  # batches sent again
    refused: int = 0  # sends refused for the credential or address (401, 403, 404), kept


class AsyncEventsClient:
    def __init__(
        self,
        url: str,
        token: str,
        bucket: str,
        *,
        app: str | None = None,
        server: str | None = None,
        flush_interval: float = 1.0,
        max_batch: int = 500,
        max_buffer: int = 100_000,
        block: bool = False,
        timeout: float = 30.0,
        max_backoff: float = 30.0,
        compress: bool = True,
    ) -> None:
        self.base = f"{url.rstrip('/')}/api/bucket/{bucket}/data"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.app, self.server = app, server
        self.flush_interval, self.max_batch, self.max_buffer = flush_interval, max_batch, max_buffer
        self.block = block
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_backoff = max_backoff
        self.compress = compress  # gzip bodies: worth it over a network, not on loopback
        self.counters = Counters()
        # Appended to from any thread (deque appends are atomic); taken from by flush() only.
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        # The batch being sent: out of the buffer, so dropping the oldest buffered events can
        # never remove one that is on the wire, and kept here until the service acknowledges it.
        self._inflight: list[dict[str, Any]] = []
        # The flush loop and a caller's flush() would otherwise send the same batch twice and
        # then each remove it from the buffer: one sender at a time.
        self._sending = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._new_token: asyncio.Event | None = None
        self.refused_since: float | None = None  # epoch seconds: the credential is refused since then
        self._refusal_logged = 0.0

    # -- producing -------------------------------------------------------------------------

    def _event(
        self, name: str, data: dict[str, Any] | None, app: str | None, server: str | None, at: int | None
    ) -> dict[str, Any]:
        app = app or self.app
        if not app:
            raise ValueError("emit needs an app (app=..., or the client's app)")
        event = {
            "id": uuid.uuid4().hex,  # given once: a retry can never store it twice
            "event_name": name,
            "app_name": app,
            "at": int(time.time() * 1000) if at is None else at,  # with the id, the event's identity
            "data": data or {},
        }
        if server or self.server:
            event["server_name"] = server or self.server
        return event

    def _append(self, event: dict[str, Any]) -> bool:
        """Buffer one event; False when the buffer is full and the caller should wait."""
        if len(self._buffer) >= self.max_buffer:
            if self.block:
                return False
            self._buffer.popleft()
            self.counters.dropped += 1
        self._buffer.append(event)
        return True

    async def emit(
        self, name: str, data: dict[str, Any] | None = None, *, app: str | None = None,
        server: str | None = None, at: int | None = None,
    ) -> None:  # fmt: skip
        event = self._event(name, data, app, server, at)
        self._start()
        while not self._append(event):
            await asyncio.sleep(0.01)  # block=True: wait for the flusher to make room
        if len(self._buffer) >= self.max_batch and self._wake is not None:
            self._wake.set()

    def _start(self) -> None:
        if self._flusher is None:
            self._wake = asyncio.Event()
            self._flusher = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send everything buffered; return once the service acknowledged it (retrying)."""
        async with self._sending:
            while self._inflight or self._buffer:
                if not self._inflight:
                    self._inflight = self._take(self.max_batch)
                    continue
                await self._deliver(self._inflight)
                self._inflight = []

    async def send(self, events: Sequence[Any]) -> None:
        """Send one batch now, past the buffer, retrying as `flush` does until the service
        acknowledges it: for a producer that batches itself (the benchmark does). Each event is a
        dict, a `wire.FlatEvent` or its JSON text as `msgspec.Raw`, with its `id` and `at` set,
        so that a retry stores nothing twice."""
        await self._deliver(events)

    def set_token(self, token: str) -> None:
        """Use another token or ingest key from now on (one refused, or about to expire):
        what was kept for a refused credential is sent at once."""
        self.headers = {"Authorization": f"Bearer {token}"}
        if self._new_token is not None:
            self._new_token.set()

    async def _deliver(self, batch: Sequence[Any]) -> None:
        failures = 0
        while True:
            status, wait = await self._send(batch)
            if status == 200:
                if self.refused_since is not None:
                    log.warning("eventsapi: the credential is accepted again; sending what was kept")
                    self.refused_since = None
                return
            if status in SPLIT_STATUSES:
                if len(batch) == 1:  # this event itself is what the service refuses
                    self.counters.rejected += 1
                    return
                half = len(batch) // 2
                await self._deliver(batch[:half])
                await self._deliver(batch[half:])
                return
            failures += 1
            self.counters.retried += 1
            backoff = min(self.max_backoff, 0.2 * 2**failures) * (0.5 + random.random() / 2)
            if status in REFUSED_STATUSES:
                self._refused(status, len(batch), backoff)
            await self._pause(max(wait, backoff))

    def _refused(self, status: int, events: int, backoff: float) -> None:
        self.counters.refused += 1
        now = time.time()
        if self.refused_since is None:
            self.refused_since = now
        if now - self._refusal_logged >= 60:  # loud, but one line a minute
            self._refusal_logged = now
            log.warning(
                "eventsapi: the service refuses this client's credential or address (HTTP %d) since %s; "
                "%d events kept (buffered: %d), retrying in %.0f s; fix it with set_token()",
                status, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.refused_since)), events,
                len(self._buffer), backoff,
            )  # fmt: skip

    async def _pause(self, seconds: float) -> None:
        """Sleep before a retry; a new credential (set_token) ends it at once."""
        if self._new_token is None:
            self._new_token = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._new_token.wait(), seconds)
        self._new_token.clear()

    def _take(self, n: int) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        with contextlib.suppress(IndexError):  # an emitting thread may have dropped the oldest
            while len(batch) < n:
                batch.append(self._buffer.popleft())
        return batch

    async def _send(self, batch: Sequence[Any]) -> tuple[int, float]:
        """The service's status (0: no answer) and the seconds it asked to wait (0: none).
        A 200 whose body is cut off counts as no answer: the batch is sent again, and stored
        once, as its events carry their ids."""
        body = msgspec.json.encode(batch)
        headers = {**self.headers, "Content-Type": "application/json"}
        if self.compress:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._http().post(f"{self.base}/events/ingest", data=body, headers=headers) as resp:
                if resp.status == 200:
                    answer = await resp.json()
                    self.counters.rejected += len(answer.get("rejected", []))
                    self.counters.sent += answer.get("accepted", 0)
                    return 200, 0.0
                retry_after = resp.headers.get("Retry-After", "")
                return resp.status, float(retry_after) if retry_after.isdigit() else 0.0
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return 0, 0.0

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self, timeout: float | None = None) -> None:
        """Send what is buffered (giving up after `timeout` seconds, if given: what is left is
        counted as dropped), then release the connection."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            self.counters.dropped += len(self._buffer) + len(self._inflight)
            self._buffer.clear()
            self._inflight = []
        finally:
            if self._session is not None:
                await self._session.close()

    async def __aenter__(self) -> AsyncEventsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- querying --------------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[Any, dict[str, str]]:
        async with self._http().request(method, self.base + path, json=body, headers=self.headers) as resp:
            payload = await resp.json(content_type=None)
            if resp.status != 200:
                raise EventsError(payload.get("detail") if isinstance(payload, dict) else str(resp.status))
            return payload, dict(resp.headers)

    async def retrieve(
        self, event_name: str, *, page_size: int = 1000, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Every event of a name, newest first, following the cursors to the last page."""
        body: dict[str, Any] = {"event_name": event_name, "limit": page_size, **filters}
        while True:
            rows, headers = await self._call("POST", "/events", body)
            for row in rows:
                yield row
            cursor = headers.get("X-Next-Cursor")
            if not cursor:
                return
            body = {**body, "cursor": cursor, "offset": 0}

    async def stats(self, event_name: str, **params: Any) -> list[list[int]]:
        rows, _ = await self._call("POST", "/events/stats", {"event_name": event_name, **params})
        return rows  # type: ignore[no-any-return]

    async def keys(self) -> list[dict[str, Any]]:
        rows, _ = await self._call("GET", "/eventsKeysByApp")
        return rows  # type: ignore[no-any-return]

    async def delete_all(self) -> None:
        await self._call("DELETE", "/events/delete_all")


class EventsClient:
    """The same, for code without an event loop: an AsyncEventsClient on a background thread."""

    def __init__(self, url: str, token: str, bucket: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="eventsapi-client", daemon=True)
        self._thread.start()
        self._client: AsyncEventsClient = self._run(self._make(url, token, bucket, options))

    async def _make(self, url: str, token: str, bucket: str, options: dict[str, Any]) -> AsyncEventsClient:
        client = AsyncEventsClient(url, token, bucket, **options)
        client._start()
        return client

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def counters(self) -> Counters:
        return self._client.counters

    def emit(
        self, name: str, data: dict[str, Any] | None = None, *, app: str | None = None,
        server: str | None = None, at: int | None = None,
    ) -> None:  # fmt: skip
        event = self._client._event(name, data, app, server, at)
        while not self._client._append(event):  # block=True and full: wait for room
            time.sleep(0.01)
        if len(self._client._buffer) >= self._client.max_batch and self._client._wake is not None:
            self._loop.call_soon_threadsafe(self._client._wake.set)

    def flush(self) -> None:
        self._run(self._client.flush())

    def set_token(self, token: str) -> None:
        """Use another token or ingest key from now on; what was kept is then sent."""
        self._loop.call_soon_threadsafe(self._client.set_token, token)

    @property
    def refused_since(self) -> float | None:
        return self._client.refused_since

    def retrieve(self, event_name: str, **filters: Any) -> Iterator[dict[str, Any]]:
        pages = self._client.retrieve(event_name, **filters)

        async def following() -> dict[str, Any]:
            return await anext(pages)

        while True:
            try:
                yield self._run(following())
            except StopAsyncIteration:
                return

    def stats(self, event_name: str, **params: Any) -> list[list[int]]:
        return self._run(self._client.stats(event_name, **params))  # type: ignore[no-any-return]

    def keys(self) -> list[dict[str, Any]]:
        return self._run(self._client.keys())  # type: ignore[no-any-return]

    def delete_all(self) -> None:
        self._run(self._client.delete_all())

    def close(self, timeout: float | None = None) -> None:
        self._run(self._client.close(timeout))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> EventsClient:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
