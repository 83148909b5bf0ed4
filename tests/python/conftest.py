"""Fixtures: Python stubs generated from the repository's protos, and a real Sluice server."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "python-test-token"


@pytest.fixture(scope="session")
def stubs():
    """Generates Python modules for sluice.v1 and Envoy's RLS (with its imports) into a temp dir."""
    from grpc_tools import protoc

    out = Path(tempfile.mkdtemp(prefix="sluice-py-stubs-"))
    vendor = ROOT / "proto" / "vendor"
    protos = ["sluice/v1/sluice.proto"] + [
        str(p.relative_to(vendor)) for p in vendor.rglob("*.proto")
    ]
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{vendor}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    assert protoc.main(args) == 0, "protoc failed"
    sys.path.insert(0, str(out))
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(channel, timeout):
    """Waits until the server's health says SERVING: the rules database is connected and the
    rules are loaded. Until then rule changes are refused (UNAVAILABLE), so a test must not start."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError as e:
            status = e.code()
        time.sleep(0.05)
    raise TimeoutError(f"server not SERVING after {timeout} s (last: {status})")


@pytest.fixture()
def server(stubs, tmp_path):
    """A Sluice server on a free port with an embedded SQLite database."""
    binary = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))
    port = free_port()
    env = dict(os.environ, SLUICE_ADMIN_TOKEN=TOKEN, RUST_LOG="warn")
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", f"sqlite:{tmp_path / 'sluice.db'}"],
        env=env,
        cwd=tmp_path,
    )
    address = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        wait_serving(channel, timeout=60)
        yield channel
    finally:
        channel.close()
        proc.terminate()
        assert proc.wait(timeout=15) == 0, "server exits cleanly on SIGTERM"
