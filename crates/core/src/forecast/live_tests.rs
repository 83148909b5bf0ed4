use super::*;
use crate::forecast::{HORIZON, MinutePoint};
use crate::limit::{LimitSpec, Unit};
use crate::rules::Rule;

const MIN: Nanos = 60 * NANOS_PER_SEC;

fn minute_of(endpoint: &str, tier: Tier, requests: u64) -> EndpointMinute {
    EndpointMinute {
        endpoint: endpoint.into(),
        tier,
        requests,
        allowed: requests,
        denied: 0,
        denied_anomaly: 0,
        denied_cut: 0,
        errors: 0,
    }
}

/// A forecaster that always fails, to check the pipeline degrades instead of stopping.
struct Broken;

impl Forecaster for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn forecast(&mut self, _: &[&[MinutePoint]]) -> Result<Vec<Forecast>, String> {
        Err("model exploded".into())
    }
}

/// Runs `minutes` of traffic (payment requests per minute) through a pipeline.
fn run(config: PressureConfig, payments: &[u64], forecaster: &mut dyn Forecaster) -> Pipeline {
    let mut p = Pipeline::new(config);
    let capacities = vec![("/pay".to_string(), 100)];
    for (i, &n) in payments.iter().enumerate() {
        let start = i as u64 * MIN;
        let traffic = [
            minute_of("/pay", Tier::Std, n * 3 / 4),
            minute_of("/pay", Tier::Prm, n / 4),
            minute_of("/browse", Tier::Std, 500),
        ];
        p.step(
            start,
            start + MIN,
            &traffic,
            &capacities,
            &[],
            forecaster,
            true,
        );
    }
    p
}

#[test]
fn a_failing_forecaster_degrades_to_the_baseline() {
    let p = run(PressureConfig::default(), &[40; 61], &mut Broken);
    let last = p.last();
    assert_eq!(last.forecaster, "baseline:mean5");
    assert_eq!(last.error.as_deref(), Some("model exploded"));
    let pay = last.forecasts.iter().find(|(k, _)| k == "/pay").unwrap();
    assert_eq!(pay.1, [40.0; HORIZON]);
    // The total series is forecast too; the unwatched endpoint is not.
    assert!(last.forecasts.iter().any(|(k, _)| k == TOTAL));
    assert!(!last.forecasts.iter().any(|(k, _)| k == "/browse"));
}

#[test]
fn no_forecast_before_a_full_window_and_shares_come_from_tiers() {
    let p = run(PressureConfig::default(), &[40; 59], &mut Fallback);
    assert!(
        p.last().forecasts.is_empty(),
        "59 minutes: no full window yet"
    );
    let series = &p.series["/pay"];
    assert_eq!(series.back().unwrap().prm_share, 0.25);
    assert_eq!(series.back().unwrap().requests, 40.0);
}

#[test]
fn shadow_cuts_are_recorded_but_not_enforced() {
    let over = [150; 3];
    let enforced = run(PressureConfig::default(), &over, &mut Fallback);
    assert_eq!(enforced.enforced_factor(), 0.5);
    let shadow = run(
        PressureConfig {
            shadow: true,
            ..PressureConfig::default()
        },
        &over,
        &mut Fallback,
    );
    assert_eq!(shadow.enforced_factor(), 1.0);
    assert!(shadow.cut().is_some_and(|c| c.shadow && c.factor == 0.5));
}

#[test]
fn capacities_come_from_high_priority_endpoint_rules() {
    let rule = |endpoint: &str, priority, capacity| Rule {
        priority,
        capacity_per_minute: capacity,
        ..Rule::new(
            "d",
            &[("endpoint", endpoint)],
            vec![LimitSpec::per(10, Unit::Second)],
        )
    };
    let rules = RuleSet::build(
        1,
        [
            rule("/pay", Priority::High, Some(600)),
            rule("/login", Priority::High, None),
            rule("/browse", Priority::Low, Some(50)),
            Rule {
                domain: "e".into(),
                ..rule("/pay", Priority::High, Some(400))
            },
        ],
    );
    assert_eq!(capacities(&rules), [("/pay".to_string(), 400)]);
}

/// A forecaster that always says the same number.
struct Says(f64);

impl Forecaster for Says {
    fn name(&self) -> &str {
        "says"
    }
    fn forecast(&mut self, windows: &[&[MinutePoint]]) -> Result<Vec<Forecast>, String> {
        Ok(vec![[self.0; HORIZON]; windows.len()])
    }
}

#[test]
fn what_is_served_is_the_candidate_with_the_lowest_recent_error() {
    // (what, the model's constant, the method that speaks for /pay at 1 minute)
    let cases = [
        (
            "a model three times the traffic",
            120.0,
            &["mean5", "last", "smooth"][..],
        ),
        (
            "a model that is right",
            40.0,
            &["model", "mean5", "last", "smooth"][..],
        ),
    ];
    for (what, says, speaking) in cases {
        let p = run(PressureConfig::default(), &[40; 150], &mut Says(says));
        let last = p.last();
        let pay = last.forecasts.iter().find(|(k, _)| k == "/pay").unwrap();
        let methods = last.methods.iter().find(|m| m.series == "/pay").unwrap();
        assert!(
            speaking.contains(&methods.at_1.name()),
            "{what}: {methods:?}"
        );
        // The pressure policy sees what is served, not the model's 120.
        assert_eq!(pay.1[0], 40.0, "{what}");
        assert!(
            methods.why.starts_with("1 min: "),
            "{what}: {}",
            methods.why
        );
        assert_eq!(last.forecasts.len(), last.methods.len());
    }
}
