#!/usr/bin/env bash
# Sluice (in memory, exact, cached) beside Limitador (memory, redis, redis_cached): the same
# client (`sluice load`, Envoy RLS, concurrency 32, 4 s), the same Redis, the same limit (one per
# address, never denying), alternating, 3 runs; latency, throughput, server and Redis CPU per
# decision (utime + stime from /proc over the run). Usage:
#   cargo build --release && LIMITADOR=/path/to/limitador-server scripts/bench-vs-limitador.sh
set -uo pipefail
cd "$(dirname "$0")/.."
B="$PWD/target/release/sluice"
L="${LIMITADOR:?set LIMITADOR to a limitador-server binary (built from github.com/Kuadrant/limitador: cargo build --release -p limitador-server; needs clang, libclang-dev, protobuf-compiler)}"
D="$(mktemp -d /tmp/sluice-vs-limitador.XXXXXX)"; cd "$D"
cat > rules.yaml <<'R'
domain: bench
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 1000000}
R
cat > limits.yaml <<'R'
- namespace: bench
  max_value: 1000000
  seconds: 1
  conditions: []
  variables:
    - descriptors[0]['remote_address']
R
redis-server --port 16391 --save "" --appendonly no --daemonize yes --pidfile $D/redis.pid >/dev/null; sleep 0.5
RURL=redis://127.0.0.1:16391
C=(--rules rules.yaml --admin-token bench-admin-token-0001 --no-adaptive)
$B serve --listen 127.0.0.1:18071 --database-url sqlite:a.db "${C[@]}" --admin-token-file ta > la 2>&1 & S1=$!
$B serve --listen 127.0.0.1:18072 --database-url sqlite:b.db "${C[@]}" --admin-token-file tb --counters $RURL/ --counters-prefix ex --counters-budget-ms 50 > lb 2>&1 & S2=$!
$B serve --listen 127.0.0.1:18073 --database-url sqlite:c.db "${C[@]}" --admin-token-file tc --counters $RURL/ --counters-prefix ca --counters-mode cached > lc 2>&1 & S3=$!
$L -p 18081 -P 18091 limits.yaml memory > lm 2>&1 & L1=$!
$L -p 18082 -P 18092 limits.yaml redis $RURL > lr 2>&1 & L2=$!
$L -p 18083 -P 18093 limits.yaml redis_cached $RURL > lrc 2>&1 & L3=$!
sleep 4; RP=$(cat $D/redis.pid)
ticks(){ awk '{print $14+$15}' /proc/$1/stat; }
HZ=$(getconf CLK_TCK)
for c in 32; do for rep in 1 2 3; do for pair in "sluice-memory 18071 $S1 0" "limitador-memory 18081 $L1 0" "sluice-exact 18072 $S2 $RP" "limitador-redis 18082 $L2 $RP" "sluice-cached 18073 $S3 $RP" "limitador-redis_cached 18083 $L3 $RP"; do set -- $pair
  s0=$(ticks $3); r0=0; [ "$4" != 0 ] && r0=$(ticks $4)
  out=$($B load --target http://127.0.0.1:$2 --concurrency $c --duration 4 --domain bench --keys 10000 2>/dev/null)
  s1=$(ticks $3); r1=0; [ "$4" != 0 ] && r1=$(ticks $4)
  OUT="$out" python3 -c "
import json,os; r=json.loads(os.environ['OUT']); n=r['requests']
print('$1 c=$c rep=$rep', 'rps', round(r['rps']), 'errors', r['errors'], 'over', r['over_limit'], 'p50', r['p50_us'], 'p99', r['p99_us'], 'server_us', round(($s1-$s0)/$HZ*1e6/n,1), 'redis_us', round(($r1-$r0)/$HZ*1e6/n,1))"
done; done; done
kill $S1 $S2 $S3 $L1 $L2 $L3; redis-cli -p 16391 shutdown nosave >/dev/null 2>&1; rm -rf "$D"
