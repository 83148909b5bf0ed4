#!/usr/bin/env python3
"""Server CPU time per Envoy RLS decision: Sluice against a no-op tonic server.

Both servers are measured with the same closed-loop client (`sluice load`) in the same run,
alternating, server pinned to one core and client to the other. CPU time comes from
/proc/PID/stat (user + system) over the measured window. Prints medians and the ratio.

Usage: scripts/bench-grpc.py [--rounds 3] [--seconds 10] [--store moka|sharded] [--concurrency 32]
Needs a release build: cargo build --release --bin sluice
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "target" / "release" / "sluice"
TICK = os.sysconf("SC_CLK_TCK")

RULES = """domain: sluice
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 1000}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def measure(server_cmd, port, args, tmp):
    server = subprocess.Popen(["taskset", "-c", "0", *server_cmd], cwd=tmp,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, RUST_LOG="warn"))
    try:
        wait_port(port)
        time.sleep(1.0)  # rules loaded, caches warm
        load = subprocess.Popen(
            ["taskset", "-c", "1", str(BIN), "load", "--target", f"http://127.0.0.1:{port}",
             "--api", "rls", "--concurrency", str(args.concurrency), "--connections", "4",
             "--duration", str(args.seconds), "--keys", "10000"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)  # the client's warm-up second
        start = cpu_seconds(server.pid)
        out, _ = load.communicate()
        # The client measures exactly `seconds` after its warm-up; read CPU right away.
        cpu = cpu_seconds(server.pid) - start
        report = json.loads(out)
        return cpu / report["requests"] * 1e6, report
    finally:
        server.terminate()
        server.wait(timeout=15)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--store", default="moka")
    args = p.parse_args()
    if not BIN.exists():
        raise SystemExit("build first: cargo build --release --bin sluice")
    results = {"sluice": [], "noop": []}
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "rules.yaml").write_text(RULES)
        for r in range(args.rounds):
            port = free_port()
            sluice = [str(BIN), "serve", "--listen", f"127.0.0.1:{port}", "--rules", "rules.yaml",
                      "--database-url", f"sqlite:{tmp}/bench-{r}.db", "--bucket-store", args.store]
            us, rep = measure(sluice, port, args, tmp)
            results["sluice"].append((us, rep))
            port = free_port()
            us, rep = measure([str(BIN), "noop-server", "--listen", f"127.0.0.1:{port}"], port, args, tmp)
            results["noop"].append((us, rep))
            print(f"round {r + 1}: sluice {results['sluice'][-1][0]:.2f} µs CPU/request "
                  f"({results['sluice'][-1][1]['rps']:.0f} rps), noop {us:.2f} µs ({rep['rps']:.0f} rps)")
    med = {k: statistics.median(u for u, _ in v) for k, v in results.items()}
    rps = {k: statistics.median(r["rps"] for _, r in v) for k, v in results.items()}
    print(json.dumps({
        "server_cpu_us_per_request": med,
        "ratio_sluice_over_noop": med["sluice"] / med["noop"],
        "median_rps": rps,
        "rounds": args.rounds, "seconds": args.seconds, "concurrency": args.concurrency,
        "store": args.store,
    }, indent=2))


if __name__ == "__main__":
    main()
