"""The influxdb2 store's *answers*: InfluxDB 2's annotated-CSV responses for every query shape
the store sends, replayed through the real influxdb-client parser, mapped to the contract.

No InfluxDB 2 can run here, so an endpoint in its place answers /api/v2/query with CSV built
to InfluxData's documented response format ("Annotated CSV",
https://docs.influxdata.com/influxdb/v2.7/reference/syntax/annotated-csv/): per table a
`#group`, `#datatype` and `#default` annotation row, a header row whose first cell is the
empty annotation column, then `result`, `table` and the data columns; RFC 4180 quoting; tables
separated by an empty line; times as RFC 3339 in UTC. The answers carry hostile tag values
(in their stored encoding), several tables, empty windows and a millisecond that a page cuts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from eventsapi.config import Settings
from eventsapi.stores.influxdb2 import InfluxDB2Store
from eventsapi.stores.lineprotocol import encode_tag
from eventsapi.stores.occupancy import Intent
from eventsapi.validation import StatsRequest
from eventsapi.values import EventQuery
from support import HOSTILE

Column = tuple[str, str, bool]  # name, datatype, part of the group key


def rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 10**9)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac:09d}".rstrip("0") + "Z")


def annotated(*tables: tuple[list[Column], list[list[Any]]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    for index, (columns, rows) in enumerate(tables):
        w.writerow(["#group", "false", "false", *("true" if g else "false" for _, _, g in columns)])
        w.writerow(["#datatype", "string", "long", *(t for _, t, _ in columns)])
        w.writerow(["#default", "_result", "", *("" for _ in columns)])
        w.writerow(["", "result", "table", *(n for n, _, _ in columns)])
        for row in rows:
            w.writerow(["", "", index, *row])
        w.writerow([])
    return out.getvalue()


Answer = Callable[[str], str]


@pytest.fixture
async def engine() -> AsyncIterator[tuple[InfluxDB2Store, list[Answer], list[str]]]:
    """A store talking to an endpoint that answers each query with the next canned answer
    whose shape matches; the texts it was sent are kept."""
    answers: list[Answer] = []
    sent: list[str] = []

    async def query(request: web.Request) -> web.Response:
        text = (await request.json())["query"]
        sent.append(text)
        body = "".join(a(text) for a in answers)
        return web.Response(text=body, content_type="text/csv")

    async def ping(request: web.Request) -> web.Response:
        return web.Response(status=204)

    fake = web.Application()
    fake.router.add_post("/api/v2/query", query)
    fake.router.add_get("/ping", ping)
    server = TestServer(fake)
    await server.start_server()
    store = InfluxDB2Store(f"http://127.0.0.1:{server.port}", "org", "events", Settings(influx_token="t"))
    yield store, answers, sent
    await store.close()
    await server.close()


def when(marker: str, csv_text: str) -> Answer:
    return lambda text: csv_text if marker in text else ""


ROW_COLUMNS: list[Column] = [
    ("_time", "dateTime:RFC3339", False),
    ("app", "string", False),
    ("data", "string", False),
    ("event_name", "string", False),
    ("id", "string", False),
    ("server", "string", False),
]
MS = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z


def row(
    ms: int, slot: int, event_id: str, name: str, app: str = "api", server: str = "", data: str = "{}"
) -> list[Any]:
    return [rfc3339(ms * 10**6 + slot), encode_tag(app), data, encode_tag(name), event_id, encode_tag(server)]


async def test_retrieve_rows_are_decoded_and_regrouped_by_millisecond(engine: Any) -> None:
    store, answers, sent = engine
    name = HOSTILE[0]
    # Newest first by point time; the last three share MS - 1, in slot order, not id order,
    # so the page (limit 3) ends inside that millisecond and the store reads it whole.
    newest = annotated(
        (
            ROW_COLUMNS,
            [
                row(MS, 5, "e-top", name, app=HOSTILE[2], server=HOSTILE[3], data='{"a":"x,\\"y\\""}'),
                row(MS - 1, 900_000, "b", name),
                row(MS - 1, 500, "d", name),
                row(MS - 1, 10, "a", name),
            ],
        )
    )
    whole_ms = annotated(
        (
            ROW_COLUMNS,
            [
                row(MS - 1, 900_000, "b", name),
                row(MS - 1, 500, "d", name),
                row(MS - 1, 10, "a", name),
                row(MS - 1, 7, "c", name),
            ],
        )
    )
    answers.append(lambda text: newest if "limit(n:" in text else "")
    answers.append(lambda text: whole_ms if "limit(n:" not in text and "pivot(" in text else "")
    rows = await store.retrieve(EventQuery("b1", name, limit=3))
    assert [(r.at, r.id) for r in rows] == [(MS, "e-top"), (MS - 1, "d"), (MS - 1, "c")]
    top = rows[0]
    assert (top.name, top.app, top.server) == (name, HOSTILE[2], HOSTILE[3])
    assert msgspec.json.decode(top.data) == {"a": 'x,"y"'}
    assert sum("pivot(" in t for t in sent) == 2


async def test_stats_maps_aggregate_window_output_in_a_time_zone(engine: Any) -> None:
    store, answers, _ = engine
    tz = ZoneInfo("Europe/Paris")
    now = int(datetime(2026, 3, 30, 12, tzinfo=tz).timestamp() * 1000)  # the day after DST began
    q = StatsRequest("b1", "deploy", None, None, 3, "day", tz).query(now)
    # aggregateWindow(timeSrc: "_start") labels each window by its start, in UTC on the wire;
    # createEmpty gives 0 rows; a partial window before our first start may come first.
    columns: list[Column] = [("_time", "dateTime:RFC3339", False), ("_value", "long", False)]
    labels = [q.starts[0] - 3_600_000, *q.starts]
    counts = [9, 2, 0, 5, 1]
    answers.append(
        when(
            "aggregateWindow",
            annotated((columns, [[rfc3339(t * 10**6), n] for t, n in zip(labels, counts, strict=True)])),
        )
    )
    assert len(q.starts) == 4
    # Paris days: 23 h on 29 March.
    assert q.starts[3] - q.starts[2] == 23 * 3_600_000
    assert await store.stats(q) == [2, 0, 5, 1]
    answers.clear()  # no series matched: no table at all
    assert await store.stats(q) == [0, 0, 0, 0]


async def test_breakdown_reads_one_table_per_tag_value(engine: Any) -> None:
    store, answers, sent = engine
    tz = ZoneInfo("Asia/Kolkata")
    now = int(datetime(2026, 3, 30, 12, tzinfo=tz).timestamp() * 1000)
    q = StatsRequest("b1", "deploy", None, None, 1, "hour", tz).query(now)
    # group(columns: ["server"]) then aggregateWindow: one table per server, only non-empty
    # windows (createEmpty: false); the grain is India's half hour.
    columns: list[Column] = [
        ("_time", "dateTime:RFC3339", False),
        ("_value", "long", False),
        ("server", "string", True),
    ]
    tables = [
        (columns, [[rfc3339(q.starts[1] * 10**6), 3, encode_tag(HOSTILE[1])],
                   [rfc3339((q.starts[1] + 1_800_000) * 10**6), 2, encode_tag(HOSTILE[1])]]),
        (columns, [[rfc3339(q.starts[-1] * 10**6), 4, encode_tag("")]]),
    ]  # fmt: skip
    answers.append(when("aggregateWindow", annotated(*tables)))
    got = sorted(await store.stats_groups(q, "server"))
    assert got == [("", q.starts[-1], 4), (HOSTILE[1], q.starts[1], 3), (HOSTILE[1], q.starts[1] + 1_800_000, 2)]
    assert 'group(columns: ["server"])' in sent[-1] and "createEmpty: false" in sent[-1]


async def test_keys_and_tag_sets_from_schema_tag_values(engine: Any) -> None:
    store, answers, _ = engine
    col: list[Column] = [("_value", "string", False)]

    def tag_values(text: str) -> str:
        if "schema.tagValues" not in text:
            return ""
        if 'tag: "app"' in text:
            return annotated((col, [[encode_tag(HOSTILE[4])], [encode_tag("api")]]))
        if 'tag: "server"' in text:
            return annotated((col, [[encode_tag("")], [encode_tag(HOSTILE[5])]]))
        if "r.app == " in text and encode_tag("api") + '"' in text and "event_name" in text:
            return annotated((col, [["deploy"], [encode_tag(HOSTILE[6])]]))
        return annotated((col, [[encode_tag(HOSTILE[7])]]))

    answers.append(tag_values)
    assert await store.keys_by_app("b1") == sorted(
        [("api", sorted(["deploy", HOSTILE[6]])), (HOSTILE[4], [HOSTILE[7]])]
    )
    _, apps, servers = await store.tag_sets("b1")
    assert apps == {"api", HOSTILE[4]} and servers == {"", HOSTILE[5]}


async def test_offset_and_occupancy_answers(engine: Any) -> None:
    store, answers, sent = engine
    long_value: list[Column] = [("_value", "long", False)]
    ns_rows: list[Column] = [("ns", "long", False), ("_value", "string", False)]
    # Skipping 2 rows: the window holds 7; the 2nd (0-based) is in MS - 1, which 1 newer row
    # precedes, so one row of MS - 1 is skipped: "z", its highest id. The page then is the rest
    # of MS - 1, ordered by id.
    from eventsapi.stores.flux import flux_time

    above = f"range(start: {flux_time(MS * 10**6)}"
    answers.append(lambda t: annotated((long_value, [[1 if above in t else 7]])) if "count()" in t else "")
    answers.append(when("offset: 2", annotated((ns_rows, [[(MS - 1) * 10**6 + 4, "m"]]))))
    answers.append(
        lambda t: (
            annotated(([("_value", "string", False)], [["n"], ["m"], ["z"]]))
            if 'keep(columns: ["_value"])' in t
            else ""
        )
    )
    answers.append(
        lambda t: (
            annotated((ROW_COLUMNS, [row(MS - 1, 4, "m", "e"), row(MS - 1, 3, "n", "e")])) if "pivot(" in t else ""
        )
    )
    rows = await store.retrieve(EventQuery("b1", "e", limit=2, offset=2))
    assert [(r.at, r.id) for r in rows] == [(MS - 1, "n"), (MS - 1, "m")]
    assert any("offset: 2" in t for t in sent) and any(above in t for t in sent)

    # The occupancy read before a write: integer ns (exact to the slot) from several tables.
    answers.clear()
    occupied: list[Column] = [("ns", "long", False), ("_value", "string", False)]
    t0 = MS * 10**6 + 123_457
    answers.append(
        when(
            "int(v: r._time)",
            annotated(
                (occupied, [[t0, "evt-86"]]),
                (occupied, [[MS * 10**6 + 9, "other"]]),
            ),
        )
    )
    got = await store._occupied("b1", [(MS, MS + 1)])
    assert sorted(got) == [(MS * 10**6 + 9, "other"), (t0, "evt-86")]

    # Intents of other writers (occupancy.py): integer ns and the text; foreign rows ignored.
    answers.clear()
    answers.append(when("eventsapi_writes", annotated((occupied, [[t0, "w1 60000 120000"], [t0 + 1, "junk"]]))))
    assert await store._intents({"b1": t0 - 1}) == {"b1": [Intent("w1", t0, 60000, 120000)]}
