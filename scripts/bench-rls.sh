#!/usr/bin/env bash
# Sluice beside Kuadrant Limitador (in-memory storage) and a no-op RLS server that answers OK at
# once, in interleaved rounds, with the servers and the client on separate cores. One client
# (`sluice load`: Envoy's ShouldRateLimit, 100k keys, 32 requests in flight over 2 HTTP/2
# connections) drives each server in turn; a round runs every server once, and each round
# starts with a different one. Server CPU per decision is utime + stime of the whole process
# (/proc) over the run, warm-up included, divided by the decisions answered in it; each
# server's figure is divided by the no-op server's in the same round, so drift of the machine
# between rounds cancels. Prints the medians, the ratio's range across rounds, and (on stderr)
# every run as a JSON line.
#
#   scripts/bench-rls.sh                              # 5 rounds of 10 s
#   ROUNDS=3 SECONDS_PER_RUN=60 scripts/bench-rls.sh
#   SERVERS="noop sluice sluice-alt" SLUICE_ALT_ARGS="--background-nice 0" scripts/bench-rls.sh
#   SERVERS="noop limitador sluice sluice-alt" SLUICE_ALT_BIN=/tmp/sluice-before scripts/bench-rls.sh
#
# Settings (environment): ROUNDS (5), SECONDS_PER_RUN (10), KEYS (100000), CONCURRENCY (32),
# CONNECTIONS (2); RATE, requests per second offered to every server (`sluice load --rate`:
# paced, the same load for all; unset, a closed loop, where a server that answers faster is
# sent more and batches more per write); SERVER_CPUS (0) and CLIENT_CPUS (1), for taskset; SERVERS, the rows, from
# `noop limitador sluice sluice-lean sluice-alt` (noop is required: the ratios are to it);
# SLUICE_ARGS, more flags for the `sluice` row; SLUICE_ALT_ARGS, those of `sluice-alt` (the
# `sluice` row's set-up with other flags: an A/B of one setting); SLUICE_ALT_BIN, the binary of
# the `sluice-alt` row (default: this checkout's; another build makes it an A/B of two builds,
# e.g. before and after a change); LIMITADOR, an already built limitador-server (skips the build);
# LIMITADOR_REPO and LIMITADOR_COMMIT, its source (pinned: every run measures the same
# Limitador); KEEP=1 keeps the servers' logs.
#
# Limitador is built once into target/limitador (its own Cargo target; ~15 min on two cores, most
# of it RocksDB; needs clang, libclang-dev and protobuf-compiler, installed with apt-get when
# missing and running as root).
#
# Every `sluice` process here (servers and client) sees one CPU through taskset, so each runs
# tokio's current-thread scheduler (`serve --worker-threads`, docs/performance.md).
#
# Rows: `noop` is `sluice noop-server`; `limitador` is limitador-server with `memory` storage
# and one limit per remote_address; `sluice` is the default `sluice serve` (sharded buckets,
# observation, the learning loop, forecasting) plus `--http-listen`, so the Prometheus counters
# and the latency histogram are recorded; `sluice-lean` adds `--no-adaptive` (no learning
# loop). The limit (1,000,000 per second per address) never denies: every server does the same
# work.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
. "$ROOT/scripts/lib/proc.sh"
ROUNDS="${ROUNDS:-5}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
KEYS="${KEYS:-100000}"
CONCURRENCY="${CONCURRENCY:-32}"
CONNECTIONS="${CONNECTIONS:-2}"
RATE="${RATE:-}"
SERVER_CPUS="${SERVER_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"
SERVERS="${SERVERS:-noop limitador sluice}"
SLUICE_ARGS="${SLUICE_ARGS:-}"
SLUICE_ALT_ARGS="${SLUICE_ALT_ARGS:-}"
LIMITADOR_REPO="${LIMITADOR_REPO:-https://github.com/Kuadrant/limitador.git}"
LIMITADOR_COMMIT="${LIMITADOR_COMMIT:-2981b2bd389d42cf668519f9aa981a53541c4278}"

case " $SERVERS " in *" noop "*) ;; *) echo "SERVERS must include noop (the ratios are to it)" >&2; exit 2 ;; esac

build_limitador() {
  local src="$ROOT/target/limitador-src" bin="$ROOT/target/limitador/release/limitador-server"
  if [ -x "$bin" ] && [ "$(cat "$ROOT/target/limitador/COMMIT" 2>/dev/null)" = "$LIMITADOR_COMMIT" ]; then
    echo "$bin"; return
  fi
  local missing=()
  command -v clang >/dev/null || missing+=(clang)
  command -v protoc >/dev/null || missing+=(protobuf-compiler)
  [ -n "$(ls /usr/lib/llvm-*/lib/libclang.so* 2>/dev/null)" ] || missing+=(libclang-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (Limitador's build needs them)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
  fi
  if [ ! -d "$src/.git" ]; then
    rm -rf "$src"
    git clone -q --no-checkout "$LIMITADOR_REPO" "$src" >&2
    # A coverage file committed at the root is not needed to build (and mirrors may lack it).
    git -C "$src" sparse-checkout set --no-cone '/*' '!*.profraw' >&2
  fi
  git -C "$src" cat-file -e "$LIMITADOR_COMMIT^{commit}" 2>/dev/null || git -C "$src" fetch -q origin "$LIMITADOR_COMMIT" >&2
  git -C "$src" -c advice.detachedHead=false checkout -q -f "$LIMITADOR_COMMIT" >&2
  echo "building Limitador $LIMITADOR_COMMIT (once; several minutes)" >&2
  (cd "$src" && CARGO_TARGET_DIR="$ROOT/target/limitador" cargo build --release -q -p limitador-server >&2)
  echo "$LIMITADOR_COMMIT" > "$ROOT/target/limitador/COMMIT"
  echo "$bin"
}

cargo build --release --locked -q --bin sluice
B="$ROOT/target/release/sluice"
L=""
case " $SERVERS " in *" limitador "*) L="${LIMITADOR:-$(build_limitador)}" ;; esac
use_onnxruntime

bench_dir bench-rls
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

declare -A PORT PID
start() { # name port command...
  local name=$1 port=$2; shift 2
  taskset -c "$SERVER_CPUS" "$@" > "$D/$name.log" 2>&1 &
  PID[$name]=$!; PORT[$name]=$port; PIDS+=($!)
}
for s in $SERVERS; do
  case $s in
    noop) start noop 18170 "$B" noop-server --listen 127.0.0.1:18170 ;;
    limitador) start limitador 18171 "$L" -p 18171 -P 18191 limits.yaml memory ;;
    sluice) start sluice 18172 "$B" serve --listen 127.0.0.1:18172 --http-listen 127.0.0.1:18182 \
      --database-url "sqlite:$D/sluice.db" --rules rules.yaml --admin-token-file "$D/token" $SLUICE_ARGS ;;
    sluice-alt) start sluice-alt 18174 "${SLUICE_ALT_BIN:-$B}" serve --listen 127.0.0.1:18174 --http-listen 127.0.0.1:18184 \
      --database-url "sqlite:$D/alt.db" --rules rules.yaml --admin-token-file "$D/token-alt" \
      $SLUICE_ALT_ARGS ;;
    sluice-lean) start sluice-lean 18173 "$B" serve --listen 127.0.0.1:18173 \
      --database-url "sqlite:$D/lean.db" --rules rules.yaml --admin-token-file "$D/token-lean" \
      --no-adaptive ;;
    *) echo "unknown server $s" >&2; exit 2 ;;
  esac
done

# Ready: every server answers a ShouldRateLimit (the same call the benchmark makes).
for s in $SERVERS; do
  ok=""
  for _ in $(seq 1 60); do # each try takes over a second (the load tool's warm-up)
    if ! kill -0 "${PID[$s]}" 2>/dev/null; then echo "$s exited:" >&2; cat "$D/$s.log" >&2; exit 1; fi
    if "$B" load --target "http://127.0.0.1:${PORT[$s]}" --domain bench --concurrency 1 --connections 1 \
        --duration 0.1 --keys 1 2>/dev/null | python3 2>/dev/null -c '
import json, sys; r = json.load(sys.stdin); sys.exit(0 if r["requests"] > 0 and r["errors"] == 0 else 1)'; then
      ok=1; break
    fi
    sleep 0.2
  done
  [ -n "$ok" ] || { echo "$s never answered" >&2; cat "$D/$s.log" >&2; exit 1; }
done

HZ=$(getconf CLK_TCK)
read -r -a ORDER <<< "$SERVERS"
n=${#ORDER[@]}
echo "rounds $ROUNDS x ${SECONDS_PER_RUN}s; keys $KEYS; concurrency $CONCURRENCY over $CONNECTIONS connections; rate ${RATE:-closed loop}; servers on cpu $SERVER_CPUS, client on cpu $CLIENT_CPUS" >&2
PACE=()
[ -n "$RATE" ] && PACE=(--rate "$RATE")
for round in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    s=${ORDER[$(((i + round - 1) % n))]}
    t0=$(ticks "${PID[$s]}")
    out=$(taskset -c "$CLIENT_CPUS" "$B" load --target "http://127.0.0.1:${PORT[$s]}" --domain bench \
      --keys "$KEYS" --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" --duration "$SECONDS_PER_RUN" "${PACE[@]}")
    t1=$(ticks "${PID[$s]}")
    echo "{\"round\":$round,\"server\":\"$s\",\"cpu_ticks\":$((t1 - t0)),\"hz\":$HZ,\"load\":$(echo $out)}" | tee -a "$D/rounds.jsonl" >&2
  done
done

python3 - "$D/rounds.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    n = max(1, r["load"]["requests"] + r["load"]["warmup_requests"])  # the ticks span both
    r["cpu_us"] = r["cpu_ticks"] / r["hz"] * 1e6 / n
    by.setdefault(r["round"], {})[r["server"]] = r
servers = list(dict.fromkeys(r["server"] for r in rows))
print("| server | CPU µs per decision | CPU ÷ no-op (median; range) | requests/s | p50 µs | p99 µs | errors |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for s in servers:
    rs = [by[k][s] for k in sorted(by)]
    ratios = [by[k][s]["cpu_us"] / by[k]["noop"]["cpu_us"] for k in sorted(by)]
    med = lambda xs: statistics.median(xs)
    print(f"| {s} | {med([r['cpu_us'] for r in rs]):.2f} | {med(ratios):.2f} ({min(ratios):.2f} – {max(ratios):.2f}) "
          f"| {med([r['load']['rps'] for r in rs]):,.0f} | {med([r['load']['p50_us'] for r in rs]):.0f} "
          f"| {med([r['load']['p99_us'] for r in rs]):.0f} | {sum(r['load']['errors'] for r in rs)} |")
# Each Sluice row against Limitador within the same round: the pairing cancels the VM's drift.
if "limitador" in servers:
    for s in [s for s in servers if s.startswith("sluice")]:
        paired = [by[k][s]["cpu_us"] / by[k]["limitador"]["cpu_us"] for k in sorted(by)]
        print(f"\n{s} ÷ limitador, CPU per decision within each round: median {statistics.median(paired):.3f} "
              f"({min(paired):.3f} – {max(paired):.3f})")
        tail = [by[k][s]["load"]["p99_us"] / by[k]["limitador"]["load"]["p99_us"] for k in sorted(by)]
        print(f"{s} ÷ limitador, p99 within each round: median {statistics.median(tail):.3f} "
              f"({min(tail):.3f} – {max(tail):.3f}; at or below in {sum(t <= 1 for t in tail)} of {len(tail)})")
PY
