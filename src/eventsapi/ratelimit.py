"""Per-token rate limits: a token bucket per (token subject, bucket, class of request).

`EVENTSAPI_RATE_LIMITS=read=50/s,write=500/s,delete=1/m:5` allows, for each subject and
bucket, 50 reads a second, 500 ingest requests a second and one delete a minute with bursts
of 5 (the burst defaults to one unit's worth: 50, 500, 1). Past it: 429 with Retry-After.
Every answer to a limited class carries the IETF draft's `RateLimit-Policy` and `RateLimit`
fields (draft-ietf-httpapi-ratelimit-headers: `"read";q=50;w=1` and `"read";r=49;t=1`).

Limits are kept per process: N replicas allow up to N times the rate (docs/api.md). One
subject's excess never touches another's bucket, and no lock is shared between them.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

CLASSES = ("read", "write", "delete")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_SPEC = re.compile(r"^(read|write|delete)=(\d+(?:\.\d+)?)/([smh])(?::(\d+))?$")
_PRUNE_EVERY = 1024  # calls between sweeps of idle buckets


@dataclass(frozen=True)
class Limit:
    per_window: float  # requests allowed per window
    window_s: float
    burst: int

    @property
    def rate(self) -> float:  # tokens per second
        return self.per_window / self.window_s


def parse_limits(text: str) -> dict[str, Limit]:
    """`read=50/s,write=500/s,delete=1/m:5` → {class: Limit}; raises ValueError(expected)."""
    out: dict[str, Limit] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = _SPEC.match(part)
        if m is None:
            raise ValueError("CLASS=N/UNIT[:BURST],... with CLASS read|write|delete, UNIT s|m|h")
        cls, n, unit, burst = m.group(1), float(m.group(2)), m.group(3), m.group(4)
        if n <= 0:
            raise ValueError("a rate > 0")
        out[cls] = Limit(n, _UNITS[unit], int(burst) if burst else max(1, math.ceil(n)))
    return out


@dataclass
class Decision:
    allowed: bool
    headers: dict[str, str]


class RateLimiter:
    def __init__(self, limits: dict[str, Limit]) -> None:
        self.limits = limits
        self._buckets: dict[tuple[str, str, str], tuple[float, float]] = {}  # key -> (tokens, at)
        self._calls = 0

    def check(self, subject: str, bucket: str, cls: str, now: float | None = None) -> Decision | None:
        """Take one token for this subject, bucket and class; None when the class is unlimited."""
        limit = self.limits.get(cls)
        if limit is None:
            return None
        now = time.monotonic() if now is None else now
        key = (subject, bucket, cls)
        tokens, at = self._buckets.get(key, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - at) * limit.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        self._calls += 1
        if self._calls % _PRUNE_EVERY == 0:
            self._prune(now)
        # Seconds until one token is back (the Retry-After), and until the bucket is full.
        wait = 0.0 if allowed else (1.0 - tokens) / limit.rate
        full = (limit.burst - tokens) / limit.rate
        headers = {
            "RateLimit-Policy": f'"{cls}";q={limit.burst};w={_whole(limit.window_s)}',
            "RateLimit": f'"{cls}";r={int(tokens)};t={math.ceil(full)}',
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return Decision(allowed, headers)

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled completely: they hold nothing a new one would not."""
        for key, (tokens, at) in list(self._buckets.items()):
            limit = self.limits[key[2]]
            if tokens + (now - at) * limit.rate >= limit.burst:
                del self._buckets[key]


def _whole(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
