#!/usr/bin/env bash
# Retrains the forecasting LSTM and exports it to ONNX with its metadata.
#
#   scripts/train-forecaster.sh [export-features sources and options] [-- train.py options]
#
# Sources are those of `sluice export-features`: --database URL (the service's stored per-minute
# endpoint traffic; the default is --database sqlite:sluice.db), --series FILE, --trace FILE.
# The model is written to models/lstm.onnx and models/lstm.json unless `-- --out PATH` says
# otherwise; a running server picks a new file up by itself (or on `ReloadModels`).
#
# The trainer's Python packages (models/requirements.txt: JAX on CPU, optax, onnx; ~250 MB, no
# CUDA) go into a virtualenv under target/.
#
# The shipped model: scripts/train-forecaster.sh \
#     --series ../shared/data/nasa-http-1995-per-minute.csv --to "1995-08-01 00:00:00"
set -euo pipefail
cd "$(dirname "$0")/.."
export_args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do export_args+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#export_args[@]} -eq 0 ] && export_args=(--database sqlite:sluice.db)

VENV=target/trainenv
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r models/requirements.txt

cargo build --release --locked --bin sluice
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT
./target/release/sluice export-features "${export_args[@]}" --out "$DATA"
"$VENV/bin/python" models/train.py --data "$DATA" --notes "export-features ${export_args[*]}" "$@"
