"""Configuration: every setting declared once, in SETTINGS — its environment variable, its
parser, its help; its default is the `Settings` field's. `load_settings` reads the environment
through that table (and nowhere else reads it), `eventsapi serve --help` and `eventsapi
settings` print it, and the README's configuration table is that output (a test holds them
equal). A bad value stops the service with one line naming the variable and what it expects.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from eventsapi import parsers
from eventsapi.ratelimit import Limit, parse_limits
from eventsapi.stores import URL_FORMS, sqlite_path

DEFAULT_DATA_DIR = "eventsapi-data"
SECRET_FILE = "jwt-secret"


class ConfigError(Exception):
    """A setting has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    reuse_port: bool = False
    worker_slot: parsers.WorkerSlot | None = None
    store_url: str = ""  # empty: SQLite in data_dir
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = None  # PEM text
    jwks_url: str | None = None
    jwks_cooldown: float = 30.0
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 30.0
    jwt_max_lifetime: float = 30 * 86400.0
    cors_origins: tuple[str, ...] = ()
    store_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    read_timeout: float = 30.0
    max_body_bytes: int = 10 * 1024 * 1024
    max_events: int = 10_000
    max_names_per_bucket: int = 10_000
    max_apps_per_bucket: int = 1_000
    max_servers_per_bucket: int = 1_000
    heavy_budget: int = 400_000
    heavy_wait: float = 5.0
    rate_limits: dict[str, Limit] = field(default_factory=dict)
    retention_days: float | None = None
    public_url: str | None = None
    trust_forwarded: bool = False
    max_streams: int = 20
    stream_bytes: int = 4 << 20
    tail_memory_bytes: int = 32 << 20
    influx_token: str | None = field(default=None, repr=False)
    influx_username: str | None = None
    influx_password: str | None = field(default=None, repr=False)
    influx_memory_points: int = 10_000_000
    access_log: bool = True
    shutdown_timeout: float = 30.0
    alert_rules: Path | None = None
    alert_secret: str | None = None
    alert_allow_private: bool = False

    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.data_dir / 'events.db').resolve()}"

    def store_description(self) -> str:
        """The store as the start-up line names it: the SQLite file's absolute path, or the
        InfluxDB URL without credentials."""
        from urllib.parse import urlsplit, urlunsplit

        url = self.resolved_store_url()
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            return f"sqlite {sqlite_path(url).resolve()}"
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


@dataclass(frozen=True)
class Setting:
    """One setting: the Settings field it fills, its variable, how its text is read, its help."""

    field: str
    env: str
    parse: Callable[[str], object]
    help: str
    flag: str | None = None  # the `eventsapi serve` option that overrides it
    default_text: str | None = None  # how the default reads in the docs, when not the field's
    secret: bool = False

    def default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        value = next(f.default for f in dataclasses.fields(Settings) if f.name == self.field)
        if value is None or value == () or value == "":
            return "-"
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "EVENTSAPI_HOST", parsers.text, "bind address", flag="--host"),
    Setting("port", "EVENTSAPI_PORT", parsers.port, "port", flag="--port"),
    Setting(
        "workers",
        "EVENTSAPI_WORKERS",
        parsers.workers,
        "worker processes serving the port (`auto`: one per core); a parent restarts a worker that dies",
        flag="--workers",
    ),
    Setting(
        "reuse_port",
        "EVENTSAPI_REUSE_PORT",
        parsers.flag,
        "bind with SO_REUSEPORT (set for the workers of `--workers`)",
    ),
    Setting(
        "worker_slot",
        "EVENTSAPI_WORKER_SLOT",
        parsers.worker_slot,
        "`INDEX/COUNT:DIR`, set for each worker of `--workers`: on InfluxDB a bucket's ingest is passed, over "
        "a socket in DIR, to the one worker that writes the bucket",
    ),
    Setting(
        "store_url",
        "EVENTSAPI_STORE",
        parsers.text,
        f"store URL: {URL_FORMS}",
        flag="--store",
        default_text="SQLite in the data dir",
    ),
    Setting(
        "data_dir",
        "EVENTSAPI_DATA_DIR",
        parsers.path,
        "SQLite file and generated JWT secret",
        default_text="./eventsapi-data",
    ),
    Setting(
        "jwt_secret",
        "EVENTSAPI_JWT_SECRET",
        parsers.hs256_secret,
        "HS256 secret, at least 32 bytes",
        default_text="generated in the data dir",
        secret=True,
    ),
    Setting(
        "jwt_public_key",
        "EVENTSAPI_JWT_PUBLIC_KEY",
        parsers.public_key,
        "PEM text or path: RS256 (RSA key) or ES256 (P-256 key)",
    ),
    Setting(
        "jwks_url",
        "EVENTSAPI_JWKS_URL",
        parsers.text,
        "JWKS endpoint (RS256/ES256, keys chosen by `kid`, cached 5 min)",
    ),
    Setting(
        "jwks_cooldown",
        "EVENTSAPI_JWKS_COOLDOWN",
        parsers.seconds_or_zero,
        "seconds between JWKS refetches triggered by an unknown `kid` (key rotation)",
    ),
    Setting("jwt_audience", "EVENTSAPI_JWT_AUDIENCE", parsers.text, "required `aud` when set"),
    Setting("jwt_issuer", "EVENTSAPI_JWT_ISSUER", parsers.text, "required `iss` when set"),
    Setting(
        "jwt_leeway",
        "EVENTSAPI_JWT_LEEWAY",
        parsers.seconds_or_zero,
        "seconds of clock skew allowed on `exp`/`nbf`/`iat`",
    ),
    Setting(
        "jwt_max_lifetime",
        "EVENTSAPI_JWT_MAX_LIFETIME",
        parsers.seconds,
        "the longest lifetime (`exp` - `iat`, or `exp` - now) a token may claim, in seconds (30 days); "
        "`eventsapi token --ttl` obeys it too",
    ),
    Setting(
        "public_url",
        "EVENTSAPI_PUBLIC_URL",
        parsers.text,
        "the base URL clients reach the service at (bucket endpoints for PM2's client); "
        "default: taken from each request",
    ),
    Setting(
        "trust_forwarded",
        "EVENTSAPI_TRUST_FORWARDED",
        parsers.flag,
        "`1`: behind a proxy, take that base URL from `X-Forwarded-Proto` and `X-Forwarded-Host`",
    ),
    Setting(
        "max_streams",
        "EVENTSAPI_MAX_STREAMS",
        parsers.positive_int,
        "live-tail streams (SSE and realtime) one token subject may hold open per process; more: 429",
    ),
    Setting(
        "stream_bytes",
        "EVENTSAPI_STREAM_BYTES",
        parsers.positive_int,
        "bytes of events one live-tail stream may fall behind by before it is disconnected (it resumes "
        "with its last id)",
        default_text="4194304 (4 MiB)",
    ),
    Setting(
        "tail_memory_bytes",
        "EVENTSAPI_TAIL_MEMORY_BYTES",
        parsers.positive_int,
        "bytes of events all live-tail streams of a process may hold together; past it the lagging ones are "
        "disconnected",
        default_text="33554432 (32 MiB)",
    ),
    Setting("cors_origins", "EVENTSAPI_CORS_ORIGINS", parsers.origins, "comma-separated allowed origins, `*` for any"),
    Setting("store_timeout", "EVENTSAPI_STORE_TIMEOUT", parsers.seconds, "seconds before a store call answers 503"),
    Setting(
        "keepalive_timeout",
        "EVENTSAPI_KEEPALIVE_TIMEOUT",
        parsers.seconds,
        "seconds an idle connection, or one that never completes its request head, stays open",
    ),
    Setting("read_timeout", "EVENTSAPI_READ_TIMEOUT", parsers.seconds, "seconds to receive a request body before 408"),
    Setting(
        "max_body_bytes",
        "EVENTSAPI_MAX_BODY_BYTES",
        parsers.positive_int,
        "request body limit (after gzip inflation) → 413",
    ),
    Setting("max_events", "EVENTSAPI_MAX_EVENTS", parsers.positive_int, "events per ingest request → 413"),
    Setting(
        "max_names_per_bucket",
        "EVENTSAPI_MAX_NAMES_PER_BUCKET",
        parsers.positive_int,
        "distinct event names one bucket may hold; an event that would add one more is rejected on its own "
        "(docs/influx.md: the engine setting this protects)",
    ),
    Setting("max_apps_per_bucket", "EVENTSAPI_MAX_APPS_PER_BUCKET", parsers.positive_int, "likewise for apps"),
    Setting("max_servers_per_bucket", "EVENTSAPI_MAX_SERVERS_PER_BUCKET", parsers.positive_int, "likewise for servers"),
    Setting(
        "heavy_budget",
        "EVENTSAPI_HEAVY_BUDGET",
        parsers.positive_int,
        "heavy read work one process does at once, in units: a histogram costs one per window, a retrieve page "
        "100 per row of its `limit` (so 4 maximal histograms, or 40 default pages, run together)",
    ),
    Setting(
        "heavy_wait",
        "EVENTSAPI_HEAVY_WAIT",
        parsers.seconds,
        "seconds a read waits for that budget before 503 + `Retry-After`",
    ),
    Setting(
        "rate_limits",
        "EVENTSAPI_RATE_LIMITS",
        parse_limits,
        "requests per token subject and bucket, per process: `read=50/s,write=500/s,delete=1/m:5` "
        "(CLASS=N/s|m|h, `:BURST` optional, default one unit's worth); past it 429 + `Retry-After`",
        default_text="no limits",
    ),
    Setting(
        "retention_days",
        "EVENTSAPI_RETENTION_DAYS",
        parsers.days,
        "days events are kept; older ones are not returned, are purged in the background (SQLite) and are "
        "rejected at ingest. On InfluxDB the engine's retention policy does it: the service reads it and warns "
        "when it differs",
        default_text="for ever",
    ),
    Setting("influx_token", "EVENTSAPI_INFLUXDB_TOKEN", parsers.text, "InfluxDB token (never logged)", secret=True),
    Setting("influx_username", "EVENTSAPI_INFLUXDB_USERNAME", parsers.text, "InfluxDB 1.x user"),
    Setting(
        "influx_password",
        "EVENTSAPI_INFLUXDB_PASSWORD",
        parsers.text,
        "InfluxDB 1.x password (never logged)",
        secret=True,
    ),
    Setting(
        "influx_memory_points",
        "EVENTSAPI_INFLUX_MEMORY_POINTS",
        parsers.positive_int,
        "points the InfluxDB stores remember of the buckets they write, so that ingest reads a minute of a "
        "bucket once, not for every batch: about 12 bytes each (~125 MB by default); a point held in a dict, "
        "the faster form kept while there is room, counts 10. Past it minutes are compacted, then the least "
        "recently used dropped. A backfill in random order wants as many as the points in the span it covers",
    ),
    Setting("access_log", "EVENTSAPI_ACCESS_LOG", parsers.flag, "`0` turns the JSON access log off"),
    Setting(
        "shutdown_timeout",
        "EVENTSAPI_SHUTDOWN_TIMEOUT",
        parsers.seconds,
        "seconds SIGTERM waits for in-flight requests",
    ),
    Setting(
        "alert_rules",
        "EVENTSAPI_ALERT_RULES",
        parsers.path,
        "a JSON file of alert rules (docs/api.md §5.13), read again when it changes",
    ),
    Setting(
        "alert_secret",
        "EVENTSAPI_ALERT_SECRET",
        parsers.text,
        "signs webhook bodies: `X-Eventsapi-Signature: sha256=<HMAC>` (never logged)",
        secret=True,
    ),
    Setting(
        "alert_allow_private",
        "EVENTSAPI_ALERT_ALLOW_PRIVATE",
        parsers.flag,
        "`1` lets webhooks point at loopback or private addresses (refused otherwise)",
    ),
)


def settings_table() -> str:
    """The Markdown table of every setting (the README's configuration table)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.default()
        default = default if default in ("-",) or " " in default else f"`{default}`"
        meaning = s.help + (f" (`{s.flag}`)" if s.flag else "")
        rows.append(f"| `{s.env}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from the environment, then command-line overrides that are not None."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for s in SETTINGS:
        raw = env.get(s.env)
        if raw is None or raw == "":
            continue
        try:
            values[s.field] = s.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if s.secret else repr(raw if len(raw) <= 80 else raw[:77] + "...")
            raise ConfigError(f"{s.env}={shown}: expected {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = replace(Settings(), **values)  # type: ignore[arg-type]
    if sum(x is not None for x in (settings.jwt_secret, settings.jwt_public_key, settings.jwks_url)) > 1:
        raise ConfigError("set only one of EVENTSAPI_JWT_SECRET, EVENTSAPI_JWT_PUBLIC_KEY, EVENTSAPI_JWKS_URL")
    return settings


def ensure_secret(settings: Settings) -> tuple[Settings, str]:
    """Give an HS256 secret to settings that have no key at all.

    The secret is generated once and kept in the data dir (mode 0600), so that `serve` and
    `token` run from the same working directory agree. Returns (settings, where the key came
    from: "configured", "generated" or "file").
    """
    if settings.jwt_secret or settings.jwt_public_key or settings.jwks_url:
        return settings, "configured"
    path = settings.data_dir / SECRET_FILE
    source = "file"
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a data dir this user may not enter
        raise ConfigError(f"cannot read {path}: {exc.strerror} (EVENTSAPI_DATA_DIR)") from None
    if not exists:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race; read its secret
        except OSError as exc:
            raise ConfigError(f"cannot create {path}: {exc.strerror} (EVENTSAPI_DATA_DIR)") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            source = "generated"
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not secret:
        raise ConfigError(f"{path} is empty")
    return replace(settings, jwt_secret=secret), source
