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


def main() -> None:
    s2, s1m, s100 = load("sqlite-200k"), load("sqlite-1m"), load("sqlite-100k")
    i2, i1m, i100 = load("influxql-200k"), load("influxql-1m"), load("influxql-100k")
    rows = ["| store | what | service | engine directly | ratio | target | command |", "|---|---|---|---|---|---|---|"]
    sv, en = s2["service"], s2["engine"]
    rows.append(
        f"| SQLite, 200k | ingest | {sv['ingest_events_per_s']:,.0f} ev/s | {en['ingest_events_per_s']:,.0f} ev/s "
        f"| {s2['ratios']['ingest_service_over_engine']:.2f} | ≥ 50,000 ev/s {ok(sv['ingest_events_per_s'] >= 50_000)} "
        f"| `./scripts/bench.sh sqlite --events 200000 --repeat {s2['config']['repeat']}` |"
    )
    sv, en = s1m["service"], s1m["engine"]
    cmd = "`./scripts/bench.sh sqlite --events 1000000 --delete`"
    for kind, label, limit in (
        ("stats", "stats p50", 50),
        ("retrieve", "retrieve p50", 10),
        ("keys", "eventsKeysByApp p50", 10),
    ):
        rows.append(
            f"| SQLite, 1M | {label} | {ms(sv[kind]['p50'])} | {ms(en[kind]['p50'])} | "
            f"{sv[kind]['p50'] / en[kind]['p50']:.2f} | ≤ {limit} ms {ok(sv[kind]['p50'] <= limit)} | {cmd} |"
        )
    rows.append(
        f"| SQLite, 1M | delete_all | {ms(sv['delete_all_ms'])} | {ms(en['delete_all_ms'])} (plain `DELETE`) | | "
        f"≤ 1 s {ok(sv['delete_all_ms'] <= 1000)} | {cmd} |"
    )
    rss = sv["peak_rss_bytes_during_ingest"]
    rows.append(
        f"| SQLite, 1M | peak RSS while ingesting | {rss / 2**20:.0f} MiB | | | < 300 MB {ok(rss < 300e6)} | {cmd} |"
    )
    sv, en = i2["service"], i2["engine"]
    cmd = f"`./scripts/bench.sh influxql --events 200000 --repeat {i2['config']['repeat']}`"
    ratio = i2["ratios"]["ingest_service_over_engine"]
    rows.append(
        f"| InfluxDB 1.6, 200k | ingest | {sv['ingest_events_per_s']:,.0f} ev/s "
        f"| {en['ingest_events_per_s']:,.0f} ev/s | {ratio:.2f} | ≥ 0.5 × engine {ok(ratio >= 0.5)} | {cmd} |"
    )
    for name, run in (("200k", i2), ("1M", i1m)):
        sv, en = run["service"], run["engine"]
        c = run["config"]
        extra = (" --delete" if c["delete"] else "") + (f" --repeat {c['repeat']}" if c["repeat"] > 1 else "")
        cmd = f"`./scripts/bench.sh influxql --events {c['events']}{extra}`"
        for kind, label in (("retrieve", "retrieve p50"), ("stats", "stats p50")):
            limit = 1.5 * en[kind]["p50"] + 3
            rows.append(
                f"| InfluxDB 1.6, {name} | {label} | {ms(sv[kind]['p50'])} | {ms(en[kind]['p50'])} | "
                f"{sv[kind]['p50'] / en[kind]['p50']:.2f} | ≤ 1.5 × engine + 3 ms = {limit:.1f} ms "
                f"{ok(sv[kind]['p50'] <= limit)} | {cmd} |"
            )
    sv, en = i1m["service"], i1m["engine"]
    rows.append(
        f"| InfluxDB 1.6, 1M | delete_all | {ms(sv['delete_all_ms'])} | {ms(en['delete_all_ms'])} (`DROP SERIES`) "
        "| | | `./scripts/bench.sh influxql --events 1000000 --delete` |"
    )
    rss = sv["peak_rss_bytes_during_ingest"]
    rows.append(
        f"| InfluxDB 1.6, 1M | peak RSS while ingesting | {rss / 2**20:.0f} MiB | | | < 300 MB {ok(rss < 300e6)} "
        "| `./scripts/bench.sh influxql --events 1000000 --delete` |"
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


if __name__ == "__main__":
    main()
