"""The JSON shapes on the wire, each declared once (docs/api.md §5).

From these types come the validation of the retrieve and histogram bodies (validation.py),
the encoding of answers (msgspec), and the schemas of the OpenAPI document (openapi.py).
Limits are carried by `Annotated[..., Meta(...)]`, from limits.py. Rules a schema cannot
state — a time zone that exists, a date that parses, how many windows a histogram has, a
cursor this service issued, `at` no later than now + 24 h — are checked by code and written
in the descriptions here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from eventsapi.limits import MAX_CURSOR_CHARS, MAX_GROUP_POINTS, MAX_ID, MAX_NAME, MAX_TIME_MS, MAX_TOP, MAX_WINDOWS
from eventsapi.windows import Interval

# Printable Unicode: no C0/DEL/C1 control characters, no U+2028/2029, no lone surrogates.
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]*$"

_NAME = "1-256 printable characters, matched literally (quotes, backslashes, ${, |> included)"
_SERVER = "a server name; empty (or absent) for none"
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME, pattern=PRINTABLE, description=_NAME)]
ServerName = Annotated[str, Meta(max_length=MAX_NAME, pattern=PRINTABLE, description=_SERVER)]

# An ingested event's texts obey the same rules, but the decoder checks only their lengths: the
# printable check runs once over a whole batch (validation.py), not as a pattern per value. The
# schema states the pattern all the same.
_CHECKED_BY_BATCH = {"pattern": PRINTABLE}
IngestName = Annotated[
    str, Meta(min_length=1, max_length=MAX_NAME, extra_json_schema=_CHECKED_BY_BATCH, description=_NAME)
]
IngestServer = Annotated[str, Meta(max_length=MAX_NAME, extra_json_schema=_CHECKED_BY_BATCH, description=_SERVER)]
IngestId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_ID,
        extra_json_schema=_CHECKED_BY_BATCH,
        description="default: assigned by the service",
    ),
]
# The payload stays the JSON text that was sent (stored without a parse and re-serialisation).
Payload = Annotated[
    msgspec.Raw,
    Meta(
        description="a JSON object of at most 64 KiB serialised (null: {})",
        extra_json_schema={"type": ["object", "null"]},
    ),
]
Time = (
    Annotated[int, Meta(ge=0, le=MAX_TIME_MS, description="epoch milliseconds")]
    | Annotated[float, Meta(ge=0, le=MAX_TIME_MS, description="epoch milliseconds (the fraction is dropped)")]
    | Annotated[str, Meta(max_length=64, description="ISO 8601 (without an offset: UTC); must parse")]
)


GroupBy = Literal["app_name", "server_name"]


class RetrieveBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Body of POST .../data/events: the newest events of one name."""

    event_name: Name
    app_name: Name | None = None
    server_name: ServerName | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    offset: Annotated[int, Meta(ge=0, le=100_000)] = 0
    start: Annotated[Time | None, Meta(description="inclusive")] = None
    end: Annotated[Time | None, Meta(description="exclusive")] = None
    cursor: (
        Annotated[
            str,
            Meta(max_length=MAX_CURSOR_CHARS, description="X-Next-Cursor of the previous page; only those are valid"),
        ]
        | None
    ) = None


class StatsBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Body of POST .../data/events/stats: a histogram of one name."""

    event_name: Name
    app_name: Name | None = None
    server_name: ServerName | None = None
    days: Annotated[
        float,
        Meta(gt=0, le=365, description=f"history to cover; at most {MAX_WINDOWS} windows (minute: 69 days)"),
    ] = 2.0
    interval: Interval = "minute"
    tz: Annotated[str, Meta(min_length=1, max_length=64, description="an IANA time zone that exists")] = "UTC"
    group_by: Annotated[
        GroupBy | None,
        Meta(description=f"answer a Breakdown; at most {MAX_GROUP_POINTS:,} points (windows times series)"),
    ] = None
    top: (
        Annotated[int, Meta(ge=1, le=MAX_TOP, description="series of a breakdown besides 'other' (10); needs group_by")]
        | UnsetType
    ) = UNSET


# What a schema of one field cannot say, said for the whole body (JSON Schema 2020-12), by name.
BODY_RULES: dict[str, dict[str, Any]] = {"StatsBody": {"dependentRequired": {"top": ["group_by"]}}}


class Series(msgspec.Struct, frozen=True):
    """One series of a breakdown: the events of one app or server (`other`: of all the values
    past the `top` largest). The value's key is the `group_by` field: app_name or server_name."""

    other: bool
    total: Annotated[int, Meta(ge=0)]
    points: Annotated[list[tuple[int, int]], Meta(description="[window start epoch ms, count], ascending")]
    app_name: str | None = None
    server_name: str | None = None


class Breakdown(msgspec.Struct, frozen=True):
    """The histogram by app or server: series sorted by total, descending, on the same windows."""

    interval: Interval
    tz: str
    group_by: GroupBy
    series: list[Series]


class TailParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query parameters of GET .../data/events/stream: what the live tail follows."""

    event_name: Name | None = None
    app_name: Name | None = None
    server_name: ServerName | None = None


_QUERY_TIME = "epoch ms or ISO 8601 (without an offset: UTC); must parse"


class ExportParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query parameters of GET .../data/events/export: which events, and where to resume."""

    event_name: Name | None = None
    app_name: Name | None = None
    server_name: ServerName | None = None
    start: Annotated[str, Meta(max_length=64, description=f"inclusive; {_QUERY_TIME}")] | None = None
    end: Annotated[str, Meta(max_length=64, description=f"exclusive; {_QUERY_TIME}")] | None = None
    after: (
        Annotated[
            str,
            Meta(
                max_length=MAX_CURSOR_CHARS,
                description="the `position` of the last line received (resume after it); only those are valid",
            ),
        ]
        | None
    ) = None


class ExportLine(msgspec.Struct, frozen=True, gc=False):
    """One line of an export: an event in the ingest's shape (an import stores it as it was,
    same id and `at`), and its `position` (which ingest ignores) to resume after it."""

    event_name: str
    app_name: str
    server_name: str
    at: int
    id: str
    data: Payload
    position: str


class FlatEvent(msgspec.Struct, frozen=True, gc=False):
    """An event to ingest, flat. Unknown fields are ignored.

    Also the ingest's fast decoder (validation.py): a batch of these decodes in C with every
    type and length checked; what a schema cannot state (printable, `at` ≤ now + 24 h, `data` an
    object) is checked once per batch."""

    event_name: IngestName
    app_name: IngestName
    server_name: IngestServer | None = None
    at: Annotated[Time | None, Meta(description="default: receipt; between 1970 and now + 24 h")] = None
    data: Payload | UnsetType = UNSET
    id: IngestId | None = None


class PM2Process(msgspec.Struct, frozen=True):
    name: IngestName
    server: IngestServer | None = None
    pm_id: Any = None
    rev: Any = None


class PM2Event(msgspec.Struct, frozen=True):
    """An event to ingest as PM2 sends it (a `human:event` packet)."""

    name: IngestName
    process: PM2Process
    at: Annotated[Time | None, Meta(description="default: receipt; between 1970 and now + 24 h")] = None
    data: Payload | UnsetType = UNSET


class AlertState(msgspec.Struct, frozen=True):
    """One alert rule of a bucket, as GET .../alerts answers it."""

    name: str
    event_name: str
    app_name: str | None
    server_name: str | None
    threshold: int
    window: str
    cooldown: str
    state: Literal["ok", "firing", "cooling down"]
    count: Annotated[int, Meta(ge=0, description="matching events in the last window")]
    last_fired: Annotated[int | None, Meta(description="epoch ms of the last firing's window end")]
    last_delivery: dict[str, Any] | None


class Rejection(msgspec.Struct, frozen=True):
    index: int
    error: str


class IngestResult(msgspec.Struct, frozen=True):
    accepted: Annotated[int, Meta(ge=0)]
    rejected: list[Rejection]


class AppEvents(msgspec.Struct, frozen=True):
    app_name: str
    events: list[str]


class DeleteBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Body of POST .../data/events/delete: which events to delete (none given: all)."""

    event_name: Name | None = None
    app_name: Name | None = None
    server_name: ServerName | None = None
    start: Annotated[Time | None, Meta(description="inclusive")] = None
    end: Annotated[Time | None, Meta(description="exclusive")] = None


class Deleted(msgspec.Struct, frozen=True, omit_defaults=True):
    bucket_id: str
    deleted: Literal[True]
    count: Annotated[int | None, Meta(description="events removed, where the store can tell cheaply")] = None


class Endpoints(msgspec.Struct, frozen=True):
    web: Annotated[str, Meta(description="base URL of this service for the bucket's HTTP routes")]
    realtime: Annotated[str, Meta(description="base URL of its realtime feed")]


class Node(msgspec.Struct, frozen=True):
    endpoints: Endpoints


class Bucket(msgspec.Struct, frozen=True, rename={"id": "_id"}):
    """A bucket as PM2 Plus describes one (what @pm2/js-api reads): every id is the bucket id."""

    id: str
    name: str
    public_id: str
    node: Node


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
