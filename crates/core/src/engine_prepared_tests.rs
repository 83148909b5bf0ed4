//! The two-halved decision equals the in-process one: run on twin engines, every call's verdict
//! matches (statuses, denial consuming nothing, anomaly actions); `settle_locally` divides limits.

use super::super::*;
use crate::engine_suite::{T0, desc, rule};
use crate::learn::actions::{Action, ActionKind, ActionTable, Signal};
use crate::limit::{Algorithm, LimitSpec, Unit};
use crate::time::NANOS_PER_SEC as S;

fn spec(rpu: u64, algorithm: Algorithm) -> LimitSpec {
    LimitSpec {
        algorithm,
        ..LimitSpec::per(rpu, Unit::Minute)
    }
}

fn twins() -> (Engine, Engine) {
    let rules = || {
        RuleSet::build(
            1,
            vec![
                rule(&[("tb", "")], vec![spec(5, Algorithm::TokenBucket)]),
                rule(&[("fw", "")], vec![spec(3, Algorithm::FixedWindow)]),
                rule(&[("sw", "")], vec![spec(4, Algorithm::SlidingWindow)]),
            ],
        )
    };
    let (a, b) = (
        Engine::new(EngineConfig::default()),
        Engine::new(EngineConfig::default()),
    );
    a.replace_rules(rules());
    b.replace_rules(rules());
    (a, b)
}

fn two_halves(e: &Engine, inputs: &[DescriptorInput<'_>], now: Nanos) -> Verdict {
    let prepared = e.prepare_descriptors("d", inputs, now);
    let outcomes = e.settle_locally(&prepared, 1, now);
    e.conclude(&Engine::descriptor_caller(inputs), prepared, &outcomes, now)
}

#[test]
fn two_halves_decide_as_one() {
    let (whole, halves) = twins();
    // (descriptors, hits): single limits of each algorithm, and pairs where one denies.
    let calls: &[&[(&str, &str)]] = &[
        &[("tb", "a")],
        &[("fw", "a")],
        &[("sw", "a")],
        &[("tb", "b"), ("fw", "b")],
    ];
    for step in 0..40u64 {
        let now = T0 + step * S / 4;
        for entries in calls {
            let inputs: Vec<DescriptorInput<'_>> = entries.iter().map(|&e| desc(&[e], 1)).collect();
            let expected = whole.check_descriptors("d", &inputs, now);
            let got = two_halves(&halves, &inputs, now);
            assert_eq!(
                got.over_limit, expected.over_limit,
                "{entries:?} at step {step}"
            );
            for (g, x) in got.statuses.iter().zip(&expected.statuses) {
                assert_eq!(
                    (g.over_limit, g.remaining, g.reset_after, g.retry_after),
                    (x.over_limit, x.remaining, x.reset_after, x.retry_after),
                    "{entries:?} at step {step}"
                );
            }
        }
    }
    let counts = |e: &Engine| {
        let s = e.stats();
        let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        (n(&s.decisions), n(&s.denied), n(&s.shadow_denied))
    };
    assert_eq!(counts(&whole), counts(&halves));
}

#[test]
fn a_blocked_caller_needs_no_bucket() {
    let (_, e) = twins();
    let client: std::sync::Arc<str> = "10.0.0.9".into();
    let action = Action {
        client: client.clone(),
        kind: ActionKind::Block,
        score: 1.0,
        since: T0,
        expires_at: T0 + 60 * S,
        shadow: false,
        model_version: 0,
        signal: Signal::Denylist,
        why: "".into(),
    };
    let table = ActionTable::from_map([(client, action)].into_iter().collect());
    e.set_actions(std::sync::Arc::new(table));
    let inputs = [desc(&[("remote_address", "10.0.0.9"), ("tb", "x")], 1)];
    let prepared = e.prepare_descriptors("d", &inputs, T0);
    assert!(prepared.is_blocked());
    assert_eq!(prepared.ops().len(), 0);
    let verdict = e.conclude(&Engine::descriptor_caller(&inputs), prepared, &[], T0);
    assert!(verdict.over_limit);
}

#[test]
fn settling_locally_enforces_a_share_of_each_limit() {
    // (replicas, admitted of a 5/min token bucket and a 3/min fixed window)
    for (share, tb, fw) in [(1, 5, 3), (2, 2, 1), (3, 1, 1), (10, 1, 1)] {
        let (_, e) = twins();
        let admitted = |key: &'static str| {
            (0..10)
                .filter(|_| {
                    let inputs = [desc(&[(key, "z")], 1)];
                    let prepared = e.prepare_descriptors("d", &inputs, T0);
                    let outcomes = e.settle_locally(&prepared, share, T0);
                    !e.conclude(&Engine::descriptor_caller(&inputs), prepared, &outcomes, T0)
                        .over_limit
                })
                .count()
        };
        assert_eq!((admitted("tb"), admitted("fw")), (tb, fw), "share {share}");
    }
}
