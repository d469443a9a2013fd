"""Turns request bodies into validated values; every rule of docs/api.md §5 about input lives here."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import msgspec

from eventsapi.cursor import BadCursor, decode_cursor
from eventsapi.limits import FUTURE_SLACK_MS, MAX_DATA_BYTES, MAX_ID, MAX_NAME, MAX_TIME_MS
from eventsapi.problems import Problem, ValidationProblem
from eventsapi.stores.base import EventQuery, NewEvent, StatsQuery
from eventsapi.windows import STEP_MS, TooManyWindows, window_starts

BUCKET_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Control characters (C0, DEL, C1), lone surrogates and the Unicode line/paragraph separators.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
INTERVALS = ("minute", "hour", "day")


def check_bucket(bucket: str) -> str:
    if not BUCKET_RE.fullmatch(bucket):
        raise ValidationProblem([{"field": "id", "message": "bucket id must be 1-64 characters of [A-Za-z0-9_.-]"}])
    return bucket


def loads(text: bytes | str) -> Any:
    """Strict JSON: NaN/Infinity, invalid UTF-8 and runaway nesting raise ValueError."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


class _WireEvent(msgspec.Struct, gc=False):
    """An ingested event as it arrives, flat or a PM2 packet; unknown fields are ignored.
    Fields are typed loosely so that each one gets its own error message; `data` stays the raw
    JSON text that was sent, stored without a parse and re-serialisation."""

    event_name: Any = None
    app_name: Any = None
    server_name: Any = None
    name: Any = None
    process: Any = None
    at: Any = None
    id: Any = None
    data: msgspec.Raw = msgspec.Raw(b"")  # empty: absent


_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
# NamedTuple's generated __new__ is a Python-level call; building the tuple directly is what
# it does, minus the call (ingest builds one per event).
_new_event = tuple.__new__
_EVENT = msgspec.json.Decoder(_WireEvent)
_BATCH = msgspec.json.Decoder(list[_WireEvent])


def name_error(value: object, max_len: int = MAX_NAME) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not 1 <= len(value) <= max_len:
        return f"must be 1-{max_len} characters"
    if _FORBIDDEN.search(value):
        return "must not contain control characters"
    return None


def parse_time(value: object) -> int:
    """Epoch milliseconds from a number of ms or an ISO 8601 string (naive = UTC)."""
    if isinstance(value, bool):
        raise ValueError("must be epoch milliseconds or an ISO 8601 string")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return math.floor(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("must be epoch milliseconds or an ISO 8601 string") from exc
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return math.floor(dt.timestamp() * 1000)
    raise ValueError("must be epoch milliseconds or an ISO 8601 string")


class IdMaker:
    """Server-assigned ids: receipt time in hex, a per-batch random part, the index.

    Ids of one batch sort in ingest order, so among events sharing a millisecond the
    later-ingested ones come first in newest-first reads.
    """

    def __init__(self, now_ms: int) -> None:
        self.prefix = f"{now_ms:012x}{os.urandom(7).hex()}"

    def __call__(self, index: int) -> str:
        return f"{self.prefix}{index:06x}"


def _name(value: object, field: str, known: set[str] | None, max_len: int = MAX_NAME) -> str:
    # Runs for every name of every ingested event; names repeat, so each is checked once per
    # batch (`known`). Ids are unique, so they pass no set.
    if known is not None and type(value) is str and value in known:
        return value
    if type(value) is not str or not 0 < len(value) <= max_len or _FORBIDDEN.search(value):
        raise ValueError(f"{field} {name_error(value, max_len)}")
    if known is not None:
        known.add(value)
    return value


def _wire(raw: bytes | msgspec.Raw) -> _WireEvent:
    try:
        return _EVENT.decode(raw)
    except msgspec.ValidationError as exc:
        raise ValueError(f"event must be a JSON object: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None


def _event(item: _WireEvent, now_ms: int, make_id: Callable[[int], str], index: int, known: set[str]) -> NewEvent:
    """One event from a flat or PM2 `human:event` object; raises ValueError with the reason."""
    process = item.process
    if item.event_name is None and item.name is not None and type(process) is dict:
        name = _name(item.name, "name", known)
        app = _name(process.get("name"), "process.name", known)
        server = process.get("server")
        server = "" if server is None or server == "" else _name(server, "process.server", known)
    else:
        name = _name(item.event_name, "event_name", known)
        app = _name(item.app_name, "app_name", known)
        server = item.server_name
        server = "" if server is None or server == "" else _name(server, "server_name", known)
    at_raw = item.at
    if at_raw is None:
        at = now_ms
    else:
        if type(at_raw) is int:
            at = at_raw
        else:
            try:
                at = parse_time(at_raw)
            except ValueError as exc:
                raise ValueError(f"at {exc}") from None
        if not 0 <= at <= now_ms + FUTURE_SLACK_MS:
            raise ValueError("at must lie between 1970-01-01 and now + 24 h")
    blob = bytes(item.data)
    if blob in (b"", b"null"):
        data_text = "{}"
    else:
        if blob[:1] != b"{":
            raise ValueError("data must be a JSON object")
        if len(blob) > MAX_DATA_BYTES:
            raise ValueError(f"data is {len(blob)} bytes serialised; at most {MAX_DATA_BYTES}")
        if b"\n" in blob or b"\r" in blob:
            # Pretty-printed: line breaks can only be whitespace here; store it compact, since
            # line protocol cannot carry them.
            blob = msgspec.json.encode(msgspec.json.decode(blob))
        try:
            data_text = blob.decode()
        except UnicodeDecodeError:
            raise ValueError("data is not valid UTF-8") from None
    event_id = make_id(index) if item.id is None else _name(item.id, "id", None, MAX_ID)
    return _new_event(NewEvent, (event_id, name, app, server, at, data_text))


@dataclass(slots=True)
class IngestBatch:
    events: list[NewEvent]
    rejected: list[dict[str, object]]
    indices: list[int]  # each event's index in the request

    def reject(self, drop: dict[int, str]) -> None:
        """Move the events at these positions of `events` to `rejected`, with their reasons."""
        for pos, reason in drop.items():
            self.rejected.append({"index": self.indices[pos], "error": reason})
        self.rejected.sort(key=lambda r: r["index"])  # type: ignore[arg-type, return-value]
        self.events = [e for pos, e in enumerate(self.events) if pos not in drop]
        self.indices = [i for pos, i in enumerate(self.indices) if pos not in drop]


def parse_ingest(body: bytes, ndjson: bool, max_events: int, now_ms: int | None = None) -> IngestBatch:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    items: Sequence[_WireEvent | bytes | msgspec.Raw]
    if ndjson:
        lines = [ln for ln in body.splitlines() if ln.strip()]
        if len(lines) > max_events:
            raise Problem(413, f"{len(lines)} events in one request; at most {max_events}")
        items = lines
    else:
        try:
            # Fast path: the whole array in one call. Any item that is not an event object
            # fails it, and the slow path then decodes item by item to report each one.
            items = _BATCH.decode(body)
        except (msgspec.DecodeError, RecursionError):
            try:
                items = _ITEMS.decode(body)
            except msgspec.ValidationError:
                raise Problem(400, "body must be a JSON array of events (or NDJSON)") from None
            except msgspec.DecodeError as exc:
                raise Problem(400, f"body is not valid JSON: {exc}") from None
            except RecursionError:
                raise Problem(400, "body is not valid JSON: nested too deeply") from None
        if len(items) > max_events:
            raise Problem(413, f"{len(items)} events in one request; at most {max_events}")
    make_id = IdMaker(now_ms)
    known: set[str] = set()
    events: list[NewEvent] = []
    rejected: list[dict[str, object]] = []
    indices: list[int] = []
    for i, item in enumerate(items):
        try:
            wire = item if isinstance(item, _WireEvent) else _wire(cast(bytes, item))
            events.append(_event(wire, now_ms, make_id, i, known))
            indices.append(i)
        except ValueError as exc:
            rejected.append({"index": i, "error": str(exc)})
    return IngestBatch(events, rejected, indices)


class _Fields:
    """Collects field errors so one response lists all of them."""

    def __init__(self, body: object, allowed: set[str]) -> None:
        if not isinstance(body, dict):
            raise Problem(400, "body must be a JSON object")
        self.body = body
        self.errors: list[dict[str, str]] = [{"field": k, "message": "unknown field"} for k in body if k not in allowed]

    def fail(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def name(self, field: str, required: bool = False, allow_empty: bool = False) -> str | None:
        value = self.body.get(field)
        if value is None:
            if required:
                self.fail(field, "is required")
            return None
        if allow_empty and value == "":
            return ""
        err = name_error(value)
        if err:
            self.fail(field, err)
            return None
        return value  # type: ignore[no-any-return]

    def integer(self, field: str, default: int, lo: int, hi: int) -> int:
        value = self.body.get(field, default)
        if type(value) is not int or not lo <= value <= hi:
            self.fail(field, f"must be an integer from {lo} to {hi}")
            return default
        return value

    def time(self, field: str) -> int | None:
        value = self.body.get(field)
        if value is None:
            return None
        try:
            t = parse_time(value)
        except (ValueError, OverflowError) as exc:
            self.fail(field, str(exc))
            return None
        if not 0 <= t <= MAX_TIME_MS:
            self.fail(field, "must lie between 1970-01-01 and 2262-04-11")
            return None
        return t

    def done(self) -> None:
        if self.errors:
            raise ValidationProblem(self.errors)


_RETRIEVE_FIELDS = {"event_name", "app_name", "server_name", "limit", "offset", "start", "end", "cursor"}
_STATS_FIELDS = {"event_name", "app_name", "server_name", "days", "interval", "tz"}


def parse_retrieve(bucket: str, body: object) -> EventQuery:
    f = _Fields(body, _RETRIEVE_FIELDS)
    name = f.name("event_name", required=True)
    app = f.name("app_name")
    server = f.name("server_name", allow_empty=True)
    limit = f.integer("limit", 100, 1, 1000)
    offset = f.integer("offset", 0, 0, 100_000)
    start, end = f.time("start"), f.time("end")
    after = None
    cursor = f.body.get("cursor")
    if cursor is not None:
        if not isinstance(cursor, str):
            f.fail("cursor", "must be a string")
        else:
            try:
                after = decode_cursor(cursor)
            except BadCursor as exc:
                f.fail("cursor", str(exc))
    f.done()
    assert name is not None
    return EventQuery(bucket, name, app, server, limit, offset, start, end, after)


@dataclass(frozen=True, slots=True)
class StatsRequest:
    """A validated histogram request, before its windows are computed (that work is admitted
    first: see admission.py)."""

    bucket: str
    name: str
    app: str | None
    server: str | None
    days: float
    interval: str
    tz: ZoneInfo

    def windows_estimate(self) -> int:
        """About how many windows the answer has (what it costs), without computing them."""
        return int(self.days * 86_400_000 / STEP_MS[self.interval]) + 2

    def query(self, now_ms: int | None = None) -> StatsQuery:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        try:
            starts, end = window_starts(now_ms, self.days, self.interval, self.tz)
        except TooManyWindows as exc:
            raise ValidationProblem([{"field": "days", "message": f"too many windows: {exc}"}]) from None
        return StatsQuery(self.bucket, self.name, self.app, self.server, starts, end, self.interval, self.tz.key)


def parse_stats(bucket: str, body: object) -> StatsRequest:
    f = _Fields(body, _STATS_FIELDS)
    name = f.name("event_name", required=True)
    app = f.name("app_name")
    server = f.name("server_name", allow_empty=True)
    days = f.body.get("days", 2)
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 365:
        f.fail("days", "must be a number greater than 0 and at most 365")
        days = 2
    interval = f.body.get("interval", "minute")
    if interval not in INTERVALS:
        f.fail("interval", "must be one of minute, hour, day")
        interval = "minute"
    tz_name = f.body.get("tz", "UTC")
    tz = None
    if not isinstance(tz_name, str) or not tz_name or len(tz_name) > 64:
        f.fail("tz", "must be an IANA time zone name")
    else:
        try:
            tz = ZoneInfo(tz_name)
        except Exception:  # ZoneInfo raises several types for bad keys
            f.fail("tz", f"unknown IANA time zone {tz_name!r}")
    f.done()
    assert name is not None and tz is not None
    return StatsRequest(bucket, name, app, server, float(days), interval, tz)
