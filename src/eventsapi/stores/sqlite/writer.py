"""The SQLite store's write path, run on its one writer thread: ingest, scoped deletes, and the
background purges (expired events, deleted generations' strings)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence

import msgspec

from eventsapi.stores.sqlite.schema import ingest_seq, select_in, transaction
from eventsapi.stores.sqlite.sql import scope_where
from eventsapi.values import DeleteScope, NewEvent

PURGE_CHUNK = 20_000
# Rows get explicit rowids from the ingest sequence (meta 'seq'): they only grow, even when the
# newest rows are deleted, so a rowid is a live tail's resumable position.
_BULK_INSERT = (
    "INSERT OR IGNORE INTO events (rowid, gen, name, app, server, at, id, data) SELECT ? + key + 1, ?, "
    "value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM json_each(?)"
)

_ROW_INSERT = (
    "INSERT OR IGNORE INTO events (rowid, gen, name, app, server, at, id, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def intern(conn: sqlite3.Connection, values: set[str], cache: dict[str, int]) -> dict[str, int]:
    """Integer keys of strings, creating the missing ones (inside the writer's transaction)."""
    missing = [v for v in values if v not in cache]
    if missing:
        if len(cache) > 200_000:  # bound memory; keys never change, so dropping them is safe
            cache.clear()
            missing = list(values)
        conn.executemany("INSERT OR IGNORE INTO strings (value) VALUES (?)", ((v,) for v in missing))
        cache.update(select_in(conn, "SELECT value, key FROM strings WHERE value IN", missing))
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
