"""PM2's own API client, @pm2/js-api from npm (tests/pm2js), against a real `eventsapi serve`:
with only a base URL and a token from `eventsapi token`, a dashboard's calls answer what the
HTTP API answers — on SQLite and on a real InfluxDB 1.x."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.influxd import InfluxD
from support.service import Service

pytestmark = pytest.mark.slow
CLIENT = Path(__file__).parent / "pm2js"


@pytest.fixture(params=["sqlite", "influxql"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    if shutil.which("node") is None or not (CLIENT / "node_modules" / "@pm2" / "js-api").exists():
        if os.environ.get("CI"):
            pytest.fail("node and tests/pm2js/node_modules are required in CI (scripts/test.sh installs them)")
        pytest.skip("PM2's client not installed: (cd tests/pm2js && npm ci)")
    extra: list[str] = []
    if request.param == "influxql":
        influxd: InfluxD = request.getfixturevalue("influxd")
        db = "pm2_" + uuid.uuid4().hex[:10]
        influxd.query(f'CREATE DATABASE "{db}"')
        extra = ["--store", f"influxql://127.0.0.1:{influxd.port}/{db}"]
    svc = Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "1"}, *extra)
    svc.start()
    yield svc
    svc.close()


def run_client(service: Service, token: str, bucket: str, name: str) -> dict[str, Any]:
    out = subprocess.run(
        ["node", str(CLIENT / "client.js"), service.url, token, bucket, name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_pm2_js_api_reads_and_deletes_like_pm2_plus(service: Service) -> None:
    token = service.token("--sub", "dash", "--bucket", "*", "--scope", "events:read events:write events:delete")
    bucket = uuid.uuid4().hex[:24]  # shaped like a PM2 Plus bucket id: the client resolves its node first
    now = int(time.time() * 1000)
    deploys = [
        {"event_name": "deploy", "app_name": "api", "server_name": "web-1", "at": now - 60_000 * i, "id": f"d{i}"}
        for i in range(5)
    ]
    restart = {"name": "restart", "at": now - 1000, "data": {}, "process": {"name": "worker", "server": "web-2"}}
    events = [*deploys, restart]
    status, answer, _ = service.call("POST", f"/api/bucket/{bucket}/data/events/ingest", events, token)
    assert status == 200 and answer["accepted"] == 6
    _, expected, _ = service.call(
        "POST", f"/api/bucket/{bucket}/data/events", {"event_name": "deploy", "limit": 10}, token
    )

    got = run_client(service, token, bucket, "deploy")
    assert got["retrieve"] == expected and [e["id"] for e in expected] == ["d0", "d1", "d2", "d3", "d4"]
    assert got["retrieveDated"] == expected  # start/end sent as dates
    assert sum(c for _, c in got["histogram"]) == 5 and len(got["histogram"]) in (24, 25)
    assert got["metadatas"] == [
        {"app_name": "api", "events": ["deploy"]},
        {"app_name": "worker", "events": ["restart"]},
    ]
    base = service.url
    assert got["bucket"] == {"_id": bucket, "name": bucket, "public_id": bucket,
                             "node": {"endpoints": {"web": base, "realtime": base}}}  # fmt: skip
    assert got["deleteAll"] == {"bucket_id": bucket, "deleted": True}
    assert got["after"] == []


def test_pm2_js_api_realtime_feed_delivers_new_events(service: Service) -> None:
    token = service.token("--sub", "live", "--bucket", "*", "--scope", "events:read events:write")
    bucket = uuid.uuid4().hex[:24]
    node = subprocess.Popen(
        ["node", str(CLIENT / "realtime.js"), service.url, token, bucket, "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stdout is not None
        assert node.stdout.readline().strip() == "ready", node.stderr.read() if node.stderr else ""
        now = int(time.time() * 1000)
        batch = [
            {"event_name": "deploy", "app_name": "api", "server_name": "web-1", "at": now, "id": "a"},
            {"event_name": "deploy", "app_name": "api", "server_name": "web-2", "at": now, "id": "b"},
            {
                "name": "restart",
                "at": now - 120_000,
                "data": {"x": 1},
                "process": {"name": "worker", "server": "web-1"},
            },
        ]
        status, _, _ = service.call("POST", f"/api/bucket/{bucket}/data/events/ingest", batch, token)
        service.call("POST", "/api/bucket/other-bucket/data/events/ingest", batch[:1], token)
        assert status == 200
        assert node.wait(30) == 0, node.stderr.read() if node.stderr else ""
        packets = [json.loads(line) for line in node.stdout.read().splitlines()]
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        for pipe in (node.stdout, node.stderr):
            if pipe is not None:
                pipe.close()
    by_server = {p["server"]: p["events"] for p in packets}
    assert sorted(by_server) == ["web-1", "web-2"]
    assert [e["id"] for e in by_server["web-2"]] == ["b"]
    # One batch: in ingest order on SQLite; on InfluxDB one write is one instant, ordered by id.
    restart = next(e for e in by_server["web-1"] if e["event_name"] == "restart")
    assert sorted(e["event_name"] for e in by_server["web-1"]) == ["deploy", "restart"]
    assert restart["data"] == {"x": 1} and restart["app_name"] == "worker"
    # The token rode in the URL, as PM2's protocol has it: the access log never shows it.
    logs = service.logs()
    assert '"path": "/primus"' in logs and token not in logs
