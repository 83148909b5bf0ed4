# Shell helpers the benchmark scripts share (sourced, not run).
# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# A /proc/PID/status field in kB: `kb VmRSS PID`.
kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }
