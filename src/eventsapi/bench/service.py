"""The service side of a benchmark: ingest through the HTTP API, then the queries to time."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp

from eventsapi.bench.measure import CpuMeter, Loaded, Progress, Side, run_producers
from eventsapi.bench.workload import Workload
from eventsapi.client import AsyncEventsClient


async def bench_service(
    args: argparse.Namespace, work: Workload, session: aiohttp.ClientSession, bucket: str, progress: Progress
) -> Loaded:
    base = f"{args.url.rstrip('/')}/api/bucket/{bucket}/data"
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    # The load is what a Python producer sends: eventsapi.client, with its retries. Batches
    # (ids and `at` included) are made and each event encoded before the clock starts, as the
    # engine side's line protocol is, and not gzipped: on loopback compressing would only take
    # CPU from the service being measured.
    batches = [work.encoded_events(b) for b in work.batches(args.batch)]
    client = AsyncEventsClient(args.url, args.token, bucket, compress=False, timeout=600, max_backoff=2)

    peak_rss = 0

    async def watch_rss() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, await service_rss(args, session) or 0)
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch_rss())
    meter = CpuMeter({"service": args.service_pid, "engine": args.engine_pid})
    meter.start()
    try:
        elapsed = await run_producers(
            batches, args.producers, client.send, progress, "service ingest", len(work.events)
        )
    finally:
        watcher.cancel()
        await client.close()
    lost = client.counters.dropped + client.counters.rejected
    if lost or client.counters.sent != len(work.events):
        raise RuntimeError(f"the service stored {client.counters.sent} of {len(work.events)} events ({lost} refused)")
    side = Side(
        ingest_events_per_s=round(len(work.events) / elapsed),
        peak_rss_bytes=peak_rss,
        cpu_us_per_event=await meter.settled_per_event(len(work.events)),
    )

    async def post(path: str, body: dict[str, Any]) -> None:
        async with session.post(f"{base}/{path}", json=body, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"{path} answered {r.status}")

    async def retrieve(i: int) -> None:
        await post("events", {"event_name": work.names[i % len(work.names)], "limit": 100})

    async def stats(i: int) -> None:
        await post("events/stats", {"event_name": work.names[i % len(work.names)], "days": 2, "interval": "minute"})

    async def by_app(i: int) -> None:
        body = {"event_name": work.names[i % len(work.names)], "days": 2, "interval": "hour", "group_by": "app_name"}
        await post("events/stats", body)

    async def keys(i: int) -> None:
        async with session.get(f"{base}/eventsKeysByApp", headers=headers) as r:
            await r.read()

    async def delete_all() -> None:
        async with session.delete(f"{base}/events/delete_all", headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"delete_all answered {r.status}")

    return Loaded(side, {"retrieve": retrieve, "stats": stats, "by_app": by_app, "keys": keys}, delete_all)


async def service_rss(args: argparse.Namespace, session: aiohttp.ClientSession) -> int | None:
    async with session.get(f"{args.url.rstrip('/')}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith("process_resident_memory_bytes "):
                return int(float(line.split()[1]))
    return None
