"""What the tests share: tokens, hostile names, and a client that checks every answer
against the OpenAPI document."""

from __future__ import annotations

import json
import time
from typing import Any

import jsonschema
import jwt
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from eventsapi.openapi import openapi_document

# Names every route must store and match literally: each breaks some query language or format.
HOSTILE = [
    'quote"d',
    "single'quote",
    "back\\slash",
    "trailing\\",
    "\\\\double",
    "${interp}",
    "a |> drop()",
    "comma,separated",
    "with space",
    "eq=sign",
    '") |> yield() //',
    "' OR 1=1 --",
    ".*",
    "ünïcødé ✓",
    "%25",
    "%",
]

SECRET = "test-secret-test-secret-test-secret-0123456789"
ALL_SCOPES = "events:read events:write events:delete"


def make_token(
    buckets: list[str] | None = None,
    scope: str = ALL_SCOPES,
    *,
    secret: str = SECRET,
    ttl: int = 3600,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "tester",
        "buckets": buckets if buckets is not None else ["*"],
        "scope": scope,
        "iat": now,
        "exp": now + ttl,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm="HS256")


# -- OpenAPI response checking --------------------------------------------------------------

_DOC = openapi_document()
_REGISTRY = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(_DOC))


def _operation(method: str, path: str) -> dict[str, Any] | None:
    parts = path.split("/")
    for template, item in _DOC["paths"].items():
        tparts = template.split("/")
        if len(tparts) == len(parts) and all(
            t == p or (t.startswith("{") and t.endswith("}")) for t, p in zip(tparts, parts, strict=True)
        ):
            return item.get(method.lower())  # type: ignore[no-any-return]
    return None


async def check_against_openapi(method: str, path: str, resp: ClientResponse) -> None:
    """Every documented route's response must have a documented status, content type and
    a body that validates against the document's schema."""
    op = _operation(method, path)
    if op is None:
        # Unknown routes answer 404 problem+json.
        if resp.status in (404, 405):
            assert resp.content_type == "application/problem+json"
        return
    status = str(resp.status)
    assert status in op["responses"], f"{method} {path} answered undocumented {status}"
    spec = op["responses"][status]
    content = spec.get("content", {})
    if not content:
        return
    assert resp.content_type in content, f"{method} {path} {status}: content type {resp.content_type}"
    if resp.content_type == "application/x-ndjson":
        # NDJSON: the schema is each line's (OpenAPI 3.1 has no item schema for a stream).
        validator = document_validator(content[resp.content_type]["schema"])
        for line in (await resp.read()).splitlines():
            validator.validate(json.loads(line))
    elif resp.content_type.endswith("json"):
        schema = content[resp.content_type]["schema"]
        body = await resp.json(content_type=None)
        validator = document_validator(schema)
        validator.validate(body)


def document_validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for a schema taken from the OpenAPI document (its $refs resolve there)."""
    return jsonschema.Draft202012Validator(_rewrite_refs(schema), registry=_REGISTRY)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: ("urn:openapi" + v if k == "$ref" and v.startswith("#") else _rewrite_refs(v)) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


class Api:
    """A test client bound to one app, with the token helpers the suite needs."""

    def __init__(self, client: TestClient[Any, Any], kind: str) -> None:
        self.client = client
        self.kind = kind
        self.token = make_token()

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def request(self, method: str, path: str, **kw: Any) -> ClientResponse:
        headers = kw.pop("headers", None)
        if headers is None:
            headers = self.auth()
        resp = await self.client.request(method, path, headers=headers, **kw)
        await resp.read()
        await check_against_openapi(method, path, resp)
        return resp

    async def ingest_raw(
        self, bucket: str, body: Any, content_type: str = "application/json", encoding: str | None = None
    ) -> ClientResponse:
        """POST a body as it is (bytes, or a file-like for large ones) to the ingest route."""
        headers = {**self.auth(), "Content-Type": content_type}
        if encoding:
            headers["Content-Encoding"] = encoding
        return await self.request("POST", f"/api/bucket/{bucket}/data/events/ingest", data=body, headers=headers)

    async def ingest(self, bucket: str, events: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        resp = await self.request("POST", f"/api/bucket/{bucket}/data/events/ingest", json=events, **kw)
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]

    async def retrieve(self, bucket: str, **body: Any) -> tuple[list[dict[str, Any]], str | None]:
        resp = await self.request("POST", f"/api/bucket/{bucket}/data/events", json=body)
        assert resp.status == 200, await resp.text()
        return await resp.json(), resp.headers.get("X-Next-Cursor")

    async def stats(self, bucket: str, **body: Any) -> list[list[int]]:
        resp = await self.request("POST", f"/api/bucket/{bucket}/data/events/stats", json=body)
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]

    async def keys(self, bucket: str) -> list[dict[str, Any]]:
        resp = await self.request("GET", f"/api/bucket/{bucket}/data/eventsKeysByApp")
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]

    async def delete_all(self, bucket: str) -> None:
        resp = await self.request("DELETE", f"/api/bucket/{bucket}/data/events/delete_all")
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"bucket_id": bucket, "deleted": True}
