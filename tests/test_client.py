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
            for i in range(60):
                await events.emit("deploy", {"i": i})
            await events.flush()
            assert events.counters.sent == 60 and events.counters.retried > 0  # 429s, Retry-After honoured
            got = [e async for e in events.retrieve("deploy", page_size=7)]
            assert sorted(e["data"]["i"] for e in got) == list(range(60))
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
