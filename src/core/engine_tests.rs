//! Engine behaviour on a virtual clock: combining limits, shadow mode, Envoy's overrides and
//! `replaces`, refunds, and concurrent use of one key.

use super::*;
use crate::core::buckets::StoreKind;
use crate::core::limit::{LimitSpec, Unit};
use crate::core::rules::Rule;
use crate::core::time::NANOS_PER_SEC as S;

const T0: Nanos = 1_700_000_000 * S;

fn limit(name: &str, rpu: u64, unit: Unit) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        algorithm: Algorithm::FixedWindow,
        ..LimitSpec::per(rpu, unit)
    }
}

fn rule(path: &[(&str, &str)], limits: Vec<LimitSpec>) -> Rule {
    Rule::new("d", path, limits)
}

fn engine(store: StoreKind, rules: Vec<Rule>) -> Engine {
    let e = Engine::new(EngineConfig {
        bucket_store: store,
        ..EngineConfig::default()
    });
    e.replace_rules(RuleSet::build(1, rules));
    e
}

/// Runs each behaviour test once per bucket store, as `name::moka` and `name::sharded`.
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::StoreKind;
            #[test]
            fn moka() { super::$name(StoreKind::Moka) }
            #[test]
            fn sharded() { super::$name(StoreKind::Sharded) }
        }
    )*};
}

store_tests!(
    several_limits_on_one_key_strictest_decides,
    denied_requests_consume_nothing,
    shadow_rules_never_deny_but_say_they_would,
    envoy_limit_override_replaces_the_rule,
    replaces_drops_the_named_limit,
    unknown_domains_allow_or_take_the_default,
    should_allow_and_reset_client,
    concurrent_hammering_of_one_key_never_over_admits,
    a_users_action_follows_it_from_address_to_address,
    pressure_cuts_std_on_low_priority_endpoints_only,
);

fn desc<'a>(entries: &[(&'a str, &'a str)], hits: u64) -> DescriptorInput<'a> {
    DescriptorInput {
        entries: entries.iter().copied().collect(),
        hits,
        op: if hits == 0 { Op::Check } else { Op::Consume },
        limit_override: None,
    }
}

fn several_limits_on_one_key_strictest_decides(store: StoreKind) {
    let e = engine(
        store,
        vec![rule(
            &[("user", "")],
            vec![
                limit("burst", 3, Unit::Second),
                limit("daily", 5, Unit::Day),
            ],
        )],
    );
    let mut allowed = 0;
    for second in 0..4 {
        for _ in 0..3 {
            let v = e.check_descriptors("d", &[desc(&[("user", "u")], 1)], T0 + second * S);
            if !v.over_limit {
                allowed += 1;
            }
        }
    }
    assert_eq!(allowed, 5, "the daily limit caps the per-second bursts");
    let v = e.check_descriptors("d", &[desc(&[("user", "u")], 1)], T0 + 5 * S);
    assert_eq!(&*v.statuses[0].limit.as_ref().unwrap().label.name, "daily");
}

fn denied_requests_consume_nothing(store: StoreKind) {
    let e = engine(
        store,
        vec![
            rule(&[("user", "")], vec![limit("", 10, Unit::Minute)]),
            rule(&[("ip", "")], vec![limit("", 1, Unit::Minute)]),
        ],
    );
    let request = [desc(&[("user", "u")], 1), desc(&[("ip", "1.1.1.1")], 1)];
    assert!(!e.check_descriptors("d", &request, T0).over_limit);
    for _ in 0..5 {
        let v = e.check_descriptors("d", &request, T0);
        assert!(v.over_limit);
        assert!(!v.statuses[0].over_limit);
    }
    let v = e.check_descriptors("d", &[desc(&[("user", "u")], 0)], T0);
    assert_eq!(
        v.statuses[0].remaining, 9,
        "only the admitted request counted"
    );
}

fn shadow_rules_never_deny_but_say_they_would(store: StoreKind) {
    let mut r = rule(&[("user", "")], vec![limit("", 1, Unit::Minute)]);
    r.shadow_mode = true;
    let e = engine(store, vec![r]);
    e.check_descriptors("d", &[desc(&[("user", "u")], 1)], T0);
    let v = e.check_descriptors("d", &[desc(&[("user", "u")], 1)], T0);
    assert!(!v.over_limit);
    assert!(v.shadow_over && v.statuses[0].shadow_over);
    assert_eq!(e.stats().shadow_denied.load(Ordering::Relaxed), 1);

    let e = engine(
        store,
        vec![rule(&[("user", "")], vec![limit("", 1, Unit::Minute)])],
    );
    e.set_shadow(true);
    e.check_descriptors("d", &[desc(&[("user", "u")], 1)], T0);
    let v = e.check_descriptors("d", &[desc(&[("user", "u")], 1)], T0);
    assert!(
        !v.over_limit && v.shadow_over,
        "the global switch shadows every rule"
    );
}

fn envoy_limit_override_replaces_the_rule(store: StoreKind) {
    let e = engine(
        store,
        vec![rule(&[("user", "")], vec![limit("", 100, Unit::Minute)])],
    );
    let mut d = desc(&[("user", "u")], 1);
    d.limit_override = Some(Rate {
        requests_per_unit: 2,
        unit: Unit::Hour,
    });
    let results: Vec<bool> = (0..3)
        .map(|_| {
            e.check_descriptors("d", std::slice::from_ref(&d), T0)
                .over_limit
        })
        .collect();
    assert_eq!(results, [false, false, true]);
    let v = e.check_descriptors("d", &[d], T0);
    assert_eq!(v.statuses[0].limit.as_ref().unwrap().quota.unit, Unit::Hour);
}

fn replaces_drops_the_named_limit(store: StoreKind) {
    let mut specific = rule(&[("user", "vip")], vec![limit("vip", 100, Unit::Minute)]);
    specific.replaces = vec!["global".into()];
    let e = engine(
        store,
        vec![
            rule(&[("everyone", "")], vec![limit("global", 1, Unit::Minute)]),
            specific,
        ],
    );
    let request = [desc(&[("everyone", "x")], 1), desc(&[("user", "vip")], 1)];
    for _ in 0..5 {
        assert!(!e.check_descriptors("d", &request, T0).over_limit);
    }
    let plain = [desc(&[("everyone", "x")], 1)];
    assert!(!e.check_descriptors("d", &plain, T0).over_limit);
    assert!(e.check_descriptors("d", &plain, T0).over_limit);
}

fn unknown_domains_allow_or_take_the_default(store: StoreKind) {
    let e = engine(store, vec![]);
    let v = e.check_descriptors("nope", &[desc(&[("k", "v")], 1)], T0);
    assert!(!v.over_limit && v.statuses[0].limit.is_none());

    let e = Engine::new(EngineConfig {
        unknown_domain_limit: Some(Rate {
            requests_per_unit: 1,
            unit: Unit::Minute,
        }),
        bucket_store: store,
        ..EngineConfig::default()
    });
    assert!(
        !e.check_descriptors("nope", &[desc(&[("k", "v")], 1)], T0)
            .over_limit
    );
    assert!(
        e.check_descriptors("nope", &[desc(&[("k", "v")], 1)], T0)
            .over_limit
    );
}

fn should_allow_and_reset_client(store: StoreKind) {
    let e = engine(store, vec![]);
    e.replace_rules(RuleSet::build(
        1,
        [Rule {
            domain: "sluice".into(),
            ..rule(
                &[("tier", "STD"), ("user_id", "")],
                vec![limit("std", 2, Unit::Minute)],
            )
        }],
    ));
    let alice = Subject {
        user_id: "alice",
        tier: Tier::Std,
        endpoint: "/api/browse",
        ..Subject::default()
    };
    let premium = Subject {
        tier: Tier::Prm,
        ..alice
    };
    let outcomes: Vec<bool> = (0..3)
        .map(|_| e.should_allow("sluice", &alice, 1, T0).over_limit)
        .collect();
    assert_eq!(outcomes, [false, false, true]);
    assert!(
        !e.should_allow("sluice", &premium, 1, T0).over_limit,
        "PRM matches no STD rule"
    );
    let state = e.client_state("sluice", &alice, T0);
    assert_eq!(state.len(), 1);
    assert!(state[0].tracked);
    assert_eq!(state[0].remaining, 0);
    assert_eq!(e.reset_client("sluice", &alice), 1);
    assert!(!e.should_allow("sluice", &alice, 1, T0).over_limit);
}

fn concurrent_hammering_of_one_key_never_over_admits(store: StoreKind) {
    for algorithm in [
        Algorithm::TokenBucket,
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
    ] {
        let mut l = limit("", 1_000, Unit::Hour);
        l.algorithm = algorithm;
        let e = Arc::new(engine(store, vec![rule(&[("k", "")], vec![l])]));
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let e = e.clone();
                let admitted = &admitted;
                s.spawn(move || {
                    for i in 0..1_000u64 {
                        let now = T0 + (t * 1_000 + i) * 1_000; // a few ms of virtual time
                        if !e
                            .check_descriptors("d", &[desc(&[("k", "same")], 1)], now)
                            .over_limit
                        {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let admitted = admitted.load(Ordering::Relaxed);
        // Token bucket may refill at most 1000/h · 8 ms ≈ 0 extra tokens.
        assert_eq!(admitted, 1_000, "{algorithm:?}");
    }
}

fn sharded(capacity: u64, idle: Duration, rules: Vec<Rule>) -> Engine {
    let e = Engine::new(EngineConfig {
        bucket_store: StoreKind::Sharded,
        bucket_capacity: capacity,
        bucket_idle_ttl: idle,
        ..EngineConfig::default()
    });
    e.replace_rules(RuleSet::build(1, rules));
    e
}

#[test]
fn sharded_store_sweeps_on_virtual_time_but_keeps_unrecovered_buckets() {
    // One per hour: a bucket matters for an hour after its last use, whatever the idle TTL.
    let e = sharded(
        1_000,
        Duration::from_secs(60),
        vec![rule(&[("k", "")], vec![limit("", 1, Unit::Hour)])],
    );
    e.check_descriptors("d", &[desc(&[("k", "a")], 1)], T0);
    e.sweep(T0 + 120 * S);
    assert_eq!(
        e.tracked_buckets(),
        1,
        "past the idle TTL but not recovered"
    );
    assert!(
        e.check_descriptors("d", &[desc(&[("k", "a")], 1)], T0 + 120 * S)
            .over_limit
    );
    e.sweep(T0 + 3_721 * S);
    assert_eq!(
        e.tracked_buckets(),
        0,
        "an hour after its last use it is fresh anyway"
    );
}

#[test]
fn sharded_store_at_capacity_drops_recovered_buckets_before_live_ones() {
    // Capacity 4096 = four entries per shard.
    let e = sharded(
        4_096,
        Duration::ZERO,
        vec![
            rule(&[("short", "")], vec![limit("", 1, Unit::Second)]),
            rule(&[("long", "")], vec![limit("", 1, Unit::Day)]),
        ],
    );
    for i in 0..20_000 {
        e.check_descriptors("d", &[desc(&[("short", &format!("s{i}"))], 1)], T0);
    }
    assert!(e.tracked_buckets() <= 4_096);
    let lossy = e.lossy_evictions();
    assert!(
        lossy > 0,
        "filling past capacity with live buckets loses some, and says so"
    );
    // Ten seconds later every one-second bucket has recovered: reclaiming them loses nothing.
    for i in 0..256 {
        e.check_descriptors("d", &[desc(&[("long", &format!("l{i}"))], 1)], T0 + 10 * S);
    }
    assert_eq!(e.lossy_evictions(), lossy);
    // Every day-long bucket is still there and still enforced.
    for i in 0..256 {
        assert!(
            e.check_descriptors("d", &[desc(&[("long", &format!("l{i}"))], 1)], T0 + 11 * S)
                .over_limit
        );
    }
}

mod no_panics {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), Just("k".to_string()), "\\PC{0,8}"]
    }

    proptest! {
        #[test]
        fn any_descriptors_get_an_answer(
            descriptors in prop::collection::vec(
                (prop::collection::vec((text(), text()), 0..4), any::<u64>(), 0u8..3, prop::option::of(1u64..u64::MAX)),
                0..6,
            ),
            now in any::<u64>(),
        ) {
            let mut unlimited = rule(&[("k", "v")], vec![LimitSpec { rate: None, ..limit("", 1, Unit::Second) }]);
            unlimited.replaces = vec!["x".into()];
            let e = engine(StoreKind::Sharded, vec![
                rule(&[("k", "")], vec![limit("x", 3, Unit::Second), LimitSpec { algorithm: Algorithm::SlidingWindow, ..limit("", 7, Unit::Year) }]),
                rule(&[("k", ""), ("k2", "")], vec![LimitSpec::per(u64::MAX / 2, Unit::Year)]),
                unlimited,
            ]);
            let inputs: Vec<DescriptorInput<'_>> = descriptors
                .iter()
                .map(|(entries, hits, op, rpu)| DescriptorInput {
                    entries: entries.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                    hits: *hits,
                    op: [Op::Consume, Op::Check, Op::Refund][*op as usize],
                    limit_override: rpu.map(|r| Rate { requests_per_unit: r, unit: Unit::Week }),
                })
                .collect();
            let v = e.check_descriptors("d", &inputs, now);
            prop_assert_eq!(v.statuses.len(), inputs.len());
        }
    }
}

fn unlimited_rule_matches_and_never_limits(store: StoreKind) {
    let e = engine(
        store,
        vec![
            rule(&[("user", "")], vec![limit("", 1, Unit::Hour)]),
            rule(
                &[("user", "admin")],
                vec![LimitSpec {
                    rate: None,
                    ..limit("", 1, Unit::Hour)
                }],
            ),
        ],
    );
    for _ in 0..5 {
        let v = e.check_descriptors("d", &[desc(&[("user", "admin")], 1)], T0);
        assert!(
            !v.over_limit && v.statuses[0].limit.is_none(),
            "the more specific unlimited rule wins"
        );
    }
    e.check_descriptors("d", &[desc(&[("user", "bob")], 1)], T0);
    assert!(
        e.check_descriptors("d", &[desc(&[("user", "bob")], 1)], T0)
            .over_limit
    );
}

store_tests!(unlimited_rule_matches_and_never_limits);

/// Both stores keep a bucket for the idle TTL even when its limit recovers sooner.
fn idle_ttl_is_a_minimum(store: StoreKind) {
    let e = Engine::new(EngineConfig {
        bucket_store: store,
        bucket_idle_ttl: Duration::from_secs(600),
        ..EngineConfig::default()
    });
    e.replace_rules(RuleSet::build(
        1,
        [rule(&[("k", "")], vec![limit("", 100, Unit::Second)])],
    ));
    for i in 0..100 {
        e.check_descriptors("d", &[desc(&[("k", &format!("v{i}"))], 1)], T0);
    }
    // moka expires on the wall clock: give it time to drop anything it (wrongly) would.
    std::thread::sleep(Duration::from_millis(1_200));
    e.sweep(T0 + 2 * S);
    assert_eq!(e.tracked_buckets(), 100);
}

store_tests!(idle_ttl_is_a_minimum);

fn a_users_action_follows_it_from_address_to_address(store: StoreKind) {
    use crate::core::learn::actions::{Action, ActionKind, ActionTable};
    let e = engine(store, vec![]);
    let action = |client: &str, kind| Action {
        client: client.into(),
        kind,
        score: 0.85,
        since: T0,
        expires_at: T0 + 300 * S,
        shadow: false,
        model_version: 1,
    };
    e.set_actions(Arc::new(ActionTable::from_actions([
        action("user:mallory", ActionKind::Throttle { per_minute: 2 }),
        action("user:trudy", ActionKind::Block),
    ])));
    let from = |ip, user| Subject {
        remote_address: ip,
        user_id: user,
        endpoint: "/api/products/1",
        ..Subject::default()
    };
    let anomaly = |v: &Verdict| v.anomaly.map(|h| (h.kind.name(), h.denied));
    // mallory's throttle is one bucket, whichever proxy she comes through.
    let mallory: Vec<_> = ["100.64.0.1", "100.64.0.2", "100.64.0.3"]
        .into_iter()
        .map(|ip| {
            let v = e.should_allow("sluice", &from(ip, "mallory"), 1, T0);
            (v.over_limit, anomaly(&v))
        })
        .collect();
    assert_eq!(
        mallory,
        [
            (false, Some(("throttle", false))),
            (false, Some(("throttle", false))),
            (true, Some(("throttle", true))),
        ]
    );
    let trudy = e.should_allow("sluice", &from("100.64.9.9", "trudy"), 1, T0);
    assert_eq!(
        (trudy.over_limit, anomaly(&trudy)),
        (true, Some(("block", true)))
    );
    // The same addresses without those users are untouched.
    let anonymous = e.should_allow("sluice", &from("100.64.0.1", ""), 1, T0);
    assert_eq!((anonymous.over_limit, anomaly(&anonymous)), (false, None));
    assert_eq!(e.stats().anomaly_denied.load(Ordering::Relaxed), 2);
}

fn pressure_cuts_std_on_low_priority_endpoints_only(store: StoreKind) {
    let endpoint_rule = |endpoint: &str, priority, floor| Rule {
        domain: "sluice".into(),
        priority,
        ..rule(
            &[("endpoint", endpoint)],
            vec![LimitSpec {
                floor,
                ..limit("per-endpoint", 10, Unit::Minute)
            }],
        )
    };
    let e = engine(store, vec![]);
    e.replace_rules(RuleSet::build(
        1,
        [
            endpoint_rule("/api/browse", Priority::Low, None),
            endpoint_rule("/api/search", Priority::Low, Some(8)),
            endpoint_rule("/api/payment", Priority::High, None),
        ],
    ));
    e.set_pressure(0.5);
    let admitted = |endpoint: &'static str, tier: Tier, user: &'static str| {
        let subject = Subject {
            user_id: user,
            tier,
            endpoint,
            ..Subject::default()
        };
        let verdicts: Vec<Verdict> = (0..12)
            .map(|_| e.should_allow("sluice", &subject, 1, T0))
            .collect();
        let allowed = verdicts.iter().filter(|v| !v.over_limit).count();
        let cut = verdicts.iter().any(|v| v.forecast_cut);
        (allowed, cut)
    };
    // (endpoint, tier, admitted of 12 in the minute, a denial said "forecast cut")
    let cases = [
        ("/api/browse", Tier::Std, "s1", (5, true)),
        ("/api/search", Tier::Std, "s2", (8, true)), // the floor holds
        ("/api/payment", Tier::Std, "s3", (10, false)), // high priority: untouched
    ];
    for (endpoint, tier, user, expected) in cases {
        assert_eq!(
            admitted(endpoint, tier, user),
            expected,
            "{endpoint} {tier:?}"
        );
    }
    // The endpoint rules are per endpoint (one bucket for everyone): PRM on a fresh engine.
    let e2 = engine(store, vec![]);
    e2.replace_rules(RuleSet::build(
        1,
        [endpoint_rule("/api/browse", Priority::Low, None)],
    ));
    e2.set_pressure(0.5);
    let prm = Subject {
        tier: Tier::Prm,
        endpoint: "/api/browse",
        ..Subject::default()
    };
    let allowed = (0..12)
        .filter(|_| !e2.should_allow("sluice", &prm, 1, T0).over_limit)
        .count();
    assert_eq!(allowed, 10, "PRM keeps its limit");
    // Lifting the cut restores the rule's rate.
    e2.set_pressure(1.0);
    assert_eq!(e2.pressure(), 1.0);
}
