//! Hand-made series, each with the candidate it should come to use.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Runs a selector over `series` with `model` (origin index → forecast) and returns, per
/// horizon 1 and 15, the method chosen at the end and the mean sMAPE of what it served over the
/// second half.
fn run(series: &[f64], model: impl Fn(usize) -> Option<Forecast>) -> ([Method; 2], [f64; 2]) {
    let mut s = Selector::new(SelectorConfig::default());
    let mut served: Vec<Vec<f64>> = Vec::new();
    let mut err = [0.0; 2];
    let mut n = [0usize; 2];
    for (t, &y) in series.iter().enumerate() {
        s.observe(t as i64, y);
        for (k, h) in [1usize, HORIZON].into_iter().enumerate() {
            if t >= series.len() / 2 && t >= h {
                err[k] += smape_term(y, served[t - h][h - 1]);
                n[k] += 1;
            }
        }
        let f = model(t);
        served.push(s.forecast(f.as_ref()).forecast);
    }
    (
        [s.chosen()[0], s.chosen()[HORIZON - 1]],
        [err[0] / n[0] as f64, err[1] / n[1] as f64],
    )
}

fn noisy(len: usize, seed: u64, f: impl Fn(usize) -> f64, noise: f64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|t| (f(t) * (1.0 + noise * (rng.random::<f64>() - 0.5))).max(0.0))
        .collect()
}

/// The mean sMAPE of a fixed rule `predict(series, t, h)` over the second half.
fn baseline_error(series: &[f64], h: usize, predict: impl Fn(&[f64], usize) -> f64) -> f64 {
    let from = (series.len() / 2).max(h + 5);
    let terms: Vec<f64> = (from..series.len())
        .map(|t| smape_term(series[t], predict(series, t - h)))
        .collect();
    terms.iter().sum::<f64>() / terms.len() as f64
}

fn last(s: &[f64], o: usize) -> f64 {
    s[o]
}

fn mean5(s: &[f64], o: usize) -> f64 {
    s[o - 4..=o].iter().sum::<f64>() / 5.0
}

#[test]
fn each_series_comes_to_the_candidate_it_should() {
    let len = 2_000;
    // (what, series, model's forecast from origin t, acceptable choices at h=1 and h=15)
    let level = noisy(len, 1, |_| 100.0, 0.4);
    let ramp: Vec<f64> = (0..len).map(|t| 50.0 + 2.0 * t as f64).collect();
    let smooth = noisy(
        len,
        2,
        |t| 100_000.0 * (1.0 + 0.3 * (t as f64 / 400.0).sin()),
        0.002,
    );
    let low = noisy(len, 3, |_| 3.0, 1.8)
        .iter()
        .map(|x| x.round())
        .collect::<Vec<_>>();
    let biased = |_t: usize| Some([150.0; HORIZON]);
    // A model as good as mean5 on average, wrong in its own way each minute: no candidate alone
    // beats the others, their mean does.
    let model_noise = noisy(len, 5, |_| 100.0, 0.25);
    let unbiased = |t: usize| Some([model_noise[t]; HORIZON]);
    type Case<'a> = (
        &'a str,
        &'a [f64],
        &'a dyn Fn(usize) -> Option<Forecast>,
        &'a [Method],
        &'a [Method],
    );
    let cases: [Case; 6] = [
        (
            "a noisy level",
            &level,
            &biased,
            // A level's noise averages out over half an hour: the median of it, or a mean.
            &[Method::Median30, Method::Mean5, Method::Smooth],
            &[Method::Median30, Method::Mean5, Method::Smooth],
        ),
        (
            "a noisy level with a noisy, unbiased model",
            &level,
            &unbiased,
            // Their mean beats each of the three; a level's half-hour median, steadier still,
            // may beat the mean.
            &[Method::Blend, Method::Median30],
            // Fifteen minutes out the three are closer: any of them, within 2% of naive.
            &[
                Method::Blend,
                Method::Median30,
                Method::Mean5,
                Method::Model,
            ],
        ),
        (
            "a ramp",
            &ramp,
            &biased,
            &[Method::Smooth, Method::Last],
            &[Method::Smooth],
        ),
        (
            "smooth and high-volume",
            &smooth,
            &biased,
            &[Method::Last, Method::Smooth],
            &[Method::Last, Method::Smooth, Method::Mean5],
        ),
        (
            "noisy and low-volume",
            &low,
            &|_| None,
            &[Method::Median30, Method::Mean5, Method::Smooth],
            &[Method::Median30, Method::Mean5, Method::Smooth],
        ),
        (
            "a level with a model that knows the future",
            &level,
            &|t: usize| {
                let mut f = [0.0; HORIZON];
                for (i, x) in f.iter_mut().enumerate() {
                    *x = level.get(t + 1 + i).copied().unwrap_or(100.0);
                }
                Some(f)
            },
            &[Method::Model],
            &[Method::Model],
        ),
    ];
    for (what, series, model, at_1, at_15) in cases {
        let (chosen, served) = run(series, model);
        assert!(
            at_1.contains(&chosen[0]),
            "{what}: {:?} at 1 min",
            chosen[0]
        );
        assert!(
            at_15.contains(&chosen[1]),
            "{what}: {:?} at 15 min",
            chosen[1]
        );
        // Never worse than naive: within 2% of the better of last and mean5 at each horizon.
        for (k, h) in [1, HORIZON].into_iter().enumerate() {
            let best = baseline_error(series, h, last).min(baseline_error(series, h, mean5));
            assert!(
                served[k] <= best * 1.02 + 1e-9,
                "{what}: served {} vs best baseline {best} at {h} min",
                served[k]
            );
        }
    }
}

#[test]
fn a_skipped_minute_is_unknown_and_scores_nothing() {
    let mut s = Selector::new(SelectorConfig::default());
    for t in 0..30 {
        s.observe(t, 10.0);
        s.forecast(None);
    }
    // Minutes 30..=39 missing: the last value is then unknown, and the fallback order speaks.
    s.observe(40, 12.0);
    let c = s.forecast(None);
    assert_eq!(c.forecast.len(), HORIZON);
    assert!(c.forecast.iter().all(|x| x.is_finite()));
    assert_eq!(
        c.forecast[0], 12.0,
        "mean5 is unknown across the gap; last speaks"
    );
    // Minutes before the last one are ignored.
    s.observe(39, 1e9);
    assert_eq!(s.forecast(None).forecast[0], 12.0);
}

#[test]
fn yesterday_is_chosen_for_a_daily_pattern() {
    // A strong daily shape with little noise; two days and a half of it.
    let series = noisy(
        DAY * 5 / 2,
        4,
        |t| {
            let x = (t % DAY) as f64 / DAY as f64;
            if (0.3..0.32).contains(&x) {
                5_000.0
            } else {
                200.0
            }
        },
        0.02,
    );
    let (chosen, _) = run(&series, |_| None);
    assert_eq!(chosen[1], Method::Day, "at 15 minutes");
}

/// Every candidate's forecast comes with the choice (scored in hindsight by `eval`), and what
/// is served is one of them.
#[test]
fn a_choice_carries_every_candidates_forecast() {
    let mut s = Selector::new(SelectorConfig::default());
    let mut choice = Choice::default();
    for m in 0..120 {
        s.observe(m, 10.0 + (m % 7) as f64);
        choice = s.forecast(None);
    }
    assert_eq!(choice.candidates.len(), METHODS);
    for i in 0..HORIZON {
        assert!(
            choice.candidates.iter().any(|c| c[i] == choice.forecast[i]),
            "served {} is no candidate's at {i}",
            choice.forecast[i]
        );
    }
}

/// The memory length is learned: a model right for three days that then goes wrong (its
/// inputs broke) is left within the hour, the short memory taking over from the long one (one
/// memory of four hours served 1.055× mean5's error here).
#[test]
fn a_model_that_goes_wrong_after_days_is_left_within_the_hour() {
    let days = 3 * DAY;
    let len = days + 6 * 60;
    let truth = noisy(
        len,
        11,
        |t| 200.0 + 150.0 * ((t % DAY) as f64 / DAY as f64 * std::f64::consts::TAU).sin(),
        0.2,
    );
    let model = |t: usize| -> Option<Forecast> {
        let mut f = [0.0; HORIZON];
        for (i, x) in f.iter_mut().enumerate() {
            let target = truth.get(t + 1 + i).copied().unwrap_or(200.0);
            // Right (to within noise) for three days, then three times the traffic.
            *x = if t + 1 + i < days {
                target
            } else {
                3.0 * target
            };
        }
        Some(f)
    };
    let mut s = Selector::new(SelectorConfig::default());
    let mut served: Vec<Vec<f64>> = Vec::new();
    let (mut err, mut mean5_err, mut n) = (0.0, 0.0, 0);
    for (t, &y) in truth.iter().enumerate() {
        s.observe(t as i64, y);
        let h = HORIZON;
        // From an hour after the change: what is served 15 minutes ahead against mean5's.
        if t >= days + 60 {
            err += smape_term(y, served[t - h][h - 1]);
            mean5_err += smape_term(y, mean5(&truth, t - h));
            n += 1;
        }
        served.push(s.forecast(model(t).as_ref()).forecast);
    }
    let (err, mean5_err) = (err / n as f64, mean5_err / n as f64);
    assert!(
        err <= mean5_err * 1.02,
        "served {err:.3} against mean5's {mean5_err:.3} from an hour after the change"
    );
}

/// Four days with the same evening ramp (`day` forecasts it best a quarter of an hour ahead);
/// on the fourth the ramp ends an hour early, as a match without extra time. The minute-ahead
/// errors show it at once, and the quarter-hour choice leaves `day` within minutes (9), not
/// after the 21 its quarter-hour record alone takes.
#[test]
fn a_candidate_that_stops_fitting_is_dropped_at_every_horizon_within_minutes() {
    let ramp = |t: usize, end: usize| {
        let m = t % DAY;
        if (1_000..end).contains(&m) {
            100.0 + 10.0 * (m - 1_000) as f64
        } else {
            100.0
        }
    };
    let early = 3 * DAY + 1_100;
    let mut s = Selector::new(SelectorConfig::default());
    let mut day_at_15 = Vec::new();
    for t in 0..early + 40 {
        let y = ramp(t, if t >= 3 * DAY { 1_100 } else { 1_200 });
        s.observe(t as i64, y);
        let choice = s.forecast(None);
        if t + 30 > early {
            day_at_15.push((t as i64 - early as i64, choice.methods[HORIZON - 1]));
        }
    }
    let before: Vec<_> = day_at_15.iter().filter(|(d, _)| *d < 0).collect();
    assert!(
        before.iter().all(|(_, m)| *m == Method::Day),
        "day serves the ramp before it ends: {before:?}"
    );
    let late: Vec<_> = day_at_15
        .iter()
        .filter(|(d, m)| *d >= 12 && *m == Method::Day)
        .collect();
    // Without the minute-ahead errors counted for the pending forecasts: 21 minutes.
    assert!(
        late.is_empty(),
        "still day 12 minutes after the drop: {late:?}"
    );
}

/// A candidate that is always worse one minute ahead than another (`day` where each day's level
/// differs from the last, the minutes within a day flat) carries no blind-minutes penalty for
/// it: only a change in its minute-ahead fit counts (`Track::beyond_usual`), and the penalty
/// still comes the minute it starts to fit worse than usual.
#[test]
fn a_usual_minute_ahead_excess_is_no_blind_penalty_but_a_new_one_is() {
    let level = |t: usize| {
        if (t / DAY).is_multiple_of(2) {
            1_000.0
        } else {
            1_200.0
        }
    };
    let mut s = Selector::new(SelectorConfig::default());
    let noon = 3 * DAY + DAY / 2;
    for t in 0..=noon {
        s.observe(t as i64, level(t));
        s.forecast(None);
    }
    let day = Method::Day.index();
    let hour = &s.tracks[0];
    let raw = s.blind_penalty();
    let adjusted = hour.beyond_usual(&raw);
    assert!(
        raw[HORIZON - 1][day] > 2.0,
        "day is worse one minute ahead than last: {}",
        raw[HORIZON - 1][day]
    );
    assert!(
        adjusted[HORIZON - 1][day] < 0.01 * raw[HORIZON - 1][day],
        "as usual, so no penalty: {} of {}",
        adjusted[HORIZON - 1][day],
        raw[HORIZON - 1][day]
    );
    // The level of today moves away from yesterday's: `day`'s excess grows beyond its usual.
    for t in noon + 1..noon + 6 {
        s.observe(t as i64, level(t) * 1.5);
        s.forecast(None);
    }
    let adjusted = s.tracks[0].beyond_usual(&s.blind_penalty());
    assert!(
        adjusted[HORIZON - 1][day] > 0.5,
        "a new excess counts: {}",
        adjusted[HORIZON - 1][day]
    );
}
