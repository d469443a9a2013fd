"""The OpenAPI document and the service accept and reject exactly the same single-field inputs,
for every body route: each field of a valid body is replaced by each candidate value, the
document's schema judges the body, the service answers it, and the two must agree. The only
exceptions are the rules a schema cannot state, each named here and written in the field's
description in the document (wire.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from eventsapi.app import create_app
from eventsapi.config import Settings
from eventsapi.cursor import BadCursor, decode_cursor
from eventsapi.openapi import openapi_document
from eventsapi.stores import open_store
from eventsapi.validation import parse_time
from support import SECRET, document_validator, make_token

CANDIDATES: list[Any] = [
    None, True, False, 0, -1, 1, 1.5, 2, 69, 100, 365, 366, 1000, 1001, 100_000, 100_001, 10**13, 2**63,
    "", "x", "a" * 256, "a" * 257, "tab\there", "line\u2028sep", "ünï ✓", "${x} |> \\",
    "2026-01-02T03:04:05Z", "2026-01-02", "not a date", "minute", "hour", "day", "week", "UTC",
    "Europe/Paris", "Not/AZone", "a" * 1025, [], ["x"], {}, {"k": "v"},
]  # fmt: skip


def _unparsable_time(value: Any) -> bool:
    try:
        parse_time(value)
    except ValueError:
        return True
    return False


def _not_issued(value: Any) -> bool:
    try:
        decode_cursor(value)
    except BadCursor:
        return True
    return False


def _no_such_zone(value: Any) -> bool:
    try:
        ZoneInfo(value)
    except Exception:
        return True
    return False


# The rules a schema cannot state: (route, field) -> (the values it rejects, words of the
# field's description in the document that state it).
RUNTIME_RULES: dict[tuple[str, str], tuple[Callable[[Any], bool], str]] = {
    ("retrieve", "start"): (_unparsable_time, "must parse"),
    ("retrieve", "end"): (_unparsable_time, "must parse"),
    ("ingest", "at"): (_unparsable_time, "must parse"),
    ("retrieve", "cursor"): (_not_issued, "only those are valid"),
    ("stats", "tz"): (_no_such_zone, "that exists"),
}


def explained(route: str, field: str, value: Any, documented: bool) -> bool:
    """A disagreement the document states in words: it accepts the shape, the service then
    rejects the value by a runtime rule."""
    rule = RUNTIME_RULES.get((route, field))
    if rule is None or not documented or not isinstance(value, str):
        return False
    rejects, words = rule
    return rejects(value) and words in json.dumps(openapi_document()["components"]["schemas"])


ROUTES = {
    "retrieve": ("/api/bucket/b/data/events", {"event_name": "e"}),
    "stats": ("/api/bucket/b/data/events/stats", {"event_name": "e", "interval": "day"}),
}
INGEST_EVENT = {"event_name": "e", "app_name": "a"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    s = Settings(data_dir=tmp_path, jwt_secret=SECRET, store_url=f"sqlite:///{tmp_path / 'e.db'}")
    c: TestClient[Any, Any] = TestClient(TestServer(create_app(s, open_store(s.store_url, s))))
    await c.start_server()
    yield c
    await c.close()


def body_schema(path: str) -> dict[str, Any]:
    op = openapi_document()["paths"][path.replace("/b/", "/{id}/")]["post"]
    return op["requestBody"]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def fields_of(route: str) -> list[str]:
    name = {"retrieve": "RetrieveBody", "stats": "StatsBody", "ingest": "FlatEvent"}[route]
    return list(openapi_document()["components"]["schemas"][name]["properties"])


@pytest.mark.parametrize("route", ["retrieve", "stats"])
async def test_query_bodies(client: TestClient[Any, Any], route: str) -> None:
    path, base = ROUTES[route]
    validator = document_validator(body_schema(path))
    auth = {"Authorization": f"Bearer {make_token()}"}
    disagree = []
    for field in [*fields_of(route), "no_such_field"]:
        for value in CANDIDATES:
            body = {**base, field: value}
            documented = validator.is_valid(body)
            r = await client.post(path, json=body, headers=auth)
            assert r.status in (200, 400), (field, value, r.status)
            if documented != (r.status == 200):
                disagree.append((field, value, documented))
    assert [d for d in disagree if not explained(route, *d)] == []


async def test_ingest_events(client: TestClient[Any, Any]) -> None:
    path = "/api/bucket/b/data/events/ingest"
    validator = document_validator(body_schema(path)["items"])
    auth = {"Authorization": f"Bearer {make_token()}"}
    disagree = []
    for field in fields_of("ingest"):
        batch = [{**INGEST_EVENT, field: value} for value in CANDIDATES]
        r = await client.post(path, json=batch, headers=auth)
        assert r.status == 200
        rejected = {x["index"] for x in (await r.json())["rejected"]}
        for i, value in enumerate(CANDIDATES):
            if validator.is_valid(batch[i]) != (i not in rejected):
                disagree.append((field, value, validator.is_valid(batch[i])))
    assert [d for d in disagree if not explained("ingest", *d)] == []
