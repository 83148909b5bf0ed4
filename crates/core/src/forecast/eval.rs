//! Scoring forecasts against what happened: MAE and sMAPE per horizon for what Sluice serves (the
//! selector's choice), the forecaster alone and the baselines, over the same minutes (`sluice
//! eval-forecast`, the replay report's `forecast`).
//!
//! sMAPE is the mean of |y − ŷ| / ((|y| + |ŷ|) / 2), 0 when both are 0.

use std::collections::BTreeMap;

use serde::Serialize;

use super::baseline::Baseline;
use super::selector::{Choice, METHODS, Method, Selector, SelectorConfig};
use super::{Forecast, Forecaster, HORIZON, MinutePoint, WINDOW};

/// Horizons reported, in minutes.
pub const REPORTED: [usize; 3] = [1, 5, 15];

/// Running MAE and sMAPE.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorSum {
    pub n: u64,
    abs: f64,
    smape: f64,
}

impl ErrorSum {
    pub fn add(&mut self, actual: f64, predicted: f64) {
        let diff = (actual - predicted).abs();
        let denom = (actual.abs() + predicted.abs()) / 2.0;
        self.n += 1;
        self.abs += diff;
        if denom > 0.0 {
            self.smape += diff / denom;
        }
    }

    pub fn merge(&mut self, other: &ErrorSum) {
        self.n += other.n;
        self.abs += other.abs;
        self.smape += other.smape;
    }

    pub fn score(&self) -> Score {
        let n = self.n.max(1) as f64;
        Score {
            mae: self.abs / n,
            smape: self.smape / n,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Score {
    pub mae: f64,
    pub smape: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Evaluation {
    /// The forecaster that produced the `model` scores (`lstm`, or the fallback's name).
    pub forecaster: String,
    pub minutes_evaluated: u64,
    /// Horizon (minutes) → method (`selected`: what Sluice serves; `model`, `last`, `mean5`,
    /// `day`, `week`) → score.
    pub horizons: BTreeMap<u32, BTreeMap<&'static str, Score>>,
    /// Horizon → the selector's choices over the evaluated minutes: method → share of minutes.
    pub selected_methods: BTreeMap<u32, BTreeMap<&'static str, f64>>,
    /// Horizon → what is served against the best single candidate in hindsight (sMAPE ratios),
    /// over the whole evaluation and per week of evaluated minutes.
    pub hindsight: BTreeMap<u32, Hindsight>,
}

/// What is served against the best single candidate in hindsight: selected sMAPE ÷ the least
/// sMAPE any one candidate (`selector::Method`) made over the same minutes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Hindsight {
    pub overall: f64,
    pub best_overall: &'static str,
    /// Per whole week of evaluated minutes (a last partial week of at least a day counts too).
    pub weeks: Vec<f64>,
    pub worst_week: f64,
}

/// Minutes of a hindsight week.
const WEEK_MINUTES: usize = 7 * 1440;

/// Per-week sMAPE sums of what is served and of each candidate at one horizon.
#[derive(Default)]
struct WeekScores {
    served: Vec<ErrorSum>,
    candidates: Vec<[ErrorSum; METHODS]>,
}

impl WeekScores {
    fn add(
        &mut self,
        week: usize,
        actual: f64,
        served: f64,
        candidates: &[[f64; HORIZON]],
        i: usize,
    ) {
        while self.served.len() <= week {
            self.served.push(ErrorSum::default());
            self.candidates.push([ErrorSum::default(); METHODS]);
        }
        self.served[week].add(actual, served);
        for (m, c) in candidates.iter().enumerate().take(METHODS) {
            self.candidates[week][m].add(actual, c[i]);
        }
    }

    fn hindsight(&self) -> Hindsight {
        let ratio = |served: &ErrorSum, candidates: &[ErrorSum; METHODS]| {
            let (best, m) = candidates
                .iter()
                .enumerate()
                .map(|(m, e)| (e.score().smape, m))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap_or((0.0, 0));
            (
                served.score().smape / best.max(1e-12),
                Method::ALL[m].name(),
            )
        };
        let mut served = ErrorSum::default();
        let mut all = [ErrorSum::default(); METHODS];
        let mut weeks = Vec::new();
        for (w, s) in self.served.iter().enumerate() {
            served.merge(s);
            for (a, c) in all.iter_mut().zip(&self.candidates[w]) {
                a.merge(c);
            }
            if s.n >= 1440 {
                weeks.push((ratio(s, &self.candidates[w]).0 * 1000.0).round() / 1000.0);
            }
        }
        let (overall, best_overall) = ratio(&served, &all);
        Hindsight {
            overall: (overall * 1000.0).round() / 1000.0,
            best_overall,
            worst_week: weeks.iter().copied().fold(0.0, f64::max),
            weeks,
        }
    }
}

/// Fewest minutes a baseline must leave to score before it is taken into an evaluation.
pub const MIN_EVALUATED: usize = 60;

/// Forecasts are made this many origins at a time (one model call).
const BATCH: usize = 512;

/// Evaluates `forecaster` and the baselines on `series` (contiguous minutes). Minutes evaluated:
/// every minute after the longest warm-up any method taken needs (a week of history for `week`,
/// which a series shorter than a week and an hour leaves out, as `day` under a day), and with
/// `from`, only minutes at or after it (earlier ones are history only).
pub fn evaluate(
    series: &[MinutePoint],
    forecaster: &mut dyn Forecaster,
    from: Option<i64>,
) -> Result<Evaluation, String> {
    let max_h = *REPORTED.iter().max().expect("horizons");
    // The baselines the series is long enough for: `day` and `week` need a day and a week of
    // history, and leave at least `MIN_EVALUATED` minutes to score (a two-hour trace is scored
    // against `last` and `mean5` only).
    let baselines: Vec<Baseline> = Baseline::ALL
        .into_iter()
        .filter(|b| b.warm_up(max_h) + MIN_EVALUATED <= series.len())
        .collect();
    let warm_up = baselines
        .iter()
        .map(|b| b.warm_up(max_h))
        .chain([WINDOW - 1 + max_h])
        .max()
        .expect("methods");
    let first = series
        .iter()
        .position(|p| from.is_none_or(|f| p.minute >= f))
        .unwrap_or(series.len())
        .max(warm_up);
    let counts: Vec<f64> = series.iter().map(|p| p.requests).collect();
    let mut model = [ErrorSum::default(); HORIZON];
    let mut selected = [ErrorSum::default(); HORIZON];
    let mut chosen: [BTreeMap<&'static str, u64>; HORIZON] =
        std::array::from_fn(|_| BTreeMap::new());
    let mut base = [[ErrorSum::default(); 4]; HORIZON];
    let mut weekly: Vec<WeekScores> = (0..HORIZON).map(|_| WeekScores::default()).collect();
    // Origin o sees minutes o-WINDOW+1..=o and forecasts o+1..=o+HORIZON.
    // Every origin: the selector learns each candidate's error from the start of the series.
    let origins: Vec<usize> = (WINDOW - 1..series.len().saturating_sub(1)).collect();
    // Forecasts by origin; `None` where the window touches an unknown minute.
    let mut forecasts: Vec<Option<Forecast>> = vec![None; series.len()];
    let runnable: Vec<usize> = origins
        .into_iter()
        .filter(|&o| series[o + 1 - WINDOW..=o].iter().all(MinutePoint::is_known))
        .collect();
    for chunk in runnable.chunks(BATCH) {
        let windows: Vec<&[MinutePoint]> =
            chunk.iter().map(|&o| &series[o + 1 - WINDOW..=o]).collect();
        let got = forecaster.forecast(&windows)?;
        if got.len() != chunk.len() {
            return Err(format!(
                "forecaster returned {} forecasts for {} windows",
                got.len(),
                chunk.len()
            ));
        }
        for (&o, f) in chunk.iter().zip(got) {
            forecasts[o] = Some(f);
        }
    }
    // What the selector serves from each origin, fed minute by minute as live.
    let mut selector = Selector::new(SelectorConfig::default());
    let served: Vec<Choice> = series
        .iter()
        .enumerate()
        .map(|(o, p)| {
            selector.observe(p.minute, p.requests);
            selector.forecast(forecasts[o].as_ref())
        })
        .collect();
    // A minute counts at horizon h only when it is known and every method could forecast it, so
    // all methods are scored on the same minutes.
    for m in first..series.len() {
        if !counts[m].is_finite() {
            continue;
        }
        for h in 1..=HORIZON {
            let Some(model_says) = forecasts[m - h].map(|f| f[h - 1]) else {
                continue;
            };
            let mut says = [0.0; 4];
            let all = baselines.iter().zip(&mut says).all(|(b, slot)| {
                match b.predict(&counts, m, h).filter(|p| p.is_finite()) {
                    Some(p) => {
                        *slot = p;
                        true
                    }
                    None => false,
                }
            });
            if !all {
                continue;
            }
            model[h - 1].add(counts[m], model_says);
            let serving = &served[m - h];
            selected[h - 1].add(counts[m], serving.forecast[h - 1]);
            weekly[h - 1].add(
                (m - first) / WEEK_MINUTES,
                counts[m],
                serving.forecast[h - 1],
                &serving.candidates,
                h - 1,
            );
            *chosen[h - 1]
                .entry(serving.methods[h - 1].name())
                .or_default() += 1;
            for (i, p) in says.iter().take(baselines.len()).enumerate() {
                base[h - 1][i].add(counts[m], *p);
            }
        }
    }
    let mut horizons = BTreeMap::new();
    let mut selected_methods = BTreeMap::new();
    let mut hindsight = BTreeMap::new();
    for h in REPORTED {
        hindsight.insert(h as u32, weekly[h - 1].hindsight());
        let mut methods = BTreeMap::new();
        methods.insert("selected", selected[h - 1].score());
        methods.insert("model", model[h - 1].score());
        for (i, b) in baselines.iter().enumerate() {
            methods.insert(b.name(), base[h - 1][i].score());
        }
        horizons.insert(h as u32, methods);
        let n = selected[h - 1].n.max(1) as f64;
        selected_methods.insert(
            h as u32,
            chosen[h - 1]
                .iter()
                .map(|(m, c)| (*m, (*c as f64 / n * 1000.0).round() / 1000.0))
                .collect(),
        );
    }
    Ok(Evaluation {
        forecaster: forecaster.name().to_string(),
        // At horizon 1; longer horizons may lose a few more minutes next to gaps.
        minutes_evaluated: model[0].n,
        horizons,
        selected_methods,
        hindsight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Served worse than the best candidate in week 0 and equal to it in week 1; a week with
    /// less than a day of minutes is left out of the weeks.
    #[test]
    fn hindsight_compares_with_each_weeks_best_candidate() {
        let mut w = WeekScores::default();
        let mut candidates = vec![[120.0; HORIZON]; METHODS];
        candidates[Method::Last as usize] = [110.0; HORIZON];
        for week in 0..2 {
            let served = if week == 0 { 130.0 } else { 110.0 };
            for _ in 0..1440 {
                w.add(week, 100.0, served, &candidates, 0);
            }
        }
        w.add(2, 100.0, 500.0, &candidates, 0);
        let h = w.hindsight();
        let expected = ((30.0 / 115.0) / (10.0 / 105.0) * 1000.0f64).round() / 1000.0;
        assert_eq!(h.weeks, vec![expected, 1.0]);
        assert_eq!(h.worst_week, expected);
        assert_eq!(h.best_overall, "last");
    }
}
