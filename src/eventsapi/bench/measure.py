"""Timing helpers: concurrent producers, latency samples, percentiles, progress."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


def percentiles(samples: list[float]) -> dict[str, float]:
    if len(samples) < 2:
        v = samples[0] if samples else 0.0
        return {"p50": v, "p95": v, "p99": v}
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": round(q[49], 3), "p95": round(q[94], 3), "p99": round(q[98], 3)}


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU a process has used so far (all its threads), from /proc."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settle(pid: int | None, limit_s: float = 120.0, quiet_s: int = 3) -> None:
    """Wait until a process is idle (under 5 % of a core for `quiet_s` seconds in a row): an
    engine snapshots and compacts what it was just sent, a second or more after the last write,
    and that work belongs to the phase that sent it."""
    if not pid:
        return
    deadline = time.monotonic() + limit_s
    last = cpu_seconds(pid)
    quiet = 0
    while time.monotonic() < deadline and last is not None:
        await asyncio.sleep(1.0)
        now = cpu_seconds(pid)
        if now is None:
            return
        quiet = quiet + 1 if now - last < 0.05 else 0
        if quiet >= quiet_s:
            return
        last = now


class CpuMeter:
    """CPU µs per event that each watched process (by name) spent between start and stop."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self._start: dict[str, float | None] = {}

    def start(self) -> None:
        self._start = {k: cpu_seconds(p) for k, p in self.pids.items()}

    async def settled_per_event(self, events: int) -> dict[str, float]:
        """per_event once the watched engine is idle again (its compactions count)."""
        await settle(self.pids.get("engine"))
        return self.per_event(events)

    def per_event(self, events: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, p in self.pids.items():
            before, after = self._start.get(k), cpu_seconds(p)
            if before is not None and after is not None and events:
                out[k] = round((after - before) * 1e6 / events, 2)
        return out


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


Query = Callable[[int], Awaitable[None]]


async def sample_sides(n: int, fns: list[Query]) -> list[list[float]]:
    """n timed calls of each fn, alternating between them call by call, so that every side is
    measured under the same conditions (the engine compacting what was just written, a noisy
    neighbour) rather than one side first and the other after."""
    out: list[list[float]] = [[] for _ in fns]
    for i in range(n):
        for fn, samples in zip(fns, out, strict=True):
            t = time.perf_counter()
            await fn(i)
            samples.append((time.perf_counter() - t) * 1000)
    return out


async def _nothing() -> None:
    return None


@dataclass
class Loaded:
    """One side once its ingest is done: its figures so far, the queries to time on it (by
    kind: retrieve, stats, keys), its delete_all, and what to release at the end."""

    side: Side
    queries: dict[str, Query]
    delete: Callable[[], Awaitable[None]]
    close: Callable[[], Awaitable[None]] = _nothing


@dataclass
class Side:
    """Results of one side (service or engine) of one repetition."""

    ingest_events_per_s: float = 0.0
    cpu_us_per_event: dict[str, float] = field(default_factory=dict)  # by process watched
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    delete_ms: float | None = None
    peak_rss_bytes: int | None = None
