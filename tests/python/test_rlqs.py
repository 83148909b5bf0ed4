"""Envoy's Rate Limit Quota Service over real gRPC streams, with clients that play Envoy's part
(stubs from Envoy's own protos, PyPI's xds-protos): assignments arrive within a second of the
first report; several Envoys on one bucket get shares that add up to at most the rule's quota
and follow shifts in demand; a blocked client's bucket is denied and restored; an uncovered
bucket is abandoned; streams close and reopen cleanly; bad and flooding reports end the stream
with the field or the cap named."""

import queue
import threading
import time

import grpc
import pytest

from conftest import TOKEN

ADMIN = (("authorization", f"Bearer {TOKEN}"),)
QUOTA = 100  # a minute, per client address
DOMAIN = "quota"


def put_rules(channel):
    from sluice.v1 import sluice_pb2 as pb, sluice_pb2_grpc

    stub = sluice_pb2_grpc.SluiceStub(channel)
    rule = pb.Rule(
        domain=DOMAIN,
        descriptors=[pb.DescriptorEntry(key="remote_address")],
        limits=[pb.Limit(requests_per_unit=QUOTA, unit=pb.UNIT_MINUTE, name="per-address")],
    )
    stub.UpdateRules(pb.UpdateRulesRequest(rules=[rule], actor="pytest"), metadata=ADMIN)
    return stub


class Envoy:
    """One Envoy's quota stream: reports go in through a queue, assignments come out."""

    def __init__(self, channel):
        from envoy.service.rate_limit_quota.v3 import rlqs_pb2_grpc

        self.outbox = queue.Queue()
        self.inbox = queue.Queue()
        self.assigned = {}
        self.error = None
        stub = rlqs_pb2_grpc.RateLimitQuotaServiceStub(channel)
        self.call = stub.StreamRateLimitQuotas(self._reports())
        threading.Thread(target=self._read, daemon=True).start()

    def _reports(self):
        while True:
            item = self.outbox.get()
            if item is None:
                return
            yield item

    def _read(self):
        try:
            for response in self.call:
                self.inbox.put(response)
        except grpc.RpcError as e:
            self.inbox.put(e)

    def report(self, usage, domain=DOMAIN, seconds=1):
        """usage: {client address: requests} for buckets {remote_address: address}."""
        from envoy.service.rate_limit_quota.v3 import rlqs_pb2
        from google.protobuf import duration_pb2

        self.outbox.put(
            rlqs_pb2.RateLimitQuotaUsageReports(
                domain=domain,
                bucket_quota_usages=[
                    rlqs_pb2.RateLimitQuotaUsageReports.BucketQuotaUsage(
                        bucket_id=rlqs_pb2.BucketId(bucket={"remote_address": ip}),
                        time_elapsed=duration_pb2.Duration(seconds=seconds),
                        num_requests_allowed=n,
                        num_requests_denied=0,
                    )
                    for ip, n in usage.items()
                ],
            )
        )

    def drain(self, timeout):
        """Reads what arrived within `timeout`; returns the stream's error if it ended."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                item = self.inbox.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if isinstance(item, grpc.RpcError):
                self.error = item
                return item
            for action in item.bucket_action:
                ip = dict(action.bucket_id.bucket).get("remote_address")
                self.assigned[ip] = action
        return None

    def until(self, ip, check, timeout=5.0):
        """Waits until the assignment of `ip`'s bucket satisfies `check`; returns it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.drain(0.1)
            action = self.assigned.get(ip)
            if action is not None and check(action):
                return action
        raise AssertionError(f"no assignment for {ip} satisfied the check: {self.assigned.get(ip)}")

    def close(self):
        self.outbox.put(None)


def quota(action):
    """The requests a minute an assignment gives, or None."""
    if not action.HasField("quota_assignment_action"):
        return None
    strategy = action.quota_assignment_action.rate_limit_strategy
    if not strategy.HasField("requests_per_time_unit"):
        return None
    return strategy.requests_per_time_unit.requests_per_time_unit


def denied(action):
    from envoy.type.v3 import ratelimit_strategy_pb2

    return (
        action.HasField("quota_assignment_action")
        and action.quota_assignment_action.rate_limit_strategy.blanket_rule
        == ratelimit_strategy_pb2.RateLimitStrategy.DENY_ALL
    )


def settle(envoys, ip, check, timeout=5.0):
    """Reads every Envoy's assignments until `check(shares)` holds and no assignment has changed
    for 1.5 s (two push intervals: nothing sent before is still in flight), then checks that
    what is given out adds up to at most the quota. While shares move, a shrink and a grow to
    two Envoys may be in flight at once; the server records every share it sends and never
    gives out more than the quota in all, which the core's tests hold at every step."""
    deadline = time.time() + timeout
    last, since = None, time.time()
    while time.time() < deadline:
        for e in envoys:
            e.drain(0.02)
        given = [quota(e.assigned[ip]) if ip in e.assigned else None for e in envoys]
        if given != last:
            last, since = given, time.time()
        if None not in given and check(given) and time.time() - since >= 1.5:
            assert sum(given) <= QUOTA, given
            return given
    raise AssertionError(f"shares never settled: {last}")


def test_assignments_arrive_fast_and_shares_add_up_to_the_quota(server):
    put_rules(server)
    ip = "198.51.100.7"
    envoys = [Envoy(server), Envoy(server)]
    started = time.time()
    for e in envoys:
        e.report({ip: 10})
    for e in envoys:
        e.until(ip, lambda a: quota(a) is not None, timeout=1.0)
    assert time.time() - started < 1.0, "assignments within a second of the first report"
    # The second Envoy's fair share comes as the first's shrinks (at most a second).
    settle(envoys, ip, lambda g: min(g) >= 40)
    # Five Envoys on the bucket: a fifth each, never more than the quota in all.
    envoys += [Envoy(server) for _ in range(3)]
    for e in envoys:
        e.report({ip: 10})
    settle(envoys, ip, lambda g: min(g) >= 15, timeout=8.0)
    # Demand shifts to the first Envoy: within a report interval (reports every 0.4 s here)
    # its share is the largest.
    for _ in range(3):
        envoys[0].report({ip: 200})
        for e in envoys[1:]:
            e.report({ip: 1})
        time.sleep(0.4)
    settle(envoys, ip, lambda g: g[0] > QUOTA // 2 and max(g[1:]) < QUOTA // 5, timeout=8.0)
    # One Envoy closes: the others share the quota without it.
    envoys[0].close()
    for e in envoys[1:]:
        e.report({ip: 10})
    settle(envoys[1:], ip, lambda g: min(g) >= 20, timeout=8.0)
    for e in envoys[1:]:
        e.close()


def test_a_blocked_clients_bucket_is_denied_then_restored(server):
    from sluice.v1 import sluice_pb2 as pb

    stub = put_rules(server)
    ip = "203.0.113.99"
    envoy = Envoy(server)
    envoy.report({ip: 5})
    envoy.until(ip, lambda a: quota(a) == QUOTA)
    stub.UpdateClientList(
        pb.UpdateClientListRequest(list=pb.CLIENT_LIST_DENY, client=ip, reason="pytest", actor="pytest"),
        metadata=ADMIN,
    )
    # Pushed without waiting for the next report.
    envoy.until(ip, denied, timeout=3.0)
    stub.RemoveFromClientList(
        pb.RemoveFromClientListRequest(list=pb.CLIENT_LIST_DENY, client=ip, actor="pytest"),
        metadata=ADMIN,
    )
    envoy.until(ip, lambda a: quota(a) == QUOTA, timeout=3.0)
    # GetStats says what the quota service did: a stream, its bucket, a share and a denial.
    stats = stub.GetStats(pb.GetStatsRequest(), metadata=ADMIN).quotas
    assert stats.streams == 1 and stats.buckets == 1 and stats.reports >= 1
    assert stats.requests_allowed >= 5
    assert stats.assignments["share"] >= 2 and stats.assignments["blocked"] >= 1
    envoy.close()


def test_an_uncovered_bucket_is_abandoned(server):
    put_rules(server)
    envoy = Envoy(server)
    envoy.report({"192.0.2.1": 3}, domain="no-such-domain")
    action = envoy.until("192.0.2.1", lambda a: a.HasField("abandon_action"), timeout=1.0)
    assert not action.HasField("quota_assignment_action")
    envoy.close()


def test_bad_reports_and_floods_end_the_stream_naming_why(server):
    from envoy.service.rate_limit_quota.v3 import rlqs_pb2

    put_rules(server)
    bad = Envoy(server)
    bad.outbox.put(
        rlqs_pb2.RateLimitQuotaUsageReports(
            domain=DOMAIN,
            bucket_quota_usages=[rlqs_pb2.RateLimitQuotaUsageReports.BucketQuotaUsage()],
        )
    )
    error = bad.drain(3.0)
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bucket_quota_usages[0].bucket_id" in error.details()

    # A flood of distinct buckets: refused at the cap, naming it; the server keeps serving.
    flood = Envoy(server)
    for start in range(0, 10_500, 500):
        flood.report({f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}": 1 for i in range(start, start + 500)})
    error = None
    deadline = time.time() + 30
    while error is None and time.time() < deadline:
        error = flood.drain(0.5)
    assert error is not None, "the flood's stream ended"
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many quota buckets" in error.details()
    # Its buckets were let go with it: a new Envoy is served.
    fresh = Envoy(server)
    fresh.report({"198.51.100.1": 1})
    fresh.until("198.51.100.1", lambda a: quota(a) == QUOTA, timeout=3.0)
    fresh.close()
