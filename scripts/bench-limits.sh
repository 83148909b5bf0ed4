#!/usr/bin/env bash
# What the limits' newer calls cost beside a plain decision, measured the way bench-rls.sh
# measures RLS: server CPU per operation (utime + stime of the whole process, /proc) over a
# closed-loop `sluice load` run, in interleaved rounds. Operations: `allow` (one ShouldAllow),
# `lease` (AcquireLease + ReleaseLease), `reserve` (Reserve + CommitReservation). Two servers:
# `memory` (one replica, every table in process) and `redis` (`--counters` on a local
# redis-server, started here: leases, reservation records and buckets on Redis; Redis's own CPU
# is added to the server's and shown apart). Each operation is divided by `allow` on the same
# server in the same round, so the VM's drift cancels. Prints the medians and (on stderr) every
# run as a JSON line.
#
#   scripts/bench-limits.sh                       # 3 rounds of 10 s
#   ROUNDS=5 SECONDS_PER_RUN=20 scripts/bench-limits.sh
#
# Settings (environment): ROUNDS (3), SECONDS_PER_RUN (10), KEYS (10000), CONCURRENCY (32),
# CONNECTIONS (2), SERVER_CPUS (0: the servers and Redis) and CLIENT_CPUS (1), for taskset;
# REDIS_SERVER (redis-server on PATH, else /usr/bin/redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
. "$ROOT/scripts/lib/proc.sh"
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
KEYS="${KEYS:-10000}"
CONCURRENCY="${CONCURRENCY:-32}"
CONNECTIONS="${CONNECTIONS:-2}"
SERVER_CPUS="${SERVER_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"
REDIS_SERVER="${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}"
[ -x "$REDIS_SERVER" ] || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 2; }

cargo build --release --locked -q --bin sluice
B="$ROOT/target/release/sluice"
use_onnxruntime

bench_dir bench-limits
# Never denies: every operation does the same work throughout. `tokens` is what Reserve charges.
cat > rules.yaml <<'R'
domain: bench
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 1000000000, name: requests}
    limits:
      - {unit: second, requests_per_unit: 1000000000, name: tokens}
R

taskset -c "$SERVER_CPUS" "$REDIS_SERVER" --port 18190 --save '' --appendonly no > redis.log 2>&1 &
REDIS=$!; PIDS+=($!)
declare -A PORT PID
start() { # name port flags...
  local name=$1 port=$2; shift 2
  taskset -c "$SERVER_CPUS" "$B" serve --listen "127.0.0.1:$port" --database-url "sqlite:$D/$name.db" \
    --rules rules.yaml --admin-token-file "$D/token-$name" "$@" > "$D/$name.log" 2>&1 &
  PID[$name]=$!; PORT[$name]=$port; PIDS+=($!)
}
start memory 18175
for _ in $(seq 1 50); do
  "$(dirname "$REDIS_SERVER")/redis-cli" -p 18190 ping >/dev/null 2>&1 && break; sleep 0.1
done
start redis 18176 --counters redis://127.0.0.1:18190

for s in memory redis; do
  ok=""
  for _ in $(seq 1 60); do
    if ! kill -0 "${PID[$s]}" 2>/dev/null; then echo "$s exited:" >&2; cat "$D/$s.log" >&2; exit 1; fi
    if "$B" health --server "http://127.0.0.1:${PORT[$s]}" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
  done
  [ -n "$ok" ] || { echo "$s never SERVING" >&2; cat "$D/$s.log" >&2; exit 1; }
done

HZ=$(getconf CLK_TCK)
echo "rounds $ROUNDS x ${SECONDS_PER_RUN}s; keys $KEYS; concurrency $CONCURRENCY over $CONNECTIONS connections; servers and Redis on cpu $SERVER_CPUS, client on cpu $CLIENT_CPUS" >&2
RUNS=(memory:allow memory:lease memory:reserve redis:allow redis:lease redis:reserve)
n=${#RUNS[@]}
for round in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    run=${RUNS[$(((i + round - 1) % n))]}
    s=${run%%:*} api=${run##*:}
    t0=$(ticks "${PID[$s]}"); r0=$(ticks "$REDIS")
    out=$(taskset -c "$CLIENT_CPUS" "$B" load --target "http://127.0.0.1:${PORT[$s]}" --api "$api" --domain bench \
      --keys "$KEYS" --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" --duration "$SECONDS_PER_RUN")
    t1=$(ticks "${PID[$s]}"); r1=$(ticks "$REDIS")
    echo "{\"round\":$round,\"server\":\"$s\",\"api\":\"$api\",\"cpu_ticks\":$((t1 - t0)),\"redis_ticks\":$((r1 - r0)),\"hz\":$HZ,\"load\":$(echo $out)}" | tee -a "$D/rounds.jsonl" >&2
  done
done

python3 - "$D/rounds.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    n = max(1, r["load"]["requests"] + r["load"]["warmup_requests"])  # the ticks span both
    r["cpu_us"] = r["cpu_ticks"] / r["hz"] * 1e6 / n
    r["redis_us"] = r["redis_ticks"] / r["hz"] * 1e6 / n
    by.setdefault(r["round"], {})[(r["server"], r["api"])] = r
med = statistics.median
print("| server | operation | server CPU µs per op | Redis CPU µs per op | (server + Redis) ÷ allow on that server (median; range) | ops/s | p50 µs | p99 µs | errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for s in ("memory", "redis"):
    for api in ("allow", "lease", "reserve"):
        rs = [by[k][(s, api)] for k in sorted(by)]
        total = lambda r: r["cpu_us"] + r["redis_us"]
        ratios = [total(by[k][(s, api)]) / total(by[k][(s, "allow")]) for k in sorted(by)]
        print(f"| {s} | {api} | {med([r['cpu_us'] for r in rs]):.2f} | {med([r['redis_us'] for r in rs]):.2f} "
              f"| {med(ratios):.2f} ({min(ratios):.2f} – {max(ratios):.2f}) | {med([r['load']['rps'] for r in rs]):,.0f} "
              f"| {med([r['load']['p50_us'] for r in rs]):.0f} | {med([r['load']['p99_us'] for r in rs]):.0f} "
              f"| {sum(r['load']['errors'] for r in rs)} |")
PY
