"""The bucket-affine proxy the deployments ship (deploy/nginx/eventsapi.conf), run by a real
nginx in front of two real `eventsapi serve` replicas sharing a real influxd: every request
about one bucket reaches one replica, buckets spread over both, live tails stream through it,
and what the producers sent is stored once."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.influxd import free_port
from support.service import Service

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
SECRET = "proxy-test-secret-0123456789abcdefghijkl"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed; the README's test command installs it")
        pytest.skip("nginx not installed (apt-get install nginx)")
    return found


@pytest.fixture
def proxied(influxd: Any, tmp_path: Path) -> Iterator[tuple[str, list[Service]]]:
    db = "t_" + uuid.uuid4().hex[:12]
    influxd.query(f'CREATE DATABASE "{db}"')
    env = {"EVENTSAPI_STORE": f"influxql://127.0.0.1:{influxd.port}/{db}", "EVENTSAPI_JWT_SECRET": SECRET}
    replicas = []
    for i in (1, 2):
        (tmp_path / f"r{i}").mkdir()
        replicas.append(Service(tmp_path / f"r{i}", {**env, "EVENTSAPI_TRUST_FORWARDED": "1"}))
    for r in replicas:
        r.start()
    port = free_port()
    shipped = (ROOT / "deploy/nginx/eventsapi.conf").read_text()
    # The shipped file as it is, but for the port it listens on.
    assert shipped.count("listen 8080;") == 1
    (tmp_path / "eventsapi.conf").write_text(shipped.replace("listen 8080;", f"listen 127.0.0.1:{port};"))
    upstream = "\n".join(f"    server 127.0.0.1:{r.port};" for r in replicas)
    temp = "\n".join(f"  {k}_temp_path {tmp_path}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
{temp}
  upstream eventsapi {{
    hash $eventsapi_key consistent;
{upstream}
    keepalive 8;
  }}
  include {tmp_path}/eventsapi.conf;
}}
"""
    )
    nginx = subprocess.Popen(
        [
            nginx_binary(),
            "-e",
            str(tmp_path / "nginx-error.log"),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-p",
            str(tmp_path),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2)
                break
            except OSError:
                assert nginx.poll() is None, nginx.stdout.read() if nginx.stdout else ""
                time.sleep(0.1)
        yield url, replicas
    finally:
        nginx.terminate()
        nginx.wait(10)
        if nginx.stdout is not None:
            nginx.stdout.close()
        for r in replicas:
            r.close()


def call(url: str, method: str, path: str, token: str, body: Any = None) -> Any:
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(), method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_every_request_about_a_bucket_reaches_one_replica(proxied: tuple[str, list[Service]]) -> None:
    url, replicas = proxied
    token = replicas[0].token("--sub", "p", "--bucket", "*", "--scope", "events:read events:write")
    buckets = [f"b{i}" for i in range(12)] + ["a.b-c_d", "x" * 60]
    now = int(time.time() * 1000)
    for round_ in range(3):
        for b in buckets:
            batch = [
                {"id": f"{b}-{round_}-{k}", "event_name": "deploy", "app_name": "api", "at": now - k} for k in range(5)
            ]
            assert call(url, "POST", f"/api/bucket/{b}/data/events/ingest", token, batch)["accepted"] == 5
            call(url, "POST", f"/api/bucket/{b}/data/events", token, {"event_name": "deploy", "limit": 1})
    # Re-sends of a whole round change nothing.
    for b in buckets:
        batch = [{"id": f"{b}-0-{k}", "event_name": "deploy", "app_name": "api", "at": now - k} for k in range(5)]
        call(url, "POST", f"/api/bucket/{b}/data/events/ingest", token, batch)
    seen: dict[str, set[int]] = {}
    for n, r in enumerate(replicas):
        for line in r.logs().splitlines():
            m = re.search(r'"path": "/api/bucket/([^/"]+)/', line)
            if m:
                seen.setdefault(m.group(1), set()).add(n)
    assert set(seen) == set(buckets)
    assert all(len(where) == 1 for where in seen.values()), seen
    assert {n for where in seen.values() for n in where} == {0, 1}  # both replicas have buckets
    for b in buckets:
        rows = call(url, "POST", f"/api/bucket/{b}/data/events", token, {"event_name": "deploy", "limit": 100})
        assert sorted(r["id"] for r in rows) == sorted(f"{b}-{i}-{k}" for i in range(3) for k in range(5))


def test_live_tails_stream_through_the_proxy(proxied: tuple[str, list[Service]]) -> None:
    url, replicas = proxied
    token = replicas[0].token("--sub", "p", "--bucket", "live", "--scope", "events:read events:write")
    req = urllib.request.Request(url + "/api/bucket/live/data/events/stream?event_name=tick")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Accept", "text/event-stream")
    with urllib.request.urlopen(req, timeout=30) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        time.sleep(0.5)
        event = {"id": "t1", "event_name": "tick", "app_name": "api", "at": int(time.time() * 1000)}
        call(url, "POST", "/api/bucket/live/data/events/ingest", token, [event])
        # Unbuffered: the event arrives while the stream stays open.
        deadline = time.monotonic() + 20
        lines: list[bytes] = []
        while time.monotonic() < deadline:
            line = stream.readline()
            lines.append(line)
            if line.startswith(b"data:") and b'"t1"' in line:
                break
        assert any(b'"t1"' in line for line in lines), lines


def test_a_long_request_line_reaches_the_service_through_the_proxy(proxied: tuple[str, list[Service]]) -> None:
    # nginx's default 8 KiB would answer its own 414 page; the shipped file passes lines up to
    # the service's bound, which answers problem+json.
    url, replicas = proxied
    token = replicas[0].token("--sub", "p", "--bucket", "long", "--scope", "events:read")
    req = urllib.request.Request(url + "/api/bucket/long/data/events/export?event_name=" + "%21" * 6000)
    req.add_header("Authorization", f"Bearer {token}")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400
    assert err.value.headers["Content-Type"].startswith("application/problem+json")
    err.value.close()
