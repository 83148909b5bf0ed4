use super::*;
use crate::forecast::HORIZON;

const MIN: Nanos = 60 * NANOS_PER_SEC;

fn flat(x: f64) -> Forecast {
    [x; HORIZON]
}

/// Runs the policy over minutes of (forecast for /pay, measured /pay, load of "db") and returns
/// the factor in force after each minute.
fn run(config: &PressureConfig, minutes: &[(f64, f64, Option<f64>)]) -> Vec<f64> {
    let capacities = vec![("/pay".to_string(), 100)];
    let mut cut: Option<Cut> = None;
    let mut out = Vec::new();
    for (i, &(forecast, measured, load)) in minutes.iter().enumerate() {
        let now = (i as u64 + 1) * MIN;
        let forecasts = vec![("/pay".to_string(), flat(forecast))];
        let measured = vec![("/pay".to_string(), measured)];
        let loads: Vec<(String, f64, Nanos)> = load
            .map(|l| ("db".to_string(), l, now))
            .into_iter()
            .collect();
        let (next, _) = config.step(
            now,
            cut.as_ref(),
            &Signals {
                capacities: &capacities,
                forecasts: &forecasts,
                measured: &measured,
                loads: &loads,
            },
        );
        cut = next;
        out.push(cut.as_ref().map_or(1.0, |c| c.factor));
    }
    out
}

#[test]
fn tightens_ahead_of_a_forecast_spike_and_restores_with_hysteresis() {
    let config = PressureConfig {
        hold: Duration::from_secs(120),
        ..PressureConfig::default()
    };
    // (what, minutes of (forecast, measured, load), factors expected after each minute)
    type Minute = (f64, f64, Option<f64>);
    let cases: Vec<(&str, Vec<Minute>, Vec<f64>)> = vec![
        ("calm", vec![(50.0, 50.0, None); 3], vec![1.0; 3]),
        (
            "forecast over capacity tightens before traffic gets there",
            vec![(50.0, 50.0, None), (130.0, 60.0, None), (140.0, 90.0, None)],
            vec![1.0, 0.5, 0.5],
        ),
        (
            "measured over capacity tightens too",
            vec![(50.0, 120.0, None)],
            vec![0.5],
        ),
        (
            "restored once calm for the hold (2 min) after the last trigger",
            vec![
                (130.0, 60.0, None),
                (70.0, 60.0, None),
                (70.0, 60.0, None),
                (70.0, 60.0, None),
            ],
            vec![0.5, 0.5, 1.0, 1.0],
        ),
        (
            "between release and trigger it stays cut (no flapping)",
            vec![
                (130.0, 60.0, None),
                (90.0, 85.0, None),
                (90.0, 85.0, None),
                (90.0, 85.0, None),
            ],
            vec![0.5, 0.5, 0.5, 0.5],
        ),
        (
            "backend load at the threshold",
            vec![
                (10.0, 10.0, Some(0.5)),
                (10.0, 10.0, Some(0.85)),
                (10.0, 10.0, Some(0.75)),
            ],
            vec![1.0, 0.5, 0.5],
        ),
        (
            "load recovers below threshold − 0.1 and is released after the hold",
            vec![
                (10.0, 10.0, Some(0.9)),
                (10.0, 10.0, Some(0.6)),
                (10.0, 10.0, Some(0.6)),
                (10.0, 10.0, Some(0.6)),
            ],
            vec![0.5, 0.5, 1.0, 1.0],
        ),
    ];
    for (what, minutes, expected) in cases {
        assert_eq!(run(&config, &minutes), expected, "{what}");
    }
}

#[test]
fn stale_load_reports_are_ignored_and_causes_are_named() {
    let config = PressureConfig::default();
    let loads = vec![("db".to_string(), 0.99, 0)];
    let (cut, change) = config.step(
        10 * MIN,
        None,
        &Signals {
            loads: &loads,
            ..Signals::default()
        },
    );
    assert!(cut.is_none() && change.is_none(), "a report 10 minutes old");
    let capacities = vec![("/pay".to_string(), 100)];
    let mut f = flat(50.0);
    f[6] = 210.0;
    let forecasts = vec![("/pay".to_string(), f)];
    let (cut, change) = config.step(
        MIN,
        None,
        &Signals {
            capacities: &capacities,
            forecasts: &forecasts,
            ..Signals::default()
        },
    );
    let change = change.unwrap();
    assert_eq!(change.what, "tightened");
    assert_eq!(
        change.cause,
        "forecast: /pay at 210/min in 7 min, capacity 100/min"
    );
    assert_eq!(cut.unwrap().factor, 0.5);
}

#[test]
fn cut_limits_stay_inside_the_floor() {
    // (limit, factor, floor, expected)
    let cases = [
        (100, 0.5, None, 50),
        (101, 0.5, None, 51),
        (100, 0.5, Some(80), 80),
        (1, 0.5, None, 1),
        (100, 0.0, None, 1),
        (100, 0.5, Some(500), 100),
    ];
    for (limit, factor, floor, expected) in cases {
        assert_eq!(
            cut_limit(limit, factor, floor),
            expected,
            "{limit} × {factor} floor {floor:?}"
        );
    }
}
