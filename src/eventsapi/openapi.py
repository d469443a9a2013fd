"""The OpenAPI 3.1 description of the service, built from the route table (routes.py) and the
wire types (wire.py); tests check every route and response against it."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import msgspec

from eventsapi import __version__, wire
from eventsapi.routes import ROUTES
from eventsapi.values import StoredEvent

_REF = re.compile(r"#/components/schemas/(\w+)")


def _shapes(paths: dict[str, Any]) -> list[type]:
    """The wire types the operations refer to (by $ref): the document's components come from
    the route table, never from a list kept beside it."""
    named = {t.__name__: t for t in vars(wire).values() if isinstance(t, type) and issubclass(t, msgspec.Struct)}
    named[StoredEvent.__name__] = StoredEvent
    return [named[name] for name in sorted(set(_REF.findall(json.dumps(paths))))]


@cache
def openapi_document(max_events: int = 10_000) -> dict[str, Any]:
    """The document; `max_events` is the deployment's EVENTSAPI_MAX_EVENTS (the ingest limit)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = route.operation(max_events)
    _, schemas = msgspec.json.schema_components(_shapes(paths), ref_template="#/components/schemas/{name}")
    for name, rules in wire.BODY_RULES.items():
        schemas[name].update(rules)
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
