use super::*;
use crate::forecast::{baseline, eval};

fn window(requests: impl Fn(usize) -> f64, start_minute: i64) -> Vec<MinutePoint> {
    (0..WINDOW)
        .map(|i| MinutePoint::requests_only(start_minute + i as i64, requests(i)))
        .collect()
}

#[test]
fn encoding_is_scale_free_and_decodes_back() {
    // The same shape at 1× and 100×: the request feature differs only by the log(1+x) bend.
    let small = encode(&window(|i| 10.0 + (i % 5) as f64, 0));
    let large = encode(&window(|i| 1000.0 + 100.0 * (i % 5) as f64, 0));
    assert_eq!(small.input.len(), WINDOW * DIM);
    assert!((small.scale - 12.0).abs() < 1e-9);
    for (a, b) in small.input.iter().zip(&large.input).step_by(DIM) {
        assert!((a - b).abs() < 0.1, "{a} vs {b}");
    }
    // An output of 0 means "the window's mean", whatever the scale.
    let f = decode(&[0.0; HORIZON], large.scale);
    assert!(f.iter().all(|&y| (y - 1200.0).abs() < 1e-6), "{f:?}");
    // Garbage outputs stay finite and non-negative.
    let f = decode(&[f32::MAX, -1e30, f32::NAN, 0.0], 10.0);
    assert!(f.iter().all(|y| y.is_finite() || y.is_nan()));
    assert!(f[1] == 0.0 && f[0].is_finite());
}

#[test]
fn time_features_follow_the_clock() {
    // 1995-07-03 (a Monday) 06:00 UTC, in minutes since the epoch.
    let monday_6am = 804_729_600 / 60 + 6 * 60;
    let e = encode(&window(|_| 1.0, monday_6am));
    let at = |minute: usize, feature: &str| {
        let f = NAMES.iter().position(|n| *n == feature).unwrap();
        e.input[minute * DIM + f]
    };
    // 06:00 is a quarter of the day: sin = 1, cos = 0.
    assert!((at(0, "tod_sin") - 1.0).abs() < 1e-6);
    assert!(at(0, "tod_cos").abs() < 1e-6);
    // Monday 06:00 is 1/28 of the week in.
    let angle = std::f64::consts::TAU / 28.0;
    assert!((at(0, "dow_sin") as f64 - angle.sin()).abs() < 1e-6);
    assert!(at(0, "log_requests_rel").abs() < 1e-6);
}

#[test]
fn fallback_is_the_mean_of_the_last_five_minutes() {
    let w = window(|i| i as f64, 0);
    let f = baseline::Fallback::forecast_one(&w);
    assert_eq!(f, [57.0; HORIZON]);
}

#[test]
fn baselines_follow_their_definitions() {
    let series: Vec<f64> = (0..baseline::WEEK + 20).map(|i| i as f64).collect();
    use baseline::Baseline::*;
    let m = baseline::WEEK + 10;
    let cases = [
        (Last, 1, Some(m as f64 - 1.0)),
        (Last, 15, Some(m as f64 - 15.0)),
        (Mean5, 1, Some(m as f64 - 3.0)),
        (Mean5, 5, Some(m as f64 - 7.0)),
        (Day, 5, Some((m - baseline::DAY) as f64)),
        (Week, 15, Some(10.0)),
    ];
    for (b, h, expected) in cases {
        assert_eq!(b.predict(&series, m, h), expected, "{} at {h}", b.name());
    }
    assert_eq!(Week.predict(&series, baseline::WEEK - 1, 1), None);
    assert_eq!(Mean5.predict(&series, 4, 1), None);
}

#[test]
fn smape_and_mae_follow_the_format() {
    let mut e = eval::ErrorSum::default();
    e.add(0.0, 0.0); // both zero: 0
    e.add(10.0, 30.0); // |20| / 20 = 1
    e.add(0.0, 5.0); // 5 / 2.5 = 2
    let s = e.score();
    assert!((s.smape - 1.0).abs() < 1e-12);
    assert!((s.mae - 25.0 / 3.0).abs() < 1e-12);
}
