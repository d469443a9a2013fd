"""An HTTP relay in front of a real influxd that makes it look like another engine or a slower
one: it can drop the MessagePack Accept header (engines that answer only JSON), hold some
writes back before passing them on (a writer whose request is still in flight), and hold some
query answers back after the engine gave them (a read already answered, still on its way)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from aiohttp import ClientSession, web

_HOP = ("content-length", "transfer-encoding", "content-encoding", "connection")


@dataclass
class Relay:
    address: str  # host:port to give a store instead of the engine's
    answer_types: list[str] = field(default_factory=list)  # Content-Type of each /query answer
    statements: list[str] = field(default_factory=list)  # the `q` of each /query, in order
    landed: list[bytes] = field(default_factory=list)  # each /write body the engine answered
    holding: asyncio.Event = field(default_factory=asyncio.Event)  # set while an answer is held

    async def until_landed(self, part: bytes, within_s: float = 10.0) -> None:
        """Wait until a /write holding `part` has been answered by the engine (a held one)."""
        async with asyncio.timeout(within_s):
            while not any(part in body for body in self.landed):
                await asyncio.sleep(0.01)


@asynccontextmanager
async def relay(
    engine: str,
    drop_accept: bool = False,
    hold_write: Callable[[bytes], float] | None = None,
    hold_answer: Callable[[str], float] | None = None,
) -> AsyncIterator[Relay]:
    """Relay to `engine` (host:port). `hold_write(body)`: seconds to hold that /write back;
    `hold_answer(q)`: seconds to hold the engine's answer to that /query back."""
    out = Relay("")

    async def forward(request: web.Request) -> web.Response:
        dropped = ("accept", "host") if drop_accept else ("host",)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in dropped}
        body = await request.read()
        if hold_write is not None and request.path == "/write":
            await asyncio.sleep(hold_write(body))
        async with (
            ClientSession() as s,
            s.request(request.method, f"http://{engine}{request.path_qs}", data=body, headers=headers) as r,
        ):
            if request.path == "/query":
                out.answer_types.append(r.headers.get("Content-Type", ""))
                out.statements += parse_qs(body.decode()).get("q", []) + request.query.getall("q", [])
            back = {k: v for k, v in r.headers.items() if k.lower() not in _HOP}
            answer = await r.read()
            if hold_answer is not None and request.path == "/query":
                pause = hold_answer(";".join(parse_qs(body.decode()).get("q", [])))
                if pause:
                    out.holding.set()
                    await asyncio.sleep(pause)
                    out.holding.clear()
            if request.path == "/write":
                out.landed.append(body)
            return web.Response(body=answer, status=r.status, headers=back)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    out.address = f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield out
    finally:
        await runner.cleanup()
