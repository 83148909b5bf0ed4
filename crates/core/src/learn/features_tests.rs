use super::*;
use crate::learn::observe::{Aggregator, Event, Observation, ObserveConfig};
use crate::rules::Tier;
use crate::time::NANOS_PER_SEC;

/// One request of a hand-made minute: (second, endpoint, user agent, outcome status).
type Req = (u64, &'static str, &'static str, Option<u16>);

/// Builds the client-minute of `reqs` through the real aggregator (decisions all allowed, except
/// those listed in `denied`).
fn minute(reqs: &[Req], denied: &[usize]) -> ClientMinute {
    let agg = Aggregator::new(ObserveConfig::default());
    for (i, &(sec, endpoint, ua, status)) in reqs.iter().enumerate() {
        let o = Observation {
            now: 1_000 * NANOS_PER_SEC + sec * NANOS_PER_SEC,
            client: "192.0.2.1",
            user: "",
            tier: Tier::Std,
            endpoint,
            user_agent: ua,
            event: Event::Decision {
                allowed: !denied.contains(&i),
                anomaly: false,
                cut: false,
            },
        };
        agg.record(&o);
        if let Some(status) = status {
            agg.record(&Observation {
                event: Event::Outcome { status },
                ..o
            });
        }
    }
    agg.drain().clients.pop().expect("one client")
}

fn feature(name: &str, x: &Features) -> f64 {
    x[NAMES
        .iter()
        .position(|n| *n == name)
        .expect("known feature")]
}

const FF: &str = "Mozilla/5.0 Firefox/133.0";

#[test]
fn each_feature_on_hand_made_minutes() {
    // (what, requests, denied indexes, feature, expected, tolerance)
    let even: Vec<Req> = (0..10).map(|i| (i * 6, "/a", FF, Some(200))).collect();
    let logins: Vec<Req> = (0..16)
        .map(|i| (i * 3, "/api/login", "curl/8.5.0", Some(401)))
        .collect();
    let mixed: Vec<Req> = vec![
        (0, "/a", FF, Some(200)),
        (1, "/a", FF, Some(200)),
        (2, "/b", "Chrome", Some(404)),
        (10, "/c", FF, Some(200)),
    ];
    let bursty: Vec<Req> = vec![
        (0, "/a", FF, None),
        (1, "/a", FF, None),
        (2, "/a", FF, None),
        (50, "/a", FF, None),
    ];
    type Case<'a> = (&'a str, &'a [Req], &'a [usize], &'a str, f64, f64);
    let cases: Vec<Case> = vec![
        (
            "ten requests",
            &even,
            &[],
            "log_requests",
            (11f64).log2(),
            1e-9,
        ),
        ("no errors", &even, &[], "error_rate", 0.0, 1e-9),
        (
            "16 of 16 failing, shrunk by the prior",
            &logins,
            &[],
            "error_rate",
            16.0 / 20.0,
            1e-9,
        ),
        (
            "auth failures",
            &logins,
            &[],
            "auth_failure_rate",
            16.0 / 20.0,
            1e-9,
        ),
        ("one endpoint", &even, &[], "top_endpoint_share", 1.0, 1e-9),
        (
            "top of three endpoints",
            &mixed,
            &[],
            "top_endpoint_share",
            0.5,
            1e-9,
        ),
        (
            "three endpoints",
            &mixed,
            &[],
            "log_distinct_endpoints",
            2.0,
            1e-9,
        ),
        (
            "two user agents",
            &mixed,
            &[],
            "log_user_agents",
            (3f64).log2(),
            1e-9,
        ),
        (
            "steady 6 s gaps",
            &even,
            &[],
            "log_inter_arrival_mean",
            (7f64).log2(),
            1e-9,
        ),
        (
            "steady gaps: no variation",
            &even,
            &[],
            "inter_arrival_cv",
            0.0,
            1e-9,
        ),
        // gaps 1, 1, 48: mean 50/3, population sd sqrt(((1-m)^2*2 + (48-m)^2)/3)
        (
            "bursty gaps",
            &bursty,
            &[],
            "inter_arrival_cv",
            {
                let m = 50.0 / 3.0;
                (((1.0f64 - m).powi(2) * 2.0 + (48.0 - m).powi(2)) / 3.0).sqrt() / m
            },
            1e-9,
        ),
        (
            "three of ten denied",
            &even,
            &[1, 2, 3],
            "deny_ratio",
            3.0 / 14.0,
            1e-9,
        ),
        ("all on login", &logins, &[], "sensitive_share", 1.0, 1e-9),
        (
            "no sensitive endpoint",
            &even,
            &[],
            "sensitive_share",
            0.0,
            1e-9,
        ),
        (
            "tool agent, failing",
            &logins,
            &[],
            "tool_agent_error",
            16.0 / 20.0,
            1e-9,
        ),
        (
            "browser, failing half",
            &mixed,
            &[],
            "tool_agent_error",
            0.0,
            1e-9,
        ),
    ];
    for (what, reqs, denied, name, expected, tol) in cases {
        let x = extract(&minute(reqs, denied));
        let got = feature(name, &x);
        assert!(
            (got - expected).abs() <= tol,
            "{what}: {name} = {got}, expected {expected}"
        );
    }
}

#[test]
fn one_request_has_a_neutral_rhythm_and_all_features_are_finite() {
    let x = extract(&minute(&[(0, "/a", "", None)], &[]));
    assert_eq!(feature("inter_arrival_cv", &x), 1.0);
    assert!(x.iter().all(|v| v.is_finite()));
}
