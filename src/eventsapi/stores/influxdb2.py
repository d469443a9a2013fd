"""The influxdb2 store: InfluxDB 2.x / Cloud / 1.8+ through Flux and influxdb-client (async).

Every route is one Flux text from flux.py (eventsKeysByApp: one schema.tagValues per app,
concurrently); writes are line protocol (lineprotocol.py) in batches of 5,000 points, gzip,
ns precision, acknowledged by the engine before ingest answers; delete_all is the delete API
with a `_measurement` + `bucket_id` predicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import aiohttp
from msgspec import Raw

from eventsapi.config import Settings
from eventsapi.stores import flux, influxtail
from eventsapi.stores.base import StoreUnavailable
from eventsapi.stores.influxbase import InfluxStore, http_base
from eventsapi.stores.lineprotocol import decode_tag
from eventsapi.stores.occupancy import Intent, parse_intent
from eventsapi.stores.paging import FUTURE_NS, Rows
from eventsapi.stores.placement import OccupiedPoint
from eventsapi.values import DeleteScope, EventQuery, ExportQuery, GroupTag, StatsQuery, StoredEvent, TailQuery
from eventsapi.windows import counts_per_window

T = TypeVar("T")
_LAST_NS = int(datetime(2262, 1, 1, tzinfo=UTC).timestamp()) * 10**9  # the delete API's far end


class InfluxDB2Store(InfluxStore):
    name = "influxdb2"

    def __init__(self, url: str, org: str, bucket: str, settings: Settings) -> None:
        super().__init__(settings.influx_memory_points, settings.store_timeout)
        self.url = url
        self.org = org
        self.bucket = bucket
        self._token = settings.influx_token
        if not self._token and settings.influx_username:
            # InfluxDB 1.8's Flux endpoint takes "username:password" as the token.
            self._token = f"{settings.influx_username}:{settings.influx_password or ''}"
        self._timeout_ms = int(settings.store_timeout * 1000)
        self._client: Any = None

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> InfluxDB2Store:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        org, bucket = query.get("org", [""])[0], query.get("bucket", [""])[0]
        if not parts.hostname or not org or not bucket:
            raise ValueError("influxdb2 URL must be influxdb2://HOST:PORT?org=ORG&bucket=BUCKET")
        return cls(http_base(parts), org, bucket, settings)

    def _api(self) -> Any:
        if self._client is None:
            from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

            self._client = InfluxDBClientAsync(
                url=self.url, token=self._token or "", org=self.org, timeout=self._timeout_ms, enable_gzip=True
            )
        return self._client

    async def _call(self, coro: Awaitable[T]) -> T:
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.client.flux_csv_parser import FluxCsvParserException, FluxQueryException
        from influxdb_client.rest import ApiException

        try:
            return await coro
        except ApiException as exc:
            raise StoreUnavailable(f"influxdb answered {exc.status}") from exc
        except (OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"influxdb unreachable: {type(exc).__name__}") from exc
        except (aiohttp.ClientError, InfluxDBError, FluxQueryException, FluxCsvParserException) as exc:
            raise StoreUnavailable(f"influxdb error: {type(exc).__name__}") from exc

    async def _query(self, text: str) -> list[dict[str, Any]]:
        tables = await self._call(self._api().query_api().query(text, org=self.org))
        return [record.values for table in tables for record in table.records]

    async def open(self) -> None:
        await self.ping()

    async def _disconnect(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def ping(self) -> None:
        if not await self._call(self._api().ping()):
            raise StoreUnavailable("influxdb /ping failed")

    async def _write_lines(self, body: bytes) -> None:
        write = self._api().write_api()
        await self._call(write.write(bucket=self.bucket, org=self.org, record=body, write_precision="ns"))

    async def _key_fields(self, key_id: str | None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for v in await self._query(flux.keys_query(self.bucket, key_id)):
            out.setdefault(v["key_id"], {})[v["_field"]] = v["_value"]
        return out

    async def _occupied(self, bucket: str, ranges: list[tuple[int, int]]) -> list[OccupiedPoint]:
        # One query per range, in turn (the store runs up to 4 such reads at once).
        out: list[OccupiedPoint] = []
        for lo, hi in ranges:
            out += [
                (int(v["ns"]), v["_value"]) for v in await self._query(flux.occupied_query(self.bucket, bucket, lo, hi))
            ]
        return out

    async def _intents(self, since: dict[str, int]) -> dict[str, list[Intent]]:
        # A query per bucket, all at once (Flux has no statements to join into one request).
        async def of(bucket: str) -> list[Intent]:
            found = (
                parse_intent(int(v["ns"]), v["_value"])
                for v in await self._query(flux.intents_query(self.bucket, bucket, since[bucket]))
            )
            return [it for it in found if it is not None]

        return dict(zip(since, await asyncio.gather(*map(of, since)), strict=True))

    async def _delete_all(self, bucket: str) -> None:
        await self._delete(DeleteScope(bucket))

    async def _delete(self, scope: DeleteScope) -> int | None:
        # The delete API's range is [start, stop]: stop is inclusive, so end - 1 ns.
        start = scope.start * 1_000_000 if scope.start is not None else 0
        stop = scope.end * 1_000_000 - 1 if scope.end is not None else _LAST_NS
        await self._call(
            self._api()
            .delete_api()
            .delete(
                start=flux.flux_time(start),
                stop=flux.flux_time(stop),
                predicate=flux.delete_predicate(scope.bucket, scope.name, scope.app, scope.server),
                bucket=self.bucket,
                org=self.org,
            )
        )
        return None  # the delete API does not say how many points went

    def _rows(self, query: EventQuery) -> Rows:
        return _Rows(self, query)

    async def stats(self, query: StatsQuery) -> list[int]:
        text = flux.stats_query(self.bucket, query)
        rows = await self._query(text)
        return counts_per_window(query.starts, ((int(v["_time"].timestamp() * 1000), int(v["_value"])) for v in rows))

    async def stats_groups(self, query: StatsQuery, tag: GroupTag) -> list[tuple[str, int, int]]:
        rows = await self._query(flux.stats_groups_query(self.bucket, query, tag))
        return [(decode_tag(v[tag]), int(v["_time"].timestamp() * 1000), int(v["_value"])) for v in rows]

    async def retention_days(self) -> float | None:
        """The bucket's retention rule (`retentionPeriod` of Flux's buckets(); 0: for ever)."""
        rows = await self._query(flux.retention_query(self.bucket))
        period = int(rows[0]["retentionPeriod"]) if rows else 0
        return period / 86_400e9 if period else None

    async def tag_sets(self, bucket: str) -> tuple[set[str], set[str], set[str]]:
        answers = await asyncio.gather(
            *(self._query(flux.tag_values_query(self.bucket, bucket, tag)) for tag in ("event_name", "app", "server"))
        )
        names, apps, servers = ({decode_tag(v["_value"]) for v in rows} for rows in answers)
        return names, apps, servers

    def _tail_range(self, until: int) -> int:
        # Flux's range() needs a stop: past `until` by what an event's `at` may lead its write.
        return until + influxtail.SETTLE_NS + FUTURE_NS

    async def _tail_ids(self, q: TailQuery, lower: int, since: int, until: int) -> Iterable[tuple[int, str]]:
        text = flux.tail_query(self.bucket, q, lower, self._tail_range(until), since, until, whole=False)
        return [(int(v["ingested"]), v["id"]) for v in await self._query(text)]

    async def _tail_rows(self, q: TailQuery, lower: int, since: int, until: int) -> list[tuple[int, StoredEvent]]:
        text = flux.tail_query(self.bucket, q, lower, self._tail_range(until), since, until)
        return [(int(v["ingested"]), record_event(v)) for v in await self._query(text)]

    async def buckets(self) -> list[str]:
        return sorted(decode_tag(v["_value"]) for v in await self._query(flux.buckets_query(self.bucket)))

    async def _export_rows(
        self, q: ExportQuery, lower_ns: int, upper_ns: int, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        # OSS 2.x sorts in the query engine, not in storage: read windows that double from an
        # hour while they come back short, so a sort never sees more than about one page's
        # worth of history past the position.
        out: list[tuple[int, StoredEvent]] = []
        span = 3600 * 10**9
        while lower_ns < upper_ns and len(out) < limit:
            stop = min(upper_ns, lower_ns + span)
            text = flux.export_query(self.bucket, q, lower_ns, stop, limit - len(out))
            out += [(int(v["ns"]), record_event(v)) for v in await self._query(text)]
            lower_ns, span = stop, span * 2
        return out

    async def _app_event_pairs(self, bucket: str) -> Iterable[tuple[str, str]]:
        apps = [decode_tag(v["_value"]) for v in await self._query(flux.tag_values_query(self.bucket, bucket, "app"))]
        answers = await asyncio.gather(
            *(self._query(flux.tag_values_query(self.bucket, bucket, "event_name", app)) for app in apps)
        )
        return [(app, decode_tag(v["_value"])) for app, rows in zip(apps, answers, strict=True) for v in rows]


def record_event(v: dict[str, Any]) -> StoredEvent:
    """A retrieve row (a pivoted FluxRecord's values) as a StoredEvent."""
    t: datetime = v["_time"]
    # FluxRecord times are datetimes (µs); the ms part is what the contract needs.
    at = (int(t.timestamp()) * 1000) + t.microsecond // 1000
    return StoredEvent(
        v["id"], decode_tag(v["event_name"]), decode_tag(v["app"]), decode_tag(v["server"]), at, Raw(v["data"])
    )


class _Rows:
    """paging.Rows over Flux for one retrieve query's filters."""

    def __init__(self, store: InfluxDB2Store, q: EventQuery) -> None:
        self.store, self.q = store, q

    async def newest(self, upper_ns: int, lower_ns: int, n: int) -> list[StoredEvent]:
        rows = await self.store._query(flux.newest_query(self.store.bucket, self.q, upper_ns, lower_ns, n))
        return [record_event(v) for v in rows]

    async def millisecond(self, ms: int) -> list[StoredEvent]:
        return [record_event(v) for v in await self.store._query(flux.millisecond_query(self.store.bucket, self.q, ms))]

    async def count(self, upper_ns: int, lower_ns: int) -> int:
        rows = await self.store._query(flux.count_query(self.store.bucket, self.q, upper_ns, lower_ns))
        return sum(int(v["_value"]) for v in rows)

    async def nth_time(self, upper_ns: int, lower_ns: int, k: int) -> int | None:
        rows = await self.store._query(flux.nth_query(self.store.bucket, self.q, upper_ns, lower_ns, k))
        return int(rows[0]["ns"]) if rows else None

    async def millisecond_ids(self, ms: int) -> list[str]:
        rows = await self.store._query(flux.millisecond_ids_query(self.store.bucket, self.q, ms))
        return [v["_value"] for v in rows]
