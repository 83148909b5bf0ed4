//! The engine's tests: the behaviour suite (`engine_suite`) on the sharded store, and what only
//! the sharded store does (expiry on the caller's clock, reclaiming recovered buckets first).

use super::*;
use crate::engine_suite::{T0, desc, limit, rule};
use crate::limit::{LimitSpec, Unit};
use crate::rules::Rule;
use crate::time::NANOS_PER_SEC as S;

crate::engine_behaviour_suite!(Engine::new);

fn sharded(capacity: u64, idle: Duration, rules: Vec<Rule>) -> Engine {
    let e = Engine::new(EngineConfig {
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
            let e = sharded(2_000_000, Duration::from_secs(600), vec![
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
                    limit_override: rpu.map(|r| Rate { requests_per_unit: r, unit: Unit::Week, unit_multiplier: 1 }),
                })
                .collect();
            let v = e.check_descriptors("d", &inputs, now);
            prop_assert_eq!(v.statuses.len(), inputs.len());
        }
    }
}

#[test]
fn each_limit_counts_its_outcomes_and_keeps_them_across_reloads() {
    use crate::limit_stats::LimitOutcome;
    let rules = || vec![rule(&[("k", "")], vec![limit("per-key", 5, Unit::Minute)])];
    let e = sharded(1_000, Duration::from_secs(60), rules());
    for _ in 0..6 {
        e.check_descriptors("d", &[desc(&[("k", "a")], 1)], T0);
    }
    let label = |e: &Engine| {
        let id = e.rules().rules().next().unwrap().id.to_string();
        e.rules().label(&id, "per-key").unwrap()
    };
    let counts = |e: &Engine| LimitOutcome::ALL.map(|o| label(e).counts.get(o));
    // 5 of 5: the first, second and third leave 4, 3, 2 (within); the fourth and fifth leave 1
    // and 0 (used >= 80%: near); the sixth is denied.
    assert_eq!(counts(&e), [3, 2, 1, 0], "within, near, over, shadow");
    e.replace_rules(RuleSet::build_after(2, rules(), &e.rules()));
    e.check_descriptors("d", &[desc(&[("k", "a")], 1)], T0);
    assert_eq!(counts(&e), [3, 2, 2, 0], "the reload kept the counts");
    let by_tier = &e.stats().by_tier[crate::rules::Tier::Std.index()];
    assert_eq!(
        (
            by_tier.decisions.load(Ordering::Relaxed),
            by_tier.denied.load(Ordering::Relaxed)
        ),
        (7, 2)
    );
}
