"""`eventsapi serve --workers 2`: two processes serve one port; a worker killed with -9 is
replaced; SIGTERM to the parent stops everything; metrics add up every worker's."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

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
