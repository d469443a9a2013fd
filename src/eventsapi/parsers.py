"""The parsers of setting values (config.SETTINGS): each takes the variable's text and returns
the value, or raises ValueError naming what it expects (config.py words the one-line error)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def text(raw: str) -> str:
    return raw


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("an integer > 0") from None
    if value <= 0:
        raise ValueError("an integer > 0")
    return value


def port(raw: str) -> int:
    value = positive_int(raw)
    if value > 65535:
        raise ValueError("a port number (1-65535)")
    return value


def number(unit: str, zero_ok: bool = False) -> Callable[[str], float]:
    """A parser of finite numbers of `unit`, > 0 (or >= 0)."""
    expected = f"a number of {unit} {'>= 0' if zero_ok else '> 0'}"

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(expected) from None
        if not (value >= 0 if zero_ok else value > 0) or value == float("inf"):
            raise ValueError(expected)
        return value

    return parse


seconds = number("seconds")
seconds_or_zero = number("seconds", zero_ok=True)
days = number("days")


def workers(raw: str) -> int:
    if raw.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        return positive_int(raw)
    except ValueError:
        raise ValueError("an integer > 0, or auto") from None


@dataclass(frozen=True)
class WorkerSlot:
    """Which of the `--workers` a process is, and where the workers' sockets are (peers.py)."""

    index: int
    count: int
    directory: Path


def worker_slot(raw: str) -> WorkerSlot:
    head, sep, directory = raw.partition(":")
    index, slash, count = head.partition("/")
    if sep and slash and index.isdigit() and count.isdigit() and int(index) < int(count) and directory:
        return WorkerSlot(int(index), int(count), Path(directory))
    raise ValueError("INDEX/COUNT:DIRECTORY, INDEX < COUNT (set by the parent of --workers)")


def hs256_secret(raw: str) -> str:
    # RFC 7518 §3.2: an HS256 key must have at least as many bits as the hash, 256.
    if len(raw.encode()) < 32:
        raise ValueError("a secret of at least 32 bytes (RFC 7518: HS256 keys have >= 256 bits)")
    return raw


def flag(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("1/true/yes/on or 0/false/no/off")


def origins(raw: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in raw.split(",") if o.strip())


def path(raw: str) -> Path:
    return Path(raw)


def public_key(raw: str) -> str:
    """PEM text, or the path of a PEM file; an RSA or P-256 EC public key."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if "-----BEGIN" not in raw:
        try:
            raw = Path(raw).read_text()
        except OSError as exc:
            raise ValueError(f"PEM text or a readable PEM file ({exc.strerror})") from None
    try:
        key = load_pem_public_key(raw.encode())
    except ValueError:
        raise ValueError("a PEM public key (RSA or EC P-256)") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("an RSA or EC (P-256) public key")
    return raw
