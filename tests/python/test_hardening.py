"""Hardening against what an adversarial test broke (issue 15), over real sockets:
- a flood of idle connections past the process's file-descriptor limit neither spins the
  accept loop nor keeps legitimate clients out;
- a request that cannot be decoded (invalid UTF-8 in a string field) is INVALID_ARGUMENT naming
  the field, not INTERNAL."""

import os
import socket
import subprocess
import time

import grpc
import pytest

from conftest import ROOT, TOKEN, free_port, wait_serving

BIN = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture()
def small_server(stubs, tmp_path):
    """A server allowed 256 file descriptors, closing silent connections after one second."""
    port = free_port()
    env = dict(os.environ, SLUICE_ADMIN_TOKEN=TOKEN, RUST_LOG="error")
    proc = subprocess.Popen(
        ["prlimit", "--nofile=256:256", BIN, "serve", "--listen", f"127.0.0.1:{port}",
         "--database-url", f"sqlite:{tmp_path / 'sluice.db'}", "--first-byte-timeout-ms", "1000"],
        env=env, cwd=tmp_path,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        wait_serving(channel, timeout=60)
        yield proc, port, channel
    finally:
        channel.close()
        proc.terminate()
        assert proc.wait(timeout=15) == 0, "server exits cleanly on SIGTERM"


def health(port, timeout):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout).status


def test_idle_connection_flood_past_the_fd_limit(small_server):
    from grpc_health.v1 import health_pb2

    proc, port, _ = small_server
    flood = []
    try:
        # 400 connections that never say anything, against 256 descriptors.
        for _ in range(400):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            flood.append(s)
        time.sleep(0.5)
        before = cpu_seconds(proc.pid)
        time.sleep(3)
        used = cpu_seconds(proc.pid) - before
        assert used < 1.0, f"the server burnt {used:.2f} s of CPU in 3 s with idle connections"
        # A legitimate client is served while the attacker still holds its sockets open: the
        # silent ones are closed after a second, freeing descriptors.
        deadline = time.time() + 10
        status = None
        while time.time() < deadline:
            try:
                status = health(port, timeout=2)
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError as e:
                status = e.code()
            time.sleep(0.2)
        assert status == health_pb2.HealthCheckResponse.SERVING, f"legitimate client not served: {status}"
    finally:
        for s in flood:
            s.close()
    assert proc.poll() is None, "the server is still running"


def raw_call(channel, method, payload, metadata=()):
    call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return call(payload, timeout=10, metadata=metadata)


def string_field(number, raw):
    """A protobuf length-delimited field holding `raw` bytes."""
    assert len(raw) < 128
    return bytes([(number << 3) | 2, len(raw)]) + raw


@pytest.mark.parametrize("method,payload,field", [
    # RateLimitRequest.domain (1) with a byte that is not UTF-8.
    ("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", string_field(1, b"ed\xffge"), "domain"),
    # GetRuleRequest.id (1).
    ("/sluice.v1.Sluice/GetRule", string_field(1, b"\xc3\x28"), "id"),
    # ShouldAllowRequest.domain (3).
    ("/sluice.v1.Sluice/ShouldAllow", string_field(3, b"\x80abc"), "domain"),
])
def test_undecodable_requests_are_invalid_argument_naming_the_field(small_server, method, payload, field):
    _, _, channel = small_server
    with pytest.raises(grpc.RpcError) as e:
        raw_call(channel, method, payload, metadata=(("authorization", f"Bearer {TOKEN}"),))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    assert field in e.value.details(), e.value.details()


def test_an_alias_bomb_rules_file_is_refused_in_bounded_memory(tmp_path):
    """1.6 MB: a megabyte anchored once and aliased 20,000 times (it used to expand to 20 GB).
    `sluice rules check` under a 1.5 GB address-space limit refuses it, naming why."""
    text = ["domain: d", "descriptors:", "  - key: k", f'    value: &v "{"x" * (1 << 20)}"',
            "    rate_limit: {unit: second, requests_per_unit: 1}"]
    for i in range(20_000):
        text += [f"  - key: k{i}", "    value: *v", "    rate_limit: {unit: second, requests_per_unit: 1}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(text) + "\n")
    started = time.time()
    out = subprocess.run(["prlimit", "--as=1500000000", BIN, "rules", "check", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, (out.returncode, out.stderr[-500:])
    assert "a string of 1048576 bytes" in out.stderr, out.stderr[-500:]
    assert time.time() - started < 30
