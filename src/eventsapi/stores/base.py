"""The store interface every engine implements, its value types, and the URL → store factory."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from eventsapi.config import Settings


class NewEvent(NamedTuple):
    """A validated event ready to store. `data` is the payload already serialised as JSON."""

    id: str
    name: str
    app: str
    server: str
    at: int  # epoch milliseconds
    data: str


class StoredEvent(NamedTuple):
    """An event as read back; `data` is JSON text, passed through to the response unparsed."""

    id: str
    name: str
    app: str
    server: str
    at: int
    data: str


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Newest-first page of one event name. `after` is the (at, id) of the last row seen."""

    bucket: str
    name: str
    app: str | None = None
    server: str | None = None
    limit: int = 100
    offset: int = 0
    start: int | None = None  # inclusive, epoch ms
    end: int | None = None  # exclusive, epoch ms
    after: tuple[int, str] | None = None


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """Count events per window. Window i is [starts[i], starts[i+1]); the last ends at `end`."""

    bucket: str
    name: str
    app: str | None
    server: str | None
    starts: Sequence[int]
    end: int
    interval: str  # minute | hour | day
    tz: str


def group_by_app(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(app, event name) pairs as eventsKeysByApp answers them: apps sorted, names sorted, no
    duplicates."""
    out: dict[str, list[str]] = {}
    for app, name in sorted(set(pairs)):
        out.setdefault(app, []).append(name)
    return list(out.items())


class StoreUnavailable(Exception):
    """The engine cannot be reached or did not answer in time (HTTP 503)."""


class NotSupported(Exception):
    """The engine cannot do this operation at all (HTTP 501)."""


class Store(abc.ABC):
    """One engine. All methods are coroutines that never block the event loop."""

    name: str

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
    async def keys_by_app(self, bucket: str) -> list[tuple[str, list[str]]]:
        """(app, sorted event names) for each app the bucket holds, apps sorted."""

    @abc.abstractmethod
    async def tag_sets(self, bucket: str) -> tuple[set[str], set[str], set[str]]:
        """The distinct event names, apps and servers the bucket holds (for cardinality.py)."""

    @abc.abstractmethod
    async def delete_all(self, bucket: str) -> None:
        """Delete every event of the bucket and nothing else."""


def open_store(url: str, settings: Settings) -> Store:
    """Build (not yet open) the store a `--store` URL names."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        from eventsapi.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if scheme == "influxql":
        from eventsapi.stores.influxql import InfluxQLStore

        return InfluxQLStore.from_url(url, settings)
    if scheme == "influxdb2":
        from eventsapi.stores.influxdb2 import InfluxDB2Store

        return InfluxDB2Store.from_url(url, settings)
    raise ValueError(
        f"unknown store URL {url!r}: use sqlite:///PATH, influxql://HOST:PORT/DB "
        "or influxdb2://HOST:PORT?org=ORG&bucket=BUCKET"
    )
