"""Alerts as an operator runs them: a rules file, `eventsapi serve --workers 2` on SQLite and
on a real InfluxDB 1.x, and a webhook receiver that records what it is sent (and fails when
told to). A rule that reaches its threshold notifies once — not once per worker, not again
after a restart — signed, with the same delivery id on every retry until the receiver
accepts; a bad rules file keeps the last good rules and says why."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from eventsapi.alert_rules import RESERVED_BUCKET, Rule, RuleFile, duration_ms, parse_rules
from eventsapi.alerts import AlertEngine, RuleState, retry_due, sign
from eventsapi.config import Settings
from eventsapi.stores.influxql import InfluxQLStore
from eventsapi.stores.lineprotocol import INTENTS_MEASUREMENT
from eventsapi.tail import TailHub
from support.relay import relay
from support.service import Service

SECRET = "alert-secret-for-the-tests"


class Receiver:
    """A webhook endpoint: records each POST (headers, body); answers 500 to the first `fail`."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.answered_ok: list[str] = []  # delivery ids answered 200
        self.fail = 0
        self.hang_first = 0.0  # seconds the first request waits before it is answered
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(({k: v for k, v in self.headers.items()}, body))
                if len(receiver.posts) == 1 and receiver.hang_first:
                    receiver.release.wait(receiver.hang_first)
                    return  # never answered: the sender is gone by then
                status = 500 if len(receiver.posts) <= receiver.fail else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status == 200:
                    receiver.answered_ok.append(self.headers["X-Eventsapi-Delivery"])

            def log_message(self, *args: Any) -> None:
                pass

        self.release = threading.Event()  # ends a held request at teardown
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, seconds: float = 20) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + seconds
        while len(self.posts) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.posts) >= n, f"{len(self.posts)} notifications, expected {n}"
        return self.posts


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.release.set()
    r.server.shutdown()
    r.server.server_close()


def rules_file(path: Path, url: str, **overrides: Any) -> Path:
    rule = {"name": "crash-loop", "bucket": "b1", "event_name": "process:exit", "app_name": "api",
            "server_name": None, "threshold": 3, "window": "5m", "cooldown": "1h", "webhook": url}  # fmt: skip
    path.write_text(json.dumps({"rules": [{**rule, **overrides}]}))
    return path


def exits(n: int, app: str = "api") -> list[dict[str, Any]]:
    return [{"event_name": "process:exit", "app_name": app, "server_name": "web-1", "data": {"code": 1},
             "id": uuid.uuid4().hex} for _ in range(n)]  # fmt: skip


def test_rules_file_checks_name_the_rule_and_field() -> None:
    ok = parse_rules(json.dumps({"rules": [{"name": "a", "bucket": "b", "event_name": "e", "threshold": 1,
                                            "window": "30s", "webhook": "https://hooks.example/x"}]}))  # fmt: skip
    assert ok[0].window_ms == 30_000 and ok[0].cooldown_ms == 30_000 and ok[0].app_name is None
    assert duration_ms("5m") == 300_000 and duration_ms("2d") == 172_800_000
    base = {"name": "r", "bucket": "b", "event_name": "e", "threshold": 2, "window": "1m", "webhook": "http://h/"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"window": "5 minutes"}, "rule 1 (r): must be a duration"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": "3"}, "threshold"),
        ({"webhook": "ftp://x"}, "webhook"),
        ({"bucket": "no spaces"}, "bucket"),
        ({"bucket": RESERVED_BUCKET}, "bucket"),
        ({"name": "a b"}, "name"),
        ({"app_name": "\x00"}, "app_name"),
        ({"colour": "red"}, "unknown field"),
    ]
    for change, words in cases:
        with pytest.raises(ValueError) as err:
            parse_rules(json.dumps({"rules": [{**base, **change}]}))
        assert words in str(err.value), (change, str(err.value))
    with pytest.raises(ValueError, match="unique: r"):
        parse_rules(json.dumps({"rules": [base, base]}))
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_rules("{")
    private = {**base, "webhook": "http://127.0.0.1:9/hook"}
    with pytest.raises(ValueError, match=r"rule 1 \(r\): webhook: 127.0.0.1 is an internal address"):
        parse_rules(json.dumps({"rules": [private]}))
    for url in ("http://10.1.2.3/", "http://[::1]/", "http://169.254.169.254/latest"):
        with pytest.raises(ValueError, match="EVENTSAPI_ALERT_ALLOW_PRIVATE"):
            parse_rules(json.dumps({"rules": [{**base, "webhook": url}]}))
    assert parse_rules(json.dumps({"rules": [private]}), allow_private=True)[0].webhook == private["webhook"]
    assert [retry_due(0, k) for k in range(4)] == [0, 2_000, 6_000, 14_000]


def service_env(store: str, rules: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """A serve's environment: the rules, the signing secret, loopback webhooks allowed (the
    receiver is one), and the store (a fresh database on the test's influxd for influxql)."""
    env = {"EVENTSAPI_ACCESS_LOG": "0", "EVENTSAPI_ALERT_SECRET": SECRET, "EVENTSAPI_ALERT_RULES": str(rules),
           "EVENTSAPI_ALERT_ALLOW_PRIVATE": "1"}  # fmt: skip
    if store == "influxql":
        influxd = request.getfixturevalue("influxd")
        db = "a_" + uuid.uuid4().hex[:10]
        influxd.query(f'CREATE DATABASE "{db}"')
        env["EVENTSAPI_STORE"] = f"influxql://127.0.0.1:{influxd.port}/{db}"
    return env


def signature_ok(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Eventsapi-Signature", ""), expected) and sign(SECRET, body) == expected


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "influxql"])
def test_a_rule_notifies_once_across_workers_and_restarts(
    store: str, receiver: Receiver, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = service_env(store, rules_file(tmp_path / "rules.json", receiver.url), request)
    service = Service(tmp_path, env, "--workers", "2")
    service.start()
    try:
        token = service.token("--sub", "ops", "--bucket", "*", "--scope", "events:read events:write")
        time.sleep(3)  # both workers have loaded the rules
        ingest = "/api/bucket/b1/data/events/ingest"
        assert service.call("POST", ingest, exits(2) + exits(5, app="worker"), token)[0] == 200
        time.sleep(4)
        assert receiver.posts == []  # 2 of 3 (the worker's exits do not match)
        assert service.call("POST", ingest, exits(1), token)[0] == 200
        headers, body = receiver.wait(1)[0]
        time.sleep(5)  # long enough for a second worker's copy to arrive, were there one
        assert len(receiver.posts) == 1
        note = json.loads(body)
        assert (note["rule"], note["bucket"], note["count"], note["threshold"]) == ("crash-loop", "b1", 3, 3)
        assert note["window_end"] - note["window_start"] == 300_000 and len(note["events"]) == 3
        assert note["text"].startswith("eventsapi: crash-loop: 3 x process:exit from api")
        assert headers["X-Eventsapi-Delivery"].startswith("crash-loop@") and signature_ok(headers, body)

        status, rules, _ = service.call("GET", "/api/bucket/b1/data/alerts", None, token)
        assert status == 200 and rules[0]["state"] == "cooling down" and rules[0]["count"] == 3
        assert rules[0]["last_delivery"]["status"] == "delivered"
        # In cooldown: more exits notify nobody; nor does a restart of the whole service.
        assert service.call("POST", ingest, exits(4), token)[0] == 200
        port = service.port
        assert service.stop() == 0
        service = Service(tmp_path, env, "--workers", "2")
        service.port = port
        service.start()
        time.sleep(6)
        assert len(receiver.posts) == 1
        # The service's alert records are read-only to tokens.
        forged = [{"event_name": "delivered", "app_name": "crash-loop"}]
        assert service.call("POST", f"/api/bucket/{RESERVED_BUCKET}/data/events/ingest", forged, token)[0] == 403
    finally:
        service.close()


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "influxql"])
def test_failed_deliveries_are_retried_with_the_same_body_and_id(
    store: str, receiver: Receiver, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    receiver.fail = 3
    path = rules_file(tmp_path / "rules.json", receiver.url, threshold=1, window="1m")
    with Service(tmp_path, service_env(store, path, request), "--workers", "2") as service:
        token = service.token("--sub", "ops", "--bucket", "*", "--scope", "events:read events:write")
        time.sleep(3)
        assert service.call("POST", "/api/bucket/b1/data/events/ingest", exits(1), token)[0] == 200
        posts = receiver.wait(4, seconds=60)
        time.sleep(5)
        assert len(receiver.posts) == 4  # three refused, the fourth accepted, none after
        assert len({h["X-Eventsapi-Delivery"] for h, _ in posts}) == 1 and len({b for _, b in posts}) == 1
        assert all(signature_ok(h, b) for h, b in posts)
        metrics = service.call("GET", "/metrics")[1].decode()
        assert "eventsapi_alerts_failed_total 3.0" in metrics and "eventsapi_alerts_delivered_total 1.0" in metrics
        assert len(receiver.answered_ok) == 1

        # A broken rules file: the rule stays in force, and /readyz says why.
        path.write_text('{"rules": [{"name": "oops"')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready = service.call("GET", "/readyz")[1]
            if ready["alerts"]["error"]:
                break
            time.sleep(0.5)
        assert "not valid JSON" in ready["alerts"]["error"] and ready["alerts"]["rules"] == 1
        assert service.call("GET", "/api/bucket/b1/data/alerts", None, token)[1][0]["name"] == "crash-loop"


async def test_two_processes_recording_one_firing_at_once_agree_on_its_sender(
    influxd: Any, receiver: Receiver, tmp_path: Path
) -> None:
    """Two processes record the same firing at the same instant on InfluxDB; both read the
    point free, and the later write replaces the earlier (there is no compare-and-set). Each
    writes through a relay that holds its points back (100 ms, 400 ms), so the first one's
    write lands and could be read back before the second's replaces it. Both must read the
    same winner: one notification, and its body is the one stored with the firing."""
    db = "t_" + uuid.uuid4().hex[:12]
    influxd.query(f'CREATE DATABASE "{db}"')
    engine = f"127.0.0.1:{influxd.port}"
    rule = Rule("crash-loop", "b1", "process:exit", "api", None, 1, 60_000, 60_000, receiver.url)
    t = int(time.time() * 1000) - 1_000
    engines: list[AlertEngine] = []
    async with contextlib.AsyncExitStack() as stack:
        for held in (0.1, 0.4):
            hold = lambda body, held=held: 0.0 if body.startswith(INTENTS_MEASUREMENT.encode()) else held  # noqa: E731
            r = await stack.enter_async_context(relay(engine, hold_write=hold))
            store = InfluxQLStore.from_url(f"influxql://{r.address}/{db}", Settings(data_dir=tmp_path))
            await store.open()
            stack.push_async_callback(store.close)
            engines.append(AlertEngine(store, TailHub(store, 1), RuleFile(None), SECRET))
        await asyncio.gather(*(e._fire(RuleState(rule), t) for e in engines))
        for e in engines:
            if e._http is not None:
                await e._http.close()
        assert len(receiver.posts) == 1, [json.loads(b)["fired_at"] for _, b in receiver.posts]
        headers, body = receiver.posts[0]
        assert headers["X-Eventsapi-Delivery"] == f"crash-loop@{t}" and signature_ok(headers, body)
        stored = await engines[0]._stored("fired", "crash-loop", t, f"crash-loop@{t}")
        assert stored is not None and json.loads(bytes(stored.data))["body"] == json.loads(body)


def test_alerts_test_command_sends_a_signed_test_notification(receiver: Receiver, tmp_path: Path) -> None:
    path = rules_file(tmp_path / "rules.json", receiver.url)
    env = {"PATH": "/usr/bin:/bin", "EVENTSAPI_ALERT_SECRET": SECRET, "EVENTSAPI_ALERT_ALLOW_PRIVATE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "eventsapi", "alerts", "test", "crash-loop", "--rules", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0 and "answered HTTP 200" in done.stderr, done.stderr
    headers, body = receiver.posts[0]
    assert json.loads(body)["test"] is True and signature_ok(headers, body)
    missing = subprocess.run(
        [sys.executable, "-m", "eventsapi", "alerts", "test", "nope", "--rules", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert missing.returncode == 2 and "no rule 'nope'" in missing.stderr and "crash-loop" in missing.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "eventsapi", "alerts", "test", "crash-loop", "--rules", str(path)],
        cwd=tmp_path, env={**env, "EVENTSAPI_ALERT_ALLOW_PRIVATE": "0"}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 2 and "internal address" in refused.stderr and "ALLOW_PRIVATE" in refused.stderr


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "influxql"])
def test_killed_before_the_delivery_completes_delivers_once_after_restart(
    store: str, receiver: Receiver, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The first attempt reaches the receiver, which does not answer; the service is killed
    with -9 meanwhile. Started again, it finds the attempt with no outcome and sends the same
    notification (same id and body) once more, and only once."""
    receiver.hang_first = 60
    env = service_env(store, rules_file(tmp_path / "rules.json", receiver.url, threshold=2), request)
    service = Service(tmp_path, env)
    service.start()
    try:
        token = service.token("--sub", "ops", "--bucket", "*", "--scope", "events:read events:write")
        time.sleep(3)
        assert service.call("POST", "/api/bucket/b1/data/events/ingest", exits(2), token)[0] == 200
        receiver.wait(1)
        port = service.port
        service.stop(signal.SIGKILL)
        service = Service(tmp_path, env)
        service.port = port
        service.start()
        posts = receiver.wait(2, seconds=60)
        time.sleep(5)
        assert len(receiver.posts) == 2
        assert posts[0][0]["X-Eventsapi-Delivery"] == posts[1][0]["X-Eventsapi-Delivery"] and posts[0][1] == posts[1][1]
        assert receiver.answered_ok == [posts[0][0]["X-Eventsapi-Delivery"]]
    finally:
        service.close()
