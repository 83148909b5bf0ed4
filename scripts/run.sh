#!/usr/bin/env bash
# Builds and starts Sluice on its embedded defaults: gRPC on 127.0.0.1:50051, rules in ./sluice.db
# (SQLite, created on first start). Extra arguments go to `sluice serve` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --locked --bin sluice -- serve "$@"
