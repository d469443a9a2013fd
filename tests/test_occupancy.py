"""The InfluxDB stores' occupancy memory (stores/occupancy.py): what a process remembers of a
bucket's points, and how other writers' intents keep it true.

Unit tests of the memory, then real influxd tests where two store objects stand for two
processes (each its own memory and writer id) sharing one database: another writer's events,
re-sends and deletes seen through intents, a writer that died between its intent and its write,
a memory budget far below the bucket's size, and a volume run of random-order batches checked
against a plain-Python oracle (EVENTSAPI_OCCUPANCY_EVENTS for larger runs, e.g. 1000000).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventsapi.config import Settings
from eventsapi.stores.base import StoreUnavailable
from eventsapi.stores.influxql import InfluxQLStore
from eventsapi.stores.lineprotocol import INTENTS_MEASUREMENT, render_lines
from eventsapi.stores.occupancy import (
    AHEAD_OF_NOW,
    CHUNK_MS,
    CHUNK_POINTS,
    DICT_POINT,
    READ_AHEAD,
    READ_RANGES,
    SETTLE_NS,
    Intent,
    Occupancy,
    intent_line,
)
from eventsapi.stores.placement import Slots, first_slot, place
from eventsapi.values import ExportQuery, NewEvent
from support.relay import relay

NS = 1_000_000
T0 = 1_789_999_980_000  # the first millisecond of a minute


def ev(i: str, at: int, data: str = "{}", name: str = "n") -> NewEvent:
    return NewEvent(i, name, "a", "s", at, data)


# -- the memory, alone -------------------------------------------------------------------------


def test_slots_find_what_is_stored_and_place_what_is_not() -> None:
    slots = Slots()
    a, b = ev("evt-86", 5), ev("evt-1291", 5)  # the same first slot
    assert first_slot(a.id) == first_slot(b.id)
    ((_, ta),) = place([a], slots)
    ((_, tb),) = place([b], slots)
    assert tb == ta + 1
    assert place([a, b], slots) == []  # both stored: first write wins
    # Read back from the engine, the same points are found the same way.
    again = Slots([(ta, "evt-86"), (tb, "evt-1291")])
    assert place([b, a], again) == [] and not again.displaced


def test_slots_keep_whole_the_points_their_probe_would_not_reach() -> None:
    # evt-1291 sits past its first slot, and the point before it went (a delete): the probe
    # from its first slot meets a free slot first, so the point is kept as displaced.
    t, x = 5 * NS + first_slot("evt-1291"), first_slot("x")
    slots = Slots([(t + 1, "evt-1291"), (x, "x"), (x, "y")])
    assert slots.displaced == {(5, "evt-1291"), (0, "y")}  # y: a second series at x's time
    assert place([ev("evt-1291", 5), ev("y", 0), ev("x", 0)], slots) == []
    ((_, t2),) = place([ev("evt-1291", 6)], slots)  # another millisecond: another event
    assert t2 == 6 * NS + first_slot("evt-1291")


def test_slots_place_the_same_whether_their_points_are_compacted_or_not() -> None:
    """Batches into one Slots, compacted between some of them (a few points into many, or all
    merged), against a plain probing oracle that carries what each batch stored: re-sends,
    shared first slots and bursts in a millisecond find the same points either way."""

    def probe(taken: set[int], stored: set[tuple[int, str]], e: NewEvent) -> int | None:
        if (e.at, e.id) in stored:
            return None
        stored.add((e.at, e.id))
        s = first_slot(e.id)
        while e.at * NS + s in taken:
            s = (s + 1) % NS
        taken.add(e.at * NS + s)
        return e.at * NS + s

    rnd = random.Random(20261204)
    for _ in range(40):
        history = [ev(f"h{i}", rnd.randrange(50), name=rnd.choice("nm")) for i in range(rnd.randrange(0, 400))]
        taken: set[int] = set()
        stored: set[tuple[int, str]] = set()
        points = [(t, e.id) for e in history if (t := probe(taken, stored, e)) is not None]
        slots = Slots(points)
        if rnd.random() < 0.5:
            slots.compact()  # what was read, compacted (or not) at once
        sent: list[NewEvent] = []
        for _ in range(8):
            batch = [
                rnd.choice(sent + history)
                if sent and rnd.random() < 0.2
                else ev(rnd.choice(["evt-86", "evt-1291", f"x{rnd.randrange(10**6)}"]), rnd.randrange(60))
                for _ in range(rnd.randrange(1, 60))
            ]
            expected = [(e, t) for e in batch if (t := probe(taken, stored, e)) is not None]
            assert place(batch, slots) == expected
            sent += batch
            if rnd.random() < 0.5:
                slots.compact()
            assert len(slots) == len(taken) and not (slots.marks.keys() & set(slots.keys))
            assert list(slots.keys) == sorted(slots.keys)


def test_over_the_budget_minutes_are_compacted_before_any_is_dropped() -> None:
    """A minute whose points fit the budget only compacted stays known, compacted, and still
    finds what it holds; a read compacts the least recently used minutes to make room, and
    what it brings past the budget is compacted at once."""
    minute = {T0 // CHUNK_MS}
    read = [(T0 * NS + first_slot(f"p{i}") + i * NS, f"p{i}") for i in range(1000)]  # one point a millisecond
    day = 1441 * CHUNK_POINTS  # a minute and the day read after it, empty
    occ = Occupancy(budget_points=day + 3000, writer="me")
    _, mine, _ = occ.claim("b", minute)
    occ.fill("b", mine, read)
    known = occ.known("b", minute)
    assert known is not None
    placed = place([ev(f"new{i}", T0 + 30_000 + i) for i in range(200)], known.slots, CHUNK_MS)
    occ.record("b", placed, known, occ.generation("b"))
    chunk = known.chunks[T0 // CHUNK_MS]
    assert len(chunk.marks) == 1200 and occ.points > occ.budget_points  # 1,200 points as dicts do not fit
    occ.evict()
    assert occ.points <= occ.budget_points and occ.known("b", minute) is not None
    assert not chunk.marks and len(chunk.keys) == 1200  # compacted, not dropped
    assert place([ev("p7", T0 + 7), ev("new3", T0 + 30_003)], chunk) == []  # both found: stored
    # A read that fits once the least recently used minute is compacted: that one is, and the
    # read stays in dicts, the faster form.
    more = place([ev(f"more{i}", T0 + 40_000 + i) for i in range(100)], chunk)
    occ.record("b", more, known, occ.generation("b"))
    assert len(chunk.marks) == 100
    occ.budget_points = occ.points + DICT_POINT + 1441 * CHUNK_POINTS - 500  # compacting the 100 frees 900
    _, mine, _ = occ.claim("b", {T0 // CHUNK_MS + 3000})
    occ.fill("b", mine, [((T0 + 3000 * CHUNK_MS) * NS + 5, "r")])
    assert not chunk.marks and len(mine[T0 // CHUNK_MS + 3000].marks) == 1
    # Over the budget whatever is compacted: the next read is compacted as it is filled.
    occ.budget_points = occ.points - 1
    _, mine, _ = occ.claim("b", {T0 // CHUNK_MS + 5000})
    occ.fill("b", mine, [((T0 + 5000 * CHUNK_MS) * NS + 5, "q")])
    assert all(not c.marks for c in mine.values()) and len(mine[T0 // CHUNK_MS + 5000]) == 1
    assert DICT_POINT * 1200 > 3000 > 1200


def test_intents_of_other_writers_make_their_minutes_unknown_until_they_settle() -> None:
    occ = Occupancy(writer="me")
    chunks = {T0 // CHUNK_MS, T0 // CHUNK_MS + 1}
    _, mine, _ = occ.claim("b", chunks)
    occ.fill("b", mine, [])
    assert occ.known("b", chunks) is not None
    now = 10**18
    # My own intents change nothing.
    occ.apply_intents("b", [Intent("me", now, T0, T0 + 2 * CHUNK_MS)], now)
    assert occ.known("b", chunks) is not None
    # Another writer's intent on the second minute: that minute is read again...
    other = Intent("w2", now, T0 + CHUNK_MS, T0 + 2 * CHUNK_MS)
    occ.apply_intents("b", [other], now)
    assert occ.known("b", {T0 // CHUNK_MS}) is not None
    assert occ.known("b", chunks) is None
    # ... and again at every batch while the intent may still cover writes in flight,
    for later in (now + 1, now + SETTLE_NS // 2):
        _, mine, _ = occ.claim("b", chunks)
        assert set(mine) == {T0 // CHUNK_MS + 1}
        occ.fill("b", mine, [])
        occ.apply_intents("b", [other], later)  # read again: applied once, still unsettled
        assert occ.known("b", chunks) is None
    # then once more after it settled, and from then on it is trusted.
    _, mine, _ = occ.claim("b", chunks)
    occ.fill("b", mine, [])
    occ.apply_intents("b", [other], now + SETTLE_NS + 1)
    assert occ.known("b", chunks) is None
    _, mine, _ = occ.claim("b", chunks)
    occ.fill("b", mine, [])
    occ.apply_intents("b", [other], now + SETTLE_NS + 2)
    assert occ.known("b", chunks) is not None
    # The next read starts SETTLE before the last one: an intent not yet visible then was
    # recorded after that.
    assert occ.intents_since("b", 0) == now + SETTLE_NS + 2 - SETTLE_NS


def test_a_minute_another_writer_is_changing_is_read_at_the_batch_milliseconds_only() -> None:
    occ = Occupancy(writer="me")
    minute = T0 // CHUNK_MS
    now = 10**18
    assert occ.exact("b", {minute}, {T0 + 5}) == ([], set())  # nothing known of the bucket
    occ.apply_intents("b", [Intent("w2", now, T0 + CHUNK_MS, T0 + 2 * CHUNK_MS)], now)
    assert occ.exact("b", {minute}, {T0 + 5}) == ([], set())  # its intent covers the next minute
    occ.apply_intents("b", [Intent("w2", now + 1, T0, T0 + 1)], now + 1)
    # A batch in time order: its milliseconds, those less than EXACT_GAP_MS apart in one range.
    batch = {T0 + 5, T0 + 6, T0 + 900, T0 + 30_000}
    assert occ.exact("b", {minute, minute + 3}, batch | {T0 + 3 * CHUNK_MS}) == (
        [(T0 + 5, T0 + 901), (T0 + 30_000, T0 + 30_001)],
        {minute},
    )
    # Out of time order, more ranges than one read holds: the minute is read whole, as any other.
    spread = {T0 + 2_000 * k for k in range(READ_RANGES + 1)}
    assert occ.exact("b", {minute}, spread) == ([], set())
    # Once the intents settled there is nothing to read that way.
    occ.apply_intents("b", [], now + SETTLE_NS + 2)
    assert occ.exact("b", {minute}, batch) == ([], set())


def test_points_placed_in_minutes_read_for_one_batch_take_no_room_in_the_memory() -> None:
    occ = Occupancy(writer="me")
    minute, now = T0 // CHUNK_MS, 10**18
    _, mine, _ = occ.claim("b", {minute + 1})
    occ.fill("b", mine, [])
    held = occ.points
    occ.apply_intents("b", [Intent("w2", now, T0, T0 + CHUNK_MS)], now)
    known = occ.known("b", {minute + 1})
    assert known is not None
    known.add_fresh({minute}, [(T0 * NS + 7, "theirs")])
    batch = [ev(f"e{i}", T0 + i) for i in range(100)] + [ev("x", T0 + CHUNK_MS)]
    placed = place(batch, known.slots, CHUNK_MS)
    assert len(placed) == 101
    occ.record("b", placed, known, occ.generation("b"))
    # The minute read for the batch went with it; the held one has its one point more.
    assert occ.known("b", {minute}) is None
    assert occ.points == held + DICT_POINT
    # A batch whose chunk was read again while it wrote marks its points there, counted once.
    _, mine, _ = occ.claim("b", {minute})
    occ.fill("b", mine, [])
    again = occ.points
    occ.record("b", placed[:10], known, occ.generation("b"))
    assert occ.points == again + 10 * DICT_POINT
    assert len(mine[minute]) == 10


def test_a_retired_writers_minutes_are_read_once_more_then_trusted() -> None:
    occ = Occupancy(writer="me")
    chunks = {T0 // CHUNK_MS}
    now = 10**18
    other = Intent("w2", now, T0, T0 + CHUNK_MS)
    occ.apply_intents("b", [other], now)
    _, mine, _ = occ.claim("b", chunks)
    occ.fill("b", mine, [])
    # w2 closed cleanly: its retirement (an intent covering nothing) comes after its intents.
    # The minute read before it is read once more, then trusted long before SETTLE.
    occ.apply_intents("b", [other, Intent("w2", now + 5, 0, 0)], now + 10)
    assert occ.known("b", chunks) is None
    _, mine, _ = occ.claim("b", chunks)
    occ.fill("b", mine, [])
    occ.apply_intents("b", [], now + 11)
    assert occ.known("b", chunks) is not None
    # A later intent of the same writer id is not covered by the retirement.
    occ.apply_intents("b", [Intent("w2", now + 20, T0, T0 + CHUNK_MS)], now + 21)
    _, mine, _ = occ.claim("b", chunks)
    occ.fill("b", mine, [])
    occ.apply_intents("b", [], now + 22)
    assert occ.known("b", chunks) is None
    # A writer retires in the buckets it wrote within SETTLE, after its last intent there.
    occ.recorded("b", occ.own_intent("b", T0, T0 + CHUNK_MS, now))
    occ.recorded("old", occ.own_intent("old", T0, T0 + CHUNK_MS, now - SETTLE_NS))
    assert occ.retirement(now) == [("b", Intent("me", now + 1, 0, 0))]
    assert occ.retirement(now) == []  # once: a second close has nothing to announce
    occ.recorded("b", occ.own_intent("b", T0, T0 + CHUNK_MS, now))
    assert occ.retirement(now + SETTLE_NS) == []


def test_a_write_under_a_delete_is_forgotten_and_the_budget_evicts_the_oldest_minutes() -> None:
    budget = 1441 * CHUNK_POINTS + 100  # what a day's chunks cost, and 100 points
    occ = Occupancy(budget_points=budget, writer="me")
    first = {T0 // CHUNK_MS}
    _, mine, _ = occ.claim("b", first)
    occ.fill("b", mine, [(T0 * NS + i, f"p{i}") for i in range(60)])
    known = occ.known("b", first)
    assert known is not None
    gen = occ.generation("b")
    placed = place([ev("new", T0)], known.slots, CHUNK_MS)
    occ.deleting("b")  # a delete of the bucket started meanwhile
    occ.record("b", placed, known, gen)
    assert occ.known("b", first) is None  # read again: the delete may have removed it
    # Two reads of a minute and the day after it cannot both stay: the older minute goes.
    for i in (10, 5000):
        _, mine, _ = occ.claim("b", {i})
        assert set(mine) == set(range(i, i + 1441))  # a day read ahead
        occ.fill("b", mine, [(i * CHUNK_MS * NS + k, f"q{k}") for k in range(60)])
        occ.evict()
    assert occ.points <= budget
    assert occ.known("b", {5000}) is not None and occ.known("b", {10}) is None


def test_the_budget_evicts_the_minutes_used_least_recently_and_a_failed_read_is_never_used() -> None:
    day = 1441 * CHUNK_POINTS  # what a minute and the day read after it cost
    occ = Occupancy(budget_points=2 * day + CHUNK_POINTS, writer="me")  # and one more minute
    for i in (10, 5000):
        _, mine, _ = occ.claim("b", {i})
        occ.fill("b", mine, [])
    assert occ.known("b", {10}) is not None  # a batch used minute 10 last
    _, mine, _ = occ.claim("b", {9000})
    occ.fill("b", mine, [])
    occ.evict()  # one day's worth goes: the minutes after 10, not 10 nor those read later
    assert occ.known("b", {11}) is None and occ.known("b", {1450}) is None
    assert occ.known("b", {10}) is not None and occ.known("b", {5000}) is not None
    # A read that failed leaves nothing usable: the next batch claims the minute again.
    _, mine, _ = occ.claim("b", {20_000})
    occ.abandon("b", mine)
    assert all(c.read is None for c in mine.values())
    assert occ.known("b", {20_000}) is None
    _, again, _ = occ.claim("b", {20_000})
    assert 20_000 in again


def test_a_write_acknowledged_while_its_minute_is_read_again_is_kept_by_that_read() -> None:
    """A batch placed a point on a minute; before its write was acknowledged, another writer's
    intent made the process forget the minute and a second batch began reading it again. The
    write's point is marked in the minute being read (the read may miss it), and the read's
    points are added to it, not refused (a flake of the intents test, 2026-12-04: the ingest
    failed with "load() fills an empty Slots")."""
    occ = Occupancy(writer="me")
    minute = {T0 // CHUNK_MS}
    _, mine, _ = occ.claim("b", minute)
    occ.fill("b", mine, [])
    known = occ.known("b", minute)
    assert known is not None
    gen = occ.generation("b")
    placed = place([ev("evt-86", T0 + 5)], known.slots, CHUNK_MS)  # written, not yet acknowledged
    occ.forget("b", T0, T0 + CHUNK_MS)  # another writer's intent
    _, again, _ = occ.claim("b", minute)  # a second batch reads the minute again
    occ.record("b", placed, known, gen)  # the write is acknowledged meanwhile
    occ.fill("b", again, [(T0 * NS + 7, "other")])  # the read did not see it
    now = occ.known("b", minute)
    assert now is not None
    assert place([ev("evt-86", T0 + 5)], now.slots, CHUNK_MS) == []  # stored: not written twice
    ((_, t),) = place([ev("evt-1291", T0 + 5)], now.slots, CHUNK_MS)  # same first slot: the next
    assert t == placed[0][1] + 1


def test_reads_go_a_day_ahead_in_the_past_but_not_into_the_future() -> None:
    """Producers in time order over past minutes read a day at a time; live producers read
    AHEAD_OF_NOW minutes at a time, so that many live buckets fit the memory: with a day of
    empty future minutes each, 200 buckets overflowed the default budget and every batch of
    every bucket read its day again."""
    now = T0 // CHUNK_MS + 10_000
    occ = Occupancy(writer="me")
    _, mine, _ = occ.claim("b", {now - 5000}, now_ms=now * CHUNK_MS)
    assert set(mine) == set(range(now - 5000, now - 5000 + READ_AHEAD + 1))
    _, mine, _ = occ.claim("b", {now - 100}, now_ms=now * CHUNK_MS + 59_999)
    assert set(mine) == set(range(now - 100, now + AHEAD_OF_NOW + 1))  # up to the present and a little past
    _, mine, _ = occ.claim("b", {now + 2000}, now_ms=now * CHUNK_MS)  # a time in the future
    assert set(mine) == set(range(now + 2000, now + 2000 + AHEAD_OF_NOW + 1))
    # 500 live buckets, each read once and kept, within the default budget.
    for round_ in range(3):
        for k in range(500):
            _, mine, _ = occ.claim(f"live{k}", {now + round_}, now_ms=(now + round_) * CHUNK_MS)
            assert bool(mine) == (round_ == 0), (round_, k)
            occ.fill(f"live{k}", mine, [])
            occ.evict()
    assert occ.points <= occ.budget_points


def test_idle_buckets_are_released_and_a_batch_in_flight_over_one_trusts_nothing() -> None:
    """A process that writes ever new buckets (a SaaS tenant per bucket, months of uptime) keeps
    the state of those that hold chunks or recent intents of its own, not of every bucket it
    ever wrote: before, each stayed for the process's life (~540 bytes)."""
    # Ten buckets' worth: a point and AHEAD_OF_NOW + 1 minutes each (T0 stands for the present).
    budget = 10 * ((AHEAD_OF_NOW + 1) * CHUNK_POINTS + DICT_POINT)
    occ = Occupancy(budget_points=budget, writer="me")
    now = time.time_ns()
    minute = T0 // CHUNK_MS
    for k in range(1000):
        bucket = f"tenant{k}"
        occ.recorded(bucket, occ.own_intent(bucket, T0, T0 + CHUNK_MS, now))
        _, mine, _ = occ.claim(bucket, {minute}, now_ms=T0)
        occ.fill(bucket, mine, [(T0 * NS + 1, f"p{k}")])
        occ.evict(now)
    assert occ.bucket_count() == 1000  # the intents are younger than SETTLE: all kept
    occ.evict(now + SETTLE_NS)
    assert occ.bucket_count() <= 11  # those whose minutes the budget still holds (one in part)
    assert occ.points <= budget
    kept = [f"tenant{k}" for k in range(1000) if occ.known(f"tenant{k}", {minute}) is not None]
    assert kept == [f"tenant{k}" for k in range(990, 1000)]  # the least recently used went
    # A batch in flight over a bucket that is released meanwhile (its minute forgotten, its
    # intent old), then deleted and read anew: its write may be what the delete removed, so
    # it must not be marked in the new read. Generations counted per bucket would start over
    # at the release and meet the batch's again after as many deletes (one, here).
    occ.deleting("t")
    _, mine, _ = occ.claim("t", {minute}, now_ms=T0)
    occ.fill("t", mine, [])
    known = occ.known("t", {minute})
    assert known is not None
    gen = occ.generation("t")
    placed = place([ev("late", T0)], known.slots, CHUNK_MS)  # written, not yet acknowledged
    occ.forget("t")
    count = occ.bucket_count()
    occ.evict(now + 3 * SETTLE_NS)
    assert occ.bucket_count() == count - 1  # released
    occ.deleting("t")
    _, mine, _ = occ.claim("t", {minute}, now_ms=T0)
    occ.fill("t", mine, [])  # the read after the delete found nothing
    occ.record("t", placed, known, gen)  # the write is acknowledged now
    assert occ.known("t", {minute}) is None  # read again, not trusted with the mark


def test_compaction_finds_the_minutes_holding_dict_points_without_walking_every_minute() -> None:
    """Compaction takes from an index of the minutes that hold points in dicts, not from a walk
    of the whole LRU (once the budget was full, every batch walked every minute held: 20,000
    live buckets, 43 ms a batch). Whatever mix of reads, writes, forgetting and eviction, that
    index holds exactly the held minutes with dict points, and the budget holds."""
    rng = random.Random(20)
    budget = 400 * CHUNK_POINTS
    occ = Occupancy(budget_points=budget, writer="me")
    for step in range(600):
        bucket = f"b{rng.randrange(30)}"
        minute = T0 // CHUNK_MS + rng.randrange(200)
        _, mine, _ = occ.claim(bucket, {minute}, now_ms=T0 + 300 * CHUNK_MS)
        base = minute * CHUNK_MS
        occ.fill(
            bucket, mine, [((base + rng.randrange(CHUNK_MS)) * NS, f"r{step}-{k}") for k in range(rng.randrange(3))]
        )
        known = occ.known(bucket, {minute})
        if known is not None and rng.random() < 0.7:
            events = [ev(f"e{step}-{k}", base + rng.randrange(CHUNK_MS)) for k in range(rng.randrange(1, 6))]
            occ.record(bucket, place(events, known.slots, CHUNK_MS), known, occ.generation(bucket))
        if rng.random() < 0.05:
            occ.forget(bucket, base, base + CHUNK_MS)
        occ.evict()
        assert occ.points <= budget
        held = set(occ._lru)
        assert set(occ._loose) <= held, step  # nothing dropped stays referenced
        assert {c for c in held if c.marks} <= set(occ._loose), step  # nothing compactable is missed


def test_intent_lines_carry_hostile_bucket_ids() -> None:
    line = intent_line("a b,c=d", Intent("w1", 123, 0, 60_000)).decode()
    assert line == 'eventsapi_writes,bucket_id=a\\ b\\,c\\=d m="w1 0 60000" 123\n'


# -- two processes on a real influxd ----------------------------------------------------------


@pytest.fixture
async def pair(influxd: Any, tmp_path: Path) -> AsyncIterator[tuple[InfluxQLStore, InfluxQLStore, str]]:
    db = "t_" + uuid.uuid4().hex[:12]
    influxd.query(f'CREATE DATABASE "{db}"')
    url = f"influxql://127.0.0.1:{influxd.port}/{db}"
    # A budget above the biggest run's points (EVENTSAPI_OCCUPANCY_EVENTS=1000000): a smaller one
    # is the third writer's. EVENTSAPI_OCCUPANCY_BUDGET sets another, to run the volume test
    # through compaction and eviction at scale (README, "Integrity").
    budget = int(os.environ.get("EVENTSAPI_OCCUPANCY_BUDGET", "40000000"))
    settings = Settings(data_dir=tmp_path, influx_memory_points=budget)
    a, b = InfluxQLStore.from_url(url, settings), InfluxQLStore.from_url(url, settings)
    await a.open()
    await b.open()
    try:
        yield a, b, url
    finally:
        await a.close()
        await b.close()


async def stored(store: InfluxQLStore, bucket: str) -> list[tuple[int, str, str, str]]:
    """Every point of the bucket: (at, id, name, data), oldest first."""
    out: list[tuple[int, str, str, str]] = []
    after = None
    while True:
        rows, after = await store.export(ExportQuery(bucket), after, 5000)
        out += [(e.at, e.id, e.name, bytes(e.data).decode()) for _, e in rows]
        if after is None:
            return out


async def test_another_writers_events_resends_and_deletes_are_seen(
    pair: tuple[InfluxQLStore, InfluxQLStore, str],
) -> None:
    a, b, _ = pair
    at = T0 + 17
    # B knows the minute (it wrote there), then A writes there: an event whose first slot is
    # the one B's next event will want, and an event B will be sent again.
    await b.ingest("bk", [ev("warm", at + 5)])
    await a.ingest("bk", [ev("evt-86", at, '{"by":"a"}'), ev("dup", at + 1, '{"first":true}')])
    await b.ingest("bk", [ev("evt-1291", at, '{"by":"b"}'), ev("dup", at + 1, '{"first":false}')])
    got = await stored(a, "bk")
    assert sorted(got) == sorted(
        [
            (at, "evt-86", "n", '{"by":"a"}'),
            (at, "evt-1291", "n", '{"by":"b"}'),
            (at + 1, "dup", "n", '{"first":true}'),
            (at + 5, "warm", "n", "{}"),
        ]
    )
    # A deletes the bucket; B remembered "dup" as stored, but must store it again now.
    await a.delete_all("bk")
    await b.ingest("bk", [ev("dup", at + 1, '{"again":true}')])
    assert await stored(a, "bk") == [(at + 1, "dup", "n", '{"again":true}')]


async def test_a_writer_reads_only_the_milliseconds_of_its_batch_where_another_is_writing(
    pair: tuple[InfluxQLStore, InfluxQLStore, str],
) -> None:
    """Two writers of one bucket in time order (workers, replicas without the proxy): each reads,
    of a minute the other is changing, the milliseconds of its batch, not the minute, and still
    sees the other's events there (a colliding slot, a re-send)."""
    a, b, _ = pair
    at = T0 + 20_000
    theirs = [ev(f"b{i}", at - 15_000 + i * 10) for i in range(1_500)]  # the 15 s before
    await b.ingest("hot", [*theirs, ev("evt-86", at, '{"by":"b"}'), ev("dup", at + 1, '{"first":true}')])
    reads: list[tuple[list[tuple[int, int]], int]] = []
    occupied = a._occupied

    async def spy(bucket: str, ranges: list[tuple[int, int]]) -> list[tuple[int, str]]:
        found = await occupied(bucket, ranges)
        reads.append((ranges, len(found)))
        return found

    a._occupied = spy  # type: ignore[method-assign]
    mine = [ev("evt-1291", at, '{"by":"a"}'), ev("dup", at + 1, '{"first":false}'), ev("a1", at + 300)]
    await a.ingest("hot", mine)
    assert reads == [([(at, at + 301)], 2)]  # b's two points there, not its 1,502 of the minute
    # Spread over the minute (more ranges than one read): the minute is read whole, and a day
    # ahead as for any minute read.
    reads.clear()
    await a.ingest("hot", [ev(f"s{k}", T0 + 3 + 2_000 * k) for k in range(READ_RANGES + 1)])
    assert sum(n for _, n in reads) == 1_504
    assert min(lo for ranges, _ in reads for lo, _ in ranges) == T0  # the whole minute
    got = await stored(a, "hot")
    assert len(got) == 1_502 + 2 + READ_RANGES + 1
    assert {(e[1], e[3]) for e in got if e[0] in (at, at + 1)} == {
        ("evt-86", '{"by":"b"}'),
        ("evt-1291", '{"by":"a"}'),
        ("dup", '{"first":true}'),
    }


async def test_a_writer_that_died_after_its_intent_is_waited_out(
    pair: tuple[InfluxQLStore, InfluxQLStore, str],
) -> None:
    a, b, _ = pair
    at = T0 + 40
    # A process recorded its intent and was killed before its write, which InfluxDB still
    # applies a little later (a request in flight): B, which read the minute in between, must
    # not trust what it read until the intent has settled.
    ghost = Intent("ghost", time.time_ns(), T0, T0 + CHUNK_MS)
    await a._write_lines(intent_line("bk", ghost))
    await b.ingest("bk", [ev("warm", at + 1)])  # B reads the minute: the ghost's point is not there yet
    late = ev("evt-86", at, '{"by":"ghost"}')
    await a._write_lines(("\n".join(render_lines("bk", place([late], Slots()))) + "\n").encode())
    await b.ingest("bk", [ev("evt-1291", at, '{"by":"b"}')])  # wants the ghost's point's slot
    assert {(e[1], e[3]) for e in await stored(b, "bk")} == {
        ("warm", "{}"),
        ("evt-86", '{"by":"ghost"}'),
        ("evt-1291", '{"by":"b"}'),
    }


async def test_a_successor_trusts_a_clean_close_at_once_and_waits_out_a_cut_off_write(
    influxd: Any, tmp_path: Path
) -> None:
    """A restarted process is another writer to its successor. After a clean close the
    successor reads the minute its predecessor wrote once, then trusts it (the predecessor
    recorded its retirement). After a close with a write cut off while still in flight (a relay
    holds it back, then passes it on), there is no retirement: the successor reads the minute
    again for every batch until the intent settles, and so finds the late point."""
    db = "t_" + uuid.uuid4().hex[:12]
    influxd.query(f'CREATE DATABASE "{db}"')
    engine = f"127.0.0.1:{influxd.port}"
    at = T0 + 40
    held: list[float] = [0.0]  # how long the relay holds back event writes (not intents)

    def hold(body: bytes) -> float:
        return 0.0 if body.startswith(INTENTS_MEASUREMENT.encode()) else held[0]

    async with relay(engine, hold_write=hold) as r:

        def store() -> InfluxQLStore:
            return InfluxQLStore.from_url(f"influxql://{r.address}/{db}", Settings(data_dir=tmp_path))

        def point_reads() -> int:
            return sum(1 for q in r.statements if q.startswith('SELECT "id"'))

        # A clean close, then its successor: the first batch reads the minute, the next none.
        first = store()
        await first.open()
        await first.ingest("clean", [ev("old", at)])
        await first.close()
        second = store()
        await second.open()
        before = point_reads()
        await second.ingest("clean", [ev("new-1", at + 1)])
        after_one = point_reads()
        await second.ingest("clean", [ev("new-2", at + 2)])
        assert after_one > before and point_reads() == after_one
        assert {e[1] for e in await stored(second, "clean")} == {"old", "new-1", "new-2"}
        await second.close()

        # A write cut off (its request still on the way), then close and a successor.
        first = store()
        await first.open()
        held[0] = 1.0
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first.ingest("cut", [ev("evt-86", at, '{"by":"first"}')]), 0.3)
        held[0] = 0.0
        await first.close()
        second = store()
        try:
            await second.open()
            await second.ingest("cut", [ev("warm", at + 1)])  # reads the minute: evt-86 is not there yet
            await r.until_landed(b"evt-86")  # the held write: evt-86 is there now
            await second.ingest("cut", [ev("evt-1291", at, '{"by":"second"}')])  # wants evt-86's slot
            assert {(e[1], e[3]) for e in await stored(second, "cut")} == {
                ("warm", "{}"),
                ("evt-86", '{"by":"first"}'),
                ("evt-1291", '{"by":"second"}'),
            }
        finally:
            await second.close()


async def test_a_batch_begun_while_an_intents_read_is_in_flight_waits_for_the_next_read(
    pair: tuple[InfluxQLStore, InfluxQLStore, str], influxd: Any, tmp_path: Path
) -> None:
    """Intents reads are shared (IntentReads), but a read already answered cannot serve a batch
    that began after it: another writer's intent may have been acknowledged in between. Here
    the answer to A's read is held on its way while B writes evt-86 (B's intent acknowledged
    first); A then sends evt-1291, whose first slot is evt-86's. Served by the held answer, A
    would not know B's minute changed and would overwrite evt-86."""
    _, b, url = pair
    engine = f"127.0.0.1:{influxd.port}"
    held = [0.0]
    async with relay(engine, hold_answer=lambda q: held[0] if INTENTS_MEASUREMENT in q else 0.0) as r:
        a = InfluxQLStore.from_url(url.replace(engine, r.address), Settings(data_dir=tmp_path))
        await a.open()
        try:
            await a.ingest("x", [ev("warm", T0)])  # A knows the minute, as it is now
            held[0] = 1.0
            first = asyncio.create_task(a.ingest("x", [ev("a1", T0 + 50_000)]))  # same minute, other ms
            async with asyncio.timeout(10):
                await r.holding.wait()  # the engine answered A's read; the answer is on its way
            held[0] = 0.0
            await b.ingest("x", [ev("evt-86", T0 + 5, '{"by":"b"}')])
            await asyncio.gather(first, a.ingest("x", [ev("evt-1291", T0 + 5, '{"by":"a"}')]))
        finally:
            await a.close()
    got = {(at, i): data for at, i, _, data in await stored(b, "x")}
    assert got[(T0 + 5, "evt-86")] == '{"by":"b"}' and got[(T0 + 5, "evt-1291")] == '{"by":"a"}'
    assert len(got) == 4


async def test_concurrent_small_batches_of_many_buckets_share_their_intents_reads(influxd: Any, tmp_path: Path) -> None:
    """40 buckets with a producer each (a PM2 host each, batches of a few events) sending at
    once: their batches read the intents of all 40 in one or two requests, not one each, and
    every event is stored."""
    db = "t_" + uuid.uuid4().hex[:12]
    influxd.query(f'CREATE DATABASE "{db}"')
    engine = f"127.0.0.1:{influxd.port}"
    async with relay(engine) as r:
        store = InfluxQLStore.from_url(f"influxql://{r.address}/{db}", Settings(data_dir=tmp_path))
        await store.open()
        try:
            buckets = [f"host {k}, =\\ ${{x}} |> '\"" for k in range(40)]  # hostile, all distinct
            for k, bucket in enumerate(buckets):  # each bucket's minutes read once, in turn
                await store.ingest(bucket, [ev(f"w{k}", T0)])

            def intent_reads() -> int:
                return sum(1 for q in r.statements if INTENTS_MEASUREMENT in q)

            before = intent_reads()
            assert before == 40
            await asyncio.gather(
                *(store.ingest(bucket, [ev(f"e{k}-{i}", T0 + i) for i in range(5)]) for k, bucket in enumerate(buckets))
            )
            assert intent_reads() - before <= 2, intent_reads() - before
            for k, bucket in enumerate(buckets):
                got = await stored(store, bucket)
                assert sorted(i for _, i, _, _ in got) == sorted([f"w{k}"] + [f"e{k}-{i}" for i in range(5)])
        finally:
            await store.close()


async def test_random_order_batches_from_three_writers_with_resends_and_restarts(
    pair: tuple[InfluxQLStore, InfluxQLStore, str],
) -> None:
    """Random-order batches over 2 days from three writers (one with a memory budget far below
    the bucket's size), re-sends through another writer, reused ids with other payloads, bursts
    in one millisecond, batches of a few seconds (where another writer is changing a minute,
    only their milliseconds are read), and restarts (a fresh memory): every (at, id) once,
    first write kept.

    EVENTSAPI_OCCUPANCY_WRITERS=1 EVENTSAPI_OCCUPANCY_RESTARTS=0 keeps one writer that never
    restarts (the bucket-affine deployment): the way to run it at 1,000,000 events, since a
    writer reads again, for every batch, the span another writer wrote in the last 2 minutes,
    and a restarted process is another writer to its successor."""
    a, b, url = pair
    n = int(os.environ.get("EVENTSAPI_OCCUPANCY_EVENTS", "60000"))
    restarts = float(os.environ.get("EVENTSAPI_OCCUPANCY_RESTARTS", "0.05"))  # per batch
    rnd = random.Random(int(os.environ.get("EVENTSAPI_OCCUPANCY_SEED", "20261203")))
    small = InfluxQLStore.from_url(url, replace(Settings(), influx_memory_points=2_000))
    await small.open()
    opened = [small]
    writers = [a, b, small][: int(os.environ.get("EVENTSAPI_OCCUPANCY_WRITERS", "3"))]
    oracle: dict[tuple[int, str], tuple[str, str]] = {}
    sent: list[tuple[int, list[NewEvent]]] = []  # (writer, batch)
    made = 0
    try:
        while made < n:
            kind = rnd.random()
            w = rnd.randrange(len(writers))
            if kind < 0.3 and sent:  # a re-send through another writer, whole or another payload
                first, batch = rnd.choice(sent)
                w = (first + 1 + rnd.randrange(len(writers) - 1)) % len(writers) if len(writers) > 1 else 0
                if kind < 0.2:
                    batch = [msgspec.structs.replace(e, data='{"reused":1}') for e in batch[:300]]
            elif kind < 0.35:  # a burst in one millisecond
                at = T0 + rnd.randrange(2 * 86_400_000)
                batch = [ev(f"burst{made}-{i}", at, f'{{"i":{i}}}') for i in range(rnd.choice([50, 500]))]
            elif kind < 0.6:  # a few seconds in time order: what only its milliseconds are read for
                at = T0 + rnd.randrange(2 * 86_400_000)
                batch = [
                    ev(f"e{made + i}", at + rnd.randrange(5_000), f'{{"i":{made + i}}}', rnd.choice("nmo"))
                    for i in range(rnd.randrange(100, 1000))
                ]
            else:
                batch = [
                    ev(f"e{made + i}", T0 + rnd.randrange(2 * 86_400_000), f'{{"i":{made + i}}}', rnd.choice("nmo"))
                    for i in range(rnd.randrange(100, 5000))
                ]
            for e in batch:
                oracle.setdefault((e.at, e.id), (e.name, e.data))
            await writers[w].ingest("vol", batch)
            sent.append((w, batch))
            made += len(batch)
            if rnd.random() < restarts:  # a restart: that writer forgets everything
                i = rnd.randrange(len(writers))
                if rnd.random() < 0.5:  # a clean stop (it retires), else as if killed
                    await writers[i].close()
                fresh = InfluxQLStore.from_url(
                    url, replace(Settings(), influx_memory_points=2_000 if i == 2 else a.occupancy.budget_points)
                )
                await fresh.open()
                opened.append(fresh)
                writers[i] = fresh
        got = await stored(writers[0], "vol")
    finally:
        for store in opened:
            await store.close()
    keys = [(at, i) for at, i, _, _ in got]
    assert len(keys) == len(set(keys)), "an (at, id) stored twice"
    assert {(at, i): (name, data) for at, i, name, data in got} == oracle


async def test_a_backfill_into_a_bucket_that_fits_the_memory_only_compacted_reads_it_once(
    pair: tuple[InfluxQLStore, InfluxQLStore, str], tmp_path: Path
) -> None:
    """60,000 points over 2 hours, already in the bucket (written straight to the engine),
    then random-order batches over those 2 hours, re-sends among them, from a process whose
    memory budget holds those points only compacted: the first batch reads the span, no later
    one reads anything, and every (at, id) is stored once, the first write kept. (Before
    compaction, the points went and came back: every batch read the span again.)"""
    a, _, url = pair
    engine = url.split("//", 1)[1].split("/", 1)[0]
    rnd = random.Random(4)
    span = 120 * CHUNK_MS
    history = [ev(f"h{i}", T0 + rnd.randrange(span), f'{{"h":{i}}}') for i in range(60_000)]
    for i in range(0, len(history), 5000):
        await a._write_lines(("\n".join(render_lines("big", place(history[i : i + 5000], Slots()))) + "\n").encode())
    chunks = 120 + 1441  # the span and the day read ahead of it
    deltas = 10 * 500 * DICT_POINT  # what 10 batches place, before any compaction
    budget = chunks * CHUNK_POINTS + len(history) + deltas + 20_000
    assert 120 * CHUNK_POINTS + len(history) * DICT_POINT > budget  # as dicts, the span's points do not fit
    oracle = {(e.at, e.id): e.data for e in history}
    async with relay(engine) as r:
        store = InfluxQLStore.from_url(
            url.replace(engine, r.address), replace(Settings(data_dir=tmp_path), influx_memory_points=budget)
        )
        await store.open()
        try:
            reads = []
            for b in range(10):
                batch = [ev(f"b{b}-{i}", T0 + rnd.randrange(span), f'{{"b":{b}}}') for i in range(450)]
                batch += [msgspec.structs.replace(e, data='{"again":1}') for e in rnd.sample(history, 50)]
                rnd.shuffle(batch)
                for e in batch:
                    oracle.setdefault((e.at, e.id), e.data)
                await store.ingest("big", batch)
                reads.append(sum(1 for q in r.statements if q.startswith('SELECT "id"')))
                assert store.occupancy.points <= budget
            assert reads[0] > 0 and reads[-1] == reads[0], reads
            got = await stored(store, "big")
        finally:
            await store.close()
    keys = [(at, i) for at, i, _, _ in got]
    assert len(keys) == len(set(keys)) == len(oracle)
    assert {(at, i): data for at, i, _, data in got} == oracle


def test_a_writer_reuses_its_intent_only_while_its_writes_can_land_within_it() -> None:
    now = 10**18
    for timeout_s, reused_at in ((10, 99), (60, 49), (200, None)):
        occ = Occupancy(writer="me", write_timeout_s=timeout_s)
        occ.recorded("b", occ.own_intent("b", 0, CHUNK_MS, now))
        for s in (1, 49, 99, 101):
            # Reused while 120 s - the store timeout - 10 s have not passed: its writes land in time.
            expect = reused_at is not None and s <= reused_at
            assert occ.covering("b", 0, CHUNK_MS, now + s * 10**9) is expect, (timeout_s, s)
        assert not occ.covering("b", 0, 2 * CHUNK_MS, now)  # a wider span needs a new intent


async def test_an_engine_answering_json_reads_the_same_points(
    pair: tuple[InfluxQLStore, InfluxQLStore, str], tmp_path: Path
) -> None:
    # InfluxDB 3's v1 API (and 1.x before 1.4) answers JSON whatever is asked: the same
    # influxd, behind a relay that drops the MessagePack Accept header, must read the same.
    a, _, url = pair
    engine = url.split("//", 1)[1].split("/", 1)[0]
    await a.ingest("bk", [ev(f"e{i}", T0 + i % 7, f'{{"i":{i}}}') for i in range(50)])
    async with relay(engine, drop_accept=True) as r:
        relayed = InfluxQLStore.from_url(url.replace(engine, r.address), Settings(data_dir=tmp_path))
        try:
            await relayed.open()
            direct = sorted(await a._occupied("bk", [(T0, T0 + CHUNK_MS)]))
            assert len(direct) == 50
            assert sorted(await relayed._occupied("bk", [(T0, T0 + CHUNK_MS)])) == direct
            assert r.answer_types and all(c.startswith("application/json") for c in r.answer_types)
            # A statement the engine refuses: its error, not a decoding failure.
            with pytest.raises(StoreUnavailable, match="query error"):
                await relayed.query_many("SELECT id FROM events; SELECT id FROM events GROUP BY time(1m)")
        finally:
            await relayed.close()
