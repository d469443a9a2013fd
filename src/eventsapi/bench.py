"""`eventsapi bench`: load generator and latency probe for a deployment, and optionally the
same workload sent straight to the engine behind it, for service/engine ratios.

Phases, each repeated `--repeat` times (medians reported):
1. ingest N synthetic events with C concurrent producers in batches of B (bodies are built
   before the clock starts, so the generator is not measured);
2. retrieve (newest 100), stats (2 days by minute) and eventsKeysByApp, sequentially, for
   p50/p95/p99 latency.
The direct side (`--engine`) gets the same events in the same batches with the same
concurrency, as line protocol to InfluxDB's /write or as INSERTs into a SQLite file with the
service's schema, and the equivalent queries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from eventsapi.stores import influxql_text
from eventsapi.stores.base import EventQuery, NewEvent, StatsQuery
from eventsapi.stores.lineprotocol import render_batches
from eventsapi.stores.placement import place
from eventsapi.stores.sqlite import SCHEMA, retrieve_sql, stats_sql, write_events
from eventsapi.windows import window_starts


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="base URL of the service, e.g. http://127.0.0.1:8080")
    p.add_argument("--token", default=os.environ.get("EVENTSAPI_TOKEN"), help="JWT (or env EVENTSAPI_TOKEN)")
    p.add_argument("--bucket", default=None, help="bucket id (default: a new random one)")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--producers", type=int, default=4)
    p.add_argument("--batch", type=int, default=5_000)
    p.add_argument("--apps", type=int, default=5)
    p.add_argument("--servers", type=int, default=4)
    p.add_argument("--names", type=int, default=10)
    p.add_argument("--payload", type=int, default=100, help="approximate payload bytes per event")
    p.add_argument("--spread", type=float, default=2 * 86400, help="seconds of history the events cover")
    p.add_argument("--queries", type=int, default=100, help="samples per query kind")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument(
        "--engine", default=None, help="also run against the engine directly: influxql://HOST:PORT/DB or sqlite:///PATH"
    )
    p.add_argument("--delete", action="store_true", help="finish each repetition with a timed delete_all")
    p.add_argument("--json", action="store_true", help="print a JSON report on stdout")


@dataclass
class Workload:
    events: list[NewEvent]
    names: list[str]
    apps: list[str]

    @classmethod
    def make(cls, args: argparse.Namespace, now_ms: int) -> Workload:
        rnd = random.Random(42)
        names = [f"event-{i}" for i in range(args.names)]
        apps = [f"app-{i}" for i in range(args.apps)]
        servers = [f"server-{i}" for i in range(args.servers)]
        pad = "x" * max(0, args.payload - 30)
        spread_ms = int(args.spread * 1000)
        prefix = uuid.uuid4().hex[:8]
        # In time order, as producers send them: each batch covers its own stretch of the
        # history (the InfluxDB stores read what a batch's time span already holds).
        ats = sorted(now_ms - rnd.randrange(spread_ms) for _ in range(args.events))
        events = [
            NewEvent(
                f"{prefix}-{i:09d}",
                rnd.choice(names),
                rnd.choice(apps),
                rnd.choice(servers),
                ats[i],
                json.dumps({"seq": i, "pad": pad}, separators=(",", ":")),
            )
            for i in range(args.events)
        ]
        return cls(events, names, apps)

    def batches(self, size: int) -> list[Sequence[NewEvent]]:
        return [self.events[i : i + size] for i in range(0, len(self.events), size)]

    @staticmethod
    def api_body(batch: Sequence[NewEvent]) -> bytes:
        return (
            "["
            + ",".join(
                f'{{"id":{json.dumps(e.id)},"event_name":{json.dumps(e.name)},"app_name":{json.dumps(e.app)},'
                f'"server_name":{json.dumps(e.server)},"at":{e.at},"data":{e.data}}}'
                for e in batch
            )
            + "]"
        ).encode()


def percentiles(samples: list[float]) -> dict[str, float]:
    if len(samples) < 2:
        v = samples[0] if samples else 0.0
        return {"p50": v, "p95": v, "p99": v}
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": round(q[49], 3), "p95": round(q[94], 3), "p99": round(q[98], 3)}


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, text: str, done: bool = False) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K" + text + ("\n" if done else ""))
            sys.stderr.flush()
        elif done:
            sys.stderr.write(text + "\n")


async def run_producers(
    bodies: list[Any],
    producers: int,
    send: Callable[[Any], Awaitable[None]],
    progress: Progress,
    label: str,
    total: int,
) -> float:
    """Send bodies with `producers` concurrent workers; return elapsed seconds."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    sent = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal sent
        while not queue.empty():
            body = queue.get_nowait()
            await send(body)
            sent += 1
            progress(f"{label}: {sent}/{len(bodies)} batches, {total * sent // len(bodies)} events")

    await asyncio.gather(*(worker() for _ in range(producers)))
    return time.perf_counter() - started


async def sample(n: int, fn: Callable[[int], Awaitable[None]]) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


@dataclass
class Side:
    """Results of one side (service or engine) of one repetition."""

    ingest_events_per_s: float = 0.0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    delete_ms: float | None = None
    peak_rss_bytes: int | None = None


# -- the service side ------------------------------------------------------------------------------


async def bench_service(
    args: argparse.Namespace, work: Workload, session: aiohttp.ClientSession, bucket: str, progress: Progress
) -> Side:
    base = f"{args.url.rstrip('/')}/api/bucket/{bucket}/data"
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    bodies = [work.api_body(b) for b in work.batches(args.batch)]

    async def send(body: bytes) -> None:
        async with session.post(f"{base}/events/ingest", data=body, headers=headers) as r:
            answer = await r.read()
            if r.status != 200:
                raise RuntimeError(f"ingest answered {r.status}: {answer[:200]!r}")

    peak_rss = 0

    async def watch_rss() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, await service_rss(args, session) or 0)
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch_rss())
    try:
        elapsed = await run_producers(bodies, args.producers, send, progress, "service ingest", len(work.events))
    finally:
        watcher.cancel()
    side = Side(ingest_events_per_s=round(len(work.events) / elapsed), peak_rss_bytes=peak_rss)

    async def post(path: str, body: dict[str, Any]) -> None:
        async with session.post(f"{base}/{path}", json=body, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"{path} answered {r.status}")

    async def retrieve(i: int) -> None:
        await post("events", {"event_name": work.names[i % len(work.names)], "limit": 100})

    async def stats(i: int) -> None:
        await post("events/stats", {"event_name": work.names[i % len(work.names)], "days": 2, "interval": "minute"})

    async def keys(i: int) -> None:
        async with session.get(f"{base}/eventsKeysByApp", headers=headers) as r:
            await r.read()

    for name, fn in (("retrieve", retrieve), ("stats", stats), ("keys", keys)):
        progress(f"service {name} latency")
        side.latency_ms[name] = percentiles(await sample(args.queries, fn))
    if args.delete:
        started = time.perf_counter()
        async with session.delete(f"{base}/events/delete_all", headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"delete_all answered {r.status}")
        side.delete_ms = round((time.perf_counter() - started) * 1000, 2)
    return side


async def service_rss(args: argparse.Namespace, session: aiohttp.ClientSession) -> int | None:
    async with session.get(f"{args.url.rstrip('/')}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith("process_resident_memory_bytes "):
                return int(float(line.split()[1]))
    return None


# -- the engine side -------------------------------------------------------------------------------


async def bench_influxql(
    args: argparse.Namespace, work: Workload, session: aiohttp.ClientSession, bucket: str, progress: Progress
) -> Side:
    from urllib.parse import urlsplit

    parts = urlsplit(args.engine)
    base, db = f"http://{parts.netloc}", parts.path.lstrip("/")
    # The engine's own rate: the same points, placed without the service's occupancy read.
    bodies = [next(iter(render_batches(bucket, place(b, ()), len(b)))) for b in work.batches(args.batch)]

    async def send(body: bytes) -> None:
        async with session.post(f"{base}/write", params={"db": db, "precision": "ns"}, data=body) as r:
            if r.status != 204:
                raise RuntimeError(f"/write answered {r.status}: {(await r.read())[:200]!r}")

    elapsed = await run_producers(bodies, args.producers, send, progress, "engine ingest", len(work.events))
    side = Side(ingest_events_per_s=round(len(work.events) / elapsed))
    now_ms = int(time.time() * 1000)

    async def query(q: str, params: dict[str, str]) -> None:
        form = {"db": db, "q": q, "epoch": "ns", "params": json.dumps(params)}
        async with session.post(f"{base}/query", data=form) as r:
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

    async def keys(i: int) -> None:
        await query(*influxql_text.series_query(bucket))

    for name, fn in (("retrieve", retrieve), ("stats", stats), ("keys", keys)):
        progress(f"engine {name} latency")
        side.latency_ms[name] = percentiles(await sample(args.queries, fn))
    if args.delete:
        started = time.perf_counter()
        await query(*influxql_text.drop_query(bucket))
        side.delete_ms = round((time.perf_counter() - started) * 1000, 2)
    return side


async def bench_sqlite(args: argparse.Namespace, work: Workload, bucket: str, progress: Progress) -> Side:
    path = args.engine.split("sqlite://", 1)[1]
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA page_size=32768")  # the store's own settings (stores/sqlite.py)
    conn.execute("PRAGMA wal_autocheckpoint=1250")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    lock = asyncio.Lock()
    cache: dict[str, int] = {}

    def insert(batch: Sequence[NewEvent]) -> None:
        write_events(conn, bucket, batch, cache)

    async def send(batch: Sequence[NewEvent]) -> None:
        async with lock:  # SQLite has one writer, as in the service
            await asyncio.to_thread(insert, batch)

    elapsed = await run_producers(
        work.batches(args.batch), args.producers, send, progress, "engine ingest", len(work.events)
    )
    side = Side(ingest_events_per_s=round(len(work.events) / elapsed))
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

    async def keys(i: int) -> None:
        await run(
            "SELECT s1.value, s2.value FROM event_keys JOIN strings s1 ON s1.key = app JOIN strings s2 "
            "ON s2.key = name WHERE gen = (SELECT gen FROM buckets WHERE bucket_id = ?) ORDER BY 1, 2",
            [bucket],
        )

    for name, fn in (("retrieve", retrieve), ("stats", stats), ("keys", keys)):
        progress(f"engine {name} latency")
        side.latency_ms[name] = percentiles(await sample(args.queries, fn))
    if args.delete:
        # The plain-SQL equivalent of delete_all: delete the bucket's rows.
        started = time.perf_counter()
        await asyncio.to_thread(
            lambda: conn.execute(
                "DELETE FROM events WHERE gen = (SELECT gen FROM buckets WHERE bucket_id = ?)", [bucket]
            )
        )
        side.delete_ms = round((time.perf_counter() - started) * 1000, 2)
    conn.close()
    return side


# -- driver ----------------------------------------------------------------------------------------


def _median_side(sides: list[Side]) -> dict[str, Any]:
    out: dict[str, Any] = {"ingest_events_per_s": statistics.median(s.ingest_events_per_s for s in sides)}
    deletes = [s.delete_ms for s in sides if s.delete_ms is not None]
    if deletes:
        out["delete_all_ms"] = statistics.median(deletes)
    rss = [s.peak_rss_bytes for s in sides if s.peak_rss_bytes]
    if rss:
        out["peak_rss_bytes_during_ingest"] = max(rss)
    for kind in sides[0].latency_ms:
        out[kind] = {
            p: round(statistics.median(s.latency_ms[kind][p] for s in sides), 3) for p in ("p50", "p95", "p99")
        }
    return out


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    progress = Progress(not args.json)
    services: list[Side] = []
    engines: list[Side] = []
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as session:
        for rep in range(args.repeat):
            bucket = args.bucket or f"bench-{uuid.uuid4().hex[:10]}"
            progress(f"repeat {rep + 1}/{args.repeat}: generating {args.events} events")
            work = Workload.make(args, int(time.time() * 1000))
            services.append(await bench_service(args, work, session, bucket, progress))
            if args.engine:
                if args.engine.startswith("influxql://"):
                    engines.append(await bench_influxql(args, work, session, bucket, progress))
                elif args.engine.startswith("sqlite://"):
                    engines.append(await bench_sqlite(args, work, bucket, progress))
                else:
                    raise SystemExit("--engine must be influxql://HOST:PORT/DB or sqlite:///PATH")
            progress(f"repeat {rep + 1}/{args.repeat} done", done=True)
    report: dict[str, Any] = {
        "config": {
            k: getattr(args, k)
            for k in (
                "url",
                "events",
                "producers",
                "batch",
                "apps",
                "servers",
                "names",
                "payload",
                "spread",
                "queries",
                "repeat",
                "engine",
                "delete",
            )
        },
        "service": _median_side(services),
    }
    if engines:
        engine = _median_side(engines)
        report["engine"] = engine
        report["ratios"] = {
            "ingest_service_over_engine": round(
                report["service"]["ingest_events_per_s"] / engine["ingest_events_per_s"], 3
            ),
            **{
                f"{k}_p50_service_over_engine": round(report["service"][k]["p50"] / max(engine[k]["p50"], 1e-6), 3)
                for k in ("retrieve", "stats", "keys")
            },
        }
    return report


def run_bench(args: argparse.Namespace) -> int:
    if not args.token:
        print("eventsapi bench: --token (or EVENTSAPI_TOKEN) is required", file=sys.stderr)
        return 2
    report = asyncio.run(_run(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        s = report["service"]
        print(f"ingest: {s['ingest_events_per_s']:,.0f} events/s through the API")
        for kind in ("retrieve", "stats", "keys"):
            print(f"{kind:9s} p50 {s[kind]['p50']:8.2f} ms  p95 {s[kind]['p95']:8.2f} ms  p99 {s[kind]['p99']:8.2f} ms")
        if s.get("peak_rss_bytes_during_ingest"):
            print(f"service peak RSS during ingest: {s['peak_rss_bytes_during_ingest'] / 2**20:.0f} MiB")
        if "delete_all_ms" in s:
            print(f"delete_all: {s['delete_all_ms']:.1f} ms")
        if "engine" in report:
            e = report["engine"]
            print(f"engine ingest: {e['ingest_events_per_s']:,.0f} events/s")
            for kind in ("retrieve", "stats", "keys"):
                print(f"engine {kind:9s} p50 {e[kind]['p50']:8.2f} ms")
            print("ratios: " + json.dumps(report["ratios"]))
    return 0
