"""The histogram by app or server (docs/api.md §5.3): the largest series, the rest as "other",
every series on the query's windows. The stores count per (value, engine window), sparsely;
this module ranks and lays them out, the same for every store."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import msgspec

from eventsapi.values import StatsQuery
from eventsapi.windows import counts_per_window


@dataclass(frozen=True, slots=True)
class Series:
    value: str | None  # None: the "other" series
    counts: list[int]  # one per window of the query
    total: int


def breakdown(query: StatsQuery, counted: Iterable[tuple[str, int, int]], top: int) -> list[Series]:
    """Series sorted by total descending, then by value; past `top`, one "other" series (only
    when there is a rest). Each window's counts add up to the ungrouped count of the window."""
    labelled: dict[str, list[tuple[int, int]]] = defaultdict(list)
    totals: dict[str, int] = defaultdict(int)
    for value, start, n in counted:
        labelled[value].append((start, n))
        totals[value] += n
    ranked = sorted(totals, key=lambda v: (-totals[v], v))
    out = [_series(query, v, labelled[v]) for v in ranked[:top]]
    if len(ranked) > top:
        out.append(_series(query, None, (pair for v in ranked[top:] for pair in labelled[v])))
    return out


def _series(query: StatsQuery, value: str | None, labelled: Iterable[tuple[int, int]]) -> Series:
    counts = counts_per_window(query.starts, labelled)
    return Series(value, counts, sum(counts))


def encode_chunks(query: StatsQuery, key: str, series: list[Series]) -> Iterator[bytes]:
    """The Breakdown answer's JSON (wire.Breakdown), a series at a time: a large answer is never
    held whole. `key` is the group_by field that names each series' value."""
    head = msgspec.json.encode({"interval": query.interval, "tz": query.tz, "group_by": key})
    yield head[:-1] + b',"series":['
    for i, s in enumerate(series):
        points = list(zip(query.starts, s.counts, strict=True))
        item = {key: s.value, "other": s.value is None, "total": s.total, "points": points}
        yield (b"," if i else b"") + msgspec.json.encode(item)
    yield b"]}"
