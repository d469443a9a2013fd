"""A short smoke run of `eventsapi bench` against a live service and SQLite directly (no timing
assertions: speed is measured by scripts/bench.sh and reported in the README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.service import Service

pytestmark = pytest.mark.slow


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
