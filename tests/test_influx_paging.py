"""Paging on a real InfluxDB 1.x at the edges the HTTP suite cannot reach: where the widening
windows' bounds fall (they depend on "now"), and offsets skipped without reading payloads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventsapi.config import Settings
from eventsapi.stores.influxql import InfluxQLStore, _Rows
from eventsapi.stores.paging import FIRST_SPAN_NS, page
from eventsapi.values import EventQuery, NewEvent, StoredEvent

MS = 1_000_000


@pytest.fixture
async def store(influxd: Any) -> AsyncIterator[InfluxQLStore]:
    db = "p_" + uuid.uuid4().hex[:12]
    influxd.query(f'CREATE DATABASE "{db}"')
    s = InfluxQLStore(influxd.url, db, Settings(store_timeout=10))
    await s.open()
    yield s
    await s.close()


async def all_pages(store: InfluxQLStore, now_ns: int, limit: int, **kw: Any) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    after = None
    while True:
        q = EventQuery("b", "n", limit=limit, after=after, **kw)
        rows = await page(q, now_ns, _Rows(store, q))
        out += rows
        if len(rows) < limit:
            return out
        after = (rows[-1].at, rows[-1].id)


async def test_a_millisecond_cut_by_a_window_bound_is_paged_exactly(store: InfluxQLStore) -> None:
    ms = 1_700_000_000_000
    burst = [NewEvent(f"id-{i:02d}", "n", "a", "s", ms, "{}") for i in range(20)]
    around = [NewEvent(f"x-{i}", "n", "a", "s", ms + d, "{}") for i, d in enumerate((-2, -1, 1, 2))]
    await store.ingest("b", burst + around)
    expected = sorted(burst + around, key=lambda e: (e.at, e.id), reverse=True)
    # "now" such that now - 1 h falls inside the burst's millisecond, at every sub-ms offset.
    for sub in (1, 250_000, 500_000, 999_999):
        now_ns = ms * MS + FIRST_SPAN_NS + sub
        for limit in (1, 3, 10, 24):
            got = await all_pages(store, now_ns, limit)
            assert [(r.at, r.id) for r in got] == [(e.at, e.id) for e in expected], (sub, limit)


async def test_offset_is_exact_inside_and_across_milliseconds(store: InfluxQLStore) -> None:
    base = 1_700_000_000_000
    events = [
        NewEvent(f"e{i:03d}", "n", "a", f"s{i % 3}", base - (i // 7) * 600_000, f'{{"i":{i}}}') for i in range(120)
    ]
    await store.ingest("b", events)
    expected = [(e.at, e.id) for e in sorted(events, key=lambda e: (e.at, e.id), reverse=True)]
    now_ns = base * MS + 1
    for offset in (0, 1, 6, 7, 8, 50, 119, 120, 200):
        for limit in (1, 5, 13):
            q = EventQuery("b", "n", limit=limit, offset=offset)
            got = await page(q, now_ns, _Rows(store, q))
            assert [(r.at, r.id) for r in got] == expected[offset : offset + limit], (offset, limit)
    # An offset after a cursor counts from the cursor.
    at, eid = expected[10]
    q = EventQuery("b", "n", limit=4, offset=3, after=(at, eid))
    got = await page(q, now_ns, _Rows(store, q))
    assert [(r.at, r.id) for r in got] == expected[14:18]
