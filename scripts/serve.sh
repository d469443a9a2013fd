#!/usr/bin/env bash
# One command to run the service on a fresh machine (README "Run it"): makes .venv, installs
# the package, then runs `eventsapi serve` with any arguments given (SQLite by default).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  # Debian's own python3 needs the python3-venv package for this.
  "$PY" -m venv .venv 2>/dev/null || {
    rm -rf .venv
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv .venv
  }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/eventsapi serve "$@"
