"""Any language can call Sluice: ShouldAllow and Envoy's ShouldRateLimit from Python's grpcio."""

import grpc
import pytest

from conftest import TOKEN

ADMIN = (("authorization", f"Bearer {TOKEN}"),)


def put_rules(channel):
    from sluice.v1 import sluice_pb2 as pb, sluice_pb2_grpc

    stub = sluice_pb2_grpc.SluiceStub(channel)
    rule = pb.Rule(
        domain="sluice",
        descriptors=[pb.DescriptorEntry(key="tier", value="STD"), pb.DescriptorEntry(key="user_id")],
        limits=[pb.Limit(requests_per_unit=2, unit=pb.UNIT_MINUTE, name="std-user")],
    )
    edge = pb.Rule(
        domain="edge",
        descriptors=[pb.DescriptorEntry(key="remote_address")],
        limits=[pb.Limit(requests_per_unit=1, unit=pb.UNIT_HOUR)],
    )
    reply = stub.UpdateRules(pb.UpdateRulesRequest(rules=[rule, edge], actor="pytest"), metadata=ADMIN)
    assert reply.revision >= 1
    return stub


def test_should_allow(server):
    from sluice.v1 import sluice_pb2 as pb

    stub = put_rules(server)
    subject = pb.Subject(user_id="py-user", tier=pb.TIER_STD, endpoint="/api/browse", client_ip="10.0.0.7")
    replies = [stub.ShouldAllow(pb.ShouldAllowRequest(subject=subject)) for _ in range(3)]
    assert [r.allowed for r in replies] == [True, True, False]
    assert replies[0].limit == 2 and replies[0].remaining == 1
    assert replies[0].rule_id == "sluice|tier=STD|user_id"
    assert replies[2].reason == pb.REASON_OVER_LIMIT
    headers = {h.name: h.value for h in replies[2].headers}
    assert headers["ratelimit-policy"] == '"std-user";q=2;w=60'
    assert int(headers["retry-after"]) >= 1


def test_a_period_of_several_units(server):
    """"3 per 30 seconds": the fourth call is denied, the policy header says the 30-s window,
    and the rule reads back with its multiplier."""
    from sluice.v1 import sluice_pb2 as pb, sluice_pb2_grpc

    stub = sluice_pb2_grpc.SluiceStub(server)
    rule = pb.Rule(
        domain="sluice",
        descriptors=[pb.DescriptorEntry(key="user_id")],
        limits=[pb.Limit(requests_per_unit=3, unit=pb.UNIT_SECOND, unit_multiplier=30, name="per-30s")],
    )
    stub.UpdateRules(pb.UpdateRulesRequest(rules=[rule], actor="pytest"), metadata=ADMIN)
    subject = pb.Subject(user_id="py-30s", tier=pb.TIER_STD, endpoint="/x", client_ip="10.0.0.9")
    replies = [stub.ShouldAllow(pb.ShouldAllowRequest(subject=subject)) for _ in range(4)]
    assert [r.allowed for r in replies] == [True, True, True, False]
    headers = {h.name: h.value for h in replies[3].headers}
    assert headers["ratelimit-policy"] == '"per-30s";q=3;w=30'
    listed = stub.ListRules(pb.ListRulesRequest(domain="sluice")).rules
    assert [l.unit_multiplier for r in listed for l in r.limits] == [30]


def test_gcra_spaces_calls(server):
    """GCRA over gRPC: 1 a second with a burst of 2 admits two at once, then waits; the rule
    reads back with its algorithm and burst."""
    from sluice.v1 import sluice_pb2 as pb, sluice_pb2_grpc

    stub = sluice_pb2_grpc.SluiceStub(server)
    rule = pb.Rule(
        domain="sluice",
        descriptors=[pb.DescriptorEntry(key="user_id", value="py-gcra")],
        limits=[pb.Limit(requests_per_unit=1, unit=pb.UNIT_SECOND, algorithm=pb.ALGORITHM_GCRA, burst=2)],
    )
    stub.UpdateRules(pb.UpdateRulesRequest(rules=[rule], actor="pytest"), metadata=ADMIN)
    subject = pb.Subject(user_id="py-gcra", tier=pb.TIER_STD, endpoint="/x", client_ip="10.0.0.8")
    replies = [stub.ShouldAllow(pb.ShouldAllowRequest(subject=subject)) for _ in range(3)]
    assert [r.allowed for r in replies] == [True, True, False]
    listed = stub.ListRules(pb.ListRulesRequest(domain="sluice")).rules
    mine = [r for r in listed if [d.value for d in r.descriptors] == ["py-gcra"]]
    assert [(l.algorithm, l.burst) for r in mine for l in r.limits] == [(pb.ALGORITHM_GCRA, 2)]


def test_should_rate_limit(server):
    from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
    from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2

    put_rules(server)
    rls = rls_pb2_grpc.RateLimitServiceStub(server)
    descriptor = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key="remote_address", value="192.0.2.1")]
    )
    request = rls_pb2.RateLimitRequest(domain="edge", descriptors=[descriptor])
    first = rls.ShouldRateLimit(request)
    second = rls.ShouldRateLimit(request)
    assert first.overall_code == rls_pb2.RateLimitResponse.OK
    assert second.overall_code == rls_pb2.RateLimitResponse.OVER_LIMIT
    assert first.statuses[0].current_limit.requests_per_unit == 1
    assert first.statuses[0].current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.HOUR


def test_bad_input_and_auth(server):
    from sluice.v1 import sluice_pb2 as pb, sluice_pb2_grpc

    stub = sluice_pb2_grpc.SluiceStub(server)
    with pytest.raises(grpc.RpcError) as bad:
        stub.ShouldAllow(pb.ShouldAllowRequest(subject=pb.Subject(tier=7)))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad.value.details().startswith("subject.tier")
    with pytest.raises(grpc.RpcError) as unauth:
        stub.UpdateRules(pb.UpdateRulesRequest())
    assert unauth.value.code() == grpc.StatusCode.UNAUTHENTICATED
