"""The InfluxDB schema shared by the influxql and influxdb2 stores: tag encoding, point
timestamps and line-protocol rendering. Pure functions.

Schema (API.md §1): measurement `events`, tags `bucket_id, app, server, event_name`, string
fields `data` and `id`.

Tag values. Line protocol escapes `,`, `=` and space in tag values with a backslash, but has no
way to carry a value that ends in a backslash, and engines disagree on `\\`. So before escaping,
tag values are *encoded*: `%` → `%25`, `\\` → `%5C`, and the empty string → `%` (a value the
encoding never otherwise produces; InfluxDB drops empty tags). Encoded values contain no
backslash, so escaping is unambiguous, and the encoding is a bijection: queries compare encoded
values and results are decoded.

Timestamps. InfluxDB keeps one point per (series, timestamp): two events sharing `at`, app,
server and name would overwrite each other. Each event's point time is `at` in ms x 10⁶ plus a
*slot* in [0, 10⁶) derived from a hash (CRC-32) of its id, so a re-sent id lands on the same point
(idempotent), and distinct ids almost always land on distinct points. Within one batch, slot
collisions in the same series and millisecond are resolved by probing to the next free slot.
Across batches, two distinct ids of the same series and millisecond collide with probability
1 in 10⁶ per pair; that residual risk is documented in docs/influx.md.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence

from eventsapi.stores.base import NewEvent

MEASUREMENT = "events"
NS_PER_MS = 1_000_000
_DECODE = re.compile(r"%(25|5C)")
_TAG_ESCAPE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


def encode_tag(value: str) -> str:
    """The stored form of a tag value (see module docstring)."""
    if value == "":
        return "%"
    return value.replace("%", "%25").replace("\\", "%5C")


def decode_tag(stored: str) -> str:
    if stored == "%":
        return ""
    return _DECODE.sub(lambda m: "%" if m.group(1) == "25" else "\\", stored)


def escape_tag(encoded: str) -> str:
    return encoded.translate(_TAG_ESCAPE)


def escape_field_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def slot(event_id: str) -> int:
    return zlib.crc32(event_id.encode()) % NS_PER_MS


def render_lines(bucket: str, events: Sequence[NewEvent]) -> list[str]:
    """One line-protocol line per event (no trailing newline).

    Each event's point time is at x 10^6 + slot(id). A slot already taken in this batch by
    another id of the same series and millisecond is probed to the next free one; the same id
    twice in a batch is the same point.
    """
    b = escape_tag(encode_tag(bucket))
    # Per series: its line prefix, and the point times this batch has given out there.
    series_state: dict[tuple[str, str, str], tuple[str, dict[int, str]]] = {}
    lines: list[str] = []
    append = lines.append
    for e in events:
        state = series_state.get((e.name, e.app, e.server))
        if state is None:
            prefix = (
                f"{MEASUREMENT},app={escape_tag(encode_tag(e.app))},bucket_id={b},"
                f"event_name={escape_tag(encode_tag(e.name))},server={escape_tag(encode_tag(e.server))} data="
            )
            state = series_state[(e.name, e.app, e.server)] = (prefix, {})
        prefix, taken = state
        base = e.at * NS_PER_MS
        s = slot(e.id)
        while taken.setdefault(base + s, e.id) != e.id:
            s = (s + 1) % NS_PER_MS
        append(f"{prefix}{escape_field_string(e.data)},id={escape_field_string(e.id)} {base + s}")
    return lines


def render_batches(bucket: str, events: Sequence[NewEvent], lines_per_batch: int = 5000) -> Iterable[bytes]:
    """Line-protocol bodies of at most `lines_per_batch` points each."""
    lines = render_lines(bucket, events)
    for i in range(0, len(lines), lines_per_batch):
        yield ("\n".join(lines[i : i + lines_per_batch]) + "\n").encode()


_SERIES_SPLIT = re.compile(r"(?<!\\),")
_UNESCAPE = re.compile(r"\\(.)")


def parse_series_key(key: str) -> dict[str, str]:
    """Tags of a series key as SHOW SERIES prints it (`events,app=a\\ b,...`), decoded."""
    parts = _SERIES_SPLIT.split(key)
    tags: dict[str, str] = {}
    for part in parts[1:]:
        k, _, v = re.split(r"(?<!\\)(=)", part, maxsplit=1)
        tags[_UNESCAPE.sub(r"\1", k)] = decode_tag(_UNESCAPE.sub(r"\1", v))
    return tags
