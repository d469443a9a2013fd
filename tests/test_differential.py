"""A randomized differential test: the same random events into every available store (SQLite,
and InfluxQL on a real influxd) and into a plain-Python oracle of the contract; then random
retrieves (each followed through its cursors to the end, some with offsets), histograms and
key listings, compared with the oracle.

Events have hostile and Unicode names, bursts in one millisecond, re-sends of whole batches,
reused ids with other payloads (first write wins) and times over a year (so that day windows
cross DST changes in odd time zones). CI runs a fixed seed; set EVENTSAPI_DIFF_SEED and
EVENTSAPI_DIFF_EVENTS for other and larger runs.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from eventsapi.app import create_app
from eventsapi.config import Settings
from eventsapi.stores import open_store
from eventsapi.stores.base import group_by_app
from support import HOSTILE, make_token

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("EVENTSAPI_DIFF_SEED", "20261129"))
EVENTS = int(os.environ.get("EVENTSAPI_DIFF_EVENTS", "6000"))
NAMES = [*HOSTILE[:6], "ünïcødé ✓", "日本語", "🚀 launch", "deploy"]
APPS = ["api", HOSTILE[6], "wörker"]
SERVERS = ["", "web-1", HOSTILE[7]]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham"]
DAY = 86_400_000

Key = tuple[int, str]  # (at, id): what identifies an event in a bucket


@dataclass
class Oracle:
    """The contract in plain Python: first write of an (at, id) wins."""

    events: dict[Key, dict[str, Any]] = field(default_factory=dict)

    def ingest(self, batch: list[dict[str, Any]]) -> None:
        for e in batch:
            self.events.setdefault((e["at"], e["id"]), e)

    def select(
        self, name: str, app: str | None, server: str | None, start: int | None, end: int | None
    ) -> list[dict[str, Any]]:
        rows = [
            e
            for e in self.events.values()
            if e["event_name"] == name
            and (app is None or e["app_name"] == app)
            and (server is None or e["server_name"] == server)
            and (start is None or e["at"] >= start)
            and (end is None or e["at"] < end)
        ]
        return sorted(rows, key=lambda e: (e["at"], e["id"]), reverse=True)

    def stats(self, name: str, app: str | None, server: str | None, starts: list[int]) -> list[int]:
        counts = [0] * len(starts)
        for e in self.select(name, app, server, starts[0], None):
            i = max(j for j, s in enumerate(starts) if s <= e["at"])
            counts[i] += 1
        return counts

    def breakdown(
        self, name: str, app: str | None, key: str, starts: list[int], top: int
    ) -> list[tuple[str | None, list[int]]]:
        """The series of a grouped histogram, written plainly: every value's counts, ranked by
        total then value, the ones past `top` summed into one "other" (None) series."""
        per_value: dict[str, list[int]] = {}
        for e in self.select(name, app, None, starts[0], None):
            i = max(j for j, s in enumerate(starts) if s <= e["at"])
            per_value.setdefault(e[key], [0] * len(starts))[i] += 1
        ranked = sorted(per_value.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
        out: list[tuple[str | None, list[int]]] = [(v, c) for v, c in ranked[:top]]
        if len(ranked) > top:
            out.append((None, [sum(col) for col in zip(*(c for _, c in ranked[top:]), strict=True)]))
        return out

    def keys(self) -> list[dict[str, Any]]:
        pairs = group_by_app((e["app_name"], e["event_name"]) for e in self.events.values())
        return [{"app_name": a, "events": n} for a, n in pairs]


def make_events(rnd: random.Random, now: int) -> list[list[dict[str, Any]]]:
    """Batches of random events, with bursts, re-sends and reused ids."""
    batches: list[list[dict[str, Any]]] = []
    bursts: list[list[dict[str, Any]]] = []
    made = 0
    while made < EVENTS:
        kind = rnd.random()
        if kind < 0.1:  # a burst in one millisecond of one series
            at = now - rnd.randrange(3 * DAY)
            name, app, server = rnd.choice(NAMES), rnd.choice(APPS), rnd.choice(SERVERS)
            batch = [
                {
                    "id": str(uuid.UUID(int=rnd.getrandbits(128))),
                    "event_name": name,
                    "app_name": app,
                    "server_name": server,
                    "at": at,
                    "data": {"i": made + i},
                }
                for i in range(rnd.choice([20, 300, 2000]))
            ]
            bursts.append(batch)
        elif kind < 0.2 and batches:  # a re-send of an earlier batch (often a burst), in two halves
            old = rnd.choice(bursts if bursts and rnd.random() < 0.5 else batches)
            batches.append(old[: len(old) // 2])
            batch = old[len(old) // 2 :]
        elif kind < 0.25 and batches:  # ids reused: other payloads or names (same at), or another at
            old = rnd.choice(batches)
            batch = [{**e, "data": {"reused": True}, "event_name": rnd.choice(NAMES)} for e in old[:20]]
            batch += [{**e, "at": e["at"] - rnd.randrange(1, 5000)} for e in old[20:30]]
        else:
            spread = rnd.choice([60_000, 3_600_000, 3 * DAY, 365 * DAY])
            batch = [
                {
                    "id": f"e{made + i}-{rnd.randrange(10**6)}",
                    "event_name": rnd.choice(NAMES),
                    "app_name": rnd.choice(APPS),
                    "server_name": rnd.choice(SERVERS),
                    "at": now - 60_000 - rnd.randrange(spread),
                    "data": {"i": made + i, "s": "x" * rnd.randrange(40)},
                }
                for i in range(rnd.randrange(1, 400))
            ]
        batches.append(batch)
        made += len(batch)
    return batches


@pytest.fixture
async def clients(influxd: Any, tmp_path: Path) -> AsyncIterator[dict[str, TestClient[Any, Any]]]:
    db = "d_" + uuid.uuid4().hex[:12]
    influxd.query(f'CREATE DATABASE "{db}"')
    settings = Settings(
        data_dir=tmp_path, jwt_secret="test-secret-test-secret-test-secret-0123456789", store_timeout=30
    )
    urls = {"sqlite": f"sqlite:///{tmp_path / 'events.db'}", "influxql": f"influxql://127.0.0.1:{influxd.port}/{db}"}
    out: dict[str, TestClient[Any, Any]] = {}
    for kind, url in urls.items():
        s = replace(settings, store_url=url)
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(s, open_store(url, s))))
        await client.start_server()
        out[kind] = client
    yield out
    for c in out.values():
        await c.close()


async def post(client: TestClient[Any, Any], path: str, body: Any) -> tuple[Any, dict[str, str]]:
    r = await client.post(path, json=body, headers={"Authorization": f"Bearer {make_token()}"})
    assert r.status == 200, await r.text()
    return await r.json(), dict(r.headers)


async def test_stores_agree_with_the_oracle(clients: dict[str, TestClient[Any, Any]]) -> None:
    rnd = random.Random(SEED)
    now = int(time.time() * 1000)
    oracle = Oracle()
    base = "/api/bucket/diff/data"
    for batch in make_events(rnd, now):
        oracle.ingest(batch)
        for client in clients.values():
            answer, _ = await post(client, f"{base}/events/ingest", batch)
            assert answer == {"accepted": len(batch), "rejected": []}

    for kind, client in clients.items():
        r = await client.get(f"{base}/eventsKeysByApp", headers={"Authorization": f"Bearer {make_token()}"})
        assert await r.json() == oracle.keys(), kind

    for q in range(60):
        name = rnd.choice(NAMES)
        app = rnd.choice([None, *APPS])
        server = rnd.choice([None, None, *SERVERS])
        start = rnd.choice([None, None, now - rnd.randrange(4 * DAY)])
        end = rnd.choice([None, None, now - rnd.randrange(2 * DAY)])
        limit = rnd.choice([1, 3, 17, 100, 1000])
        offset = rnd.choice([0, 0, 0, 1, 5, 40])
        expected = oracle.select(name, app, server, start, end)[offset:]
        # At most ~100 pages per query (on InfluxDB each page through a one-millisecond burst
        # reads the whole burst: fine for a dashboard, slow for a test paging 2,000 times).
        limit = max(limit, min(1000, len(expected) // 100 + 1))
        body: dict[str, Any] = {"event_name": name, "limit": limit, "offset": offset}
        body.update(
            {
                k: v
                for k, v in (("app_name", app), ("server_name", server), ("start", start), ("end", end))
                if v is not None
            }
        )
        for kind, client in clients.items():
            got: list[dict[str, Any]] = []
            page_body = dict(body)
            for _ in range(10_000):
                rows, headers = await post(client, f"{base}/events", page_body)
                got += rows
                cursor = headers.get("X-Next-Cursor")
                if not cursor:
                    break
                page_body = {**body, "cursor": cursor, "offset": 0}
            assert [(e["at"], e["id"]) for e in got] == [(e["at"], e["id"]) for e in expected], (kind, q, body)
            assert got == expected, (kind, q, body)

        tz = rnd.choice(ZONES)
        interval, days = rnd.choice([("minute", 0.5), ("hour", 4), ("day", 365), ("day", 30)])
        stats_body = {"event_name": name, "days": days, "interval": interval, "tz": tz}
        if app is not None:
            stats_body["app_name"] = app
        key, top = rnd.choice(["app_name", "server_name"]), rnd.choice([1, 3, 10])
        for kind, client in clients.items():
            pairs, _ = await post(client, f"{base}/events/stats", stats_body)
            starts = [t for t, _ in pairs]
            assert [c for _, c in pairs] == oracle.stats(name, app, None, starts), (kind, q, stats_body)
            grouped, _ = await post(client, f"{base}/events/stats", {**stats_body, "group_by": key, "top": top})
            got_series = [(s[key], [c for _, c in s["points"]]) for s in grouped["series"]]
            # A second request: "now" may have crossed a window boundary since the first, so the
            # oracle counts in the windows this answer has.
            if grouped["series"]:
                starts = [t for t, _ in grouped["series"][0]["points"]]
            assert got_series == oracle.breakdown(name, app, key, starts, top), (kind, q, key, top)


def test_oracle_is_itself_sane() -> None:
    o = Oracle()
    o.ingest([{"at": 5, "id": "a", "event_name": "n", "app_name": "x", "server_name": "", "data": {"v": 1}}])
    o.ingest([{"at": 5, "id": "a", "event_name": "m", "app_name": "x", "server_name": "", "data": {"v": 2}}])
    assert [e["data"] for e in o.select("n", None, None, None, None)] == [{"v": 1}]
    assert o.select("m", None, None, None, None) == []
    assert json.dumps(o.keys()) == '[{"app_name": "x", "events": ["n"]}]'
