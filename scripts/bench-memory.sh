#!/usr/bin/env bash
# Whole-process memory of a release server holding N distinct keys under churn: the server is
# started on each bucket store with observation on (the default: at most 200,000 clients a
# minute) and off (--max-clients-per-minute 0), driven over gRPC by `sluice load --sweep
# --descriptors 32` (every request 32 distinct keys, every key walked in order) until it holds
# every key, then for as long again (the keys churn: every bucket is used again, the minute
# closes, the learning loop runs). Reports VmRSS and VmHWM from /proc and the buckets held
# (`sluice_buckets` from /metrics), one JSON line per run.
#   scripts/bench-memory.sh [KEYS ...]        (default: 1000000 5000000)
# The bucket stores keep the default capacity (2,000,000) unless CAPACITY says otherwise: at
# capacity they evict, which costs memory of its own (fragmentation), and more keys than the
# capacity are held only up to it. OBSERVATION="off" picks observation on or off. CHURN_SECONDS=130 keeps the load on that long after the fill (two minutes close meanwhile:
# the learning loop drains, scores and records the minute); STORES="sharded" picks the stores;
# SERVER_CPUS pins the server (taskset -c), e.g. 0: one CPU, so tokio's current-thread scheduler.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin sluice >&2
BIN=target/release/sluice
KEYS=("${@:-1000000 5000000}")
[ $# -eq 0 ] && KEYS=(1000000 5000000)
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/rules.yaml" <<'YAML'
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 1000}
YAML
. scripts/lib/proc.sh
for keys in "${KEYS[@]}"; do
  for store in ${STORES:-sharded moka}; do
    for observation in ${OBSERVATION:-on off}; do
      grpc=$(free_port); http=$(free_port)
      extra=()
      [ "$observation" = off ] && extra=(--max-clients-per-minute 0)
      rm -f "$WORK/sluice.db"*
      ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$BIN" serve --listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" \
        --database-url "sqlite:$WORK/sluice.db" --rules "$WORK/rules.yaml" \
        --bucket-store "$store" --cache-capacity "${CAPACITY:-2000000}" --admin-token bench-admin-token-0001 "${extra[@]}" \
        > "$WORK/server.log" 2>&1 &
      server=$!
      until "$BIN" health --server "127.0.0.1:$grpc" >/dev/null 2>&1; do sleep 0.2; done
      idle_kb=$(kb VmRSS $server)
      "$BIN" load --target "http://127.0.0.1:$grpc" --domain edge --keys "$keys" --sweep \
        --descriptors 32 --concurrency 32 --duration 900 > "$WORK/load.json" 2>&1 &
      load=$!
      started=$(date +%s.%N)
      held=0
      while :; do
        held=$(curl -s "127.0.0.1:$http/metrics" | awk '$1 == "sluice_buckets" {print int($2)}')
        # A full table holds a little less than its capacity (it makes room before it is full).
        cap="${CAPACITY:-2000000}"; want=$(( keys < cap ? keys : cap ))
        [ "${held:-0}" -ge $((want * 95 / 100)) ] && break
        sleep 1
      done
      filled=$(python3 -c "import time; print(round(time.time() - $started, 1))")
      sleep "${CHURN_SECONDS:-$filled}"   # churn: every key used again
      kill $load 2>/dev/null || true; wait $load 2>/dev/null || true
      held=$(curl -s "127.0.0.1:$http/metrics" | awk '$1 == "sluice_buckets" {print int($2)}')
      rss=$(kb VmRSS $server); hwm=$(kb VmHWM $server)
      printf '{"keys": %d, "store": "%s", "observation": "%s", "buckets_held": %d, "fill_seconds": %s, "churn_seconds": %s, "idle_rss_mb": %.1f, "rss_mb": %.1f, "peak_rss_mb": %.1f, "bytes_per_key": %.0f}\n' \
        "$keys" "$store" "$observation" "$held" "$filled" "${CHURN_SECONDS:-$filled}" "$(echo "$idle_kb/1024" | bc -l)" \
        "$(echo "$rss/1024" | bc -l)" "$(echo "$hwm/1024" | bc -l)" "$(echo "($rss-$idle_kb)*1024/$keys" | bc -l)"
      kill $server; wait $server 2>/dev/null || true
    done
  done
done
