"""`eventsapi serve --workers 2`: two processes serve one port; a worker killed with -9 is
replaced; SIGTERM to the parent stops everything; metrics add up every worker's; on InfluxDB
each bucket's ingest is written by one worker."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest

from support.service import Service

pytestmark = pytest.mark.slow


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def wait_for_workers(parent: int, n: int, not_in: set[int] = frozenset()) -> set[int]:  # type: ignore[assignment]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        kids = children(parent)
        if len(kids) == n and not (kids & not_in):
            return kids
        time.sleep(0.1)
    raise AssertionError(f"workers of {parent}: {children(parent)}")


def test_two_workers_one_port_restart_and_stop(tmp_path: Path) -> None:
    service = Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0"}, "--workers", "2")
    service.start()
    try:
        assert service.proc is not None
        token = service.token("--sub", "w", "--bucket", "b", "--scope", "events:read events:write")
        workers = wait_for_workers(service.proc.pid, 2)
        acked = 0
        for i in range(40):  # connections land on both workers
            status, body, _ = service.call("POST", "/api/bucket/b/data/events/ingest",
                                           [{"event_name": "e", "app_name": "a", "id": f"x{i}"}], token)  # fmt: skip
            assert status == 200
            acked += body["accepted"]
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        replacement = wait_for_workers(service.proc.pid, 2, not_in={victim})
        assert len(replacement & workers) == 1
        for i in range(40, 60):
            status, body, _ = service.call("POST", "/api/bucket/b/data/events/ingest",
                                           [{"event_name": "e", "app_name": "a", "id": f"x{i}"}], token)  # fmt: skip
            assert status == 200
            acked += body["accepted"]
        _, rows, _ = service.call("POST", "/api/bucket/b/data/events", {"event_name": "e", "limit": 1000}, token)
        assert sorted(r["id"] for r in rows) == sorted(f"x{i}" for i in range(60)) and acked == 60
        _, text, _ = service.call("GET", "/metrics")
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.decode().splitlines()
            if line.startswith("eventsapi_requests_total{") and "ingest" in line
        )
        assert total >= 20  # the survivors' counts, whichever worker answers /metrics
        parent = service.proc.pid
        assert service.stop() == 0  # SIGTERM to the parent: every worker drains and exits
        assert children(parent) == set()
    finally:
        service.close()


def test_on_influxdb_each_bucket_is_written_by_one_worker(tmp_path: Path, influxd: Any) -> None:
    """Connections land on both workers, but a bucket's ingest is passed to the worker that owns
    it (peers.py): each bucket's intents come from one writer. The answers are the owner's,
    problems included, and every request is counted and logged once."""
    db = "w_" + uuid.uuid4().hex[:10]
    influxd.query(f'CREATE DATABASE "{db}"')
    env = {"EVENTSAPI_STORE": f"influxql://127.0.0.1:{influxd.port}/{db}", "EVENTSAPI_ACCESS_LOG": "1"}
    buckets = ["b0", "b1", "b.2-x_"]
    with Service(tmp_path, env, "--workers", "2") as service:
        assert service.proc is not None
        wait_for_workers(service.proc.pid, 2)
        token = service.token("--sub", "w", "--bucket", "*", "--scope", "events:read events:write")
        for i in range(60):  # a connection each: the kernel spreads them over both workers
            path = f"/api/bucket/{urllib.parse.quote(buckets[i % 3])}/data/events/ingest"
            status, body, _ = service.call("POST", path, [{"event_name": "e", "app_name": "a", "id": f"x{i}"}], token)
            assert status == 200 and body["accepted"] == 1, body
        for i in range(6):  # the owner's problem, relayed as it is
            status, body, headers = service.call("POST", f"/api/bucket/b{i % 2}/data/events/ingest", "no batch", token)
            assert status == 400 and headers["Content-Type"].startswith("application/problem+json"), body
        answer = influxd.query('SELECT "m" FROM "eventsapi_writes" GROUP BY "bucket_id"', db)
        writers = {
            s["tags"]["bucket_id"]: {m.split(" ")[0] for _, m in s["values"]}
            for s in json.loads(answer)["results"][0]["series"]
        }
        assert sorted(writers) == sorted(buckets) and all(len(w) == 1 for w in writers.values())
        for i, bucket in enumerate(buckets):
            path = f"/api/bucket/{urllib.parse.quote(bucket)}/data/events"
            _, rows, _ = service.call("POST", path, {"event_name": "e", "limit": 100}, token)
            assert sorted(r["id"] for r in rows) == sorted(f"x{k}" for k in range(i, 60, 3))
        _, text, _ = service.call("GET", "/metrics")
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.decode().splitlines()
            if line.startswith("eventsapi_requests_total{") and "ingest" in line
        )
        assert counted == 66
        logged = [line for line in service.logs().splitlines() if '"path": "/api/bucket/' in line and "ingest" in line]
        assert len(logged) == 66
