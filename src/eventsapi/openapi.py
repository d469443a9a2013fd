"""The OpenAPI 3.1 description of the service; tests check every route and response against it."""

from __future__ import annotations

from functools import cache
from typing import Any

from eventsapi import __version__

_NAME = {"type": "string", "minLength": 1, "maxLength": 256}
_TIME = {
    "oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}],
    "description": "epoch milliseconds or ISO 8601",
}


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
        "500": _problem("Unexpected error"),
        "503": _problem("Store unavailable, or too much heavy read work at once", retry_after=True),
    }


def _json_body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _ok(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    resp: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        resp["headers"] = headers
    return resp


_BUCKET_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
}


@cache
def openapi_document() -> dict[str, Any]:
    security: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "eventsapi",
            "version": __version__,
            "description": "Stores application events per bucket and answers dashboard queries.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["field", "message"],
                                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                            },
                        },
                    },
                },
                "FlatEvent": {
                    "type": "object",
                    "required": ["event_name", "app_name"],
                    "properties": {
                        "event_name": _NAME,
                        "app_name": _NAME,
                        "server_name": {"type": "string", "maxLength": 256},
                        "at": _TIME,
                        "data": {"type": "object"},
                        "id": {"type": "string", "minLength": 1, "maxLength": 128},
                    },
                },
                "PM2Event": {
                    "type": "object",
                    "required": ["name", "process"],
                    "properties": {
                        "name": _NAME,
                        "at": _TIME,
                        "data": {"type": "object"},
                        "process": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": _NAME,
                                "server": {"type": "string", "maxLength": 256},
                                "pm_id": {},
                                "rev": {},
                            },
                        },
                    },
                },
                "IngestResult": {
                    "type": "object",
                    "required": ["accepted", "rejected"],
                    "properties": {
                        "accepted": {"type": "integer", "minimum": 0},
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["index", "error"],
                                "properties": {"index": {"type": "integer"}, "error": {"type": "string"}},
                            },
                        },
                    },
                },
                "Event": {
                    "type": "object",
                    "required": ["id", "event_name", "app_name", "server_name", "at", "data"],
                    "properties": {
                        "id": {"type": "string"},
                        "event_name": {"type": "string"},
                        "app_name": {"type": "string"},
                        "server_name": {"type": "string"},
                        "at": {"type": "integer"},
                        "data": {"type": "object"},
                    },
                },
                "RetrieveRequest": {
                    "type": "object",
                    "required": ["event_name"],
                    "additionalProperties": False,
                    "properties": {
                        "event_name": _NAME,
                        "app_name": _NAME,
                        "server_name": {"type": "string", "maxLength": 256},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        "offset": {"type": "integer", "minimum": 0, "maximum": 100000, "default": 0},
                        "start": _TIME,
                        "end": _TIME,
                        "cursor": {"type": "string", "description": "X-Next-Cursor of the previous page"},
                    },
                },
                "StatsRequest": {
                    "type": "object",
                    "required": ["event_name"],
                    "additionalProperties": False,
                    "properties": {
                        "event_name": _NAME,
                        "app_name": _NAME,
                        "server_name": {"type": "string", "maxLength": 256},
                        "days": {"type": "number", "exclusiveMinimum": 0, "maximum": 365, "default": 2},
                        "interval": {"enum": ["minute", "hour", "day"], "default": "minute"},
                        "tz": {"type": "string", "default": "UTC", "description": "IANA time zone"},
                    },
                },
            },
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
                                    "maxItems": 10000,
                                    "items": {
                                        "anyOf": [
                                            {"$ref": "#/components/schemas/FlatEvent"},
                                            {"$ref": "#/components/schemas/PM2Event"},
                                        ]
                                    },
                                }
                            },
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "200": _ok(
                            "Valid events stored; invalid ones listed",
                            {"$ref": "#/components/schemas/IngestResult"},
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
                    "requestBody": _json_body("#/components/schemas/RetrieveRequest"),
                    "responses": {
                        "200": _ok(
                            "Events, newest first",
                            {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
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
                    "requestBody": _json_body("#/components/schemas/StatsRequest"),
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
                            {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["app_name", "events"],
                                    "properties": {
                                        "app_name": {"type": "string"},
                                        "events": {"type": "array", "items": {"type": "string"}},
                                    },
                                },
                            },
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
                            {
                                "type": "object",
                                "required": ["bucket_id", "deleted"],
                                "properties": {"bucket_id": {"type": "string"}, "deleted": {"const": True}},
                            },
                        ),
                        **_auth_errors(),
                        "501": _problem("The store cannot delete (e.g. InfluxDB 3)"),
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
