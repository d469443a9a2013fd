"""The embedded SQLite store: single file, WAL, one writer thread, a pool of reader threads.

Design for scale (API.md §5, issue 2):
- Newest-first reads and cursor pages walk an index on (generation, name[, app], at, id)
  backwards, so the newest page costs the same at 1,000 or 10,000,000 events.
- A trigger keeps per-minute counts and the (app, name) key set as events are inserted, so a
  histogram sums at most one row per minute per series and eventsKeysByApp never reads events.
- A bucket's rows carry a *generation* number. delete_all points the bucket at no generation
  (one row, committed before the answer), and a background task purges the orphaned
  generation in small chunks, so deleting a million events answers in milliseconds.
- Each commit is fsynced (synchronous=FULL) before ingest answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from eventsapi.stores.base import (
    EventQuery,
    NewEvent,
    StatsQuery,
    Store,
    StoredEvent,
    StoreUnavailable,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    bucket_id TEXT PRIMARY KEY,
    gen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS generations (
    gen INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket_id TEXT NOT NULL,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    gen INTEGER NOT NULL,
    name TEXT NOT NULL,
    app TEXT NOT NULL,
    server TEXT NOT NULL,
    at INTEGER NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (gen, id);
CREATE INDEX IF NOT EXISTS events_by_name ON events (gen, name, at, id);
CREATE INDEX IF NOT EXISTS events_by_app ON events (gen, app, name, at, id);
CREATE TABLE IF NOT EXISTS minute_counts (
    gen INTEGER NOT NULL,
    name TEXT NOT NULL,
    minute INTEGER NOT NULL,
    app TEXT NOT NULL,
    server TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (gen, name, minute, app, server)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_keys (
    gen INTEGER NOT NULL,
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (gen, app, name)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS events_rollup AFTER INSERT ON events BEGIN
    INSERT INTO minute_counts VALUES (NEW.gen, NEW.name, NEW.at / 60000, NEW.app, NEW.server, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO event_keys VALUES (NEW.gen, NEW.app, NEW.name, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;
"""

_GEN = "(SELECT gen FROM buckets WHERE bucket_id = ?)"
PURGE_CHUNK = 20_000


def retrieve_sql(q: EventQuery) -> tuple[str, list[object]]:
    """The newest-first page query: an index range walked backwards, never a sort."""
    index = "events_by_app" if q.app is not None else "events_by_name"
    where = [f"gen = {_GEN}"]
    args: list[object] = [q.bucket]
    if q.app is not None:
        where.append("app = ?")
        args.append(q.app)
    where.append("name = ?")
    args.append(q.name)
    if q.server is not None:
        where.append("server = ?")
        args.append(q.server)
    if q.start is not None:
        where.append("at >= ?")
        args.append(q.start)
    if q.end is not None:
        where.append("at < ?")
        args.append(q.end)
    if q.after is not None:
        where.append("(at, id) < (?, ?)")
        args.extend(q.after)
    sql = (
        f"SELECT id, name, app, server, at, data FROM events INDEXED BY {index} "
        f"WHERE {' AND '.join(where)} ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
    )
    args.extend((q.limit, q.offset))
    return sql, args


def stats_sql(q: StatsQuery) -> tuple[str, list[object]]:
    """Sum the per-minute rollup over each window; the windows come in as a JSON array."""
    cond = ["c.gen = (SELECT gen FROM buckets WHERE bucket_id = ?)", "c.name = ?"]
    args: list[object] = [q.bucket, q.name]
    if q.app is not None:
        cond.append("c.app = ?")
        args.append(q.app)
    if q.server is not None:
        cond.append("c.server = ?")
        args.append(q.server)
    bounds = [*q.starts, q.end]
    # Window edges are whole minutes (see windows.window_start), so minute rows fall wholly
    # inside one window.
    windows = json.dumps([[bounds[i] // 60000, bounds[i + 1] // 60000] for i in range(len(q.starts))])
    sql = (
        "SELECT (SELECT coalesce(sum(c.n), 0) FROM minute_counts c WHERE "
        + " AND ".join(cond)
        + " AND c.minute >= w.value ->> 0 AND c.minute < w.value ->> 1)"
        " FROM json_each(?) w ORDER BY w.key"
    )
    return sql, [*args, windows]


class SQLiteStore(Store):
    name = "sqlite"

    def __init__(self, path: Path, readers: int = 4) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._write_conn: sqlite3.Connection | None = None
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._purge_task: asyncio.Task[None] | None = None
        self._purge_wakeup = asyncio.Event()

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError("sqlite URL needs a path: sqlite:///ABS/PATH.db")
        return cls(Path(path))

    # -- connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-65536")
        with self._conns_lock:
            self._all_conns.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._write_conn is not None
            try:
                return fn(self._write_conn)
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"sqlite: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            try:
                return fn(self._reader())
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"sqlite: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    # -- life cycle -----------------------------------------------------------------------

    async def open(self) -> None:
        def setup() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            conn.executescript(SCHEMA)
            self._write_conn = conn

        try:
            await asyncio.get_running_loop().run_in_executor(self._writer, setup)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite: cannot open {self.path}: {exc}") from exc
        self._purge_task = asyncio.create_task(self._purge_loop())

    async def close(self) -> None:
        if self._purge_task is not None:
            self._purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge_task
        # Queued writes finish before the executors stop.
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._all_conns:
                conn.close()
            self._all_conns.clear()

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    # -- writes ---------------------------------------------------------------------------

    async def ingest(self, bucket: str, events: Sequence[NewEvent]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT gen FROM buckets WHERE bucket_id = ?", (bucket,)).fetchone()
                if row is None:
                    cur = conn.execute("INSERT INTO generations (bucket_id) VALUES (?)", (bucket,))
                    gen = cur.lastrowid
                    conn.execute("INSERT INTO buckets VALUES (?, ?)", (bucket, gen))
                else:
                    gen = row[0]
                # OR IGNORE on the (gen, id) unique index makes re-sends no-ops; the rollup
                # trigger fires only for rows actually inserted.
                conn.executemany(
                    f"INSERT OR IGNORE INTO events VALUES ({gen}, ?, ?, ?, ?, ?, ?)",
                    ((e.name, e.app, e.server, e.at, e.id, e.data) for e in events),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._write(write)

    async def delete_all(self, bucket: str) -> None:
        def detach(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE generations SET dead = 1 WHERE gen = (SELECT gen FROM buckets WHERE bucket_id = ?)",
                (bucket,),
            )
            conn.execute("DELETE FROM buckets WHERE bucket_id = ?", (bucket,))
            conn.execute("COMMIT")

        await self._write(detach)
        self._purge_wakeup.set()

    async def _purge_loop(self) -> None:
        """Reclaim the rows of deleted generations, a chunk per writer turn."""

        def purge_chunk(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT gen FROM generations WHERE dead = 1 LIMIT 1").fetchone()
            if row is None:
                return False
            gen = row[0]
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "DELETE FROM events WHERE rowid IN "
                    "(SELECT rowid FROM events INDEXED BY events_by_id WHERE gen = ? LIMIT ?)",
                    (gen, PURGE_CHUNK),
                )
                if cur.rowcount < PURGE_CHUNK:
                    conn.execute("DELETE FROM minute_counts WHERE gen = ?", (gen,))
                    conn.execute("DELETE FROM event_keys WHERE gen = ?", (gen,))
                    conn.execute("DELETE FROM generations WHERE gen = ?", (gen,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return True

        while True:
            try:
                more = await self._write(purge_chunk)
            except StoreUnavailable:
                more = False
            if more:
                await asyncio.sleep(0)  # let queued ingests take the writer between chunks
                continue
            self._purge_wakeup.clear()
            await self._purge_wakeup.wait()

    # -- reads ----------------------------------------------------------------------------

    async def retrieve(self, query: EventQuery) -> list[StoredEvent]:
        sql, args = retrieve_sql(query)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [StoredEvent(*r) for r in rows]

    async def stats(self, query: StatsQuery) -> list[int]:
        sql, args = stats_sql(query)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [r[0] for r in rows]

    async def keys_by_app(self, bucket: str) -> list[tuple[str, list[str]]]:
        rows: list[tuple[str, str]] = await self._read(
            lambda c: c.execute(
                f"SELECT app, name FROM event_keys WHERE gen = {_GEN} ORDER BY app, name", (bucket,)
            ).fetchall()
        )
        out: list[tuple[str, list[str]]] = []
        for app, name in rows:
            if not out or out[-1][0] != app:
                out.append((app, []))
            out[-1][1].append(name)
        return out
