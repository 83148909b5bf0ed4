"""A fuzz harness that stays: seeded protobuf garbage for every RPC of every service Sluice
serves (random bytes, random well-formed messages with extreme values, and those mutated:
flipped bytes, truncation, invalid UTF-8), and random rules files (alias and nesting bombs,
huge strings) through `sluice rules check`. Nothing may crash, hang, or answer INTERNAL/UNKNOWN.

Brief in CI; longer on demand, reproducible from the seed it prints:
    SLUICE_FUZZ_CASES=100000 SLUICE_FUZZ_SEED=42 target/pyenv/bin/python -m pytest -s tests/python/test_fuzz.py
"""

import collections
import os
import random
import subprocess
import time

import grpc
import pytest

from conftest import ROOT, TOKEN

BIN = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))
CASES = int(os.environ.get("SLUICE_FUZZ_CASES", "1500"))
SEED = int(os.environ.get("SLUICE_FUZZ_SEED", str(int(time.time()) % 1_000_000)))
RULES_FILE_CASES = int(os.environ.get("SLUICE_FUZZ_RULES_FILES", str(max(20, CASES // 50))))

# Answers a caller's garbage may get; anything else (INTERNAL, UNKNOWN, a deadline) is a bug.
ACCEPTED = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED,
    # A message over the 4 MB limit (the transport's documented cap).
    grpc.StatusCode.OUT_OF_RANGE,
}


def methods():
    """(path, input message class, client-streaming) for every method served."""
    from google.protobuf import message_factory
    from sluice.v1 import sluice_pb2
    from envoy.service.ratelimit.v3 import rls_pb2
    from envoy.service.accesslog.v3 import als_pb2
    from envoy.service.rate_limit_quota.v3 import rlqs_pb2

    out = []
    for file in (sluice_pb2, rls_pb2, als_pb2, rlqs_pb2):
        for service in file.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                cls = message_factory.GetMessageClass(m.input_type)
                streaming = ("bidi" if m.server_streaming else "client") if m.client_streaming else None
                out.append((f"/{service.full_name}/{m.name}", cls, streaming))
    return out


STRINGS = ["", "a", "sluice", "STD", "PRM", "/api/login", "10.0.0.1", "::1", "d|k=v", "*", "é",
           "\u0000", "\ufffd", "💥"]


def random_string(rng):
    r = rng.random()
    if r < 0.5:
        return rng.choice(STRINGS)
    if r < 0.8:
        return "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(0, 40)))
    return rng.choice("xyz") * rng.choice([129, 1025, 5000, 20_000])


def random_int(rng, signed):
    extremes = [0, 1, 2, 7, 1000, 2**31 - 1, 2**32 - 1, 2**63 - 1]
    if signed:
        extremes += [-1, -(2**31), -(2**63)]
    else:
        extremes += [2**64 - 1]
    return rng.choice(extremes) if rng.random() < 0.6 else rng.randrange(0, 100)


def fill(msg, rng, depth=0):
    from google.protobuf.descriptor import FieldDescriptor as F

    for field in msg.DESCRIPTOR.fields:
        if rng.random() < 0.3:
            continue
        repeated = field.is_repeated
        count = rng.choice([0, 1, 2, 5, 40, 300]) if repeated else 1
        for _ in range(count):
            if field.type == F.TYPE_MESSAGE:
                if depth > 3 or field.message_type.GetOptions().map_entry:
                    continue
                child = getattr(msg, field.name).add() if repeated else getattr(msg, field.name)
                if field.message_type.full_name in ("google.protobuf.Any", "google.protobuf.Struct",
                                                     "google.protobuf.Value"):
                    continue
                fill(child, rng, depth + 1)
                continue
            if field.type == F.TYPE_STRING:
                value = random_string(rng)
            elif field.type == F.TYPE_BYTES:
                value = rng.randbytes(rng.randrange(0, 64))
            elif field.type == F.TYPE_BOOL:
                value = rng.random() < 0.5
            elif field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
                value = rng.choice([0.0, -1.0, 0.5, 1.0, 1e308, float("nan"), float("inf")])
            elif field.type == F.TYPE_ENUM:
                value = rng.choice([v.number for v in field.enum_type.values] + [99])
            else:
                signed = field.type in (F.TYPE_INT32, F.TYPE_INT64, F.TYPE_SINT32, F.TYPE_SINT64,
                                        F.TYPE_SFIXED32, F.TYPE_SFIXED64)
                value = random_int(rng, signed)
                if field.type in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
                    value = max(-(2**31), min(2**31 - 1, value))
                if field.type in (F.TYPE_UINT32, F.TYPE_FIXED32):
                    value = min(2**32 - 1, abs(value))
                if field.type in (F.TYPE_UINT64, F.TYPE_FIXED64):
                    value = abs(value)
            try:
                if repeated:
                    getattr(msg, field.name).append(value)
                else:
                    setattr(msg, field.name, value)
            except (ValueError, TypeError):
                pass


def payload(cls, rng):
    kind = rng.random()
    if kind < 0.2:
        return rng.randbytes(rng.randrange(0, 2000)), "bytes"
    msg = cls()
    fill(msg, rng)
    data = bytearray(msg.SerializeToString())
    if kind < 0.6 or not data:
        return bytes(data), "message"
    for _ in range(rng.randrange(1, 6)):
        op = rng.random()
        if op < 0.4:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op < 0.7:
            data = data[: rng.randrange(len(data) + 1)] or bytearray(b"\x0a")
        else:
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.choice([b"\xff", b"\xc3\x28", b"\x80", b"\xed\xa0\x80"])
    return bytes(data), "mutated"


def test_random_messages_for_every_rpc(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    rng = random.Random(SEED)
    channel = server
    table = methods()
    assert len(table) >= 20, [m[0] for m in table]
    seen = collections.Counter()
    bad = []
    started = time.time()
    for case in range(CASES):
        path, cls, streaming = rng.choice(table)
        data, kind = payload(cls, rng)
        metadata = (("authorization", f"Bearer {TOKEN}"),) if rng.random() < 0.7 else ()
        try:
            if streaming == "bidi":
                # Envoy's quota stream: two reports, then the half-close ends it.
                call = channel.stream_stream(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
                list(call(iter([data, payload(cls, rng)[0]]), timeout=10, metadata=metadata))
            elif streaming:
                call = channel.stream_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
                call(iter([data, payload(cls, rng)[0]]), timeout=10, metadata=metadata)
            else:
                call = channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
                call(data, timeout=10, metadata=metadata)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
            if code not in ACCEPTED:
                bad.append((case, path, kind, code, (e.details() or "")[:200]))
        seen[(code.name if hasattr(code, "name") else str(code))] += 1
    print(f"\nfuzz: {CASES} cases over {len(table)} RPCs, seed {SEED}, {time.time() - started:.1f} s; "
          f"answers {dict(seen)}")
    assert not bad, f"seed {SEED}: {len(bad)} bad answers, first: {bad[:5]}"
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def random_rules_file(rng):
    parts = ["domain: d", "descriptors:"]
    shape = rng.random()
    if shape < 0.25:  # an alias bomb of strings
        parts += ["  - key: k", f'    value: &v "{"x" * rng.choice([10, 60_000, 1 << 20])}"',
                  "    rate_limit: {unit: second, requests_per_unit: 1}"]
        for i in range(rng.choice([10, 2_000, 20_000])):
            parts += [f"  - key: k{i}", "    value: *v", "    rate_limit: {unit: second, requests_per_unit: 1}"]
    elif shape < 0.45:  # an alias bomb of lists (billion laughs)
        parts += ["  - key: a", "    descriptors: &l0"]
        parts += [f"      - {{key: k{i}, rate_limit: {{unit: second, requests_per_unit: 1}}}}" for i in range(10)]
        for level in range(1, rng.choice([3, 6, 9])):
            parts += [f"  - key: b{level}", f"    descriptors: &l{level}"]
            parts += [f"      - {{key: c{level}{j}, descriptors: *l{level - 1}}}" for j in range(10)]
    elif shape < 0.6:  # nesting
        depth = rng.choice([10, 200, 5_000])
        parts += ["  - " + "{key: k, descriptors: [" * depth + "]}" * depth]
    else:  # fragments
        fragments = ["  - key: k", "    value: v", "    rate_limit: {unit: second, requests_per_unit: 5}",
                     "    rate_limit: {unit: fortnight}", "  - key: tier", "    value: GOLD", "    descriptors:",
                     "      - key: user_id", "        rate_limit: {unit: minute, requests_per_unit: 0}",
                     "---", "domain: d", "  - &a {key: x}", "  - *a", "  - *nope", "\t", ": :", "[", "{",
                     "    replaces: [{name: " + "r" * 5000 + "}]", "    capacity: -1", "    priority: urgent"]
        parts += [rng.choice(fragments) for _ in range(rng.randrange(1, 40))]
    return "\n".join(parts) + "\n"


def test_random_rules_files_are_checked_or_refused_in_bounded_time_and_memory(tmp_path):
    rng = random.Random(SEED + 1)
    outcomes = collections.Counter()
    started = time.time()
    for case in range(RULES_FILE_CASES):
        path = tmp_path / f"case-{case}.yaml"
        path.write_text(random_rules_file(rng))
        out = subprocess.run(["prlimit", "--as=2000000000", BIN, "rules", "check", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode in (0, 1), \
            f"seed {SEED} case {case}: exit {out.returncode} ({path.stat().st_size} bytes)\n{out.stderr[-800:]}"
        if out.returncode == 1:
            assert out.stderr.strip(), f"seed {SEED} case {case}: refused without a reason"
        outcomes["valid" if out.returncode == 0 else "refused"] += 1
    print(f"\nrules-file fuzz: {RULES_FILE_CASES} files, seed {SEED + 1}, {time.time() - started:.1f} s; {dict(outcomes)}")
