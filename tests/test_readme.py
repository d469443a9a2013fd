"""The README's examples, run as a new user runs them: every ```sh, ```js and ```python block in
README order, against the `eventsapi serve` its first block starts (SQLite), from the
repository's root. Variables a shell block sets (`TOKEN=$(...)`) reach the later blocks, as in
one terminal; where a block shows an answer (`# → ...`), the command above it must print it
(compared as JSON); every curl must get a 2xx. Only the port and the data directory differ
from a fresh clone (EVENTSAPI_PORT, EVENTSAPI_DATA_DIR: a free port, a temporary directory).

A block preceded by `<!-- readme-test: skip (why) -->` is not run; `<!-- readme-test:
background until URL -->` runs in the background until the test ends, once URL answers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PM2JS = ROOT / "tests" / "pm2js" / "node_modules"
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```(?P<lang>sh|js|python)\n(?P<code>.*?)\n```", re.S)
ANSWER = re.compile(r"^# → (.*)$", re.M)
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    mark: str
    line: int


def readme_blocks(text: str) -> list[Block]:
    return [
        Block(m["lang"], m["code"], m["mark"] or "", text.count("\n", 0, m.start("code")) + 1)
        for m in BLOCK.finditer(text)
    ]


def segments(code: str) -> list[tuple[str, str | None]]:
    """The block cut at each shown answer: (commands, the answer they must print). An answer
    is the output of the paragraph just above it (the lines since the last blank one)."""
    out: list[tuple[str, str | None]] = []
    start = 0
    for m in ANSWER.finditer(code):
        before, _, paragraph = code[start : m.start()].rstrip("\n").rpartition("\n\n")
        if before.strip():
            out.append((before + "\n", None))
        out.append((paragraph + "\n", m[1]))
        start = m.end()
    if code[start:].strip():
        out.append((code[start:], None))
    return out


def same_answer(printed: str, shown: str) -> bool:
    try:
        return bool(json.loads(printed) == json.loads(shown))
    except ValueError:
        return printed.strip() == shown.strip()


def test_the_readme_blocks_are_found_and_marked() -> None:
    blocks = readme_blocks((ROOT / "README.md").read_text())
    assert {b.lang for b in blocks} == {"sh", "js", "python"}
    assert blocks[0].mark.startswith("background until ")
    assert all(b.mark == "" or re.match(r"(skip \(.+\)|background until \S+)$", b.mark) for b in blocks), [
        b.mark for b in blocks
    ]
    assert segments("a\n# → 1\nb\n") == [("a\n", "1"), ("\nb\n", None)]
    assert segments("a\n\n# c\nb\n# → 2\n") == [("a\n", None), ("# c\nb\n", "2")]


class Terminal:
    """One shell's variables across blocks: each segment runs in bash with the variables the
    earlier ones set, and leaves its own for the next."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.names: set[str] = set()
        self.values: dict[str, str] = {}
        (tmp / "state.sh").write_text("")

    def run(self, code: str, where: str) -> str:
        self.names |= set(re.findall(r"^([A-Z][A-Z0-9_]*)=", code, re.M))
        names = " ".join(sorted(self.names))
        script = (
            "set -eo pipefail\n"
            # Every curl of the README must succeed (an HTTP error fails the block).
            'curl() { command curl --fail-with-body "$@"; }\n'
            f"source {self.tmp / 'state.sh'}\n{code}\n"
            f"declare -p {names} > {self.tmp / 'state.sh'} 2>/dev/null || true\n"
            f'for v in {names}; do printf "%s\\0%s\\0" "$v" "${{!v-}}"; done > {self.tmp / "vars"}\n'
        )
        done = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"{where} failed:\n{code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        raw = (self.tmp / "vars").read_bytes().split(b"\0")
        self.values = {raw[i].decode(): raw[i + 1].decode() for i in range(0, len(raw) - 1, 2)}
        return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def test_readme_examples_run_as_written(tmp_path: Path) -> None:
    if not PM2JS.exists():
        pytest.skip("run the test command: it installs tests/pm2js (@pm2/js-api)")
    port = free_port()
    env = {
        **os.environ,
        "EVENTSAPI_PORT": str(port),
        "EVENTSAPI_DATA_DIR": str(tmp_path / "data"),
        "EVENTSAPI_ACCESS_LOG": "0",
    }
    env.pop("EVENTSAPI_STORE", None)
    terminal = Terminal(tmp_path, env)
    background: list[subprocess.Popen[bytes]] = []
    logs = []
    ran = {"sh": 0, "js": 0, "python": 0}
    try:
        for block in readme_blocks((ROOT / "README.md").read_text()):
            code = block.code.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            where = f"README.md line {block.line} ({block.lang})"
            if block.mark.startswith("skip"):
                continue
            if block.mark.startswith("background until "):
                url = block.mark.removeprefix("background until ").replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                log = open(tmp_path / f"background-{block.line}.log", "wb")  # noqa: SIM115 - closed at the end
                logs.append(log)
                background.append(
                    subprocess.Popen(
                        ["bash", "-c", code], cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
                    )
                )
                wait_for(url, 180)
            elif block.lang == "sh":
                for commands, shown in segments(code):
                    printed = terminal.run(commands, where)
                    if shown is not None:
                        assert same_answer(printed, shown), f"{where}: printed {printed!r}, the README shows {shown!r}"
            elif block.lang == "js":
                work = tmp_path / f"js-{block.line}"
                work.mkdir()
                (work / "node_modules").symlink_to(PM2JS)
                (work / "readme.mjs").write_text(code)
                done = subprocess.run(
                    ["node", "readme.mjs"], cwd=work, env={**env, **terminal.values}, capture_output=True, text=True,
                    timeout=60,
                )  # fmt: skip
                assert done.returncode == 0, f"{where}:\n{done.stdout}\n{done.stderr}"
            else:
                (tmp_path / "emit.py").write_text(code)
                done = subprocess.run(
                    [sys.executable, str(tmp_path / "emit.py")], cwd=ROOT, env={**env, **terminal.values},
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                assert done.returncode == 0, f"{where}:\n{done.stdout}\n{done.stderr}"
            ran[block.lang] += 1
        assert all(ran.values()), ran
        # What the Python example emitted is stored: the README's client works as shown.
        stored = terminal.run(
            'curl -s -H "$AUTH" "$B/events" -d \'{"event_name":"deploy","server_name":"web-1"}\'', "check"
        )
        assert [e["data"] for e in json.loads(stored)] == [{"rev": "abc"}]
    finally:
        for proc in background:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in logs:
            log.close()
