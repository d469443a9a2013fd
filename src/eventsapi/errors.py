"""The service's own exceptions, and the one table from each to the problem+json answer.

    EventsapiError
    └── StoreError             the engine could not do what was asked
        ├── StoreUnavailable   unreachable or too slow: 503 + Retry-After (the request may be retried)
        ├── NotSupported       this engine cannot do it at all: 501
        └── MillisecondFull    a millisecond of the bucket holds 10⁶ events: 409

A `problems.Problem` carries its own status (validation, authentication, limits); everything
else that escapes a handler is a bug: 500, its stack trace in the log only.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRY_AFTER = "5"  # seconds, in every 503's Retry-After


class EventsapiError(Exception):
    """Base of the service's own errors."""


class StoreError(EventsapiError):
    """The engine could not do what was asked."""


class StoreUnavailable(StoreError):
    """The engine cannot be reached or did not answer in time (HTTP 503)."""


class NotSupported(StoreError):
    """The engine cannot do this operation at all (HTTP 501)."""


class MillisecondFull(StoreError):
    """Every slot of one millisecond of a bucket is taken (10⁶ events): nothing more fits."""


@dataclass(frozen=True)
class Answer:
    status: int
    detail: str | None  # None: the exception's own message (it holds no query text)
    retry: bool = False  # with Retry-After
    counted: str | None = None  # the eventsapi_store_errors_total label


ANSWERS: dict[type[StoreError], Answer] = {
    StoreUnavailable: Answer(503, "the store is unavailable; retry later", retry=True, counted="unavailable"),
    NotSupported: Answer(501, None),
    MillisecondFull: Answer(409, None),
}


def answer(exc: StoreError) -> tuple[Answer, str, dict[str, str] | None]:
    """What a store error answers: the table's row, the detail, the headers."""
    row = next(ANSWERS[t] for t in type(exc).__mro__ if t in ANSWERS)
    headers = {"Retry-After": RETRY_AFTER} if row.retry else None
    return row, row.detail if row.detail is not None else str(exc), headers
