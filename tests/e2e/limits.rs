//! Concurrency leases, reserve and commit, and an admin's reset of one key, over real gRPC
//! against `sluice serve` processes: one server deciding alone, and replicas sharing Redis
//! (where any replica sees every holder and settles any reservation).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use sluice::proto::sluice::v1 as pb;
use sluice::proto::sluice::v1::sluice_client::SluiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::fleet_harness::*;
use crate::harness::{admin, fresh_pg_database};

/// Reservations charge an LLM user's three limits (an hour each: refill is negligible while a
/// test runs); `key` is reset by descriptor.
const RULES: &str = "domain: limits
descriptors:
  - key: user_id
    rate_limit: {unit: hour, requests_per_unit: 10, name: requests}
    limits:
      - {unit: hour, requests_per_unit: 1000, name: input_tokens}
      - {unit: hour, requests_per_unit: 500, name: output_tokens}
  - key: key
    rate_limit: {unit: hour, requests_per_unit: 2}
";

async fn pg() -> String {
    let base = std::env::var("SLUICE_TEST_PG_URL")
        .expect("these tests need SLUICE_TEST_PG_URL: run ./scripts/test.sh");
    fresh_pg_database(&base).await
}

/// `n` replicas on one fresh database with these rules, sharing `counters` when given.
async fn replicas(n: usize, counters: Option<&str>) -> (tempfile::TempDir, Vec<Replica>) {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(dir.path(), RULES);
    let db = pg().await;
    let mut args = vec!["--counters-budget-ms", "500"];
    if let Some(url) = counters {
        args.extend(["--counters", url]);
    }
    let mut started = Vec::new();
    for _ in 0..n {
        started.push(Replica::start(&db, &rules, &args).await);
    }
    (dir, started)
}

async fn api(r: &Replica) -> SluiceClient<Channel> {
    SluiceClient::new(r.channel().await)
}

fn ms(d: Option<prost_types::Duration>) -> i64 {
    d.map_or(0, |d| d.seconds * 1_000 + i64::from(d.nanos) / 1_000_000)
}

fn ttl(millis: u64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: (millis / 1_000) as i64,
        nanos: ((millis % 1_000) * 1_000_000) as i32,
    })
}

async fn acquire(
    api: &mut SluiceClient<Channel>,
    key: &str,
    limit: u32,
    ttl_ms: u64,
) -> pb::AcquireLeaseResponse {
    api.acquire_lease(pb::AcquireLeaseRequest {
        domain: "limits".into(),
        key: key.into(),
        limit,
        ttl: ttl(ttl_ms),
        lease_id: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn release(api: &mut SluiceClient<Channel>, key: &str, lease_id: &str) -> bool {
    api.release_lease(pb::ReleaseLeaseRequest {
        domain: "limits".into(),
        key: key.into(),
        lease_id: lease_id.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .released
}

/// A limit of 2 holders on one key, asked through `a` and `b` (one server twice, or two
/// replicas): refused while two hold it, a release frees a slot, a holder that never releases
/// (it crashed) frees its slot at its deadline, a renewed lease outlives its first ttl.
async fn lease_scenario(a: &Replica, b: &Replica) {
    let (mut a, mut b) = (api(a).await, api(b).await);
    let key = format!("job-{}", rand::random::<u32>());
    let first = acquire(&mut a, &key, 2, 60_000).await;
    let crashed = acquire(&mut b, &key, 2, 1_500).await;
    assert!(first.granted && crashed.granted, "{first:?} {crashed:?}");
    assert_eq!(crashed.holders, 2);
    let refused = acquire(&mut a, &key, 2, 60_000).await;
    assert!(!refused.granted, "two hold it: {refused:?}");
    assert_eq!(refused.holders, 2);
    assert!(
        (1..=1_500).contains(&ms(refused.retry_after)),
        "until the earliest deadline: {refused:?}"
    );
    assert!(
        release(&mut b, &key, &first.lease_id).await,
        "released on another server"
    );
    assert!(
        !release(&mut a, &key, &first.lease_id).await,
        "twice is a no-op"
    );
    let third = acquire(&mut b, &key, 2, 60_000).await;
    assert!(third.granted, "a slot was freed: {third:?}");
    assert!(!acquire(&mut a, &key, 2, 60_000).await.granted);
    // The crashed holder never releases: its slot frees itself at its deadline.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let after_crash = acquire(&mut a, &key, 2, 1_000).await;
    assert!(
        after_crash.granted,
        "the crashed holder's lease expired: {after_crash:?}"
    );
    // Renewed before its deadline, a lease holds past its first ttl.
    let renewed = a
        .renew_lease(pb::RenewLeaseRequest {
            domain: "limits".into(),
            key: key.clone(),
            lease_id: after_crash.lease_id.clone(),
            ttl: ttl(60_000),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        renewed.renewed && ms(renewed.expires_in) > 50_000,
        "{renewed:?}"
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        !acquire(&mut b, &key, 2, 1_000).await.granted,
        "the renewed lease still holds its slot"
    );
    // A retried acquire with the holder's own id renews it, taking no second slot.
    let retried = b
        .acquire_lease(pb::AcquireLeaseRequest {
            domain: "limits".into(),
            key: key.clone(),
            limit: 2,
            ttl: ttl(60_000),
            lease_id: third.lease_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retried.granted && retried.holders == 2, "{retried:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_on_one_server() {
    let (_dir, r) = replicas(1, None).await;
    lease_scenario(&r[0], &r[0]).await;
}

/// Fleet-wide: the scenario across two replicas, then 24 workers over three replicas taking
/// a lease of limit 3, holding it a few milliseconds and releasing it: never more than 3 held
/// at once, and every worker gets its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_across_three_replicas_on_redis() {
    let redis = Redis::start();
    let (_dir, r) = replicas(3, Some(&redis.url())).await;
    lease_scenario(&r[0], &r[1]).await;
    let key = format!("fleet-job-{}", rand::random::<u32>());
    let held = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let mut workers = Vec::new();
    for w in 0..24 {
        let mut client = api(&r[w % 3]).await;
        let (key, held, most) = (key.clone(), held.clone(), most.clone());
        workers.push(tokio::spawn(async move {
            let mut turns = 0;
            for _ in 0..400 {
                let got = acquire(&mut client, &key, 3, 10_000).await;
                if got.granted {
                    // Counted after the grant and before the release: never more than the
                    // server held.
                    let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    held.fetch_sub(1, Ordering::SeqCst);
                    assert!(release(&mut client, &key, &got.lease_id).await);
                    turns += 1;
                    if turns == 2 {
                        return turns;
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            turns
        }));
    }
    for w in workers {
        assert_eq!(w.await.unwrap(), 2, "every worker gets its turns");
    }
    let most = most.load(Ordering::SeqCst);
    assert!((1..=3).contains(&most), "{most} held at once, limit 3");
}

async fn reserve(
    api: &mut SluiceClient<Channel>,
    user: &str,
    estimate: &[(&str, u64)],
    ttl_ms: u64,
) -> pb::ReserveResponse {
    api.reserve(pb::ReserveRequest {
        subject: Some(pb::Subject {
            user_id: user.into(),
            tier: pb::Tier::Std as i32,
            endpoint: "/v1/chat".into(),
            client_ip: "10.1.2.3".into(),
            ..Default::default()
        }),
        domain: "limits".into(),
        estimate: costs(estimate),
        ttl: ttl(ttl_ms),
    })
    .await
    .unwrap()
    .into_inner()
}

fn costs(list: &[(&str, u64)]) -> Vec<pb::Cost> {
    list.iter()
        .map(|(unit, amount)| pb::Cost {
            unit: unit.to_string(),
            amount: *amount,
        })
        .collect()
}

async fn commit(api: &mut SluiceClient<Channel>, id: &str, actual: &[(&str, u64)]) -> bool {
    api.commit_reservation(pb::CommitReservationRequest {
        reservation_id: id.into(),
        actual: costs(actual),
    })
    .await
    .unwrap()
    .into_inner()
    .settled
}

/// Limits of 1,000 input and 500 output tokens an hour: reserved through `a`, settled through
/// `b`. Each step's expected outcome follows from the sums in its comment.
async fn reservation_scenario(a: &Replica, b: &Replica) {
    let (mut a, mut b) = (api(a).await, api(b).await);
    let user = format!("llm-{}", rand::random::<u32>());
    // in 600/1000, out 300/500.
    let r1 = reserve(
        &mut a,
        &user,
        &[("input_tokens", 600), ("output_tokens", 300)],
        60_000,
    )
    .await;
    assert!(r1.allowed, "{r1:?}");
    // in 1200 > 1000: denied, and charged nothing.
    let r2 = reserve(&mut a, &user, &[("input_tokens", 600)], 60_000).await;
    assert!(!r2.allowed && r2.reservation_id.is_empty(), "{r2:?}");
    assert_eq!(r2.limit_name, "input_tokens");
    assert_eq!(r2.reason, pb::Reason::OverLimit as i32);
    // Spent less input (200: 400 back) and more output (450: 150 more).
    assert!(
        commit(
            &mut b,
            &r1.reservation_id,
            &[("input_tokens", 200), ("output_tokens", 450)]
        )
        .await
    );
    assert!(
        !commit(&mut a, &r1.reservation_id, &[]).await,
        "settled once only"
    );
    // in 200 + 700 = 900 fits; out 450 + 100 = 550 > 500 does not.
    let r3 = reserve(
        &mut a,
        &user,
        &[("input_tokens", 700), ("output_tokens", 100)],
        60_000,
    )
    .await;
    assert!(!r3.allowed, "{r3:?}");
    assert_eq!(r3.limit_name, "output_tokens");
    // out 450 + 50 = 500 fits; cancelled, all of it comes back.
    let r4 = reserve(
        &mut b,
        &user,
        &[("input_tokens", 700), ("output_tokens", 50)],
        60_000,
    )
    .await;
    assert!(r4.allowed, "{r4:?}");
    let cancelled = a
        .cancel_reservation(pb::CancelReservationRequest {
            reservation_id: r4.reservation_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cancelled.settled);
    // Expiry: a reservation not settled within its ttl is gone, its estimate still counted
    // (in 300, out 460).
    let r5 = reserve(
        &mut b,
        &user,
        &[("input_tokens", 100), ("output_tokens", 10)],
        1_000,
    )
    .await;
    assert!(r5.allowed, "{r5:?}");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(
        !commit(&mut a, &r5.reservation_id, &[("input_tokens", 0)]).await,
        "expired"
    );
    // in 300 + 701 > 1000 (it would fit, 901, had the expired estimate been given back).
    let r6 = reserve(
        &mut a,
        &user,
        &[("input_tokens", 701), ("output_tokens", 0)],
        60_000,
    )
    .await;
    assert!(!r6.allowed, "the expired estimate is still counted: {r6:?}");
    assert_eq!(r6.limit_name, "input_tokens");
    // Over-commit: out 460 + 30 fits, then 200 spent (170 more: 660 of 500) is counted anyway,
    // and nothing more of it is admitted, not even a reservation of none.
    let r7 = reserve(
        &mut a,
        &user,
        &[("input_tokens", 100), ("output_tokens", 30)],
        60_000,
    )
    .await;
    assert!(r7.allowed, "{r7:?}");
    assert!(commit(&mut b, &r7.reservation_id, &[("output_tokens", 200)]).await);
    for estimate in [1, 0] {
        let r8 = reserve(
            &mut a,
            &user,
            &[("input_tokens", 1), ("output_tokens", estimate)],
            60_000,
        )
        .await;
        assert!(!r8.allowed, "the over-commit is owed: {r8:?}");
        assert_eq!(r8.limit_name, "output_tokens");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_on_one_server() {
    let (_dir, r) = replicas(1, None).await;
    reservation_scenario(&r[0], &r[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_settle_on_any_replica_on_redis() {
    let redis = Redis::start();
    let (_dir, r) = replicas(2, Some(&redis.url())).await;
    reservation_scenario(&r[0], &r[1]).await;
}

/// On a Redis Cluster: a lease's set and a reservation's record are one key each (any slot);
/// the reservation's charges span slots, as a decision's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_reservations_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let (_dir, r) = replicas(2, Some(&cluster.url())).await;
    lease_scenario(&r[0], &r[1]).await;
    reservation_scenario(&r[1], &r[0]).await;
}

async fn rls_admits(r: &Replica, value: &str) -> bool {
    let mut rls = RateLimitServiceClient::new(r.channel().await);
    ask(&mut rls, "limits", &[("key", value)]).await.unwrap()
}

/// An admin resets one key's counters through one replica; the other admits it again, and the
/// audit log says who reset what. Without the token nothing is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reset_is_audited_and_holds_fleet_wide() {
    let redis = Redis::start();
    let (_dir, r) = replicas(2, Some(&redis.url())).await;
    let value = format!("tenant-{}", rand::random::<u32>());
    let admitted = [
        rls_admits(&r[0], &value).await,
        rls_admits(&r[1], &value).await,
        rls_admits(&r[0], &value).await,
    ];
    assert_eq!(admitted, [true, true, false], "2 an hour, fleet-wide");
    let request = pb::ResetKeyRequest {
        domain: "limits".into(),
        descriptor: vec![pb::DescriptorEntry {
            key: "key".into(),
            value: value.clone(),
        }],
        actor: "oncall@example".into(),
    };
    let mut b = api(&r[1]).await;
    let refused = b.reset_key(request.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(!rls_admits(&r[0], &value).await, "nothing was reset");
    let reply = b.reset_key(admin(request)).await.unwrap().into_inner();
    assert_eq!(reply.buckets_reset, 1, "{reply:?}");
    assert!(
        rls_admits(&r[0], &value).await,
        "the other replica admits it again"
    );
    let audit = b
        .list_rule_audit(admin(pb::ListRuleAuditRequest {
            rule_id: reply.rule_id.clone(),
            limit: 10,
        }))
        .await
        .unwrap()
        .into_inner();
    let reset = audit
        .entries
        .iter()
        .find(|e| e.action == "reset")
        .expect("a reset row in the audit log");
    assert_eq!(reset.actor, "oncall@example");
    assert!(
        reset.after_json.contains(&format!("key={value}")),
        "{reset:?}"
    );
    // A descriptor no rule matches resets nothing and says so.
    let none = b
        .reset_key(admin(pb::ResetKeyRequest {
            domain: "limits".into(),
            descriptor: vec![pb::DescriptorEntry {
                key: "nothing".into(),
                value: "x".into(),
            }],
            actor: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((none.rule_id.as_str(), none.buckets_reset), ("", 0));
}

/// Bad input to every new call is refused, naming the field, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lease_and_reservation_input_names_the_field() {
    let (_dir, r) = replicas(1, None).await;
    let mut a = api(&r[0]).await;
    let lease = |limit: u32, ttl_ms: Option<u64>, id: &str| pb::AcquireLeaseRequest {
        domain: "limits".into(),
        key: "k".into(),
        limit,
        ttl: ttl_ms.and_then(ttl),
        lease_id: id.into(),
    };
    let user = pb::Subject {
        user_id: "u".into(),
        ..Default::default()
    };
    let reserve_with = |estimate: Vec<pb::Cost>, ttl_ms: u64| pb::ReserveRequest {
        subject: Some(user.clone()),
        domain: "limits".into(),
        estimate,
        ttl: ttl(ttl_ms),
    };
    let cost = |unit: &str| pb::Cost {
        unit: unit.into(),
        amount: 1,
    };
    let cases: Vec<(&str, Result<(), tonic::Status>, &str)> = vec![
        (
            "limit 0",
            a.acquire_lease(lease(0, Some(1_000), "")).await.map(|_| ()),
            "limit",
        ),
        (
            "limit too high",
            a.acquire_lease(lease(10_001, Some(1_000), ""))
                .await
                .map(|_| ()),
            "limit",
        ),
        (
            "no ttl",
            a.acquire_lease(lease(1, None, "")).await.map(|_| ()),
            "ttl",
        ),
        (
            "ttl over a day",
            a.acquire_lease(lease(1, Some(86_401_000), ""))
                .await
                .map(|_| ()),
            "ttl",
        ),
        (
            "bad lease id",
            a.acquire_lease(lease(1, Some(1_000), "zz"))
                .await
                .map(|_| ()),
            "lease_id",
        ),
        (
            "empty key",
            a.acquire_lease(pb::AcquireLeaseRequest {
                key: String::new(),
                ..lease(1, Some(1_000), "")
            })
            .await
            .map(|_| ()),
            "key",
        ),
        (
            "release without id",
            a.release_lease(pb::ReleaseLeaseRequest {
                domain: "limits".into(),
                key: "k".into(),
                lease_id: String::new(),
            })
            .await
            .map(|_| ()),
            "lease_id",
        ),
        (
            "unit twice",
            a.reserve(reserve_with(vec![cost("a"), cost("a")], 1_000))
                .await
                .map(|_| ()),
            "estimate[1].unit",
        ),
        (
            "unnamed unit",
            a.reserve(reserve_with(vec![cost("")], 1_000))
                .await
                .map(|_| ()),
            "estimate[0].unit",
        ),
        (
            "too many units",
            a.reserve(reserve_with(
                (0..9).map(|i| cost(&format!("u{i}"))).collect(),
                1_000,
            ))
            .await
            .map(|_| ()),
            "estimate",
        ),
        (
            "reservation ttl 0",
            a.reserve(reserve_with(vec![], 0)).await.map(|_| ()),
            "ttl",
        ),
        (
            "commit a bad id",
            a.commit_reservation(pb::CommitReservationRequest {
                reservation_id: "not-an-id".into(),
                actual: vec![],
            })
            .await
            .map(|_| ()),
            "reservation_id",
        ),
    ];
    for (what, got, field) in cases {
        let status = got.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{what}: {:?}",
            status.message()
        );
    }
    // Nothing was taken: a lease of limit 1 on `k` is granted.
    assert!(acquire(&mut a, "k", 1, 1_000).await.granted);
}
