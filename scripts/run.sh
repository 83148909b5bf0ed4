#!/usr/bin/env bash
# Builds and starts Sluice on its embedded defaults: gRPC on 127.0.0.1:50051, rules in ./sluice.db
# (SQLite, created on first start), the shipped forecasting model models/lstm.onnx. Extra
# arguments go to `sluice serve` (see --help).
#
# ONNX Runtime's library is fetched from PyPI into a cache the first time (scripts/
# fetch-onnxruntime.sh). If that fails, Sluice still starts and forecasts with its statistical
# baseline; health and logs say so.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  if ORT="$(./scripts/fetch-onnxruntime.sh)"; then
    export ORT_DYLIB_PATH="$ORT"
  else
    echo "warning: could not fetch ONNX Runtime; forecasting will use the statistical baseline" >&2
  fi
fi
exec cargo run --release --locked --bin sluice -- serve "$@"
