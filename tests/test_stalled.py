"""Live subscribers that stop reading cannot exhaust the service (docs/api.md §5.10): eight
SSE streams with different filters read their first event, then never read again, while a
producer ingests 8 KiB events as fast as it can. The service's RSS stays within 100 MiB of
idle, other requests keep answering, each stalled stream is cut, and one resumed with its
Last-Event-ID receives exactly the events it had not received. SQLite and a real influxd.

"Idle" is the service after it carried the same load with no subscriber (its store caches and
allocator arenas grown), so the difference is what the live tail holds."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from support.influxd import InfluxD
from support.service import Service

pytestmark = pytest.mark.slow

MiB = 1 << 20
PAYLOAD = "x" * 8000
BATCHES, PER_BATCH = 24, 500
FILTERS: list[dict[str, str]] = [
    {},
    {"event_name": "big"},
    {"app_name": "api"},
    {"server_name": "s1"},
    {"event_name": "big", "app_name": "api"},
    {"event_name": "big", "server_name": "s1"},
    {"app_name": "api", "server_name": "s1"},
    {"event_name": "big", "app_name": "api", "server_name": "s1"},
]


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def messages(raw: bytes) -> list[tuple[str, str]]:
    """Complete SSE messages (id, data) in what was read; a cut-off last one is left out."""
    out = []
    for block in raw.split(b"\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.decode().split("\n") if line.startswith(("id:", "data:")))
        if "id" in fields:
            out.append((fields["id"], fields["data"]))
    return out


class Stalled:
    """An SSE stream over a raw socket with a small receive buffer, read only when told."""

    def __init__(self, port: int, token: str, params: dict[str, str], last_id: str | None = None) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        query = urllib.parse.urlencode(params)
        head = f"GET /api/bucket/b/data/events/stream?{query} HTTP/1.0\r\nAuthorization: Bearer {token}\r\n"
        if last_id:
            head += f"Last-Event-ID: {last_id}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        self.buffer = bytearray()
        self.blank_lines = 0  # message ends ("\n\n") read so far, counted as the bytes arrive

    @property
    def raw(self) -> bytes:
        return bytes(self.buffer)

    def read_until(self, done: Any, timeout: float = 60) -> bool:
        """Read until done(self.raw) or end of stream; False if the stream ended first. A stream
        that does neither within `timeout` seconds fails the test."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while not done(self.buffer):
            assert time.monotonic() < deadline, f"stream neither ended nor got there: {bytes(self.buffer[-300:])!r}"
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return False
            start = max(0, len(self.buffer) - 1)
            self.buffer += chunk
            self.blank_lines += self.buffer.count(b"\n\n", start)
        return True

    def body(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.raw else b""


def batch(n: int) -> list[dict[str, Any]]:
    base = {"event_name": "big", "app_name": "api", "server_name": "s1", "at": int(time.time() * 1000)}
    return [{**base, "id": f"n{n}-{i}", "data": {"p": PAYLOAD}} for i in range(PER_BATCH)]


@pytest.mark.parametrize("kind", ["sqlite", "influxql"])
def test_stalled_streams_hold_bounded_memory_and_resume_exactly(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    env = {"EVENTSAPI_ACCESS_LOG": "0"}
    if kind == "influxql":
        server: InfluxD = request.getfixturevalue("influxd")
        server.query('CREATE DATABASE "stalled"')
        env["EVENTSAPI_STORE"] = f"influxql://127.0.0.1:{server.port}/stalled"
    with Service(tmp_path, env) as service:
        assert service.proc is not None
        token = service.token("--sub", "t", "--bucket", "b", "--scope", "events:read events:write")
        ingest = "/api/bucket/b/data/events/ingest"
        for n in range(BATCHES):  # idle is a service that has carried this load, with no subscriber
            assert service.call("POST", ingest, batch(-100 - n), token)[0] == 200
        time.sleep(1.0)  # past InfluxDB's tail settle time: the streams start after the warm-up load
        streams = [Stalled(service.port, token, f) for f in FILTERS]
        time.sleep(1.0)  # every stream has joined its poller
        assert service.call("POST", ingest, [{**batch(-2)[0], "id": "start", "data": {}}], token)[0] == 200
        for s in streams:  # each reads its first event, then stops reading
            assert s.read_until(lambda raw: b"data: " in raw and b'"start"' in raw)
        idle = rss(service.proc.pid)
        peak, ingested = idle, ["start"]
        for n in range(BATCHES):
            events = batch(n)
            status, body, _ = service.call("POST", ingest, events, token)
            assert status == 200 and body["accepted"] == PER_BATCH
            # On InfluxDB the events of one write come in id order (docs/api.md §5.10).
            ids = [e["id"] for e in events]
            ingested += sorted(ids) if kind == "influxql" else ids
            assert service.call("GET", "/healthz")[0] == 200
            peak = max(peak, rss(service.proc.pid))
        for _ in range(10):  # the pollers deliver what the last batches added
            time.sleep(0.3)
            peak = max(peak, rss(service.proc.pid))
        print(f"{kind}: idle RSS {idle / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB (+{(peak - idle) / MiB:.0f})")
        assert peak - idle <= 100 * MiB
        for s in streams:  # every stalled stream was cut: what the kernel held, then the end
            assert not s.read_until(lambda raw: False, timeout=30), "a stalled stream was never disconnected"
        seen = [event_id for event_id, _ in messages(streams[0].body())]
        assert len(seen) < len(ingested)
        resumed = Stalled(service.port, token, FILTERS[0], last_id=seen[-1])
        rest = len(ingested) - len(seen)
        assert resumed.read_until(lambda raw: resumed.blank_lines > rest and len(messages(raw)) >= rest)
        delivered = [json.loads(data)["id"] for s in (streams[0], resumed) for _, data in messages(s.body())]
        assert delivered == ingested  # each once, in ingest order
        resumed.sock.close()
        for s in streams:
            s.sock.close()
