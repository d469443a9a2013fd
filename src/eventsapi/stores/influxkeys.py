"""Ingest keys on InfluxDB (keys.py), shared by the influxql and influxdb2 stores.

A key is a series of measurement `eventsapi_keys`, tag `key_id`, apart from the events (every
events query names measurement `events`). Creating a key writes its fields; a use writes only
`last_used`, a revocation only `revoked`; a read takes each field's last value. So a use
recorded by one replica can never undo a revocation written by another: they touch different
fields. The engine's retention applies to these points too, so while one is set every process
rewrites the live records now and then (keys_renew, called by keys.Keyring).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from eventsapi.keys import KeyRecord
from eventsapi.stores.lineprotocol import KEYS_MEASUREMENT, escape_field_strings


def _line(key_id: str, fields: dict[str, str | int], now_ns: int) -> str:
    texts = [k for k, v in fields.items() if isinstance(v, str)]
    escaped = dict(zip(texts, escape_field_strings([str(fields[k]) for k in texts]), strict=True))
    body = ",".join(f'{k}="{escaped[k]}"' if k in escaped else f"{k}={int(v)}i" for k, v in fields.items())
    return f"{KEYS_MEASUREMENT},key_id={key_id} {body} {now_ns}"


def record_fields(record: KeyRecord) -> dict[str, str | int]:
    fields: dict[str, str | int] = {
        "name": record.name,
        "digest": record.digest,
        "buckets": msgspec.json.encode(record.buckets).decode(),
        "scope": record.scope,
        "created": record.created,
    }
    if record.last_used is not None:
        fields["last_used"] = record.last_used
    if record.revoked is not None:
        fields["revoked"] = record.revoked
    return fields


def record_lines(records: Iterable[KeyRecord], now_ns: int) -> bytes:
    """Whole records (a new key, or the renewal of live ones)."""
    return "".join(_line(r.key_id, record_fields(r), now_ns) + "\n" for r in records).encode()


def field_line(key_id: str, field: str, at_ms: int, now_ns: int) -> bytes:
    """One field of a key: `last_used` or `revoked`."""
    return (_line(key_id, {field: at_ms}, now_ns) + "\n").encode()


def records(fields_by_key: dict[str, dict[str, Any]]) -> list[KeyRecord]:
    """Records from each key's last field values; a key whose creation fields are gone (expired
    by retention) is unknown."""
    out = []
    for key_id, f in fields_by_key.items():
        if not f.get("digest") or f.get("buckets") is None:
            continue
        opt = {k: (None if f.get(k) is None else int(f[k])) for k in ("last_used", "revoked")}
        buckets = tuple(msgspec.json.decode(f["buckets"]))
        out.append(KeyRecord(key_id, f["name"], f["digest"], buckets, f["scope"], int(f["created"]), **opt))
    return sorted(out, key=lambda r: (r.created, r.key_id))


class InfluxKeys(abc.ABC):
    """The key methods of a Store, on two primitives of each InfluxDB store."""

    @abc.abstractmethod
    async def _write_lines(self, body: bytes) -> None:
        """Write line protocol (ns precision), acknowledged by the engine."""

    @abc.abstractmethod
    async def _key_fields(self, key_id: str | None) -> dict[str, dict[str, Any]]:
        """key_id -> {field: its last value}, for one key or all."""

    async def keys(self, key_id: str | None = None) -> list[KeyRecord]:
        return records(await self._key_fields(key_id))

    async def key_create(self, record: KeyRecord) -> None:
        await self._write_lines(record_lines([record], time.time_ns()))

    async def key_revoke(self, key_id: str, at_ms: int) -> bool:
        if not await self.keys(key_id):
            return False
        await self._write_lines(field_line(key_id, "revoked", at_ms, time.time_ns()))
        return True

    async def key_touch(self, key_id: str, at_ms: int) -> None:
        await self._write_lines(field_line(key_id, "last_used", at_ms, time.time_ns()))

    async def keys_renew(self) -> None:
        live = [r for r in await self.keys() if r.revoked is None]
        if live:
            await self._write_lines(record_lines(live, time.time_ns()))
