"""The stores: a registry of URL schemes, and the factory that builds the store a `--store` URL
names. A new engine is a Store subclass (stores/base.py) and one row here."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from eventsapi.config import Settings
    from eventsapi.stores.base import Store


class Kind(NamedTuple):
    """A store's class, by module (imported only when used: SQLite needs no InfluxDB client)."""

    module: str
    cls: str
    form: str  # its URL, as the help texts show it


KINDS: dict[str, Kind] = {
    "sqlite": Kind("eventsapi.stores.sqlite", "SQLiteStore", "sqlite:///PATH"),
    "influxql": Kind("eventsapi.stores.influxql", "InfluxQLStore", "influxql://HOST:PORT/DB"),
    "influxdb2": Kind("eventsapi.stores.influxdb2", "InfluxDB2Store", "influxdb2://HOST:PORT?org=O&bucket=B"),
}
_FORMS = [k.form for k in KINDS.values()]
URL_FORMS = ", ".join(_FORMS[:-1]) + " or " + _FORMS[-1]


def open_store(url: str, settings: Settings) -> Store:
    """Build (not yet open) the store a `--store` URL names; ValueError for a URL it cannot use."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    kind = KINDS.get(scheme)
    if kind is None:
        raise ValueError(f"unknown store URL {url!r}: use {URL_FORMS}")
    store_class: type[Store] = getattr(importlib.import_module(kind.module), kind.cls)
    return store_class.from_url(url, settings)
