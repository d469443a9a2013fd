"""The OpenAPI 3.1 description of the service; tests check every route and response against it."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from eventsapi import __version__, wire
from eventsapi.limits import BUCKET_PATTERN
from eventsapi.values import StoredEvent


def _problem(description: str, retry_after: bool = False) -> dict[str, Any]:
    resp: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if retry_after:
        resp["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return resp


def _auth_errors() -> dict[str, Any]:
    return {
        "400": _problem("Invalid bucket id or parameters"),
        "401": _problem("Missing, malformed, expired or badly signed token"),
        "403": _problem("Token lacks the bucket or the scope"),
        "429": _problem("Over the token's rate limit (EVENTSAPI_RATE_LIMITS)", retry_after=True),
        "500": _problem("Unexpected error"),
        "503": _problem("Store unavailable, or too much heavy read work at once", retry_after=True),
    }


def _json_body(shape: type) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(shape)}}}


def _ok(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    resp: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        resp["headers"] = headers
    return resp


_BUCKET_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": BUCKET_PATTERN},
}


_SHAPES = (
    wire.Problem,
    wire.FlatEvent,
    wire.PM2Event,
    wire.IngestResult,
    StoredEvent,
    wire.RetrieveBody,
    wire.StatsBody,
    wire.AppEvents,
    wire.DeleteBody,
    wire.Deleted,
    wire.Bucket,
    wire.TailParams,
)


def _nullable_off(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: the field's, without its JSON null alternative."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _ref(shape: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{shape.__name__}"}


@cache
def openapi_document(max_events: int = 10_000) -> dict[str, Any]:
    """The document; `max_events` is the deployment's EVENTSAPI_MAX_EVENTS (the ingest limit)."""
    security: list[dict[str, list[str]]] = [{"bearer": []}]
    _, schemas = msgspec.json.schema_components(_SHAPES, ref_template="#/components/schemas/{name}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "eventsapi",
            "version": __version__,
            "description": "Stores application events per bucket and answers dashboard queries.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT, or an ingest key (eak_...)",
                    "description": "A signed token (`eventsapi token`) or an ingest key (`eventsapi keys create`).",
                }
            },
            "schemas": schemas,
        },
        "paths": {
            "/api/bucket/{id}/data/events/ingest": {
                "post": {
                    "summary": "Ingest a batch of events",
                    "security": security,
                    "parameters": [_BUCKET_PARAM],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "maxItems": max_events,
                                    "items": {"anyOf": [_ref(wire.FlatEvent), _ref(wire.PM2Event)]},
                                }
                            },
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "200": _ok(
                            "Valid events stored; invalid ones listed",
                            _ref(wire.IngestResult),
                        ),
                        **_auth_errors(),
                        "408": _problem("Body not received within EVENTSAPI_READ_TIMEOUT"),
                        "413": _problem("Body or batch too large"),
                    },
                }
            },
            "/api/bucket/{id}/data/events": {
                "post": {
                    "summary": "Latest events of a name, newest first",
                    "security": security,
                    "parameters": [_BUCKET_PARAM],
                    "requestBody": _json_body(wire.RetrieveBody),
                    "responses": {
                        "200": _ok(
                            "Events, newest first",
                            {"type": "array", "items": _ref(StoredEvent)},
                            {
                                "X-Next-Cursor": {
                                    "schema": {"type": "string"},
                                    "description": "present when more rows may follow",
                                }
                            },
                        ),
                        **_auth_errors(),
                        "408": _problem("Body not received within EVENTSAPI_READ_TIMEOUT"),
                        "413": _problem("Body too large"),
                    },
                }
            },
            "/api/bucket/{id}/data/events/stats": {
                "post": {
                    "summary": "Histogram of an event over time",
                    "security": security,
                    "parameters": [_BUCKET_PARAM],
                    "requestBody": _json_body(wire.StatsBody),
                    "responses": {
                        "200": _ok(
                            "[window start epoch ms, count] ascending",
                            {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "description": "[window start in epoch ms, count]",
                                    "items": {"type": "integer"},
                                    "minItems": 2,
                                    "maxItems": 2,
                                },
                            },
                        ),
                        **_auth_errors(),
                        "408": _problem("Body not received within EVENTSAPI_READ_TIMEOUT"),
                        "413": _problem("Body too large"),
                    },
                }
            },
            "/api/bucket/{id}/data/eventsKeysByApp": {
                "get": {
                    "summary": "Event names per app",
                    "security": security,
                    "parameters": [_BUCKET_PARAM],
                    "responses": {
                        "200": _ok(
                            "Apps sorted, names sorted",
                            {"type": "array", "items": _ref(wire.AppEvents)},
                        ),
                        **_auth_errors(),
                    },
                }
            },
            "/api/bucket/{id}/data/events/delete_all": {
                "delete": {
                    "summary": "Delete every event of the bucket",
                    "security": security,
                    "parameters": [_BUCKET_PARAM],
                    "responses": {
                        "200": _ok(
                            "Deleted",
                            _ref(wire.Deleted),
                        ),
                        **_auth_errors(),
                        "501": _problem("The store cannot delete (e.g. InfluxDB 3)"),
                    },
                }
            },
            "/api/bucket/{id}/data/events/delete": {
                "post": {
                    "summary": "Delete the events of a bucket that match every filter given (none: all)",
                    "security": security,
                    "parameters": [_BUCKET_PARAM],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref(wire.DeleteBody)}},
                    },
                    "responses": {
                        "200": _ok("Deleted", _ref(wire.Deleted)),
                        **_auth_errors(),
                        "408": _problem("Body not received within EVENTSAPI_READ_TIMEOUT"),
                        "413": _problem("Body too large"),
                        "501": _problem("The store cannot delete (e.g. InfluxDB 3)"),
                    },
                }
            },
            "/api/bucket": {
                "get": {
                    "summary": "The buckets the token grants (for '*': every bucket that holds events)",
                    "security": security,
                    "responses": {
                        "200": _ok(
                            "Buckets, as PM2 Plus describes them", {"type": "array", "items": _ref(wire.Bucket)}
                        ),
                        **_auth_errors(),
                    },
                }
            },
            "/api/bucket/{id}": {
                "get": {
                    "summary": "One bucket, as PM2 Plus describes it",
                    "security": security,
                    "parameters": [_BUCKET_PARAM],
                    "responses": {"200": _ok("The bucket", _ref(wire.Bucket)), **_auth_errors()},
                }
            },
            "/api/bucket/{id}/data/events/stream": {
                "get": {
                    "summary": "Live tail: newly ingested events as Server-Sent Events",
                    "description": (
                        "Each event is one message: `id:` its position, `data:` the event as retrieve returns "
                        "it. Reconnecting with `Last-Event-ID` resumes right after that position (a position "
                        "ahead of the newest event is 400). A comment line every 15 s keeps idle connections "
                        "open. A stream that falls behind by EVENTSAPI_STREAM_BYTES is disconnected (resume "
                        "with its last id); when its token expires or its key is revoked it sends `event: end` "
                        "with the reason, and closes."
                    ),
                    "security": security,
                    "parameters": [
                        _BUCKET_PARAM,
                        *(
                            {
                                "name": name,
                                "in": "query",
                                "required": False,
                                "schema": _nullable_off(schemas["TailParams"]["properties"][name]),
                            }
                            for name in ("event_name", "app_name", "server_name")
                        ),
                        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "An endless event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_auth_errors(),
                    },
                }
            },
            "/primus": {
                "get": {
                    "summary": "PM2's realtime feed (WebSocket), as @pm2/js-api's realtime.subscribe opens it",
                    "description": (
                        'Upgrade to a WebSocket; send {"action": "sub", "public_id": BUCKET, "filters": '
                        '["human:event"]}; newly ingested events arrive as {"data": ["human:event", '
                        '{"server_name": S, "human:event": [events]}]}.'
                    ),
                    "parameters": [
                        {
                            "name": "token",
                            "in": "query",
                            "required": True,
                            "description": "the JWT (PM2's protocol puts it here; query strings are never logged)",
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "101": {"description": "Switching to the WebSocket protocol"},
                        "400": _problem("Not a WebSocket upgrade request"),
                        "401": _problem("Missing, malformed, expired or badly signed token, or no events:read"),
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The dashboard (HTML; its scripts under /ui/)",
                    "responses": {
                        "200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}
                    },
                }
            },
            "/ui/{name}": {
                "get": {
                    "summary": "The dashboard's scripts and styles",
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {
                            "description": "The file",
                            "content": {
                                "text/javascript": {"schema": {"type": "string"}},
                                "text/css": {"schema": {"type": "string"}},
                            },
                        },
                        "404": _problem("No such file"),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _ok("OpenAPI 3.1 document", {"type": "object"})},
                }
            },
            "/healthz": {"get": {"summary": "Process is up", "responses": {"200": _ok("Up", {"type": "object"})}}},
            "/readyz": {
                "get": {
                    "summary": "Store reachable",
                    "responses": {
                        "200": _ok("Ready", {"type": "object"}),
                        "503": _problem("Store unreachable", retry_after=True),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }
