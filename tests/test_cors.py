"""CORS for browser dashboards: allowed origins from EVENTSAPI_CORS_ORIGINS."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from eventsapi.app import create_app
from eventsapi.config import Settings, load_settings
from eventsapi.stores.sqlite import SQLiteStore
from support import make_token


async def _client(settings: Settings, tmp_path: Path) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings, SQLiteStore(tmp_path / "c.db"))))
    await client.start_server()
    return client


async def test_allowed_origin_gets_cors_headers(settings: Settings, tmp_path: Path) -> None:
    origins = load_settings({"EVENTSAPI_CORS_ORIGINS": "https://dash.example, https://other.example"}).cors_origins
    assert origins == ("https://dash.example", "https://other.example")
    client = await _client(replace(settings, cors_origins=origins), tmp_path)
    try:
        pre = await client.options(
            "/api/bucket/b/data/events",
            headers={
                "Origin": "https://dash.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization, Content-Type",
            },
        )
        assert pre.status == 200
        assert pre.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        assert "AUTHORIZATION" in pre.headers["Access-Control-Allow-Headers"].upper()
        resp = await client.post(
            "/api/bucket/b/data/events",
            json={"event_name": "e", "limit": 1},
            headers={"Origin": "https://dash.example", "Authorization": f"Bearer {make_token()}"},
        )
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        assert "X-NEXT-CURSOR" in resp.headers["Access-Control-Expose-Headers"].upper()
        denied = await client.options(
            "/api/bucket/b/data/events",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "Access-Control-Allow-Origin" not in denied.headers
    finally:
        await client.close()


async def test_wildcard_origin(settings: Settings, tmp_path: Path) -> None:
    client = await _client(replace(settings, cors_origins=("*",)), tmp_path)
    try:
        resp = await client.get(
            "/api/bucket/b/data/eventsKeysByApp",
            headers={"Origin": "https://any.example", "Authorization": f"Bearer {make_token()}"},
        )
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] in ("*", "https://any.example")
    finally:
        await client.close()


async def test_no_cors_by_default(settings: Settings, tmp_path: Path) -> None:
    client = await _client(settings, tmp_path)
    try:
        resp = await client.get(
            "/api/bucket/b/data/eventsKeysByApp",
            headers={"Origin": "https://any.example", "Authorization": f"Bearer {make_token()}"},
        )
        assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    finally:
        await client.close()
