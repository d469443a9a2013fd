"""Under `serve --workers N` on InfluxDB, every bucket's ingest is written by one worker.

The kernel spreads connections over the workers (SO_REUSEPORT), so without this a busy bucket
has N writers, and each reads again, for every batch, what the others may be changing in it
(stores/occupancy.py, "Intents"; docs/influx.md, "Two writers of one bucket"): 2 workers wrote
one busy bucket of producers in time order at 42,000-46,000 events/s against 60,000 for one
(5,300-7,100 while they read the whole minute), and a backfill out of time order re-read its
whole span per batch (15,336 events/s against 112,759 now). So each worker also listens on a
Unix socket of its own (`<dir>/worker-<index>.sock`), a bucket belongs to the worker
`crc32(bucket) % N`, and a worker that receives an ingest of a bucket it does not own, once it
has authorised it, passes the body on to the owner and relays the answer — what
`deploy/nginx` does for replicas, inside one machine.

Correctness never depends on it: a worker whose owner cannot be reached (restarting) writes
the batch itself, and the intents keep the two writers apart as before. A request that reached
the owner and got no answer may or may not have been written: 503, which a producer re-sends
(first write wins). A request that arrives over a worker's socket is one another worker has
authorised, rate-limited and will count and log: the owner does not again (`from_peer`).
"""

from __future__ import annotations

import socket
import zlib
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

from eventsapi.errors import StoreUnavailable
from eventsapi.parsers import WorkerSlot

# Of the owner's answer, what the client needs; the rest (length, date, server, RateLimit)
# this worker's own response sets.
RELAYED_HEADERS = ("Content-Type", "Retry-After")


def socket_path(directory: Path, index: int) -> Path:
    return directory / f"worker-{index}.sock"


def bind_socket(slot: WorkerSlot) -> socket.socket:
    """The listening Unix socket of this worker (a dead predecessor's file is replaced)."""
    path = socket_path(slot.directory, slot.index)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def from_peer(request: web.BaseRequest) -> bool:
    """Whether the request came over a worker's Unix socket (from another worker): a socket's
    name is its path there, an (address, port) on TCP; the service listens on no other Unix
    socket. Not a header, which a client could send."""
    transport = request.transport
    return transport is not None and isinstance(transport.get_extra_info("sockname"), str)


class Peers:
    """This worker's view of the others: who owns a bucket, and passing an ingest on to it."""

    def __init__(self, slot: WorkerSlot, timeout_s: float) -> None:
        self.slot = slot
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=1.0)
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    def owner(self, bucket: str) -> int:
        return zlib.crc32(bucket.encode()) % self.slot.count

    async def forward(self, request: web.Request, bucket: str, body: bytes) -> web.Response | None:
        """The owner's answer to this ingest, or None if this worker owns the bucket or the
        owner cannot be reached (then this worker writes it)."""
        owner = self.owner(bucket)
        if owner == self.slot.index or from_peer(request):
            return None
        session = self._sessions.get(owner)
        if session is None or session.closed:
            # A connection per request (a local connect costs microseconds): a kept-alive one
            # that a restarted owner closed would fail as if the owner had taken the batch.
            connector = aiohttp.UnixConnector(path=str(socket_path(self.slot.directory, owner)), force_close=True)
            session = self._sessions[owner] = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        headers = {h: v for h in ("Authorization", "Content-Type") if (v := request.headers.get(h)) is not None}
        try:
            async with session.post(
                URL("http://worker" + request.raw_path, encoded=True), data=body, headers=headers
            ) as answer:
                payload = await answer.read()
                relayed = {h: v for h in RELAYED_HEADERS if (v := answer.headers.get(h)) is not None}
                return web.Response(status=answer.status, body=payload, headers=relayed)
        except aiohttp.ClientConnectorError:
            return None  # never reached it: nothing was written there
        except (aiohttp.ClientError, TimeoutError):
            raise StoreUnavailable("the worker that writes this bucket did not answer") from None

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
