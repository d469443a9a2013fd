"""The stores: a registry of URL schemes, and the factory that builds the store a `--store` URL
names. A new engine is a Store subclass (stores/base.py) and one row here."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote

if TYPE_CHECKING:
    from eventsapi.config import Settings
    from eventsapi.stores.base import Store


class Kind(NamedTuple):
    """A store's class, by module (imported only when used: SQLite needs no InfluxDB client)."""

    module: str
    cls: str
    form: str  # its URL, as the help texts show it


KINDS: dict[str, Kind] = {
    "sqlite": Kind("eventsapi.stores.sqlite", "SQLiteStore", "sqlite:///ABS/PATH.db (sqlite://REL/PATH.db)"),
    "influxql": Kind("eventsapi.stores.influxql", "InfluxQLStore", "influxql://HOST:PORT/DB"),
    "influxdb2": Kind("eventsapi.stores.influxdb2", "InfluxDB2Store", "influxdb2://HOST:PORT?org=O&bucket=B"),
}
_FORMS = [k.form for k in KINDS.values()]
URL_FORMS = ", ".join(_FORMS[:-1]) + " or " + _FORMS[-1]


def sqlite_path(url: str) -> Path:
    """The file a sqlite URL names: `sqlite:///ABS/PATH.db` (any number of slashes after the
    scheme's two mean an absolute path), or `sqlite://REL/PATH.db`, relative to the working
    directory."""
    rest = unquote(url.split("://", 1)[1].split("?", 1)[0])
    return Path("/" + rest.lstrip("/")) if rest.startswith("/") else Path(rest)


def open_store(url: str, settings: Settings) -> Store:
    """Build (not yet open) the store a `--store` URL names; ValueError for a URL it cannot use."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    kind = KINDS.get(scheme)
    if kind is None:
        raise ValueError(f"unknown store URL {url!r}: use {URL_FORMS}")
    store_class: type[Store] = getattr(importlib.import_module(kind.module), kind.cls)
    return store_class.from_url(url, settings)
