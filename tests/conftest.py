"""Fixtures: one conformance client per available store, a real influxd, token helpers, and an
OpenAPI check applied to every response the tests receive."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import jwt
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from eventsapi.app import create_app
from eventsapi.config import Settings
from eventsapi.openapi import openapi_document
from eventsapi.stores import open_store
from eventsapi.stores.base import Store
from influxd import InfluxD, start_influxd

SECRET = "test-secret-test-secret-test-secret-0123456789"
ALL_SCOPES = "events:read events:write events:delete"


def make_token(
    buckets: list[str] | None = None,
    scope: str = ALL_SCOPES,
    *,
    secret: str = SECRET,
    ttl: int = 3600,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "tester",
        "buckets": buckets if buckets is not None else ["*"],
        "scope": scope,
        "iat": now,
        "exp": now + ttl,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm="HS256")


# -- OpenAPI response checking --------------------------------------------------------------

_DOC = openapi_document()
_REGISTRY = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(_DOC))


def _operation(method: str, path: str) -> dict[str, Any] | None:
    parts = path.split("/")
    for template, item in _DOC["paths"].items():
        tparts = template.split("/")
        if len(tparts) == len(parts) and all(
            t == p or (t.startswith("{") and t.endswith("}")) for t, p in zip(tparts, parts, strict=True)
        ):
            return item.get(method.lower())  # type: ignore[no-any-return]
    return None


async def check_against_openapi(method: str, path: str, resp: ClientResponse) -> None:
    """Every documented route's response must have a documented status, content type and
    a body that validates against the document's schema."""
    op = _operation(method, path)
    if op is None:
        # Unknown routes answer 404 problem+json.
        if resp.status in (404, 405):
            assert resp.content_type == "application/problem+json"
        return
    status = str(resp.status)
    assert status in op["responses"], f"{method} {path} answered undocumented {status}"
    spec = op["responses"][status]
    content = spec.get("content", {})
    if not content:
        return
    assert resp.content_type in content, f"{method} {path} {status}: content type {resp.content_type}"
    if resp.content_type.endswith("json"):
        schema = content[resp.content_type]["schema"]
        body = await resp.json(content_type=None)
        validator = jsonschema.Draft202012Validator(_rewrite_refs(schema), registry=_REGISTRY)
        validator.validate(body)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: ("urn:openapi" + v if k == "$ref" and v.startswith("#") else _rewrite_refs(v)) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


class Api:
    """A test client bound to one app, with the token helpers the suite needs."""

    def __init__(self, client: TestClient[Any, Any], kind: str) -> None:
        self.client = client
        self.kind = kind
        self.token = make_token()

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def request(self, method: str, path: str, **kw: Any) -> ClientResponse:
        headers = kw.pop("headers", None)
        if headers is None:
            headers = self.auth()
        resp = await self.client.request(method, path, headers=headers, **kw)
        await resp.read()
        await check_against_openapi(method, path, resp)
        return resp

    async def ingest(self, bucket: str, events: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        resp = await self.request("POST", f"/api/bucket/{bucket}/data/events/ingest", json=events, **kw)
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]

    async def retrieve(self, bucket: str, **body: Any) -> tuple[list[dict[str, Any]], str | None]:
        resp = await self.request("POST", f"/api/bucket/{bucket}/data/events", json=body)
        assert resp.status == 200, await resp.text()
        return await resp.json(), resp.headers.get("X-Next-Cursor")

    async def stats(self, bucket: str, **body: Any) -> list[list[int]]:
        resp = await self.request("POST", f"/api/bucket/{bucket}/data/events/stats", json=body)
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]

    async def keys(self, bucket: str) -> list[dict[str, Any]]:
        resp = await self.request("GET", f"/api/bucket/{bucket}/data/eventsKeysByApp")
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]

    async def delete_all(self, bucket: str) -> None:
        resp = await self.request("DELETE", f"/api/bucket/{bucket}/data/events/delete_all")
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"bucket_id": bucket, "deleted": True}


# -- stores -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real InfluxDB 1.x on a free loopback port, with its own data dir and config."""
    if os.environ.get("EVENTSAPI_TEST_SKIP_INFLUXD"):
        pytest.skip("EVENTSAPI_TEST_SKIP_INFLUXD is set")
    server = start_influxd(tmp_path_factory.mktemp("influxd"))
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("influxd is not installed; the README's test command installs it")
        pytest.skip("influxd not installed (apt-get install influxdb)")
    yield server
    server.stop()


STORE_KINDS = ["sqlite", "influxql", "influxdb2"]


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", jwt_secret=SECRET, jwt_leeway=0, store_timeout=3.0)


@pytest.fixture
def store_url(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty store of the kind under test."""
    if store_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    if store_kind == "influxql":
        server: InfluxD = request.getfixturevalue("influxd")
        db = "t_" + uuid.uuid4().hex[:12]
        server.query(f'CREATE DATABASE "{db}"')
        return f"influxql://127.0.0.1:{server.port}/{db}"
    url = os.environ.get("EVENTSAPI_TEST_INFLUXDB2_URL")
    if not url:
        pytest.skip("set EVENTSAPI_TEST_INFLUXDB2_URL (+ _TOKEN, _ORG) to run against InfluxDB 2")
    org = os.environ.get("EVENTSAPI_TEST_INFLUXDB2_ORG", "eventsapi")
    bucket = os.environ.get("EVENTSAPI_TEST_INFLUXDB2_BUCKET", "events")
    hostport = url.split("://", 1)[-1].rstrip("/")
    return f"influxdb2://{hostport}?org={org}&bucket={bucket}"


@pytest.fixture
def store_settings(settings: Settings, store_kind: str) -> Settings:
    from dataclasses import replace

    if store_kind == "influxdb2":
        return replace(settings, influx_token=os.environ.get("EVENTSAPI_TEST_INFLUXDB2_TOKEN"))
    return settings


ApiFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(store_url: str, store_settings: Settings, store_kind: str) -> AsyncIterator[ApiFactory]:
    """Start an app on the store under test; call again to 'restart' on the same data."""
    clients: list[TestClient[Any, Any]] = []

    async def factory(settings: Settings | None = None, store: Store | None = None) -> Api:
        s = settings or store_settings
        app = create_app(s, store or open_store(store_url, s))
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Api(client, store_kind)

    yield factory
    for c in clients:
        await c.close()


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    return await make_api()


@pytest.fixture
def bucket() -> str:
    return "b-" + uuid.uuid4().hex[:10]
