"""Every Flux text the influxdb2 store can send, checked by libflux (tests/flux/check.mjs):
semantically valid, and hostile values stay string literals that never change the query's shape."""

from __future__ import annotations

import itertools
import typing
from typing import Any

import pytest

from eventsapi.stores import flux
from eventsapi.stores.lineprotocol import encode_tag
from eventsapi.values import EventQuery, ExportQuery, GroupTag, StatsQuery, TailQuery
from eventsapi.windows import Interval
from support import HOSTILE
from support.flux import run_libflux, shape, string_literals

NOW_NS = 1_790_000_000_123_456_789
VALUES = ["plain", *HOSTILE, "${", "|>", "\\${x}", '\\"', "a\\"]
TZS = ["UTC", "Europe/Paris", "Asia/Kolkata", "America/Argentina/Buenos_Aires"]


def all_texts(value: str, store_bucket: str = "events") -> list[str]:
    """Every text the store generates, with `value` in every user-controlled position."""
    texts = []
    for app, server in itertools.product([None, value], [None, value, ""]):
        q = EventQuery("b1", value, app, server)
        texts.append(flux.newest_query(store_bucket, q, NOW_NS, NOW_NS - 3600 * 10**9, 100))
        texts.append(flux.millisecond_query(store_bucket, q, NOW_NS // 10**6))
        texts.append(flux.count_query(store_bucket, q, NOW_NS, NOW_NS - 3600 * 10**9))
        texts.append(flux.nth_query(store_bucket, q, NOW_NS, NOW_NS - 3600 * 10**9, 1000))
        texts.append(flux.millisecond_ids_query(store_bucket, q, NOW_NS // 10**6))
        for interval, tz in itertools.product(typing.get_args(Interval), TZS):
            texts.append(
                flux.stats_query(
                    store_bucket,
                    StatsQuery("b1", value, app, server, [1_789_000_000_000], 1_790_000_000_000, interval, tz),
                )
            )
            for tag in typing.get_args(GroupTag):
                query = StatsQuery("b1", value, app, server, [1_789_000_000_000], 1_790_000_000_000, interval, tz)
                texts.append(flux.stats_groups_query(store_bucket, query, tag))
        texts.append(
            flux.export_query(store_bucket, ExportQuery("b1", value, app, server, 5, 10), NOW_NS - 10**12, NOW_NS, 5000)
        )
    texts.append(flux.tag_values_query(store_bucket, "b1", "app"))
    texts.append(flux.tag_values_query(store_bucket, "b1", "event_name", value))
    texts.append(flux.occupied_query(store_bucket, "b1", NOW_NS // 10**6, NOW_NS // 10**6 + 1))
    texts.append(flux.intents_query(store_bucket, value, NOW_NS))
    texts.append(flux.occupied_query(store_bucket, value, NOW_NS // 10**6, NOW_NS // 10**6 + 1))
    texts.append(flux.retention_query(store_bucket))
    tail = TailQuery("b1", value, value, value)
    texts.append(flux.tail_query(store_bucket, tail, NOW_NS - 10**9, NOW_NS, NOW_NS - 10**9, NOW_NS))
    texts.append(flux.tail_query(store_bucket, tail, NOW_NS - 10**9, NOW_NS, NOW_NS - 10**9, NOW_NS, whole=False))
    texts.append(flux.keys_query(store_bucket, None))
    texts.append(flux.keys_query(store_bucket, "0123456789abcdef"))
    return texts


@pytest.fixture(scope="module")
def checked() -> dict[str, list[dict[str, Any]]]:
    per_value = {v: all_texts(v) for v in VALUES}
    per_value["hostile store bucket"] = all_texts("plain", store_bucket='my "bucket" ${x} |> \\')
    flat = [t for texts in per_value.values() for t in texts]
    results = iter(run_libflux(flat))
    return {v: [{"text": t, **next(results)} for t in texts] for v, texts in per_value.items()}


def test_libflux_rejects_bad_flux() -> None:
    """The checker is not vacuous: a type error and a syntax error are both reported."""
    bad = [
        'from(bucket: "b") |> range(start: -1h) |> aggregateWindow(every: 1m, fn: count, createEmpty: "yes")',
        'from(bucket: "b" |> range(start: -1h)',
        'from(bucket: "b") |> range(start: -1h) |> filter(fn: (r) => r.x == undefinedName)',
    ]
    good = [flux.newest_query("events", EventQuery("b", "e"), NOW_NS, 0, 10)]
    assert [r["valid"] for r in run_libflux(bad + good)] == [False, False, False, True]


def test_every_generated_text_is_valid_flux(checked: dict[str, list[dict[str, Any]]]) -> None:
    invalid = [r["text"] for rs in checked.values() for r in rs if not r["valid"]]
    assert invalid == []
    assert sum(len(rs) for rs in checked.values()) > 1000


@pytest.mark.parametrize("value", VALUES[1:])
def test_hostile_values_stay_literals(checked: dict[str, list[dict[str, Any]]], value: str) -> None:
    for plain, hostile in zip(checked["plain"], checked[value], strict=True):
        assert shape(hostile["ast"]) == shape(plain["ast"]), hostile["text"]
    literals = {s for r in checked[value] for s in string_literals(r["ast"])}
    assert encode_tag(value) in literals


def test_hostile_store_bucket_stays_literal(checked: dict[str, list[dict[str, Any]]]) -> None:
    for plain, hostile in zip(checked["plain"], checked["hostile store bucket"], strict=True):
        assert shape(hostile["ast"]) == shape(plain["ast"])


def test_flux_string_escapes() -> None:
    assert flux.flux_string('a"b') == '"a\\"b"'
    assert flux.flux_string("a\\b") == '"a\\\\b"'
    assert flux.flux_string("${x}") == '"\\${x}"'
    assert flux.flux_string("$x {") == '"$x {"'
    assert flux.flux_time(1_500_000_000_123_456_789) == "2017-07-14T02:40:00.123456789Z"


def test_stats_query_uses_native_window_aggregate() -> None:
    day = 86_400_000
    text = flux.stats_query("events", StatsQuery("b", "e", None, None, [23 * 3_600_000, day + 22 * 3_600_000],
                                                 2 * day + 22 * 3_600_000, "day", "Europe/Paris"))  # fmt: skip
    assert 'aggregateWindow(every: 3600000ms, fn: count, createEmpty: true, timeSrc: "_start")' in text


def test_delete_predicate() -> None:
    assert flux.delete_predicate("b-1.x_y") == '_measurement="events" AND bucket_id="b-1.x_y"'
