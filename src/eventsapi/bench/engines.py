"""The engine side of a benchmark: the same work sent straight to InfluxDB or SQLite, then
the equivalent queries to time."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import aiohttp

from eventsapi.bench.measure import CpuMeter, Loaded, Progress, Side, run_producers
from eventsapi.bench.workload import Workload
from eventsapi.stores import influxql_text
from eventsapi.stores.lineprotocol import render_batches
from eventsapi.stores.placement import Slots, place
from eventsapi.stores.sqlite import connect, migrate, retrieve_sql, stats_groups_sql, stats_sql, write_events
from eventsapi.values import EventQuery, NewEvent, StatsQuery
from eventsapi.windows import window_starts


def _influx_target(url: str) -> tuple[str, str]:
    """(HTTP base, database) of an influxql://HOST:PORT/DB URL."""
    parts = urlsplit(url)
    return f"http://{parts.netloc}", parts.path.lstrip("/")


def _line_bodies(bucket: str, work: Workload, size: int) -> list[bytes]:
    """The workload as line protocol, batch by batch, placed without reading the bucket. Each
    batch carries its own `ingested` time, as the service's do: a field of one value over the
    whole run would compress to nothing and make the engine's side cheaper than the service's."""
    return [
        next(iter(render_batches(bucket, place(b, Slots()), len(b), ingested_ns=time.time_ns() + i)))
        for i, b in enumerate(work.batches(size))
    ]


def _influx_sender(session: aiohttp.ClientSession, url: str) -> Callable[[bytes], Awaitable[None]]:
    base, db = _influx_target(url)

    async def send(body: bytes) -> None:
        async with session.post(f"{base}/write", params={"db": db, "precision": "ns"}, data=body) as r:
            if r.status != 204:
                raise RuntimeError(f"/write answered {r.status}: {(await r.read())[:200]!r}")

    return send


async def prefill_influxql(
    urls: Sequence[str], bucket: str, work: Workload, session: aiohttp.ClientSession, progress: Progress
) -> None:
    """Write the workload's events into `bucket` of each InfluxDB database straight away (the
    pre-filled bucket of an ingest study: what a service meets that has never read it)."""
    bodies = _line_bodies(bucket, work, 5_000)
    for url in urls:
        await run_producers(bodies, 4, _influx_sender(session, url), progress, "prefill", len(work.events))


async def bench_influxql(
    args: argparse.Namespace, work: Workload, session: aiohttp.ClientSession, bucket: str, progress: Progress
) -> Loaded:
    _, db = _influx_target(args.engine)
    # The engine's own rate: the same points, placed without reading the bucket.
    bodies = _line_bodies(bucket, work, args.batch)
    meter = CpuMeter({"engine": args.engine_pid})
    meter.start()
    elapsed = await run_producers(
        bodies, args.producers, _influx_sender(session, args.engine), progress, "engine ingest", len(work.events)
    )
    side = Side(
        ingest_events_per_s=round(len(work.events) / elapsed),
        cpu_us_per_event=await meter.settled_per_event(len(work.events)),
    )
    now_ms = int(time.time() * 1000)

    base, _ = _influx_target(args.engine)

    async def query(q: str, params: dict[str, str]) -> None:
        form = {"db": db, "q": q, "epoch": "ns", "params": json.dumps(params)}
        # The engine's cheapest answer format, as the service asks for it.
        async with session.post(f"{base}/query", data=form, headers={"Accept": "application/x-msgpack"}) as r:
            await r.read()

    async def retrieve(i: int) -> None:
        # The direct equivalent: newest 100 of a name over the whole history, in one statement.
        q, p = influxql_text.newest_query(
            EventQuery(bucket, work.names[i % len(work.names)]), (now_ms + 90_000_000) * 10**6, 0, 100
        )
        await query(q, p)

    from zoneinfo import ZoneInfo

    async def stats(i: int) -> None:
        starts, end = window_starts(now_ms, 2, "minute", ZoneInfo("UTC"))
        q = StatsQuery(bucket, work.names[i % len(work.names)], None, None, starts, end, "minute", "UTC")
        await query(*influxql_text.stats_query(q))

    async def by_app(i: int) -> None:
        starts, end = window_starts(now_ms, 2, "hour", ZoneInfo("UTC"))
        q = StatsQuery(bucket, work.names[i % len(work.names)], None, None, starts, end, "hour", "UTC")
        await query(*influxql_text.stats_query(q, "app"))

    async def keys(i: int) -> None:
        await query(*influxql_text.series_query(bucket))

    async def delete_all() -> None:
        await query(*influxql_text.drop_query(bucket))

    return Loaded(side, {"retrieve": retrieve, "stats": stats, "by_app": by_app, "keys": keys}, delete_all)


async def bench_sqlite(args: argparse.Namespace, work: Workload, bucket: str, progress: Progress) -> Loaded:
    path = args.engine.split("sqlite://", 1)[1]
    conn = connect(path)  # the store's own settings and schema
    migrate(conn)
    lock = asyncio.Lock()
    cache: dict[str, int] = {}

    def insert(batch: Sequence[NewEvent]) -> None:
        write_events(conn, bucket, batch, cache)

    async def send(batch: Sequence[NewEvent]) -> None:
        async with lock:  # SQLite has one writer, as in the service
            await asyncio.to_thread(insert, batch)

    meter = CpuMeter({"engine": args.engine_pid})
    meter.start()
    elapsed = await run_producers(
        work.batches(args.batch), args.producers, send, progress, "engine ingest", len(work.events)
    )
    side = Side(
        ingest_events_per_s=round(len(work.events) / elapsed),
        cpu_us_per_event=await meter.settled_per_event(len(work.events)),
    )
    from zoneinfo import ZoneInfo

    now_ms = int(time.time() * 1000)

    async def run(sql: str, params: list[object]) -> None:
        await asyncio.to_thread(lambda: conn.execute(sql, params).fetchall())

    async def retrieve(i: int) -> None:
        await run(*retrieve_sql(EventQuery(bucket, work.names[i % len(work.names)], limit=100)))

    async def stats(i: int) -> None:
        starts, end = window_starts(now_ms, 2, "minute", ZoneInfo("UTC"))
        q = StatsQuery(bucket, work.names[i % len(work.names)], None, None, starts, end, "minute", "UTC")
        await run(*stats_sql(q))

    async def by_app(i: int) -> None:
        starts, end = window_starts(now_ms, 2, "hour", ZoneInfo("UTC"))
        q = StatsQuery(bucket, work.names[i % len(work.names)], None, None, starts, end, "hour", "UTC")
        await run(*stats_groups_sql(q, "app", 3_600_000))

    async def keys(i: int) -> None:
        await run(
            "SELECT s1.value, s2.value FROM event_keys JOIN strings s1 ON s1.key = app JOIN strings s2 "
            "ON s2.key = name WHERE gen = (SELECT gen FROM buckets WHERE bucket_id = ?) ORDER BY 1, 2",
            [bucket],
        )

    async def delete_all() -> None:
        # The plain-SQL equivalent of delete_all: delete the bucket's rows.
        await asyncio.to_thread(
            lambda: conn.execute(
                "DELETE FROM events WHERE gen = (SELECT gen FROM buckets WHERE bucket_id = ?)", [bucket]
            )
        )

    async def close() -> None:
        conn.close()

    return Loaded(side, {"retrieve": retrieve, "stats": stats, "by_app": by_app, "keys": keys}, delete_all, close)
