//! The minute on a virtual clock: what it installs in the engine, adaptive or not.

use super::*;
use crate::engine::{EngineConfig, Subject};
use crate::forecast::baseline::Fallback;
use crate::limit::{LimitSpec, Unit};
use crate::matcher::RuleSet;
use crate::rules::{Priority, Rule, Tier};
use crate::time::NANOS_PER_SEC;

const MINUTE: Nanos = 60 * NANOS_PER_SEC;
const T0: Nanos = 1_700_000_000 * NANOS_PER_SEC - (1_700_000_000 * NANOS_PER_SEC) % MINUTE;

/// A high-priority endpoint with a capacity of 100 a minute, and a low-priority one.
fn engine() -> Engine {
    let e = Engine::new(EngineConfig::default());
    let endpoint = |path: &str, priority, capacity| Rule {
        domain: "sluice".into(),
        priority,
        capacity_per_minute: capacity,
        ..Rule::new(
            "sluice",
            &[("endpoint", path)],
            vec![LimitSpec::per(10_000, Unit::Minute)],
        )
    };
    e.replace_rules(RuleSet::build(
        1,
        [
            endpoint("/api/payment", Priority::High, Some(100)),
            endpoint("/api/browse", Priority::Low, None),
        ],
    ));
    e
}

/// Closes `minutes` minutes, each with `payments` requests to the high-priority endpoint.
fn run(adaptive: bool, minutes: u64, payments: u64) -> (Engine, Vec<ClosedMinute>) {
    let e = engine();
    let mut state = Minutes::new(
        LearnerConfig::default(),
        PressureConfig::default(),
        adaptive,
    );
    let mut closed = Vec::new();
    for m in 0..minutes {
        let start = T0 + m * MINUTE;
        let subject = Subject {
            remote_address: "192.0.2.1",
            endpoint: "/api/payment",
            tier: Tier::Prm,
            ..Subject::default()
        };
        for i in 0..payments {
            e.should_allow("sluice", &subject, 1, start + i);
        }
        closed.push(state.close(
            &e,
            MinuteInput {
                start,
                end: start + MINUTE,
                loads: &[],
                forecaster: &mut Fallback,
            },
        ));
    }
    (e, closed)
}

#[test]
fn traffic_over_capacity_cuts_in_adaptive_mode_only() {
    // (adaptive, cut installed after the last minute, a pressure change recorded)
    for (adaptive, factor, recorded) in [(true, 0.5, true), (false, 1.0, false)] {
        let (e, closed) = run(adaptive, 3, 150);
        let last = closed.last().unwrap();
        assert_eq!(e.pressure(), factor, "adaptive {adaptive}");
        assert_eq!(last.factor, factor, "adaptive {adaptive}");
        assert_eq!(
            closed.iter().any(|c| c.pressure.is_some()),
            recorded,
            "adaptive {adaptive}"
        );
        // Traffic is recorded either way, and every minute is its own.
        assert!(closed.iter().all(|c| !c.tick.traffic.is_empty()));
        assert!(closed.iter().all(|c| c.adaptive == adaptive));
    }
}

#[test]
fn quiet_traffic_changes_nothing() {
    let (e, closed) = run(true, 3, 20);
    assert_eq!(e.pressure(), 1.0);
    assert!(
        closed
            .iter()
            .all(|c| c.pressure.is_none() && c.tick.actions.is_empty())
    );
}
