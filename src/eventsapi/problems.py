"""RFC 9457 problem details: the one shape every error response takes."""

from __future__ import annotations

import msgspec
from aiohttp import web

from eventsapi import wire

PROBLEM_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class Problem(Exception):
    """An error the client should see, with its status and a human-readable detail."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.close = close  # the request body was not fully read: the connection cannot be reused


class ValidationProblem(Problem):
    """400 with a list of field errors."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        super().__init__(400, detail or "invalid request", errors=errors)


def problem_response(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = wire.Problem(
        "about:blank",
        _TITLES.get(status, "Error"),
        status,
        detail,
        None if errors is None else [wire.FieldError(e["field"], e["message"]) for e in errors],
    )
    return web.Response(status=status, body=msgspec.json.encode(body), content_type=PROBLEM_TYPE, headers=headers)
