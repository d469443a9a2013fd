"""The stores, and the factory that builds the one a `--store` URL names."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventsapi.config import Settings
    from eventsapi.stores.base import Store


def open_store(url: str, settings: Settings) -> Store:
    """Build (not yet open) the store a `--store` URL names."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        from eventsapi.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, settings.retention_days)
    if scheme == "influxql":
        from eventsapi.stores.influxql import InfluxQLStore

        return InfluxQLStore.from_url(url, settings)
    if scheme == "influxdb2":
        from eventsapi.stores.influxdb2 import InfluxDB2Store

        return InfluxDB2Store.from_url(url, settings)
    raise ValueError(
        f"unknown store URL {url!r}: use sqlite:///PATH, influxql://HOST:PORT/DB "
        "or influxdb2://HOST:PORT?org=ORG&bucket=BUCKET"
    )
