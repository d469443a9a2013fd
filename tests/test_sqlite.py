"""SQLite-only behaviour the HTTP suite cannot see: what is kept in the file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from eventsapi.stores.sqlite import SQLiteStore
from eventsapi.values import EventQuery, NewEvent


def strings(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {v for (v,) in conn.execute("SELECT value FROM strings")}


async def test_delete_all_also_purges_names_no_event_uses(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.ingest(
            "a", [NewEvent(f"id{i}", f"name-{i}", "app-a", "srv-a", 1_000 + i, "{}") for i in range(3000)]
        )
        await store.ingest(
            "b", [NewEvent("k", "kept", "app-b", "", 5, "{}"), NewEvent("l", "name-7", "app-b", "", 6, "{}")]
        )
        assert len(strings(path)) == 3000 + 2 + 3
        await store.delete_all("a")
        for _ in range(100):
            left = strings(path)
            if len(left) <= 6:
                break
            await asyncio.sleep(0.05)
        # What bucket b uses, plus the newest string (kept so that no key is ever reused).
        assert left - {"name-2999", "srv-a", "app-a"} == {"kept", "app-b", "", "name-7"}
        # Names interned before the purge work again, and every key still means what it meant.
        await store.ingest("a", [NewEvent("again", "name-5", "app-a", "srv-a", 9, "{}")])
        (row,) = await store.retrieve(EventQuery("a", "name-5"))
        assert (row.name, row.app, row.server) == ("name-5", "app-a", "srv-a")
        (row,) = await store.retrieve(EventQuery("b", "name-7"))
        assert (row.name, row.app, row.server) == ("name-7", "app-b", "")
        assert await store.keys_by_app("b") == [("app-b", ["kept", "name-7"])]
    finally:
        await store.close()


async def test_retention_hides_old_events_at_once_and_purges_them(tmp_path: Path) -> None:
    """Events already stored when the service starts with a retention: every read stops
    showing the expired ones at once, and the background purge removes them."""
    import time

    from eventsapi.values import StatsQuery

    path = tmp_path / "events.db"
    now = int(time.time() * 1000)
    week = 7 * 86_400_000
    store = SQLiteStore(path)
    await store.open()
    await store.ingest(
        "b",
        [NewEvent(f"old{i}", "old-name", "app", "s-old", now - week - i, "{}") for i in range(50)]
        + [NewEvent("new", "new-name", "app", "s-new", now - 60_000, "{}")],
    )
    await store.close()

    store = SQLiteStore(path, retention_days=1)
    await store.open()
    try:
        assert await store.retrieve(EventQuery("b", "old-name")) == []
        q = StatsQuery("b", "old-name", None, None, [now - 2 * week, now - week // 2], now, "day", "UTC")
        assert await store.stats(q) == [0, 0]
        assert await store.keys_by_app("b") == [("app", ["new-name"])]
        for _ in range(100):  # the purge runs at start-up, in the background
            with sqlite3.connect(path) as conn:
                left = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            if left == 1:
                break
            await asyncio.sleep(0.05)
        assert left == 1
        names, _, servers = await store.tag_sets("b")
        assert names == {"new-name"} and servers == {"s-new"}
    finally:
        await store.close()
