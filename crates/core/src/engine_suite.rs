//! The engine's behaviour suite, run against every bucket store: combining limits, shadow mode,
//! Envoy's overrides and `replaces`, refunds, concurrent use of one key, anomaly actions and the
//! pressure cut, on a virtual clock.
//!
//! A store's tests call [`crate::engine_behaviour_suite!`] with a function that builds an engine
//! on that store; the core runs it on the sharded store, the service on its moka store. Compiled
//! for the core's own tests and with the `behaviour-suite` feature; not part of the service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bucket::Op;
use crate::engine::{DescriptorInput, Engine, EngineConfig, Subject, Verdict};
use crate::limit::{Algorithm, LimitSpec, Rate, Unit};
use crate::matcher::RuleSet;
use crate::rules::{Priority, Rule, Tier};
use crate::time::{NANOS_PER_SEC as S, Nanos};

/// Builds an engine on the store under test from a configuration.
pub type MakeEngine = fn(EngineConfig) -> Engine;

/// The suite's start time.
pub const T0: Nanos = 1_700_000_000 * S;

/// A named fixed-window limit.
pub fn limit(name: &str, rpu: u64, unit: Unit) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        algorithm: Algorithm::FixedWindow,
        ..LimitSpec::per(rpu, unit)
    }
}

/// A rule of domain `d`.
pub fn rule(path: &[(&str, &str)], limits: Vec<LimitSpec>) -> Rule {
    Rule::new("d", path, limits)
}

fn engine(store: MakeEngine, rules: Vec<Rule>) -> Engine {
    let e = store(EngineConfig::default());
    e.replace_rules(RuleSet::build(1, rules));
    e
}

/// A descriptor consuming `hits` (checking, for 0).
pub fn desc<'a>(entries: &[(&'a str, &'a str)], hits: u64) -> DescriptorInput<'a> {
    DescriptorInput {
        entries: entries.iter().copied().collect(),
        hits,
        op: if hits == 0 { Op::Check } else { Op::Consume },
        limit_override: None,
    }
}

pub fn several_limits_on_one_key_strictest_decides(store: MakeEngine) {
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

pub fn denied_requests_consume_nothing(store: MakeEngine) {
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

pub fn shadow_rules_never_deny_but_say_they_would(store: MakeEngine) {
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

pub fn envoy_limit_override_replaces_the_rule(store: MakeEngine) {
    let e = engine(
        store,
        vec![rule(&[("user", "")], vec![limit("", 100, Unit::Minute)])],
    );
    let mut d = desc(&[("user", "u")], 1);
    d.limit_override = Some(Rate {
        requests_per_unit: 2,
        unit: Unit::Hour,
        unit_multiplier: 1,
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

pub fn replaces_drops_the_named_limit(store: MakeEngine) {
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

pub fn unknown_domains_allow_or_take_the_default(store: MakeEngine) {
    let e = engine(store, vec![]);
    let v = e.check_descriptors("nope", &[desc(&[("k", "v")], 1)], T0);
    assert!(!v.over_limit && v.statuses[0].limit.is_none());

    let e = store(EngineConfig {
        unknown_domain_limit: Some(Rate {
            requests_per_unit: 1,
            unit: Unit::Minute,
            unit_multiplier: 1,
        }),
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

pub fn should_allow_and_reset_client(store: MakeEngine) {
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

pub fn concurrent_hammering_of_one_key_never_over_admits(store: MakeEngine) {
    for algorithm in Algorithm::ALL {
        let mut l = limit("", 1_000, Unit::Hour);
        l.algorithm = algorithm;
        // GCRA's default burst is one; a thousand at once needs a burst of a thousand.
        l.burst = (algorithm == Algorithm::Gcra).then_some(1_000);
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

pub fn unlimited_rule_matches_and_never_limits(store: MakeEngine) {
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

/// Every store keeps a bucket for the idle TTL even when its limit recovers sooner.
pub fn idle_ttl_is_a_minimum(store: MakeEngine) {
    let e = store(EngineConfig {
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

pub fn a_users_action_follows_it_from_address_to_address(store: MakeEngine) {
    use crate::learn::actions::{Action, ActionKind, ActionTable};
    let e = engine(store, vec![]);
    let action = |client: &str, kind| Action {
        client: client.into(),
        kind,
        score: 0.85,
        since: T0,
        expires_at: T0 + 300 * S,
        shadow: false,
        model_version: 1,
        signal: Default::default(),
        why: "".into(),
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

pub fn a_floor_softens_the_learners_block_not_the_denylists(store: MakeEngine) {
    use crate::learn::actions::{Action, ActionKind, ActionTable, Signal};
    let e = engine(store, vec![]);
    e.replace_rules(RuleSet::build(
        1,
        [Rule {
            domain: "sluice".into(),
            ..rule(
                &[("endpoint", "/api/browse")],
                vec![LimitSpec {
                    floor: Some(3),
                    ..limit("per-endpoint", 100, Unit::Minute)
                }],
            )
        }],
    ));
    let action = |client: &str, signal| Action {
        client: client.into(),
        kind: ActionKind::Block,
        score: 1.0,
        since: T0,
        expires_at: T0 + 300 * S,
        shadow: false,
        model_version: 1,
        signal,
        why: "".into(),
    };
    e.set_actions(Arc::new(ActionTable::from_actions([
        action("192.0.2.1", Signal::Volume),
        action("192.0.2.2", Signal::Denylist),
    ])));
    let admitted = |ip: &'static str| {
        let subject = Subject {
            remote_address: ip,
            endpoint: "/api/browse",
            ..Subject::default()
        };
        (0..10)
            .filter(|_| !e.should_allow("sluice", &subject, 1, T0).over_limit)
            .count()
    };
    // (client, admitted of 10 in the minute)
    for (ip, expected) in [("192.0.2.1", 3), ("192.0.2.2", 0), ("192.0.2.3", 10)] {
        assert_eq!(admitted(ip), expected, "{ip}");
    }
}

pub fn pressure_cuts_std_on_low_priority_endpoints_only(store: MakeEngine) {
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

/// Generates one `#[test]` per behaviour, each running it on the engines `$make` builds.
#[macro_export]
macro_rules! engine_behaviour_suite {
    ($make:expr) => {
        #[test]
        fn several_limits_on_one_key_strictest_decides() {
            $crate::engine_suite::several_limits_on_one_key_strictest_decides($make)
        }
        #[test]
        fn denied_requests_consume_nothing() {
            $crate::engine_suite::denied_requests_consume_nothing($make)
        }
        #[test]
        fn shadow_rules_never_deny_but_say_they_would() {
            $crate::engine_suite::shadow_rules_never_deny_but_say_they_would($make)
        }
        #[test]
        fn envoy_limit_override_replaces_the_rule() {
            $crate::engine_suite::envoy_limit_override_replaces_the_rule($make)
        }
        #[test]
        fn replaces_drops_the_named_limit() {
            $crate::engine_suite::replaces_drops_the_named_limit($make)
        }
        #[test]
        fn unknown_domains_allow_or_take_the_default() {
            $crate::engine_suite::unknown_domains_allow_or_take_the_default($make)
        }
        #[test]
        fn should_allow_and_reset_client() {
            $crate::engine_suite::should_allow_and_reset_client($make)
        }
        #[test]
        fn concurrent_hammering_of_one_key_never_over_admits() {
            $crate::engine_suite::concurrent_hammering_of_one_key_never_over_admits($make)
        }
        #[test]
        fn a_users_action_follows_it_from_address_to_address() {
            $crate::engine_suite::a_users_action_follows_it_from_address_to_address($make)
        }
        #[test]
        fn a_floor_softens_the_learners_block_not_the_denylists() {
            $crate::engine_suite::a_floor_softens_the_learners_block_not_the_denylists($make);
        }
        #[test]
        fn pressure_cuts_std_on_low_priority_endpoints_only() {
            $crate::engine_suite::pressure_cuts_std_on_low_priority_endpoints_only($make)
        }
        #[test]
        fn unlimited_rule_matches_and_never_limits() {
            $crate::engine_suite::unlimited_rule_matches_and_never_limits($make)
        }
        #[test]
        fn idle_ttl_is_a_minimum() {
            $crate::engine_suite::idle_ttl_is_a_minimum($make)
        }
    };
}
