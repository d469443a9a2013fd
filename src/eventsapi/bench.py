"""`eventsapi bench`: load generator and latency probe for a running deployment."""

from __future__ import annotations

import argparse


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True)


def run_bench(args: argparse.Namespace) -> int:
    raise SystemExit("not yet")
