# Shell helpers the benchmark scripts share (sourced, not run).
# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# A /proc/PID/status field in kB: `kb VmRSS PID`.
kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }
# CPU ticks (utime + stime) a process has used so far: `ticks PID` (getconf CLK_TCK a second).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# ONNX Runtime's library for the LSTM (fetched once into a cache), unless ORT_DYLIB_PATH names one.
use_onnxruntime() {
  if [ -z "${ORT_DYLIB_PATH:-}" ] && ORT="$(./scripts/fetch-onnxruntime.sh 2>/dev/null)"; then
    export ORT_DYLIB_PATH="$ORT"
  fi
}
# A scratch directory for a benchmark, in D, entered; on exit the processes listed in PIDS are
# stopped and D is removed (KEEP=1 keeps it). `bench_dir NAME`.
bench_dir() {
  D="$(mktemp -d "/tmp/sluice-$1.XXXXXX")"
  PIDS=()
  trap bench_cleanup EXIT
  cd "$D"
}
bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "kept $D" >&2; else rm -rf "$D"; fi
}
