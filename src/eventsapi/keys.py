"""Ingest keys: long-lived, revocable credentials for producers (docs/api.md §3.1).

A key reads `eak_<id>_<secret>`: a 16-hex-digit id (shown by `eventsapi keys list`) and 43
characters of URL-safe base64 (256 random bits). The store keeps the id, the SHA-256 of the
whole key and what it grants, never the key: a reader of the store cannot use what it reads.
With 256 bits of entropy a fast hash is enough (there is nothing to brute-force), and the
digest is compared in constant time.

Every process caches what it read of a key for at most CACHE_S, so a revocation written by
`eventsapi keys revoke` (or any replica) reaches every worker and replica within that time,
with no restart and nothing shared but the store. "Last used" is written in the background,
at most once per TOUCH_S per key and process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventsapi.stores.base import Store

log = logging.getLogger("eventsapi.keys")

PREFIX = "eak_"
KEY_RE = re.compile(r"eak_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")
CACHE_S = 5.0  # revocation reaches every process within this (docs/api.md: 10 s)
TOUCH_S = 60.0
RENEW_S = 6 * 3600.0  # at most; a quarter of the retention when that is shorter
CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the store keeps of a key. Times are epoch milliseconds."""

    key_id: str
    name: str
    digest: str  # hex SHA-256 of the whole key
    buckets: tuple[str, ...]
    scope: str
    created: int
    last_used: int | None = None
    revoked: int | None = None


def new_key(name: str, buckets: list[str], scope: str, now_ms: int) -> tuple[str, KeyRecord]:
    """A fresh key and the record to store for it."""
    key_id = secrets.token_hex(8)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key, KeyRecord(key_id, name, digest(key), tuple(buckets), scope, now_ms)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id of a well-formed key, else None (then nothing is looked up)."""
    m = KEY_RE.fullmatch(key)
    return m.group(1) if m else None


def matches(record: KeyRecord, key: str) -> bool:
    return hmac.compare_digest(record.digest, digest(key))


class Keyring:
    """The keys one process knows, read from the store and cached for at most CACHE_S."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[KeyRecord | None, float]] = {}
        self._touched: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def lookup(self, key_id: str) -> KeyRecord | None:
        """The stored record (None: unknown), at most CACHE_S old."""
        hit = self._cache.get(key_id)
        now = time.monotonic()
        if hit is not None and now - hit[1] < CACHE_S:
            return hit[0]
        found = await self.store.keys(key_id)
        record = found[0] if found else None
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()  # unknown ids sprayed at the service must not grow memory
        self._cache[key_id] = (record, now)
        return record

    def touch(self, key_id: str) -> None:
        """Record a use, in the background and at most once per TOUCH_S: a request never
        waits for it, and a failure to write it costs nothing but the figure."""
        now = time.monotonic()
        if now - self._touched.get(key_id, -TOUCH_S) < TOUCH_S:
            return
        self._touched[key_id] = now
        task = asyncio.get_running_loop().create_task(self._touch(key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, key_id: str) -> None:
        try:
            await self.store.key_touch(key_id, int(time.time() * 1000))
        except Exception as exc:
            log.debug("could not record the use of key %s: %s", key_id, exc)

    async def renew_forever(self) -> None:
        """Where the store's retention would expire key records, rewrite them in time."""
        delay = 60.0  # the first turn soon after start-up
        while True:
            await asyncio.sleep(delay)
            delay = RENEW_S
            try:
                days = await self.store.retention_days()
                if days is not None:
                    await self.store.keys_renew()
                    delay = min(RENEW_S, days * 86_400 / 4)
            except Exception as exc:
                log.warning("could not renew the ingest key records: %s", exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
