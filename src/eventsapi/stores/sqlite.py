"""The embedded SQLite store: single file, WAL, one writer thread, a pool of reader threads.

Design for scale (docs/api.md §5):
- Names, apps and servers are interned as integers (`strings`), so the event indexes stay
  small: (generation, name, at, server) and (generation, app, name, at, server), plus the
  unique (generation, at, id) that makes re-sends no-ops (an event is its bucket, `at` and
  id; docs/api.md). Three index entries per event is what keeps ingest fast.
- Newest-first reads and cursor pages walk one of those indexes backwards; only rows sharing
  one millisecond are ordered by id in a small sort, never the history.
- Histograms count index ranges, one per window, without reading the rows; the filters they
  may carry (app, server) are index columns too.
- The (app, name) key set is kept per batch in `event_keys`, so eventsKeysByApp never reads
  events.
- A bucket's rows carry a *generation* number. delete_all points the bucket at no generation
  (one row, committed before the answer), and a background task purges the orphaned
  generation in small chunks, so deleting a million events answers in milliseconds.
- Each commit is fsynced (synchronous=FULL) before ingest answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import msgspec
from msgspec import Raw

from eventsapi.keys import KeyRecord
from eventsapi.stores.base import Store, StoreUnavailable, group_by_app
from eventsapi.values import DeleteScope, EventQuery, NewEvent, StatsQuery, StoredEvent, TailQuery

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS strings (
    key INTEGER PRIMARY KEY,
    value TEXT NOT NULL UNIQUE
);
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
    name INTEGER NOT NULL,
    app INTEGER NOT NULL,
    server INTEGER NOT NULL,
    at INTEGER NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL
);
DROP INDEX IF EXISTS events_by_id;
CREATE UNIQUE INDEX IF NOT EXISTS events_by_at_id ON events (gen, at, id);
CREATE INDEX IF NOT EXISTS events_by_name ON events (gen, name, at, server);
CREATE INDEX IF NOT EXISTS events_by_app ON events (gen, app, name, at, server);
CREATE TABLE IF NOT EXISTS event_keys (
    gen INTEGER NOT NULL,
    app INTEGER NOT NULL,
    name INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (gen, app, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    buckets TEXT NOT NULL,
    scope TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_used INTEGER,
    revoked INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_servers (
    gen INTEGER NOT NULL,
    server INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (gen, server)
) WITHOUT ROWID;
"""

_GEN = "(SELECT gen FROM buckets WHERE bucket_id = ?)"
_KEY = "(SELECT key FROM strings WHERE value = ?)"
PURGE_CHUNK = 20_000
REOPEN_SECONDS = 1.0
EXPIRY_SECONDS = 60.0
# Rows get explicit rowids from the ingest sequence (meta 'seq'): they only grow, even when the
# newest rows are deleted, so a rowid is a live tail's resumable position.
_BULK_INSERT = (
    "INSERT OR IGNORE INTO events (rowid, gen, name, app, server, at, id, data) SELECT ? + key + 1, ?, "
    "value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM json_each(?)"
)
_ROW_INSERT = (
    "INSERT OR IGNORE INTO events (rowid, gen, name, app, server, at, id, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _where(bucket: str, name: str, app: str | None, server: str | None) -> tuple[str, list[object], str]:
    """Conditions on the interned columns, their arguments, and the index that serves them."""
    cond = [f"gen = {_GEN}", f"name = {_KEY}"]
    args: list[object] = [bucket, name]
    if app is not None:
        cond.append(f"app = {_KEY}")
        args.append(app)
    if server is not None:
        cond.append(f"server = {_KEY}")
        args.append(server)
    return " AND ".join(cond), args, "events_by_app" if app is not None else "events_by_name"


def retrieve_sql(q: EventQuery) -> tuple[str, list[object]]:
    """The newest-first page: an index range walked backwards. Rows of one millisecond are
    ordered by id in a small sort (SQLite's "right part of ORDER BY"), never the history."""
    where, args, index = _where(q.bucket, q.name, q.app, q.server)
    if q.start is not None:
        where += " AND at >= ?"
        args.append(q.start)
    if q.end is not None:
        where += " AND at < ?"
        args.append(q.end)
    if q.after is not None:
        where += " AND at <= ? AND (at < ? OR id < ?)"
        args.extend((q.after[0], q.after[0], q.after[1]))
    sql = (
        f"SELECT id, name, app, server, at, data FROM events INDEXED BY {index} "
        f"WHERE {where} ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
    )
    args.extend((q.limit, q.offset))
    return sql, args


def scope_where(scope: DeleteScope) -> tuple[str, list[object]]:
    """Conditions selecting a scoped delete's events (the bucket's generation included)."""
    cond: list[str] = [f"gen = {_GEN}"]
    args: list[object] = [scope.bucket]
    for column, value in (("name", scope.name), ("app", scope.app), ("server", scope.server)):
        if value is not None:
            cond.append(f"{column} = {_KEY}")
            args.append(value)
    if scope.start is not None:
        cond.append("at >= ?")
        args.append(scope.start)
    if scope.end is not None:
        cond.append("at < ?")
        args.append(scope.end)
    return " AND ".join(cond), args


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the writer's connection only)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _uncount(
    conn: sqlite3.Connection, gen: int, pairs: Iterable[tuple[int, int, int]], servers: Iterable[tuple[int, int]]
) -> None:
    """Take deleted events off the (app, name) and server counts; what reaches 0 is gone."""
    conn.executemany(
        "UPDATE event_keys SET n = n - ? WHERE gen = ? AND app = ? AND name = ?",
        ((n, gen, app, name) for app, name, n in pairs),
    )
    conn.executemany(
        "UPDATE event_servers SET n = n - ? WHERE gen = ? AND server = ?", ((n, gen, s) for s, n in servers)
    )
    conn.execute("DELETE FROM event_keys WHERE gen = ? AND n <= 0", (gen,))
    conn.execute("DELETE FROM event_servers WHERE gen = ? AND n <= 0", (gen,))


def purge_expired(conn: sqlite3.Connection, cutoff_ms: int, limit: int = PURGE_CHUNK) -> int:
    """Delete up to `limit` events older than the retention, oldest first per bucket, in one
    short transaction (a chunk never stalls ingest for long); how many went."""
    gone = 0
    with transaction(conn):
        for (gen,) in conn.execute("SELECT gen FROM buckets").fetchall():
            rows = conn.execute(
                "SELECT rowid, app, name, server FROM events INDEXED BY events_by_at_id "
                "WHERE gen = ? AND at < ? LIMIT ?",
                (gen, cutoff_ms, limit - gone),
            ).fetchall()
            if not rows:
                continue
            for i in range(0, len(rows), 500):
                chunk = [r[0] for r in rows[i : i + 500]]
                conn.execute(f"DELETE FROM events WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)
            pairs = Counter((r[1], r[2]) for r in rows)
            servers = Counter(r[3] for r in rows)
            _uncount(conn, gen, ((a, n, c) for (a, n), c in pairs.items()), servers.items())
            gone += len(rows)
            if gone >= limit:
                break
    return gone


def delete_scope(conn: sqlite3.Connection, scope: DeleteScope) -> int:
    """Delete a scope's events in one transaction, and take them off the key and server
    counts (a pair or server whose count reaches 0 is gone from eventsKeysByApp at once)."""
    where, args = scope_where(scope)
    with transaction(conn):
        gen = conn.execute("SELECT gen FROM buckets WHERE bucket_id = ?", (scope.bucket,)).fetchone()
        if gen is None:
            return 0
        pairs = conn.execute(
            f"SELECT app, name, count(*) FROM events WHERE {where} GROUP BY app, name", args
        ).fetchall()
        servers = conn.execute(f"SELECT server, count(*) FROM events WHERE {where} GROUP BY server", args).fetchall()
        gone = conn.execute(f"DELETE FROM events WHERE {where}", args).rowcount
        _uncount(conn, gen[0], pairs, servers)
    return gone


def stats_sql(q: StatsQuery, since: int = 0) -> tuple[str, list[object]]:
    """One index-range count per window; the windows come in as a JSON array of [start, end).
    Events before `since` (the retention's cutoff) are not counted."""
    where, args, index = _where(q.bucket, q.name, q.app, q.server)
    # The bounds go in as one flat array, encoded in C, and each window's end is the next
    # bound (lead): building 2,880 [start, end] pairs in Python took most of a stats call.
    sql = (
        "WITH w AS (SELECT key, value AS lo, lead(value) OVER (ORDER BY key) AS hi FROM json_each(?)) "
        f"SELECT (SELECT count(*) FROM events INDEXED BY {index} WHERE {where} "
        "AND at >= max(w.lo, ?) AND at < w.hi) FROM w WHERE w.hi IS NOT NULL ORDER BY w.key"
    )
    return sql, [msgspec.json.encode([*q.starts, q.end]).decode(), *args, since]


def _select_in(conn: sqlite3.Connection, select: str, keys: Sequence[str] | Sequence[int]) -> Iterator[Any]:
    """Rows of `select ... IN (?, ...)` for any number of keys, in chunks under SQLite's
    bound-parameter limit."""
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        yield from conn.execute(f"{select} ({','.join('?' * len(chunk))})", chunk)


def intern(conn: sqlite3.Connection, values: set[str], cache: dict[str, int]) -> dict[str, int]:
    """Integer keys of strings, creating the missing ones (inside the writer's transaction)."""
    missing = [v for v in values if v not in cache]
    if missing:
        if len(cache) > 200_000:  # bound memory; keys never change, so dropping them is safe
            cache.clear()
            missing = list(values)
        conn.executemany("INSERT OR IGNORE INTO strings (value) VALUES (?)", ((v,) for v in missing))
        cache.update(_select_in(conn, "SELECT value, key FROM strings WHERE value IN", missing))
    return cache


def write_events(conn: sqlite3.Connection, bucket: str, events: Sequence[NewEvent], cache: dict[str, int]) -> None:
    """Insert a batch in one durable transaction: the whole write path of the store."""
    with transaction(conn):
        row = conn.execute("SELECT gen FROM buckets WHERE bucket_id = ?", (bucket,)).fetchone()
        if row is None:
            gen = conn.execute("INSERT INTO generations (bucket_id) VALUES (?)", (bucket,)).lastrowid
            conn.execute("INSERT INTO buckets VALUES (?, ?)", (bucket, gen))
        else:
            gen = row[0]
        keys = intern(conn, {s for e in events for s in (e.name, e.app, e.server)}, cache)
        rows = [(keys[e.name], keys[e.app], keys[e.server], e.at, e.id, e.data) for e in events]
        # The batch goes in as one JSON parameter expanded by json_each: one statement step for
        # the whole batch, run by SQLite without the GIL, instead of a GIL hand-off per row
        # (executemany), which stalls behind the event loop. OR IGNORE on the (gen, at, id) unique
        # index makes re-sends no-ops; when some row was ignored, the batch is inserted again
        # one row at a time to count only the rows that went in.
        seq = ingest_seq(conn)
        conn.execute("SAVEPOINT bulk")
        if conn.execute(_BULK_INSERT, (seq, gen, msgspec.json.encode(rows).decode())).rowcount == len(rows):
            inserted = rows
        else:
            conn.execute("ROLLBACK TO bulk")  # keeps the bucket's generation if this batch created it
            inserted = [r for i, r in enumerate(rows) if conn.execute(_ROW_INSERT, (seq + i + 1, gen, *r)).rowcount]
        conn.execute("RELEASE bulk")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (seq + len(rows),))
        counts = Counter((r[1], r[0]) for r in inserted)
        conn.executemany(
            "INSERT INTO event_keys VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
            ((gen, app, name, n) for (app, name), n in counts.items()),
        )
        conn.executemany(
            "INSERT INTO event_servers VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
            ((gen, server, n) for server, n in Counter(r[2] for r in inserted).items()),
        )


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection with the store's settings (the load generator's engine side uses it too)."""
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    try:
        # Large pages and a ~40 MB WAL between checkpoints: measured 39k -> 60k events/s for
        # the bulk insert with three indexes (page_size only takes effect on a new database).
        conn.execute("PRAGMA page_size=32768")
        conn.execute("PRAGMA wal_autocheckpoint=1250")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-65536")
    except BaseException:
        conn.close()
        raise
    return conn


def ingest_seq(conn: sqlite3.Connection) -> int:
    """The last ingest position handed out (files from before the sequence: their last rowid)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    if row is not None:
        return int(row[0])
    return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0])


def tail_sql(q: TailQuery, after: int, limit: int) -> tuple[str, list[object]]:
    """Events ingested after position `after`, in ingest order: a rowid range, read forward."""
    cond: list[str] = ["rowid > ?", f"gen = {_GEN}"]
    args: list[object] = [after, q.bucket]
    for column, value in (("name", q.name), ("app", q.app), ("server", q.server)):
        if value is not None:
            cond.append(f"{column} = {_KEY}")
            args.append(value)
    sql = f"SELECT rowid, id, name, app, server, at, data FROM events WHERE {' AND '.join(cond)} ORDER BY rowid LIMIT ?"
    return sql, [*args, limit]


def seq_position(seq: int) -> str:
    """A tail position: zero-padded, so positions compare as strings as they do as numbers."""
    return f"{seq:020d}"


def migrate(conn: sqlite3.Connection) -> None:
    """Create the schema, or bring a file written by an earlier version up to it."""
    had_servers = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'event_servers'").fetchone()
    conn.executescript(SCHEMA)
    if not had_servers:  # files from before event_servers: one pass to fill it
        conn.execute("INSERT INTO event_servers SELECT gen, server, count(*) FROM events GROUP BY gen, server")


def purge_strings(conn: sqlite3.Connection, limit: int = PURGE_CHUNK) -> int:
    """Delete up to `limit` interned strings that no event uses any more; how many went.

    The largest key is always kept, so SQLite never hands a deleted key out again and a key
    cached by a reader keeps meaning what it meant (INTEGER PRIMARY KEY takes max + 1).
    """
    return conn.execute(
        "DELETE FROM strings WHERE key IN (SELECT key FROM strings WHERE key < (SELECT max(key) FROM strings) "
        "AND key NOT IN (SELECT name FROM event_keys) AND key NOT IN (SELECT app FROM event_keys) "
        "AND key NOT IN (SELECT server FROM event_servers) LIMIT ?)",
        (limit,),
    ).rowcount


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
    def from_url(cls, url: str, retention_days: float | None = None) -> SQLiteStore:
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError("sqlite URL needs a path: sqlite:///ABS/PATH.db")
        return cls(Path(path), retention_days=retention_days)

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
                conn.execute(f"UPDATE generations SET dead = 1 WHERE gen = {_GEN}", (bucket,))
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
        values.update(_select_in(conn, "SELECT key, value FROM strings WHERE key IN", missing))
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

    async def stats(self, query: StatsQuery) -> list[int]:
        sql, args = stats_sql(query, self._cutoff())
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [r[0] for r in rows]

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
        sql = f"SELECT app, name FROM event_keys WHERE gen = {_GEN}"
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
            keys = conn.execute(f"SELECT app, name FROM event_keys WHERE gen = {_GEN}", (bucket,)).fetchall()
            servers = conn.execute(f"SELECT server FROM event_servers WHERE gen = {_GEN}", (bucket,)).fetchall()
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
