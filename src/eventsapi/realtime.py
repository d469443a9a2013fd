"""PM2's realtime feed: the WebSocket `@pm2/js-api` opens at `{endpoints.realtime}/primus`.

The client authenticates with `?token=<JWT>` (PM2's protocol: the token is in the URL, so query
strings are never logged), then sends `{"action": "sub", "public_id": <bucket>, "filters":
[...]}`, again each time its listeners change. While "human:event" is among the filters, every
newly ingested event of the bucket is pushed, grouped by server as PM2 Plus does:
`{"data": ["human:event", {"server_name": S, "human:event": [events of S]}]}`. The events come
from the same live tail as the SSE route (tail.py), with the same guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import msgspec
from aiohttp import WSMsgType, web

from eventsapi.auth import Authenticator, Principal
from eventsapi.problems import Problem
from eventsapi.tail import Dropped, Subscription, TailHub
from eventsapi.validation import BUCKET_RE
from eventsapi.values import StoredEvent, TailQuery

log = logging.getLogger("eventsapi.realtime")
FILTER = "human:event"


def packets(events: list[tuple[str, StoredEvent]]) -> list[bytes]:
    """PM2 Plus messages for a batch: one per server, in the batch's order."""
    by_server: dict[str, list[StoredEvent]] = defaultdict(list)
    for _, e in events:
        by_server[e.server].append(e)
    return [
        msgspec.json.encode({"data": [FILTER, {"server_name": server, FILTER: evs}]})
        for server, evs in by_server.items()
    ]


class _Sub(msgspec.Struct):
    action: str
    public_id: str = ""
    filters: list[str] = []


EndsWith = Callable[[web.Request, Principal, Subscription], AbstractAsyncContextManager[None]]


async def feed(request: web.Request, auth: Authenticator, hub: TailHub, ends_with: EndsWith) -> web.StreamResponse:
    token = request.query.get("token", "")
    try:
        principal = await auth.authenticate(f"Bearer {token}")
        principal.require_scope("events:read")
    except Problem as exc:
        raise web.HTTPUnauthorized(text=exc.detail) from None
    ws = web.WebSocketResponse(heartbeat=30.0, compress=False)
    await ws.prepare(request)
    pusher: asyncio.Task[None] | None = None
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                sub = msgspec.json.decode(msg.data, type=_Sub)
            except msgspec.DecodeError:
                continue  # not a message of this protocol
            if sub.action != "sub":
                continue
            if pusher is not None:
                pusher.cancel()
                pusher = None
            if not BUCKET_RE.fullmatch(sub.public_id) or not principal.grants(sub.public_id):
                await ws.send_json({"error": f"token does not grant bucket {sub.public_id!r}"})
                continue
            if FILTER in sub.filters:
                pusher = asyncio.create_task(_push(request, ws, hub, principal, sub.public_id, ends_with))
    finally:
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher
    return ws


async def _push(
    request: web.Request, ws: web.WebSocketResponse, hub: TailHub, principal: Principal, bucket: str, ends: EndsWith
) -> None:
    # A lagging client is cut off at once (PM2's client reconnects by itself; this protocol has
    # no resume position, so what was ingested meanwhile is not replayed).
    cut = request.transport.abort if request.transport is not None else None
    try:
        async with (
            hub.open(principal.sub, TailQuery(bucket), None, on_drop=cut) as events,
            ends(request, principal, events),
        ):
            async for batch in events:
                if batch:
                    for packet in packets(batch):
                        await ws.send_str(packet.decode())  # text frames: the client JSON.parses them
            if events.ended:  # the token expired or the key was revoked
                await ws.close(code=1008, message=events.ended.encode())
    except (Dropped, ConnectionResetError):
        await ws.close(code=1013, message=b"lagging: reconnect")
    except Problem as exc:  # too many streams for this token
        await ws.send_json({"error": exc.detail})
