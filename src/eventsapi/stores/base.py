"""The store interface every engine implements. The errors stores raise are errors.py's
(StoreError and its kinds), re-exported here for the stores."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING

from eventsapi.errors import MillisecondFull, NotSupported, StoreError, StoreUnavailable
from eventsapi.keys import KeyRecord
from eventsapi.values import (
    DeleteScope,
    EventQuery,
    ExportPosition,
    ExportQuery,
    GroupTag,
    NewEvent,
    StatsQuery,
    StoredEvent,
    TailQuery,
)

if TYPE_CHECKING:
    from eventsapi.config import Settings

__all__ = [
    "MillisecondFull",
    "NotSupported",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "export_pages",
    "group_by_app",
]


def group_by_app(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(app, event name) pairs as eventsKeysByApp answers them: apps sorted, names sorted, no
    duplicates."""
    out: dict[str, list[str]] = {}
    for app, name in sorted(set(pairs)):
        out.setdefault(app, []).append(name)
    return list(out.items())


async def export_pages(
    store: Store, q: ExportQuery, after: ExportPosition | None = None, size: int = 5_000
) -> AsyncIterator[tuple[list[tuple[ExportPosition, StoredEvent]], ExportPosition | None]]:
    """Every event of `q`, oldest first, a page at a time (Store.export): (rows, where the next
    page starts; None after the last). Memory stays one page whatever the size."""
    while True:
        rows, after = await store.export(q, after, size)
        yield rows, after
        if after is None:
            return


class Store(abc.ABC):
    """One engine. All methods are coroutines that never block the event loop."""

    name: str
    # How long after a write is acknowledged another process's racing write of the same
    # (at, id) may still land and replace it: 0 where one transaction checks and writes, so
    # the first write wins at once. Processes that must agree on which write stands
    # (alerts.py) read it back only after this long.
    race_settle_s: float = 0.0
    # Whether ingest goes much faster when one process writes each bucket (the InfluxDB stores'
    # occupancy memory): then the workers of `serve --workers N` pass a bucket's ingest to the
    # one that owns it (peers.py).
    one_writer_per_bucket: bool = False

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str, settings: Settings) -> Store:
        """The store a `--store` URL of its scheme names (stores/__init__.py); ValueError for a
        URL it cannot use, with the form it expects."""

    def start_problem(self) -> str | None:
        """Why the service cannot start with this store, if the operator must fix something
        first (an embedded engine's file); None otherwise. A network engine that does not
        answer yet is no such reason: the service starts and answers 503 until it does."""
        return None

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and prepare the schema; raise StoreUnavailable if the engine is not there."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending work and release connections."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the engine answers now."""

    @abc.abstractmethod
    async def ingest(self, bucket: str, events: Sequence[NewEvent]) -> None:
        """Store events durably; return only once the engine confirmed the write.

        An event whose id is already stored in the bucket must not create a second event.
        """

    @abc.abstractmethod
    async def retrieve(self, query: EventQuery) -> list[StoredEvent]:
        """Events ordered by (at, id) descending, after `query.after` if given."""

    @abc.abstractmethod
    async def stats(self, query: StatsQuery) -> list[int]:
        """One count per window of `query.starts`."""

    @abc.abstractmethod
    async def stats_groups(self, query: StatsQuery, tag: GroupTag) -> list[tuple[str, int, int]]:
        """The histogram's events counted per value of `tag` and per engine window
        (windows.engine_step, UTC, labelled by its start in ms): (value, start, count), only
        the non-zero ones, in any order. breakdown.py adds them up into `query`'s windows."""

    @abc.abstractmethod
    async def export(
        self, q: ExportQuery, after: ExportPosition | None, limit: int
    ) -> tuple[list[tuple[ExportPosition, StoredEvent]], ExportPosition | None]:
        """Up to `limit` events of `q` after position `after`, oldest first (`at` ascending;
        events of one millisecond in an order of the store's that never changes), each with
        its position; and where to go on from (None: nothing is left). Every page reads a
        bounded part of the history: an export of any size runs in constant memory."""

    def export_position_valid(self, position: ExportPosition) -> bool:
        """Whether a client's resume position could have been issued by this store."""
        return True

    async def size(self, bucket: str) -> int | None:
        """About how many events the bucket holds (a progress bar's total); None: unknown."""
        return None

    @abc.abstractmethod
    async def tail(self, q: TailQuery, after: str | None, limit: int) -> tuple[list[tuple[str, StoredEvent]], str]:
        """Up to `limit` events ingested after position `after`, in ingest order, each with its
        position, and the position to continue from. `after=None`: no events, only the
        position of "now". Positions compare as strings in ingest order."""

    position_pattern = r"\d{20}"  # what a position of this store looks like

    def position_ahead(self, position: str, newest: str) -> bool:
        """Whether a client's resume position lies past `newest`, the tail's position now: no
        position this store issued can."""
        return position > newest

    @abc.abstractmethod
    async def buckets(self) -> list[str]:
        """Every bucket that holds events, sorted."""

    @abc.abstractmethod
    async def keys_by_app(self, bucket: str) -> list[tuple[str, list[str]]]:
        """(app, sorted event names) for each app the bucket holds, apps sorted."""

    @abc.abstractmethod
    async def tag_sets(self, bucket: str) -> tuple[set[str], set[str], set[str]]:
        """The distinct event names, apps and servers the bucket holds (for cardinality.py)."""

    @abc.abstractmethod
    async def retention_days(self) -> float | None:
        """How long the store keeps events, in days (None: for ever)."""

    @abc.abstractmethod
    async def delete_all(self, bucket: str) -> None:
        """Delete every event of the bucket and nothing else."""

    @abc.abstractmethod
    async def delete(self, scope: DeleteScope) -> int | None:
        """Delete exactly the events of `scope` (a subset of one bucket); how many, if the
        engine can tell cheaply, else None."""

    # -- ingest keys (keys.py): kept where every process and replica sees them -------------

    @abc.abstractmethod
    async def keys(self, key_id: str | None = None) -> list[KeyRecord]:
        """Every stored key, by id; or the one with `key_id` (an empty list if none)."""

    @abc.abstractmethod
    async def key_create(self, record: KeyRecord) -> None:
        """Store a new key, durably."""

    @abc.abstractmethod
    async def key_revoke(self, key_id: str, at_ms: int) -> bool:
        """Mark a key revoked (from then on it authenticates nothing); False if unknown."""

    @abc.abstractmethod
    async def key_touch(self, key_id: str, at_ms: int) -> None:
        """Record that the key was used at `at_ms`. Never un-revokes a key."""

    async def keys_renew(self) -> None:  # noqa: B027 - most engines have nothing to do
        """Rewrite the live key records where the engine's retention would expire them
        (InfluxDB); called by every process while a retention is set."""
