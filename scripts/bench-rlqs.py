#!/usr/bin/env python3
"""Server CPU per request an Envoy serves under RLQS, against a call per request (RLS), over real
gRPC: one Sluice server; in each round, first `sluice load --rate` drives Envoy's RLS at the same
requests per second the RLQS Envoys serve, then Envoys (stubs from Envoy's own protos, PyPI
xds-protos) report their buckets' usage on RateLimitQuotaService streams for as long. CPU is the
server's utime + stime from /proc over each run, less what the idle server spends in the same
time (its learning loop, forecasting); per request served is that ÷ the requests the reports
cover. Every usage's requests are observed one by one for the learning loop (at most 1,000 a
bucket a report), so RLQS is not free: it moves the cost from a call per request to an
observation per request.

Usage: scripts/bench-rlqs.py [--sluice target/release/sluice] [--rounds 3] [--seconds 10]
       [--envoys 4] [--buckets 50] [--report-every 0.1] [--per-report 10]
       [--server-cpus 0] [--client-cpus 1]
Needs grpcio and xds-protos (tests/python/requirements.txt). Prints a Markdown table and JSON.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def rlqs_run(address, args, seconds):
    """Envoys report their buckets every `report_every` s for `seconds`; requests covered."""
    import grpc
    from envoy.service.rate_limit_quota.v3 import rlqs_pb2, rlqs_pb2_grpc
    from google.protobuf import duration_pb2

    covered = [0] * args.envoys
    errors = []
    stop = time.time() + seconds

    def envoy(e):
        channel = grpc.insecure_channel(address)
        stub = rlqs_pb2_grpc.RateLimitQuotaServiceStub(channel)

        def reports():
            next_at = time.time()
            while time.time() < stop:
                yield rlqs_pb2.RateLimitQuotaUsageReports(
                    domain="bench",
                    bucket_quota_usages=[
                        rlqs_pb2.RateLimitQuotaUsageReports.BucketQuotaUsage(
                            bucket_id=rlqs_pb2.BucketId(bucket={"remote_address": f"10.{e}.{b // 250}.{b % 250}"}),
                            time_elapsed=duration_pb2.Duration(nanos=int(args.report_every * 1e9)),
                            num_requests_allowed=args.per_report,
                        )
                        for b in range(args.buckets)
                    ],
                )
                covered[e] += args.buckets * args.per_report
                next_at += args.report_every
                time.sleep(max(0.0, next_at - time.time()))

        try:
            for _ in stub.StreamRateLimitQuotas(reports()):
                pass
        except grpc.RpcError as err:
            errors.append(str(err))
        channel.close()

    threads = [threading.Thread(target=envoy, args=(e,)) for e in range(args.envoys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"an RLQS stream failed: {errors[0]}")
    return sum(covered)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sluice", default="target/release/sluice")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--envoys", type=int, default=4)
    p.add_argument("--buckets", type=int, default=50)
    p.add_argument("--report-every", type=float, default=0.1)
    p.add_argument("--per-report", type=int, default=10)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    args = p.parse_args()
    sluice = os.path.abspath(args.sluice)
    rate = args.envoys * args.buckets * args.per_report / args.report_every
    hz = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "rules.yaml"), "w") as f:
            f.write("domain: bench\ndescriptors:\n  - key: remote_address\n"
                    "    rate_limit: {unit: second, requests_per_unit: 1000000000}\n")
        port = free_port()
        server = subprocess.Popen(
            ["taskset", "-c", args.server_cpus, sluice, "serve", "--listen", f"127.0.0.1:{port}",
             "--database-url", f"sqlite:{tmp}/s.db", "--rules", "rules.yaml",
             "--admin-token-file", f"{tmp}/token"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(120):
                if subprocess.run([sluice, "health", "--server", url], capture_output=True).returncode == 0:
                    break
                time.sleep(0.5)
            else:
                raise SystemExit("the server never became SERVING")
            os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
            rows = []
            for round_ in range(1, args.rounds + 1):
                t0 = ticks(server.pid)
                time.sleep(args.seconds)
                idle = ticks(server.pid) - t0
                t0 = ticks(server.pid)
                load = json.loads(subprocess.run(
                    ["taskset", "-c", args.client_cpus, sluice, "load", "--target", url, "--domain", "bench",
                     "--rate", str(rate), "--duration", str(args.seconds), "--keys", "10000"],
                    capture_output=True, check=True, text=True).stdout)
                rls = ticks(server.pid) - t0
                t0 = ticks(server.pid)
                covered = rlqs_run(f"127.0.0.1:{port}", args, args.seconds)
                rlqs = ticks(server.pid) - t0
                rls_decisions = load["requests"] + load["warmup_requests"]
                rls_seconds = args.seconds + 1.0  # the load tool's warm-up second
                row = {
                    "round": round_,
                    "idle_cpu_s": idle / hz,
                    "rls_us_per_decision": (rls / hz - idle / hz * rls_seconds / args.seconds) * 1e6 / rls_decisions,
                    "rlqs_us_per_request": (rlqs / hz - idle / hz) * 1e6 / covered,
                    "rls_decisions": rls_decisions,
                    "rlqs_requests": covered,
                }
                row["ratio"] = row["rlqs_us_per_request"] / row["rls_us_per_decision"]
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            server.terminate()
            server.wait()
    med = lambda k: statistics.median(r[k] for r in rows)
    print(f"\n{args.envoys} Envoys × {args.buckets} buckets, a report every {args.report_every} s of "
          f"{args.per_report} requests a bucket: {rate:,.0f} requests/s served; RLS at the same rate")
    print("| | server CPU per request (idle subtracted) |\n| --- | --- |")
    print(f"| RLS, a call per request | {med('rls_us_per_decision'):.2f} µs |")
    print(f"| RLQS, usage reports | {med('rlqs_us_per_request') * 1000:.0f} ns |")
    print(f"| RLQS ÷ RLS | {med('ratio'):.3f} ({min(r['ratio'] for r in rows):.3f} – {max(r['ratio'] for r in rows):.3f}) |")


if __name__ == "__main__":
    main()
