"""One ingest, from a validated-to-be body to the answer: validation (validation.py), the
store's retention, the per-bucket cardinality limits, the durable write, the counters. The
HTTP handler only authorises, reads the body and encodes what this returns.

Also the store's retention as the service knows it (read once the store answers), which
`/readyz` reports too, and the bound every store call runs under.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from eventsapi import wire
from eventsapi.cardinality import CardinalityGuard
from eventsapi.config import Settings
from eventsapi.errors import RETRY_AFTER, StoreUnavailable
from eventsapi.ingest_rules import parse_ingest
from eventsapi.observability import Metrics
from eventsapi.stores.base import Store

log = logging.getLogger("eventsapi")
T = TypeVar("T")


async def store_call(coro: Awaitable[T], timeout: float, metrics: Metrics) -> T:
    """Bound a store call by EVENTSAPI_STORE_TIMEOUT: an outage answers 503, never hangs."""
    try:
        async with asyncio.timeout(timeout):
            return await coro
    except TimeoutError:
        metrics.store_errors.labels("timeout").inc()
        raise StoreUnavailable("store timed out") from None


@dataclass
class Retention:
    """How long the store keeps events, as last read from it (None: for ever, or unknown)."""

    days: float | None = None
    known: bool = False
    next_try: float = 0.0  # monotonic time before which a failed read is not tried again

    def cutoff_ms(self, now_ms: int) -> int | None:
        return None if self.days is None else now_ms - int(self.days * 86_400_000)

    def describe(self) -> str:
        return "for ever" if self.days is None else f"{self.days:g} days"

    async def read(self, store: Store, settings: Settings) -> None:
        """Read the store's retention once it answers (at start-up, or later if it was not
        reachable then, at most every RETRY_AFTER seconds): log it, and warn when it differs
        from EVENTSAPI_RETENTION_DAYS (on InfluxDB the engine's retention policy applies)."""
        if self.known or time.monotonic() < self.next_try:
            return
        try:
            async with asyncio.timeout(settings.store_timeout):
                self.days = await store.retention_days()
        except (StoreUnavailable, TimeoutError) as exc:
            self.next_try = time.monotonic() + float(RETRY_AFTER)
            log.warning("could not read the store's retention: %s", exc)
            return
        self.known = True
        log.info("store %s keeps events %s", store.name, self.describe())
        if settings.retention_days is not None and self.days != settings.retention_days:
            log.warning(
                "EVENTSAPI_RETENTION_DAYS=%g but the store keeps events %s; set the engine's retention to match "
                "(docs/influx.md)",
                settings.retention_days,
                self.describe(),
            )


@dataclass
class Ingest:
    """What an ingest needs of the process: built once per app."""

    store: Store
    guard: CardinalityGuard
    retention: Retention
    settings: Settings
    metrics: Metrics

    async def __call__(self, bucket: str, body: bytes, ndjson: bool) -> wire.IngestResult:
        """Validate, check, store and count one request's events; the answer once the store
        confirmed the write."""
        now_ms = int(time.time() * 1000)
        batch = parse_ingest(body, ndjson, self.settings.max_events, now_ms)
        await self.retention.read(self.store, self.settings)
        cutoff = self.retention.cutoff_ms(now_ms)
        if cutoff is not None and batch.events:
            reason = f"at is older than the retention ({self.retention.describe()})"
            old = {i: reason for i, e in enumerate(batch.events) if e.at < cutoff}
            if old:
                batch.reject(old)
        timeout = self.settings.store_timeout
        if batch.events:
            over = await store_call(self.guard.check(bucket, batch.events, batch.values), timeout, self.metrics)
            if over:
                batch.reject(over)
        if batch.events:
            await store_call(self.store.ingest(bucket, batch.events), timeout, self.metrics)
        self.metrics.ingested.inc(len(batch.events))
        self.metrics.rejected.inc(len(batch.rejected))
        return wire.IngestResult(len(batch.events), batch.rejected)
