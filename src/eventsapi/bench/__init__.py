"""`eventsapi bench`: load generator and latency probe for a deployment, and optionally the
same workload sent straight to the engine behind it, for service/engine ratios.

Phases, each repeated `--repeat` times (medians reported):
1. ingest N synthetic events with C concurrent producers in batches of B, sent with
   `eventsapi.client` (batches are made before the clock starts, so the generator is not
   measured; the client's retries are);
2. retrieve (newest 100), stats (2 days by minute) and eventsKeysByApp, sequentially, for
   p50/p95/p99 latency; with an engine, the service's and the engine's queries alternate call
   by call, so both are timed under the same conditions.
The direct side (`--engine`) gets the same events in the same batches with the same
concurrency, as line protocol to InfluxDB's /write or as INSERTs into a SQLite file with the
service's schema, and the equivalent queries.
With `--order time,random` and/or `--prefill` (the ingest study) the ingest phases are several:
each writes a span of history of its own, a shard group away from the others, so that none pays
for compacting another's files; only the last phase, whose span ends now, is queried.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from typing import Any

import aiohttp

from eventsapi.bench.engines import bench_influxql, bench_sqlite, prefill_influxql
from eventsapi.bench.measure import Loaded, Progress, Side, percentiles, sample_sides, settle
from eventsapi.bench.service import bench_service
from eventsapi.bench.workload import Workload


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
    p.add_argument(
        "--order",
        default="time",
        help="order the events are sent in: time (as producers send them), random (a backfill, an import, late "
        "producers), or both as time,random: an ingest phase each, into a bucket of its own",
    )
    p.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="also ingest into a bucket already holding this many events (written straight to the engine, unseen "
        "by the service); needs --service-store and an influxql --engine",
    )
    p.add_argument("--service-store", default=None, help="the store URL the service uses (for --prefill)")
    p.add_argument("--service-pid", type=int, default=None, help="report the service's CPU per event (from /proc)")
    p.add_argument("--engine-pid", type=int, default=None, help="report the engine's CPU per event (from /proc)")
    p.add_argument("--json", action="store_true", help="print a JSON report on stdout")


# InfluxDB 1.x groups a database's points into shards of 7 days (the default retention policy)
# and compacts each shard's files together. Phases that shared a span would share a shard, and
# whichever phase came when the files of all the earlier ones were due for merging would pay for
# them: each phase (with its pre-fill) gets a span of its own, at least a shard group apart.
SHARD_GROUP_MS = 7 * 86_400_000


def phase_end_ms(now_ms: int, index: int, count: int, spread_ms: int) -> int:
    """Where the `index`-th of `count` ingest phases ends its history: the last one at now (the
    queries run on its bucket and ask for the last 2 days), each earlier one a span plus a shard
    group before the next, so no two phases write into one shard."""
    return now_ms - (count - 1 - index) * (spread_ms + SHARD_GROUP_MS)


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


def _phase(order: str, prefilled: bool, runs: list[list[Side]]) -> dict[str, Any]:
    """One ingest phase's medians over the repetitions: rates and CPU µs per event."""

    def medians(sides: list[Side]) -> dict[str, Any]:
        cpu = {k: statistics.median(s.cpu_us_per_event[k] for s in sides) for k in sides[0].cpu_us_per_event}
        return {"events_per_s": statistics.median(s.ingest_events_per_s for s in sides), "cpu_us_per_event": cpu}

    out: dict[str, Any] = {"order": order, "prefilled": prefilled, "service": medians([r[0] for r in runs])}
    if len(runs[0]) > 1:
        out["engine"] = medians([r[1] for r in runs])
    return out


def _ingest_goals(phases: list[dict[str, Any]]) -> dict[str, float]:
    """Issue 20's ratios (README, "InfluxDB ingest"), from this run's phases."""
    at = {(p["order"], p["prefilled"]): p for p in phases}
    goals: dict[str, float] = {}
    rate = {k: p["service"]["events_per_s"] for k, p in at.items()}
    if ("time", False) in at and ("random", False) in at:
        goals["random_over_time"] = round(rate[("random", False)] / rate[("time", False)], 3)
        if ("random", True) in at and ("time", True) in at:
            goals["random_over_time_prefilled"] = round(rate[("random", True)] / rate[("time", True)], 3)
    for order in ("time", "random"):
        if (order, True) in at and (order, False) in at:
            goals[f"prefilled_over_empty_{order}"] = round(rate[(order, True)] / rate[(order, False)], 3)
    for (order, prefilled), p in at.items():
        name = f"{order}{'_prefilled' if prefilled else ''}"
        if "engine" not in p:
            continue
        goals[f"service_over_engine_{name}"] = round(p["service"]["events_per_s"] / p["engine"]["events_per_s"], 3)
        write = p["engine"]["cpu_us_per_event"].get("engine")
        via = p["service"]["cpu_us_per_event"]
        if write and "engine" in via:
            goals[f"engine_read_share_{name}"] = round((via["engine"] - write) / write, 3)
        if write and "service" in via:
            goals[f"service_cpu_over_engine_write_{name}"] = round(via["service"] / write, 3)
    return goals


async def _time_queries(args: argparse.Namespace, loaded: list[Loaded], progress: Progress) -> None:
    """Latency of each query kind on every side, the sides alternating call by call; then, with
    --delete, each side's delete_all."""
    for kind in ("retrieve", "stats", "by_app", "keys"):
        progress(f"{kind} latency")
        samples = await sample_sides(args.queries, [side.queries[kind] for side in loaded])
        for side, ms in zip(loaded, samples, strict=True):
            side.side.latency_ms[kind] = percentiles(ms)
    if args.delete:
        for side in loaded:
            started = time.perf_counter()
            await side.delete()
            side.side.delete_ms = round((time.perf_counter() - started) * 1000, 2)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    progress = Progress(not args.json)
    orders = args.order.split(",")
    if not orders or any(o not in ("time", "random") for o in orders):
        raise SystemExit("--order must be time, random or time,random")
    if args.prefill and not (args.service_store or "").startswith("influxql://"):
        raise SystemExit("--prefill needs --service-store influxql://... and --engine influxql://...")
    if args.prefill and not (args.engine or "").startswith("influxql://"):
        raise SystemExit("--prefill needs --service-store influxql://... and --engine influxql://...")
    phases = [(o, p) for o in orders for p in ([False, True] if args.prefill else [False])]
    by_phase: dict[tuple[str, bool], list[list[Side]]] = {}
    services: list[Side] = []
    engines: list[Side] = []
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as session:
        for rep in range(args.repeat):
            for n, (order, prefilled) in enumerate(phases):
                bucket = args.bucket or f"bench-{uuid.uuid4().hex[:10]}"
                label = f"{order} order{', pre-filled' if prefilled else ''}"
                progress(f"repeat {rep + 1}/{args.repeat}, {label}: generating {args.events} events")
                # With several phases (the ingest study) each gets a span of its own and only the
                # very last, at now, is queried; a single phase is queried in every repetition.
                index, count = (rep * len(phases) + n, args.repeat * len(phases)) if len(phases) > 1 else (0, 1)
                queried = index == count - 1
                now_ms = phase_end_ms(int(time.time() * 1000), index, count, int(args.spread * 1000))
                if prefilled:
                    before = Workload.make(args, now_ms, "random", args.prefill, seed=7)
                    await prefill_influxql([args.service_store, args.engine], bucket, before, session, progress)
                    progress(f"repeat {rep + 1}/{args.repeat}, {label}: waiting for the engine to settle")
                    await settle(args.engine_pid)
                work = Workload.make(args, now_ms, order)
                loaded = [await bench_service(args, work, session, bucket, progress)]
                if args.engine:
                    if args.engine.startswith("influxql://"):
                        loaded.append(await bench_influxql(args, work, session, bucket, progress))
                    elif args.engine.startswith("sqlite://"):
                        loaded.append(await bench_sqlite(args, work, bucket, progress))
                    else:
                        raise SystemExit("--engine must be influxql://HOST:PORT/DB or sqlite:///PATH")
                try:
                    if queried:
                        await _time_queries(args, loaded, progress)
                finally:
                    for side in loaded:
                        await side.close()
                by_phase.setdefault((order, prefilled), []).append([side.side for side in loaded])
                if queried:
                    services.append(loaded[0].side)
                    engines.extend(side.side for side in loaded[1:])
                progress(f"repeat {rep + 1}/{args.repeat}, {label}: done", done=True)
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
                "order",
                "prefill",
            )
        },
        "service": _median_side(services),
    }
    if len(phases) > 1 or args.service_pid or args.engine_pid:
        report["ingest_phases"] = [_phase(order, prefilled, runs) for (order, prefilled), runs in by_phase.items()]
        report["ingest_goals"] = _ingest_goals(report["ingest_phases"])
    if engines:
        engine = _median_side(engines)
        report["engine"] = engine
        report["ratios"] = {
            "ingest_service_over_engine": round(
                report["service"]["ingest_events_per_s"] / engine["ingest_events_per_s"], 3
            ),
            **{
                f"{k}_p50_service_over_engine": round(report["service"][k]["p50"] / max(engine[k]["p50"], 1e-6), 3)
                for k in ("retrieve", "stats", "by_app", "keys")
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
        for phase in report.get("ingest_phases", []):
            print("ingest phase: " + json.dumps(phase))
        if report.get("ingest_goals"):
            print("ingest goals: " + json.dumps(report["ingest_goals"]))
    return 0
