"""Alerts on events (docs/api.md §5.13): rules from a JSON file, evaluated on the live tail,
each firing delivered to its webhook once, across workers, replicas and restarts.

Exactly once rests on the rule every store keeps — an event is its bucket, `at` and id, and
the first write of one wins — applied to records in the reserved bucket `eventsapi.alerts`:

- Every process evaluates every rule on the same events (the live tail gives each the same
  ingest order) and computes the same firings, each at a time `t` every process agrees on: the
  `at` of the event that brought the count to the threshold, or `last firing + cooldown` when
  the count is still at or above it then. Each process writes the firing (id `RULE@t`, with
  its own name in the payload); the one whose write is stored owns attempt 0.
- Delivery attempt k of a firing is due at a time every process computes alike; a process
  claims it by writing `RULE@t#k` and reading back whose claim was stored — after the store's
  `race_settle_s`, when a racing write of the same record has landed. Only that one sends.
  `RULE@t#ok` records success. Every process looks for due attempts every few seconds, so a
  delivery whose sender died is taken over, and nothing is forgotten by a restart.
- The body of every attempt is the one stored with the firing: the same bytes, signature and
  `X-Eventsapi-Delivery` id on every retry, so a receiver can drop a repeat.

On InfluxDB the later of two racing writes of one record replaces the earlier (no
compare-and-set): claims are read back 2 s after the write, so every process reads the same
winner unless a racing write lands later still (docs/influx.md); a receiver that drops
repeated delivery ids is safe from that too.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from eventsapi.alert_rules import RESERVED_BUCKET, Rule, RuleFile, human
from eventsapi.errors import StoreError
from eventsapi.stores.base import Store, export_pages
from eventsapi.tail import Dropped, TailHub
from eventsapi.values import EventQuery, ExportQuery, NewEvent, StoredEvent, TailQuery

log = logging.getLogger("eventsapi.alerts")
BUCKET = RESERVED_BUCKET  # where firings and delivery attempts are recorded
# Retries: 2 s, 4 s, ... doubling to 5 min between attempts, for 1 h 15 min in all.
RETRY_BASE_MS, RETRY_CAP_MS, RETRY_FOR_MS = 2_000, 300_000, 4_500_000
SCAN_S = 2.0  # how often each process looks for due attempts and cooldowns that ended
ORPHAN_MS = 15_000  # an attempt with no outcome this long after it was due (a POST gives up after 10 s)


def retry_due(t: int, attempt: int) -> int:
    """When attempt `attempt` (0 = the first) of the firing at `t` is due."""
    due, gap = t, RETRY_BASE_MS
    for _ in range(attempt):
        due += gap
        gap = min(gap * 2, RETRY_CAP_MS)
    return due


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class RuleState:
    rule: Rule
    seen: list[tuple[int, str]] = field(default_factory=list)  # (at, id) of matching events, ascending
    last_fired: int | None = None
    delivery: dict[str, Any] = field(default_factory=dict)  # status of the last firing's delivery

    def count(self, until: int) -> int:
        """Matching events with `at` in (until - window, until]."""
        lo = bisect.bisect_left(self.seen, (until - self.rule.window_ms + 1, ""))
        return bisect.bisect_left(self.seen, (until + 1, "")) - lo

    def add(self, at: int, event_id: str, now: int) -> bool:
        """Count an event once (the seed and the tail may both bring it); whether it is new."""
        key = (at, event_id)
        i = bisect.bisect_left(self.seen, key)
        if i < len(self.seen) and self.seen[i] == key:
            return False
        self.seen.insert(i, key)
        # Only whether the count reaches the threshold matters: the newest 2 x threshold + 100
        # events within window + cooldown decide it, whatever the event's rate.
        keep = (now - self.rule.window_ms - self.rule.cooldown_ms, "")
        cut = max(bisect.bisect_left(self.seen, keep), len(self.seen) - (2 * self.rule.threshold + 100))
        if cut > 0:
            del self.seen[:cut]
        return True

    def status(self, now: int) -> str:
        if self.last_fired is not None and now < self.last_fired + self.rule.cooldown_ms:
            return "cooling down"
        return "firing" if self.count(now) >= self.rule.threshold else "ok"


class Counters:
    """What /metrics shows of alerts (set by the app: prometheus counters and a gauge)."""

    def __init__(self, fired: Any, delivered: Any, failed: Any, retrying: Any) -> None:
        self.fired, self.delivered, self.failed, self.retrying = fired, delivered, failed, retrying


class AlertEngine:
    """The alerts of one process: its rules' state, fed by the live tail; firings recorded and
    delivered as the module docstring says."""

    def __init__(
        self, store: Store, hub: TailHub, rules: RuleFile, secret: str | None, counters: Counters | None = None
    ) -> None:
        self.store, self.hub, self.file, self.secret, self.counters = store, hub, rules, secret, counters
        self.me = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.states: dict[str, RuleState] = {}
        self._by_key: dict[tuple[str, str, str | None], list[RuleState]] = {}
        self._feeds: dict[str, asyncio.Task[None]] = {}
        self._sending: set[str] = set()
        self._http: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        """Until cancelled: reload rules, follow their buckets, fire, deliver."""
        try:
            while True:
                try:
                    if self.file.poll() or (not self.states and self.file.rules):
                        await self._load()
                    await self._tick(int(time.time() * 1000))
                except StoreError as exc:
                    log.warning("alerts: the store failed, trying again: %s", exc)
                except Exception:
                    log.exception("alerts: evaluation failed, trying again")
                await asyncio.sleep(SCAN_S)
        finally:
            for task in self._feeds.values():
                task.cancel()
            if self._http is not None:
                await self._http.close()

    # -- rules and their state -------------------------------------------------------------

    async def _load(self) -> None:
        # Each bucket is followed from where its tail stood *before* the rules were seeded from
        # the store: an event ingested in between comes both ways, and is counted once.
        for task in self._feeds.values():
            task.cancel()
        self._feeds = {}
        positions = {}
        for bucket in {r.bucket for r in self.file.rules}:
            _, positions[bucket] = await self.store.tail(TailQuery(bucket), None, 1)
        now = int(time.time() * 1000)
        states: dict[str, RuleState] = {}
        for rule in self.file.rules:
            old = self.states.get(rule.name)
            state = RuleState(rule, delivery=old.delivery if old else {})
            rows = await self.store.retrieve(
                EventQuery(rule.bucket, rule.event_name, rule.app_name, rule.server_name,
                           limit=rule.threshold, start=now - rule.window_ms - rule.cooldown_ms)
            )  # fmt: skip
            for e in rows:
                state.add(e.at, e.id, now)
            fired = await self.store.retrieve(EventQuery(BUCKET, "fired", rule.name, limit=1))
            state.last_fired = fired[0].at if fired else None
            states[rule.name] = state
        self.states = states
        self._by_key = {}
        for state in states.values():
            r = state.rule
            self._by_key.setdefault((r.bucket, r.event_name, r.app_name), []).append(state)
        for bucket, position in positions.items():
            self._feeds[bucket] = asyncio.create_task(self._follow(bucket, position))

    async def _follow(self, bucket: str, after: str) -> None:
        while True:
            try:
                async with self.hub.open(f"alerts:{bucket}", TailQuery(bucket), after) as sub:
                    async for batch in sub:
                        if batch:
                            after = batch[-1][0]
                            await self._arrived(bucket, [e for _, e in batch])
                    if sub.ended:
                        return
            except Dropped:
                continue  # resume from `after`
            except Exception:  # an alert feed must outlive any one failure; say what it was
                log.exception("alerts: following bucket %s failed, again in 1 s", bucket)
                await asyncio.sleep(1)

    async def _arrived(self, bucket: str, events: Sequence[StoredEvent]) -> None:
        # Rules are looked up by (bucket, event name, app or any): an event costs only the rules
        # that may match it.
        now = int(time.time() * 1000)
        by_key = self._by_key
        for e in events:
            for state in (*by_key.get((bucket, e.name, e.app), ()), *by_key.get((bucket, e.name, None), ())):
                rule = state.rule
                if rule.server_name is not None and e.server != rule.server_name:
                    continue
                if e.at <= now - rule.window_ms or not state.add(e.at, e.id, now):
                    continue
                cooled = state.last_fired is None or e.at >= state.last_fired + rule.cooldown_ms
                if cooled and state.count(e.at) >= rule.threshold:
                    await self._fire(state, e.at)

    async def _tick(self, now: int) -> None:
        for state in list(self.states.values()):
            if state.last_fired is not None:
                t = state.last_fired + state.rule.cooldown_ms
                if t <= now and state.count(t) >= state.rule.threshold:
                    await self._fire(state, t)  # still at or above when the cooldown ended
        await self._deliver_due(now)

    # -- firing and delivery ---------------------------------------------------------------

    async def _fire(self, state: RuleState, t: int) -> None:
        rule = state.rule
        state.last_fired = t
        newest = await self.store.retrieve(
            EventQuery(rule.bucket, rule.event_name, rule.app_name, rule.server_name, limit=5, end=t + 1)
        )
        count = state.count(t)
        body = {
            "rule": rule.name, "bucket": rule.bucket, "event_name": rule.event_name, "app_name": rule.app_name,
            "server_name": rule.server_name, "count": count, "threshold": rule.threshold,
            "window_start": t - rule.window_ms, "window_end": t, "fired_at": int(time.time() * 1000),
            "events": msgspec.json.decode(msgspec.json.encode(newest)),  # as retrieve answers them
            "text": f"eventsapi: {rule.name}: {count} x {rule.event_name}"
                    + (f" from {rule.app_name}" if rule.app_name else "")
                    + f" in bucket {rule.bucket} within {human(rule.window_ms)} (threshold {rule.threshold})",
        }  # fmt: skip
        fid = f"{rule.name}@{t}"
        if await self._claim(NewEvent(fid, "fired", rule.name, "", t, json.dumps({"by": self.me, "body": body}))):
            if self.counters:
                self.counters.fired.inc()
            log.info("alert %s fired (%d events); delivering %s", rule.name, count, fid)
            await self._attempt(state, fid, t, 0)

    async def _claim(self, record: NewEvent) -> bool:
        """Write a record; whether this process's write is the one stored. Read back once any
        racing write of the same record has landed (Store.race_settle_s: on InfluxDB the later
        of two racing writes replaces the earlier), so every claimant reads the same winner."""
        await self.store.ingest(BUCKET, [record])
        await asyncio.sleep(self.store.race_settle_s)
        stored = await self._stored(record.name, record.app, record.at, record.id)
        return stored is not None and msgspec.json.decode(stored.data).get("by") == self.me

    async def _deliver_due(self, now: int) -> None:
        """Find the firings of the last RETRY_FOR_MS not yet delivered, and claim the attempts
        that are due (taken over from whichever process began them)."""
        if not self.states:
            return
        start = now - RETRY_FOR_MS - 60_000
        fired = await self._records("fired", start)
        if not fired:
            return
        done = {r.id.rsplit("#", 1)[0]: r for r in await self._records("delivered", start)}
        gave_up = {r.id.rsplit("#", 1)[0] for r in await self._records("gave-up", start)}
        attempts: dict[str, int] = {}
        for r in await self._records("attempt", start):
            fid, index = r.id.rsplit("#", 1)
            attempts[fid] = max(attempts.get(fid, 0), int(index) + 1)
        failed = {r.id.rsplit("#", 1)[0] for r in await self._records("failed", start)}
        retrying = 0
        for f in fired:
            state = self.states.get(f.app)
            if f.id in done:
                if state is not None and state.last_fired == f.at:
                    state.delivery = msgspec.json.decode(done[f.id].data)
                continue
            if f.id in gave_up or state is None:
                continue
            retrying += 1
            k = attempts.get(f.id, 0)
            if state.last_fired == f.at and state.delivery.get("status") != "retrying":
                state.delivery = {"status": "retrying" if k else "pending", "attempts": k}
            if now - f.at > RETRY_FOR_MS:
                await self.store.ingest(BUCKET, [NewEvent(f"{f.id}#gave-up", "gave-up", f.app, "", f.at, "{}")])
                log.error("alert %s: gave up delivering %s after %d attempts", f.app, f.id, k)
                continue
            # Attempt k is due once attempt k-1 is known to have failed; if its sender vanished
            # without a word (its POST gives up after 10 s), ORPHAN_MS after it was due.
            if k == 0:
                due = f.at + ORPHAN_MS
            elif f"{f.id}#{k - 1}" in failed:
                due = retry_due(f.at, k)
            else:
                due = retry_due(f.at, k - 1) + ORPHAN_MS
            if due <= now and f.id not in self._sending:
                await self._attempt(state, f.id, f.at, k)
        if self.counters:
            self.counters.retrying.set(retrying)

    async def _records(self, name: str, start: int) -> list[StoredEvent]:
        """Every record of one kind from `start` on."""
        q = ExportQuery(BUCKET, name, start=start)
        return [e async for rows, _ in export_pages(self.store, q, size=1000) for _, e in rows]

    async def _stored(self, name: str, rule: str, at: int, record_id: str) -> StoredEvent | None:
        """The stored record with this id (its millisecond read back), if any."""
        rows = await self.store.retrieve(EventQuery(BUCKET, name, rule, limit=1000, start=at, end=at + 1))
        return next((r for r in rows if r.id == record_id), None)

    async def _attempt(self, state: RuleState, fid: str, t: int, k: int) -> None:
        rule = state.rule
        claim = NewEvent(f"{fid}#{k}", "attempt", rule.name, "", retry_due(t, k), json.dumps({"by": self.me}))
        if not await self._claim(claim):
            return
        firing = await self._stored("fired", rule.name, t, fid)
        if firing is None:
            return
        body = msgspec.json.encode(msgspec.json.decode(firing.data)["body"])
        self._sending.add(fid)
        try:
            status = await self._post(rule.webhook, fid, body)
        finally:
            self._sending.discard(fid)
        if status is not None and 200 <= status < 300:
            result = {"status": "delivered", "attempts": k + 1, "http_status": status, "at": int(time.time() * 1000)}
            await self.store.ingest(BUCKET, [NewEvent(f"{fid}#ok", "delivered", rule.name, "", t, json.dumps(result))])
            state.delivery = result
            if self.counters:
                self.counters.delivered.inc()
            log.info("alert %s: %s delivered (attempt %d, HTTP %d)", rule.name, fid, k + 1, status)
        else:
            state.delivery = {"status": "retrying", "attempts": k + 1, "http_status": status}
            failure = NewEvent(f"{fid}#{k}", "failed", rule.name, "", retry_due(t, k), json.dumps({"status": status}))
            await self.store.ingest(BUCKET, [failure])
            if self.counters:
                self.counters.failed.inc()
            log.warning("alert %s: attempt %d of %s failed (%s); next in %d s", rule.name, k + 1, fid,
                        status or "no answer", (retry_due(t, k + 1) - retry_due(t, k)) // 1000)  # fmt: skip

    async def _post(self, url: str, delivery: str, body: bytes) -> int | None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return await post_webhook(self._http, url, delivery, body, self.secret)

    def describe(self, bucket: str) -> list[dict[str, Any]]:
        """The bucket's rules and their state (GET .../alerts)."""
        now = int(time.time() * 1000)
        out = []
        for s in self.states.values():
            r = s.rule
            if r.bucket != bucket:
                continue
            out.append({
                "name": r.name, "event_name": r.event_name, "app_name": r.app_name, "server_name": r.server_name,
                "threshold": r.threshold, "window": human(r.window_ms), "cooldown": human(r.cooldown_ms),
                "state": s.status(now), "count": s.count(now), "last_fired": s.last_fired,
                "last_delivery": s.delivery or None,
            })  # fmt: skip
        return out


async def post_webhook(
    http: aiohttp.ClientSession, url: str, delivery: str, body: bytes, secret: str | None
) -> int | None:
    """POST a notification; the webhook's status, or None if it did not answer (10 s)."""
    headers = {"Content-Type": "application/json", "X-Eventsapi-Delivery": delivery}
    if secret:
        headers["X-Eventsapi-Signature"] = sign(secret, body)
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
        async with http.post(url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status
    return None


async def send_test(rule: Rule, secret: str | None) -> tuple[int | None, str]:
    """`eventsapi alerts test RULE`: one notification marked as a test, to the rule's webhook."""
    delivery = f"{rule.name}@test-{uuid.uuid4().hex[:12]}"
    now = int(time.time() * 1000)
    body = msgspec.json.encode({
        "rule": rule.name, "bucket": rule.bucket, "event_name": rule.event_name, "app_name": rule.app_name,
        "server_name": rule.server_name, "count": 0, "threshold": rule.threshold, "window_start": now - rule.window_ms,
        "window_end": now, "fired_at": now, "events": [], "test": True,
        "text": f"eventsapi: test notification for rule {rule.name} (bucket {rule.bucket})",
    })  # fmt: skip
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        return await post_webhook(http, rule.webhook, delivery, body, secret), delivery
