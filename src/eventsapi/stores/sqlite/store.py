"""SQLiteStore: the Store interface over one file — one writer thread, a pool of reader
threads, the background purge loop, and the ingest keys' table."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import msgspec
from msgspec import Raw

from eventsapi.config import Settings
from eventsapi.keys import KeyRecord
from eventsapi.stores import sqlite_path
from eventsapi.stores.base import Store, StoreUnavailable, group_by_app
from eventsapi.stores.sqlite.schema import GEN, connect, ingest_seq, migrate, select_in, transaction
from eventsapi.stores.sqlite.sql import export_sql, retrieve_sql, seq_position, stats_groups_sql, stats_sql, tail_sql
from eventsapi.stores.sqlite.writer import PURGE_CHUNK, delete_scope, purge_expired, purge_strings, write_events
from eventsapi.values import (
    DeleteScope,
    EventQuery,
    ExportPosition,
    ExportQuery,
    GroupTag,
    NewEvent,
    StatsQuery,
    StoredEvent,
    TailQuery,
)
from eventsapi.windows import engine_step

T = TypeVar("T")
REOPEN_SECONDS = 1.0

EXPIRY_SECONDS = 60.0


class SQLiteStore(Store):
    name = "sqlite"

    def __init__(self, path: Path, readers: int = 4, retention_days: float | None = None) -> None:
        self.path = path
        # Events older than this are not returned, and are purged in the background.
        self.retention_ms = None if retention_days is None else int(retention_days * 86_400_000)
        self._expiry_due = True
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._write_conn: sqlite3.Connection | None = None
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._purge_task: asyncio.Task[None] | None = None
        self._purge_wakeup = asyncio.Event()
        self._open_lock = asyncio.Lock()
        self._reopen_at = 0.0  # monotonic time before which a failed open is not retried
        self._keys: dict[str, int] = {}  # string -> key, writer thread only
        self._strings_stale = True  # strings may be left that no event uses (writer thread only)
        self._values: dict[int, str] = {}  # key -> string, shared by readers (keys never change)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> SQLiteStore:
        path = sqlite_path(url)
        if not path.name:
            raise ValueError("sqlite URL needs a path: sqlite:///ABS/PATH.db")
        return cls(path, retention_days=settings.retention_days)

    def start_problem(self) -> str | None:
        # Only the default data directory is created (config.ensure_secret): a path the
        # operator wrote whose directory does not exist is more likely a typo than a wish.
        if not self.path.parent.is_dir():
            return f"the directory {self.path.parent} does not exist (create it, or use another path)"
        try:
            conn = connect(self.path)
            try:
                migrate(conn)
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as exc:
            return f"cannot open {self.path}: {exc}"
        return None

    # -- connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self.path)
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
        conn = self._write_conn or await self._reopen()

        def run() -> T:
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"sqlite: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._write_conn is None:
            await self._reopen()

        def run() -> T:
            try:
                return fn(self._reader())
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"sqlite: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    # -- life cycle -----------------------------------------------------------------------

    async def open(self) -> None:
        await self._reopen()

    async def _reopen(self) -> sqlite3.Connection:
        """Open the file and its schema, or raise StoreUnavailable. Until it has worked once
        (a full disk or an unusable path at start-up), every call tries again, at most once
        per REOPEN_SECONDS, so the store recovers by itself once the cause is gone."""
        async with self._open_lock:
            if self._write_conn is not None:
                return self._write_conn
            now = time.monotonic()
            if now < self._reopen_at:
                raise StoreUnavailable(f"sqlite: cannot open {self.path} (retrying)")
            self._reopen_at = now + REOPEN_SECONDS

            def setup() -> sqlite3.Connection:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = self._connect()
                try:
                    migrate(conn)
                except BaseException:
                    self._forget(conn)
                    raise
                return conn

            try:
                conn = await asyncio.get_running_loop().run_in_executor(self._writer, setup)
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"sqlite: cannot open {self.path}: {exc}") from exc
            self._write_conn = conn
            self._purge_task = asyncio.create_task(self._purge_loop())
            return conn

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._conns_lock:
            self._all_conns.remove(conn)
        conn.close()

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
        await self._write(lambda conn: write_events(conn, bucket, events, self._keys))

    async def delete_all(self, bucket: str) -> None:
        def detach(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(f"UPDATE generations SET dead = 1 WHERE gen = {GEN}", (bucket,))
                conn.execute("DELETE FROM buckets WHERE bucket_id = ?", (bucket,))

        await self._write(detach)
        self._purge_wakeup.set()

    async def delete(self, scope: DeleteScope) -> int | None:
        if scope.is_everything():
            await self.delete_all(scope.bucket)
            return None
        gone = await self._write(lambda conn: delete_scope(conn, scope))
        self._strings_stale = True
        self._purge_wakeup.set()  # names no event uses any more are purged in the background
        return gone

    async def _purge_loop(self) -> None:
        """Reclaim the rows of deleted generations, a chunk per writer turn, then the interned
        strings no event uses any more."""

        def purge_chunk(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT gen FROM generations WHERE dead = 1 LIMIT 1").fetchone()
            if row is None and self.retention_ms is not None and self._expiry_due:
                if purge_expired(conn, self._cutoff()) == PURGE_CHUNK:
                    return True
                self._expiry_due = False
                self._strings_stale = True
            if row is None:
                if not self._strings_stale:
                    return False
                with transaction(conn):
                    gone = purge_strings(conn)
                self._keys.clear()  # the writer's cache may name deleted strings
                self._strings_stale = gone == PURGE_CHUNK
                return self._strings_stale
            gen = row[0]
            with transaction(conn):
                cur = conn.execute(
                    "DELETE FROM events WHERE rowid IN "
                    "(SELECT rowid FROM events INDEXED BY events_by_at_id WHERE gen = ? LIMIT ?)",
                    (gen, PURGE_CHUNK),
                )
                if cur.rowcount < PURGE_CHUNK:
                    conn.execute("DELETE FROM event_keys WHERE gen = ?", (gen,))
                    conn.execute("DELETE FROM event_servers WHERE gen = ?", (gen,))
                    conn.execute("DELETE FROM generations WHERE gen = ?", (gen,))
                    self._strings_stale = True
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
            try:
                # Expired events are looked for every EXPIRY_SECONDS (and at start-up).
                await asyncio.wait_for(self._purge_wakeup.wait(), EXPIRY_SECONDS)
            except TimeoutError:
                self._expiry_due = True

    # -- reads ----------------------------------------------------------------------------

    def _names(self, conn: sqlite3.Connection, keys: set[int]) -> dict[int, str]:
        values = self._values
        missing = [k for k in keys if k not in values]
        values.update(select_in(conn, "SELECT key, value FROM strings WHERE key IN", missing))
        if len(values) > 200_000:
            self._values = {k: values[k] for k in keys}
            return self._values
        return values

    async def retention_days(self) -> float | None:
        return None if self.retention_ms is None else self.retention_ms / 86_400_000

    def _cutoff(self) -> int:
        """The oldest `at` still visible: 0 without a retention."""
        return 0 if self.retention_ms is None else int(time.time() * 1000) - self.retention_ms

    async def retrieve(self, query: EventQuery) -> list[StoredEvent]:
        if self.retention_ms is not None:
            query = replace(query, start=max(query.start or 0, self._cutoff()))
        sql, args = retrieve_sql(query)

        def read(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(sql, args).fetchall()
            v = self._names(conn, {k for r in rows for k in (r[1], r[2], r[3])})
            return [StoredEvent(r[0], v[r[1]], v[r[2]], v[r[3]], r[4], Raw(r[5])) for r in rows]

        return await self._read(read)

    async def export(
        self, q: ExportQuery, after: ExportPosition | None, limit: int
    ) -> tuple[list[tuple[ExportPosition, StoredEvent]], ExportPosition | None]:
        sql, args = export_sql(q, after, limit, self._cutoff())

        def read(conn: sqlite3.Connection) -> list[tuple[ExportPosition, StoredEvent]]:
            rows = conn.execute(sql, args).fetchall()
            v = self._names(conn, {k for r in rows for k in (r[1], r[2], r[3])})
            return [((r[4], r[0]), StoredEvent(r[0], v[r[1]], v[r[2]], v[r[3]], r[4], Raw(r[5]))) for r in rows]

        rows = await self._read(read)
        return rows, (rows[-1][0] if len(rows) == limit else None)

    async def size(self, bucket: str) -> int | None:
        sql = f"SELECT coalesce(sum(n), 0) FROM event_keys WHERE gen = {GEN}"
        return int((await self._read(lambda c: c.execute(sql, [bucket]).fetchone()))[0])

    async def stats(self, query: StatsQuery) -> list[int]:
        sql, args = stats_sql(query, self._cutoff())
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [r[0] for r in rows]

    async def stats_groups(self, query: StatsQuery, tag: GroupTag) -> list[tuple[str, int, int]]:
        sql, args = stats_groups_sql(query, tag, engine_step(query.starts, query.end, query.interval), self._cutoff())

        def read(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
            rows = conn.execute(sql, args).fetchall()
            v = self._names(conn, {r[0] for r in rows})
            return [(v[key], start, n) for key, start, n in rows]

        return await self._read(read)

    async def tail(self, q: TailQuery, after: str | None, limit: int) -> tuple[list[tuple[str, StoredEvent]], str]:
        def read(conn: sqlite3.Connection) -> tuple[list[tuple[str, StoredEvent]], str]:
            if after is None:
                return [], seq_position(ingest_seq(conn))
            sql, args = tail_sql(q, int(after), limit)
            rows = conn.execute(sql, args).fetchall()
            v = self._names(conn, {k for r in rows for k in (r[2], r[3], r[4])})
            out = [(seq_position(r[0]), StoredEvent(r[1], v[r[2]], v[r[3]], v[r[4]], r[5], Raw(r[6]))) for r in rows]
            return out, out[-1][0] if out else after

        return await self._read(read)

    async def buckets(self) -> list[str]:
        rows = await self._read(lambda c: c.execute("SELECT bucket_id FROM buckets ORDER BY 1").fetchall())
        return [r[0] for r in rows]

    async def keys_by_app(self, bucket: str) -> list[tuple[str, list[str]]]:
        sql = f"SELECT app, name FROM event_keys WHERE gen = {GEN}"
        args: list[object] = [bucket]
        if self.retention_ms is not None:
            # Until the purge has caught up, a pair is listed only while it has a visible event.
            sql += (
                " AND EXISTS (SELECT 1 FROM events INDEXED BY events_by_app WHERE events.gen = event_keys.gen"
                " AND events.app = event_keys.app AND events.name = event_keys.name AND events.at >= ?)"
            )
            args.append(self._cutoff())

        def read(conn: sqlite3.Connection) -> list[tuple[str, list[str]]]:
            rows = conn.execute(sql, args).fetchall()
            v = self._names(conn, {k for r in rows for k in r})
            return group_by_app((v[a], v[n]) for a, n in rows)

        return await self._read(read)

    async def tag_sets(self, bucket: str) -> tuple[set[str], set[str], set[str]]:
        def read(conn: sqlite3.Connection) -> tuple[set[str], set[str], set[str]]:
            keys = conn.execute(f"SELECT app, name FROM event_keys WHERE gen = {GEN}", (bucket,)).fetchall()
            servers = conn.execute(f"SELECT server FROM event_servers WHERE gen = {GEN}", (bucket,)).fetchall()
            v = self._names(conn, {k for r in keys for k in r} | {r[0] for r in servers})
            return {v[n] for _, n in keys}, {v[a] for a, _ in keys}, {v[s] for (s,) in servers}

        return await self._read(read)

    # -- ingest keys ----------------------------------------------------------------------

    async def keys(self, key_id: str | None = None) -> list[KeyRecord]:
        sql = "SELECT key_id, name, digest, buckets, scope, created, last_used, revoked FROM api_keys"
        args: tuple[str, ...] = ()
        if key_id is not None:
            sql, args = sql + " WHERE key_id = ?", (key_id,)
        rows = await self._read(lambda c: c.execute(sql + " ORDER BY created, key_id", args).fetchall())
        return [KeyRecord(r[0], r[1], r[2], tuple(msgspec.json.decode(r[3])), *r[4:]) for r in rows]

    async def key_create(self, record: KeyRecord) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(
                    "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.key_id, record.name, record.digest, msgspec.json.encode(record.buckets).decode(),
                        record.scope, record.created, record.last_used, record.revoked,
                    ),
                )  # fmt: skip

        await self._write(insert)

    async def key_revoke(self, key_id: str, at_ms: int) -> bool:
        def revoke(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                sql = "UPDATE api_keys SET revoked = coalesce(revoked, ?) WHERE key_id = ?"
                return conn.execute(sql, (at_ms, key_id)).rowcount == 1

        return await self._write(revoke)

    async def key_touch(self, key_id: str, at_ms: int) -> None:
        def touch(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                sql = "UPDATE api_keys SET last_used = max(coalesce(last_used, 0), ?) WHERE key_id = ?"
                conn.execute(sql, (at_ms, key_id))

        await self._write(touch)
