"""The OpenAPI 3.1 description of the service, built from the route table (routes.py) and the
wire types (wire.py); tests check every route and response against it."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from eventsapi import __version__, wire
from eventsapi.routes import ROUTES
from eventsapi.values import StoredEvent

_SHAPES = (
    wire.Problem,
    wire.FlatEvent,
    wire.PM2Event,
    wire.IngestResult,
    StoredEvent,
    wire.RetrieveBody,
    wire.StatsBody,
    wire.Breakdown,
    wire.AppEvents,
    wire.DeleteBody,
    wire.Deleted,
    wire.Bucket,
    wire.TailParams,
    wire.ExportLine,
)


@cache
def openapi_document(max_events: int = 10_000) -> dict[str, Any]:
    """The document; `max_events` is the deployment's EVENTSAPI_MAX_EVENTS (the ingest limit)."""
    _, schemas = msgspec.json.schema_components(_SHAPES, ref_template="#/components/schemas/{name}")
    for name, rules in wire.BODY_RULES.items():
        schemas[name].update(rules)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = route.operation(max_events)
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
        "paths": paths,
    }
