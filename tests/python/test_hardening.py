"""Hardening against what adversarial tests broke (issues 15 and 29), over real sockets:
- a flood of idle connections past the process's file-descriptor limit neither spins the
  accept loop nor keeps legitimate clients out;
- a connection that sends a byte, the HTTP/2 preface or pings, and never a request, is closed;
- slow HTTP clients dripping header lines neither hold the admin port nor starve the decision
  port of descriptors;
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
    """A server allowed 256 file descriptors, closing connections without a request after one
    second; its HTTP admin listener is on `small_server.http_port`."""
    port, http_port = free_port(), free_port()
    env = dict(os.environ, SLUICE_ADMIN_TOKEN=TOKEN, RUST_LOG="error")
    proc = subprocess.Popen(
        ["prlimit", "--nofile=256:256", BIN, "serve", "--listen", f"127.0.0.1:{port}",
         "--http-listen", f"127.0.0.1:{http_port}",
         "--database-url", f"sqlite:{tmp_path / 'sluice.db'}", "--first-byte-timeout-ms", "1000"],
        env=env, cwd=tmp_path,
    )
    proc.http_port = http_port
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


def open_connections(port, n):
    """`n` non-blocking connections to `port` (the kernel's backlog holds those not accepted)."""
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sockets.append(s)
    return sockets


def served_within(port, seconds):
    """The health a new client gets within `seconds` (SERVING as soon as it is served)."""
    from grpc_health.v1 import health_pb2

    deadline = time.time() + seconds
    status = None
    while time.time() < deadline:
        try:
            status = health(port, timeout=2)
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
        except grpc.RpcError as e:
            status = e.code()
        time.sleep(0.2)
    return status


def test_idle_connection_flood_past_the_fd_limit(small_server):
    from grpc_health.v1 import health_pb2

    proc, port, _ = small_server
    # 400 connections that never say anything, against 256 descriptors.
    flood = open_connections(port, 400)
    try:
        time.sleep(0.5)
        before = cpu_seconds(proc.pid)
        time.sleep(3)
        used = cpu_seconds(proc.pid) - before
        assert used < 1.0, f"the server burnt {used:.2f} s of CPU in 3 s with idle connections"
        # A legitimate client is served while the attacker still holds its sockets open: the
        # silent ones are closed after a second, freeing descriptors.
        status = served_within(port, 10)
        assert status == health_pb2.HealthCheckResponse.SERVING, f"legitimate client not served: {status}"
    finally:
        for s in flood:
            s.close()
    assert proc.poll() is None, "the server is still running"


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
PING = bytes([0, 0, 8, 6, 0, 0, 0, 0, 0]) + b"12345678"


def closed_within(sock, seconds, keep_sending=None):
    """Whether the server closes `sock` within `seconds` (reading and dropping what it sends;
    `keep_sending` bytes are sent every 0.3 s meanwhile)."""
    sock.settimeout(0.3)
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if keep_sending:
                sock.sendall(keep_sending)
            if sock.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


@pytest.mark.parametrize("opening,keep_sending", [
    (b"P", None),
    (PREFACE, None),
    (PREFACE + EMPTY_SETTINGS, PING),
], ids=["one byte", "the preface", "the preface then pings"])
def test_a_connection_without_a_request_is_closed(small_server, opening, keep_sending):
    _, port, _ = small_server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(opening)
        assert closed_within(s, 5, keep_sending), "the server kept a connection without a request"


def test_a_preface_flood_past_the_fd_limit_keeps_no_client_out(small_server):
    """400 connections that send the HTTP/2 preface and nothing more, against 256 descriptors."""
    from grpc_health.v1 import health_pb2

    proc, port, _ = small_server
    flood = open_connections(port, 400)
    try:
        time.sleep(0.3)
        for s in flood:
            try:
                s.send(PREFACE)
            except OSError:
                pass
        status = served_within(port, 15)
        assert status == health_pb2.HealthCheckResponse.SERVING, f"legitimate client not served: {status}"
    finally:
        for s in flood:
            s.close()
    assert proc.poll() is None


def http_get(port, path, timeout):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return data


def test_slow_http_clients_hold_neither_port(small_server):
    """300 connections to the admin port, each sending a request line and then one header line
    every half second (never the blank line that ends the head), against 256 descriptors: the
    decision port serves at once, each dripping connection is closed after a second, and the
    admin port serves a new client."""
    from grpc_health.v1 import health_pb2

    proc, port, _ = small_server
    drips = open_connections(proc.http_port, 300)
    try:
        time.sleep(0.3)
        started = time.time()
        while time.time() - started < 3:
            for i, s in enumerate(drips):
                try:
                    s.send(b"GET /metrics HTTP/1.1\r\n" if started + 0.1 > time.time() else f"X-Drip-{i}: 1\r\n".encode())
                except OSError:
                    pass
            # The decision port is not starved of descriptors by the admin port's clients.
            assert health(port, timeout=2) == health_pb2.HealthCheckResponse.SERVING
            time.sleep(0.5)
        # Dripping connections are closed: a new admin client is served.
        deadline = time.time() + 20
        reply = b""
        while time.time() < deadline and not reply.startswith(b"HTTP/1.1 200"):
            try:
                reply = http_get(proc.http_port, "/healthz", timeout=5)
            except OSError:
                time.sleep(0.2)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    finally:
        for s in drips:
            s.close()
    assert proc.poll() is None


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
