"""The influxdb2 store end to end on the wire: the service, driven over HTTP with plain and
hostile values, talks to a recording endpoint in place of InfluxDB 2. Every Flux text it sends
must pass libflux, every write must be line protocol with the schema, and deletes must carry
the tag predicate. (The live-InfluxDB run of the conformance suite is in test_conformance.py,
when EVENTSAPI_TEST_INFLUXDB2_URL is set.)"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from eventsapi.app import create_app
from eventsapi.config import Settings
from eventsapi.stores import open_store
from eventsapi.stores.lineprotocol import encode_tag
from support import HOSTILE, make_token
from support.flux import run_libflux, string_literals


def structure(node: Any) -> Any:
    """The AST with every literal's value blanked (times and limits vary between queries)."""
    if isinstance(node, dict):
        if str(node.get("type", "")).endswith("Literal"):
            return {"type": node["type"]}
        return {k: structure(v) for k, v in node.items() if k not in ("location", "source")}
    if isinstance(node, list):
        return [structure(v) for v in node]
    return node


async def test_service_sends_only_valid_flux(settings: Settings) -> None:
    seen: dict[str, list[Any]] = {"query": [], "write": [], "delete": []}

    async def query(request: web.Request) -> web.Response:
        body = await request.json()
        seen["query"].append(body)
        return web.Response(body=b"", content_type="text/csv")

    async def write(request: web.Request) -> web.Response:
        # aiohttp inflates the gzip body; the header shows the store compressed it.
        assert request.headers.get("Content-Encoding") == "gzip"
        raw = await request.read()
        seen["write"].append((dict(request.query), raw.decode()))
        return web.Response(status=204)

    async def delete(request: web.Request) -> web.Response:
        seen["delete"].append((dict(request.query), await request.json()))
        return web.Response(status=204)

    async def ping(request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"X-Influxdb-Version": "v2.7.11"})

    fake = web.Application()
    fake.router.add_post("/api/v2/query", query)
    fake.router.add_post("/api/v2/write", write)
    fake.router.add_post("/api/v2/delete", delete)
    fake.router.add_get("/ping", ping)
    influx = TestServer(fake)
    await influx.start_server()
    s = replace(settings, influx_token="t0ken")
    url = f"influxdb2://127.0.0.1:{influx.port}?org=my-org&bucket=events"
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(s, open_store(url, s))))
    await client.start_server()
    auth = {"Authorization": f"Bearer {make_token()}"}
    try:
        values = ["plain", *HOSTILE]
        events = [{"event_name": v, "app_name": v, "server_name": v, "id": f"id-{i}"} for i, v in enumerate(values)]
        r = await client.post("/api/bucket/b1/data/events/ingest", json=events, headers=auth)
        assert r.status == 200 and (await r.json())["accepted"] == len(values)
        for v in values:
            for body in (
                {"event_name": v},
                {"event_name": v, "app_name": v, "server_name": v, "limit": 5},
                {"event_name": v, "server_name": ""},
            ):
                r = await client.post("/api/bucket/b1/data/events", json=body, headers=auth)
                assert r.status == 200 and await r.json() == []
            for interval, tz in (("minute", "UTC"), ("hour", "Asia/Kolkata"), ("day", "Europe/Paris")):
                body = {"event_name": v, "app_name": v, "days": 2, "interval": interval, "tz": tz}
                r = await client.post("/api/bucket/b1/data/events/stats", json=body, headers=auth)
                assert r.status == 200 and all(c == 0 for _, c in await r.json())
        r = await client.get("/api/bucket/b1/data/eventsKeysByApp", headers=auth)
        assert r.status == 200 and await r.json() == []
        r = await client.delete("/api/bucket/b1/data/events/delete_all", headers=auth)
        assert r.status == 200
    finally:
        await client.close()
        await influx.close()

    texts = [q["query"] for q in seen["query"]]
    assert len(texts) > 100
    assert all(q.get("type", "flux") == "flux" for q in seen["query"])
    results = run_libflux(texts)
    assert [t for t, r in zip(texts, results, strict=True) if not r["valid"]] == []
    literals = {lit for r in results for lit in string_literals(r["ast"])}
    for v in values:
        assert encode_tag(v) in literals
    # Hostile values never change a query's shape: each query has the shape of some plain one.
    plain_shapes = {
        json.dumps(structure(r["ast"]), sort_keys=True) for t, r in zip(texts, results, strict=True) if "plain" in t
    }
    allowed = plain_shapes | {
        json.dumps(structure(r["ast"]), sort_keys=True)
        for t, r in zip(texts, results, strict=True)
        # Queries that name only the bucket id (a validated [A-Za-z0-9_.-] string).
        if "schema.tagValues" in t or "int(v: r._time)" in t or t.startswith("buckets()")
    }
    odd = [
        t for t, r in zip(texts, results, strict=True) if json.dumps(structure(r["ast"]), sort_keys=True) not in allowed
    ]
    assert odd == []
    # Writes: ns precision, the right bucket and org, one line per event with the schema.
    assert all(params == {"org": "my-org", "bucket": "events", "precision": "ns"} for params, _ in seen["write"])
    lines = [line for _, body in seen["write"] for line in body.strip().split("\n")]
    events = [line for line in lines if line.startswith("events,app=") and ",bucket_id=b1," in line]
    assert len(events) == len(values)
    # Besides the events: the intents (occupancy.py) recorded before the ingest and the delete,
    # then, as the service stops, its retirement (an intent whose span is empty: "writer 0 0").
    others = [line for line in lines if line not in events]
    assert [line.split(" ")[0] for line in others] == ["eventsapi_writes,bucket_id=b1"] * 3
    spans = [[int(n) for n in line.split('"')[1].split(" ")[1:]] for line in others]
    assert spans[0][0] < spans[0][1] and spans[1][0] < spans[1][1] and spans[2] == [0, 0]
    ((dparams, dbody),) = seen["delete"]
    assert dparams["bucket"] == "events" and dparams["org"] == "my-org"
    assert dbody["predicate"] == '_measurement="events" AND bucket_id="b1"'
