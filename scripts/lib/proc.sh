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
