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
    svc = Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0"}, *extra)
    svc.start()
    yield svc
    svc.close()


def run_client(service: Service, token: str, bucket: str, name: str) -> dict[str, Any]:
    out = subprocess.run(
        ["node", str(CLIENT / "client.js"), f"http://127.0.0.1:{service.port}", token, bucket, name],
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
    base = f"http://127.0.0.1:{service.port}"
    assert got["bucket"] == {"_id": bucket, "name": bucket, "public_id": bucket,
                             "node": {"endpoints": {"web": base, "realtime": base}}}  # fmt: skip
    assert got["deleteAll"] == {"bucket_id": bucket, "deleted": True}
    assert got["after"] == []
