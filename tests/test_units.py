"""Pure functions: windows, cursors, tag encoding and line protocol, query-text builders."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import msgspec
import pytest

from eventsapi import cardinality
from eventsapi.cursor import BadCursor, decode_cursor, encode_cursor
from eventsapi.ingest_rules import parse_ingest
from eventsapi.stores import influxql_text as ql
from eventsapi.stores.lineprotocol import (
    SeriesHeads,
    decode_tag,
    encode_tag,
    escape_field_strings,
    escape_tag,
    parse_series_key,
    render_lines,
)
from eventsapi.stores.occupancy import CHUNK_MS, READ_RANGES, READ_SPAN, chunk_ranges, read_groups
from eventsapi.stores.placement import Ledger, OccupiedPoint, Slots, first_slot, place
from eventsapi.stores.sqlite import SCHEMA, SQLiteStore, retrieve_sql, stats_sql
from eventsapi.values import EventQuery, NewEvent, StatsQuery
from eventsapi.windows import TooManyWindows, window_start, window_starts
from support import HOSTILE


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, tz: str = "UTC") -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


# -- windows ------------------------------------------------------------------------------------


def test_day_windows_across_spring_forward_and_fall_back() -> None:
    paris = ZoneInfo("Europe/Paris")
    now = ms(2026, 11, 1, 12, tz="Europe/Paris")
    starts, end = window_starts(now, 250, "day", paris)
    assert all(datetime.fromtimestamp(s / 1000, paris).hour == 0 for s in starts)
    lengths = [b - a for a, b in zip(starts, [*starts[1:], end], strict=True)]
    assert lengths.count(23 * 3_600_000) == 1 and lengths.count(25 * 3_600_000) == 1
    assert starts[-1] == ms(2026, 11, 1, tz="Europe/Paris") and end == ms(2026, 11, 2, tz="Europe/Paris")


def test_hour_windows_in_fall_back_hour_are_distinct() -> None:
    ny = ZoneInfo("America/New_York")
    now = ms(2026, 11, 1, 12, tz="UTC")
    starts, _ = window_starts(now, 1, "hour", ny)
    assert len(set(starts)) == len(starts) == 25  # the repeated 01:00 hour is its own window
    assert all(b - a == 3_600_000 for a, b in itertools.pairwise(starts))


def test_engine_step_divides_every_window() -> None:
    from eventsapi.windows import Interval, engine_step

    now = ms(2026, 11, 1, 12, tz="UTC")
    cases: list[tuple[str, Interval, int]] = [
        ("UTC", "day", 86_400_000), ("Europe/Paris", "day", 3_600_000), ("America/New_York", "hour", 3_600_000),
        ("Asia/Kolkata", "hour", 1_800_000), ("Pacific/Chatham", "hour", 900_000), ("Pacific/Chatham", "day", 900_000),
        ("Australia/Lord_Howe", "hour", 1_800_000), ("Europe/Paris", "minute", 60_000),
    ]  # fmt: skip
    for zone, interval, step in cases:
        starts, end = window_starts(now, 300 if interval != "minute" else 1, interval, ZoneInfo(zone))
        assert engine_step(starts, end, interval) == step, zone
        assert all(s % step == 0 for s in starts) and end % step == 0


def test_minute_windows_count_and_limit() -> None:
    now = ms(2026, 1, 1, 0, 0) + 30_000
    starts, end = window_starts(now, 2, "minute", ZoneInfo("UTC"))
    assert len(starts) == 2881 and starts[-1] == ms(2026, 1, 1) and end == starts[-1] + 60_000
    with pytest.raises(TooManyWindows):
        window_starts(now, 70, "minute", ZoneInfo("UTC"))


def test_window_start_half_hour_zone_and_nonexistent_midnight() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    t = ms(2026, 5, 5, 10, 10, tz="UTC")
    assert window_start(t, "hour", kolkata) == ms(2026, 5, 5, 9, 30, tz="UTC")
    # America/Santiago skips from 00:00 to 01:00 on 2026-09-06: that day starts at 01:00.
    santiago = ZoneInfo("America/Santiago")
    t = ms(2026, 9, 6, 12, tz="America/Santiago")
    start = window_start(t, "day", santiago)
    assert start <= t and datetime.fromtimestamp(start / 1000, santiago).day == 6


# -- cursors --------------------------------------------------------------------------------------


def test_cursor_round_trip_and_rejects_garbage() -> None:
    for at, eid in [(0, "a"), (1_700_000_000_000, 'we"ird,id ${x}'), (5, "ü")]:
        assert decode_cursor(encode_cursor(at, eid)) == (at, eid)
    import base64

    def crafted(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode()

    for bad in [
        "",
        "!!!",
        encode_cursor(1, "x")[:-3],
        "WzEsMl0",
        crafted(b'[1000000000000000000000000000000, "x"]'),
        crafted(b'[9223372036854775808, "x"]'),
        crafted(b'[-1, "x"]'),
        crafted(b"[" * 50_000 + b"]" * 50_000),
        crafted(b'[1, "' + b"i" * 129 + b'"]'),
        "A" * 5000,
    ]:
        with pytest.raises(BadCursor):
            decode_cursor(bad)


# -- tag encoding and line protocol ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["", *HOSTILE, "%5C", "%25", "\\%", "a\\,b", "=", " ", ","])
def test_tag_encoding_round_trips_and_has_no_backslash(value: str) -> None:
    enc = encode_tag(value)
    assert "\\" not in enc and enc != ""
    assert decode_tag(enc) == value


def test_tag_encoding_is_injective() -> None:
    values = ["", "%", "%25", "\\", "%5C", "%%", "\\\\", "%5C%25"]
    assert len({encode_tag(v) for v in values}) == len(values)


def test_line_protocol_and_series_key_parse() -> None:
    e = NewEvent('id "1"', "a,b=c d", "app\\", "", 1_000, '{"k":"v\\"\\\\"}')
    (line,) = render_lines("b1", [(e, 1_000_000_123)])
    assert line.startswith("events,app=app%5C,bucket_id=b1,event_name=a\\,b\\=c\\ d,server=% ")
    assert ' data="{\\"k\\":\\"v\\\\\\"\\\\\\\\\\"}",id="id \\"1\\""' in line
    key = "events," + line.split(" data=")[0].split("events,", 1)[1]
    assert parse_series_key(key) == {"app": "app\\", "bucket_id": "b1", "event_name": "a,b=c d", "server": ""}
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_field_strings(['x"\\', "", "\\\\"]) == ['x\\"\\\\', "", "\\\\\\\\"]
    # A value holding the separator the batch escape uses falls back to one escape per value.
    assert escape_field_strings(['a\x00"', "b"]) == ['a\x00\\"', "b"]


def test_series_heads_are_kept_per_bucket_and_bounded() -> None:
    heads = SeriesHeads(size=3)
    a, b = NewEvent("1", "n", "x", "", 5, "{}"), NewEvent("2", "m", "y", "s", 5, "{}")
    one = render_lines("b1", [(a, 5_000_001), (b, 5_000_002)], 7, heads)
    # Another bucket after b1's heads were kept: its lines carry its own bucket id.
    two = render_lines("b 2", [(a, 5_000_001)], 7, heads)
    assert one == render_lines("b1", [(a, 5_000_001), (b, 5_000_002)], 7)
    assert two[0].startswith("events,app=x,bucket_id=b\\ 2,event_name=n,server=% ")
    assert list(heads.of("b1")) == [("n", "x", ""), ("m", "y", "s")]
    # A fourth head: past the bound, it starts over with that one.
    again = render_lines("b1", [(NewEvent("3", "o", "z", "", 5, "{}"), 3)], 7, heads)
    assert again[0].startswith("events,app=z,bucket_id=b1,event_name=o,server=% ")
    assert list(heads.of("b1")) == [("o", "z", "")] and heads.of("b 2") == {}


def point_times(events: list[NewEvent], occupied: list[OccupiedPoint] | tuple[()] = ()) -> list[int]:
    return [t for _, t in place(events, Slots(occupied))]


def test_placement_gives_every_event_its_own_point() -> None:
    burst = [NewEvent(f"id{i}", "n", "a", "s", 5, "{}") for i in range(5000)]
    times = point_times(burst)
    assert len(set(times)) == 5000
    assert all(5_000_000 <= t < 6_000_000 for t in times)
    # evt-86 and evt-1291 share a first slot: the second probes past the first's point.
    a, b = NewEvent("evt-86", "n", "a", "s", 5, "{}"), NewEvent("evt-1291", "n", "a", "s", 5, "{}")
    assert first_slot(a.id) == first_slot(b.id)
    (ta,) = point_times([a])
    (tb,) = point_times([b], [(ta, "evt-86")])
    assert tb == ta + 1
    # The occupancy read carries no tags, so a time is taken whatever the series holding it.
    other = NewEvent("evt-1291", "other-name", "other-app", "s", 5, "{}")
    assert point_times([other], [(ta, "evt-86")]) == [ta + 1]


def test_placement_matches_a_plain_probing_oracle() -> None:
    import random

    def oracle(events: list[NewEvent], occupied: list[OccupiedPoint]) -> list[tuple[NewEvent, int]]:
        taken = {t for t, _ in occupied}
        stored = {(t // 1_000_000, i) for t, i in occupied}
        out = []
        for e in events:
            if (e.at, e.id) in stored:
                continue
            stored.add((e.at, e.id))
            s = first_slot(e.id)
            while e.at * 1_000_000 + s in taken:
                s = (s + 1) % 1_000_000
            taken.add(e.at * 1_000_000 + s)
            out.append((e, e.at * 1_000_000 + s))
        return out

    rnd = random.Random(7)
    for _ in range(300):
        # Few ids, milliseconds and series, so that re-sends, shared first slots and taken
        # points all occur; some batches have none of them.
        n = rnd.randrange(1, 40)
        ids = [f"evt-{rnd.choice([86, 1291, rnd.randrange(10**6)])}" for _ in range(n)]
        events = [NewEvent(i, rnd.choice("nm"), "a", "s", rnd.choice([5, 6, rnd.randrange(10**4)]), "{}") for i in ids]
        stored = [(e.at * 1_000_000 + first_slot(e.id), e.id) for e in events if rnd.random() < 0.1]
        occupied = [(rnd.choice([5_000_000 + first_slot("evt-86"), 7]), "other")] if rnd.random() < 0.2 else []
        assert place(events, Slots(stored + occupied)) == oracle(events, stored + occupied)


def test_placement_skips_what_is_stored_first_write_wins() -> None:
    e = NewEvent("x", "n", "a", "s", 5, '{"v":1}')
    stored = [(5_000_017, "x")]  # same at and id (in whatever series)
    assert place([e], Slots(stored)) == []
    assert place([e, msgspec.structs.replace(e, data='{"v":2}')], Slots(())) == [(e, point_times([e])[0])]
    # Same id at another millisecond: another event.
    assert len(place([msgspec.structs.replace(e, at=6)], Slots(stored))) == 1


def test_reads_are_cut_to_a_span_and_a_number_of_ranges() -> None:
    m, span = CHUNK_MS, READ_SPAN * CHUNK_MS
    assert read_groups([]) == []
    # Two days in one range: read as 8 reads of 6 hours, in order, covering it exactly.
    groups = read_groups([(0, 2 * 1440 * m)])
    assert [g for g in groups] == [[(i * span, (i + 1) * span)] for i in range(8)]
    # Many short ranges: at most READ_RANGES per read, and together at most the span.
    short = [(i * 100 * m, (i * 100 + 1) * m) for i in range(40)]
    groups = read_groups(short)
    assert [r for g in groups for r in g] == short
    assert all(len(g) <= READ_RANGES and sum(hi - lo for lo, hi in g) <= span for g in groups)
    assert len(groups) == 3
    # A range longer than the span next to a short one: cut at chunk boundaries.
    groups = read_groups([(0, m), (10 * m, 10 * m + span + 5 * m)])
    assert groups == [[(0, m)], [(10 * m, 10 * m + span)], [(10 * m + span, 10 * m + span + 5 * m)]]


def test_chunk_ranges_merge_close_chunks_only() -> None:
    assert chunk_ranges([]) == []
    assert chunk_ranges([5, 5, 7, 200]) == [(5, 8), (200, 201)]
    # A batch spread over a year: as many ranges as runs, never the minutes between them.
    spread = [i * 1000 for i in range(500)]
    assert chunk_ranges(spread) == [(m, m + 1) for m in spread]


async def test_ledger_orders_overlapping_turns_only() -> None:

    ledger = Ledger()
    log: list[str] = []

    async def turn(name: str, ms: set[int], hold: float) -> None:
        async with ledger.turn("b", ms):
            log.append(f"{name}+")
            await asyncio.sleep(hold)
            log.append(f"{name}-")

    first = asyncio.create_task(turn("a", {1, 2}, 0.05))
    await asyncio.sleep(0)
    await asyncio.gather(first, turn("b", {2, 3}, 0), turn("c", {9}, 0))
    # b overlaps a and waits for it; c does not and runs at once.
    assert log.index("a-") < log.index("b+")
    assert log.index("c+") < log.index("a-")


# -- InfluxQL text ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_influxql_text_never_contains_user_values(value: str) -> None:
    texts = [
        ql.newest_query(EventQuery("b", value, value, value), 10, 0, 5),
        ql.millisecond_query(EventQuery("b", value, value, ""), 7),
        ql.count_query(EventQuery("b", value, value, value), 10, 0),
        ql.nth_query(EventQuery("b", value, value, value), 10, 0, 3),
        ql.millisecond_ids_query(EventQuery("b", value, None, value), 7),
        ql.stats_query(StatsQuery("b", value, value, value, [0], 60_000, "hour", "Europe/Paris")),
        ql.tag_values_query("b", "event_name", value),
        ql.intents_query(value, 5, "b7"),
    ]
    for q, params in texts:
        assert encode_tag(value) not in q or encode_tag(value) in ("%",)
        assert encode_tag(value) in params.values()
    assert ql.series_query("b") == ('SHOW SERIES FROM "events" WHERE "bucket_id" = $bucket', {"bucket": "b"})
    assert ql.drop_query("b")[0] == 'DROP SERIES FROM "events" WHERE "bucket_id" = $bucket'
    with pytest.raises(ValueError):
        ql.intents_query("b", 5, "b; DROP")  # a parameter name is ours, never user text


def test_influxql_stats_and_quote() -> None:
    paris = ZoneInfo("Europe/Paris")
    starts, end = window_starts(ms(2026, 11, 1, 12, tz="Europe/Paris"), 250, "day", paris)
    q, _ = ql.stats_query(StatsQuery("b", "n", None, None, starts, end, "day", "Europe/Paris"))
    assert q.endswith(f"AND time >= {starts[0] * 10**6} AND time < {end * 10**6} GROUP BY time(3600000ms) fill(0)")
    assert ql.quote_string("it's \\") == "'it\\'s \\\\'"


# -- SQLite query plans: no sort of the history ------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "plan.db")
    conn.executescript(SCHEMA)
    return conn


def _plan(conn: sqlite3.Connection, sql: str, args: list[object]) -> str:
    return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))


@pytest.mark.parametrize(
    "q",
    [
        EventQuery("b", "n"),
        EventQuery("b", "n", app="a"),
        EventQuery("b", "n", server="s", start=1, end=5),
        EventQuery("b", "n", app="a", server="s", after=(5, "x")),
    ],
)
def test_retrieve_plan_walks_an_index_without_sorting(db: sqlite3.Connection, q: EventQuery) -> None:
    plan = _plan(db, *retrieve_sql(q))
    # The index gives the `at` order; only rows sharing one `at` are sorted by id.
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
    assert plan.endswith("USE TEMP B-TREE FOR RIGHT PART OF ORDER BY"), plan
    assert "SEARCH events USING INDEX events_by_" in plan, plan


def test_stats_plan_counts_index_ranges(db: sqlite3.Connection) -> None:
    q = StatsQuery("b", "n", "a", "s", [0, 60_000], 120_000, "minute", "UTC")
    sql, args = stats_sql(q)
    plan = _plan(db, sql, args)
    # One index range per window, counted from the index alone (no row is read).
    assert "SEARCH events USING COVERING INDEX events_by_app (gen=? AND app=? AND name=? AND at>? AND at<?)" in plan
    q = StatsQuery("b", "n", None, None, [0, 60_000], 120_000, "minute", "UTC")
    plan = _plan(db, *stats_sql(q))
    assert "SEARCH events USING COVERING INDEX events_by_name (gen=? AND name=? AND at>? AND at<?)" in plan


def test_ingest_ids_sort_in_batch_order() -> None:
    body = json.dumps([{"event_name": "e", "app_name": "a"} for _ in range(300)]).encode()
    batch = parse_ingest(body, False, 10_000, now_ms=1_000)
    ids = [e.id for e in batch.events]
    assert ids == sorted(ids) and len(set(ids)) == 300


_NOW = ms(2026, 6, 1)
_ODD_EVENTS: list[object] = [
    {"event_name": "e", "app_name": "a", "at": 1.5},
    {"event_name": "e", "app_name": "a", "at": "2026-01-01T00:00:00Z"},
    {"event_name": "e", "app_name": "a", "at": True},
    {"event_name": "e", "app_name": "a", "at": -1},
    {"event_name": "e", "app_name": "a", "at": _NOW + 25 * 3_600_000},
    {"event_name": "e", "app_name": "a", "at": _NOW + 23 * 3_600_000},
    {"event_name": "e", "app_name": "a", "at": None},
    {"event_name": "e", "app_name": "a", "at": 10**30},
    {"event_name": "", "app_name": "a"},
    {"event_name": "x" * 256, "app_name": "a"},
    {"event_name": "x" * 257, "app_name": "a"},
    {"event_name": "é" * 256, "app_name": "a"},
    {"event_name": "tab\there", "app_name": "a"},
    {"event_name": "e", "app_name": "a\u2028"},
    {"event_name": "e", "app_name": "a", "server_name": "s\x7f"},
    {"event_name": "e", "app_name": "a", "server_name": ""},
    {"event_name": "e", "app_name": "a", "server_name": None},
    {"event_name": "e", "app_name": "a", "server_name": 5},
    {"event_name": "e", "app_name": "a", "id": ""},
    {"event_name": "e", "app_name": "a", "id": "i" * 128},
    {"event_name": "e", "app_name": "a", "id": "i" * 129},
    {"event_name": "e", "app_name": "a", "id": "nul\u0000"},
    {"event_name": "e", "app_name": "a", "id": 7},
    {"event_name": "e", "app_name": "a", "data": None},
    {"event_name": "e", "app_name": "a", "data": []},
    {"event_name": "e", "app_name": "a", "data": "text"},
    {"event_name": "e", "app_name": "a", "data": {"k": '\\ " ü 😀'}},
    {"event_name": "e", "app_name": "a", "data": {"big": "x" * 70_000}},
    {"event_name": "e", "app_name": "a", "data": {"pretty": [1, 2]}, "_pretty": True},
    {"event_name": None, "name": "deploy", "process": {"name": "api", "server": "web"}, "data": {}},
    {"event_name": "e", "app_name": "a", "unknown": {"deep": [1]}},
    {"event_name": 1, "app_name": "a"},
    {"app_name": "a"},
    *[{"event_name": h, "app_name": h, "server_name": h, "id": h, "data": {h: h}} for h in HOSTILE],
]


def _comparable(events: list[NewEvent], sent: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    # Server-made ids differ from call to call: compare that one was made.
    given = {i.get("id") for i in sent}
    return [(e.id if e.id in given else "made", e.name, e.app, e.server, e.at, e.data) for e in events]


@pytest.mark.parametrize("odd", range(len(_ODD_EVENTS)))
def test_the_typed_fast_path_accepts_exactly_what_the_general_path_does(odd: int) -> None:
    # NDJSON always takes the general, event-by-event path; a JSON array first tries the typed
    # one. Both must store (and reject) the same events, with and without valid neighbours.
    event = dict(cast(dict[str, Any], _ODD_EVENTS[odd]))
    pretty = bool(event.pop("_pretty", False))
    valid = {"event_name": "ok", "app_name": "a", "id": "v", "at": 5, "data": {"n": 1}}
    for items in ([event], [valid, event, valid | {"id": "w"}]):
        # (A pretty-printed payload is stored compact: its NDJSON twin is sent compact.)
        lines = [msgspec.json.encode(i).decode() if pretty else json.dumps(i) for i in items]
        array = ("[" + ",".join(json.dumps(i, indent=2 if pretty else None) for i in items) + "]").encode()
        fast = parse_ingest(array, False, 100, now_ms=_NOW)
        general = parse_ingest("\n".join(lines).encode(), True, 100, now_ms=_NOW)

        assert _comparable(fast.events, items) == _comparable(general.events, items)
        assert [r.index for r in fast.rejected] == [r.index for r in general.rejected]
        # What the fast path says of the batch's values is what its events hold.
        if fast.values is not None:
            e = fast.events
            assert fast.values == ({x.name for x in e}, {x.app for x in e}, {x.server for x in e})


def test_iso_times_with_offsets() -> None:
    body = json.dumps(
        [
            {"event_name": "e", "app_name": "a", "at": "2026-01-01T01:00:00+01:00"},
            {"event_name": "e", "app_name": "a", "at": "2026-01-01T00:00:00"},
        ]
    ).encode()
    batch = parse_ingest(body, False, 10, now_ms=ms(2026, 6, 1))
    assert [e.at for e in batch.events] == [ms(2026, 1, 1)] * 2
    assert datetime.fromtimestamp(batch.events[0].at / 1000, UTC).hour == 0


def test_counts_per_window_maps_engine_labels_onto_our_windows() -> None:
    from eventsapi.windows import counts_per_window

    starts = [100, 200, 300]
    # A window before our first start is dropped, unlabelled windows stay 0, a label inside a
    # window (an engine aligned differently) counts for the window that contains it.
    assert counts_per_window(starts, [(0, 5), (100, 1), (250, 2), (300, 0)]) == [1, 2, 0]
    assert counts_per_window(starts, []) == [0, 0, 0]


# -- admission --------------------------------------------------------------------------------


async def test_admission_queues_in_order_and_times_out_with_503() -> None:

    from eventsapi.admission import Admission
    from eventsapi.problems import Problem

    adm = Admission(budget=10, wait_s=0.2)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str, cost: int) -> None:
        async with adm.take(cost):
            order.append(name)
            await release.wait()

    big = asyncio.create_task(hold("big", 8))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(hold("needs-5", 5))
    small = asyncio.create_task(hold("needs-2", 2))  # would fit now, but must not overtake
    await asyncio.sleep(0.01)
    assert order == ["big"] and adm.in_use == 8
    release.set()
    await asyncio.gather(big, waiting, small)
    assert order == ["big", "needs-5", "needs-2"] and adm.in_use == 0

    # A request that cannot get in within wait_s: 503 with Retry-After, and nothing leaks.
    release.clear()
    holder = asyncio.create_task(hold("holder", 10))
    await asyncio.sleep(0)
    with pytest.raises(Problem) as exc:
        async with adm.take(1):
            pass
    assert exc.value.status == 503 and "Retry-After" in (exc.value.headers or {})
    # Larger than the whole budget: runs alone once the budget is free.
    oversized = asyncio.create_task(hold("oversized", 50))
    await asyncio.sleep(0.01)
    assert "oversized" not in order
    release.set()
    await asyncio.gather(holder, oversized)
    assert adm.in_use == 0


# -- rate limits ------------------------------------------------------------------------------


def test_rate_limit_spec_parsing() -> None:
    from eventsapi.ratelimit import Limit, parse_limits

    assert parse_limits("read=50/s, write=500/s,delete=1/m:5") == {
        "read": Limit(50, 1, 50),
        "write": Limit(500, 1, 500),
        "delete": Limit(1, 60, 5),
    }
    for bad in ("read=50", "fetch=1/s", "read=0/s", "read=1/d", "read=-1/s"):
        with pytest.raises(ValueError):
            parse_limits(bad)


def test_token_bucket_per_subject_and_bucket() -> None:
    from eventsapi.ratelimit import Limit, RateLimiter

    rl = RateLimiter({"delete": Limit(1, 60, 2)})
    assert rl.check("a", "b1", "read", now=0) is None  # unlimited class
    first, second, third = (rl.check("a", "b1", "delete", now=0) for _ in range(3))
    assert first and second and third
    assert first.allowed and second.allowed and not third.allowed
    assert third.headers["Retry-After"] == "60"
    assert third.headers["RateLimit-Policy"] == '"delete";q=2;w=60'
    assert first.headers["RateLimit"] == '"delete";r=1;t=60'
    # Another subject, or another bucket, has its own allowance.
    assert rl.check("z", "b1", "delete", now=0).allowed  # type: ignore[union-attr]
    assert rl.check("a", "b2", "delete", now=0).allowed  # type: ignore[union-attr]
    # A token comes back after a minute.
    assert rl.check("a", "b1", "delete", now=61).allowed  # type: ignore[union-attr]


def test_a_tail_poll_reads_about_limit_events_in_whole_writes() -> None:
    from eventsapi.stores import influxtail

    after = influxtail.position(100, "b")
    ids = [(100, "a"), (100, "b"), (100, "c"), (200, "a"), (200, "b"), (300, "z"), (400, "y")]
    assert influxtail.narrow(ids, after, 500, 10) == 500  # all of it fits
    assert influxtail.narrow(ids, after, 500, 2) == 200  # the write holding the 2nd event past `after`
    assert influxtail.narrow(ids, after, 500, 4) == 300
    assert influxtail.narrow(ids[:2], after, 500, 2) is None  # nothing past `after`


def test_every_store_error_has_its_answer() -> None:
    """errors.ANSWERS maps every kind of StoreError; each raised one answers as the table says."""
    from eventsapi import errors

    def kinds(cls: type[errors.StoreError]) -> list[type[errors.StoreError]]:
        return [cls, *(k for sub in cls.__subclasses__() for k in kinds(sub))]

    assert set(kinds(errors.StoreError)) - {errors.StoreError} == set(errors.ANSWERS)
    expected = {errors.StoreUnavailable: (503, True), errors.NotSupported: (501, False),
                errors.MillisecondFull: (409, False)}  # fmt: skip
    for kind, (status, retry) in expected.items():
        try:
            raise kind("no free point left in millisecond 5 of the bucket")
        except errors.StoreError as exc:
            row, detail, headers = errors.answer(exc)
        assert row.status == status and bool(headers) == retry and detail
        assert "SELECT" not in detail and "from(" not in detail


async def test_cardinality_guard_holds_only_the_buckets_of_the_last_refresh(tmp_path: Path) -> None:
    """A process that sees ever new buckets keeps the values of those seen within REFRESH_S,
    not of every bucket it ever saw; a bucket dropped is read again from the store, so its
    limits still hold."""
    clock = [1000.0]
    store = SQLiteStore(tmp_path / "g.db")
    await store.open()
    try:
        guard = cardinality.CardinalityGuard(store, names=2, apps=10, servers=10, clock=lambda: clock[0])
        await store.ingest("kept", [NewEvent("e1", "n1", "a", "s", 1, "{}"), NewEvent("e2", "n2", "a", "s", 2, "{}")])
        for k in range(500):
            assert await guard.check(f"b{k}", [NewEvent("x", "n", "a", "s", 1, "{}")]) == {}
        assert len(guard) == 500
        clock[0] += cardinality.REFRESH_S + 1
        assert await guard.check("kept", [NewEvent("x", "n3", "a", "s", 3, "{}")]) == {
            0: "bucket already holds 2 distinct event names (the limit); 'n3' would be one more"
        }
        assert len(guard) == 1  # the 500 others were older than REFRESH_S
    finally:
        await store.close()
