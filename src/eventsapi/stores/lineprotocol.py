"""The InfluxDB schema shared by the influxql and influxdb2 stores: tag encoding, point
timestamps and line-protocol rendering. Pure functions.

Schema (docs/api.md §1, docs/influx.md): measurement `events`, tags `bucket_id, app, server, event_name`, string
fields `data` and `id`.

Tag values. Line protocol escapes `,`, `=` and space in tag values with a backslash, but has no
way to carry a value that ends in a backslash, and engines disagree on `\\`. So before escaping,
tag values are *encoded*: `%` → `%25`, `\\` → `%5C`, and the empty string → `%` (a value the
encoding never otherwise produces; InfluxDB drops empty tags). Encoded values contain no
backslash, so escaping is unambiguous, and the encoding is a bijection: queries compare encoded
values and results are decoded.

Timestamps. A point's time is the event's `at` (ms) x 10⁶ plus a slot that `placement.py`
chooses so that no two events share a point (InfluxDB keeps one point per series and time).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from eventsapi.values import NewEvent

MEASUREMENT = "events"
# Ingest keys (stores/influxkeys.py): a series per key, apart from the events.
KEYS_MEASUREMENT = "eventsapi_keys"
# Intents of writers (stores/occupancy.py): a series per bucket, apart from the events.
INTENTS_MEASUREMENT = "eventsapi_writes"
KEY_FIELDS = ("name", "digest", "buckets", "scope", "created", "last_used", "revoked")
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


class TagDecoder:
    """decode_tag with a memo: tag values repeat across rows, so each is decoded once."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, stored: str) -> str:
        value = self._seen.get(stored)
        if value is None:
            value = self._seen[stored] = decode_tag(stored)
        return value


def escape_tag(encoded: str) -> str:
    return encoded.translate(_TAG_ESCAPE)


def escape_field_strings(values: list[str]) -> list[str]:
    """The string-field escapes of many values (without the quotes), in one pass over all of
    them instead of two calls per value. Values never hold NUL (names and ids exclude control
    characters, JSON raw control characters), checked by the count of separators."""
    joined = "\x00".join(values)
    if joined.count("\x00") != len(values) - 1:
        return [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    return joined.replace("\\", "\\\\").replace('"', '\\"').split("\x00")


class SeriesHeads:
    """Each series' line up to its data (`events,app=…,server=… data="`), made once per bucket
    and series: a store keeps one, since its batches repeat their series. Bounded: past `size`
    heads in all it starts over."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._buckets: dict[str, dict[tuple[str, str, str], str]] = {}
        self._count = 0

    def of(self, bucket: str) -> dict[tuple[str, str, str], str]:
        """The heads known for a bucket, by (name, app, server); `add` the ones missing."""
        known = self._buckets.get(bucket)
        if known is None:
            known = self._buckets[bucket] = {}
        return known

    def add(self, bucket: str, known: dict[tuple[str, str, str], str], series: tuple[str, str, str]) -> str:
        if self._count >= self.size:
            self._buckets.clear()
            known.clear()
            self._buckets[bucket] = known
            self._count = 0
        name, app, server = series
        head = known[series] = (
            f"{MEASUREMENT},app={escape_tag(encode_tag(app))},bucket_id={escape_tag(encode_tag(bucket))},"
            f'event_name={escape_tag(encode_tag(name))},server={escape_tag(encode_tag(server))} data="'
        )
        self._count += 1
        return head


def render_lines(
    bucket: str, placed: Sequence[tuple[NewEvent, int]], ingested_ns: int = 0, heads: SeriesHeads | None = None
) -> list[str]:
    """One line-protocol line per (event, point time in ns) (no trailing newline). `ingested`
    (an integer field) is when the service wrote the batch: what a live tail follows."""
    if not placed:
        return []
    heads = heads or SeriesHeads()
    known = heads.of(bucket)
    stamp = f",ingested={int(ingested_ns)}i "
    per_event: list[str] = []
    for e, _ in placed:  # a lookup per event, not a call: this runs once per ingested event
        series = (e.name, e.app, e.server)
        head = known.get(series)
        if head is None:
            head = heads.add(bucket, known, series)
        per_event.append(head)
    datas = escape_field_strings([e.data for e, _ in placed])
    ids = escape_field_strings([e.id for e, _ in placed])
    return [f'{h}{d}",id="{i}"{stamp}{t}' for h, d, i, (_, t) in zip(per_event, datas, ids, placed, strict=True)]


def render_batches(
    bucket: str,
    placed: Sequence[tuple[NewEvent, int]],
    lines_per_batch: int = 5000,
    ingested_ns: int = 0,
    heads: SeriesHeads | None = None,
) -> Iterable[bytes]:
    """Line-protocol bodies of at most `lines_per_batch` points each."""
    lines = render_lines(bucket, placed, ingested_ns, heads)
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
