"""Alert rules (docs/api.md §5.13): the rules file's format, its checks with a message naming
the rule and the field, and the file read again when it changes (the last good rules stay in
force while it does not parse). The engine that evaluates them is alerts.py's."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from eventsapi.validation import BUCKET_RE, valid_name
from eventsapi.values import StoredEvent

log = logging.getLogger("eventsapi.alerts")
RESERVED_BUCKET = "eventsapi.alerts"  # where alerts.py records firings and deliveries
MAX_THRESHOLD = 1_000
RULE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_DURATION = re.compile(r"(\d+)(s|m|h|d)")
UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True)
class Rule:
    name: str
    bucket: str
    event_name: str
    app_name: str | None
    server_name: str | None
    threshold: int
    window_ms: int
    cooldown_ms: int
    webhook: str

    def matches(self, e: StoredEvent) -> bool:
        return (
            e.name == self.event_name
            and (self.app_name is None or e.app == self.app_name)
            and (self.server_name is None or e.server == self.server_name)
        )


def duration_ms(text: object) -> int:
    """`30s`, `5m`, `1h`, `2d` in ms."""
    m = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if m is None or int(m[1]) == 0:
        raise ValueError("must be a duration such as 30s, 5m, 1h or 2d")
    return int(m[1]) * UNIT_MS[m[2]]


def private_address(url: str) -> str | None:
    """The loopback, private, link-local or otherwise internal address a webhook URL's host is
    or resolves to, if any (a rules file must not make the service call into its own network
    unless the operator allows it). A name that does not resolve now is not refused here."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return None
    for text in sorted(addresses):
        ip = ipaddress.ip_address(text.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            return text
    return None


def parse_rules(text: str, allow_private: bool = False) -> tuple[Rule, ...]:
    """The rules of a rules file, or ValueError naming the rule and field that is wrong."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise ValueError('must be a JSON object {"rules": [...]}')
    rules: list[Rule] = []
    for i, raw in enumerate(doc["rules"]):
        where = f"rule {i + 1}" + (f" ({raw.get('name')})" if isinstance(raw, dict) and raw.get("name") else "")
        try:
            rule = _rule(raw)
            internal = None if allow_private else private_address(rule.webhook)
            if internal is not None:
                raise ValueError(
                    f"webhook: {urlsplit(rule.webhook).hostname} is an internal address ({internal}); "
                    "set EVENTSAPI_ALERT_ALLOW_PRIVATE=1 to allow it"
                )
            rules.append(rule)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    names = [r.name for r in rules]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"rule names must be unique: {', '.join(twice)}")
    return tuple(rules)


def _rule(raw: object) -> Rule:
    if not isinstance(raw, dict):
        raise ValueError("must be an object")
    known = {"name", "bucket", "event_name", "app_name", "server_name", "threshold", "window", "cooldown", "webhook"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    name, bucket, webhook = raw.get("name"), raw.get("bucket"), raw.get("webhook")
    if not isinstance(name, str) or not RULE_NAME.fullmatch(name):
        raise ValueError("name: 1-64 characters of [A-Za-z0-9_.:-]")
    if not isinstance(bucket, str) or not BUCKET_RE.fullmatch(bucket) or bucket == RESERVED_BUCKET:
        raise ValueError("bucket: a bucket id")
    if not isinstance(webhook, str) or not webhook.startswith(("http://", "https://")):
        raise ValueError("webhook: an http:// or https:// URL")
    names: dict[str, str | None] = {}
    for key in ("event_name", "app_name", "server_name"):
        value = raw.get(key)
        if value is None and key != "event_name":
            names[key] = None
        elif isinstance(value, str) and (valid_name(value) or (key == "server_name" and value == "")):
            names[key] = value
        else:
            raise ValueError(f"{key}: 1-256 printable characters" + ("" if key == "event_name" else ", or null"))
    threshold = raw.get("threshold")
    if type(threshold) is not int or not 1 <= threshold <= MAX_THRESHOLD:
        raise ValueError(f"threshold: an integer from 1 to {MAX_THRESHOLD}")
    window = duration_ms(raw.get("window"))
    cooldown = duration_ms(raw.get("cooldown", raw.get("window")))
    return Rule(name, bucket, str(names["event_name"]), names["app_name"], names["server_name"], threshold, window,
                cooldown, webhook)  # fmt: skip


class RuleFile:
    """The rules file, read again when it changes. A file that does not parse leaves the last
    good rules in force and says why (`error`, logged, shown by /readyz)."""

    def __init__(self, path: Path | None, allow_private: bool = False) -> None:
        self.path = path
        self.allow_private = allow_private
        self.rules: tuple[Rule, ...] = ()
        self.error: str | None = None
        self._seen: tuple[float, int] | None = None

    def poll(self) -> bool:
        """Read the file if it changed; whether the rules did."""
        if self.path is None:
            return False
        try:
            st = self.path.stat()
            seen = (st.st_mtime, st.st_size)
            if seen == self._seen:
                return False
            self._seen = seen
            rules = parse_rules(self.path.read_text(), self.allow_private)
        except (OSError, ValueError) as exc:
            message = f"{self.path}: {exc.strerror if isinstance(exc, OSError) else exc}"
            if message != self.error:
                log.warning("alert rules not loaded, keeping the last good ones: %s", message)
            self.error = message
            return False
        changed = rules != self.rules
        self.rules, self.error = rules, None
        if changed:
            log.info("alert rules loaded: %d from %s", len(rules), self.path)
        return changed


def human(ms: int) -> str:
    """`90000` as `90s`, `3600000` as `1h`."""
    for unit in ("d", "h", "m", "s"):
        if ms % UNIT_MS[unit] == 0:
            return f"{ms // UNIT_MS[unit]}{unit}"
    return f"{ms}ms"
