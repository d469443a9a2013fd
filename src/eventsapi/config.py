"""Configuration: every EVENTSAPI_* variable and command-line override is read here, once."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_DATA_DIR = "eventsapi-data"
SECRET_FILE = "jwt-secret"


class ConfigError(Exception):
    """A setting has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    store_url: str = ""  # empty: SQLite in data_dir
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    jwt_secret: str | None = None
    jwt_public_key: str | None = None  # PEM text
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 30.0
    jwt_max_lifetime: float = 30 * 86400.0
    jwks_cooldown: float = 30.0
    cors_origins: tuple[str, ...] = ()
    store_timeout: float = 10.0
    read_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    max_body_bytes: int = 10 * 1024 * 1024
    max_events: int = 10_000
    heavy_budget: int = 400_000
    max_names_per_bucket: int = 10_000
    max_apps_per_bucket: int = 1_000
    max_servers_per_bucket: int = 1_000
    heavy_wait: float = 5.0
    influx_token: str | None = field(default=None, repr=False)
    influx_username: str | None = None
    influx_password: str | None = field(default=None, repr=False)
    access_log: bool = True
    shutdown_timeout: float = 30.0

    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.data_dir / 'events.db').resolve()}"


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be > 0")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be > 0")
    return value


def _public_key(env: Mapping[str, str]) -> str | None:
    """EVENTSAPI_JWT_PUBLIC_KEY holds PEM text, or the path of a PEM file."""
    raw = env.get("EVENTSAPI_JWT_PUBLIC_KEY") or None
    if raw is None or "-----BEGIN" in raw:
        return raw
    try:
        return Path(raw).read_text()
    except OSError as exc:
        raise ConfigError(f"EVENTSAPI_JWT_PUBLIC_KEY: cannot read {raw}: {exc}") from exc


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from the environment, then command-line overrides that are not None."""
    env = os.environ if env is None else env
    origins = tuple(o.strip() for o in env.get("EVENTSAPI_CORS_ORIGINS", "").split(",") if o.strip())
    settings = Settings(
        host=env.get("EVENTSAPI_HOST", "127.0.0.1"),
        port=_int(env, "EVENTSAPI_PORT", 8080),
        store_url=env.get("EVENTSAPI_STORE", ""),
        data_dir=Path(env.get("EVENTSAPI_DATA_DIR", DEFAULT_DATA_DIR)),
        jwt_secret=env.get("EVENTSAPI_JWT_SECRET") or None,
        jwt_public_key=_public_key(env),
        jwks_url=env.get("EVENTSAPI_JWKS_URL") or None,
        jwt_audience=env.get("EVENTSAPI_JWT_AUDIENCE") or None,
        jwt_issuer=env.get("EVENTSAPI_JWT_ISSUER") or None,
        jwt_leeway=float(env.get("EVENTSAPI_JWT_LEEWAY", "30") or 0),
        jwks_cooldown=float(env.get("EVENTSAPI_JWKS_COOLDOWN", "30") or 0),
        jwt_max_lifetime=_float(env, "EVENTSAPI_JWT_MAX_LIFETIME", 30 * 86400.0),
        cors_origins=origins,
        store_timeout=_float(env, "EVENTSAPI_STORE_TIMEOUT", 10.0),
        read_timeout=_float(env, "EVENTSAPI_READ_TIMEOUT", 30.0),
        keepalive_timeout=_float(env, "EVENTSAPI_KEEPALIVE_TIMEOUT", 75.0),
        max_body_bytes=_int(env, "EVENTSAPI_MAX_BODY_BYTES", 10 * 1024 * 1024),
        max_events=_int(env, "EVENTSAPI_MAX_EVENTS", 10_000),
        heavy_budget=_int(env, "EVENTSAPI_HEAVY_BUDGET", 400_000),
        max_names_per_bucket=_int(env, "EVENTSAPI_MAX_NAMES_PER_BUCKET", 10_000),
        max_apps_per_bucket=_int(env, "EVENTSAPI_MAX_APPS_PER_BUCKET", 1_000),
        max_servers_per_bucket=_int(env, "EVENTSAPI_MAX_SERVERS_PER_BUCKET", 1_000),
        heavy_wait=_float(env, "EVENTSAPI_HEAVY_WAIT", 5.0),
        influx_token=env.get("EVENTSAPI_INFLUXDB_TOKEN") or None,
        influx_username=env.get("EVENTSAPI_INFLUXDB_USERNAME") or None,
        influx_password=env.get("EVENTSAPI_INFLUXDB_PASSWORD") or None,
        access_log=env.get("EVENTSAPI_ACCESS_LOG", "1") not in ("0", "false", "no"),
        shutdown_timeout=_float(env, "EVENTSAPI_SHUTDOWN_TIMEOUT", 30.0),
    )
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = replace(settings, **given)  # type: ignore[arg-type]
    if sum(x is not None for x in (settings.jwt_secret, settings.jwt_public_key, settings.jwks_url)) > 1:
        raise ConfigError("set only one of EVENTSAPI_JWT_SECRET, EVENTSAPI_JWT_PUBLIC_KEY, EVENTSAPI_JWKS_URL")
    return settings


def ensure_secret(settings: Settings) -> tuple[Settings, bool]:
    """Give an HS256 secret to settings that have no key at all.

    The secret is generated once and kept in the data dir (mode 0600), so that `serve` and
    `token` run from the same working directory agree. Returns (settings, created).
    """
    if settings.jwt_secret or settings.jwt_public_key or settings.jwks_url:
        return settings, False
    path = settings.data_dir / SECRET_FILE
    created = False
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race; read its secret
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            created = True
    secret = path.read_text().strip()
    if not secret:
        raise ConfigError(f"{path} is empty")
    return replace(settings, jwt_secret=secret), created
