"""The embedded SQLite store: single file, WAL, one writer thread, a pool of reader threads.

Modules: `schema` (the file, connections, transactions), `sql` (read and delete SQL, pure),
`writer` (the write path and purges, on the writer thread), `store` (SQLiteStore).

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

from eventsapi.stores.sqlite.schema import SCHEMA, connect, migrate
from eventsapi.stores.sqlite.sql import retrieve_sql, stats_groups_sql, stats_sql
from eventsapi.stores.sqlite.store import SQLiteStore
from eventsapi.stores.sqlite.writer import write_events

__all__ = [
    "SCHEMA",
    "SQLiteStore",
    "connect",
    "migrate",
    "retrieve_sql",
    "stats_groups_sql",
    "stats_sql",
    "write_events",
]
