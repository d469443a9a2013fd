"""Ingest keys (docs/api.md §3.1) on every store: a key authenticates like a token for its
buckets and scope only, is stored only as a digest, records its last use, and once revoked is
refused by every worker within seconds; malformed, unknown or revoked keys are 401. Token
times must be numbers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from eventsapi import keys
from eventsapi.app import STORE
from support import Api, make_token
from support.influxd import InfluxD
from support.service import Service
from test_workers import wait_for_workers


async def new_key(api: Api, buckets: list[str], scope: str = "events:write") -> tuple[str, keys.KeyRecord]:
    key, record = keys.new_key('producer ${x} |> "q" \\ ,=', buckets, scope, int(time.time() * 1000))
    await api.client.app[STORE].key_create(record)
    return key, record


def ev(i: int) -> dict[str, Any]:
    return {"event_name": "deploy", "app_name": "api", "id": f"k{i}", "at": int(time.time() * 1000)}


async def ingest(api: Api, bucket: str, key: str, events: list[dict[str, Any]]) -> int:
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events/ingest", json=events, headers=api.auth(key))
    return resp.status


async def test_a_key_grants_its_buckets_and_scope_only(api: Api, bucket: str) -> None:
    key, record = await new_key(api, [bucket])
    assert await ingest(api, bucket, key, [ev(1)]) == 200
    assert await ingest(api, bucket + "-other", key, [ev(2)]) == 403
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events", json={"event_name": "deploy"},
                             headers=api.auth(key))  # fmt: skip
    assert resp.status == 403  # events:write only
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert [r["id"] for r in rows] == ["k1"]
    # What the store keeps cannot be used: only the digest, and it is not the key.
    (stored,) = await api.client.app[STORE].keys(record.key_id)
    assert replace(stored, last_used=None) == record and key not in repr(stored) and stored.digest != key
    assert stored.name == record.name  # hostile characters survive the round trip


async def test_last_use_is_recorded(api: Api, bucket: str) -> None:
    key, record = await new_key(api, [bucket])
    before = int(time.time() * 1000)
    assert await ingest(api, bucket, key, [ev(1)]) == 200
    async with asyncio.timeout(10):
        while True:  # written in the background, never in the request's way
            (stored,) = await api.client.app[STORE].keys(record.key_id)
            if stored.last_used is not None:
                break
            await asyncio.sleep(0.1)
    assert stored.last_used >= before and stored.revoked is None


async def test_revoked_unknown_and_malformed_keys_are_401(api: Api, bucket: str) -> None:
    key, record = await new_key(api, [bucket])
    assert await ingest(api, bucket, key, [ev(1)]) == 200
    store = api.client.app[STORE]
    assert await store.key_revoke(record.key_id, int(time.time() * 1000))
    assert not await store.key_revoke("0" * 16, 0)
    deadline = time.monotonic() + 10
    probe = ev(2)  # accepted (once) while the revocation has not reached this process
    while await ingest(api, bucket, key, [probe]) == 200:
        assert time.monotonic() < deadline, "a revoked key still worked after 10 s"
        await asyncio.sleep(0.2)
    resp = await api.request("POST", f"/api/bucket/{bucket}/data/events/ingest", json=[ev(3)], headers=api.auth(key))
    assert resp.status == 401 and "invalid_token" in resp.headers["WWW-Authenticate"]
    assert (await resp.json())["detail"] == "key revoked"
    # A touch after the revocation (a use recorded late by another process) never undoes it.
    await store.key_touch(record.key_id, int(time.time() * 1000))
    (stored,) = await store.keys(record.key_id)
    assert stored.revoked is not None
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    unknown = keys.new_key("x", [bucket], "events:write", 0)[0]
    for bad, detail in ((forged, "unknown key"), (unknown, "unknown key"), ("eak_nope", "malformed key")):
        resp = await api.request("POST", f"/api/bucket/{bucket}/data/events/ingest", json=[ev(4)],
                                 headers=api.auth(bad))  # fmt: skip
        assert resp.status == 401 and (await resp.json())["detail"] == detail
    rows, _ = await api.retrieve(bucket, event_name="deploy")
    assert {r["id"] for r in rows} <= {"k1", "k2"} and len(rows) <= 2


@pytest.mark.parametrize(
    "claims",
    [{"exp": "9999999999"}, {"nbf": "0"}, {"iat": str(int(time.time()))}, {"exp": True}],
    ids=["exp-string", "nbf-string", "iat-string", "exp-bool"],
)
async def test_token_times_must_be_numbers(api: Api, bucket: str, claims: dict[str, Any]) -> None:
    token = make_token(**claims)
    resp = await api.request("GET", f"/api/bucket/{bucket}/data/eventsKeysByApp", headers=api.auth(token))
    assert resp.status == 401


# -- the command and several processes ------------------------------------------------------


def eventsapi(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eventsapi", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "influxql"])
def test_keys_command_and_revocation_on_two_workers(tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    env: dict[str, str] = {}
    if kind == "influxql":
        server: InfluxD = request.getfixturevalue("influxd")
        db = f"keys_{int(time.time() * 1000)}"
        server.query(f'CREATE DATABASE "{db}"')
        env["EVENTSAPI_STORE"] = f"influxql://127.0.0.1:{server.port}/{db}"
    with Service(tmp_path, env, "--workers", "2") as service:
        assert service.proc is not None
        wait_for_workers(service.proc.pid, 2)
        made = eventsapi(tmp_path, service.env, "keys", "create", "--bucket", "b1", "--name", "web-1")
        assert made.returncode == 0, made.stderr
        key = made.stdout.splitlines()[-1]
        key_id = keys.key_id_of(key)
        assert key_id is not None and "shown once" in made.stderr
        for i in range(20):  # new connections: both workers take some, and cache the key
            status, body, _ = service.call("POST", "/api/bucket/b1/data/events/ingest", [ev(i)], key)
            assert status == 200 and body["accepted"] == 1
        listed = eventsapi(tmp_path, service.env, "keys", "list")
        assert key_id in listed.stdout and "web-1" in listed.stdout and "events:write" in listed.stdout
        assert key not in listed.stdout and key.split("_", 2)[2] not in listed.stdout
        revoked_at = time.monotonic()
        gone = eventsapi(tmp_path, service.env, "keys", "revoke", key_id)
        assert gone.returncode == 0, gone.stderr
        probe = [ev(99)]  # stored once at most, while the revocation has not reached a worker
        while service.call("POST", "/api/bucket/b1/data/events/ingest", probe, key)[0] != 401:
            time.sleep(0.2)
        time.sleep(max(0.0, keys.CACHE_S + 0.5 - (time.monotonic() - revoked_at)))
        statuses = {service.call("POST", "/api/bucket/b1/data/events/ingest", probe, key)[0] for _ in range(20)}
        assert time.monotonic() - revoked_at < 10 and statuses == {401}
        (row,) = [r for r in eventsapi(tmp_path, service.env, "keys", "list").stdout.splitlines() if key_id in r]
        assert not row.endswith(" -")  # the revoked column holds a time
        token = service.token("--sub", "r", "--bucket", "b1", "--scope", "events:read")
        _, rows, _ = service.call("POST", "/api/bucket/b1/data/events", {"event_name": "deploy", "limit": 100}, token)
        assert sorted(r["id"] for r in rows if r["id"] != "k99") == sorted(f"k{i}" for i in range(20))
        assert key not in service.logs() and key.split("_", 2)[2] not in service.logs()


def test_keys_command_refuses_bad_input(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    bad_scope = eventsapi(tmp_path, env, "keys", "create", "--bucket", "b", "--name", "n", "--scope", "events:rule")
    assert bad_scope.returncode == 2 and "unknown scope" in bad_scope.stderr and not bad_scope.stdout
    bad_name = eventsapi(tmp_path, env, "keys", "create", "--bucket", "b", "--name", "a\nb")
    assert bad_name.returncode == 2 and "--name" in bad_name.stderr
    missing = eventsapi(tmp_path, env, "keys", "revoke", "0123456789abcdef")
    assert missing.returncode == 1 and "no key" in missing.stderr


def test_key_query_texts_bind_the_id_and_render_escaped_fields() -> None:
    from eventsapi.stores import influxkeys
    from eventsapi.stores import influxql_text as ql

    text, params = ql.keys_query("0123456789abcdef")
    assert "0123456789abcdef" not in text and params == {"key_id": "0123456789abcdef"}
    assert ql.keys_query(None)[1] == {}
    _, record = keys.new_key('a "b" \\ c', ["b1", "b2"], "events:write", 5)
    line = influxkeys.record_lines([record], 7).decode()
    assert line.startswith(f"eventsapi_keys,key_id={record.key_id} ") and line.endswith(" 7\n")
    assert 'name="a \\"b\\" \\\\ c"' in line and "created=5i" in line and "revoked" not in line
    fields = {"name": record.name, "digest": record.digest, "buckets": '["b1","b2"]', "scope": "events:write",
              "created": 5, "last_used": None, "revoked": 9}  # fmt: skip
    assert influxkeys.records({record.key_id: fields}) == [replace(record, revoked=9)]
    assert influxkeys.records({record.key_id: {"last_used": 3}}) == []  # its creation expired: unknown
