"""The HTTP contract of docs/api.md, written once and run against every available store."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import pytest

from conftest import ApiFactory
from support import ALL_SCOPES, HOSTILE, SECRET, Api, make_token


def now_ms() -> int:
    return int(time.time() * 1000)


def ev(name: str = "deploy", app: str = "api", server: str | None = "s1", **kw: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"event_name": name, "app_name": app, **kw}
    if server is not None:
        e["server_name"] = server
    return e


# -- ingest and retrieve ----------------------------------------------------------------------


async def test_ingest_then_retrieve_round_trip(api: Api, bucket: str) -> None:
    t = now_ms() - 5000
    res = await api.ingest(
        bucket,
        [
            ev(at=t, data={"n": 1, "nested": {"a": [1, "x"]}}, id="e1"),
            ev(at=t + 1, data={"n": 2}, server=None),
        ],
    )
    assert res == {"accepted": 2, "rejected": []}
    rows, cursor = await api.retrieve(bucket, event_name="deploy")
    assert cursor is None
    assert [r["at"] for r in rows] == [t + 1, t]
    assert rows[1] == {
        "id": "e1",
        "event_name": "deploy",
        "app_name": "api",
        "server_name": "s1",
        "at": t,
        "data": {"n": 1, "nested": {"a": [1, "x"]}},
    }
    assert rows[0]["server_name"] == "" and rows[0]["data"] == {"n": 2} and rows[0]["id"]


async def test_pm2_packet_and_iso_time(api: Api, bucket: str) -> None:
    iso = "2026-01-02T03:04:05.678Z"
    packet = {
        "name": "restart",
        "at": iso,
        "data": {"why": "oom"},
        "process": {"name": "web", "server": "srv-1", "pm_id": 3, "rev": "abc"},
    }
    assert (await api.ingest(bucket, [packet]))["accepted"] == 1
    rows, _ = await api.retrieve(bucket, event_name="restart", app_name="web")
    assert len(rows) == 1
    assert rows[0]["at"] == int(datetime(2026, 1, 2, 3, 4, 5, 678000, UTC).timestamp() * 1000)
    assert (rows[0]["app_name"], rows[0]["server_name"], rows[0]["data"]) == ("web", "srv-1", {"why": "oom"})


async def test_default_at_is_receipt_time(api: Api, bucket: str) -> None:
    before = now_ms()
    await api.ingest(bucket, [ev()])
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert before <= rows[0]["at"] <= now_ms()


async def test_ndjson_and_gzip(api: Api, bucket: str) -> None:
    t = now_ms() - 1000
    lines = "\n".join(json.dumps(ev(at=t + i, data={"i": i})) for i in range(5)) + "\nnot json\n"
    resp = await api.ingest_raw(bucket, lines.encode(), "application/x-ndjson")
    body = await resp.json()
    assert resp.status == 200 and body["accepted"] == 5 and [r["index"] for r in body["rejected"]] == [5]
    gz = gzip.compress(json.dumps([ev(name="gz", at=t)]).encode())
    resp = await api.ingest_raw(bucket, gz, "application/json", "gzip")
    assert resp.status == 200 and (await resp.json())["accepted"] == 1
    rows, _ = await api.retrieve(bucket, event_name="gz")
    assert len(rows) == 1


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        ({"app_name": "a"}, "event_name"),
        ({"event_name": "e"}, "app_name"),
        ({"event_name": "", "app_name": "a"}, "event_name"),
        ({"event_name": "x" * 257, "app_name": "a"}, "event_name"),
        ({"event_name": "new\nline", "app_name": "a"}, "control"),
        ({"event_name": "tab\t", "app_name": "a"}, "control"),
        ({"event_name": "nul\x00", "app_name": "a"}, "control"),
        ({"event_name": "e", "app_name": "a", "server_name": "s\r"}, "control"),
        ({"event_name": "e", "app_name": 5}, "app_name"),
        ({"event_name": "e", "app_name": "a", "at": -1}, "1970"),
        ({"event_name": "e", "app_name": "a", "at": 10**15}, "24 h"),
        ({"event_name": "e", "app_name": "a", "at": "yesterday"}, "ISO 8601"),
        ({"event_name": "e", "app_name": "a", "at": True}, "at"),
        ({"event_name": "e", "app_name": "a", "data": [1]}, "object"),
        ({"event_name": "e", "app_name": "a", "data": "x"}, "object"),
        ({"event_name": "e", "app_name": "a", "data": {"x": "y" * 70000}}, "bytes"),
        ({"event_name": "e", "app_name": "a", "id": ""}, "id"),
        ({"event_name": "e", "app_name": "a", "id": "i" * 129}, "id"),
        ({"event_name": "e", "app_name": "a", "id": 7}, "id"),
        ("just a string", "object"),
    ],
)
async def test_invalid_events_are_reported_and_nothing_of_them_stored(
    api: Api, bucket: str, event: Any, fragment: str
) -> None:
    res = await api.ingest(bucket, [ev(name="good", at=now_ms() - 10), event])
    assert res["accepted"] == 1
    assert len(res["rejected"]) == 1 and res["rejected"][0]["index"] == 1
    assert fragment in res["rejected"][0]["error"]
    keys = await api.keys(bucket)
    assert keys == [{"app_name": "api", "events": ["good"]}]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'{"event_name": "x"}', 400),
        (b"[1, 2", 400),
        (b"[NaN]", 400),
        (b"[" * 100000 + b"]" * 100000, 400),
        (b'[{"event_name": "a", "app_name": "b"},]', 400),
        (b"\xff\xfe", 400),
    ],
)
async def test_malformed_body_is_400(api: Api, bucket: str, body: bytes, status: int) -> None:
    resp = await api.ingest_raw(bucket, body)
    assert resp.status == status
    problem = await resp.json(content_type=None)
    assert resp.content_type == "application/problem+json"
    assert problem["status"] == status and "Traceback" not in problem["detail"]


async def test_huge_numbers_and_wrong_types_are_rejected_per_event(api: Api, bucket: str) -> None:
    body = b"[" + b"9" * 5000 + b', {"event_name": "e", "app_name": "a", "at": ' + b"9" * 5000 + b'}, [], "s", null]'
    resp = await api.ingest_raw(bucket, body)
    result = await resp.json()
    assert resp.status == 200 and result["accepted"] == 0
    assert [r["index"] for r in result["rejected"]] == [0, 1, 2, 3, 4]
    assert await api.keys(bucket) == []


async def test_too_many_events_is_413(api: Api, bucket: str) -> None:
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events/ingest", json=[ev()] * 10_001)
    assert resp.status == 413
    assert await api.keys(bucket) == []


async def test_body_too_large_is_413_and_gzip_bomb_too(api: Api, bucket: str) -> None:
    big = b"[" + b" " * (11 * 1024 * 1024) + b"]"
    resp = await api.ingest_raw(bucket, io.BytesIO(big))
    assert resp.status == 413
    bomb = gzip.compress(big)
    assert len(bomb) < 64 * 1024
    resp = await api.ingest_raw(bucket, bomb, "application/json", "gzip")
    assert resp.status == 413
    assert resp.content_type == "application/problem+json"


# -- hostile names ----------------------------------------------------------------------------


async def test_hostile_names_are_stored_and_matched_literally(api: Api, bucket: str) -> None:
    t = now_ms() - 60_000
    events = [ev(name=h, app=h, server=h, at=t + i, id=f"id-{h}", data={"h": h}) for i, h in enumerate(HOSTILE)]
    events += [ev(name="plain", app="plain", server="plain", at=t, id="plain")]
    assert (await api.ingest(bucket, events))["accepted"] == len(HOSTILE) + 1
    for h in HOSTILE:
        rows, _ = await api.retrieve(bucket, event_name=h, app_name=h, server_name=h)
        assert [(r["event_name"], r["app_name"], r["server_name"], r["id"], r["data"]) for r in rows] == [
            (h, h, h, f"id-{h}", {"h": h})
        ], h
        counts = await api.stats(bucket, event_name=h, app_name=h, server_name=h, days=1, interval="hour")
        assert sum(c for _, c in counts) == 1, h
    keys = await api.keys(bucket)
    assert keys == sorted(
        [{"app_name": h, "events": [h]} for h in [*HOSTILE, "plain"]], key=lambda k: str(k["app_name"])
    )


async def test_hostile_names_never_reach_another_bucket(api: Api, bucket: str) -> None:
    other = bucket + "-other"
    await api.ingest(other, [ev(name=h, at=now_ms() - 1000) for h in HOSTILE])
    for h in HOSTILE:
        rows, _ = await api.retrieve(bucket, event_name=h)
        assert rows == []


# -- ordering, cursors, bursts ----------------------------------------------------------------


async def test_burst_sharing_one_millisecond_is_kept_and_paged_exactly(api: Api, bucket: str) -> None:
    t = now_ms() - 30_000
    burst = [ev(name="tick", at=t, data={"i": i}) for i in range(1000)]
    burst += [
        ev(name="tick", at=t + 1, data={"i": "later"}),
        ev(name="tick", at=t - 1, data={"i": "earlier"}),
    ]
    assert (await api.ingest(bucket, burst))["accepted"] == 1002
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        body: dict[str, Any] = {"event_name": "tick", "limit": 100}
        if cursor:
            body["cursor"] = cursor
        rows, cursor = await api.retrieve(bucket, **body)
        seen += rows
        if cursor is None:
            break
    assert len(seen) == 1002
    assert len({r["id"] for r in seen}) == 1002
    keys = [(r["at"], r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)
    assert seen[0]["data"] == {"i": "later"} and seen[-1]["data"] == {"i": "earlier"}
    counts = await api.stats(bucket, event_name="tick", days=1, interval="hour")
    assert sum(c for _, c in counts) == 1002


async def test_client_ids_order_ties_by_id_desc(api: Api, bucket: str) -> None:
    t = now_ms() - 1000
    ids = ["b", "a", "d", "c", "aa"]
    await api.ingest(bucket, [ev(at=t, id=i) for i in ids])
    rows, _ = await api.retrieve(bucket, event_name="deploy", limit=2)
    assert [r["id"] for r in rows] == ["d", "c"]
    rows, cur = await api.retrieve(bucket, event_name="deploy", limit=2, offset=2)
    assert [r["id"] for r in rows] == ["b", "aa"] and cur is not None
    rows, _ = await api.retrieve(bucket, event_name="deploy", limit=3, cursor=cur)
    assert [r["id"] for r in rows] == ["a"]


async def test_filters_limit_offset_and_time_range(api: Api, bucket: str) -> None:
    t = now_ms() - 100_000
    events = [ev(app=f"app{i % 2}", server=f"s{i % 3}", at=t + i * 1000, id=f"e{i:02d}") for i in range(30)]
    await api.ingest(bucket, events)
    rows, cursor = await api.retrieve(bucket, event_name="deploy", app_name="app1", limit=5)
    assert [r["id"] for r in rows] == ["e29", "e27", "e25", "e23", "e21"] and cursor
    rows, _ = await api.retrieve(bucket, event_name="deploy", server_name="s0", limit=3, offset=1)
    assert [r["id"] for r in rows] == ["e24", "e21", "e18"]
    rows, _ = await api.retrieve(bucket, event_name="deploy", app_name="app0", server_name="s0")
    assert [r["id"] for r in rows] == ["e24", "e18", "e12", "e06", "e00"]
    rows, _ = await api.retrieve(
        bucket,
        event_name="deploy",
        start=t + 10_000,
        end=datetime.fromtimestamp((t + 13_000) / 1000, UTC).isoformat(),
    )
    assert [r["id"] for r in rows] == ["e12", "e11", "e10"]
    rows, _ = await api.retrieve(bucket, event_name="nothing")
    assert rows == []


async def test_old_events_are_found_newest_first(api: Api, bucket: str) -> None:
    """Events years apart: the newest page is found whatever the gap."""
    base = int(datetime(2001, 5, 5, tzinfo=UTC).timestamp() * 1000)
    await api.ingest(bucket, [ev(at=base, id="old"), ev(at=base + 86_400_000 * 3000, id="mid"), ev(at=0, id="epoch")])
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert [r["id"] for r in rows] == ["mid", "old", "epoch"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"event_name": ""},
        {"event_name": 3},
        {"event_name": "e", "limit": 0},
        {"event_name": "e", "limit": 1001},
        {"event_name": "e", "limit": "10"},
        {"event_name": "e", "offset": -1},
        {"event_name": "e", "offset": 100_001},
        {"event_name": "e", "cursor": "garbage!"},
        {"event_name": "e", "cursor": 5},
        {"event_name": "e", "start": "not a date"},
        {"event_name": "e", "bogus": 1},
        {"event_name": "e", "app_name": "x\ny"},
        [1, 2],
    ],
)
async def test_retrieve_validation(api: Api, bucket: str, body: Any) -> None:
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events", json=body)
    assert resp.status == 400
    problem = await resp.json(content_type=None)
    assert problem["status"] == 400 and problem["title"] == "Bad Request"


@pytest.mark.parametrize(
    "raw",
    [b'[1000000000000000000000000000000, "x"]', b'[9223372036854775808, "x"]', b"[" * 50_000 + b"]" * 50_000],
)
async def test_crafted_cursor_is_400(api: Api, bucket: str, raw: bytes) -> None:
    import base64

    cursor = base64.urlsafe_b64encode(raw).decode()
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events", json={"event_name": "x", "cursor": cursor})
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json(content_type=None))["errors"]] == ["cursor"]


@pytest.mark.parametrize("bad", ["a" * 65, "sp ace", "semi;colon", "ü", "a%2Fb"])
async def test_bad_bucket_id_is_400(api: Api, bad: str) -> None:
    resp = await api.request("POST", f"/api/bucket/{bad}/data/events", json={"event_name": "x"})
    assert resp.status == 400
    assert (await resp.json(content_type=None))["errors"][0]["field"] == "id"


# -- idempotency ------------------------------------------------------------------------------


async def test_resending_same_id_stores_nothing_new(api: Api, bucket: str) -> None:
    t = now_ms() - 5000
    batch = [ev(at=t, id="x1", data={"v": 1}), ev(at=t, id="x2", data={"v": 2})]
    await api.ingest(bucket, batch)
    again = await api.ingest(bucket, [*batch, ev(at=t, id="x1", data={"v": 1})])
    assert again["accepted"] == 3
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert sorted(r["id"] for r in rows) == ["x1", "x2"]
    counts = await api.stats(bucket, event_name="deploy", days=1, interval="hour")
    assert sum(c for _, c in counts) == 2


async def test_duplicate_ids_in_the_first_batch_of_a_bucket(api: Api, bucket: str) -> None:
    t = now_ms() - 5000
    res = await api.ingest(bucket, [ev(at=t, id="same"), ev(at=t, id="same"), ev(at=t + 1, id="other")])
    assert res["accepted"] == 3
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert [r["id"] for r in rows] == ["other", "same"]
    assert sum(c for _, c in await api.stats(bucket, event_name="deploy", days=1, interval="hour")) == 2
    assert await api.keys(bucket) == [{"app_name": "api", "events": ["deploy"]}]


async def test_distinct_ids_whose_slots_collide_in_separate_requests(api: Api, bucket: str) -> None:
    # crc32("evt-86") and crc32("evt-1291") are equal modulo 10**6: the same first slot.
    t = now_ms() - 5000
    await api.ingest(bucket, [ev(at=t, id="evt-86", data={"n": 86})])
    await api.ingest(bucket, [ev(at=t, id="evt-1291", data={"n": 1291})])
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert sorted((r["id"], r["data"]["n"]) for r in rows) == [("evt-1291", 1291), ("evt-86", 86)]
    assert sum(c for _, c in await api.stats(bucket, event_name="deploy", days=1, interval="hour")) == 2


async def test_resend_of_a_probed_event_does_not_replace_another(api: Api, bucket: str) -> None:
    t = now_ms() - 5000
    await api.ingest(bucket, [ev(at=t, id="evt-86", data={"n": 86}), ev(at=t, id="evt-1291", data={"n": 1291})])
    await api.ingest(bucket, [ev(at=t, id="evt-1291", data={"n": 1291})])
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert sorted((r["id"], r["data"]["n"]) for r in rows) == [("evt-1291", 1291), ("evt-86", 86)]
    assert sum(c for _, c in await api.stats(bucket, event_name="deploy", days=1, interval="hour")) == 2


async def test_one_millisecond_burst_resent_in_halves_is_stored_once(api: Api, bucket: str) -> None:
    import uuid

    t = now_ms() - 5000
    burst = [ev(at=t, id=str(uuid.UUID(int=random_bits)), data={"i": i}) for i, random_bits in _bits(2000)]
    assert (await api.ingest(bucket, burst))["accepted"] == 2000
    await api.ingest(bucket, burst[:1000])
    await api.ingest(bucket, burst[1000:])
    ids: list[str] = []
    cursor = None
    while True:
        body: dict[str, Any] = {"event_name": "deploy", "limit": 1000}
        if cursor:
            body["cursor"] = cursor
        rows, cursor = await api.retrieve(bucket, **body)
        ids += [r["id"] for r in rows]
        if not cursor:
            break
    assert len(ids) == 2000 and set(ids) == {e["id"] for e in burst}
    assert ids == sorted(ids, reverse=True)
    assert sum(c for _, c in await api.stats(bucket, event_name="deploy", days=1, interval="hour")) == 2000


def _bits(n: int, seed: int = 7) -> list[tuple[int, int]]:
    import random

    rnd = random.Random(seed)
    return [(i, rnd.getrandbits(128)) for i in range(n)]


async def test_first_write_wins_for_a_reused_id(api: Api, bucket: str) -> None:
    """An event is its bucket, `at` and id (docs/api.md): a later event with the same at and
    id is not stored, whatever else differs; the same id at another `at` is another event."""
    t = now_ms() - 5000
    await api.ingest(bucket, [ev(at=t, id="x", data={"v": "first"})])
    again = await api.ingest(
        bucket,
        [ev(at=t, id="x", data={"v": "second"}), ev(name="other", app="b", server="z", at=t, id="x")],
    )
    assert again == {"accepted": 2, "rejected": []}
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert [(r["id"], r["data"]) for r in rows] == [("x", {"v": "first"})]
    assert (await api.retrieve(bucket, event_name="other"))[0] == []
    assert await api.keys(bucket) == [{"app_name": "api", "events": ["deploy"]}]
    await api.ingest(bucket, [ev(at=t + 1, id="x", data={"v": "later"})])
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert [(r["at"], r["data"]["v"]) for r in rows] == [(t + 1, "later"), (t, "first")]


async def test_per_bucket_cardinality_limits(make_api: ApiFactory, store_settings: Any, bucket: str) -> None:
    from dataclasses import replace

    api = await make_api(
        replace(store_settings, max_names_per_bucket=3, max_apps_per_bucket=2, max_servers_per_bucket=2)
    )
    t = now_ms() - 5000
    res = await api.ingest(
        bucket,
        [
            ev(name=HOSTILE[0], app="a1", at=t),
            ev(name=HOSTILE[1], app="a1", at=t),
            ev(name=HOSTILE[2], app="a2", at=t),
            ev(name=HOSTILE[3], app="a1", at=t),  # a 4th name
            ev(name=HOSTILE[0], app="a3", at=t),  # a 3rd app
            ev(name=HOSTILE[0], app="a1", server="s2", at=t),
            ev(name=HOSTILE[0], app="a1", server="s3", at=t),  # a 3rd server
            ev(name=HOSTILE[1], app="a2", at=t + 1),
        ],
    )
    assert res["accepted"] == 5
    assert [r["index"] for r in res["rejected"]] == [3, 4, 6]
    assert "3 distinct event names" in res["rejected"][0]["error"]
    assert "2 distinct apps" in res["rejected"][1]["error"]
    assert "2 distinct servers" in res["rejected"][2]["error"]
    keys = await api.keys(bucket)
    assert keys == [
        {"app_name": "a1", "events": sorted(HOSTILE[:2])},
        {"app_name": "a2", "events": sorted(HOSTILE[1:3])},
    ]
    # Another bucket has its own room; the same values are fine again once deleted.
    other = bucket + "-other"
    assert (await api.ingest(other, [ev(name=n, at=t) for n in ("x", "y", "z")]))["accepted"] == 3
    await api.delete_all(bucket)
    res = await api.ingest(bucket, [ev(name=n, at=t) for n in ("p", "q", "r")])
    assert res == {"accepted": 3, "rejected": []}


async def test_rate_limits_per_token_subject(make_api: ApiFactory, store_settings: Any, bucket: str) -> None:
    from dataclasses import replace

    from eventsapi.ratelimit import parse_limits

    api = await make_api(replace(store_settings, rate_limits=parse_limits("read=1/h:3")))
    noisy, quiet = api.auth(make_token(sub="noisy")), api.auth(make_token(sub="quiet"))
    path = f"/api/bucket/{bucket}/data/eventsKeysByApp"
    for left in (2, 1, 0):
        r = await api.request("GET", path, headers=noisy)
        assert r.status == 200
        assert r.headers["RateLimit-Policy"] == '"read";q=3;w=3600'
        assert r.headers["RateLimit"].startswith(f'"read";r={left};')
    r = await api.request("GET", path, headers=noisy)
    assert r.status == 429 and r.content_type == "application/problem+json"
    assert r.headers["Retry-After"] == "3600"  # one request an hour comes back
    # Another subject is not slowed, nor are the noisy token's writes (another class).
    assert (await api.request("GET", path, headers=quiet)).status == 200
    assert (await api.ingest(bucket, [ev()], headers=noisy))["accepted"] == 1
    metrics = await (await api.request("GET", "/metrics", headers={})).text()
    assert 'eventsapi_rate_limited_total{class="read"} 1.0' in metrics


async def scoped_delete(api: Api, bucket: str, body: Any = None) -> dict[str, Any]:
    kw = {} if body is None else {"json": body}
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events/delete", **kw)
    assert resp.status == 200, await resp.text()
    answer: dict[str, Any] = await resp.json()
    assert answer["bucket_id"] == bucket and answer["deleted"] is True
    return answer


async def test_scoped_delete_removes_exactly_what_it_names(api: Api, bucket: str) -> None:
    t = now_ms() - 3_600_000
    other = bucket + "-other"
    h = HOSTILE[10]  # '") |> yield() //'
    events = [
        ev(name=h, app="a1", server="s1", at=t, id="1"),
        ev(name=h, app="a1", server="s2", at=t + 10, id="2"),
        ev(name=h, app="a2", server="s1", at=t + 20, id="3"),
        ev(name="keep", app="a1", server="s1", at=t + 10, id="4"),
        ev(name=h, app="a1", server="", at=t + 30, id="5"),
    ]
    await api.ingest(bucket, events)
    await api.ingest(other, events)

    async def ids(name: str, b: str = bucket) -> list[str]:
        return sorted(r["id"] for r in (await api.retrieve(b, event_name=name))[0])

    # Name + app + time range: start inclusive, end exclusive.
    answer = await scoped_delete(api, bucket, {"event_name": h, "app_name": "a1", "start": t, "end": t + 30})
    assert answer.get("count", 2) == 2
    assert await ids(h) == ["3", "5"] and await ids("keep") == ["4"]
    # An empty server name is a filter of its own.
    await scoped_delete(api, bucket, {"server_name": ""})
    assert await ids(h) == ["3"]
    # The last event of (a2, name) goes: eventsKeysByApp shows it at once.
    await scoped_delete(api, bucket, {"app_name": "a2"})
    assert await api.keys(bucket) == [{"app_name": "a1", "events": ["keep"]}]
    # Nothing of the other bucket moved.
    assert await ids(h, other) == ["1", "2", "3", "5"] and await ids("keep", other) == ["4"]
    # No filter at all (no body): the whole bucket, like delete_all.
    await scoped_delete(api, bucket)
    assert await api.keys(bucket) == [] and len(await api.keys(other)) == 2


async def test_scoped_delete_rejects_unknown_filters(api: Api, bucket: str) -> None:
    for body in ({"event": "x"}, {"start": "not a date"}, {"event_name": ""}, [1]):
        resp = await api.request("POST", f"/api/bucket/{bucket}/data/events/delete", json=body)
        assert resp.status == 400
    read_only = api.auth(make_token([bucket], "events:read events:write"))
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events/delete", json={}, headers=read_only)
    assert resp.status == 403


async def test_retention_rejects_old_events_and_is_reported(
    make_api: ApiFactory, store_settings: Any, store_url: str, store_kind: str, request: Any, bucket: str
) -> None:
    from dataclasses import replace

    if store_kind == "influxql":  # on InfluxDB the engine's retention policy is what applies
        db = store_url.rsplit("/", 1)[1]
        request.getfixturevalue("influxd").query(
            f'ALTER RETENTION POLICY "autogen" ON "{db}" DURATION 1d SHARD DURATION 1h DEFAULT'
        )
    api = await make_api(replace(store_settings, retention_days=1))
    t = now_ms()
    res = await api.ingest(bucket, [ev(at=t - 7 * 86_400_000, id="old"), ev(at=t - 3_600_000, id="new")])
    assert res["accepted"] == 1
    assert [r["index"] for r in res["rejected"]] == [0] and "retention (1 days)" in res["rejected"][0]["error"]
    assert [r["id"] for r in (await api.retrieve(bucket, event_name="deploy"))[0]] == ["new"]
    ready = await (await api.request("GET", "/readyz", headers={})).json()
    assert ready == {"status": "ready", "retention_days": 1}


async def test_bucket_routes_describe_buckets_the_pm2_way(
    make_api: ApiFactory, store_settings: Any, bucket: str
) -> None:
    from dataclasses import replace

    api = await make_api()
    await api.ingest(bucket, [ev()])
    base = str(api.client.make_url("")).rstrip("/")
    everything = await (await api.request("GET", "/api/bucket")).json()
    assert {
        "_id": bucket,
        "name": bucket,
        "public_id": bucket,
        "node": {"endpoints": {"web": base, "realtime": base}},
    } in (everything)
    only = api.auth(make_token([bucket, "never-used"], "events:read"))
    listed = await (await api.request("GET", "/api/bucket", headers=only)).json()
    assert [b["_id"] for b in listed] == sorted([bucket, "never-used"])
    one = await api.request("GET", f"/api/bucket/{bucket}", headers=only)
    assert one.status == 200 and (await one.json())["node"]["endpoints"]["web"] == base
    assert (await api.request("GET", "/api/bucket/someone-else", headers=only)).status == 403
    assert (await api.request("GET", "/api/bucket", headers=api.auth(make_token(scope="events:write")))).status == 403
    # Behind a proxy: a configured public URL, or the forwarded headers when trusted.
    proxied = await make_api(replace(store_settings, public_url="https://events.example/"))
    got = await (await proxied.request("GET", f"/api/bucket/{bucket}")).json()
    assert got["node"]["endpoints"] == {"web": "https://events.example", "realtime": "https://events.example"}
    trusting = await make_api(replace(store_settings, trust_forwarded=True))
    fwd = {**trusting.auth(), "X-Forwarded-Proto": "https", "X-Forwarded-Host": "dash.example"}
    got = await (await trusting.request("GET", f"/api/bucket/{bucket}", headers=fwd)).json()
    assert got["node"]["endpoints"]["web"] == "https://dash.example"
    untrusted = await (await api.request("GET", f"/api/bucket/{bucket}", headers={**api.auth(), **fwd})).json()
    assert untrusted["node"]["endpoints"]["web"] == base


# -- stats ------------------------------------------------------------------------------------


async def test_stats_minute_windows_zero_filled(api: Api, bucket: str) -> None:
    now = now_ms()
    minute = 60_000
    cur = now - now % minute
    await api.ingest(
        bucket,
        [
            ev(at=cur - 5 * minute + 1),
            ev(at=cur - 5 * minute + 2),
            ev(at=cur - minute),
            ev(name="other", at=cur - minute),
            ev(at=now - 3 * 86_400_000),
        ],
    )
    counts = await api.stats(bucket, event_name="deploy")
    # 2 days of minutes: every window from the one containing now-2d to the one containing now.
    assert counts[-1][0] == cur
    assert counts[0][0] == (now - 2 * 86_400_000) // minute * minute
    assert len(counts) in (2881, 2882)
    assert all(b[0] - a[0] == minute for a, b in itertools.pairwise(counts))
    as_dict = dict((t, c) for t, c in counts)
    assert as_dict[cur - 5 * minute] == 2 and as_dict[cur - minute] == 1
    assert sum(as_dict.values()) == 3


async def test_stats_filters_by_app_and_server(api: Api, bucket: str) -> None:
    t = now_ms() - 3_600_000
    await api.ingest(
        bucket,
        [
            ev(app="a", server="x", at=t),
            ev(app="a", server="y", at=t),
            ev(app="b", server="x", at=t),
            ev(app="a", server=None, at=t),
        ],
    )

    async def total(**f: Any) -> int:
        return sum(c for _, c in await api.stats(bucket, event_name="deploy", interval="hour", **f))

    assert await total() == 4
    assert await total(app_name="a") == 3
    assert await total(server_name="x") == 2
    assert await total(app_name="a", server_name="x") == 1
    assert await total(server_name="") == 1
    assert await total(app_name="zzz") == 0


async def breakdown(api: Api, bucket: str, **body: Any) -> dict[str, Any]:
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events/stats", json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("key", ["app_name", "server_name"])
async def test_stats_breakdown_sums_to_the_histogram(api: Api, bucket: str, key: str) -> None:
    t = now_ms() - 5 * 3_600_000
    hostile = " ".join(HOSTILE)[:256]
    # value i gets 12 - i events; the largest is hostile text; one event has no server.
    values = [hostile, *(f"v{i:02d}" for i in range(1, 12))]
    events = [
        ev(app=v if key == "app_name" else "api", server=(v if key == "server_name" else "s1"), at=t + j * 600_000 + i)
        for i, v in enumerate(values)
        for j in range(12 - i)
    ]
    events += [ev(app="api", server=None, at=t), ev(name="other-name", app="x", server="x", at=t)]
    await api.ingest(bucket, events)
    body = {"event_name": "deploy", "days": 1, "interval": "hour", "tz": "Asia/Kolkata"}
    plain = await api.stats(bucket, **body)
    answer = await breakdown(api, bucket, **body, group_by=key, top=4)
    assert (answer["interval"], answer["tz"], answer["group_by"]) == ("hour", "Asia/Kolkata", key)
    series = answer["series"]
    assert len(series) == 5 and series[-1]["other"] is True and series[-1][key] is None
    assert [s[key] for s in series[:4]] == [hostile, "v01", "v02", "v03"]
    totals = [s["total"] for s in series[:4]]
    assert totals == sorted(totals, reverse=True) and all(s["other"] is False for s in series[:4])
    for s in series:
        assert [p[0] for p in s["points"]] == [w for w, _ in plain]
        assert s["total"] == sum(c for _, c in s["points"])
    assert [sum(s["points"][i][1] for s in series) for i in range(len(plain))] == [c for _, c in plain]
    assert sum(s["total"] for s in series) == len(events) - 1

    everything = await breakdown(api, bucket, **body, group_by=key, top=50)
    assert all(not s["other"] for s in everything["series"])
    names = {s[key] for s in everything["series"]}
    assert hostile in names and (key == "app_name" or "" in names)
    filtered = await breakdown(api, bucket, **body, app_name="api", group_by=key)
    assert sum(s["total"] for s in filtered["series"]) == sum(
        c for _, c in await api.stats(bucket, **body, app_name="api")
    )
    assert (await breakdown(api, bucket, **{**body, "event_name": "nothing"}, group_by=key))["series"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"event_name": "e", "top": 5},
        {"event_name": "e", "group_by": "app_name", "top": 0},
        {"event_name": "e", "group_by": "app_name", "top": 51},
        {"event_name": "e", "group_by": "app_name", "top": None},
        {"event_name": "e", "group_by": "app"},
        {"event_name": "e", "group_by": "event_name"},
        {"event_name": "e", "group_by": "app_name", "top": 50, "days": 60, "interval": "minute"},
    ],
)
async def test_stats_breakdown_validation(api: Api, bucket: str, body: Any) -> None:
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events/stats", json=body)
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
async def test_stats_day_windows_start_at_local_midnight(api: Api, bucket: str, tz: str) -> None:
    zone = ZoneInfo(tz)
    local_now = datetime.now(zone)
    midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = (midnight - timedelta(hours=12)).replace(hour=0)
    m = int(midnight.timestamp() * 1000)
    await api.ingest(bucket, [ev(at=m), ev(at=m - 1), ev(at=m - 2), ev(at=int(yesterday.timestamp() * 1000))])
    counts = await api.stats(bucket, event_name="deploy", days=365, interval="day", tz=tz)
    starts = [datetime.fromtimestamp(t / 1000, zone) for t, _ in counts]
    assert all((s.hour, s.minute) == (0, 0) for s in starts), tz
    lengths = {b[0] - a[0] for a, b in itertools.pairwise(counts)}
    if tz != "Asia/Kolkata":  # a year of a DST zone has 23 h and 25 h days
        assert len(lengths) > 1, lengths
    else:
        assert lengths == {86_400_000}
    as_dict = dict((t, c) for t, c in counts)
    assert as_dict[m] == 1
    assert as_dict[int(yesterday.timestamp() * 1000)] == 3
    assert sum(as_dict.values()) == 4
    assert counts[-1][0] == m


async def test_stats_hour_windows_in_half_hour_zone(api: Api, bucket: str) -> None:
    t = now_ms() - 2 * 3_600_000
    await api.ingest(bucket, [ev(at=t)])
    counts = await api.stats(bucket, event_name="deploy", days=1, interval="hour", tz="Asia/Kolkata")
    zone = ZoneInfo("Asia/Kolkata")
    assert all(datetime.fromtimestamp(w / 1000, zone).minute == 0 for w, _ in counts)
    assert sum(c for _, c in counts) == 1
    assert len(counts) in (25, 26)


@pytest.mark.parametrize(
    "body",
    [
        {"event_name": "e", "days": 0},
        {"event_name": "e", "days": 366},
        {"event_name": "e", "days": "2"},
        {"event_name": "e", "interval": "week"},
        {"event_name": "e", "tz": "Mars/Olympus"},
        {"event_name": "e", "tz": "../../etc/passwd"},
        {"event_name": "e", "days": 70, "interval": "minute"},
        {"app_name": "a"},
        {"event_name": "e", "days": True},
    ],
)
async def test_stats_validation(api: Api, bucket: str, body: Any) -> None:
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events/stats", json=body)
    assert resp.status == 400


# -- keys and delete --------------------------------------------------------------------------


# -- export -----------------------------------------------------------------------------------


async def export(api: Api, bucket: str, **params: Any) -> list[dict[str, Any]]:
    resp = await api.request("GET", f"/api/bucket/{bucket}/data/events/export", params=params)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/x-ndjson"
    return [json.loads(line) for line in (await resp.read()).splitlines()]


def without_position(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in line.items() if k != "position"} for line in lines]


async def test_export_streams_every_event_once_oldest_first_and_resumes(api: Api, bucket: str) -> None:
    t = now_ms() - 3 * 86_400_000
    hostile = " ".join(HOSTILE)[:200]
    events = [ev(name=["deploy", hostile][i % 2], app=["api", hostile][i % 3 == 0], at=t + (i // 7) * 1000,
                 id=f"x{i:04d}", data={"i": i, "s": hostile}) for i in range(2500)]  # fmt: skip
    events += [ev(at=t + 5, id=f"burst{i}", server=None) for i in range(30)]  # one millisecond, many events
    for i in range(0, len(events), 500):
        assert (await api.ingest(bucket, events[i : i + 500]))["accepted"] == len(events[i : i + 500])
    lines = await export(api, bucket)
    assert len(lines) == len(events) and len({line["id"] for line in lines}) == len(events)
    assert [line["at"] for line in lines] == sorted(line["at"] for line in lines)
    sent = {e["id"]: e for e in events}
    for line in lines:
        e = sent[line["id"]]
        assert (line["event_name"], line["app_name"], line["at"], line["data"]) == (
            e["event_name"], e["app_name"], e["at"], e.get("data", {}),
        )  # fmt: skip
        assert line["server_name"] == e.get("server_name", "")
    # Resume after any line: exactly the rest; the order never changes.
    for k in (0, 999, 1000, 2529):
        assert await export(api, bucket, after=lines[k]["position"]) == lines[k + 1 :]
    # Filters, and a time range (start inclusive, end exclusive; digits are epoch ms).
    only = await export(api, bucket, event_name=hostile, app_name=hostile, start=str(t + 10_000), end=str(t + 200_000))
    assert only == [x for x in lines if x["event_name"] == hostile and x["app_name"] == hostile
                    and t + 10_000 <= x["at"] < t + 200_000]  # fmt: skip
    # gzip on request.
    resp = await api.request(
        "GET", f"/api/bucket/{bucket}/data/events/export", headers={**api.auth(), "Accept-Encoding": "gzip"}
    )
    assert resp.headers.get("Content-Encoding") == "gzip" and len(await resp.read()) > 0


async def test_export_imported_elsewhere_is_identical_and_idempotent(api: Api, bucket: str) -> None:
    t = now_ms() - 86_400_000
    await api.ingest(bucket, [ev(at=t + i, id=f"e{i}", data={"nested": {"i": i}}) for i in range(300)])
    lines = await export(api, bucket)
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    other = bucket + "-copy"
    for _ in range(2):  # the second import stores nothing new
        resp = await api.ingest_raw(other, io.BytesIO(body), content_type="application/x-ndjson")
        assert resp.status == 200 and (await resp.json())["rejected"] == []
        assert without_position(await export(api, other)) == without_position(lines)


@pytest.mark.parametrize("after", ["nonsense", "Wy0xLCJ4Il0", "A" * 600])
async def test_export_refuses_a_position_it_did_not_issue(api: Api, bucket: str, after: str) -> None:
    resp = await api.request("GET", f"/api/bucket/{bucket}/data/events/export", params={"after": after})
    assert resp.status == 400 and resp.content_type == "application/problem+json"
    resp = await api.request("GET", f"/api/bucket/{bucket}/data/events/export", params={"start": "yesterday"})
    assert resp.status == 400


async def test_keys_by_app_sorted(api: Api, bucket: str) -> None:
    t = now_ms() - 1000
    await api.ingest(
        bucket,
        [
            ev(name=n, app=a, at=t)
            for a, n in [("zeta", "b"), ("alpha", "z"), ("alpha", "a"), ("zeta", "a"), ("alpha", "a")]
        ],
    )
    assert await api.keys(bucket) == [
        {"app_name": "alpha", "events": ["a", "z"]},
        {"app_name": "zeta", "events": ["a", "b"]},
    ]
    assert await api.keys(bucket + "x") == []


async def test_delete_all_is_isolated_and_complete(api: Api, bucket: str) -> None:
    other = bucket + "-keep"
    t = now_ms() - 1000
    await api.ingest(bucket, [ev(at=t, id="gone"), ev(name="x", app="b", at=t)])
    await api.ingest(other, [ev(at=t, id="kept")])
    await api.delete_all(bucket)
    assert (await api.retrieve(bucket, event_name="deploy"))[0] == []
    assert sum(c for _, c in await api.stats(bucket, event_name="deploy", interval="hour")) == 0
    assert await api.keys(bucket) == []
    rows, _ = await api.retrieve(other, event_name="deploy")
    assert [r["id"] for r in rows] == ["kept"]
    assert await api.keys(other) == [{"app_name": "api", "events": ["deploy"]}]
    # The bucket is usable again, and an id from before the delete is new again.
    await api.ingest(bucket, [ev(at=t, id="gone")])
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert [r["id"] for r in rows] == ["gone"]
    await api.delete_all(bucket + "-never-written")


async def test_restart_keeps_data(make_api: ApiFactory, bucket: str) -> None:
    first = await make_api()
    await first.ingest(bucket, [ev(at=now_ms() - 10, id="persist")])
    await first.client.close()
    second = await make_api()
    rows, _ = await second.retrieve(bucket, event_name="deploy")
    assert [r["id"] for r in rows] == ["persist"]


# -- authentication and authorisation --------------------------------------------------------


def _none_token() -> str:
    import base64

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return (
        b64({"alg": "none", "typ": "JWT"})
        + "."
        + b64({"sub": "x", "buckets": ["*"], "scope": ALL_SCOPES, "exp": int(time.time()) + 600})
        + "."
    )


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Basic dXNlcjpwYXNz", 401),
        ("Bearer", 401),
        ("Bearer garbage", 401),
        ("Bearer " + make_token(ttl=-3600), 401),
        ("Bearer " + _none_token(), 401),
        ("Bearer " + make_token(secret="another-secret-another-secret-another"), 401),
        ("Bearer " + make_token(exp=None), 401),
        ("Bearer " + make_token(nbf=int(time.time()) + 3600), 401),
        ("Bearer " + make_token(sub=None), 401),
        ("Bearer " + make_token(buckets=["someone-else"]), 403),
        ("Bearer " + make_token(scope="events:write"), 403),
    ],
)
async def test_auth_failures(api: Api, bucket: str, header: str | None, status: int) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events", json={"event_name": "x"}, headers=headers)
    assert resp.status == status
    assert resp.content_type == "application/problem+json"
    if status == 401:
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_scopes_per_route(api: Api, bucket: str) -> None:
    read_only = api.auth(make_token([bucket], "events:read"))
    write_only = api.auth(make_token([bucket], "events:write"))
    r = await api.request("POST", f"/api/bucket/{bucket}/data/events/ingest", json=[ev()], headers=read_only)
    assert r.status == 403
    r = await api.request("DELETE", f"/api/bucket/{bucket}/data/events/delete_all", headers=read_only)
    assert r.status == 403
    r = await api.request("POST", f"/api/bucket/{bucket}/data/events/ingest", json=[ev()], headers=write_only)
    assert r.status == 200
    r = await api.request("GET", f"/api/bucket/{bucket}/data/eventsKeysByApp", headers=write_only)
    assert r.status == 403
    r = await api.request("GET", f"/api/bucket/{bucket}/data/eventsKeysByApp", headers=read_only)
    assert r.status == 200 and len(await r.json()) == 1


def test_hs_token_fixture_is_sane() -> None:
    claims = jwt.decode(make_token(), SECRET, algorithms=["HS256"])
    assert claims["buckets"] == ["*"]


# -- the rest of the surface -----------------------------------------------------------------


async def test_unknown_route_and_method(api: Api) -> None:
    r = await api.request("GET", "/nope")
    assert r.status == 404 and r.content_type == "application/problem+json"
    r = await api.request("GET", "/api/bucket/b/data/events")
    assert r.status == 405 and r.content_type == "application/problem+json"


async def test_server_header_names_no_versions(api: Api, bucket: str) -> None:
    for resp in (
        await api.request("GET", "/healthz", headers={}),
        await api.request("GET", "/nope", headers={}),
        await api.request("POST", f"/api/bucket/{bucket}/data/events", json={"event_name": "x"}),
    ):
        assert resp.headers["Server"] == "eventsapi"


async def test_dashboard_page_is_served_with_a_strict_policy(api: Api) -> None:
    page = await api.request("GET", "/", headers={})
    assert page.status == 200 and page.content_type == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script" in await page.text() and "<script>" not in await page.text()  # no inline script
    js = await api.request("GET", "/ui/app.js", headers={})
    assert js.status == 200 and js.content_type == "text/javascript"
    for bad in ("/ui/..%2Fapp.py", "/ui/index.html", "/ui/nope.js"):
        assert (await api.request("GET", bad, headers={})).status == 404


async def test_health_ready_metrics_openapi(api: Api, bucket: str) -> None:
    assert (await api.request("GET", "/healthz", headers={})).status == 200
    assert (await api.request("GET", "/readyz", headers={})).status == 200
    await api.ingest(bucket, [ev()])
    r = await api.request("GET", "/metrics", headers={})
    text = await r.text()
    assert r.status == 200 and "eventsapi_events_ingested_total 1.0" in text
    assert 'eventsapi_requests_total{method="POST",route="/api/bucket/{id}/data/events/ingest",status="200"}' in text
    assert "eventsapi_request_duration_seconds_bucket" in text
    doc = await (await api.request("GET", "/api/openapi.json", headers={})).json()
    assert doc["openapi"].startswith("3.1")
