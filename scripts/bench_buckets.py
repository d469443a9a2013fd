"""What many buckets with live producers cost a writer on InfluxDB 1.x (docs/influx.md, "Many
buckets").

B buckets, R rounds; in each round every bucket gets one batch of E events stamped at the
present, one batch at a time (`serial`) or all the round's batches at once (`concurrent`, as
many PM2 hosts sending together). Against a throw-away influxd (started here, on a free port),
with the default memory budget. Prints the writer's CPU per event (`time.process_time`: the
service's own work, in one process) and how many times it read a bucket's points.

    .venv/bin/python scripts/bench_buckets.py 200 10 10 concurrent
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from eventsapi.config import Settings
from eventsapi.stores.influxql import InfluxQLStore
from eventsapi.values import NewEvent
from support.influxd import start_influxd


async def run(port: int, buckets: int, rounds: int, size: int, concurrent: bool) -> str:
    store = InfluxQLStore.from_url(
        f"influxql://127.0.0.1:{port}/bench?create_database=1", Settings(data_dir=Path(tempfile.mkdtemp()))
    )
    await store.open()
    reads = 0
    occupied = store._occupied

    async def counted(bucket: str, ranges: list[tuple[int, int]]) -> list[tuple[int, str]]:
        nonlocal reads
        reads += 1
        return await occupied(bucket, ranges)

    store._occupied = counted  # type: ignore[method-assign]

    async def send(r: int, b: int, now: int) -> None:
        events = [NewEvent(f"r{r}b{b}i{i}", "ev", "app", "srv", now - i, '{"x":1}') for i in range(size)]
        await store.ingest(f"bucket-{b}", events)

    cpu, wall = time.process_time(), time.perf_counter()
    for r in range(rounds):
        now = int(time.time() * 1000)
        if concurrent:
            await asyncio.gather(*(send(r, b, now) for b in range(buckets)))
        else:
            for b in range(buckets):
                await send(r, b, now)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await store.close()
    n = buckets * rounds * size
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (
        f"{buckets} buckets, {rounds} rounds, batches of {size}, {'at once' if concurrent else 'one at a time'}: "
        f"{cpu * 1e6 / n:.1f} µs of CPU per event, {wall:.1f} s, {reads} reads of points, peak RSS {rss:.0f} MiB"
    )


def main() -> None:
    if len(sys.argv) != 5 or sys.argv[4] not in ("serial", "concurrent") or not all(map(str.isdigit, sys.argv[1:4])):
        sys.exit("usage: bench_buckets.py BUCKETS ROUNDS EVENTS_PER_BATCH serial|concurrent")
    buckets, rounds, size, how = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    server = start_influxd(Path(tempfile.mkdtemp()))
    if server is None:
        sys.exit("influxd is not installed (./scripts/test.sh installs it)")
    try:
        print(asyncio.run(run(server.port, buckets, rounds, size, how == "concurrent")))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
