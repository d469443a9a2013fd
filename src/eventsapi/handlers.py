"""The request handlers, the middleware that turns every failure into problem+json, and what
they share (the application's state keys, authorisation, body reading, JSON answers).

Every request takes one path: handler → validated request (validation.py, ingest_rules.py, ingest.py) → store
method (stores/base.py) → response. Which handler serves which path is routes.py's table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from eventsapi import errors, realtime, wire
from eventsapi.admission import Admission
from eventsapi.alert_rules import RuleFile
from eventsapi.alerts import BUCKET as ALERTS_BUCKET
from eventsapi.alerts import AlertEngine
from eventsapi.auth import Authenticator, Principal
from eventsapi.breakdown import breakdown, encode_chunks
from eventsapi.cardinality import CardinalityGuard
from eventsapi.config import Settings
from eventsapi.cursor import encode_cursor
from eventsapi.errors import StoreError
from eventsapi.ingest import Ingest, Retention, store_call
from eventsapi.observability import Metrics, route_name
from eventsapi.peers import Peers, from_peer
from eventsapi.problems import Problem, ValidationProblem, problem_response
from eventsapi.ratelimit import RateLimiter
from eventsapi.stores.base import Store
from eventsapi.tail import Batch, Dropped, Subscription, TailHub
from eventsapi.validation import (
    BUCKET_RE,
    check_bucket,
    decode_body,
    loads,
    parse_delete,
    parse_retrieve,
    parse_stats,
)
from eventsapi.values import TailQuery

log = logging.getLogger("eventsapi")
T = TypeVar("T")

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
ADMISSION = web.AppKey("admission", Admission)
GUARD = web.AppKey("guard", CardinalityGuard)
RATE = web.AppKey("rate", RateLimiter)
RATE_HEADERS = web.RequestKey("rate_headers", dict)
PRINCIPAL = web.RequestKey("principal", Principal)
HUB = web.AppKey("hub", TailHub)
RETENTION = web.AppKey("retention", Retention)
INGEST = web.AppKey("ingest", Ingest)
DOCUMENT = web.AppKey("document", dict)  # the OpenAPI document, built once per app
ALERT_RULES = web.AppKey("alert_rules", RuleFile)
ALERTS = web.AppKey("alerts", AlertEngine)
PEERS = web.AppKey("peers", Peers)
# Admission cost of one row of a retrieve page: a full page of 1,000 rows (up to 64 MiB of
# payloads) weighs as much as a histogram of 100,000 windows.
ROW_COST = 100
STREAM_CHUNK = 5000  # array items per streamed chunk
SSE_CHUNK = 64 << 10  # bytes of live-tail messages per write


# -- middlewares ---------------------------------------------------------------------------


@web.middleware
async def problems_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every failure into problem+json and count it; no stack trace or query leaves."""
    metrics = request.app[METRICS]
    route = route_name(request)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Problem as exc:
        response = problem_response(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)
        if exc.close:
            response.force_close()
    except StoreError as exc:  # errors.ANSWERS says what each kind answers
        row, detail, headers = errors.answer(exc)
        if row.counted:
            metrics.store_errors.labels(row.counted).inc()
            log.warning("store error on %s %s: %s", request.method, request.path, exc)
        response = problem_response(row.status, detail, headers=headers)
    except web.HTTPException as exc:
        detail = {
            404: "no such route",
            405: f"method {request.method} not allowed here",
            413: "request body too large",
        }.get(exc.status, exc.reason)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = problem_response(exc.status, detail, headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        response = problem_response(500, "unexpected error")
    if not from_peer(request):  # else counted by the worker that passed it on
        metrics.requests.labels(route, request.method, str(response.status)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)
    return response


async def call_store(request: web.Request, coro: Awaitable[T]) -> T:
    return await store_call(coro, request.app[SETTINGS].store_timeout, request.app[METRICS])


_CLASS_OF_SCOPE = {"events:read": "read", "events:write": "write", "events:delete": "delete"}


async def authorize(request: web.Request, scope: str) -> str:
    bucket = request.match_info["id"]
    principal: Principal = await request.app[AUTH].authenticate(request.headers.get("Authorization"))
    check_bucket(bucket)
    principal.require(bucket, scope)
    if bucket == ALERTS_BUCKET and scope != "events:read":
        # The alerts' own records (alerts.py): forging or deleting them would fire or silence alerts.
        raise Problem(403, f"bucket {ALERTS_BUCKET} holds the service's alert records: read-only")
    _take_rate(request, principal, bucket, scope)
    request[PRINCIPAL] = principal
    return bucket


def _take_rate(request: web.Request, principal: Principal, bucket: str, scope: str) -> None:
    """One request of this token's allowance for the bucket (429 past it, see ratelimit.py)."""
    if from_peer(request):  # the worker that passed it on took it already
        return
    cls = _CLASS_OF_SCOPE[scope]
    decision = request.app[RATE].check(principal.sub, bucket, cls)
    if decision is not None:
        if not decision.allowed:
            request.app[METRICS].rate_limited.labels(cls).inc()
            raise Problem(429, f"over the {cls} rate limit of this token for this bucket", headers=decision.headers)
        request[RATE_HEADERS] = decision.headers


async def _read_body(request: web.Request) -> bytes:
    """The whole body, bounded in size (client_max_size, after gzip inflation) and in time, so
    a slow client cannot hold a request open for ever."""
    try:
        async with asyncio.timeout(request.app[SETTINGS].read_timeout):
            return await request.read()
    except TimeoutError:
        raise Problem(408, "request body not received in time", close=True) from None
    except RequestPayloadError:
        raise Problem(
            400, "request body could not be read (bad Content-Encoding or truncated body)", close=True
        ) from None


async def _json_body(request: web.Request, if_empty: object = None) -> object:
    """The body as JSON; an empty body is `if_empty` when the route allows one."""
    body = await _read_body(request)
    if if_empty is not None and not body.strip():
        return if_empty
    try:
        return loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"body is not valid JSON: {exc}") from None


def json_answer(value: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), content_type="application/json", headers=headers)


# -- handlers ------------------------------------------------------------------------------


async def ingest(request: web.Request) -> web.Response:
    bucket = await authorize(request, "events:write")
    body = await _read_body(request)
    peers = request.app.get(PEERS)
    if peers is not None:  # serve --workers N on InfluxDB: the bucket's own worker writes it
        answer = await peers.forward(request, bucket, body)
        if answer is not None:
            return answer
    ndjson = request.content_type in ("application/x-ndjson", "application/jsonl")
    return json_answer(await request.app[INGEST](bucket, body, ndjson))


async def retrieve(request: web.Request) -> web.Response:
    bucket = await authorize(request, "events:read")
    query = parse_retrieve(bucket, await _json_body(request))
    async with request.app[ADMISSION].take(query.limit * ROW_COST):
        rows = await call_store(request, request.app[STORE].retrieve(query))
        headers = None
        if len(rows) == query.limit:
            last = rows[-1]
            headers = {"X-Next-Cursor": encode_cursor(last.at, last.id)}
        # StoredEvent is the wire shape: `data` goes out as the JSON text it was stored as.
        return json_answer(rows, headers)


async def stats(request: web.Request) -> web.StreamResponse:
    bucket = await authorize(request, "events:read")
    spec = parse_stats(bucket, await _json_body(request))
    async with request.app[ADMISSION].take(spec.cost()):
        query = spec.query()
        if spec.group_by is None:
            counts = await call_store(request, request.app[STORE].stats(query))
            return await _json_array(request, list(zip(query.starts, counts, strict=True)))
        counted = await call_store(request, request.app[STORE].stats_groups(query, spec.group_tag))
        series = breakdown(query, counted, spec.top)
        return await _send(request, encode_chunks(query, spec.group_by, series))


async def _json_array(request: web.Request, items: Sequence[object]) -> web.StreamResponse:
    """A JSON array; a long one is encoded and sent in chunks, so that the whole text is never
    held at once and the event loop is given back between chunks."""
    if len(items) <= STREAM_CHUNK:
        return json_answer(items)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(items), STREAM_CHUNK):
            chunk = msgspec.json.encode(items[i : i + STREAM_CHUNK])  # "[a,b,...]"
            yield (b"[" if i == 0 else b",") + chunk[1:-1]
        yield b"]"

    return await _send(request, chunks())


async def _send(request: web.Request, chunks: Iterable[bytes]) -> web.StreamResponse:
    """A JSON answer sent as it is encoded, chunk by chunk, the event loop given back between."""
    resp = web.StreamResponse()
    resp.content_type = "application/json"
    await resp.prepare(request)
    try:
        for chunk in chunks:
            await resp.write(chunk)
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client left; nothing to answer
    return resp


async def alerts(request: web.Request) -> web.Response:
    """The bucket's alert rules and their state, as this process evaluates them (every process
    evaluates every rule: any answers alike)."""
    bucket = await authorize(request, "events:read")
    engine = request.app.get(ALERTS)
    return json_answer(engine.describe(bucket) if engine is not None else [])


async def keys_by_app(request: web.Request) -> web.Response:
    bucket = await authorize(request, "events:read")
    keys = await call_store(request, request.app[STORE].keys_by_app(bucket))
    return json_answer([wire.AppEvents(app, names) for app, names in keys])


async def delete_all(request: web.Request) -> web.Response:
    bucket = await authorize(request, "events:delete")
    await call_store(request, request.app[STORE].delete_all(bucket))
    request.app[GUARD].forget(bucket)
    return json_answer(wire.Deleted(bucket, True))


def _public_base(request: web.Request) -> str:
    """The base URL clients reach this service at: configured, or as the request saw it."""
    settings = request.app[SETTINGS]
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme, host = request.scheme, request.host
    if settings.trust_forwarded:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    return f"{scheme}://{host}"


def _bucket(bucket: str, base: str) -> wire.Bucket:
    return wire.Bucket(bucket, bucket, bucket, wire.Node(wire.Endpoints(base, base)))


async def list_buckets(request: web.Request) -> web.Response:
    """The buckets the token grants (for `*`: every bucket the store holds events for)."""
    principal = await request.app[AUTH].authenticate(request.headers.get("Authorization"))
    principal.require_scope("events:read")
    _take_rate(request, principal, "*", "events:read")
    granted = sorted(b for b in principal.buckets if b != "*" and BUCKET_RE.fullmatch(b))
    if "*" in principal.buckets:
        granted = sorted(set(granted) | set(await call_store(request, request.app[STORE].buckets())))
    base = _public_base(request)
    return json_answer([_bucket(b, base) for b in granted])


async def get_bucket(request: web.Request) -> web.Response:
    bucket = await authorize(request, "events:read")
    return json_answer(_bucket(bucket, _public_base(request)))


async def delete(request: web.Request) -> web.Response:
    bucket = await authorize(request, "events:delete")
    scope = parse_delete(bucket, await _json_body(request, if_empty={}))  # no body: the whole bucket
    count = await call_store(request, request.app[STORE].delete(scope))
    request.app[GUARD].forget(bucket)
    return json_answer(wire.Deleted(bucket, True, count))


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: each newly ingested event as one message, `id:` its position; a
    reconnect with Last-Event-ID resumes right after it (tail.py)."""
    bucket = await authorize(request, "events:read")
    params = decode_body(dict(request.query), wire.TailParams)
    query = TailQuery(bucket, params.event_name, params.app_name, params.server_name)
    after = request.headers.get("Last-Event-ID") or None
    if after is not None and not re.fullmatch(request.app[STORE].position_pattern, after):
        raise ValidationProblem([{"field": "Last-Event-ID", "message": "not a position this service issued"}])
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # proxies must not buffer it
    principal = request[PRINCIPAL]
    # A lagging client is cut off at once, even one stuck in a write it never reads.
    cut = request.transport.abort if request.transport is not None else None
    async with request.app[HUB].open(principal.sub, query, after, on_drop=cut) as events:
        resp = web.StreamResponse(headers=headers)
        resp.content_type = "text/event-stream"
        await resp.prepare(request)
        async with _ends_with_credential(request, principal, events):
            try:
                await resp.write(b": live\n\n")
                async for batch in events:
                    if batch is None:
                        await resp.write(b": heartbeat\n\n")
                        continue
                    await _write_messages(resp, batch)
                if events.ended:  # the credential ended (or the service is stopping)
                    await resp.write(b"event: end\ndata: %s\n\n" % msgspec.json.encode({"reason": events.ended}))
            except (Dropped, ConnectionResetError):
                pass  # a lagging or gone client: it reconnects with its Last-Event-ID
        return resp


async def _write_messages(resp: web.StreamResponse, batch: Batch) -> None:
    """SSE messages in writes of about SSE_CHUNK bytes: a client that stops reading holds one
    such write in the service, not a whole batch encoded."""
    chunk: list[bytes] = []
    size = 0
    for p, e in batch:
        message = b"id: %s\ndata: %s\n\n" % (p.encode(), msgspec.json.encode(e))
        chunk.append(message)
        size += len(message)
        if size >= SSE_CHUNK:
            await resp.write(b"".join(chunk))
            chunk, size = [], 0
    if chunk:
        await resp.write(b"".join(chunk))


@contextlib.asynccontextmanager
async def _ends_with_credential(
    request: web.Request, principal: Principal, events: Subscription
) -> AsyncIterator[None]:
    """End a live subscription when its token expires or its key is revoked."""
    watcher = asyncio.create_task(request.app[AUTH].until_invalid(principal))

    def ended(task: asyncio.Task[str]) -> None:
        if not task.cancelled() and task.exception() is None:
            events.end(task.result())

    watcher.add_done_callback(ended)
    try:
        yield
    finally:
        watcher.cancel()


async def primus(request: web.Request) -> web.StreamResponse:
    return await realtime.feed(request, request.app[AUTH], request.app[HUB], _ends_with_credential)


async def response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every answer carries: the service's name (aiohttp would announce its own and
    Python's versions) and, for rate-limited routes, the RateLimit fields."""
    response.headers["Server"] = "eventsapi"
    rate = request.get(RATE_HEADERS)
    if rate:
        response.headers.update(rate)
