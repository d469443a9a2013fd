"""The workers' passing of a bucket's ingest to the worker that owns it (peers.py), in one
process on a real influxd: an owner that cannot be reached means the batch is written here, and
a request that came over a worker's socket (from another worker) is neither rate-limited nor
counted again. tests/test_workers.py runs it between two real workers."""

from __future__ import annotations

import asyncio
import json
import uuid
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from eventsapi.app import create_app
from eventsapi.config import Settings
from eventsapi.parsers import WorkerSlot, worker_slot
from eventsapi.peers import bind_socket, socket_path
from eventsapi.ratelimit import parse_limits
from support import SECRET, make_token


def owned_by(index: int, count: int = 2) -> str:
    return next(b for b in (f"bk{i}" for i in range(100)) if zlib.crc32(b.encode()) % count == index)


def test_a_worker_slot_is_read_from_its_variable() -> None:
    assert worker_slot("1/3:/run/x") == WorkerSlot(1, 3, Path("/run/x"))
    for bad in ("3/3:/run/x", "1/3", "a/3:/x", "1:/x", "/3:/x", "1/3:"):
        with pytest.raises(ValueError, match="INDEX/COUNT:DIRECTORY"):
            worker_slot(bad)


@pytest.fixture
async def worker(influxd: Any, tmp_path: Path) -> AsyncIterator[tuple[str, str, Any, str]]:
    """Worker 0 of 2 on a fresh database, served on TCP and on its worker socket; worker 1 is
    not running. Yields (TCP base URL, socket path, influxd, database)."""
    db = "p_" + uuid.uuid4().hex[:10]
    influxd.query(f'CREATE DATABASE "{db}"')
    slot = WorkerSlot(0, 2, tmp_path)
    settings = Settings(
        store_url=f"influxql://127.0.0.1:{influxd.port}/{db}",
        data_dir=tmp_path,
        jwt_secret=SECRET,
        worker_slot=slot,
        rate_limits=parse_limits("write=2/h"),
    )
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    await web.SockSite(runner, bind_socket(slot)).start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", str(socket_path(tmp_path, 0)), influxd, db
    finally:
        await runner.cleanup()


async def ingest(session: aiohttp.ClientSession, base: str, bucket: str, i: int) -> int:
    body = [{"event_name": "e", "app_name": "a", "id": f"x{i}"}]
    headers = {"Authorization": f"Bearer {make_token()}"}
    async with session.post(f"{base}/api/bucket/{bucket}/data/events/ingest", json=body, headers=headers) as r:
        return r.status


async def test_an_unreachable_owner_leaves_the_batch_to_this_worker_and_peers_are_trusted(
    worker: tuple[str, str, Any, str],
) -> None:
    base, sock, influxd, db = worker
    theirs, mine = owned_by(1), owned_by(0)
    async with aiohttp.ClientSession() as client:
        # Worker 1 owns `theirs` but is not there: written here. The rate limit (2 an hour)
        # is this worker's to take.
        assert [await ingest(client, base, theirs, i) for i in range(3)] == [200, 200, 429]
        assert [await ingest(client, base, mine, i) for i in range(3)] == [200, 200, 429]
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as peer:
        # Passed on by another worker, which took the rate and counts the request.
        assert [await ingest(peer, "http://worker", mine, i) for i in range(3, 6)] == [200, 200, 200]
        async with peer.get("http://worker/metrics") as r:
            metrics = await r.text()
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("eventsapi_requests_total{") and "ingest" in line
    )
    assert counted == 6  # the TCP requests only
    answer = json.loads(influxd.query('SELECT count("id") FROM "events" GROUP BY "bucket_id"', db))
    stored = {s["tags"]["bucket_id"]: s["values"][0][1] for s in answer["results"][0]["series"]}
    assert stored == {theirs: 2, mine: 5}


async def test_an_owner_that_takes_the_request_and_never_answers_is_a_503(
    worker: tuple[str, str, Any, str], tmp_path: Path
) -> None:
    """The owner may have written the batch or not: the client is told to send it again (a
    re-send stores nothing new if it was), and this worker does not write it as well."""
    base, _, influxd, db = worker

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.close()

    silent = await asyncio.start_unix_server(hang_up, path=str(socket_path(tmp_path, 1)))
    try:
        async with aiohttp.ClientSession() as client:
            body = [{"event_name": "e", "app_name": "a", "id": "x"}]
            headers = {"Authorization": f"Bearer {make_token()}"}
            url = f"{base}/api/bucket/{owned_by(1)}/data/events/ingest"
            async with client.post(url, json=body, headers=headers) as r:
                assert r.status == 503 and r.content_type == "application/problem+json"
                assert "Retry-After" in r.headers and "retry" in (await r.json())["detail"]
    finally:
        silent.close()
        await silent.wait_closed()
    assert json.loads(influxd.query('SELECT count("id") FROM "events"', db))["results"][0].get("series") is None
