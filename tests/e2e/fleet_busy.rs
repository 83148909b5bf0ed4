//! A fleet on a busy node (issue 28): three `sluice serve` processes on one Redis while busy
//! loops hold every CPU, as production nodes are. Exact mode admits exactly the limit with its
//! default budget; cached token buckets owe what they admitted beyond the credit; a Redis
//! killed and restarted under traffic fails no decision and the fleet, knowing its own size,
//! admits about one limit while it is away; a damaged key is that key's problem only.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::fleet_harness::*;
use crate::harness::fresh_pg_database;

/// A busy loop on every CPU while alive.
struct Busy(Vec<Child>);

impl Busy {
    fn every_cpu() -> Busy {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Busy(
            (0..cpus)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("start a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One fixed-window limit of 100 an hour on descriptor `fw`.
const FW_100_AN_HOUR: &str = "domain: fleet\ndescriptors:\n  - key: fw\n    rate_limit: {unit: hour, requests_per_unit: 100, algorithm: fixed_window}\n";

async fn pg() -> String {
    let base = std::env::var("SLUICE_TEST_PG_URL")
        .expect("fleet tests need SLUICE_TEST_PG_URL: run ./scripts/test.sh");
    fresh_pg_database(&base).await
}

/// Hours since the epoch: a limit per hour turns only across an hour boundary, which the
/// tests allow for.
fn hour_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3_600
}

/// Three replicas on one database and `counters`, with `args`.
async fn three(rules: &std::path::Path, args: &[&str]) -> [Replica; 3] {
    let db = pg().await;
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(Replica::start(&db, rules, args).await);
    }
    out.try_into().unwrap_or_else(|_| unreachable!())
}

/// Exact mode with its default budget: 1,200 calls for one key limited to 200 an hour, round
/// robin over three replicas from 16 connections, busy loops on every CPU. Exactly 200 are
/// admitted: never more (a decision that misses its budget is refused and its late script
/// reconciled), at most 10% fewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_mode_admits_exactly_the_limit_on_a_busy_node() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "domain: fleet\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 200}\n",
    );
    let redis = Redis::start();
    let url = redis.url();
    let [a, b, c] = three(&rules, &["--counters", &url]).await;
    let busy = Busy::every_cpu();
    let hour = hour_now();
    let got = spread(&[&a, &b, &c], 16, 1_200, "fleet", "k", "busy").await;
    drop(busy);
    let windows = 1 + hour_now() - hour;
    eprintln!(
        "exact on a busy node: {} of 1,200 admitted, limit 200",
        got.admitted
    );
    assert_eq!(got.failed, 0, "no call fails");
    assert!(
        got.admitted <= 200 * windows,
        "{} admitted, limit 200: exact mode is never over",
        got.admitted
    );
    assert!(
        got.admitted >= 180,
        "{} admitted, limit 200: at most 10% fewer",
        got.admitted
    );
}

/// Cached mode, token buckets, busy CPUs: each replica's client calls flat out for 8 s on a key
/// of 100 a minute. Hits admitted beyond the shared credit are owed, so the fleet admits about
/// the limit plus the refill plus docs/fleet.md's bound — not three times the refill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_token_buckets_owe_what_they_admitted_beyond_the_credit() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "domain: fleet\ndescriptors:\n  - key: tb\n    rate_limit: {unit: minute, requests_per_unit: 100}\n",
    );
    let redis = Redis::start();
    let url = redis.url();
    let [a, b, c] = three(
        &rules,
        &[
            "--counters",
            &url,
            "--counters-mode",
            "cached",
            "--counters-budget-ms",
            "500",
        ],
    )
    .await;
    let busy = Busy::every_cpu();
    let run = Duration::from_secs(8);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in [&a, &b, &c] {
        let channel = r.channel().await;
        tasks.push(tokio::spawn(async move {
            let mut client = RateLimitServiceClient::new(channel);
            let (mut admitted, mut failed) = (0u64, 0u64);
            while started.elapsed() < run {
                match ask(&mut client, "fleet", &[("tb", "flat")]).await {
                    Ok(true) => admitted += 1,
                    Ok(false) => {}
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (admitted, failed)
        }));
    }
    let (mut admitted, mut failed) = (0, 0);
    for t in tasks {
        let (a, f) = t.await.unwrap();
        admitted += a;
        failed += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(busy);
    // 100 at once, then 100 a minute; each replica may admit from a copy missing the others'
    // hits of one flush interval and round trip (a few at 50 calls a second each).
    let refill = (100.0 * seconds / 60.0).ceil() as u64;
    eprintln!("cached token bucket, busy: {admitted} admitted in {seconds:.1} s, refill {refill}");
    assert_eq!(failed, 0);
    assert!(
        admitted <= 100 + refill + 15,
        "{admitted} admitted: limit 100 + refill {refill} + the bound (a replica's refill \
         beyond the shared credit is owed, not forgotten)"
    );
    assert!(
        admitted >= 100,
        "{admitted} admitted: the burst of 100 is there"
    );
}

/// Exact mode, `local` policy, no `--fleet-replicas`: the replicas count themselves (three)
/// through the fleet state. Redis is killed under traffic and restarted without its data: no
/// decision fails, each replica keeps to a third of the limit while Redis is away, and what
/// they admitted then is added to the counters once Redis is back, so the hour's total stays
/// within docs/fleet.md's bound of twice the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_traffic_stays_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(dir.path(), FW_100_AN_HOUR);
    let mut redis = Redis::start();
    let url = redis.url();
    let args = ["--counters", &url, "--counters-breaker-cooldown-ms", "300"];
    let db = pg().await;
    // The first replica's /metrics says what it admitted alone and how many it counts.
    let http = format!("127.0.0.1:{}", free_port());
    let with_http = [&args[..], &["--http-listen", &http]].concat();
    let a = Replica::start(&db, &rules, &with_http).await;
    let b = Replica::start(&db, &rules, &args).await;
    let c = Replica::start(&db, &rules, &args).await;
    // Two fleet-state rounds: every replica has counted the others.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let busy = Busy::every_cpu();
    let hour = hour_now();
    let before = spread(&[&a, &b, &c], 6, 40, "fleet", "fw", "restart").await;
    // On busy CPUs a decision may miss its budget and be refused (exact mode's trade-off). Forty
    // calls, the first of each connection among them, the moment the busy loops start: a few
    // late ones are a large share (34 and 35 of 40 seen, in about one run in four, on a 2-core
    // node running the suite). What matters here is that the fleet counts and nothing fails;
    // the 10% bound is `exact_mode_admits_exactly_the_limit_on_a_busy_node`'s, over 1,200.
    assert_eq!(before.failed, 0, "no decision fails");
    assert!(
        before.admitted >= 30,
        "{} of 40 admitted before the outage, limit 100",
        before.admitted
    );

    redis.down();
    let during = spread(&[&a, &b, &c], 6, 300, "fleet", "fw", "restart").await;
    assert_eq!(during.failed, 0, "no decision fails while Redis is down");
    assert!(
        during.admitted <= 3 * 34,
        "{} admitted while Redis was down: each of three replicas keeps to 100 / 3",
        during.admitted
    );

    redis.up();
    for r in [&a, &b, &c] {
        r.counters_under_traffic("fw", ServingStatus::Serving).await;
    }
    // The reconciliation flush runs every 100 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = spread(&[&a, &b, &c], 6, 300, "fleet", "fw", "restart").await;
    drop(busy);
    assert_eq!(after.failed, 0, "no decision fails after Redis is back");
    let total = before.admitted + during.admitted + after.admitted;
    let windows = 1 + hour_now() - hour;
    eprintln!(
        "restart: {} before, {} while down, {} after: {total} of limit 100",
        before.admitted, during.admitted, after.admitted
    );
    assert!(
        total <= 2 * 100 * windows,
        "{total} admitted in the hour across a restart without persistence: bound 2 x 100"
    );
    let (_, metrics) = crate::http::get(http.parse().unwrap(), "/metrics", None).await;
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert_eq!(
        metric("sluice_fleet_replicas"),
        3.0,
        "the fleet counts itself"
    );
    let alone = metric("sluice_counters_local_admitted_hits_total");
    // Two keys were used while Redis was away (the traffic's and the probes'): 100 / 3 each.
    assert!(
        (1.0..=2.0 * 34.0).contains(&alone),
        "{alone} hits admitted alone by one replica of three, two keys of 100"
    );
    assert_eq!(
        metric("sluice_counters_reconciled_hits_total"),
        alone,
        "every hit admitted alone was added to the counters"
    );
    // Redis forgot the 40 admitted before; it was told what was admitted while it was away.
    assert!(
        after.admitted <= 100 - during.admitted.min(100),
        "{} admitted after the restart though {} were admitted while Redis was away: \
         they were never added to the counters",
        after.admitted,
        during.admitted
    );
}

/// A key holding something that is not a bucket state (another type, garbage, a window in the
/// future, a negative count) is reset for that key alone: no decision fails, the breaker that
/// protects against an unreachable Redis stays closed, and the key counts again from fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_key_is_that_keys_problem_only() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "domain: fleet\ndescriptors:\n  - key: fw\n    rate_limit: {unit: hour, requests_per_unit: 10, algorithm: fixed_window}\n  - key: tb\n    rate_limit: {unit: hour, requests_per_unit: 10}\n",
    );
    let redis = Redis::start();
    let url = redis.url();
    let db = pg().await;
    let a = Replica::start(&db, &rules, &["--counters", &url]).await;
    let far_future = "f 99999999999999999 5";
    let damage: [(&str, Vec<&str>); 6] = [
        ("another type", vec!["HSET", "{key}", "f", "1"]),
        ("garbage", vec!["SET", "{key}", "not a bucket"]),
        ("a window in the future", vec!["SET", "{key}", far_future]),
        (
            "a negative count",
            vec!["SET", "{key}", "f 0 -1000000000000000000"],
        ),
        (
            "a token bucket without numbers",
            vec!["SET", "{key}", "t abc def"],
        ),
        (
            "a huge token debt",
            vec!["SET", "{key}", "t -99999999999999999 0"],
        ),
    ];
    for (i, (what, command)) in damage.iter().enumerate() {
        let key = if what.starts_with("a token") || what.starts_with("a huge") {
            "tb"
        } else {
            "fw"
        };
        let value = format!("damaged{i}");
        let first = spread(&[&a], 1, 3, "fleet", key, &value).await;
        assert_eq!(first.admitted, 3, "{what}: counting before the damage");
        let stored = redis
            .cli(&["--scan", "--pattern", "sluice:{*"])
            .unwrap_or_default()
            .lines()
            .filter(|k| !k.contains("fleet-state"))
            .map(str::to_string)
            .collect::<Vec<_>>();
        // Damage every bucket key: the one just used is among them.
        for k in &stored {
            let args: Vec<&str> = command
                .iter()
                .map(|a| if *a == "{key}" { k.as_str() } else { a })
                .collect();
            if args[0] == "HSET" {
                redis.cli(&["DEL", k]);
            }
            redis.cli(&args).expect("redis-cli");
        }
        let after = spread(&[&a], 2, 20, "fleet", key, &value).await;
        assert_eq!(after.failed, 0, "{what}: no decision fails");
        assert_eq!(
            after.admitted, 10,
            "{what}: the key was reset to a fresh bucket of 10 and counts again"
        );
        assert_eq!(
            a.health("sluice.v1.Counters").await,
            ServingStatus::Serving as i32,
            "{what}: the breaker stays closed"
        );
        let other = spread(&[&a], 1, 12, "fleet", "fw", &format!("other{i}")).await;
        assert_eq!(other.admitted, 10, "{what}: other keys count as before");
    }
}

/// Cached mode, busy CPUs: six clients pacing calls 30 ms apart over three replicas on one key
/// of 10 an hour, per algorithm. docs/fleet.md's bound, `L + Σ min(L, ⌈λᵣ · (F + RTT)⌉)`, with two
/// clients a replica (λᵣ ≈ 66 a second) and a flush interval plus round trip that a busy node
/// stretches to at most 30 ms, is 10 + 3 × 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_mode_stays_within_its_bound_on_a_busy_node() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "domain: fleet\ndescriptors:\n  - key: fw\n    rate_limit: {unit: hour, requests_per_unit: 10, algorithm: fixed_window}\n  - key: sw\n    rate_limit: {unit: hour, requests_per_unit: 10, algorithm: sliding_window}\n  - key: tb\n    rate_limit: {unit: hour, requests_per_unit: 10}\n",
    );
    let redis = Redis::start();
    let url = redis.url();
    let args = [
        "--counters",
        url.as_str(),
        "--counters-mode",
        "cached",
        "--counters-budget-ms",
        "500",
    ];
    let [a, b, c] = three(&rules, &args).await;
    let busy = Busy::every_cpu();
    let run = rand::random::<u32>();
    for key in ["tb", "fw", "sw"] {
        let hour = hour_now();
        let admitted = paced([&a, &b, &c], key, &format!("paced{run}")).await;
        let windows = 1 + hour_now() - hour;
        eprintln!("cached {key} on a busy node: {admitted} of limit 10 (bound 16)");
        assert!(
            (10..=10 * windows + 6).contains(&admitted),
            "{key}: {admitted} admitted by three cached replicas on a busy node, bound 10 + 6"
        );
    }
    drop(busy);
}

/// Two replicas on one host, no `--instance-id`: each is `HOST:PORT`, so both publish their
/// fleet state (and save their actions and models) under names of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_host_are_distinct_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "domain: fleet\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 10}\n",
    );
    let redis = Redis::start();
    let url = redis.url();
    let db = pg().await;
    let a = Replica::start(&db, &rules, &["--counters", &url]).await;
    let b = Replica::start(&db, &rules, &["--counters", &url]).await;
    let mut names = Vec::new();
    for _ in 0..100 {
        names = redis
            .cli(&["HKEYS", "sluice:{fleet-state}"])
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if names.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    names.sort();
    let mut expected: Vec<String> = [a.port, b.port]
        .iter()
        .map(|port| format!(":{port}"))
        .collect();
    expected.sort();
    assert_eq!(names.len(), 2, "two replicas, two names: {names:?}");
    for (name, port) in names.iter().zip(&expected) {
        assert!(name.ends_with(port.as_str()), "{name} is HOST{port}");
    }
}

/// docs/fleet.md's outage figures: three replicas, one limit of 100 a minute (fixed window), three
/// clients at 2, 10 and 40 calls a second (each its own key, round robin over the replicas),
/// busy CPUs; Redis killed 12 s in and restarted 12 s later, 36 s in all. No decision fails.
/// Returns (rate, calls sent, admitted) per key and minute.
async fn outage_at_several_rates(mut redis: Redis) -> Vec<(u64, u64, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "domain: fleet\ndescriptors:\n  - key: fw\n    rate_limit: {unit: minute, requests_per_unit: 100, algorithm: fixed_window}\n",
    );
    let url = redis.url();
    let [a, b, c] = three(
        &rules,
        &["--counters", &url, "--counters-breaker-cooldown-ms", "300"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let channels = [a.channel().await, b.channel().await, c.channel().await];
    let busy = Busy::every_cpu();
    let started = Instant::now();
    let run = rand::random::<u32>();
    let mut tasks = Vec::new();
    for rate in [2u64, 10, 40] {
        let channels = channels.clone();
        let value = format!("rate{rate}-{run}");
        tasks.push(tokio::spawn(async move {
            let mut clients: Vec<_> = channels
                .into_iter()
                .map(RateLimitServiceClient::new)
                .collect();
            let mut tick = tokio::time::interval(Duration::from_millis(1_000 / rate));
            // (minute since the epoch, admitted) per call; failures counted apart.
            let (mut calls, mut failed) = (Vec::new(), 0u64);
            let mut i = 0usize;
            while started.elapsed() < Duration::from_secs(36) {
                tick.tick().await;
                let client = &mut clients[i % 3];
                i += 1;
                let minute = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    / 60;
                match ask(client, "fleet", &[("fw", &value)]).await {
                    Ok(admitted) => calls.push((minute, admitted)),
                    Err(_) => failed += 1,
                }
            }
            (rate, calls, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    redis.down();
    tokio::time::sleep(Duration::from_secs(12)).await;
    redis.up();
    let mut out = Vec::new();
    for t in tasks {
        let (rate, calls, failed) = t.await.unwrap();
        assert_eq!(failed, 0, "{rate}/s: no decision fails");
        let mut by_minute = std::collections::BTreeMap::<u64, (u64, u64)>::new();
        for (minute, admitted) in calls {
            let m = by_minute.entry(minute).or_default();
            m.0 += 1;
            m.1 += u64::from(admitted);
        }
        out.extend(
            by_minute
                .into_values()
                .map(|(sent, admitted)| (rate, sent, admitted)),
        );
    }
    drop(busy);
    out
}

/// Without persistence Redis forgets the minute's counts when it restarts: a key spent before
/// the outage gets the limit again, so a minute admits up to twice the limit — the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_at_several_rates_stays_within_the_bound() {
    for (rate, sent, admitted) in outage_at_several_rates(Redis::start()).await {
        eprintln!("outage, in memory, {rate}/s: a minute admitted {admitted} of {sent} sent");
        assert!(
            admitted <= 200,
            "{rate}/s: {admitted} admitted in one minute, limit 100, bound 2 x 100"
        );
    }
}

/// With the append-only file (the shipped files' Redis), the minute's counts survive the
/// restart, and keys the counters refused stay refused while Redis is away: a minute admits
/// the limit, plus at most the replicas' shares for a key not yet spent when Redis went away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_persistence_admits_about_the_limit() {
    for (rate, sent, admitted) in outage_at_several_rates(Redis::start_persistent()).await {
        eprintln!("outage, persistent, {rate}/s: a minute admitted {admitted} of {sent} sent");
        assert!(
            admitted <= 100 + 3 * 34,
            "{rate}/s: {admitted} admitted in one minute, limit 100 + the replicas' shares"
        );
    }
}

/// Cached mode, Redis away, a key first used during the outage: each replica keeps to its share
/// of the limit (it has no global state to adopt), so the fleet admits about the limit, not
/// three times it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_mode_keeps_to_shares_while_redis_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(dir.path(), FW_100_AN_HOUR);
    let mut redis = Redis::start();
    let url = redis.url();
    let [a, b, c] = three(&rules, &["--counters", &url, "--counters-mode", "cached"]).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    redis.down();
    for r in [&a, &b, &c] {
        r.counters_under_traffic("fw", ServingStatus::NotServing)
            .await;
    }
    let busy = Busy::every_cpu();
    let hour = hour_now();
    let got = spread(&[&a, &b, &c], 6, 600, "fleet", "fw", "first-used-in-outage").await;
    drop(busy);
    let windows = 1 + hour_now() - hour;
    eprintln!(
        "cached, Redis away, a new key: {} of 600 admitted, limit 100",
        got.admitted
    );
    assert_eq!(got.failed, 0);
    assert!(
        got.admitted <= 3 * 34 * windows,
        "{} admitted: three replicas keep to 100 / 3 each",
        got.admitted
    );
    assert!(
        got.admitted >= 90,
        "{} admitted: about the limit",
        got.admitted
    );
}
