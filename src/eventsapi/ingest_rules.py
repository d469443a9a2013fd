"""The rules of docs/api.md §5 for ingested events: a request body (a JSON array or NDJSON,
flat events or PM2 packets) becomes validated NewEvents and the reason of each one refused.
A typed fast path (wire.FlatEvent, decoded in C, checked once per batch) takes the common case;
the general path reads each event loosely and names every rejection. Both accept exactly the
same events."""

from __future__ import annotations

import contextlib
import operator
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from eventsapi import wire
from eventsapi.limits import FUTURE_SLACK_MS, MAX_DATA_BYTES, MAX_ID, MAX_NAME
from eventsapi.problems import Problem
from eventsapi.validation import FORBIDDEN, name_error, parse_time
from eventsapi.values import NewEvent


class _WireEvent(msgspec.Struct, gc=False):
    """The general path's reader of an ingested event, flat (wire.FlatEvent) or a PM2 packet
    (wire.PM2Event), whose fields are typed loosely so that each one gets its own error
    message; `data` stays the raw JSON text that was sent."""

    event_name: Any = None
    app_name: Any = None
    server_name: Any = None
    name: Any = None
    process: Any = None
    at: Any = None
    id: Any = None
    data: msgspec.Raw = msgspec.Raw(b"")  # empty: absent


_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_EVENT = msgspec.json.Decoder(_WireEvent)
_BATCH = msgspec.json.Decoder(list[_WireEvent])
_TYPED_BATCH = msgspec.json.Decoder(list[wire.FlatEvent])
_FIRST_CHAR = operator.itemgetter(slice(0, 1))


class IdMaker:
    """Server-assigned ids: receipt time in hex, a per-batch random part, the index.

    Ids of one batch sort in ingest order, so among events sharing a millisecond the
    later-ingested ones come first in newest-first reads.
    """

    def __init__(self, now_ms: int) -> None:
        self.prefix = f"{now_ms:012x}{os.urandom(7).hex()}"

    def __call__(self, index: int) -> str:
        return f"{self.prefix}{index:06x}"


def _name(value: object, field: str, known: set[str] | None, max_len: int = MAX_NAME) -> str:
    # Runs for every name of every ingested event; names repeat, so each is checked once per
    # batch (`known`). Ids are unique, so they pass no set.
    if known is not None and type(value) is str and value in known:
        return value
    if type(value) is not str or not 0 < len(value) <= max_len or FORBIDDEN.search(value):
        raise ValueError(f"{field} {name_error(value, max_len)}")
    if known is not None:
        known.add(value)
    return value


def _wire(raw: bytes | msgspec.Raw) -> _WireEvent:
    try:
        return _EVENT.decode(raw)
    except msgspec.ValidationError as exc:
        raise ValueError(f"event must be a JSON object: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None


def _event(item: _WireEvent, now_ms: int, make_id: Callable[[int], str], index: int, known: set[str]) -> NewEvent:
    """One event from a flat or PM2 `human:event` object; raises ValueError with the reason."""
    process = item.process
    if item.event_name is None and item.name is not None and type(process) is dict:
        name = _name(item.name, "name", known)
        app = _name(process.get("name"), "process.name", known)
        server = process.get("server")
        server = "" if server is None or server == "" else _name(server, "process.server", known)
    else:
        name = _name(item.event_name, "event_name", known)
        app = _name(item.app_name, "app_name", known)
        server = item.server_name
        server = "" if server is None or server == "" else _name(server, "server_name", known)
    at_raw = item.at
    if at_raw is None:
        at = now_ms
    else:
        if type(at_raw) is int:
            at = at_raw
        else:
            try:
                at = parse_time(at_raw)
            except ValueError as exc:
                raise ValueError(f"at {exc}") from None
        if not 0 <= at <= now_ms + FUTURE_SLACK_MS:
            raise ValueError("at must lie between 1970-01-01 and now + 24 h")
    blob = bytes(item.data)
    if blob in (b"", b"null"):
        data_text = "{}"
    else:
        if blob[:1] != b"{":
            raise ValueError("data must be a JSON object")
        if len(blob) > MAX_DATA_BYTES:
            raise ValueError(f"data is {len(blob)} bytes serialised; at most {MAX_DATA_BYTES}")
        if b"\n" in blob or b"\r" in blob:
            # Pretty-printed: line breaks can only be whitespace here; store it compact, since
            # line protocol cannot carry them.
            blob = msgspec.json.encode(msgspec.json.decode(blob))
        try:
            data_text = blob.decode()
        except UnicodeDecodeError:
            raise ValueError("data is not valid UTF-8") from None
    event_id = make_id(index) if item.id is None else _name(item.id, "id", None, MAX_ID)
    return NewEvent(event_id, name, app, server, at, data_text)


@dataclass(slots=True)
class IngestBatch:
    events: list[NewEvent]
    rejected: list[wire.Rejection]
    indices: list[int]  # each event's index in the request
    # The distinct (event names, apps, servers) of `events`, when validation saw them anyway.
    values: tuple[set[str], set[str], set[str]] | None = None

    def reject(self, drop: dict[int, str]) -> None:
        """Move the events at these positions of `events` to `rejected`, with their reasons."""
        for pos, reason in drop.items():
            self.rejected.append(wire.Rejection(self.indices[pos], reason))
        self.rejected.sort(key=lambda r: r.index)
        self.events = [e for pos, e in enumerate(self.events) if pos not in drop]
        self.values = None
        self.indices = [i for pos, i in enumerate(self.indices) if pos not in drop]


def parse_ingest(body: bytes, ndjson: bool, max_events: int, now_ms: int | None = None) -> IngestBatch:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    items: Sequence[_WireEvent | bytes | msgspec.Raw]
    if ndjson:
        lines = [ln for ln in body.splitlines() if ln.strip()]
        if len(lines) > max_events:
            raise Problem(413, f"{len(lines)} events in one request; at most {max_events}")
        items = lines
    else:
        with contextlib.suppress(msgspec.DecodeError, RecursionError):
            typed = _TYPED_BATCH.decode(body)
            if len(typed) > max_events:
                raise Problem(413, f"{len(typed)} events in one request; at most {max_events}")
            fast = _typed_events(typed, now_ms)
            if fast is not None:
                return IngestBatch(fast[0], [], list(range(len(fast[0]))), fast[1])
        try:
            # The general path: the whole array, loosely typed, in one call. Any item that is
            # not an event object fails it, and the items are then decoded one by one so that
            # each is reported.
            items = _BATCH.decode(body)
        except (msgspec.DecodeError, RecursionError):
            try:
                items = _ITEMS.decode(body)
            except msgspec.ValidationError:
                raise Problem(400, "body must be a JSON array of events (or NDJSON)") from None
            except msgspec.DecodeError as exc:
                raise Problem(400, f"body is not valid JSON: {exc}") from None
            except RecursionError:
                raise Problem(400, "body is not valid JSON: nested too deeply") from None
        if len(items) > max_events:
            raise Problem(413, f"{len(items)} events in one request; at most {max_events}")
    make_id = IdMaker(now_ms)
    known: set[str] = set()
    events: list[NewEvent] = []
    rejected: list[wire.Rejection] = []
    indices: list[int] = []
    for i, item in enumerate(items):
        try:
            decoded = item if isinstance(item, _WireEvent) else _wire(cast(bytes, item))
            events.append(_event(decoded, now_ms, make_id, i, known))
            indices.append(i)
        except ValueError as exc:
            rejected.append(wire.Rejection(i, str(exc)))
    return IngestBatch(events, rejected, indices)


def _typed_events(
    items: list[wire.FlatEvent], now_ms: int
) -> tuple[list[NewEvent], tuple[set[str], set[str], set[str]]] | None:
    """The events of a batch that decoded as `wire.FlatEvent`s and their distinct (names,
    apps, servers), or None if any of them fails a check the decoder does not make (then the
    general path decides, event by event, and gives each rejection its reason; both accept
    exactly the same events). Each check runs once over the whole batch, not once per event."""
    values = ({e.event_name for e in items}, {e.app_name for e in items}, {e.server_name or "" for e in items})
    if not items:
        return [], values
    # Names repeat: each distinct one is searched once. Ids are joined and searched in one call.
    ids = [e.id for e in items if e.id is not None]
    if FORBIDDEN.search("".join(values[0] | values[1] | values[2])) or FORBIDDEN.search("".join(ids)):
        return None
    ats = [e.at for e in items if e.at is not None]
    if not set(map(type, ats)) <= {int} or max(cast(list[int], ats), default=0) > now_ms + FUTURE_SLACK_MS:
        return None  # a time as text or a fraction, or in the future: the general path says which
    raws = [b"" if e.data is msgspec.UNSET else e.data for e in items]
    if max(map(len, raws)) > MAX_DATA_BYTES:
        return None
    # Raw JSON holds no NUL (JSON forbids raw control characters), so one decode of the joined
    # payloads checks every one's UTF-8 and the split gives them back.
    try:
        joined = b"\x00".join(raws).decode()
    except UnicodeDecodeError:
        return None
    if "\n" in joined or "\r" in joined:
        return None  # pretty-printed: the general path stores it compact
    datas = joined.split("\x00")
    firsts = set(map(_FIRST_CHAR, datas))  # "{" an object, "" none, "n" null, else refused
    if not firsts <= {"{", "", "n"} or ("n" in firsts and any(d[:1] == "n" and d != "null" for d in datas)):
        return None
    if firsts == {"{"} and len(ids) == len(ats) == len(items):  # every field given: no default to fill
        events = [
            NewEvent(e.id, e.event_name, e.app_name, e.server_name or "", e.at, d)  # type: ignore[arg-type]
            for e, d in zip(items, datas, strict=True)
        ]
        return events, values
    make_id = IdMaker(now_ms)
    events = [
        NewEvent(
            make_id(i) if e.id is None else e.id,
            e.event_name,
            e.app_name,
            e.server_name or "",
            now_ms if e.at is None else cast(int, e.at),
            d if d[:1] == "{" else "{}",
        )
        for i, (e, d) in enumerate(zip(items, datas, strict=True))
    ]
    return events, values
