"""The PM2 module (integrations/pm2) with a real PM2 from npm, a private PM2_HOME and a real
`eventsapi serve`: an app's custom event, handled error, crash and restarts reach the service;
none of the app's environment is stored; events emitted while the service is down arrive
once it is back, each exactly once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.service import Service

pytestmark = pytest.mark.slow
MODULE = Path(__file__).resolve().parent.parent / "integrations" / "pm2"
APP = Path(__file__).resolve().parent / "pm2app" / "app.js"
SECRET = "supersecret-do-not-store-0xC0FFEE"


@pytest.fixture
def pm2(tmp_path: Path) -> Iterator[Callable[..., str]]:
    binary = MODULE / "node_modules" / ".bin" / "pm2"
    if shutil.which("node") is None or not binary.exists():
        if os.environ.get("CI"):
            pytest.fail("node and integrations/pm2/node_modules are required in CI (scripts/test.sh installs them)")
        pytest.skip("the PM2 module's packages are not installed: (cd integrations/pm2 && npm ci)")
    env = {**os.environ, "PM2_HOME": str(tmp_path / "pm2-home")}

    def run(*args: str, extra_env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
        out = subprocess.run(
            [str(binary), *args],
            env={**env, **(extra_env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    yield run
    subprocess.run([str(binary), "kill"], env=env, capture_output=True, timeout=60)


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_pm2_module_forwards_events_restarts_and_crashes(pm2: Callable[..., str], tmp_path: Path) -> None:
    service = Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0"})
    service.start()
    try:
        token = service.token("--sub", "pm2", "--bucket", "prod", "--scope", "events:read events:write")
        for key, value in (
            ("url", service.url),
            ("token", token),
            ("bucket", "prod"),
            ("flush_ms", "200"),
            ("server_name", "ci-host"),
        ):
            pm2("set", f"pm2-eventsapi:{key}", value)
        pm2("install", ".", cwd=MODULE)  # as the README says: from a clone of the repository
        ticks = tmp_path / "ticks"
        pm2(
            "start", str(APP), "--name", "demo",
            extra_env={
                "SECRET_TOKEN": SECRET,
                "CRASH_MARKER": str(tmp_path / "crashed"),
                "TICK_FILE": str(ticks),
                "PM2IO_PATH": str(MODULE / "node_modules" / "@pm2" / "io"),
            },
        )  # fmt: skip

        def events(name: str) -> list[dict[str, Any]]:
            status, rows, _ = service.call(
                "POST", "/api/bucket/prod/data/events", {"event_name": name, "limit": 1000}, token
            )
            assert status == 200
            return rows  # type: ignore[no-any-return]

        def keys() -> dict[str, list[str]]:
            _, body, _ = service.call("GET", "/api/bucket/prod/data/eventsKeysByApp", None, token)
            return {k["app_name"]: k["events"] for k in body}

        # The app crashed once and PM2 restarted it (it emits again); then a restart by hand.
        assert wait_for(lambda: len(events("deploy")) >= 2), keys()
        pm2("restart", "demo")
        got = wait_for(lambda: (k := keys()) and "process:restart" in k.get("demo", []) and k)
        assert got, keys()
        assert set(got) == {"demo"}  # nothing of the module's own process
        names = set(got["demo"])
        assert {"deploy", "process:exception", "process:exit", "process:online", "process:restart"} <= names, names
        deploy = events("deploy")[0]
        assert (deploy["app_name"], deploy["server_name"], deploy["data"]) == (
            "demo",
            "ci-host",
            {"rev": "abc", "who": "ci"},
        )
        messages = {e["data"].get("message") for e in events("process:exception")}
        assert {"handled boom", "crash once"} <= messages, messages
        restart = events("process:restart")[0]["data"]
        assert set(restart) == {"status", "exit_code", "restart_time", "manually"} and restart["manually"] is True
        everything = json.dumps([events(n) for n in names])
        assert SECRET not in everything and "SECRET_TOKEN" not in everything

        # An outage: the service stops, the app emits, the service comes back on the same data.
        assert service.stop() == 0
        ticks.write_text("50")
        wait_for(lambda: not ticks.exists(), timeout=10)
        time.sleep(2)  # the module retries meanwhile
        service.start()
        arrived = wait_for(lambda: len(events("tick")) >= 50, timeout=60)
        assert arrived, len(events("tick"))
        time.sleep(1.5)  # anything sent twice would show up now
        tick_rows = events("tick")
        assert sorted(r["data"]["i"] for r in tick_rows) == list(range(50))
        assert len({r["id"] for r in tick_rows}) == 50
        # Its counters, the PM2 way.
        shown = pm2("show", "pm2-eventsapi")
        assert all(name in shown for name in ("sent", "retried", "dropped", "queued")), shown
    finally:
        service.close()


def test_mapping_with_the_node_test_runner() -> None:
    if shutil.which("node") is None:
        pytest.skip("node not installed")
    out = subprocess.run(["node", "--test", "test/"], cwd=MODULE, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# fail 0" in out.stdout


def test_an_expired_token_loses_nothing_and_a_key_delivers_it_once(pm2: Callable[..., str], tmp_path: Path) -> None:
    """The module set up with a token that then expires keeps every event (in its spool, said
    in `pm2 show` and its error log); `pm2 set pm2-eventsapi:token <key>` delivers each once."""
    with Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0", "EVENTSAPI_JWT_LEEWAY": "0"}) as service:
        issued = time.monotonic()
        expiring = service.token("--sub", "pm2", "--bucket", "prod", "--ttl", "3")
        reader = service.token("--sub", "r", "--bucket", "prod", "--scope", "events:read")
        for key, value in (("url", service.url), ("token", expiring), ("bucket", "prod"), ("flush_ms", "200")):
            pm2("set", f"pm2-eventsapi:{key}", value)
        pm2("install", ".", cwd=MODULE)
        ticks = tmp_path / "ticks"
        pm2("start", str(APP), "--name", "demo",
            extra_env={"TICK_FILE": str(ticks), "CRASH_MARKER": str(tmp_path / "crashed"),
                       "PM2IO_PATH": str(MODULE / "node_modules" / "@pm2" / "io")})  # fmt: skip

        def stored(name: str) -> list[dict[str, Any]]:
            status, rows, _ = service.call("POST", "/api/bucket/prod/data/events", {"event_name": name, "limit": 1000},
                                           reader)  # fmt: skip
            assert status == 200
            return rows  # type: ignore[no-any-return]

        time.sleep(max(0.0, 3.5 - (time.monotonic() - issued)))  # the token has expired
        ticks.write_text("40")
        shown = wait_for(lambda: (out := pm2("show", "pm2-eventsapi")) and "refused since" in out and out)
        assert shown, pm2("show", "pm2-eventsapi")
        assert stored("tick") == []
        errors = (tmp_path / "pm2-home" / "logs" / "pm2-eventsapi-error.log").read_text()
        assert "pm2 set pm2-eventsapi:token" in errors, errors
        made = subprocess.run(
            [sys.executable, "-m", "eventsapi", "keys", "create", "--bucket", "prod", "--name", "pm2"],
            cwd=tmp_path, env=service.env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        pm2("set", "pm2-eventsapi:token", made.stdout.splitlines()[-1])  # PM2 restarts the module with it
        assert wait_for(lambda: len(stored("tick")) >= 40, timeout=60), len(stored("tick"))
        time.sleep(1.5)  # anything sent twice would show up now
        rows = stored("tick")
        assert sorted(r["data"]["i"] for r in rows) == list(range(40)) and len({r["id"] for r in rows}) == 40
        shown = pm2("show", "pm2-eventsapi")
        assert "refused since" not in shown and "│ auth" in shown, shown
