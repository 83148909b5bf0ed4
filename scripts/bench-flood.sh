#!/usr/bin/env bash
# Memory of a release server under a ShouldAllow flood of caller-chosen strings (issue 29): every
# call carries a distinct client address, user id, user agent and endpoint of PAD bytes (default
# 1000, under the 1024-byte cap), as fast as the server answers, for SECONDS (default 70: the
# minute closes, and the learning loop drains, scores and records it, during the flood). Samples
# VmRSS every second; reports the peak (VmHWM), the RSS at the end, the calls a second and the
# observations dropped at the minute's caps, one JSON line per run; RUNS (default 3) runs.
#   scripts/bench-flood.sh [extra serve flags ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin sluice >&2
BIN=target/release/sluice
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/rules.yaml" <<'YAML'
domain: sluice
descriptors:
  - key: user_id
    rate_limit: {unit: minute, requests_per_unit: 100}
YAML
. scripts/lib/proc.sh
for run in $(seq "${RUNS:-3}"); do
  grpc=$(free_port); http=$(free_port)
  rm -f "$WORK/sluice.db"*
  "$BIN" serve --listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" \
    --database-url "sqlite:$WORK/sluice.db" --rules "$WORK/rules.yaml" \
    --admin-token bench-admin-token-0001 "$@" > "$WORK/server.log" 2>&1 &
  server=$!
  until "$BIN" health --server "127.0.0.1:$grpc" >/dev/null 2>&1; do sleep 0.2; done
  "$BIN" load --target "http://127.0.0.1:$grpc" --api allow --pad-bytes "${PAD:-1000}" \
    --keys 1000000000 --concurrency 64 --duration "${SECONDS_:-70}" > "$WORK/load.json" 2>&1 &
  load=$!
  peak_sampled=0
  while kill -0 $load 2>/dev/null; do
    rss=$(kb VmRSS $server); [ "$rss" -gt "$peak_sampled" ] && peak_sampled=$rss
    sleep 1
  done
  wait $load || true
  rss=$(kb VmRSS $server); hwm=$(kb VmHWM $server)
  overflow=$(curl -s "127.0.0.1:$http/metrics" | awk '$1 == "sluice_observations_dropped_total" {print int($2)}')
  rps=$(python3 -c "import json; print(round(json.load(open('$WORK/load.json'))['rps']))" 2>/dev/null || echo null)
  printf '{"run": %d, "pad_bytes": %d, "calls_per_second": %s, "peak_rss_mib": %.0f, "end_rss_mib": %.0f, "observation_overflow": %s}\n' \
    "$run" "${PAD:-1000}" "$rps" "$(echo "$hwm/1024" | bc -l)" "$(echo "$rss/1024" | bc -l)" "${overflow:-null}"
  kill $server; wait $server 2>/dev/null || true
done
