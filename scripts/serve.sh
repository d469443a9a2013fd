#!/usr/bin/env bash
# One command to run the service on a fresh machine (README "Run it"): makes .venv, installs
# the package, then runs `eventsapi serve` with any arguments given (SQLite by default).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/eventsapi serve "$@"
