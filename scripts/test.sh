#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine with Rust and Python 3:
#   - installs PostgreSQL's server if it is missing (Debian's `postgresql` package);
#   - starts a throwaway PostgreSQL cluster in a temp dir (stopped and removed on exit);
#   - installs Redis's server if it is missing (Debian's `redis-server`: the fleet tests start
#     their own standalone servers and three-primary clusters on loopback, and stop them);
#   - fetches ONNX Runtime's library (PyPI wheel, cached) for the forecaster's tests;
#   - runs every Rust test (unit, property, end-to-end against SQLite and PostgreSQL);
#   - installs promtool, Chromium and chromedriver if missing (Debian packages);
#   - runs the Python tests (grpcio client, the dashboard in headless Chromium, the deployment
#     files' validators) in a virtualenv under target/.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

find_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
PG_BIN="${SLUICE_TEST_PG_BIN:-$(find_pg_bin)}"
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  log "installing PostgreSQL (Debian package postgresql)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  PG_BIN="$(find_pg_bin)"
fi
export SLUICE_TEST_PG_BIN="$PG_BIN"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  log "installing Redis (Debian package redis-server)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # The package starts a system-wide server on 6379; the tests use their own ports.
fi
# promtool (Debian's `prometheus`) checks /metrics and the deployment's Prometheus config;
# Chromium and its driver load the dashboard in the Python test.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export SLUICE_TEST_REDIS_BIN_DIR="$(dirname "$(command -v redis-server)")"

# PostgreSQL refuses to run as root: run its tools as the `postgres` user when we are root.
pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$PG_BIN/$1" "${@:2}"; else "$PG_BIN/$1" "${@:2}"; fi; }

PG_DIR="$(mktemp -d /tmp/sluice-test-pg.XXXXXX)"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR"
cleanup() {
  pg pg_ctl -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap cleanup EXIT

PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log "starting a throwaway PostgreSQL on 127.0.0.1:$PG_PORT"
pg initdb -A trust -U postgres -D "$PG_DIR/data" >/dev/null
pg pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null
pg pg_ctl -D "$PG_DIR/data" status >/dev/null
export SLUICE_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

# ONNX Runtime for the forecaster's tests: fetched from PyPI into a cache when missing.
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  log "ONNX Runtime library"
  ORT_DYLIB_PATH="$(./scripts/fetch-onnxruntime.sh)"
fi
export ORT_DYLIB_PATH

log "cargo test"
# --workspace: the core crate's own tests too (a bare `cargo test` at the root runs only the root package's).
cargo test --locked --workspace "$@"

log "Python grpcio client test"
VENV=target/pyenv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
# `cargo test` built the binary for the integration tests; a separate `cargo build` would
# rebuild the dependency tree without dev-dependency features (minutes on a cold CI machine).
[ -x target/debug/sluice ] || cargo build --locked --bin sluice
SLUICE_BIN="$PWD/target/debug/sluice" "$VENV/bin/python" -m pytest -q tests/python
log "all tests passed"
