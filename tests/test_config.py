"""Settings: one table read for the environment, the CLI and the docs; bad values are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventsapi.config import SETTINGS, ConfigError, Settings, load_settings


def test_every_settings_field_has_exactly_one_variable() -> None:
    import dataclasses

    assert sorted(s.field for s in SETTINGS) == sorted(f.name for f in dataclasses.fields(Settings))
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)


def test_values_are_parsed_and_flags_win() -> None:
    s = load_settings(
        {
            "EVENTSAPI_PORT": "9000",
            "EVENTSAPI_JWT_LEEWAY": "0",
            "EVENTSAPI_ACCESS_LOG": "no",
            "EVENTSAPI_HOST": "0.0.0.0",
        },
        host="127.0.0.2",
    )
    assert (s.port, s.jwt_leeway, s.access_log, s.host) == (9000, 0.0, False, "127.0.0.2")
    assert load_settings({}) == Settings()


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("EVENTSAPI_JWT_LEEWAY", "abc"),
        ("EVENTSAPI_JWT_LEEWAY", "-1"),
        ("EVENTSAPI_PORT", "70000"),
        ("EVENTSAPI_MAX_EVENTS", "0"),
        ("EVENTSAPI_STORE_TIMEOUT", "inf"),
        ("EVENTSAPI_ACCESS_LOG", "maybe"),
        ("EVENTSAPI_JWT_PUBLIC_KEY", "/nonexistent/key.pem"),
        ("EVENTSAPI_JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"),
    ],
)
def test_a_bad_value_names_the_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{env}="):
        load_settings({env: value})


def test_secrets_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings({"EVENTSAPI_JWT_SECRET": "s3cret", "EVENTSAPI_JWKS_URL": "http://x"})
    assert "s3cret" not in str(exc.value)


@pytest.mark.parametrize(
    "env",
    [
        {"EVENTSAPI_JWT_LEEWAY": "abc"},
        {"EVENTSAPI_STORE": "postgres://nope"},
        {"EVENTSAPI_STORE": "influxql://host-only"},
    ],
)
def test_serve_with_a_bad_setting_prints_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSAPI_")}
    out = subprocess.run(
        [sys.executable, "-m", "eventsapi", "serve", "--port", "1"],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eventsapi: configuration error: ") and "Traceback" not in out.stderr


def test_serve_help_lists_every_variable() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "eventsapi", "serve", "--help"], capture_output=True, text=True, check=True
    )
    assert all(s.env in out.stdout for s in SETTINGS)
