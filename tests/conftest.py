"""Fixtures: one conformance client per available store, a real influxd, token helpers, and an
OpenAPI check applied to every response the tests receive."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from eventsapi.app import create_app
from eventsapi.config import Settings
from eventsapi.stores import open_store
from eventsapi.stores.base import Store
from support import SECRET, Api
from support.influxd import InfluxD, start_influxd


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that runs against a real influxd (`-m "not influxd"` skips them)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        fixtures = set(getattr(item, "fixturenames", ()))
        if {"influxd", "own_influxd"} & fixtures or "influxql" in params.values():
            item.add_marker(pytest.mark.influxd)


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
