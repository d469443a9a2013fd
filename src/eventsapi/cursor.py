"""Opaque keyset cursors: the (at, id) of the last row of a page."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

import msgspec

from eventsapi.limits import MAX_CURSOR_CHARS, MAX_ID, MAX_TIME_MS


class BadCursor(ValueError):
    pass


_Position = tuple[
    Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)],
    Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)],
]
_DECODE: msgspec.json.Decoder[tuple[int, str]] = msgspec.json.Decoder(_Position)


def encode_cursor(at: int, event_id: str) -> str:
    raw = msgspec.json.encode((at, event_id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, str]:
    """The position a cursor names. Anything else, however crafted, is BadCursor: a cursor is
    short, and its time and id must lie in the ranges events can have."""
    if len(text) > MAX_CURSOR_CHARS:
        raise BadCursor("not a cursor this service issued")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return _DECODE.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError, RecursionError) as exc:
        raise BadCursor("not a cursor this service issued") from exc
