"""Turns query bodies and parameters into validated values (docs/api.md §5); the rules for
ingested events are ingest_rules.py's."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import msgspec

from eventsapi import wire
from eventsapi.cursor import BadCursor, decode_cursor
from eventsapi.limits import (
    BUCKET_PATTERN,
    MAX_GROUP_POINTS,
    MAX_NAME,
    MAX_TIME_MS,
)
from eventsapi.problems import Problem, ValidationProblem
from eventsapi.values import DeleteScope, EventQuery, ExportPosition, ExportQuery, GroupTag, StatsQuery
from eventsapi.windows import STEP_MS, Interval, TooManyWindows, window_starts

BUCKET_RE = re.compile(BUCKET_PATTERN)
# Control characters (C0, DEL, C1), lone surrogates and the Unicode line/paragraph separators.
FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def valid_name(value: str, max_len: int = MAX_NAME) -> bool:
    """A name as docs/api.md §5 allows it: 1 to max_len characters, no control characters."""
    return 0 < len(value) <= max_len and not FORBIDDEN.search(value)


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


def name_error(value: object, max_len: int = MAX_NAME) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not 1 <= len(value) <= max_len:
        return f"must be 1-{max_len} characters"
    if FORBIDDEN.search(value):
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


_CONVERT_MESSAGES = (("matching regex", "must not contain control characters"),)


def _message(exc: msgspec.ValidationError) -> str:
    """msgspec's reason without its JSON path (the field is named beside it)."""
    text = str(exc).split(" - at `", 1)[0]
    for needle, plain in _CONVERT_MESSAGES:
        if needle in text:
            return plain
    return text


B = TypeVar("B", bound=msgspec.Struct)


def decode_body(body: object, shape: type[B]) -> B:
    """A request body as its wire type, or a 400 that lists every field that is wrong."""
    if not isinstance(body, dict):
        raise Problem(400, "body must be a JSON object")
    try:
        return msgspec.convert(body, shape)
    except msgspec.ValidationError:
        pass
    # Field by field, with the same types, so that one answer names every error.
    fields = {f.encode_name: f for f in msgspec.structs.fields(shape)}
    errors = [{"field": k, "message": "unknown field"} for k in body if k not in fields]
    for name, f in fields.items():
        if name not in body:
            if f.required:
                errors.append({"field": name, "message": "is required"})
            continue
        try:
            msgspec.convert(body[name], f.type)
        except msgspec.ValidationError as exc:
            errors.append({"field": name, "message": _message(exc)})
    raise ValidationProblem(errors or [{"field": "body", "message": "invalid"}])


def _time(value: int | float | str | None, field: str, errors: list[dict[str, str]]) -> int | None:
    if value is None:
        return None
    try:
        t = parse_time(value)
    except (ValueError, OverflowError) as exc:
        errors.append({"field": field, "message": str(exc)})
        return None
    if not 0 <= t <= MAX_TIME_MS:
        errors.append({"field": field, "message": "must lie between 1970-01-01 and 2262-04-11"})
        return None
    return t


def _position(text: str | None, field: str, errors: list[dict[str, str]]) -> tuple[int, str] | None:
    if text is None:
        return None
    try:
        return decode_cursor(text)
    except BadCursor as exc:
        errors.append({"field": field, "message": str(exc)})
        return None


def parse_retrieve(bucket: str, body: object) -> EventQuery:
    b = decode_body(body, wire.RetrieveBody)
    errors: list[dict[str, str]] = []
    start, end = _time(b.start, "start", errors), _time(b.end, "end", errors)
    after = _position(b.cursor, "cursor", errors)
    if errors:
        raise ValidationProblem(errors)
    return EventQuery(bucket, b.event_name, b.app_name, b.server_name, b.limit, b.offset, start, end, after)


def parse_export(bucket: str, params: dict[str, str]) -> tuple[ExportQuery, ExportPosition | None]:
    """An export's query parameters; a time given as digits is epoch ms."""
    p = decode_body(params, wire.ExportParams)
    errors: list[dict[str, str]] = []

    def when(text: str | None, name: str) -> int | None:
        return _time(int(text) if text is not None and text.isdigit() else text, name, errors)

    start, end = when(p.start, "start"), when(p.end, "end")
    after = _position(p.after, "after", errors)
    if errors:
        raise ValidationProblem(errors)
    return ExportQuery(bucket, p.event_name, p.app_name, p.server_name, start, end), after


def parse_delete(bucket: str, body: object) -> DeleteScope:
    b = decode_body(body, wire.DeleteBody)
    errors: list[dict[str, str]] = []
    start, end = _time(b.start, "start", errors), _time(b.end, "end", errors)
    if errors:
        raise ValidationProblem(errors)
    return DeleteScope(bucket, b.event_name, b.app_name, b.server_name, start, end)


@dataclass(frozen=True, slots=True)
class StatsRequest:
    """A validated histogram request, before its windows are computed (that work is admitted
    first: see admission.py)."""

    bucket: str
    name: str
    app: str | None
    server: str | None
    days: float
    interval: Interval
    tz: ZoneInfo
    group_by: wire.GroupBy | None = None
    top: int = 10

    @property
    def group_tag(self) -> GroupTag:
        return "app" if self.group_by == "app_name" else "server"

    def cost(self) -> int:
        """About how many numbers the answer holds (what it costs), without computing windows."""
        windows = int(self.days * 86_400_000 / STEP_MS[self.interval]) + 2
        return windows if self.group_by is None else windows * (self.top + 1)

    def query(self, now_ms: int | None = None) -> StatsQuery:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        try:
            starts, end = window_starts(now_ms, self.days, self.interval, self.tz)
        except TooManyWindows as exc:
            raise ValidationProblem([{"field": "days", "message": f"too many windows: {exc}"}]) from None
        if self.group_by is not None and len(starts) * (self.top + 1) > MAX_GROUP_POINTS:
            message = (
                f"{len(starts):,} windows of up to {self.top + 1} series make more than {MAX_GROUP_POINTS:,} points: "
                "fewer days, a longer interval or a smaller top"
            )
            raise ValidationProblem([{"field": "days", "message": message}])
        return StatsQuery(self.bucket, self.name, self.app, self.server, starts, end, self.interval, self.tz.key)


def parse_stats(bucket: str, body: object) -> StatsRequest:
    b = decode_body(body, wire.StatsBody)
    try:
        tz = ZoneInfo(b.tz)
    except Exception:  # ZoneInfo raises several types for bad keys
        raise ValidationProblem([{"field": "tz", "message": f"unknown IANA time zone {b.tz!r}"}]) from None
    if b.top is not msgspec.UNSET and b.group_by is None:
        raise ValidationProblem([{"field": "top", "message": "needs group_by"}])
    top = 10 if b.top is msgspec.UNSET else b.top
    return StatsRequest(bucket, b.event_name, b.app_name, b.server_name, b.days, b.interval, tz, b.group_by, top)
