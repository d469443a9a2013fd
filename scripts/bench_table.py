"""Prints the README's benchmark tables from the JSON reports in docs/bench/ (written by
`./scripts/bench.sh MODE ... --json > docs/bench/bench-MODE-SIZE.json`)."""

# ruff: noqa: RUF001  (the tables use the multiplication sign on purpose)
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DIR = Path(__file__).resolve().parent.parent / "docs" / "bench"


def load(name: str) -> dict[str, Any]:
    return json.loads((DIR / f"bench-{name}.json").read_text())  # type: ignore[no-any-return]


def ms(x: float) -> str:
    return f"{x:.1f} ms"


def ok(good: bool) -> str:
    return "✓" if good else "✗"


SQLITE_1M_INGEST_BEFORE = 88_727  # events/s, docs/bench/bench-sqlite-1m.json before issue 14's work


def command(mode: str, run: dict[str, Any], pinned: bool = False) -> str:
    c = run["config"]
    extra = (" --delete" if c["delete"] else "") + (f" --repeat {c['repeat']}" if c["repeat"] > 1 else "")
    prefix = "EVENTSAPI_BENCH_PIN=1 " if pinned else ""
    return f"`{prefix}./scripts/bench.sh {mode} --events {c['events']}{extra}`"


def ingest_row(label: str, run: dict[str, Any], ratio: float, target: str, met: bool, cmd: str) -> str:
    sv, en = run["service"]["ingest_events_per_s"], run["engine"]["ingest_events_per_s"]
    return f"| {label} | ingest | {sv:,.0f} ev/s | {en:,.0f} ev/s | {ratio:.2f} | {target} {ok(met)} | {cmd} |"


def latency_rows(label: str, run: dict[str, Any], cmd: str) -> list[str]:
    """retrieve and stats p50 against issue 14's target: at most 1.2 times the engine's query + 2 ms."""
    rows = []
    for kind in ("retrieve", "stats"):
        sv, en = run["service"][kind]["p50"], run["engine"][kind]["p50"]
        limit = 1.2 * en + 2
        rows.append(
            f"| {label} | {kind} p50 | {ms(sv)} | {ms(en)} | {sv / en:.2f} "
            f"| ≤ 1.2 × engine + 2 ms = {limit:.1f} ms {ok(sv <= limit)} | {cmd} |"
        )
    return rows


def count_label(n: int) -> str:
    return f"{n // 10**6}M" if n % 10**6 == 0 else f"{n // 1000}k"


def study_rows(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Issue 20's goals, one row each, from the ingest-study reports (`runs`: name → report)."""
    rows = ["| goal | measured | target | run |", "|---|---|---|---|"]
    for name, run in runs.items():
        size = count_label(run["config"]["events"])
        at = {(p["order"], p["prefilled"]): p for p in run["ingest_phases"]}
        rate = {k: p["service"]["events_per_s"] for k, p in at.items()}
        rnd, tim = rate[("random", False)], rate[("time", False)]
        r = rnd / tim
        rows.append(
            f"| order-insensitive, {size}: random ÷ time order, into an empty bucket "
            f"| {rnd:,} ÷ {tim:,} ev/s = {r:.2f} | ≥ 0.5 {ok(r >= 0.5)} | {name} |"
        )
        for order in ("time", "random"):
            r = rate[(order, True)] / rate[(order, False)]
            rows.append(
                f"| size-insensitive, {order} order, {size}: into a bucket holding "
                f"{count_label(run['config']['prefill'])} over the same 2 days ÷ into an empty one "
                f"| {rate[(order, True)]:,} ÷ {rate[(order, False)]:,} ev/s = {r:.2f} | ≥ 0.8 {ok(r >= 0.8)} | {name} |"
            )
        # µs per event: the service's own and the engine's on its behalf, and the engine's write alone
        cpu = {
            o: (at[(o, False)]["service"]["cpu_us_per_event"], at[(o, False)]["engine"]["cpu_us_per_event"])
            for o in ("time", "random")
        }
        for order, limit in (("time", 0.15), ("random", 0.5)):
            via, write = cpu[order][0]["engine"], cpu[order][1]["engine"]
            r = (via - write) / write
            rows.append(
                f"| engine CPU on the service's reads ÷ its write CPU, {order} order, {size} "
                f"| ({via:.1f} − {write:.1f}) ÷ {write:.1f} µs/event = {r:.2f} "
                f"| ≤ {limit} {ok(r <= limit)} | {name} |"
            )
        for order in ("time", "random"):
            service, write = cpu[order][0]["service"], cpu[order][1]["engine"]
            r = service / write
            rows.append(
                f"| service CPU ÷ engine write CPU, {order} order, {size} "
                f"| {service:.1f} ÷ {write:.1f} µs/event = {r:.2f} | ≤ 0.6 {ok(r <= 0.6)} | {name} |"
            )
    return rows


def main() -> None:
    s2, s1m, s100 = load("sqlite-200k"), load("sqlite-1m"), load("sqlite-100k")
    i2, i2p, i1m, i100 = load("influxql-200k"), load("influxql-200k-pinned"), load("influxql-1m"), load("influxql-100k")
    rows = ["| store | what | service | engine directly | ratio | target | command |", "|---|---|---|---|---|---|---|"]
    for label, run, target in (
        ("SQLite, 200k", s2, 100_000),
        ("SQLite, 1M", s1m, SQLITE_1M_INGEST_BEFORE),
    ):
        sv, en = run["service"]["ingest_events_per_s"], run["engine"]["ingest_events_per_s"]
        rows.append(ingest_row(label, run, sv / en, f"≥ {target:,} ev/s", sv >= target, command("sqlite", run)))
    rows += latency_rows("SQLite, 200k", s2, command("sqlite", s2))
    cmd = command("sqlite", s1m)
    rows += latency_rows("SQLite, 1M", s1m, cmd)
    sv = s1m["service"]
    rows.append(
        f"| SQLite, 1M | eventsKeysByApp p50 | {ms(sv['keys']['p50'])} | {ms(s1m['engine']['keys']['p50'])} | | "
        f"≤ 10 ms {ok(sv['keys']['p50'] <= 10)} | {cmd} |"
    )
    rows.append(
        f"| SQLite, 1M | delete_all | {ms(sv['delete_all_ms'])} | {ms(s1m['engine']['delete_all_ms'])} "
        f"(plain `DELETE`) | | ≤ 1 s {ok(sv['delete_all_ms'] <= 1000)} | {cmd} |"
    )
    rss = sv["peak_rss_bytes_during_ingest"]
    rows.append(
        f"| SQLite, 1M | peak RSS while ingesting | {rss / 2**20:.0f} MiB | | | < 300 MB {ok(rss < 300e6)} | {cmd} |"
    )
    for label, run, pinned in (
        ("InfluxDB 1.6, 200k, cores shared", i2, False),
        ("InfluxDB 1.6, 200k, influxd on its own core", i2p, True),
    ):
        ratio = run["ratios"]["ingest_service_over_engine"]
        rows.append(ingest_row(label, run, ratio, "≥ 0.7 × engine", ratio >= 0.7, command("influxql", run, pinned)))
    rows += latency_rows("InfluxDB 1.6, 200k", i2, command("influxql", i2))
    cmd = command("influxql", i1m)
    rows += latency_rows("InfluxDB 1.6, 1M", i1m, cmd)
    sv, en = i1m["service"], i1m["engine"]
    rows.append(
        f"| InfluxDB 1.6, 1M | delete_all | {ms(sv['delete_all_ms'])} | {ms(en['delete_all_ms'])} (`DROP SERIES`) "
        f"| | | {cmd} |"
    )
    rss = sv["peak_rss_bytes_during_ingest"]
    rows.append(
        f"| InfluxDB 1.6, 1M | peak RSS while ingesting | {rss / 2**20:.0f} MiB | | | < 300 MB {ok(rss < 300e6)} "
        f"| {cmd} |"
    )
    print("\n".join(rows))
    print()
    print("| store | retrieve p50 100k → 1M | stats p50 100k → 1M | commands |")
    print("|---|---|---|---|")
    print(
        f"| SQLite | {ms(s100['service']['retrieve']['p50'])} → {ms(s1m['service']['retrieve']['p50'])} | "
        f"{ms(s100['service']['stats']['p50'])} → {ms(s1m['service']['stats']['p50'])} | "
        "`./scripts/bench.sh sqlite --events 100000 --delete`, then `--events 1000000` |"
    )
    print(
        f"| InfluxDB 1.6 | {ms(i100['service']['retrieve']['p50'])} → {ms(i1m['service']['retrieve']['p50'])} "
        f"(engine alone {ms(i100['engine']['retrieve']['p50'])} → {ms(i1m['engine']['retrieve']['p50'])}) | "
        f"{ms(i100['service']['stats']['p50'])} → {ms(i1m['service']['stats']['p50'])} "
        f"(engine alone {ms(i100['engine']['stats']['p50'])} → {ms(i1m['engine']['stats']['p50'])}) | "
        "`./scripts/bench.sh influxql --events 100000 --delete`, then `--events 1000000` |"
    )
    print()
    print("\n".join(study_rows({"A": load("influxql-200k-order-prefill"), "B": load("influxql-1m-order-prefill")})))


if __name__ == "__main__":
    main()
