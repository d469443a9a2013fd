"""What sharing one bucket between writers costs on InfluxDB 1.x (docs/influx.md, "Two
writers of one bucket"): `eventsapi serve --workers W` in front of a throw-away influxd (both
started here, on free ports), 4 producers sending 1,000-event batches of the present (the last
50 ms each) to one bucket for S seconds, as PM2 hosts of one busy app do. Prints the rate,
the batch latency and influxd's CPU (from /proc).

    .venv/bin/python scripts/bench_workers.py 2 20
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.influxd import start_influxd

ROOT = Path(__file__).resolve().parent.parent

PRODUCERS = 4
BATCH = 1_000


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def produce(session: aiohttp.ClientSession, url: str, k: int, stop: float, took: list[float]) -> None:
    seq = itertools.count()
    while time.time() < stop:
        now = int(time.time() * 1000)
        batch = [
            {"id": f"p{k}-{next(seq)}", "event_name": "ev", "app_name": "a", "server_name": f"s{k}",
             "at": now - i % 50, "data": {"i": i}}
            for i in range(BATCH)
        ]  # fmt: skip
        began = time.perf_counter()
        async with session.post(url, json=batch) as answer:
            if answer.status != 200:
                raise SystemExit(f"ingest answered {answer.status}: {(await answer.read())[:300]!r}")
        took.append(time.perf_counter() - began)


async def load(base: str, token: str, seconds: float) -> tuple[int, float, list[float]]:
    took: list[float] = []
    url = f"{base}/api/bucket/hot/data/events/ingest"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        began = time.time()
        await asyncio.gather(*(produce(session, url, k, began + seconds, took) for k in range(PRODUCERS)))
        return len(took) * BATCH, time.time() - began, sorted(took)


def main(workers: int, seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="eventsapi-workers-"))
    influxd = start_influxd(work / "influxd")
    if influxd is None or influxd.proc is None:
        raise SystemExit("needs influxd (./scripts/test.sh installs it)")
    influxd.query("CREATE DATABASE service")
    port = free_port()
    env = {
        **os.environ,
        "EVENTSAPI_JWT_SECRET": "bench-secret-0123456789-abcdefghijklmnop",
        "EVENTSAPI_ACCESS_LOG": "0",
        "EVENTSAPI_WORKERS": str(workers),
        "EVENTSAPI_DATA_DIR": str(work),
    }
    log = (work / "serve.log").open("wb")
    serve = subprocess.Popen(
        [str(ROOT / ".venv/bin/eventsapi"), "serve", "--port", str(port), "--store", f"influxql://127.0.0.1:{influxd.port}/service"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):  # every worker answers once the parent has started them all
            if serve.poll() is not None:
                raise SystemExit("eventsapi serve exited:\n" + (work / "serve.log").read_text())
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)
        cli = str(ROOT / ".venv/bin/eventsapi")
        mint = [cli, "token", "--sub", "bench", "--bucket", "hot", "--scope", "events:write"]
        token = subprocess.run(mint, env=env, check=True, capture_output=True, text=True).stdout.strip()
        engine = cpu_s(influxd.proc.pid)
        events, elapsed, took = asyncio.run(load(base, token, seconds))
        engine = cpu_s(influxd.proc.pid) - engine
        print(
            f"{workers} worker(s): {events:,} events in {elapsed:.1f} s = {events / elapsed:,.0f} events/s; "
            f"batch p50 {took[len(took) // 2] * 1000:.0f} ms, p95 {took[int(len(took) * 0.95)] * 1000:.0f} ms; "
            f"influxd CPU {engine:.1f} s ({engine / events * 1e6:.1f} µs/event)"
        )
    finally:
        serve.terminate()
        serve.wait(30)
        log.close()
        influxd.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2, float(sys.argv[2]) if len(sys.argv) > 2 else 20)
