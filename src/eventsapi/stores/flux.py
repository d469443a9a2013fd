"""Flux text for every route of the influxdb2 store: pure functions.

User text reaches Flux only as string literals escaped by Flux's rules (backslash, double
quote, `${`, and the control escapes), already in its stored tag encoding
(lineprotocol.encode_tag). Times are written as RFC 3339 literals built from integers.
The tests run every text through libflux (tests/flux) and check that values stay literals.
"""

from __future__ import annotations

from datetime import UTC, datetime

from eventsapi.stores.lineprotocol import INTENTS_MEASUREMENT, KEYS_MEASUREMENT, MEASUREMENT, encode_tag
from eventsapi.values import EventQuery, ExportQuery, GroupTag, StatsQuery, TailQuery
from eventsapi.windows import engine_step

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def flux_string(value: str) -> str:
    """A Flux string literal holding exactly `value`."""
    out = "".join(_ESCAPES.get(ch, ch) for ch in value)
    return '"' + out.replace("${", "\\${") + '"'


def flux_time(ns: int) -> str:
    """An RFC 3339 time literal with nanoseconds, from integer epoch ns."""
    secs, frac = divmod(int(ns), 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _predicate(bucket: str, name: str | None, app: str | None, server: str | None) -> str:
    cond = [
        f"r._measurement == {flux_string(MEASUREMENT)}",
        f"r.bucket_id == {flux_string(encode_tag(bucket))}",
    ]
    for tag, value in (("event_name", name), ("app", app), ("server", server)):
        if value is not None:
            cond.append(f"r.{tag} == {flux_string(encode_tag(value))}")
    return " and ".join(cond)


def _head(store_bucket: str, start_ns: int, stop_ns: int | None = None) -> str:
    """Where every query starts: the store's bucket over [start, stop) (stop: now)."""
    stop = f", stop: {flux_time(stop_ns)}" if stop_ns is not None else ""
    return f"from(bucket: {flux_string(store_bucket)})\n  |> range(start: {flux_time(start_ns)}{stop})\n"


def _source(store_bucket: str, q: EventQuery, upper_ns: int, lower_ns: int, fields: str) -> str:
    """The rows of one retrieve filter in [lower, upper), one table: `fields` picks what is read."""
    return (
        _head(store_bucket, lower_ns, upper_ns)
        + f"  |> filter(fn: (r) => {_predicate(q.bucket, q.name, q.app, q.server)})\n"
        f"  |> filter(fn: (r) => {fields})\n"
    )


_WHOLE = 'r._field == "data" or r._field == "id"'
_IDS = 'r._field == "id"'
_PIVOT = '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n  |> group()\n'
_KEEP = '  |> keep(columns: ["_time", "data", "id", "app", "server", "event_name"])\n'


def newest_query(store_bucket: str, q: EventQuery, upper_ns: int, lower_ns: int, limit: int) -> str:
    """Up to `limit` newest whole rows in [lower, upper). The caller bounds the range
    (paging.py): OSS 2.x does not push sort/limit down to storage, so the sort only sees that
    window."""
    return (
        _source(store_bucket, q, upper_ns, lower_ns, _WHOLE)
        + _PIVOT
        + '  |> sort(columns: ["_time"], desc: true)\n'
        + f"  |> limit(n: {int(limit)})\n"
        + _KEEP
    )


def millisecond_query(store_bucket: str, q: EventQuery, ms: int) -> str:
    lo = int(ms) * 1_000_000
    return _source(store_bucket, q, lo + 1_000_000, lo, _WHOLE) + _PIVOT + _KEEP


def tail_query(
    store_bucket: str, q: TailQuery, lower_ns: int, upper_ns: int, since_ns: int, until_ns: int, whole: bool = True
) -> str:
    """Points stamped in [lower, upper) and written (`ingested`) in [since, until], whole; with
    `whole=False` only their ids and `ingested` (what influxtail.narrow needs)."""
    pred = _predicate(q.bucket, q.name, q.app, q.server)
    fields = '"data" or r._field == "id"' if whole else '"id"'
    columns = '"_time", "data", "id", "app", "server", "event_name", "ingested"' if whole else '"id", "ingested"'
    return (
        _head(store_bucket, lower_ns, upper_ns)
        + f"  |> filter(fn: (r) => {pred})\n"
        + f'  |> filter(fn: (r) => r._field == {fields} or r._field == "ingested")\n'
        + _PIVOT
        + f"  |> filter(fn: (r) => r.ingested >= {int(since_ns)} and r.ingested <= {int(until_ns)})\n"
        + f"  |> keep(columns: [{columns}])\n"
    )


def export_query(store_bucket: str, q: ExportQuery, lower_ns: int, upper_ns: int, limit: int) -> str:
    """The oldest `limit` whole rows in [lower, upper), with their time as integer ns. The
    caller keeps the range short (InfluxDB2Store._export_rows): the sort only sees it."""
    return (
        _head(store_bucket, lower_ns, upper_ns)
        + f"  |> filter(fn: (r) => {_predicate(q.bucket, q.name, q.app, q.server)})\n"
        + f"  |> filter(fn: (r) => {_WHOLE})\n"
        + _PIVOT
        + '  |> sort(columns: ["_time"])\n'
        + f"  |> limit(n: {int(limit)})\n"
        + "  |> map(fn: (r) => ({r with ns: int(v: r._time)}))\n"
        + '  |> keep(columns: ["_time", "ns", "data", "id", "app", "server", "event_name"])\n'
    )


def count_query(store_bucket: str, q: EventQuery, upper_ns: int, lower_ns: int) -> str:
    return _source(store_bucket, q, upper_ns, lower_ns, _IDS) + "  |> group()\n  |> count()\n"


def nth_query(store_bucket: str, q: EventQuery, upper_ns: int, lower_ns: int, k: int) -> str:
    """The k-th row of [lower, upper) newest first, its time as integer ns; ids only."""
    return (
        _source(store_bucket, q, upper_ns, lower_ns, _IDS)
        + "  |> group()\n"
        + '  |> sort(columns: ["_time"], desc: true)\n'
        + f"  |> limit(n: 1, offset: {int(k)})\n"
        + _NS
    )


def millisecond_ids_query(store_bucket: str, q: EventQuery, ms: int) -> str:
    lo = int(ms) * 1_000_000
    return _source(store_bucket, q, lo + 1_000_000, lo, _IDS) + '  |> keep(columns: ["_value"])\n'


# Nanoseconds as an integer column: the client parses _time into datetimes, which hold µs.
_NS = '  |> map(fn: (r) => ({r with ns: int(v: r._time)}))\n  |> keep(columns: ["ns", "_value"])\n'


def occupied_query(store_bucket: str, bucket: str, lo_ms: int, hi_ms: int) -> str:
    """Which points of the bucket exist in [lo_ms, hi_ms): time (ns) and id only."""
    return (
        _head(store_bucket, int(lo_ms) * 1_000_000, int(hi_ms) * 1_000_000)
        + f'  |> filter(fn: (r) => {_predicate(bucket, None, None, None)} and r._field == "id")\n'
        f"{_NS}"
    )


def intents_query(store_bucket: str, bucket: str, after_ns: int) -> str:
    """The bucket's intents (occupancy.py) recorded after `after_ns`: time (ns) and text."""
    return (
        _head(store_bucket, int(after_ns) + 1)
        + f"  |> filter(fn: (r) => r._measurement == {flux_string(INTENTS_MEASUREMENT)} and "
        f'r.bucket_id == {flux_string(encode_tag(bucket))} and r._field == "m")\n'
        f"{_NS}"
    )


def stats_query(store_bucket: str, q: StatsQuery) -> str:
    """Counts per window of windows.engine_step (UTC), labelled by their start: the store adds
    them up into the windows of `q`, aligned in its zone."""
    return (
        _head(store_bucket, q.starts[0] * 1_000_000, q.end * 1_000_000)
        + f'  |> filter(fn: (r) => {_predicate(q.bucket, q.name, q.app, q.server)} and r._field == "id")\n'
        "  |> group()\n"
        f"  |> aggregateWindow(every: {engine_step(q.starts, q.end, q.interval)}ms, fn: count, createEmpty: true, "
        'timeSrc: "_start")\n'
        '  |> keep(columns: ["_time", "_value"])\n'
    )


def stats_groups_query(store_bucket: str, q: StatsQuery, tag: GroupTag) -> str:
    """Counts per value of `tag` and per windows.engine_step window, only the non-empty ones."""
    return (
        _head(store_bucket, q.starts[0] * 1_000_000, q.end * 1_000_000)
        + f'  |> filter(fn: (r) => {_predicate(q.bucket, q.name, q.app, q.server)} and r._field == "id")\n'
        f"  |> group(columns: [{flux_string(tag)}])\n"
        f"  |> aggregateWindow(every: {engine_step(q.starts, q.end, q.interval)}ms, fn: count, createEmpty: false, "
        'timeSrc: "_start")\n'
        f'  |> keep(columns: ["_time", "_value", {flux_string(tag)}])\n'
    )


def tag_values_query(store_bucket: str, bucket: str, tag: str, app: str | None = None) -> str:
    """Values of one tag from the series index; `start` is set because the default is -30d."""
    return (
        'import "influxdata/influxdb/schema"\n'
        f"schema.tagValues(bucket: {flux_string(store_bucket)}, tag: {flux_string(tag)}, "
        f"predicate: (r) => {_predicate(bucket, None, app, None)}, start: 1970-01-01T00:00:00Z)\n"
    )


def buckets_query(store_bucket: str) -> str:
    """Every bucket id the store bucket holds events for, from the series index."""
    return (
        'import "influxdata/influxdb/schema"\n'
        f'schema.tagValues(bucket: {flux_string(store_bucket)}, tag: "bucket_id", '
        f"predicate: (r) => r._measurement == {flux_string(MEASUREMENT)}, start: 1970-01-01T00:00:00Z)\n"
    )


def retention_query(store_bucket: str) -> str:
    """The store bucket's retention period in ns (0: for ever)."""
    return (
        "buckets()\n"
        f"  |> filter(fn: (r) => r.name == {flux_string(store_bucket)})\n"
        '  |> keep(columns: ["retentionPeriod"])\n'
    )


def delete_predicate(bucket: str, name: str | None = None, app: str | None = None, server: str | None = None) -> str:
    """The delete API's predicate (its own small grammar: an AND of tag="value")."""

    def quoted(value: str) -> str:
        return '"' + encode_tag(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    parts = [f'_measurement="{MEASUREMENT}"', f"bucket_id={quoted(bucket)}"]
    parts += [
        f"{tag}={quoted(v)}" for tag, v in (("event_name", name), ("app", app), ("server", server)) if v is not None
    ]
    return " AND ".join(parts)


def keys_query(store_bucket: str, key_id: str | None) -> str:
    """Each key's last value of every field (stores/influxkeys.py): rows of key_id, _field, _value."""
    pred = f"r._measurement == {flux_string(KEYS_MEASUREMENT)}"
    if key_id is not None:
        pred += f" and r.key_id == {flux_string(key_id)}"
    return (
        f"from(bucket: {flux_string(store_bucket)})\n"
        "  |> range(start: 1970-01-01T00:00:00Z)\n"
        f"  |> filter(fn: (r) => {pred})\n"
        "  |> last()\n"
        '  |> keep(columns: ["key_id", "_field", "_value"])\n'
    )
