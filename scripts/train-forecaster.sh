#!/usr/bin/env bash
# Retrains the forecasting LSTM and exports it to ONNX with its metadata.
#
#   scripts/train-forecaster.sh [export-features sources and options] [--and sources and options ...] [-- train.py options]
#
# Sources are those of `sluice export-features`: --database URL (the service's stored per-minute
# endpoint traffic; the default is --database sqlite:sluice.db), --series FILE, --trace FILE.
# Each `--and` starts another group, exported on its own (with its own --from/--to: sites'
# series cover different dates); the trainer validates on the newest tenth of each group and
# reports each. The model is written to models/lstm.onnx and models/lstm.json unless
# `-- --out PATH` says otherwise; a running server picks a new file up by itself (or on
# `ReloadModels`).
#
# The trainer's Python packages (models/requirements.txt: JAX on CPU, optax, onnx; ~250 MB, no
# CUDA) go into a virtualenv under target/.
#
# The shipped model (two sites; August 1995 and July 10-26 1998 never seen):
#   scripts/train-forecaster.sh \
#     --series ../shared/data/nasa-http-1995-per-minute.csv --to "1995-08-01 00:00:00" \
#     --and --series ../shared/data/worldcup98-per-minute.csv --to "1998-07-10 00:00:00" --stride 2 \
#     -- --version 4 --members 5
set -euo pipefail
cd "$(dirname "$0")/.."
groups=()
current=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  if [ "$1" = "--and" ]; then
    groups+=("${current[*]@Q}")
    current=()
  else
    current+=("$1")
  fi
  shift
done
[ "${1:-}" = "--" ] && shift
[ ${#current[@]} -eq 0 ] && current=(--database sqlite:sluice.db)
groups+=("${current[*]@Q}")

VENV=target/trainenv
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r models/requirements.txt

cargo build --release --locked --bin sluice
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT
data_args=()
notes=()
for i in "${!groups[@]}"; do
  eval "group=(${groups[$i]})"
  ./target/release/sluice export-features "${group[@]}" --out "$DATA/$i"
  data_args+=(--data "$DATA/$i")
  notes+=("export-features ${group[*]}")
done
IFS=';'
"$VENV/bin/python" models/train.py "${data_args[@]}" --notes "${notes[*]}" "$@"
