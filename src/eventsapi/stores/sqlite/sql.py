"""SQL text for the SQLite store's reads and scoped deletes: pure functions returning (query,
arguments). User values are always bound parameters; only index names and sub-selects we wrote
are part of the text."""

from __future__ import annotations

import msgspec

from eventsapi.stores.sqlite.schema import GEN, KEY
from eventsapi.values import DeleteScope, EventQuery, ExportPosition, ExportQuery, GroupTag, StatsQuery, TailQuery


def series_where(bucket: str, name: str, app: str | None, server: str | None) -> tuple[str, list[object], str]:
    """Conditions on the interned columns, their arguments, and the index that serves them."""
    cond = [f"gen = {GEN}", f"name = {KEY}"]
    args: list[object] = [bucket, name]
    if app is not None:
        cond.append(f"app = {KEY}")
        args.append(app)
    if server is not None:
        cond.append(f"server = {KEY}")
        args.append(server)
    return " AND ".join(cond), args, "events_by_app" if app is not None else "events_by_name"


def retrieve_sql(q: EventQuery) -> tuple[str, list[object]]:
    """The newest-first page: an index range walked backwards. Rows of one millisecond are
    ordered by id in a small sort (SQLite's "right part of ORDER BY"), never the history."""
    where, args, index = series_where(q.bucket, q.name, q.app, q.server)
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
    cond: list[str] = [f"gen = {GEN}"]
    args: list[object] = [scope.bucket]
    for column, value in (("name", scope.name), ("app", scope.app), ("server", scope.server)):
        if value is not None:
            cond.append(f"{column} = {KEY}")
            args.append(value)
    if scope.start is not None:
        cond.append("at >= ?")
        args.append(scope.start)
    if scope.end is not None:
        cond.append("at < ?")
        args.append(scope.end)
    return " AND ".join(cond), args


def stats_sql(q: StatsQuery, since: int = 0) -> tuple[str, list[object]]:
    """One index-range count per window; the windows come in as a JSON array of [start, end).
    Events before `since` (the retention's cutoff) are not counted."""
    where, args, index = series_where(q.bucket, q.name, q.app, q.server)
    # The bounds go in as one flat array, encoded in C, and each window's end is the next
    # bound (lead): building 2,880 [start, end] pairs in Python took most of a stats call.
    sql = (
        "WITH w AS (SELECT key, value AS lo, lead(value) OVER (ORDER BY key) AS hi FROM json_each(?)) "
        f"SELECT (SELECT count(*) FROM events INDEXED BY {index} WHERE {where} "
        "AND at >= max(w.lo, ?) AND at < w.hi) FROM w WHERE w.hi IS NOT NULL ORDER BY w.key"
    )
    return sql, [msgspec.json.encode([*q.starts, q.end]).decode(), *args, since]


def stats_groups_sql(q: StatsQuery, column: GroupTag, grain: int, since: int = 0) -> tuple[str, list[object]]:
    """The histogram's events counted per (interned `column` value, `grain`-ms window), only
    non-empty ones: one pass over the range's index entries, grouped by SQLite. Grouped by
    app without an app filter, the app index serves it with the name's apps as an IN list, so
    no row is read (events_by_name holds no app)."""
    where, args, index = series_where(q.bucket, q.name, q.app, q.server)
    if column == "app" and q.app is None:
        where += f" AND app IN (SELECT app FROM event_keys WHERE gen = {GEN} AND name = {KEY})"
        args += [q.bucket, q.name]
        index = "events_by_app"
    sql = (
        f"SELECT {column}, at - at % ?, count(*) FROM events INDEXED BY {index} "
        f"WHERE {where} AND at >= max(?, ?) AND at < ? GROUP BY 1, 2"
    )
    return sql, [grain, *args, q.starts[0], since, q.end]


def export_sql(q: ExportQuery, after: ExportPosition | None, limit: int, since: int = 0) -> tuple[str, list[object]]:
    """A page of the bucket oldest first: the unique (gen, at, id) index walked forward from
    `after`; the filters are checked on the rows it passes."""
    cond = [f"gen = {GEN}", "at >= ?"]
    args: list[object] = [q.bucket, max(since, q.start or 0)]
    if after is not None:
        cond.append("(at, id) > (?, ?)")
        args.extend(after)
    if q.end is not None:
        cond.append("at < ?")
        args.append(q.end)
    for column, value in (("name", q.name), ("app", q.app), ("server", q.server)):
        if value is not None:
            cond.append(f"{column} = {KEY}")
            args.append(value)
    sql = (
        "SELECT id, name, app, server, at, data FROM events INDEXED BY events_by_at_id "
        f"WHERE {' AND '.join(cond)} ORDER BY at, id LIMIT ?"
    )
    return sql, [*args, limit]


def tail_sql(q: TailQuery, after: int, limit: int) -> tuple[str, list[object]]:
    """Events ingested after position `after`, in ingest order: a rowid range, read forward."""
    cond: list[str] = ["rowid > ?", f"gen = {GEN}"]
    args: list[object] = [after, q.bucket]
    for column, value in (("name", q.name), ("app", q.app), ("server", q.server)):
        if value is not None:
            cond.append(f"{column} = {KEY}")
            args.append(value)
    sql = f"SELECT rowid, id, name, app, server, at, data FROM events WHERE {' AND '.join(cond)} ORDER BY rowid LIMIT ?"
    return sql, [*args, limit]


def seq_position(seq: int) -> str:
    """A tail position: zero-padded, so positions compare as strings as they do as numbers."""
    return f"{seq:020d}"
