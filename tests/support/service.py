"""A real `eventsapi serve` process for the tests, on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from support.influxd import free_port


class Service:
    def __init__(self, cwd: Path, env: dict[str, str] | None = None, *extra: str) -> None:
        self.cwd = cwd
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSAPI_")}
        self.env.update(env or {})
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self.log is not None:  # a restart: the earlier process's log is done
            self.log.close()
        self.log = open(self.cwd / f"serve-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eventsapi", "serve", "--port", str(self.port), *self.extra],
            cwd=self.cwd,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.logs()
            try:
                self.call("GET", "/healthz")
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("service did not start: " + self.logs())

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in self.cwd.glob("serve-*.log"))

    def token(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "eventsapi", "token", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            check=True,
            text=True,
        )
        return out.stdout.strip()

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw[:1] in (b"[", b"{") else raw, dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null"), dict(err.headers)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self.close()
        return code

    def close(self) -> None:
        """Stop the process if it still runs, and release its log file either way."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        if self.log is not None:
            self.log.close()
