//! Choosing the forecast, per series and per horizon, by recent error: never worse than naive by
//! construction. Each minute every candidate — the model, `last`, `mean5`, a damped-trend
//! exponential smoother, the mean of the model, `mean5` and the smoother, the median of the last
//! half hour, the same minute yesterday and last week — forecasts the next
//! [`HORIZON`] minutes; when a minute closes, each forecast made for it is scored (sMAPE term),
//! and each candidate keeps an exponentially decayed mean of its errors per horizon. The
//! candidate with the lowest recent error at `h` is *chosen* (with a small margin before
//! switching, so noise does not flip it minute by minute); what is *served* is the weighted
//! median of all the candidates' forecasts, weighted by their recent errors (`hedge_rate`),
//! which on a long series is the chosen one and on a short or changing one hedges.
//!
//! A series where the model is poor (a scale or shape it never saw) is forecast by `last` or the
//! smoother within a few hours; one where it is good keeps it. The choice is deterministic (a
//! replay makes the same), costs a few hundred float operations a minute, and says why.
//!
//! Not here: running the model (the caller passes its forecast, if any) or storing history.

use std::collections::VecDeque;

use serde::Serialize;

use super::baseline::{DAY, WEEK};
use super::{Forecast, HORIZON};

/// The candidates, in report order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Model,
    Last,
    #[default]
    Mean5,
    Smooth,
    /// The mean of the model (when it speaks), `mean5` and the smoother: a combination hedges
    /// where each alone lags or overshoots (a sale's ramp starting: 0.96× the best baseline one
    /// minute ahead on the generated payment spike, where the smoother alone was 1.02×).
    Blend,
    /// The median of the last 30 known minutes: a robust level. Where counts are small and
    /// noisy, a quarter of an hour ahead, it beats every mean (sMAPE punishes the mean's pull
    /// towards a burst); on smooth series it lags and is not chosen.
    Median30,
    Day,
    Week,
}

pub const METHODS: usize = 8;

impl Method {
    pub const ALL: [Method; METHODS] = [
        Method::Model,
        Method::Last,
        Method::Mean5,
        Method::Smooth,
        Method::Blend,
        Method::Median30,
        Method::Day,
        Method::Week,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Model => "model",
            Method::Last => "last",
            Method::Mean5 => "mean5",
            Method::Smooth => "smooth",
            Method::Blend => "blend",
            Method::Median30 => "median30",
            Method::Day => "day",
            Method::Week => "week",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectorConfig {
    /// Minutes after which a past error weighs half as much.
    pub half_life_minutes: f64,
    /// A challenger must be this much better (relative) to replace the current choice.
    pub switch_margin: f64,
    /// Scored minutes (decayed weight) a candidate needs before it can be chosen.
    pub min_weight: f64,
    /// What is served is the weighted median of the candidates' forecasts, each weighted
    /// `exp(−hedge_rate × (its decayed error sum − the least) / the best's mean error)` — how
    /// many minutes' worth of the best's error it is behind: on a long series the best
    /// candidate holds nearly all the weight, on a short or changing one the weight is shared
    /// and the median hedges instead of betting on what did best before the change. A median,
    /// not a mean: it is always one candidate's forecast (a mean of counts is never exactly 0,
    /// and sMAPE scores a quiet minute's non-zero forecast at its maximum).
    pub hedge_rate: f64,
}

impl Default for SelectorConfig {
    fn default() -> Self {
        SelectorConfig {
            half_life_minutes: 240.0,
            switch_margin: 0.02,
            min_weight: 20.0,
            hedge_rate: 0.1,
        }
    }
}

/// An exponentially decayed mean.
#[derive(Clone, Copy, Debug, Default)]
struct Decayed {
    sum: f64,
    weight: f64,
}

impl Decayed {
    fn add(&mut self, x: f64, keep: f64) {
        self.sum = self.sum * keep + x;
        self.weight = self.weight * keep + 1.0;
    }

    fn mean(&self) -> f64 {
        if self.weight > 0.0 {
            self.sum / self.weight
        } else {
            f64::INFINITY
        }
    }
}

/// One sMAPE term: |y − ŷ| / ((|y| + |ŷ|) / 2), 0 when both are 0.
pub fn smape_term(actual: f64, predicted: f64) -> f64 {
    let denom = (actual.abs() + predicted.abs()) / 2.0;
    if denom > 0.0 {
        (actual - predicted).abs() / denom
    } else {
        0.0
    }
}

/// Holt's linear smoother with a damped trend (fixed, conservative parameters: it is one
/// candidate among several, not a fitted model).
#[derive(Clone, Copy, Debug, Default)]
struct Smoother {
    level: f64,
    trend: f64,
    started: bool,
}

const ALPHA: f64 = 0.5;
const BETA: f64 = 0.1;
const PHI: f64 = 0.9;

impl Smoother {
    fn update(&mut self, y: f64) {
        if !self.started {
            *self = Smoother {
                level: y,
                trend: 0.0,
                started: true,
            };
            return;
        }
        let previous = self.level;
        self.level = ALPHA * y + (1.0 - ALPHA) * (self.level + PHI * self.trend);
        self.trend = BETA * (self.level - previous) + (1.0 - BETA) * PHI * self.trend;
    }

    fn forecast(&self, h: usize) -> f64 {
        let damped: f64 = (1..=h).map(|i| PHI.powi(i as i32)).sum();
        (self.level + damped * self.trend).max(0.0)
    }
}

/// What every candidate said at one origin (one that could not: the fallback's value).
struct Said {
    origin: i64,
    by: [[f64; HORIZON]; METHODS],
}

/// The selector of one series.
pub struct Selector {
    config: SelectorConfig,
    keep: f64,
    /// Counts up to the last minute observed (NaN: unknown), a week and a horizon long (f32: a
    /// week is 40 KB a series).
    history: VecDeque<f32>,
    last_minute: Option<i64>,
    smoother: Smoother,
    said: VecDeque<Said>,
    errors: [[Decayed; METHODS]; HORIZON],
    chosen: [Method; HORIZON],
}

impl std::fmt::Debug for Selector {
    // Not the week of history: what it chose and when.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selector")
            .field("last_minute", &self.last_minute)
            .field("chosen", &self.chosen)
            .finish_non_exhaustive()
    }
}

/// What a selector chose at one origin: per horizon, the forecast served and the method.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Choice {
    pub forecast: Vec<f64>,
    pub methods: Vec<Method>,
    /// Every candidate's forecast, by `Method` index then horizon (for scoring each in
    /// hindsight; not part of what is served or reported).
    #[serde(skip)]
    pub candidates: Vec<[f64; HORIZON]>,
}

impl Choice {
    /// Why these methods speak: each candidate's recent error at 1 and `HORIZON` minutes.
    pub fn why(&self, selector: &Selector) -> String {
        let mut parts = Vec::new();
        for (i, h) in [(0, 1), (HORIZON - 1, HORIZON)] {
            let Some(chosen) = self.methods.get(i) else {
                continue;
            };
            let mut scored: Vec<(f64, Method)> = Method::ALL
                .into_iter()
                .map(|m| (selector.recent_error(m, h), m))
                .filter(|(e, _)| e.is_finite())
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0));
            let others: Vec<String> = scored
                .iter()
                .take(4)
                .map(|(e, m)| format!("{} {:.3}", m.name(), e))
                .collect();
            parts.push(if others.is_empty() {
                format!("{h} min: {} (nothing scored yet)", chosen.name())
            } else {
                format!(
                    "{h} min: {} (recent sMAPE {})",
                    chosen.name(),
                    others.join(", ")
                )
            });
        }
        parts.join("; ")
    }
}

impl Selector {
    pub fn new(config: SelectorConfig) -> Selector {
        Selector {
            config,
            keep: 0.5f64.powf(1.0 / config.half_life_minutes.max(1.0)),
            history: VecDeque::new(),
            last_minute: None,
            smoother: Smoother::default(),
            said: VecDeque::new(),
            errors: [[Decayed::default(); METHODS]; HORIZON],
            chosen: [Method::default(); HORIZON],
        }
    }

    /// The method chosen at each horizon (index 0: one minute ahead).
    pub fn chosen(&self) -> &[Method; HORIZON] {
        &self.chosen
    }

    /// Recent mean sMAPE of `method` at horizon `h` (1-based); infinite when never scored.
    pub fn recent_error(&self, method: Method, h: usize) -> f64 {
        self.errors[h - 1][method.index()].mean()
    }

    /// The count of `minute` (NaN: unknown). Minutes come in order; a skipped minute is unknown.
    /// Scores every forecast made for this minute, then re-chooses.
    pub fn observe(&mut self, minute: i64, actual: f64) {
        if let Some(last) = self.last_minute {
            if minute <= last {
                return;
            }
            let skipped = (minute - last - 1).min((WEEK + HORIZON) as i64);
            for _ in 0..skipped {
                self.push(f64::NAN);
            }
        }
        self.last_minute = Some(minute);
        self.push(actual);
        if actual.is_finite() {
            self.smoother.update(actual);
            let keep = self.keep;
            for said in &self.said {
                let h = (minute - said.origin) as usize;
                if !(1..=HORIZON).contains(&h) {
                    continue;
                }
                for m in 0..METHODS {
                    let p = said.by[m][h - 1];
                    if p.is_finite() {
                        self.errors[h - 1][m].add(smape_term(actual, p), keep);
                    }
                }
            }
        }
        while self
            .said
            .front()
            .is_some_and(|s| minute - s.origin >= HORIZON as i64)
        {
            self.said.pop_front();
        }
        self.choose();
    }

    fn push(&mut self, x: f64) {
        self.history.push_back(x as f32);
        while self.history.len() > WEEK + HORIZON {
            self.history.pop_front();
        }
    }

    fn choose(&mut self) {
        for h in 0..HORIZON {
            let errors = &self.errors[h];
            let eligible = |m: Method| errors[m.index()].weight >= self.config.min_weight;
            let current = self.chosen[h];
            // Ties go to the simplest: a candidate that could not speak scored as the fallback.
            let best = [
                Method::Mean5,
                Method::Last,
                Method::Smooth,
                Method::Blend,
                Method::Median30,
                Method::Day,
                Method::Week,
                Method::Model,
            ]
            .into_iter()
            .filter(|&m| eligible(m))
            .min_by(|a, b| {
                errors[a.index()]
                    .mean()
                    .total_cmp(&errors[b.index()].mean())
            });
            let Some(best) = best else { continue };
            let current_error = if eligible(current) {
                errors[current.index()].mean()
            } else {
                f64::INFINITY
            };
            if errors[best.index()].mean() < current_error * (1.0 - self.config.switch_margin) {
                self.chosen[h] = best;
            }
        }
    }

    /// The count `back` minutes before the last one observed (0: the last).
    fn back(&self, back: usize) -> f64 {
        let n = self.history.len();
        if back < n {
            self.history[n - 1 - back] as f64
        } else {
            f64::NAN
        }
    }

    /// The median of the known counts among the last `n` minutes; NaN until half are known.
    fn median_of_last(&self, n: usize) -> f64 {
        let mut known: Vec<f64> = (0..n)
            .map(|b| self.back(b))
            .filter(|v| v.is_finite())
            .collect();
        if known.len() * 2 < n {
            return f64::NAN;
        }
        known.sort_by(f64::total_cmp);
        let mid = known.len() / 2;
        if known.len() % 2 == 1 {
            known[mid]
        } else {
            (known[mid - 1] + known[mid]) / 2.0
        }
    }

    /// The forecast served at horizon index `i` and the candidate it is: the weighted median
    /// (see `SelectorConfig::hedge_rate`) once anything was scored, the chosen one before.
    fn serve(&self, by: &[[f64; HORIZON]; METHODS], i: usize) -> (f64, Method) {
        let errors = &self.errors[i];
        let chosen = self.chosen[i];
        if self.config.hedge_rate <= 0.0 || errors.iter().all(|e| e.weight < 1.0) {
            return (by[chosen.index()][i], chosen);
        }
        let least = errors.iter().map(|e| e.sum).fold(f64::INFINITY, f64::min);
        // In units of the best candidate's mean error: what counts is being relatively worse.
        let unit = (least / errors[chosen.index()].weight.max(1.0)).max(1e-9);
        let rate = self.config.hedge_rate;
        let mut weighted: Vec<(f64, f64, Method)> = Method::ALL
            .into_iter()
            .map(|m| {
                let w = (-rate * (errors[m.index()].sum - least) / unit).exp();
                (by[m.index()][i], w, m)
            })
            .collect();
        // Stable: equal values keep the report order (which of them is named is decided below).
        weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let half = weighted.iter().map(|x| x.1).sum::<f64>() / 2.0;
        let mut seen = 0.0;
        let Some(&(value, _, _)) = weighted.iter().find(|x| {
            seen += x.1;
            seen >= half
        }) else {
            return (by[chosen.index()][i], chosen);
        };
        // The candidate named is the best-scored one saying that value (one that cannot speak
        // yet says the fallback's value and is not named for it).
        let named = weighted
            .iter()
            .filter(|x| x.0 == value)
            .min_by(|a, b| {
                errors[a.2.index()]
                    .sum
                    .total_cmp(&errors[b.2.index()].sum)
                    .then((b.2 == chosen).cmp(&(a.2 == chosen)))
                    .then(a.2.cmp(&b.2))
            })
            .map_or(chosen, |x| x.2);
        (value, named)
    }

    /// Forecasts the next `HORIZON` minutes after the last observed one: every candidate's
    /// forecast is kept to be scored, and the chosen one's is returned. `model`: the model's
    /// forecast from the same origin, if it made one.
    pub fn forecast(&mut self, model: Option<&Forecast>) -> Choice {
        let Some(origin) = self.last_minute else {
            return Choice::default();
        };
        let mut by = [[f64::NAN; HORIZON]; METHODS];
        let last = self.back(0);
        let mean5 = (0..5).map(|b| self.back(b)).sum::<f64>() / 5.0;
        let median30 = self.median_of_last(30);
        for h in 1..=HORIZON {
            let i = h - 1;
            if let Some(f) = model {
                by[Method::Model.index()][i] = f[i].max(0.0);
            }
            by[Method::Last.index()][i] = last;
            by[Method::Mean5.index()][i] = mean5;
            by[Method::Median30.index()][i] = median30;
            if self.smoother.started {
                by[Method::Smooth.index()][i] = self.smoother.forecast(h);
            }
            // The target minute is origin + h: a day before it is DAY - h minutes back.
            by[Method::Day.index()][i] = self.back(DAY - h);
            by[Method::Week.index()][i] = self.back(WEEK - h);
            // A candidate that cannot speak (no model this minute, no yesterday yet) is taken to
            // say what the fallback says: every candidate is then scored on the same minutes, so
            // a newly available one is not chosen for a lucky first hour, and serving it means
            // the same.
            let fallback = [Method::Mean5, Method::Last, Method::Smooth]
                .into_iter()
                .map(|m| by[m.index()][i])
                .find(|v| v.is_finite())
                .unwrap_or(0.0);
            let blended: Vec<f64> = [
                (model.is_some(), Method::Model),
                (true, Method::Mean5),
                (self.smoother.started, Method::Smooth),
            ]
            .into_iter()
            .filter(|&(speaks, m)| speaks && by[m.index()][i].is_finite())
            .map(|(_, m)| by[m.index()][i])
            .collect();
            if !blended.is_empty() {
                by[Method::Blend.index()][i] = blended.iter().sum::<f64>() / blended.len() as f64;
            }
            for said in by.iter_mut().map(|column| &mut column[i]) {
                if !said.is_finite() {
                    *said = fallback;
                }
            }
        }
        let served: Vec<(f64, Method)> = (0..HORIZON).map(|i| self.serve(&by, i)).collect();
        let choice = Choice {
            forecast: served.iter().map(|s| s.0).collect(),
            methods: served.iter().map(|s| s.1).collect(),
            candidates: by.to_vec(),
        };
        self.said.push_back(Said { origin, by });
        while self.said.len() > HORIZON {
            self.said.pop_front();
        }
        choice
    }
}

#[cfg(test)]
#[path = "selector_tests.rs"]
mod tests;
