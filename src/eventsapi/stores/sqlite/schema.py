"""The SQLite file: its schema and migration, connections with the store's settings, the
transaction helper every write uses, and the shared lookups of the interned strings."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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

# A bucket's live generation, and an interned string's key, as SQL sub-selects.
GEN = "(SELECT gen FROM buckets WHERE bucket_id = ?)"

KEY = "(SELECT key FROM strings WHERE value = ?)"


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


def migrate(conn: sqlite3.Connection) -> None:
    """Create the schema, or bring a file written by an earlier version up to it."""
    had_servers = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'event_servers'").fetchone()
    conn.executescript(SCHEMA)
    if not had_servers:  # files from before event_servers: one pass to fill it
        conn.execute("INSERT INTO event_servers SELECT gen, server, count(*) FROM events GROUP BY gen, server")


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


def ingest_seq(conn: sqlite3.Connection) -> int:
    """The last ingest position handed out (files from before the sequence: their last rowid)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    if row is not None:
        return int(row[0])
    return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0])


def select_in(conn: sqlite3.Connection, select: str, keys: Sequence[str] | Sequence[int]) -> Iterator[Any]:
    """Rows of `select ... IN (?, ...)` for any number of keys, in chunks under SQLite's
    bound-parameter limit."""
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        yield from conn.execute(f"{select} ({','.join('?' * len(chunk))})", chunk)
