"""The influxql store: InfluxDB 1.x and 3.x over the v1 HTTP API (/write, /query).

Writes go as line protocol (lineprotocol.py), one POST per 5,000 points, acknowledged by the
engine before ingest answers. Every read is one InfluxQL statement from influxql_text.py with
user values as bind parameters. The engine's major version is read from /ping: InfluxDB 3 has
no SHOW SERIES and no deletes, so eventsKeysByApp uses SHOW TAG VALUES there and delete_all
answers 501.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import aiohttp
import msgspec
from msgspec import Raw

from eventsapi.config import Settings
from eventsapi.stores import influxql_text as text
from eventsapi.stores.base import NotSupported, StoreUnavailable
from eventsapi.stores.influxbase import InfluxStore, http_base, url_flag
from eventsapi.stores.lineprotocol import NS_PER_MS, TagDecoder, decode_tag, parse_series_key
from eventsapi.stores.occupancy import Intent, parse_intent
from eventsapi.stores.paging import Rows
from eventsapi.stores.placement import OccupiedPoint
from eventsapi.values import DeleteScope, EventQuery, ExportQuery, GroupTag, StatsQuery, StoredEvent, TailQuery
from eventsapi.windows import counts_per_window


def go_duration_seconds(text: str) -> float:
    """Seconds in a duration as InfluxDB 1.x prints it (`168h0m0s`, `0s` for infinite)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|us|µs|ns|h|m|s)", text))


class _Statement(Protocol):
    @property
    def error(self) -> str | None: ...


class _Answer(Protocol):
    @property
    def results(self) -> Sequence[_Statement]: ...


A = TypeVar("A", bound=_Answer)


class _AnswerShape(Generic[A]):
    """How to decode a /query answer, as MessagePack or as JSON."""

    def __init__(self, kind: type[A]) -> None:
        self.msgpack: msgspec.msgpack.Decoder[A] = msgspec.msgpack.Decoder(kind)
        self.json: msgspec.json.Decoder[A] = msgspec.json.Decoder(kind)


class _AnyResult(msgspec.Struct):
    series: list[dict[str, Any]] = []  # each {name?, columns, values, tags?}
    error: str | None = None


class _AnyAnswer(msgspec.Struct):
    results: list[_AnyResult]


class _TimeIdSeries(msgspec.Struct, gc=False):
    values: list[tuple[int, str]] = []  # SELECT id: columns time, id


class _TimeIdResult(msgspec.Struct, gc=False):
    series: list[_TimeIdSeries] = []
    error: str | None = None


class _TimeIdAnswer(msgspec.Struct, gc=False):
    results: list[_TimeIdResult]


_ANY_ANSWER = _AnswerShape(_AnyAnswer)
_OCCUPIED_ANSWER = _AnswerShape(_TimeIdAnswer)
INTENT_STATEMENTS = 100  # buckets whose intents one request reads (several go at once)


class InfluxQLStore(InfluxStore):
    name = "influxql"

    def __init__(self, base_url: str, database: str, settings: Settings, create: bool = False) -> None:
        super().__init__(settings.influx_memory_points, settings.store_timeout)
        self.base_url = base_url.rstrip("/")
        self.database = database
        self.create = create  # CREATE DATABASE on start-up (needs admin rights); off by default
        self._timeout = settings.store_timeout
        self._headers: dict[str, str] = {}
        if settings.influx_token:
            self._headers["Authorization"] = f"Token {settings.influx_token}"
        elif settings.influx_username:
            pair = f"{settings.influx_username}:{settings.influx_password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._session: aiohttp.ClientSession | None = None
        self.major_version: int | None = None

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> InfluxQLStore:
        parts = urlsplit(url)
        database = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database:
            raise ValueError("influxql URL must be influxql://HOST:PORT/DATABASE")
        return cls(http_base(parts), database, settings, url_flag(parts, "create_database"))

    # -- transport ------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout, connect=min(self._timeout, 5)),
                connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=30),
                json_serialize=json.dumps,
            )
        return self._session

    async def _request(self, method: str, path: str, **kw: Any) -> tuple[int, bytes, dict[str, str]]:
        try:
            async with self._http().request(method, self.base_url + path, **kw) as resp:
                return resp.status, await resp.read(), dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"influxdb unreachable: {type(exc).__name__}") from exc

    async def query(self, q: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Run one statement; return its series (each {name?, columns, values, tags?})."""
        return (await self.query_many(q, params))[0]

    async def query_many(self, q: str, params: dict[str, str] | None = None) -> list[list[dict[str, Any]]]:
        """Run `;`-separated statements in one request; the series of each, in order."""
        answer = await self._query_answer(q, params, _ANY_ANSWER)
        return [result.series for result in answer.results]

    async def _query_answer(self, q: str, params: dict[str, str] | None, shape: _AnswerShape[A]) -> A:
        """The engine's whole answer to `;`-separated statements, decoded as `shape` says."""
        form = {"db": self.database, "q": q, "epoch": "ns"}
        if params:
            form["params"] = json.dumps(params)
        # MessagePack where the engine offers it (InfluxDB 1.4+): it encodes answers in half the
        # CPU time of JSON (1,000,000 rows: 3.1 s vs 6.1 s on 1.6); others answer JSON.
        status, body, headers = await self._request(
            "POST", "/query", data=form, headers={"Accept": "application/x-msgpack"}
        )
        msgpack = headers.get("Content-Type", "").startswith("application/x-msgpack")
        if status >= 400:
            if msgpack:
                with contextlib.suppress(msgspec.DecodeError):
                    body = msgspec.json.encode(msgspec.msgpack.decode(body))
            raise StoreUnavailable(f"influxdb /query answered {status}: {body[:200]!r}")
        try:
            answer = (shape.msgpack if msgpack else shape.json).decode(body)
        except msgspec.DecodeError as exc:  # also not the shape asked for (ValidationError)
            raise StoreUnavailable("influxdb /query answered something unreadable") from exc
        if not answer.results:
            raise StoreUnavailable("influxdb /query answered no result")
        for result in answer.results:
            if result.error is not None:
                raise StoreUnavailable(f"influxdb query error: {result.error}")
        return answer

    # -- life cycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self.create:
            # The database name is operator configuration, quoted as an InfluxQL identifier.
            ident = '"' + self.database.replace("\\", "\\\\").replace('"', '\\"') + '"'
            await self.query(f"CREATE DATABASE {ident}")
        await self.ping()

    async def _disconnect(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def ping(self) -> None:
        status, _, headers = await self._request("GET", "/ping")
        if status >= 400:
            raise StoreUnavailable(f"influxdb /ping answered {status}")
        version = headers.get("X-Influxdb-Version", "")
        if version[:1].isdigit():
            self.major_version = int(version.split(".", 1)[0])
        # The database must exist (the operator creates it; see README): a read proves it.
        await self.query("SHOW RETENTION POLICIES")

    async def retention_days(self) -> float | None:
        """The database's default retention policy (InfluxDB 1.x: SHOW RETENTION POLICIES)."""
        for s in await self.query("SHOW RETENTION POLICIES"):
            cols = s["columns"]
            for v in s["values"]:
                row = dict(zip(cols, v, strict=True))
                if row.get("default"):
                    seconds = go_duration_seconds(str(row.get("duration", "0s")))
                    return seconds / 86_400 if seconds else None
        return None

    # -- writes ---------------------------------------------------------------------------

    async def _write_lines(self, body: bytes) -> None:
        params = {"db": self.database, "precision": "ns"}
        status, answer, _ = await self._request("POST", "/write", params=params, data=body)
        if status != 204:
            raise StoreUnavailable(f"influxdb /write answered {status}: {answer[:200]!r}")

    async def _key_fields(self, key_id: str | None) -> dict[str, dict[str, Any]]:
        return {
            s["tags"]["key_id"]: dict(zip(s["columns"], s["values"][0], strict=True))
            for s in await self.query(*text.keys_query(key_id))
        }

    async def _occupied(self, bucket: str, ranges: list[tuple[int, int]]) -> list[OccupiedPoint]:
        statements = [text.occupied_query(bucket, lo, hi) for lo, hi in ranges]
        # One request: the params (the bucket) are the same for every statement. Decoded
        # straight into (time, id) tuples: a bucket's history is read this way the first time,
        # and generic decoding took twice as long, plus a pass to make the tuples.
        answer = await self._query_answer(";".join(q for q, _ in statements), statements[0][1], _OCCUPIED_ANSWER)
        out: list[OccupiedPoint] = []
        for result in answer.results:
            for series in result.series:
                out += series.values
        return out

    async def _intents(self, since: dict[str, int]) -> dict[str, list[Intent]]:
        buckets = list(since)
        groups = [buckets[i : i + INTENT_STATEMENTS] for i in range(0, len(buckets), INTENT_STATEMENTS)]
        out: dict[str, list[Intent]] = {}
        answered = await asyncio.gather(*(self._intents_of(group, since) for group in groups))
        for group, answers in zip(groups, answered, strict=True):
            for bucket, series in zip(group, answers, strict=True):
                found = (parse_intent(t, m) for s in series for t, m in s["values"])
                out[bucket] = [it for it in found if it is not None]
        return out

    async def _intents_of(self, buckets: list[str], since: dict[str, int]) -> list[list[dict[str, Any]]]:
        """One request: a statement per bucket, each binding its bucket under its own name."""
        statements = [text.intents_query(b, since[b], f"b{i}") for i, b in enumerate(buckets)]
        params = {k: v for _, p in statements for k, v in p.items()}
        answers = await self.query_many(";".join(q for q, _ in statements), params)
        if len(answers) != len(statements):
            raise StoreUnavailable(f"influxdb answered {len(answers)} results to {len(statements)} statements")
        return answers

    async def _delete_all(self, bucket: str) -> None:
        await self._can_delete()
        await self.query(*text.drop_query(bucket))

    async def _delete(self, scope: DeleteScope) -> int | None:
        if scope.is_everything():
            await self._delete_all(scope.bucket)
            return None
        await self._can_delete()
        await self.query(*text.delete_query(scope))
        return None  # InfluxDB does not say how many points went

    async def _can_delete(self) -> None:
        if self.major_version is None:
            await self.ping()
        if self.major_version is not None and self.major_version >= 3:
            raise NotSupported("InfluxDB 3 cannot delete points; drop the table or let retention expire it")

    async def tag_sets(self, bucket: str) -> tuple[set[str], set[str], set[str]]:
        sets: dict[str, set[str]] = {"event_name": set(), "app": set(), "server": set()}
        for s in await self.query(*text.tag_sets_query(bucket)):
            for key, value in s["values"]:
                sets[key].add(decode_tag(value))
        return sets["event_name"], sets["app"], sets["server"]

    # -- reads ----------------------------------------------------------------------------

    @staticmethod
    def _events(series: list[dict[str, Any]], key: str = "time") -> list[tuple[int, StoredEvent]]:
        """(the column `key`: the point's time in ns, or `ingested`; event) of each row of
        whole-event series."""
        out: list[tuple[int, StoredEvent]] = []
        tag = TagDecoder()
        for s in series:
            ix = [s["columns"].index(c) for c in ("time", "data", "id", "app", "server", "event_name", key)]
            for v in s["values"]:
                t, data, eid, app, server, name = (v[i] for i in ix[:6])
                event = StoredEvent(eid, tag(name), tag(app), tag(server), t // NS_PER_MS, Raw(data))
                out.append((int(v[ix[6]]), event))
        return out

    def _rows(self, query: EventQuery) -> Rows:
        return _Rows(self, query)

    async def stats(self, query: StatsQuery) -> list[int]:
        q, params = text.stats_query(query)
        series = await self.query(q, params)
        return counts_per_window(query.starts, ((t // NS_PER_MS, n) for s in series for t, n in s["values"]))

    async def stats_groups(self, query: StatsQuery, tag: GroupTag) -> list[tuple[str, int, int]]:
        series = await self.query(*text.stats_query(query, tag))
        return [(decode_tag(s["tags"][tag]), t // NS_PER_MS, n) for s in series for t, n in s["values"]]

    async def _tail_ids(self, q: TailQuery, lower: int, since: int, until: int) -> Iterable[tuple[int, str]]:
        pairs: list[tuple[int, str]] = []
        for s in await self.query(*text.tail_query(q, lower, since, until, whole=False)):
            t_ix, id_ix = s["columns"].index("ingested"), s["columns"].index("id")
            pairs += [(int(v[t_ix]), v[id_ix]) for v in s["values"]]
        return pairs

    async def _tail_rows(self, q: TailQuery, lower: int, since: int, until: int) -> list[tuple[int, StoredEvent]]:
        return self._events(await self.query(*text.tail_query(q, lower, since, until)), "ingested")

    async def size(self, bucket: str) -> int | None:
        return sum(int(v[1]) for s in await self.query(*text.size_query(bucket)) for v in s["values"])

    async def _export_rows(
        self, q: ExportQuery, lower_ns: int, upper_ns: int, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        return self._events(await self.query(*text.export_query(q, lower_ns, upper_ns, limit)))

    async def buckets(self) -> list[str]:
        q, _ = text.buckets_query()
        return sorted(decode_tag(v[1]) for s in await self.query(q) for v in s["values"])

    async def _app_event_pairs(self, bucket: str) -> Iterable[tuple[str, str]]:
        if self.major_version is None:
            await self.ping()
        if self.major_version is not None and self.major_version >= 3:
            # InfluxDB 3 has no SHOW SERIES: the event names of each app, concurrently.
            apps = [
                decode_tag(v[1]) for s in await self.query(*text.tag_values_query(bucket, "app")) for v in s["values"]
            ]
            answers = await asyncio.gather(
                *(self.query(*text.tag_values_query(bucket, "event_name", app)) for app in apps)
            )
            return [
                (app, decode_tag(v[1]))
                for app, series in zip(apps, answers, strict=True)
                for s in series
                for v in s["values"]
            ]
        pairs = []
        for s in await self.query(*text.series_query(bucket)):
            for (key,) in s["values"]:
                tags = parse_series_key(key)
                pairs.append((tags["app"], tags["event_name"]))
        return pairs


class _Rows:
    """paging.Rows over InfluxQL for one retrieve query's filters."""

    def __init__(self, store: InfluxQLStore, q: EventQuery) -> None:
        self.store, self.q = store, q

    async def newest(self, upper_ns: int, lower_ns: int, n: int) -> list[StoredEvent]:
        series = await self.store.query(*text.newest_query(self.q, upper_ns, lower_ns, n))
        return [e for _, e in self.store._events(series)]

    async def millisecond(self, ms: int) -> list[StoredEvent]:
        return [e for _, e in self.store._events(await self.store.query(*text.millisecond_query(self.q, ms)))]

    async def count(self, upper_ns: int, lower_ns: int) -> int:
        series = await self.store.query(*text.count_query(self.q, upper_ns, lower_ns))
        return sum(int(v[1]) for s in series for v in s["values"])

    async def nth_time(self, upper_ns: int, lower_ns: int, k: int) -> int | None:
        series = await self.store.query(*text.nth_query(self.q, upper_ns, lower_ns, k))
        return next((int(v[0]) for s in series for v in s["values"]), None)

    async def millisecond_ids(self, ms: int) -> list[str]:
        series = await self.store.query(*text.millisecond_ids_query(self.q, ms))
        return [v[1] for s in series for v in s["values"]]
