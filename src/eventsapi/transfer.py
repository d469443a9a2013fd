"""Events out of a store and into another: the export's lines (GET .../events/export and
`eventsapi export`), `eventsapi import`, and `eventsapi migrate` with its checkpoint, progress
and verification. Everything reads through `Store.export` a page at a time and writes through
`Store.ingest` a batch at a time, so memory stays flat whatever the size."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgspec
from aiohttp import web

from eventsapi import wire
from eventsapi.cursor import encode_cursor
from eventsapi.errors import StoreError
from eventsapi.handlers import ADMISSION, ROW_COST, STORE, authorize, call_store, log
from eventsapi.ingest_rules import parse_ingest
from eventsapi.problems import ValidationProblem
from eventsapi.stores.base import Store, export_pages
from eventsapi.validation import parse_export
from eventsapi.values import ExportPosition, ExportQuery, NewEvent, StoredEvent

PAGE = 5_000  # events per store read and per write
_LINE = msgspec.json.Encoder()


def export_lines(rows: Iterable[tuple[ExportPosition, StoredEvent]]) -> bytes:
    """NDJSON lines of an export, each with the position to resume after it."""
    return b"".join(
        _LINE.encode(wire.ExportLine(e.name, e.app, e.server, e.at, e.id, e.data, encode_cursor(*p))) + b"\n"
        for p, e in rows
    )


def as_new(rows: Sequence[tuple[ExportPosition, StoredEvent]]) -> list[NewEvent]:
    """Exported events as events to ingest: the same id, `at` and payload text."""
    return [NewEvent(e.id, e.name, e.app, e.server, e.at, bytes(e.data).decode()) for _, e in rows]


async def import_lines(store: Store, bucket: str, lines: IO[bytes], max_events: int = PAGE) -> tuple[int, list[str]]:
    """Ingest NDJSON events (an export, or any ingest lines) a batch at a time; (events
    stored, reasons for the lines refused). Refused lines are reported, never stored."""
    stored, first = 0, 1
    refused: list[str] = []
    batch: list[bytes] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            batch.append(line)
        if len(batch) == max_events:
            s, r = await _import_batch(store, bucket, batch, first)
            stored, refused, batch, first = stored + s, refused + r, [], number + 1
    if batch:
        s, r = await _import_batch(store, bucket, batch, first)
        stored, refused = stored + s, refused + r
    return stored, refused


async def _import_batch(store: Store, bucket: str, lines: list[bytes], first: int) -> tuple[int, list[str]]:
    parsed = parse_ingest(b"\n".join(lines), ndjson=True, max_events=len(lines))
    if parsed.events:
        await store.ingest(bucket, parsed.events)
    return len(parsed.events), [f"event {first + r.index}: {r.error}" for r in parsed.rejected]


# -- migrate ------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """Where a migration stands, per bucket: written (atomically) after every batch the
    destination acknowledged, so a migration killed at any point continues from there; the
    batch in flight is sent again, and stores nothing twice (same ids and `at`)."""

    path: Path
    buckets: dict[str, dict[str, object]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        if path.exists():
            return cls(path, json.loads(path.read_text())["buckets"])
        return cls(path)

    def position(self, bucket: str) -> ExportPosition | None:
        p = self.buckets.get(bucket, {}).get("position")
        return (int(p[0]), str(p[1])) if isinstance(p, list) else None

    def done(self, bucket: str) -> bool:
        return bool(self.buckets.get(bucket, {}).get("done"))

    def copied(self, bucket: str) -> int:
        n = self.buckets.get(bucket, {}).get("copied", 0)
        return n if isinstance(n, int) else 0

    def save(self, bucket: str, position: ExportPosition | None, copied: int, done: bool) -> None:
        self.buckets[bucket] = {"position": list(position) if position else None, "copied": copied, "done": done}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"buckets": self.buckets}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def checkpoint_path(source: str, destination: str, buckets: Sequence[str], since: int | None) -> Path:
    """One checkpoint per migration (same stores, buckets and --since), in the working directory."""
    key = hashlib.sha256(json.dumps([source, destination, sorted(buckets), since]).encode()).hexdigest()[:12]
    return Path(f"eventsapi-migrate-{key}.json")


class Progress:
    """Events, events/s and ETA: on a terminal one line redrawn, otherwise a line per 10 s."""

    def __init__(self, total: int | None, out: IO[str] = sys.stderr) -> None:
        self.total, self.out = total, out
        self.tty = out.isatty()
        self.started = time.monotonic()
        self.last_line = 0.0
        self.done = 0

    def add(self, n: int, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if not force and now - self.last_line < (0.2 if self.tty else 10.0):
            return
        self.last_line = now
        rate = self.done / max(now - self.started, 1e-6)
        text = f"{self.done:,} events, {rate:,.0f}/s"
        if self.total:
            left = max(0, self.total - self.done)
            text += f", {100 * min(self.done, self.total) / self.total:.0f} % of ~{self.total:,}"
            text += f", ETA {_duration(left / rate) if rate else '?'}"
        self.out.write(("\r" + text + "   ") if self.tty else text + "\n")
        self.out.flush()

    def finish(self) -> None:
        self.add(0, force=True)
        if self.tty:
            self.out.write("\n")


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


async def copy_bucket(
    source: Store,
    destination: Store,
    bucket: str,
    since: int | None,
    checkpoint: Checkpoint,
    progress: Callable[[int], None],
) -> int:
    """Copy one bucket from where its checkpoint stands; the events copied in all runs."""
    copied = checkpoint.copied(bucket)
    if checkpoint.done(bucket):
        return copied
    q = ExportQuery(bucket, start=since)
    after = checkpoint.position(bucket)
    # The next page is read while this one is written: source and destination work at once.
    Page = tuple[list[tuple[ExportPosition, StoredEvent]], ExportPosition | None]
    reading: asyncio.Future[Page] | None = asyncio.ensure_future(source.export(q, after, PAGE))
    while reading is not None:
        rows, after = await reading
        reading = asyncio.ensure_future(source.export(q, after, PAGE)) if after is not None else None
        try:
            if rows:
                await destination.ingest(bucket, as_new(rows))
        except BaseException:
            if reading is not None:
                reading.cancel()
            raise
        copied += len(rows)
        progress(len(rows))
        checkpoint.save(bucket, rows[-1][0] if rows else checkpoint.position(bucket), copied, after is None)
    return copied


@dataclass
class Tally:
    """What a side holds of a bucket: events per (event name, app), and an order-independent
    digest of every event's id, `at`, names and payload."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    digest: int = 0

    def add(self, e: StoredEvent) -> None:
        key = (e.name, e.app)
        self.counts[key] = self.counts.get(key, 0) + 1
        h = hashlib.blake2b(digest_size=16)
        for part in (e.id, str(e.at), e.name, e.app, e.server):
            h.update(part.encode() + b"\x00")
        h.update(_canonical(bytes(e.data)))
        self.digest = (self.digest + int.from_bytes(h.digest(), "big")) % (1 << 128)


def _canonical(data: bytes) -> bytes:
    """A payload's JSON with its keys sorted: two stores may keep the same object differently."""
    with contextlib.suppress(ValueError):
        return json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()
    return data


async def tally(store: Store, bucket: str, since: int | None) -> Tally:
    t = Tally()
    async for rows, _ in export_pages(store, ExportQuery(bucket, start=since)):
        for _, e in rows:
            t.add(e)
    return t


def verification_table(results: dict[str, tuple[Tally, Tally]]) -> tuple[str, bool]:
    """The verification as a table (bucket, event, app, source, destination, equal), and
    whether every row and every bucket's digest agree."""
    lines = ["bucket\tevent\tapp\tsource\tdestination\t", "------\t-----\t---\t------\t-----------\t"]
    ok = True
    for bucket, (src, dst) in sorted(results.items()):
        for key in sorted(set(src.counts) | set(dst.counts)):
            a, b = src.counts.get(key, 0), dst.counts.get(key, 0)
            ok &= a == b
            lines.append(f"{bucket}\t{key[0]}\t{key[1]}\t{a:,}\t{b:,}\t{'equal' if a == b else 'DIFFERENT'}")
        same = src.digest == dst.digest
        ok &= same
        total_a, total_b = sum(src.counts.values()), sum(dst.counts.values())
        mark = "equal, same events" if same else "DIFFERENT events"
        lines.append(f"{bucket}\t(all)\t\t{total_a:,}\t{total_b:,}\t{mark}")
    return _align(lines), ok


def _align(rows: list[str]) -> str:
    cells = [r.split("\t") for r in rows]
    widths = [max(len(c[i]) for c in cells if i < len(c)) for i in range(max(map(len, cells)))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in cells) + "\n"


# -- the HTTP route -------------------------------------------------------------------------


EXPORT_PAGE = 1_000  # events per store read of an export (its admission cost: a retrieve page's)


async def export(request: web.Request) -> web.StreamResponse:
    """Every matching event as NDJSON, oldest first, page by page (transfer.py): constant
    memory whatever the size. A store failure after the first line cuts the connection (no
    clean end), so a client never mistakes a partial export for a whole one; it resumes with
    `after` = the last line's position."""
    bucket = await authorize(request, "events:read")
    query, after = parse_export(bucket, dict(request.query))
    store = request.app[STORE]
    if after is not None and not store.export_position_valid(after):
        raise ValidationProblem([{"field": "after", "message": "not a position this service issued"}])

    async def page(after: ExportPosition | None) -> tuple[bytes, ExportPosition | None]:
        async with request.app[ADMISSION].take(EXPORT_PAGE * ROW_COST):
            rows, next_after = await call_store(request, store.export(query, after, EXPORT_PAGE))
            return export_lines(rows), next_after

    lines, after = await page(after)  # a failure here is still a problem+json answer
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        resp.enable_compression(web.ContentCoding.gzip)
    await resp.prepare(request)
    try:
        while True:
            await resp.write(lines)
            if after is None:
                break
            lines, after = await page(after)
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client left
    except (StoreError, TimeoutError):
        log.warning("export of bucket %s cut: the store failed", bucket)
        if request.transport is not None:
            request.transport.abort()
    return resp
