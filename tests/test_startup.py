"""Start-up as a newcomer meets it: what cannot work stops `eventsapi serve` with one line on
stderr and exit status 2, before any "listening" line; the line that says it listens names the
store precisely."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.influxd import free_port
from support.service import Service


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventsapi", "serve", *args],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", **(env or {})}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def one_line(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode == 2 and "listening" not in out.stderr + out.stdout
    # Leaving out the secret's info line, and argparse's usage lines before a flag's error.
    lines = [ln for ln in out.stderr.splitlines() if "JWT secret" not in ln and not ln.startswith(("usage:", " "))]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        one_line(serve(tmp_path, "--port", port), "cannot listen on 127.0.0.1:" + port, "in use")
        one_line(serve(tmp_path, "--port", port, "--workers", "2"), "in use")


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (("--port", "99999"), {}, ("--port", "1-65535")),
        (("--host", "192.0.2.1", "--port", "8080"), {}, ("cannot listen on 192.0.2.1:8080",)),
        ((), {"EVENTSAPI_WORKERS": "many"}, ("EVENTSAPI_WORKERS", "auto")),
        ((), {"EVENTSAPI_JWT_SECRET": "abcde"}, ("EVENTSAPI_JWT_SECRET=(hidden)", "32 bytes")),
        (("--store", "sqlite:///nonexistent-dir/x.db"), {}, ("directory /nonexistent-dir does not exist",)),
        (("--store", "sqlite://not-a-db.txt"), {}, ("cannot open", "not-a-db.txt", "not a database")),
        (("--store", "sqlite://a-directory"), {}, ("cannot open", "a-directory", "unable to open")),
        (("--store", "sqlite://x.db"), {"EVENTSAPI_ACCESS_LOG": "yes please"}, ("EVENTSAPI_ACCESS_LOG", "1/true")),
        ((), {"EVENTSAPI_DATA_DIR": "not-a-db.txt/data"}, ("not-a-db.txt/data", "EVENTSAPI_DATA_DIR")),
        (
            (),
            {"EVENTSAPI_DATA_DIR": "not-a-db.txt/data", "EVENTSAPI_JWT_SECRET": "k" * 32},
            ("cannot create", "not-a-db.txt/data", "EVENTSAPI_DATA_DIR"),
        ),
    ],
    ids=[
        "port-out-of-range",
        "address-not-here",
        "workers",
        "short-secret",
        "no-such-directory",
        "not-sqlite",
        "a-directory",
        "boolean",
        "data-dir-unusable",
        "data-dir-not-creatable",
    ],
)
def test_what_cannot_work_is_one_line(tmp_path: Path, args: tuple[str, ...], env: dict[str, str],
                                      words: tuple[str, ...]) -> None:  # fmt: skip
    (tmp_path / "not-a-db.txt").write_text("not a database, " * 20)
    (tmp_path / "a-directory").mkdir()
    one_line(serve(tmp_path, *args, env=env), *words)
    assert not Path("/nonexistent-dir").exists()  # nothing made at the filesystem root


def test_the_start_up_line_names_the_store(tmp_path: Path) -> None:
    with Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0"}) as service:
        pass
    assert f"store sqlite {(tmp_path / 'eventsapi-data' / 'events.db').resolve()}" in service.logs()
    from eventsapi.config import Settings

    url = f"influxql://user:secret@127.0.0.1:{free_port()}/db"
    assert Settings(store_url=url).store_description() == url.replace("user:secret@", "")
