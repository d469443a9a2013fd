"""The live tail (GET .../data/events/stream, Server-Sent Events) on every store: every event
ingested while a subscriber is connected reaches it exactly once, late-stamped ones included,
nothing from other buckets or names; a reconnect with Last-Event-ID resumes without loss or
duplicates; many subscribers share one poller; a lagging one is dropped, not buffered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from conftest import ApiFactory
from support import Api

TIMEOUT = 10.0


class Stream:
    """A Server-Sent Events reader over an aiohttp response."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def messages(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        """The next n messages as (id, event)."""
        import json

        out: list[tuple[str, dict[str, Any]]] = []
        event_id, data = "", ""
        async with asyncio.timeout(TIMEOUT):
            while len(out) < n:
                line = (await self.resp.content.readline()).decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and data:
                    out.append((event_id, json.loads(data)))
                    event_id, data = "", ""
        return out

    async def nothing_more(self, wait: float = 1.5) -> bool:
        try:
            await asyncio.wait_for(self.messages(1), wait)
        except TimeoutError:
            return True
        return False


async def open_stream(api: Api, bucket: str, last_id: str | None = None, **params: str) -> Stream:
    headers = api.auth()
    if last_id:
        headers["Last-Event-ID"] = last_id
    resp = await api.client.get(f"/api/bucket/{bucket}/data/events/stream", params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/event-stream"
    assert resp.headers["X-Accel-Buffering"] == "no" and "Content-Encoding" not in resp.headers
    assert (await resp.content.readline()).startswith(b": ")  # the stream is live
    return Stream(resp)


def ev(i: int, name: str = "deploy", at: int | None = None) -> dict[str, Any]:
    return {"event_name": name, "app_name": "api", "at": at or int(time.time() * 1000), "id": f"e{i}"}


@pytest.fixture
async def streams() -> AsyncIterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for s in opened:
        s.resp.close()


async def test_each_event_arrives_once_in_ingest_order(api: Api, bucket: str, streams: list[Stream]) -> None:
    s = await open_stream(api, bucket, event_name="deploy")
    streams.append(s)
    now = int(time.time() * 1000)
    first = [ev(1), ev(2)]
    await api.ingest(bucket, first)
    await api.ingest(bucket + "-other", [ev(3)])  # another bucket
    await api.ingest(bucket, [ev(4, name="other")])  # another name
    await api.ingest(bucket, [ev(5, at=now - 5 * 60_000)])  # stamped 5 minutes late
    await api.ingest(bucket, first[:1])  # a re-send stores nothing, so streams nothing
    got = await s.messages(3)
    assert [e["id"] for _, e in got] == ["e1", "e2", "e5"]
    assert got[2][1] == {"id": "e5", "event_name": "deploy", "app_name": "api", "server_name": "", "at": now - 300_000,
                         "data": {}}  # fmt: skip
    assert [p for p, _ in got] == sorted(p for p, _ in got)
    assert await s.nothing_more()


async def test_last_event_id_resumes_without_loss_or_duplicates(api: Api, bucket: str, streams: list[Stream]) -> None:
    s = await open_stream(api, bucket)
    streams.append(s)
    await api.ingest(bucket, [ev(i) for i in range(3)])
    first = await s.messages(3)
    s.resp.close()
    await api.ingest(bucket, [ev(i) for i in range(3, 6)])  # while disconnected
    resumed = await open_stream(api, bucket, last_id=first[1][0])  # resume after the 2nd
    streams.append(resumed)
    await api.ingest(bucket, [ev(6)])
    got = await resumed.messages(5)
    assert [e["id"] for _, e in got] == ["e2", "e3", "e4", "e5", "e6"]
    assert await resumed.nothing_more()


async def test_many_subscribers_share_one_poller(
    make_api: ApiFactory, store_settings: Any, bucket: str, streams: list[Stream]
) -> None:
    from dataclasses import replace

    api = await make_api(replace(store_settings, max_streams=100))
    for _ in range(50):
        streams.append(await open_stream(api, bucket, event_name="deploy"))
    from eventsapi.app import HUB

    pollers = api.client.app[HUB]._pollers
    assert len(pollers) == 1
    await api.ingest(bucket, [ev(1), ev(2)])
    for s in streams:
        assert [e["id"] for _, e in await s.messages(2)] == ["e1", "e2"]


async def test_bad_last_event_id_and_stream_limit(make_api: ApiFactory, store_settings: Any, bucket: str) -> None:
    from dataclasses import replace

    api = await make_api(replace(store_settings, max_streams=2))
    resp = await api.client.get(
        f"/api/bucket/{bucket}/data/events/stream", headers={**api.auth(), "Last-Event-ID": "not-a-position"}
    )
    assert resp.status == 400
    resp = await api.client.get(f"/api/bucket/{bucket}/data/events/stream", params={"nope": "x"}, headers=api.auth())
    assert resp.status == 400
    held = [await open_stream(api, bucket), await open_stream(api, bucket)]
    resp = await api.client.get(f"/api/bucket/{bucket}/data/events/stream", headers=api.auth())
    assert resp.status == 429 and "Retry-After" in resp.headers
    for s in held:
        s.resp.close()


async def test_a_lagging_subscriber_is_dropped(make_api: ApiFactory, store_settings: Any, bucket: str) -> None:
    """One that does not take its batches while others arrive is dropped (it would resume with
    its last id) once its backlog passes EVENTSAPI_STREAM_BYTES, instead of the process holding
    them for it; what it held is let go at once and its connection is cut."""
    from dataclasses import replace

    import eventsapi.tail
    from eventsapi.app import HUB
    from eventsapi.values import TailQuery

    api = await make_api(replace(store_settings, stream_bytes=20_000))
    hub = api.client.app[HUB]
    cut: list[bool] = []
    keeping_up = 0
    async with hub.open("slow", TailQuery(bucket), None, on_drop=lambda: cut.append(True)) as events:
        async with hub.open("quick", TailQuery(bucket), None) as quick:
            reader = aiter(quick)
            for i in range(6):  # ~5 KiB each: the slow one's backlog passes 20,000 bytes
                await api.ingest(bucket, [{**ev(i), "data": {"pad": "x" * 5000}}])
                async with asyncio.timeout(TIMEOUT):
                    while not (batch := await anext(reader)):
                        pass
                keeping_up += len(batch)
            assert cut == [True] and keeping_up == 6  # the other subscriber kept everything
            assert hub.held_bytes < 10_000  # the slow one's backlog was let go: the quick one's last batch
        assert hub.held_bytes == 0
        with pytest.raises(eventsapi.tail.Dropped):
            async with asyncio.timeout(TIMEOUT):
                async for _ in events:
                    pass


async def test_a_resume_position_ahead_of_the_newest_event_is_400(api: Api, bucket: str) -> None:
    await api.ingest(bucket, [ev(1)])
    ahead = "99999999999999999999" if api.kind == "sqlite" else "99999999999999999999:x"
    for position in (ahead, "1" * 25, ahead + "x"):
        resp = await api.client.get(
            f"/api/bucket/{bucket}/data/events/stream", headers={**api.auth(), "Last-Event-ID": position}
        )
        assert resp.status == 400, position
        assert "Last-Event-ID" in (await resp.json())["errors"][0]["field"]


async def test_a_stream_ends_when_its_token_expires(api: Api, bucket: str) -> None:
    from support import make_token

    api.token = make_token(ttl=2)
    s = await open_stream(api, bucket)
    try:
        await api.ingest(bucket, [ev(1)])
        assert [e["id"] for _, e in await s.messages(1)] == ["e1"]
        async with asyncio.timeout(TIMEOUT):
            rest = await s.resp.content.read()  # until the service ends the stream
        assert b"event: end" in rest and b"token expired" in rest
    finally:
        s.resp.close()


async def test_the_realtime_feed_ends_when_its_token_expires(api: Api, bucket: str) -> None:
    import json

    from support import make_token

    ws = await api.client.ws_connect(f"/primus?token={make_token(ttl=2)}")
    try:
        await ws.send_str(json.dumps({"action": "sub", "public_id": bucket, "filters": ["human:event"]}))
        await asyncio.sleep(0.5)
        await api.ingest(bucket, [ev(1)])
        async with asyncio.timeout(TIMEOUT):
            first = await ws.receive()
            assert json.loads(first.data)["data"][1]["human:event"][0]["id"] == "e1"
            closing = await ws.receive()
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1008 and closing.extra == "token expired"
    finally:
        await ws.close()


async def test_a_stream_ends_within_10_s_of_its_key_being_revoked(api: Api, bucket: str) -> None:
    from eventsapi import keys
    from eventsapi.app import STORE

    key, record = keys.new_key("dashboard", [bucket], "events:read", int(time.time() * 1000))
    store = api.client.app[STORE]
    await store.key_create(record)
    api.token = key
    s = await open_stream(api, bucket)
    try:
        await store.key_revoke(record.key_id, int(time.time() * 1000))
        revoked = time.monotonic()
        async with asyncio.timeout(12):
            rest = await s.resp.content.read()
        assert b"event: end" in rest and b"key revoked" in rest and time.monotonic() - revoked <= 10
    finally:
        s.resp.close()
