use std::sync::Arc;

use super::*;
use crate::engine::EngineConfig;
use crate::engine_suite::{T0, limit, rule};
use crate::learn::actions::{Action, ActionTable};
use crate::limit::Unit;
use crate::matcher::RuleSet;
use crate::rules::{Priority, Rule};
use crate::time::NANOS_PER_SEC as S;

fn engine() -> Engine {
    let e = Engine::new(EngineConfig::default());
    e.replace_rules(RuleSet::build(
        1,
        [
            // endpoint /api, then per address: 100 a minute each.
            rule(
                &[("endpoint", "/api"), ("remote_address", "")],
                vec![limit("per-address", 100, Unit::Minute)],
            ),
            // endpoint /api alone: 1,000 a minute; a low-priority browse endpoint.
            rule(
                &[("endpoint", "/api")],
                vec![limit("endpoint", 1_000, Unit::Minute)],
            ),
            Rule {
                priority: Priority::Low,
                ..rule(
                    &[("endpoint", "/browse")],
                    vec![limit("browse", 100, Unit::Minute)],
                )
            },
        ],
    ));
    e
}

fn action(client: &str, kind: ActionKind) -> Action {
    Action {
        client: client.into(),
        kind,
        score: 0.9,
        since: T0,
        expires_at: T0 + 300 * S,
        shadow: false,
        model_version: 1,
        signal: Default::default(),
        why: "".into(),
    }
}

#[test]
fn a_bucket_meets_the_rules_in_any_order_and_the_most_specific_decides() {
    let e = engine();
    let limit_of = |q: BucketQuota| match q {
        BucketQuota::Limit { rule, limit, .. } => Some((rule, limit)),
        _ => None,
    };
    // (bucket entries, expected rule and limit)
    let table: [(&[(&str, &str)], Option<(&str, u64)>); 5] = [
        (
            &[("remote_address", "192.0.2.1"), ("endpoint", "/api")],
            Some(("d|endpoint=/api|remote_address", 100)),
        ),
        (
            &[("endpoint", "/api"), ("remote_address", "192.0.2.1")],
            Some(("d|endpoint=/api|remote_address", 100)),
        ),
        (&[("endpoint", "/api")], Some(("d|endpoint=/api", 1_000))),
        (&[("endpoint", "/other")], None),
        (&[("tenant", "x")], None),
    ];
    for (entries, expected) in table {
        let got = limit_of(e.bucket_quota("d", entries, T0));
        let got = got.as_ref().map(|(r, l)| (r.as_str(), *l));
        assert_eq!(got, expected, "{entries:?}");
    }
    assert_eq!(
        e.bucket_quota("other-domain", &[("endpoint", "/api")], T0),
        BucketQuota::Uncovered
    );
}

#[test]
fn actions_and_the_cut_reach_the_bucket() {
    let e = engine();
    e.set_actions(Arc::new(ActionTable::from_actions([
        action("192.0.2.66", ActionKind::Block),
        action("192.0.2.77", ActionKind::Throttle { per_minute: 6 }),
    ])));
    let bucket = |ip| [("endpoint", "/api"), ("remote_address", ip)];
    assert_eq!(
        e.bucket_quota("d", &bucket("192.0.2.66"), T0),
        BucketQuota::Blocked {
            client: "192.0.2.66".into()
        }
    );
    assert!(matches!(
        e.bucket_quota("d", &bucket("192.0.2.77"), T0),
        BucketQuota::Limit {
            throttle: Some(6),
            ..
        }
    ));
    // Expired: the bucket is its rule's again.
    assert!(matches!(
        e.bucket_quota("d", &bucket("192.0.2.66"), T0 + 301 * S),
        BucketQuota::Limit { throttle: None, .. }
    ));
    // The cut: STD on a low-priority rule, never PRM.
    e.set_pressure(0.5);
    let browse = |tier| e.bucket_quota("d", &[("endpoint", "/browse"), ("tier", tier)], T0);
    assert!(matches!(
        browse("STD"),
        BucketQuota::Limit {
            limit: 50,
            cut: true,
            ..
        }
    ));
    assert!(matches!(
        browse("PRM"),
        BucketQuota::Limit {
            limit: 100,
            cut: false,
            ..
        }
    ));
}

#[test]
fn usage_is_counted_and_observed_under_the_buckets_client_within_a_bound() {
    let e = engine();
    let entries = [("endpoint", "/api"), ("remote_address", "192.0.2.9")];
    e.record_usage(&entries, 30, 10, 5 * S, T0, MAX_OBSERVED_PER_REPORT);
    e.record_usage(
        &entries,
        1_000_000,
        0,
        5 * S,
        T0 + 5 * S,
        MAX_OBSERVED_PER_REPORT,
    );
    // A bucket naming no client is counted, not observed.
    e.record_usage(
        &[("endpoint", "/api")],
        7,
        0,
        5 * S,
        T0,
        MAX_OBSERVED_PER_REPORT,
    );
    assert_eq!(
        e.stats()
            .decisions
            .load(std::sync::atomic::Ordering::Relaxed),
        1_000_047
    );
    assert_eq!(
        e.stats().denied.load(std::sync::atomic::Ordering::Relaxed),
        10
    );
    let data = e.observer().drain();
    assert_eq!(data.clients.len(), 1);
    let c = &data.clients[0];
    assert_eq!(&*c.client, "192.0.2.9");
    assert_eq!(c.requests as u64, 40 + MAX_OBSERVED_PER_REPORT);
    assert_eq!(c.denied, 10);
}

#[test]
fn a_period_of_several_units_is_told_per_unit_never_above_it() {
    // (limit, unit, multiplier) -> (requests, unit)
    let table = [
        ((5, Unit::Second, 30), (10, Unit::Minute)),
        ((1_000, Unit::Minute, 5), (200, Unit::Minute)),
        ((7, Unit::Second, 90), (280, Unit::Hour)),
        ((100, Unit::Minute, 1), (100, Unit::Minute)),
        ((3, Unit::Day, 7), (12, Unit::Month)),
    ];
    for ((limit, unit, m), expected) in table {
        let (n, u) = per_unit(limit, unit, m);
        assert_eq!((n, u), expected, "{limit} per {m} {unit:?}");
        let period = unit.seconds() * u64::from(m);
        assert!(
            n as u128 * period as u128 <= limit as u128 * u.seconds() as u128,
            "never above the rule's rate"
        );
    }
}
