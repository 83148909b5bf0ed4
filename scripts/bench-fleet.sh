#!/usr/bin/env bash
# Cost of shared counters: one `sluice serve` in memory, one on a local Redis in exact mode and
# one in cached mode, the same `sluice load` against each (alternating, 3 runs, concurrency 1 and 32), printing latency,
# throughput and CPU per decision (the processes' utime + stime from /proc over the run, which
# includes the load's one-second warm-up for both alike). Needs redis-server and a release build:
#   cargo build --release && scripts/bench-fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B="$PWD/target/release/sluice"
D="$(mktemp -d /tmp/sluice-bench-fleet.XXXXXX)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(port); P_MEM=$(port); P_EXACT=$(port); P_CACHED=$(port)
cleanup() { kill "${S1:-}" "${S2:-}" "${S3:-}" 2>/dev/null || true; redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$D"; }
trap cleanup EXIT
cat > "$D/rules.yaml" <<'R'
domain: bench
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 1000000}
R
redis-server --port "$RPORT" --save "" --appendonly no --daemonize yes --pidfile "$D/redis.pid" >/dev/null
sleep 0.5
common=(--database-url "sqlite:$D/x.db" --rules "$D/rules.yaml" --admin-token bench-admin-token-0001 --no-adaptive)
"$B" serve --listen "127.0.0.1:$P_MEM" "${common[@]/x.db/mem.db}" --admin-token-file "$D/ta" >"$D/mem.log" 2>&1 & S1=$!
"$B" serve --listen "127.0.0.1:$P_EXACT" "${common[@]/x.db/exact.db}" --admin-token-file "$D/tb" \
  --counters "redis://127.0.0.1:$RPORT/" --counters-budget-ms 50 >"$D/exact.log" 2>&1 & S2=$!
"$B" serve --listen "127.0.0.1:$P_CACHED" "${common[@]/x.db/cached.db}" --admin-token-file "$D/tc" \
  --counters "redis://127.0.0.1:$RPORT/" --counters-prefix cached --counters-mode cached >"$D/cached.log" 2>&1 & S3=$!
for p in "$P_MEM" "$P_EXACT" "$P_CACHED"; do
  for _ in $(seq 100); do "$B" health --server "http://127.0.0.1:$p" >/dev/null 2>&1 && break; sleep 0.1; done
done
RPID=$(cat "$D/redis.pid")
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
for c in 1 32; do for rep in 1 2 3; do
  for pair in "memory $P_MEM $S1 0" "exact $P_EXACT $S2 $RPID" "cached $P_CACHED $S3 $RPID"; do
    set -- $pair
    s0=$(ticks "$3"); r0=0; [ "$4" != 0 ] && r0=$(ticks "$4")
    out=$("$B" load --target "http://127.0.0.1:$2" --concurrency "$c" --duration 4 --domain bench --keys 10000 2>/dev/null)
    s1=$(ticks "$3"); r1=0; [ "$4" != 0 ] && r1=$(ticks "$4")
    OUT="$out" python3 -c "
import json, os
r = json.loads(os.environ['OUT']); n = r['requests']
print('$1 c=$c run=$rep rps', round(r['rps']), 'p50_us', r['p50_us'], 'p99_us', r['p99_us'],
      'server_cpu_us', round(($s1-$s0)/$HZ*1e6/n, 1), 'redis_cpu_us', round(($r1-$r0)/$HZ*1e6/n, 1))"
  done
done; done
