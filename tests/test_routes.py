"""The route table is the one place a path is written: the app serves exactly its routes, the
OpenAPI document describes exactly them, and no other source file spells a path out."""

from __future__ import annotations

import re
from pathlib import Path

from eventsapi.app import create_app
from eventsapi.config import Settings
from eventsapi.openapi import openapi_document
from eventsapi.routes import ROUTES
from support import SECRET

SRC = Path(__file__).resolve().parent.parent / "src" / "eventsapi"


def test_the_app_serves_the_table_and_the_document_describes_it() -> None:
    app = create_app(Settings(jwt_secret=SECRET))
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD" and r.resource}
    table = {(r.method, r.path) for r in ROUTES}
    documented = {(m.upper(), p) for p, ops in openapi_document()["paths"].items() for m in ops}
    assert served == table == documented


def test_no_path_is_spelt_out_beside_the_table() -> None:
    literal = re.compile(r"""["'](/api/|/primus|/healthz|/readyz|/metrics|/ui/)""")
    offenders = [
        f"{p.relative_to(SRC)}:{n}"
        for p in SRC.rglob("*.py")
        if p.name != "routes.py" and "bench" not in p.parts
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []
