#!/usr/bin/env bash
# Reproduces the README's benchmark figures on this machine:
#   ./scripts/bench.sh sqlite   [bench args...]   service on SQLite vs SQLite directly
#   ./scripts/bench.sh influxql [bench args...]   service on InfluxDB 1.x vs InfluxDB directly
#   ./scripts/bench.sh influxql --order time,random --prefill 1000000   the ingest study (README)
# Starts what it needs (a throw-away influxd for influxql, the service on a free port) in a
# temporary directory, runs `eventsapi bench`, stops everything. Needs ./scripts/test.sh's
# .venv (or run that first). Extra arguments go to `eventsapi bench` (e.g. --events 1000000).
# EVENTSAPI_BENCH_PIN=1 (InfluxDB only, ≥ 2 cores): influxd on core 0, the service and the
# load generator on the others, so that the engine has the same CPU in both runs and the ratio
# shows what the service costs the engine, not how it competes with it for cores.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-sqlite}; shift || true
[ -x .venv/bin/eventsapi ] || { python3 -m venv .venv; .venv/bin/python -m pip install -q -e .; }
WORK=$(mktemp -d /tmp/eventsapi-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

ENGINE_CPUS=(); SERVICE_CPUS=(); EXTRA=()
if [ "${EVENTSAPI_BENCH_PIN:-0}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  ENGINE_CPUS=(taskset -c 0); SERVICE_CPUS=(taskset -c "1-$(($(nproc) - 1))")
fi
export EVENTSAPI_JWT_SECRET=bench-secret-0123456789-abcdefghijklmnop EVENTSAPI_ACCESS_LOG=0
if [ "$MODE" = influxql ]; then
  # The throw-away configuration the tests use (free loopback ports, own data dir), plus a cache
  # written to disk once writes stop, so each phase pays for its own snapshots and compactions.
  IPORT=$(.venv/bin/python tests/support/influxd.py "$WORK")
  "${ENGINE_CPUS[@]}" influxd -config "$WORK/influxdb.conf" > "$WORK/influxd.log" 2>&1 & PIDS+=($!)
  EXTRA=(--engine-pid "$!" --service-store "influxql://127.0.0.1:$IPORT/service")
  wait_http "http://127.0.0.1:$IPORT/ping"
  for db in service engine; do curl -fs -XPOST "http://127.0.0.1:$IPORT/query" --data-urlencode "q=CREATE DATABASE $db" >/dev/null; done
  STORE="influxql://127.0.0.1:$IPORT/service"; ENGINE="influxql://127.0.0.1:$IPORT/engine"
else
  STORE="sqlite:///$WORK/service.db"; ENGINE="sqlite:///$WORK/engine.db"
fi
SPORT=$(port)
"${SERVICE_CPUS[@]}" .venv/bin/eventsapi serve --port "$SPORT" --store "$STORE" > "$WORK/serve.log" 2>&1 & PIDS+=($!)
EXTRA+=(--service-pid "$!")
wait_http "http://127.0.0.1:$SPORT/readyz"
TOKEN=$(EVENTSAPI_DATA_DIR="$WORK" .venv/bin/eventsapi token --sub bench --bucket '*' --scope "events:read events:write events:delete")
echo "== $MODE${ENGINE_CPUS:+ (influxd pinned to core 0)}: $(nproc) cores, $(python3 -c 'import os; print(round(os.sysconf("SC_PAGE_SIZE")*os.sysconf("SC_PHYS_PAGES")/2**30))') GiB, $(date -u +%F)" >&2
"${SERVICE_CPUS[@]}" .venv/bin/eventsapi bench --url "http://127.0.0.1:$SPORT" --token "$TOKEN" --engine "$ENGINE" "${EXTRA[@]}" "$@"
