"""Per-bucket limits on distinct event names, apps and servers.

On InfluxDB every distinct value is a tag value, and InfluxDB 1.x refuses new values of a tag
past `max-values-per-tag` (100,000 by default) for the whole database: one bucket with too many
names would make every bucket's new names fail. Each bucket therefore gets its own, lower
limits, enforced the same way on every store: an event that would bring a new value past its
bucket's limit is rejected on its own, with the reason, and the rest of the batch is stored.

The values a bucket holds are read from the store (`Store.tag_sets`) and kept per process;
values admitted here are added at once (before the write), so concurrent ingests of one
process cannot overshoot. Other replicas' additions and deletes are seen when the cache is
refreshed: every REFRESH_S, and before any rejection (at most once per RECHECK_S). Across
replicas a limit can therefore be exceeded by what the others admit in between. A bucket's
values older than REFRESH_S are dropped (they would be read again anyway), so a process that
sees ever new buckets holds only those of the last REFRESH_S, not all it ever saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from eventsapi.stores.base import Store
from eventsapi.values import NewEvent

REFRESH_S = 60.0
RECHECK_S = 5.0
KINDS = ("event names", "apps", "servers")


@dataclass
class _Known:
    sets: tuple[set[str], set[str], set[str]]
    loaded: float


class CardinalityGuard:
    def __init__(
        self, store: Store, names: int, apps: int, servers: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.limits = (names, apps, servers)
        self._clock = clock
        self._known: dict[str, _Known] = {}
        self._swept = clock()

    def __len__(self) -> int:
        """How many buckets' values are held."""
        return len(self._known)

    def forget(self, bucket: str) -> None:
        """The bucket's values changed under us (a delete): read them again next time."""
        self._known.pop(bucket, None)

    async def _load(self, bucket: str) -> _Known:
        known = _Known(await self.store.tag_sets(bucket), self._clock())
        self._known[bucket] = known
        return known

    async def check(
        self, bucket: str, events: list[NewEvent], values: tuple[set[str], set[str], set[str]] | None = None
    ) -> dict[int, str]:
        """Positions in `events` that must be rejected, with the reason. `values`: the events'
        distinct (names, apps, servers), when the caller has them."""
        now = self._clock()
        if now - self._swept > REFRESH_S:
            self._swept = now
            self._known = {b: k for b, k in self._known.items() if now - k.loaded <= REFRESH_S}
        known = self._known.get(bucket)
        if known is None or now - known.loaded > REFRESH_S:
            known = await self._load(bucket)
        batch = values or ({e.name for e in events}, {e.app for e in events}, {e.server for e in events})
        new = [b - k for b, k in zip(batch, known.sets, strict=True)]
        if not any(new):
            return {}
        if all(len(k) + len(n) <= lim for k, n, lim in zip(known.sets, new, self.limits, strict=True)):
            for k, n in zip(known.sets, new, strict=True):
                k |= n
            return {}
        if self._clock() - known.loaded > RECHECK_S:
            known = await self._load(bucket)  # another replica may have deleted since
        # Event by event, in order: the first new values fill what room is left.
        rejected: dict[int, str] = {}
        for pos, e in enumerate(events):
            own = (e.name, e.app, e.server)
            for kind, (value, seen, limit) in enumerate(zip(own, known.sets, self.limits, strict=True)):
                if value not in seen and len(seen) >= limit:
                    rejected[pos] = (
                        f"bucket already holds {limit} distinct {KINDS[kind]} (the limit); {value!r} would be one more"
                    )
                    break
            else:
                for value, seen in zip(own, known.sets, strict=True):
                    seen.add(value)
        return rejected
