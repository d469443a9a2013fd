"""eventsapi.client against a real `eventsapi serve`: nothing buffered is lost when the service
restarts mid-stream, nothing is stored twice, 429s are waited out, the buffer is bounded, and
the query helpers follow every page."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventsapi.client import AsyncEventsClient, EventsClient
from support.influxd import free_port
from support.service import Service

pytestmark = pytest.mark.slow


async def round_trip(events: AsyncEventsClient, name: str, n: int, **paging: int) -> list[int]:
    """Emit n events numbered in `data.i`, flush, and read back the numbers stored."""
    for i in range(n):
        await events.emit(name, {"i": i})
    await events.flush()
    return sorted([e["data"]["i"] async for e in events.retrieve(name, **paging)])


def test_5000_events_across_a_restart_are_stored_exactly_once(tmp_path: Path) -> None:
    with Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0"}) as service:
        token = service.token("--sub", "producer", "--bucket", "b", "--scope", "events:read events:write")
        with EventsClient(
            service.url, token, "b", app="api", flush_interval=0.05, max_batch=200, max_backoff=0.5
        ) as events:
            for i in range(2500):
                events.emit("tick", {"i": i})
            assert service.stop() == 0  # the service goes away with events still buffered
            for i in range(2500, 5000):
                events.emit("tick", {"i": i}, server="web-1")
            service.start()  # same port, same data
            events.flush()
            got = list(events.retrieve("tick"))
            assert sorted(e["data"]["i"] for e in got) == list(range(5000))
            assert len({e["id"] for e in got}) == 5000
            assert events.counters.sent >= 5000 and events.counters.dropped == 0
            assert events.counters.retried > 0
            assert sum(c for _, c in events.stats("tick", days=1, interval="hour")) == 5000
            assert events.keys() == [{"app_name": "api", "events": ["tick"]}]


async def test_async_client_waits_out_rate_limits_and_pages_through(tmp_path: Path) -> None:
    with Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0", "EVENTSAPI_RATE_LIMITS": "write=5/s:1"}) as service:
        token = service.token("--sub", "p", "--bucket", "b", "--scope", "events:read events:write events:delete")
        async with AsyncEventsClient(service.url, token, "b", app="api", flush_interval=0.01, max_batch=10) as events:
            assert await round_trip(events, "deploy", 60, page_size=7) == list(range(60))
            assert events.counters.sent == 60 and events.counters.retried > 0  # 429s, Retry-After honoured
            await events.delete_all()
            assert await events.keys() == []


async def test_concurrent_flushes_send_each_event_once_and_lose_none(tmp_path: Path) -> None:
    # Seen in CI: the flush loop and a caller's flush() sent the same head batch and each then
    # removed it from the buffer, so the batch behind it was never sent.
    with Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0"}) as service:
        token = service.token("--sub", "p", "--bucket", "b", "--scope", "events:read events:write")
        async with AsyncEventsClient(service.url, token, "b", app="api", flush_interval=60, max_batch=100) as events:
            for i in range(1000):
                await events.emit("tick", {"i": i})
            await asyncio.gather(events.flush(), events.flush(), events.flush())
            assert events.counters.sent == 1000 and not events._buffer
            got = [e async for e in events.retrieve("tick")]
            assert sorted(e["data"]["i"] for e in got) == list(range(1000))


async def test_the_buffer_is_bounded() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: every send fails
    events = AsyncEventsClient(nowhere, "t", "b", app="api", max_buffer=10, flush_interval=60)
    for i in range(15):
        await events.emit("e", {"i": i})
    assert events.counters.dropped == 5 and len(events._buffer) == 10
    assert [e["data"]["i"] for e in events._buffer] == list(range(5, 15))  # the oldest went
    await events.close(timeout=0.5)
    assert events.counters.dropped == 15


async def test_blocking_emit_waits_for_room() -> None:
    events = AsyncEventsClient("http://127.0.0.1:9", "t", "b", app="api", max_buffer=2, block=True, flush_interval=60)
    await events.emit("e")
    await events.emit("e")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(events.emit("e"), 0.3)  # full: it waits instead of dropping
    assert events.counters.dropped == 0
    await events.close(timeout=0.1)


def test_a_refused_credential_keeps_every_event_until_it_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A producer whose token expired keeps its events (never drops them for the credential),
    says so, and delivers each exactly once after set_token() with an ingest key."""
    import subprocess
    import sys
    import time

    with Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0", "EVENTSAPI_JWT_LEEWAY": "0"}) as service:
        expiring = service.token("--sub", "p", "--bucket", "b", "--scope", "events:write", "--ttl", "1")
        with EventsClient(service.url, expiring, "b", app="api", flush_interval=0.05, max_backoff=0.3) as events:
            time.sleep(1.5)  # the token has expired
            for i in range(300):
                events.emit("tick", {"i": i})
            deadline = time.monotonic() + 20
            while events.counters.refused < 3:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert events.counters.sent == 0 and events.counters.dropped == 0
            assert events.refused_since is not None
            assert any("refuses this client's credential" in r.message for r in caplog.records)
            made = subprocess.run(
                [sys.executable, "-m", "eventsapi", "keys", "create", "--bucket", "b", "--name", "producer"],
                cwd=tmp_path, env=service.env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            events.set_token(made.stdout.splitlines()[-1])
            events.flush()
            assert events.counters.sent == 300 and events.counters.dropped == 0 and events.refused_since is None
        reader = service.token("--sub", "r", "--bucket", "b", "--scope", "events:read")
        _, rows, _ = service.call("POST", "/api/bucket/b/data/events", {"event_name": "tick", "limit": 1000}, reader)
        assert sorted(r["data"]["i"] for r in rows) == list(range(300))


async def test_a_batch_too_large_is_split_not_dropped(tmp_path: Path) -> None:
    with Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0", "EVENTSAPI_MAX_EVENTS": "10"}) as service:
        token = service.token("--sub", "p", "--bucket", "b", "--scope", "events:read events:write")
        async with AsyncEventsClient(service.url, token, "b", app="api", flush_interval=60, max_batch=25) as events:
            assert await round_trip(events, "tick", 60) == list(range(60))
            assert events.counters.sent == 60 and events.counters.dropped == events.counters.rejected == 0


async def test_a_response_cut_mid_body_is_retried_not_waited_on_for_ever() -> None:
    """A 200 whose body never arrives whole: the client neither hangs nor counts it as sent; it
    sends the batch again (the ids make that safe)."""
    answers = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answers
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        await reader.readexactly(length)
        answers += 1
        if answers == 1:  # promises 100 bytes, sends 10, hangs up
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"accepted')
        else:
            body = b'{"accepted": 3, "rejected": []}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))  # fmt: skip
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, AsyncEventsClient(f"http://127.0.0.1:{port}", "t", "b", app="api", flush_interval=60,
                                        timeout=5, max_backoff=0.2) as events:  # fmt: skip
        for i in range(3):
            await events.emit("tick", {"i": i})
        await asyncio.wait_for(events.flush(), 20)
        assert answers == 2 and events.counters.sent == 3 and events.counters.retried == 1
