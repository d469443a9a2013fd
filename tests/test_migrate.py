"""Moving history between stores, as an operator does it: `eventsapi migrate` from SQLite to a
real InfluxDB 1.x, killed with -9 half-way and run again, then back to a fresh SQLite file;
`eventsapi export | eventsapi import`; and an export of a large bucket through a real `serve`
whose memory must stay flat. Every event must arrive exactly once, as it was (checked against
the events generated, a plain-Python oracle of first-write-wins, not against the tool's own
verification alone)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from eventsapi.config import Settings
from eventsapi.stores import open_store
from eventsapi.stores.base import export_pages
from eventsapi.transfer import as_new
from eventsapi.values import ExportQuery, NewEvent
from support import HOSTILE
from support.service import Service

pytestmark = pytest.mark.slow
EVENTS = int(os.environ.get("EVENTSAPI_MIGRATE_EVENTS", "50000"))
SEED = int(os.environ.get("EVENTSAPI_DIFF_SEED", "20261129"))


def generate(n: int, now: int) -> dict[str, list[NewEvent]]:
    """Events of two buckets: hostile names, one-millisecond bursts, payloads of every shape,
    a year of history; some ids sent twice (the first write must win)."""
    rnd = random.Random(SEED)
    names = ["deploy", "restart", *HOSTILE[:4]]
    out: dict[str, list[NewEvent]] = {"alpha": [], "beta.2": []}
    for i in range(n):
        bucket = "alpha" if i % 3 else "beta.2"
        at = now - rnd.randrange(365 * 86_400_000) if i % 50 else now - 3_600_000  # a burst every 50th
        data = json.dumps({"i": i, "s": rnd.choice(HOSTILE), "nested": {"l": [1, "x", None]}}, ensure_ascii=False)
        out[bucket].append(
            NewEvent(f"e{i:07d}", rnd.choice(names), rnd.choice([*HOSTILE, "api"]), rnd.choice(["", "web-1"]), at, data)
        )
    return out


def first_writes(events: list[NewEvent]) -> dict[tuple[int, str], tuple[str, str, str, Any]]:
    """The oracle: (at, id) -> (name, app, server, data) of the first write of each."""
    kept: dict[tuple[int, str], tuple[str, str, str, Any]] = {}
    for e in events:
        kept.setdefault((e.at, e.id), (e.name, e.app, e.server, json.loads(e.data)))
    return kept


async def fill(url: str, settings: Settings, events: dict[str, list[NewEvent]]) -> None:
    store = open_store(url, settings)
    await store.open()
    try:
        for bucket, evs in events.items():
            for i in range(0, len(evs), 5000):
                await store.ingest(bucket, evs[i : i + 5000])
            # A re-send of some ids with other payloads: stores nothing.
            await store.ingest(bucket, [NewEvent(e.id, "changed", "changed", "", e.at, "{}") for e in evs[:100]])
    finally:
        await store.close()


async def contents(url: str, settings: Settings, bucket: str) -> dict[tuple[int, str], tuple[str, str, str, Any]]:
    store = open_store(url, settings)
    await store.open()
    out: dict[tuple[int, str], tuple[str, str, str, Any]] = {}
    try:
        async for rows, _ in export_pages(store, ExportQuery(bucket)):
            for e in as_new(rows):
                assert (e.at, e.id) not in out, "an event exported twice"
                out[(e.at, e.id)] = (e.name, e.app, e.server, json.loads(e.data))
    finally:
        await store.close()
    return out


def eventsapi(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "eventsapi", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("EVENTSAPI_")},
    )  # fmt: skip


def verified(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "verified: equal" in err
    rows = [ln for ln in out.splitlines()[2:] if ln.strip()]
    assert rows and all(ln.rstrip().endswith(("equal", "equal, same events")) for ln in rows), out
    return out


def test_migrate_sqlite_to_influxdb_killed_half_way_then_back(influxd: Any, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store_timeout=30)
    events = generate(EVENTS, int(time.time() * 1000))
    source = f"sqlite:///{tmp_path / 'source.db'}"
    db = "m_" + uuid.uuid4().hex[:10]
    influxd.query(f'CREATE DATABASE "{db}"')
    influx = f"influxql://127.0.0.1:{influxd.port}/{db}"
    asyncio.run(fill(source, settings, events))

    # Killed with -9 once about half is copied, as a crash would.
    proc = eventsapi("migrate", "--from", source, "--to", influx, "--checkpoint", "cp.json", cwd=tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        state = json.loads((tmp_path / "cp.json").read_text()) if (tmp_path / "cp.json").exists() else {}
        if sum(b["copied"] for b in state.get("buckets", {}).values()) >= EVENTS // 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the migration ended before it could be killed half-way"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    # The same command again: it continues from the checkpoint and verifies.
    again = eventsapi("migrate", "--from", source, "--to", influx, "--checkpoint", "cp.json", cwd=tmp_path)
    out = verified(again)
    assert "alpha" in out and "beta.2" in out
    for bucket, evs in events.items():
        expected = first_writes(evs)
        assert asyncio.run(contents(influx, settings, bucket)) == expected  # every event once, as written

    # And back to a fresh SQLite file: the same events.
    back = f"sqlite:///{tmp_path / 'back.db'}"
    verified(eventsapi("migrate", "--from", influx, "--to", back, cwd=tmp_path))
    for bucket, evs in events.items():
        assert asyncio.run(contents(back, settings, bucket)) == first_writes(evs)
    # A second run of a finished migration copies nothing and still verifies.
    verified(eventsapi("migrate", "--from", influx, "--to", back, cwd=tmp_path))


def test_export_piped_into_import_is_identical(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    events = generate(6000, int(time.time() * 1000))
    source, copy = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    asyncio.run(fill(source, settings, events))
    dump = tmp_path / "alpha.ndjson"
    with open(dump, "wb") as f:
        done = subprocess.run(
            [sys.executable, "-m", "eventsapi", "export", "--store", source, "--bucket", "alpha"],
            stdout=f, stderr=subprocess.PIPE, text=False, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = dump.read_bytes().splitlines()
    assert len(lines) == len(first_writes(events["alpha"]))
    for _ in range(2):  # twice: the second stores nothing new
        imp = eventsapi("import", "--store", copy, "--bucket", "alpha", str(dump), cwd=tmp_path)
        _, err = imp.communicate(timeout=120)
        assert imp.returncode == 0 and f"imported {len(lines):,} events" in err, err
        assert asyncio.run(contents(copy, settings, "alpha")) == first_writes(events["alpha"])
    again = subprocess.run(
        [sys.executable, "-m", "eventsapi", "export", "--store", copy, "--bucket", "alpha"], capture_output=True
    )
    assert again.stdout == dump.read_bytes()  # byte for byte, positions included
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(lines[0] + b'\n{"event_name": "x"}\nnot json\n')
    imp = eventsapi("import", "--store", copy, "--bucket", "other", str(bad), cwd=tmp_path)
    _, err = imp.communicate(timeout=60)
    assert imp.returncode == 1 and "2 events refused" in err and "event 2:" in err and "event 3:" in err


def test_a_large_export_streams_in_flat_memory(tmp_path: Path) -> None:
    """200,000 events of ~600 bytes (140 MiB of NDJSON) through a real `serve`: its memory does
    not follow the export's size. The first export fills SQLite's page caches (64 MiB per
    connection, one per reader thread: bounded, whatever the size); a second one then runs in
    what the process already holds, or fills one more reader's cache."""
    n = int(os.environ.get("EVENTSAPI_EXPORT_EVENTS", "200000"))
    now = int(time.time() * 1000)
    pad = "x" * 560
    events = {"big": [NewEvent(f"b{i:07d}", "tick", "api", "web-1", now - n + i, f'{{"i":{i},"p":"{pad}"}}')
                      for i in range(n)]}  # fmt: skip
    db = tmp_path / "big.db"
    asyncio.run(fill(f"sqlite:///{db}", Settings(data_dir=tmp_path), events))
    with Service(tmp_path, {"EVENTSAPI_STORE": f"sqlite:///{db}", "EVENTSAPI_ACCESS_LOG": "0"}) as service:
        token = service.token("--sub", "ops", "--bucket", "big", "--scope", "events:read")

        def rss() -> int:
            with urllib.request.urlopen(service.url + "/metrics") as r:
                line = next(ln for ln in r.read().decode().splitlines() if ln.startswith("process_resident_memory"))
            return int(float(line.split()[1]))

        def export() -> tuple[int, int, int]:
            """(lines, bytes, peak RSS seen while reading)."""
            peak, received, lines = rss(), 0, 0
            request = urllib.request.Request(
                service.url + "/api/bucket/big/data/events/export", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request) as resp:
                while chunk := resp.read(1 << 20):
                    received += len(chunk)
                    lines += chunk.count(b"\n")
                    peak = max(peak, rss())
            return lines, received, max(peak, rss())

        start = rss()
        lines, received, first_peak = export()
        assert lines == n and received > 100 * 2**20
        lines, _, second_peak = export()
    mib = 2**20
    assert lines == n
    assert first_peak - start < 300 * mib, f"the first export grew RSS by {(first_peak - start) / mib:.0f} MiB"
    # At most one more reader connection's page cache (64 MiB) if the second export ran on a
    # thread the first did not use; never again the export's size.
    assert second_peak - first_peak < 72 * mib, (
        f"the second export grew RSS by {(second_peak - first_peak) / mib:.0f} MiB"
    )
