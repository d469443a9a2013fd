"""A short smoke run of `eventsapi bench` against a live service and SQLite directly (no timing
assertions: speed is measured by scripts/bench.sh and reported in the README)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eventsapi.bench import SHARD_GROUP_MS, phase_end_ms
from eventsapi.bench.engines import _line_bodies
from eventsapi.bench.workload import Workload
from support.service import Service


def test_the_engine_side_writes_an_ingested_time_per_batch_as_the_service_does() -> None:
    # One `ingested` value over the whole run compresses to nothing in the engine's files and
    # made its side of the comparison cheaper than the service's, whose batches each carry
    # their own time.
    args = argparse.Namespace(events=30, names=2, apps=2, servers=2, payload=40, spread=60.0)
    work = Workload.make(args, 1_700_000_000_000)
    bodies = _line_bodies("b", work, 10)
    stamps = [set(re.findall(rb",ingested=(\d+)i ", body)) for body in bodies]
    assert [len(s) for s in stamps] == [1, 1, 1]
    assert len(set.union(*stamps)) == 3
    assert all(int(next(iter(s))) > 10**18 for s in stamps)  # a time in ns, not 0


def test_ingest_phases_write_spans_that_share_no_influxdb_shard_group() -> None:
    # Phases that shared a shard group shared its compactions, and the phase that came when
    # they were due paid for the others' (the ingest study's medians swung by 2x).
    now, spread = 1_780_000_000_000, 2 * 86_400_000
    ends = [phase_end_ms(now, i, 12, spread) for i in range(12)]
    assert ends[-1] == now  # the queried phase asks for the last 2 days
    groups = [{(end - spread) // SHARD_GROUP_MS, end // SHARD_GROUP_MS} for end in ends]
    assert all(a.isdisjoint(b) for i, a in enumerate(groups) for b in groups[i + 1 :])


@pytest.mark.slow
def test_bench_smoke(tmp_path: Path) -> None:
    svc = Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0"})
    svc.start()
    try:
        token = svc.token("--sub", "bench", "--bucket", "*", "--scope", "events:read events:write events:delete")
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "eventsapi",
                "bench",
                "--url",
                svc.url,
                "--token",
                token,
                "--events",
                "3000",
                "--batch",
                "500",
                "--producers",
                "2",
                "--queries",
                "5",
                "--delete",
                "--engine",
                f"sqlite:///{tmp_path / 'engine.db'}",
                "--json",
            ],
            capture_output=True,
            check=True,
            text=True,
            timeout=300,
        )
    finally:
        svc.stop()
    report = json.loads(out.stdout)
    for side in ("service", "engine"):
        assert report[side]["ingest_events_per_s"] > 0
        for kind in ("retrieve", "stats", "by_app", "keys"):
            assert set(report[side][kind]) == {"p50", "p95", "p99"}
        assert report[side]["delete_all_ms"] >= 0
    assert report["service"]["peak_rss_bytes_during_ingest"] > 0
    assert set(report["ratios"]) == {
        "ingest_service_over_engine",
        "retrieve_p50_service_over_engine",
        "stats_p50_service_over_engine",
        "by_app_p50_service_over_engine",
        "keys_p50_service_over_engine",
    }
    assert report["config"]["events"] == 3000
