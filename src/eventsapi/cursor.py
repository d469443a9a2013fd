"""Opaque keyset cursors: the (at, id) of the last row of a page."""

from __future__ import annotations

import base64
import json


class BadCursor(ValueError):
    pass


def encode_cursor(at: int, event_id: str) -> str:
    raw = json.dumps([at, event_id], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at, event_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadCursor("not a cursor this service issued") from exc
    if type(at) is not int or not isinstance(event_id, str) or not event_id:
        raise BadCursor("not a cursor this service issued")
    return at, event_id
