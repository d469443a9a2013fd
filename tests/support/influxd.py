"""Starts a throw-away InfluxDB 1.x (`influxd`) for the tests: free loopback port, own data dir."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
{data_extra}[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
[retention]
  enabled = false
[shard-precreation]
  enabled = false
"""
# The benchmark's engine writes its cache to disk as soon as writes stop, so that each phase
# pays for the snapshots and compactions of what it wrote (scripts/bench.sh), not for a part
# of them that depends on where the 25 MB snapshot threshold fell.
BENCH_DATA = '  cache-snapshot-write-cold-duration = "1s"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class InfluxD:
    dir: Path
    port: int
    rpc_port: int
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, extra_data: str = "") -> Path:
        conf = self.dir / "influxdb.conf"
        conf.write_text(CONFIG.format(dir=self.dir, port=self.port, rpc_port=self.rpc_port, data_extra=extra_data))
        return conf

    def start(self, timeout: float = 30.0) -> None:
        conf = self.write_config()
        self.log = open(self.dir / "influxd.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(["influxd", "-config", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited: see {self.dir / 'influxd.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("influxd did not answer /ping in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def query(self, q: str, db: str | None = None) -> Any:
        params = {"q": q, **({"db": db} if db else {})}
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10) as resp:
            return resp.read()


def start_influxd(base: Path) -> InfluxD | None:
    if shutil.which("influxd") is None:
        return None
    base.mkdir(parents=True, exist_ok=True)
    server = InfluxD(base, free_port(), free_port())
    server.start()
    return server


if __name__ == "__main__":
    # scripts/bench.sh: `python tests/support/influxd.py DIR` writes DIR/influxdb.conf for a
    # throw-away influxd on free loopback ports and prints its HTTP port.
    import sys

    base = Path(sys.argv[1])
    server = InfluxD(base, free_port(), free_port())
    server.write_config(BENCH_DATA)
    print(server.port)
