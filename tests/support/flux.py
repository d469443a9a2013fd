"""The real Flux front end (libflux, InfluxData's WASM build, under Node) for the tests, and
helpers to read the ASTs it returns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHECKER = Path(__file__).parent.parent / "flux" / "check.mjs"
PACKAGE = Path(__file__).parent.parent / "flux" / "node_modules" / "@influxdata" / "flux-lsp-browser"


def run_libflux(texts: list[str]) -> list[dict[str, Any]]:
    if shutil.which("node") is None or not PACKAGE.exists():
        if os.environ.get("CI"):
            pytest.fail("node and tests/flux/node_modules are required in CI (scripts/test.sh installs them)")
        pytest.skip("Flux front end not installed: (cd tests/flux && npm ci)")
    out = subprocess.run(
        ["node", str(CHECKER)], input=json.dumps(texts).encode(), capture_output=True, check=True, timeout=300
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def shape(node: Any) -> Any:
    """The AST with string-literal values blanked and source locations dropped."""
    if isinstance(node, dict):
        if node.get("type") == "StringLiteral":
            return {"type": "StringLiteral"}
        return {k: shape(v) for k, v in node.items() if k not in ("location", "source")}
    if isinstance(node, list):
        return [shape(v) for v in node]
    return node


def string_literals(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["value"]] if node.get("type") == "StringLiteral" else []
        return found + [s for v in node.values() for s in string_literals(v)]
    if isinstance(node, list):
        return [s for v in node for s in string_literals(v)]
    return []
