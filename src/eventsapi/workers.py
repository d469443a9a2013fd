"""`eventsapi serve --workers N`: N worker processes serving one port, under a parent.

Each worker is a whole `eventsapi serve` of its own, binding the same address with
SO_REUSEPORT, so the kernel spreads connections over them. The parent binds nothing: it starts
the workers, starts again one that dies (a crash loop — 5 deaths within 10 s — stops
everything), and on SIGTERM or SIGINT passes the signal on and waits for every worker to drain
its requests. Metrics are Prometheus' multiprocess mode: every worker writes its counters to a
shared directory, and any worker's /metrics adds them all up.

Workers share only the store, like replicas: SQLite serialises their writes on its file lock
(WAL), and on InfluxDB each worker is one more stateless replica (docs/influx.md), except that
each bucket's ingest is written by one of them (peers.py): every worker gets its slot
(`EVENTSAPI_WORKER_SLOT`: its index, the count, the directory of their sockets), and one that
dies is replaced in the same slot.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence

log = logging.getLogger("eventsapi")
CRASH_LOOP = (5, 10.0)  # this many deaths within this many seconds: give up


def _die_with_parent() -> None:
    """In a worker, before it runs: on Linux, SIGTERM when the parent dies, even killed with
    SIGKILL, so that no worker goes on serving the port alone (prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)


def run_workers(count: int, serve_args: Sequence[str]) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="eventsapi-metrics-")
    sockets_dir = tempfile.mkdtemp(prefix="eventsapi-workers-")  # mode 0700: only this user's processes
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "EVENTSAPI_WORKERS": "1", "EVENTSAPI_REUSE_PORT": "1"}
    command = [sys.executable, "-m", "eventsapi", "serve", *serve_args, "--workers", "1"]
    workers: dict[int, subprocess.Popen[bytes]] = {}  # by slot: a worker that dies is replaced in its own
    deaths: deque[float] = deque(maxlen=CRASH_LOOP[0])
    stopping = False

    def start(slot: int) -> None:
        slot_env = {**env, "EVENTSAPI_WORKER_SLOT": f"{slot}/{count}:{sockets_dir}"}
        proc = subprocess.Popen(
            command, env=slot_env, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None
        )
        workers[slot] = proc
        log.info("worker %d started", proc.pid)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(count):
        start(slot)
    failed = False
    try:
        while workers:
            for slot, proc in list(workers.items()):
                code = proc.poll()
                if code is None:
                    continue
                del workers[slot]
                _mark_dead(proc.pid, metrics_dir)
                if stopping:
                    continue
                log.warning("worker %d exited with %s; starting another", proc.pid, code)
                deaths.append(time.monotonic())
                if len(deaths) == deaths.maxlen and deaths[-1] - deaths[0] < CRASH_LOOP[1]:
                    log.error("workers keep dying (%d within %.0f s): stopping", *CRASH_LOOP)
                    failed = True
                    stop(signal.SIGTERM, None)
                    continue
                start(slot)
            time.sleep(0.1)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(sockets_dir, ignore_errors=True)
    return 1 if failed else 0


def _mark_dead(pid: int, metrics_dir: str) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
