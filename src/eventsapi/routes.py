"""The route table: every path the service serves, its handler, and its OpenAPI operation.

`create_app` registers these routes and `openapi.py` builds the document's paths from them, so
a route is added here and nowhere else: one row (method, path, handler, scope, body, answers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from eventsapi import handlers as h
from eventsapi import pages, transfer, wire
from eventsapi.limits import BUCKET_PATTERN
from eventsapi.values import StoredEvent

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]


def problem(description: str, retry_after: bool = False) -> Schema:
    resp: Schema = {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if retry_after:
        resp["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return resp


def ok(description: str, schema: Schema, headers: Schema | None = None) -> Schema:
    resp: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        resp["headers"] = headers
    return resp


def ref(shape: type) -> Schema:
    return {"$ref": f"#/components/schemas/{shape.__name__}"}


def json_body(shape: type, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": ref(shape)}}}


AUTH_ERRORS: Schema = {
    "400": problem("Invalid bucket id or parameters"),
    "401": problem("Missing, malformed, expired or badly signed token, or a bad ingest key"),
    "403": problem("The credential lacks the bucket or the scope"),
    "429": problem("Over the token's rate limit (EVENTSAPI_RATE_LIMITS)", retry_after=True),
    "500": problem("Unexpected error"),
    "503": problem("Store unavailable, or too much heavy read work at once", retry_after=True),
}
BODY_ERRORS: Schema = {
    "408": problem("Body not received within EVENTSAPI_READ_TIMEOUT"),
    "413": problem("Body too large"),
}
CANNOT_DELETE: Schema = {"501": problem("The store cannot delete (e.g. InfluxDB 3)")}
BUCKET_PARAM: Schema = {
    "name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": BUCKET_PATTERN}
}  # fmt: skip
API = "/api/bucket/{id}/data"


def _query_params(shape: type) -> list[Schema]:
    """A wire type's fields as query parameters, without their null."""
    schema = msgspec.json.schema(shape)
    props = schema["$defs"][shape.__name__]["properties"]

    def not_null(s: Schema) -> Schema:
        options = [o for o in s.get("anyOf", [s]) if o.get("type") != "null"]
        return options[0] if len(options) == 1 else {"anyOf": options}

    return [{"name": name, "in": "query", "required": False, "schema": not_null(s)} for name, s in props.items()]


@dataclass(frozen=True)
class Route:
    """One route. `scope` None: no credential needed. `body` may depend on the deployment's
    EVENTSAPI_MAX_EVENTS (a function of it). `api` routes are the ones CORS applies to."""

    method: str
    path: str
    handler: Handler
    summary: str
    responses: Schema
    scope: str | None = None
    body: Schema | Callable[[int], Schema] | None = None
    parameters: list[Schema] = field(default_factory=list)
    description: str = ""
    api: bool = False

    def operation(self, max_events: int) -> Schema:
        op: Schema = {"summary": self.summary}
        if self.description:
            op["description"] = self.description
        if self.scope is not None:
            op["security"] = [{"bearer": []}]
        params = ([BUCKET_PARAM] if "{id}" in self.path else []) + self.parameters
        if params:
            op["parameters"] = params
        if self.body is not None:
            op["requestBody"] = self.body(max_events) if callable(self.body) else self.body
        op["responses"] = self.responses
        return op


def _ingest_body(max_events: int) -> Schema:
    events = {"anyOf": [ref(wire.FlatEvent), ref(wire.PM2Event)]}
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "maxItems": max_events, "items": events}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }


_HISTOGRAM = {
    "type": "array",
    "items": {
        "type": "array",
        "description": "[window start in epoch ms, count]",
        "items": {"type": "integer"},
        "minItems": 2,
        "maxItems": 2,
    },
}
_CURSOR = {"X-Next-Cursor": {"schema": {"type": "string"}, "description": "present when more rows may follow"}}

ROUTES: tuple[Route, ...] = (
    Route("POST", f"{API}/events/ingest", h.ingest, "Ingest a batch of events", scope="events:write",
          body=_ingest_body, api=True,
          responses={"200": ok("Valid events stored; invalid ones listed", ref(wire.IngestResult)), **AUTH_ERRORS,
                     "408": BODY_ERRORS["408"], "413": problem("Body or batch too large"),
                     "409": problem("A millisecond of the bucket already holds 10^6 events: nothing more fits")}),
    Route("POST", f"{API}/events", h.retrieve, "Latest events of a name, newest first", scope="events:read",
          body=json_body(wire.RetrieveBody), api=True,
          responses={"200": ok("Events, newest first", {"type": "array", "items": ref(StoredEvent)}, _CURSOR),
                     **AUTH_ERRORS, **BODY_ERRORS}),
    Route("POST", f"{API}/events/stats", h.stats, "Histogram of an event over time", scope="events:read",
          body=json_body(wire.StatsBody), api=True,
          responses={"200": ok("[window start epoch ms, count] ascending; with group_by, a Breakdown",
                                {"oneOf": [_HISTOGRAM, ref(wire.Breakdown)]}),
                     **AUTH_ERRORS, **BODY_ERRORS}),
    Route("GET", f"{API}/alerts", h.alerts, "The bucket's alert rules and their state", scope="events:read",
          api=True,
          description="Rules come from EVENTSAPI_ALERT_RULES (docs/api.md §5.13). `state`: ok, firing or cooling down; "
                      "`last_delivery`: pending, retrying, delivered (with attempts and the webhook's status).",
          responses={"200": ok("Rules of the bucket", {"type": "array", "items": ref(wire.AlertState)}),
                     **AUTH_ERRORS}),
    Route("GET", f"{API}/eventsKeysByApp", h.keys_by_app, "Event names per app", scope="events:read", api=True,
          responses={"200": ok("Apps sorted, names sorted", {"type": "array", "items": ref(wire.AppEvents)}),
                     **AUTH_ERRORS}),
    Route("DELETE", f"{API}/events/delete_all", h.delete_all, "Delete every event of the bucket",
          scope="events:delete", api=True,
          responses={"200": ok("Deleted", ref(wire.Deleted)), **AUTH_ERRORS, **CANNOT_DELETE}),
    Route("POST", f"{API}/events/delete", h.delete,
          "Delete the events of a bucket that match every filter given (none: all)", scope="events:delete",
          body=json_body(wire.DeleteBody, required=False), api=True,
          responses={"200": ok("Deleted", ref(wire.Deleted)), **AUTH_ERRORS, **BODY_ERRORS, **CANNOT_DELETE}),
    Route("GET", f"{API}/events/stream", h.stream, "Live tail: newly ingested events as Server-Sent Events",
          scope="events:read", api=True,
          description=(
              "Each event is one message: `id:` its position, `data:` the event as retrieve returns it. Reconnecting "
              "with `Last-Event-ID` resumes right after that position (a position ahead of the newest event is 400). "
              "A comment line every 15 s keeps idle connections open. A stream that falls behind by "
              "EVENTSAPI_STREAM_BYTES is disconnected (resume with its last id); when its token expires or its key "
              "is revoked it sends `event: end` with the reason, and closes."
          ),
          parameters=[*_query_params(wire.TailParams),
                      {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}}],
          responses={"200": {"description": "An endless event stream",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                     **AUTH_ERRORS}),
    Route("GET", f"{API}/events/export", transfer.export, "Every matching event as NDJSON, oldest first",
          scope="events:read", api=True,
          description=(
              "One line per event in the ingest's shape plus its `position`; POSTing the lines to ingest stores "
              "them again as they were (same id and `at`: a second import stores nothing). Streamed page by page "
              "in constant memory; gzip with Accept-Encoding: gzip. Resume with `after` = the last line's position. "
              "If the store fails mid-way the connection is cut without a clean end."
          ),
          parameters=_query_params(wire.ExportParams),
          responses={"200": {"description": "NDJSON: each line one ExportLine (the schema is a line's)",
                             "content": {"application/x-ndjson": {"schema": ref(wire.ExportLine)}}},
                     **AUTH_ERRORS}),
    Route("GET", "/api/bucket", h.list_buckets,
          "The buckets the token grants (for '*': every bucket that holds events)", scope="events:read", api=True,
          responses={"200": ok("Buckets, as PM2 Plus describes them", {"type": "array", "items": ref(wire.Bucket)}),
                     **AUTH_ERRORS}),
    Route("GET", "/api/bucket/{id}", h.get_bucket, "One bucket, as PM2 Plus describes it", scope="events:read",
          api=True, responses={"200": ok("The bucket", ref(wire.Bucket)), **AUTH_ERRORS}),
    Route("GET", "/api/openapi.json", pages.openapi, "This document", api=True,
          responses={"200": ok("OpenAPI 3.1 document", {"type": "object"})}),
    Route("GET", "/primus", h.primus,
          "PM2's realtime feed (WebSocket), as @pm2/js-api's realtime.subscribe opens it",
          description=(
              'Upgrade to a WebSocket; send {"action": "sub", "public_id": BUCKET, "filters": ["human:event"]}; '
              'newly ingested events arrive as {"data": ["human:event", {"server_name": S, "human:event": [events]}]}.'
          ),
          parameters=[{"name": "token", "in": "query", "required": True, "schema": {"type": "string"},
                       "description": "the JWT or ingest key (PM2's protocol puts it here; query strings are "
                                      "never logged)"}],
          responses={"101": {"description": "Switching to the WebSocket protocol"},
                     "400": problem("Not a WebSocket upgrade request"),
                     "401": problem("Missing, malformed, expired or badly signed token, or no events:read")}),
    Route("GET", "/", pages.dashboard, "The dashboard (HTML; its scripts under /ui/)",
          responses={"200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}}),
    Route("GET", "/ui/{name}", pages.asset, "The dashboard's scripts and styles",
          parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
          responses={"200": {"description": "The file", "content": {"text/javascript": {"schema": {"type": "string"}},
                                                                   "text/css": {"schema": {"type": "string"}}}},
                     "404": problem("No such file")}),
    Route("GET", "/healthz", pages.healthz, "Process is up", responses={"200": ok("Up", {"type": "object"})}),
    Route("GET", "/readyz", pages.readyz, "Store reachable",
          responses={"200": ok("Ready", {"type": "object"}), "503": problem("Store unreachable", retry_after=True)}),
    Route("GET", "/metrics", pages.metrics, "Prometheus metrics",
          responses={"200": {"description": "Prometheus text",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}}),
)  # fmt: skip
