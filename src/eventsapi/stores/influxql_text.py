"""InfluxQL text for every route: pure functions returning (query, bind parameters).

User text never enters the query text: every tag value travels as a bind parameter
(`$name`, sent in the `params` form field of /query), already in its stored encoding.
Only integers we computed (nanosecond times, limits, window lengths) are written into the text.
"""

from __future__ import annotations

from eventsapi.stores.lineprotocol import INTENTS_MEASUREMENT, KEY_FIELDS, KEYS_MEASUREMENT, MEASUREMENT, encode_tag
from eventsapi.values import DeleteScope, EventQuery, ExportQuery, GroupTag, StatsQuery, TailQuery
from eventsapi.windows import engine_step

Params = dict[str, str]

_COLUMNS = '"data", "id", "app", "server", "event_name"'


def quote_string(value: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _filters(bucket: str, name: str | None, app: str | None, server: str | None) -> tuple[str, Params]:
    cond = ['"bucket_id" = $bucket']
    params: Params = {"bucket": encode_tag(bucket)}
    for tag, param, value in (
        ("event_name", "name", name),
        ("app", "app", app),
        ("server", "server", server),
    ):
        if value is not None:
            cond.append(f'"{tag}" = ${param}')
            params[param] = encode_tag(value)
    return " AND ".join(cond), params


def _range(q: EventQuery, upper_ns: int, lower_ns: int) -> tuple[str, Params]:
    where, params = _filters(q.bucket, q.name, q.app, q.server)
    return f'FROM "{MEASUREMENT}" WHERE {where} AND time >= {int(lower_ns)} AND time < {int(upper_ns)}', params


def newest_query(q: EventQuery, upper_ns: int, lower_ns: int, limit: int) -> tuple[str, Params]:
    """Up to `limit` whole rows of [lower, upper), newest first."""
    source, params = _range(q, upper_ns, lower_ns)
    return f"SELECT {_COLUMNS} {source} ORDER BY time DESC LIMIT {int(limit)}", params


def millisecond_query(q: EventQuery, ms: int) -> tuple[str, Params]:
    source, params = _range(q, (int(ms) + 1) * 1_000_000, int(ms) * 1_000_000)
    return f"SELECT {_COLUMNS} {source}", params


def tail_query(q: TailQuery, lower_ns: int, since_ns: int, until_ns: int, whole: bool = True) -> tuple[str, Params]:
    """Points stamped from `lower_ns` on and written (`ingested`) in [since, until]; with
    `whole=False` only their ids and `ingested` (what influxtail.narrow needs)."""
    where, params = _filters(q.bucket, q.name, q.app, q.server)
    columns = f"{_COLUMNS}, " if whole else '"id", '
    text = (
        f'SELECT {columns}"ingested" FROM "{MEASUREMENT}" WHERE {where} AND time >= {int(lower_ns)} '
        f'AND "ingested" >= {int(since_ns)} AND "ingested" <= {int(until_ns)}'
    )
    return text, params


def export_query(q: ExportQuery, lower_ns: int, upper_ns: int, limit: int) -> tuple[str, Params]:
    """The oldest `limit` whole rows in [lower, upper) across the filter's series, in time
    order: point times are unique in a bucket (placement.py), so the time is an exact keyset."""
    where, params = _filters(q.bucket, q.name, q.app, q.server)
    text = (
        f'SELECT {_COLUMNS} FROM "{MEASUREMENT}" WHERE {where} AND time >= {int(lower_ns)} AND time < {int(upper_ns)} '
        f"ORDER BY time ASC LIMIT {int(limit)}"
    )
    return text, params


def size_query(bucket: str) -> tuple[str, Params]:
    where, params = _filters(bucket, None, None, None)
    return f'SELECT count("id") FROM "{MEASUREMENT}" WHERE {where}', params


def count_query(q: EventQuery, upper_ns: int, lower_ns: int) -> tuple[str, Params]:
    source, params = _range(q, upper_ns, lower_ns)
    return f'SELECT count("id") {source}', params


def nth_query(q: EventQuery, upper_ns: int, lower_ns: int, k: int) -> tuple[str, Params]:
    """The k-th row of [lower, upper) newest first, id only: the engine skips, no payloads."""
    source, params = _range(q, upper_ns, lower_ns)
    return f'SELECT "id" {source} ORDER BY time DESC LIMIT 1 OFFSET {int(k)}', params


def millisecond_ids_query(q: EventQuery, ms: int) -> tuple[str, Params]:
    source, params = _range(q, (int(ms) + 1) * 1_000_000, int(ms) * 1_000_000)
    return f'SELECT "id" {source}', params


def occupied_query(bucket: str, lo_ms: int, hi_ms: int) -> tuple[str, Params]:
    """Which points of the bucket exist in [lo_ms, hi_ms): time and id only (placement.py
    needs no tags, and selecting them costs the engine more CPU)."""
    where, params = _filters(bucket, None, None, None)
    q = (
        f'SELECT "id" FROM "{MEASUREMENT}" WHERE {where} '
        f"AND time >= {int(lo_ms) * 1_000_000} AND time < {int(hi_ms) * 1_000_000}"
    )
    return q, params


def intents_query(bucket: str, after_ns: int, param: str = "bucket") -> tuple[str, Params]:
    """The bucket's intents (occupancy.py) recorded after `after_ns`; the bucket bound as
    `$param` (several such statements share one request, each its own name)."""
    if not param.isidentifier():
        raise ValueError(f"not a parameter name: {param!r}")
    return (
        f'SELECT "m" FROM "{INTENTS_MEASUREMENT}" WHERE "bucket_id" = ${param} AND time > {int(after_ns)}',
        {param: encode_tag(bucket)},
    )


def stats_query(q: StatsQuery, tag: GroupTag | None = None) -> tuple[str, Params]:
    """Counts per windows.engine_step window; with `tag`, one series per value of that tag, and
    only the non-empty windows (fill(none): a breakdown is sparse)."""
    where, params = _filters(q.bucket, q.name, q.app, q.server)
    group = f"GROUP BY time({engine_step(q.starts, q.end, q.interval)}ms)"
    text = (
        f'SELECT count("id") FROM "{MEASUREMENT}" WHERE {where} '
        f"AND time >= {int(q.starts[0]) * 1_000_000} AND time < {int(q.end) * 1_000_000} "
        + (f"{group} fill(0)" if tag is None else f'{group}, "{tag}" fill(none)')
    )
    return text, params


def series_query(bucket: str) -> tuple[str, Params]:
    """Series keys of the bucket, from the series index (no points are read)."""
    where, params = _filters(bucket, None, None, None)
    return f'SHOW SERIES FROM "{MEASUREMENT}" WHERE {where}', params


def tag_values_query(bucket: str, key: str, app: str | None = None) -> tuple[str, Params]:
    """InfluxDB 3 has no SHOW SERIES: apps, then names per app, from SHOW TAG VALUES."""
    where, params = _filters(bucket, None, app, None)
    return f'SHOW TAG VALUES FROM "{MEASUREMENT}" WITH KEY = "{key}" WHERE {where}', params


def buckets_query() -> tuple[str, Params]:
    return f'SHOW TAG VALUES FROM "{MEASUREMENT}" WITH KEY = "bucket_id"', {}


def tag_sets_query(bucket: str) -> tuple[str, Params]:
    """Every event name, app and server of the bucket, from the series index."""
    where, params = _filters(bucket, None, None, None)
    return f'SHOW TAG VALUES FROM "{MEASUREMENT}" WITH KEY IN ("event_name", "app", "server") WHERE {where}', params


def delete_query(scope: DeleteScope) -> tuple[str, Params]:
    """The points of a scoped delete (tag values as bind parameters, times as integers)."""
    where, params = _filters(scope.bucket, scope.name, scope.app, scope.server)
    if scope.start is not None:
        where += f" AND time >= {int(scope.start) * 1_000_000}"
    if scope.end is not None:
        where += f" AND time < {int(scope.end) * 1_000_000}"
    return f'DELETE FROM "{MEASUREMENT}" WHERE {where}', params


def drop_query(bucket: str) -> tuple[str, Params]:
    where, params = _filters(bucket, None, None, None)
    return f'DROP SERIES FROM "{MEASUREMENT}" WHERE {where}', params


def keys_query(key_id: str | None) -> tuple[str, Params]:
    """Each key's last value of every field (stores/influxkeys.py), one series per key."""
    columns = ", ".join(f'last("{f}") AS "{f}"' for f in KEY_FIELDS)
    where, params = ("", {}) if key_id is None else (' WHERE "key_id" = $key_id', {"key_id": key_id})
    return f'SELECT {columns} FROM "{KEYS_MEASUREMENT}"{where} GROUP BY "key_id"', params
