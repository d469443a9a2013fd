"""Property-based fuzzing of every route from the OpenAPI document (schemathesis): no 5xx, every
response conforms to the document, every status code a route returns is documented, and
requests the document calls invalid are rejected (negative data).

Bounded for CI by EVENTSAPI_FUZZ_EXAMPLES (default 25 per operation); a longer run:
    EVENTSAPI_FUZZ_EXAMPLES=1000 ./scripts/test.sh tests/test_fuzz.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from schemathesis import GenerationMode, checks

from eventsapi.openapi import openapi_document
from support.service import Service

pytestmark = pytest.mark.slow


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    # The document describes an NDJSON body as a string: send it as its text.
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else str(value).encode()


EXAMPLES = int(os.environ.get("EVENTSAPI_FUZZ_EXAMPLES", "25"))
schema = schemathesis.openapi.from_dict(openapi_document())
# Negative data too: what the document rejects, the service must reject (4xx).
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.ignored_auth,
    checks.negative_data_rejection,
]
# Ingest rejects an invalid event on its own (200, listed in `rejected`), not the whole batch.
INGEST_CHECKS = [c for c in CHECKS if c is not checks.negative_data_rejection]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    svc = Service(tmp_path_factory.mktemp("fuzz"), {"EVENTSAPI_ACCESS_LOG": "0"})
    svc.start()
    token = svc.token("--sub", "fuzz", "--bucket", "*", "--scope", "events:read events:write events:delete")
    yield svc.url, token
    svc.stop()


@schema.parametrize()
@hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=bool(os.environ.get("CI")),  # CI runs the same examples every time
)
def test_every_route(case: Any, live: tuple[str, str]) -> None:
    url, token = live
    if case.operation.path.endswith("/stream"):
        pytest.skip("an endless stream: tested in test_tail.py")
    chosen = INGEST_CHECKS if case.operation.path.endswith("/ingest") else CHECKS
    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"}, checks=chosen)


def test_document_lists_every_route(tmp_path: Path) -> None:
    from eventsapi.app import create_app
    from eventsapi.config import Settings

    app = create_app(Settings(jwt_secret="x", data_dir=tmp_path))
    routes = {
        (r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None and r.method != "HEAD"
    }
    documented = {(m.upper(), p) for p, item in openapi_document()["paths"].items() for m in item}
    assert routes == documented
