"""Store outages: prompt 503 + Retry-After, /readyz 503, and recovery without a restart."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from eventsapi.app import create_app
from eventsapi.config import Settings
from eventsapi.stores import open_store
from support import make_token
from support.influxd import InfluxD, start_influxd

EVENT = {"event_name": "e", "app_name": "a"}


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[InfluxD]:
    server = start_influxd(tmp_path / "influxd")
    if server is None:
        pytest.skip("influxd not installed")
    server.query('CREATE DATABASE "outage"')
    yield server
    server.stop()


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    sock.close()


async def _client(settings: Settings, url: str) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings, open_store(url, settings))))
    await client.start_server()
    return client


async def _expect_503(client: TestClient[Any, Any], budget: float) -> None:
    headers = {"Authorization": f"Bearer {make_token()}"}
    for method, path, body in [
        ("POST", "/api/bucket/b/data/events/ingest", [EVENT]),
        ("POST", "/api/bucket/b/data/events", {"event_name": "e"}),
        ("POST", "/api/bucket/b/data/events/stats", {"event_name": "e"}),
        ("GET", "/api/bucket/b/data/eventsKeysByApp", None),
        ("DELETE", "/api/bucket/b/data/events/delete_all", None),
    ]:
        started = time.monotonic()
        resp = await client.request(method, path, json=body, headers=headers)
        elapsed = time.monotonic() - started
        assert resp.status == 503, (path, await resp.text())
        assert resp.content_type == "application/problem+json"
        assert resp.headers["Retry-After"].isdigit()
        problem = await resp.json(content_type=None)
        assert "SELECT" not in problem["detail"] and "127.0.0.1" not in problem["detail"]
        assert elapsed < budget, (path, elapsed)
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200


async def test_influxd_stopped_then_back(settings: Settings, own_influxd: InfluxD) -> None:
    s = replace(settings, store_timeout=2.0)
    client = await _client(s, f"influxql://127.0.0.1:{own_influxd.port}/outage")
    headers = {"Authorization": f"Bearer {make_token()}"}
    try:
        resp = await client.post("/api/bucket/b/data/events/ingest", json=[EVENT], headers=headers)
        assert resp.status == 200
        own_influxd.stop()
        await _expect_503(client, budget=10)
        own_influxd.start()
        for _ in range(50):
            if (await client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.2)
        resp = await client.post("/api/bucket/b/data/events", json={"event_name": "e"}, headers=headers)
        assert resp.status == 200 and len(await resp.json()) == 1
    finally:
        await client.close()


@pytest.mark.parametrize("scheme", ["influxql", "influxdb2"])
async def test_store_that_never_answers_gives_503_within_the_timeout(
    settings: Settings, blackhole: int, scheme: str
) -> None:
    s = replace(settings, store_timeout=1.0)
    url = (
        f"influxql://127.0.0.1:{blackhole}/db"
        if scheme == "influxql"
        else f"influxdb2://127.0.0.1:{blackhole}?org=o&bucket=b"
    )
    client = await _client(s, url)
    try:
        # Timeout 1 s; allow scheduling slack but far below a hang.
        await _expect_503(client, budget=5)
    finally:
        await client.close()


async def test_store_refusing_connections_gives_503(settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = await _client(settings, f"influxql://127.0.0.1:{port}/db")
    try:
        await _expect_503(client, budget=5)
    finally:
        await client.close()


async def test_database_created_only_when_asked(settings: Settings, influxd: InfluxD) -> None:
    name = f"created_{int(time.time() * 1000)}"
    plain = await _client(settings, f"influxql://127.0.0.1:{influxd.port}/{name}")
    try:
        assert (await plain.get("/readyz")).status == 503  # the operator has not created it
    finally:
        await plain.close()
    asked = await _client(settings, f"influxql://127.0.0.1:{influxd.port}/{name}?create_database=1")
    try:
        assert (await asked.get("/readyz")).status == 200
        headers = {"Authorization": f"Bearer {make_token()}"}
        resp = await asked.post("/api/bucket/b/data/events/ingest", json=[EVENT], headers=headers)
        assert resp.status == 200
    finally:
        await asked.close()


async def _sqlite_client(settings: Settings, path: Path) -> TestClient[Any, Any]:
    s = replace(settings, store_url=f"sqlite:///{path}")
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(s, open_store(s.store_url, s))))
    await client.start_server()
    return client


async def _until_ingest_succeeds(client: TestClient[Any, Any], auth: dict[str, str]) -> Any:
    for _ in range(50):
        r = await client.post("/api/bucket/b/data/events/ingest", json=[EVENT], headers=auth)
        if r.status == 200:
            return await r.json()
        await asyncio.sleep(0.1)
    raise AssertionError("the store did not recover")


async def test_sqlite_unusable_at_start_answers_503_then_recovers(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database's directory should be")
    client = await _sqlite_client(settings, blocker / "events.db")
    auth = {"Authorization": f"Bearer {make_token()}"}
    try:
        r = await client.post("/api/bucket/b/data/events/ingest", json=[EVENT], headers=auth)
        assert r.status == 503 and "Retry-After" in r.headers
        assert r.content_type == "application/problem+json"
        r = await client.post("/api/bucket/b/data/events", json={"event_name": "e"}, headers=auth)
        assert r.status == 503
        assert (await client.get("/readyz")).status == 503
        blocker.unlink()  # the cause goes away: no restart needed
        assert await _until_ingest_succeeds(client, auth) == {"accepted": 1, "rejected": []}
        assert (await client.get("/readyz")).status == 200
        r = await client.post("/api/bucket/b/data/events", json={"event_name": "e"}, headers=auth)
        assert r.status == 200 and len(await r.json()) == 1
    finally:
        await client.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, filled to the brim (needs root to mount; CI runs as root)."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_sqlite_on_a_full_disk_at_start_recovers_when_space_is_freed(settings: Settings, tiny_disk: Path) -> None:
    import os

    filler = tiny_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    client = await _sqlite_client(settings, tiny_disk / "events.db")
    auth = {"Authorization": f"Bearer {make_token()}"}
    try:
        r = await client.post("/api/bucket/b/data/events/ingest", json=[EVENT], headers=auth)
        assert r.status == 503 and "Retry-After" in r.headers
        assert (await client.get("/readyz")).status == 503
        filler.unlink()
        assert await _until_ingest_succeeds(client, auth) == {"accepted": 1, "rejected": []}
        assert (await client.get("/readyz")).status == 200
    finally:
        await client.close()


async def test_retention_is_read_once_influxd_is_back(settings: Settings, own_influxd: InfluxD) -> None:
    """InfluxDB unreachable at start-up: its retention is read when it comes back, so old
    events are then rejected one by one rather than failing a whole write."""
    own_influxd.query('ALTER RETENTION POLICY "autogen" ON "outage" DURATION 1d SHARD DURATION 1h DEFAULT')
    own_influxd.stop()
    client = await _client(replace(settings, store_timeout=2.0), f"influxql://127.0.0.1:{own_influxd.port}/outage")
    headers = {"Authorization": f"Bearer {make_token()}"}
    try:
        assert (await client.get("/readyz")).status == 503
        own_influxd.start()
        ready: dict[str, Any] = {}
        for _ in range(100):  # a failed read is tried again after 5 s
            resp = await client.get("/readyz")
            ready = await resp.json(content_type=None)
            if resp.status == 200 and ready["retention_days"] != "unknown":
                break
            await asyncio.sleep(0.2)
        assert ready == {"status": "ready", "retention_days": 1}
        week_old = {**EVENT, "at": int(time.time() * 1000) - 7 * 86_400_000}
        resp = await client.post("/api/bucket/b/data/events/ingest", json=[week_old, EVENT], headers=headers)
        answer = await resp.json()
        assert resp.status == 200 and answer["accepted"] == 1
        assert "retention (1 days)" in answer["rejected"][0]["error"]
    finally:
        await client.close()
