"""What a restart costs a random-order writer on InfluxDB 1.x (docs/influx.md, "Retirement").

A writer ingests N random-order events over 2 days into a throw-away influxd (started here, on
a free port), then stops — cleanly (`clean`: it records its retirement) or as if killed
(`killed`: it just disconnects) — and a fresh writer, its successor, ingests K more batches of
5,000 over the same span. Prints the successor's rate.

    .venv/bin/python scripts/bench_restart.py 200000 10 clean|killed
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from eventsapi.config import Settings
from eventsapi.stores.influxql import InfluxQLStore
from eventsapi.values import NewEvent
from support.influxd import start_influxd

BATCH = 5_000
T0 = 1_789_999_980_000
SPAN_MS = 2 * 86_400_000


def batch(rnd: random.Random, tag: str) -> list[NewEvent]:
    return [
        NewEvent(f"{tag}-{i}", f"ev{i % 5}", f"app{i % 7}", f"srv{i % 3}", T0 + rnd.randrange(SPAN_MS), '{"x":1}')
        for i in range(BATCH)
    ]


async def run(port: int, n: int, k: int, clean: bool) -> float:
    url = f"influxql://127.0.0.1:{port}/bench"
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), influx_memory_points=30_000_000)
    rnd = random.Random(1)
    first = InfluxQLStore.from_url(url + "?create_database=1", settings)
    await first.open()
    for j in range(n // BATCH):
        await first.ingest("bk", batch(rnd, f"a{j}"))
    await (first.close() if clean else first._disconnect())
    second = InfluxQLStore.from_url(url, settings)
    await second.open()
    started = time.perf_counter()
    for j in range(k):
        await second.ingest("bk", batch(rnd, f"b{j}"))
    elapsed = time.perf_counter() - started
    await second.close()
    return elapsed


def main() -> None:
    n, k, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    server = start_influxd(Path(tempfile.mkdtemp()))
    if server is None:
        sys.exit("influxd is not installed (apt-get install influxdb)")
    try:
        elapsed = asyncio.run(run(server.port, n, k, how == "clean"))
    finally:
        server.stop()
    rate = k * BATCH / elapsed
    print(f"{how}: {k} batches of {BATCH:,} after a restart, bucket of {n:,}: {elapsed:.2f} s, {rate:,.0f} events/s")


if __name__ == "__main__":
    main()
