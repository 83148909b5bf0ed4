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
//! How long a memory the errors need depends on the series: a steady one wants days (a candidate
//! that does well on some evenings must not be chased), one that changes regime (an outage, a
//! model whose inputs went to zero) wants an hour. So the errors are kept at four memories —
//! half-lives of an hour, four hours, half a day and two days ("tracks") — each choosing and
//! hedging as above, and what is served is the weighted median of the tracks' forecasts,
//! weighted the same way by each track's own recent error (half-life half a day): the memory
//! length is learned, not tuned. On the real NASA and WorldCup series (`eval-forecast`) this took
//! the worst week against the best single candidate in hindsight from 1.035/1.027 to
//! 1.012/1.026 at 15 minutes, no horizon worse. A candidate's minute-ahead errors also count,
//! at every longer horizon, for the minutes whose scores there are still pending
//! (`Selector::blind_penalty`), beyond what is usual for it in each track's memory: one that
//! stops fitting is left within minutes at every horizon (WorldCup98 1.026 → 1.012).
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

/// The memories the errors are kept at (half-lives in minutes), one track each.
pub const TRACK_HALF_LIVES: [f64; 4] = [60.0, 240.0, 720.0, 2_880.0];
const TRACKS: usize = TRACK_HALF_LIVES.len();

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectorConfig {
    /// Minutes after which a track's past error weighs half as much when the tracks are
    /// weighed against each other (each track's candidates decay at the track's own half-life).
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
            half_life_minutes: 720.0,
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

/// What every candidate said at one origin (one that could not: the fallback's value), and
/// what each track served.
struct Said {
    origin: i64,
    by: [[f64; HORIZON]; METHODS],
    by_track: [[f64; HORIZON]; TRACKS],
}

/// The candidates' errors at one memory length, and what that memory chooses.
#[derive(Clone, Copy)]
struct Track {
    keep: f64,
    errors: [[Decayed; METHODS]; HORIZON],
    chosen: [Method; HORIZON],
}

impl Track {
    fn new(half_life_minutes: f64) -> Track {
        Track {
            keep: 0.5f64.powf(1.0 / half_life_minutes.max(1.0)),
            errors: [[Decayed::default(); METHODS]; HORIZON],
            chosen: [Method::default(); HORIZON],
        }
    }

    /// `blind[h][m]`: how much worse candidate `m` has done one minute ahead than the best, summed
    /// over the minutes whose `h`-ahead scores are not in yet (see `Selector::blind_penalty`).
    fn choose(&mut self, config: &SelectorConfig, blind: &[[f64; METHODS]; HORIZON]) {
        let blind = self.beyond_usual(blind);
        for (h, blind) in blind.iter().enumerate() {
            let errors = &self.errors[h];
            let error = |m: Method| {
                let e = errors[m.index()];
                (e.sum + blind[m.index()]) / e.weight.max(1e-9)
            };
            let eligible = |m: Method| errors[m.index()].weight >= config.min_weight;
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
            .min_by(|a, b| error(*a).total_cmp(&error(*b)));
            let Some(best) = best else { continue };
            let current_error = if eligible(current) {
                error(current)
            } else {
                f64::INFINITY
            };
            if error(best) < current_error * (1.0 - config.switch_margin) {
                self.chosen[h] = best;
            }
        }
    }

    /// The blind minutes' penalty (`Selector::blind_penalty`) less what this track's memory
    /// says is usual for each candidate one minute ahead: only a change in fit counts. A
    /// candidate that is always worse one minute ahead but better further out (`day` on a
    /// series whose minutes jump about while its days repeat) is not moved off the horizons it
    /// serves best (NAB's `nyc_taxi` at 5 minutes: 1.046 → 1.027 of the best in hindsight; the
    /// NASA, WorldCup98 and other NAB series within ±0.003).
    fn beyond_usual(&self, blind: &[[f64; METHODS]; HORIZON]) -> [[f64; METHODS]; HORIZON] {
        std::array::from_fn(|i| self.beyond_usual_at(i, &blind[i]))
    }

    fn beyond_usual_at(&self, i: usize, blind: &[f64; METHODS]) -> [f64; METHODS] {
        let one_ahead = &self.errors[0];
        let scored = |e: &Decayed| e.weight > 0.0;
        let least = one_ahead
            .iter()
            .filter(|e| scored(e))
            .map(Decayed::mean)
            .fold(f64::INFINITY, f64::min);
        std::array::from_fn(|m| {
            let e = &one_ahead[m];
            let usual_excess = if scored(e) && least.is_finite() {
                e.mean() - least
            } else {
                0.0
            };
            // `i` blind minutes at horizon index `i` (h − 1), as in the penalty.
            (blind[m] - usual_excess * i as f64).max(0.0)
        })
    }

    /// The forecast this track serves at horizon index `i` and the candidate it is (see
    /// `SelectorConfig::hedge_rate`).
    fn serve(
        &self,
        by: &[[f64; HORIZON]; METHODS],
        i: usize,
        rate: f64,
        blind: &[f64; METHODS],
    ) -> (f64, Method) {
        let chosen = self.chosen[i];
        let blind = &self.beyond_usual_at(i, blind);
        let values: [f64; METHODS] = std::array::from_fn(|m| by[m][i]);
        let named = |m: usize| Method::ALL[m];
        // Weighed as chosen: the blind minutes' excess added as if already scored.
        let errors: [Decayed; METHODS] = std::array::from_fn(|m| {
            let e = self.errors[i][m];
            Decayed {
                sum: e.sum + blind[m],
                weight: e.weight,
            }
        });
        match weighted_median(&values, &errors, chosen.index(), rate) {
            Some(m) => (values[m], named(m)),
            None => (values[chosen.index()], chosen),
        }
    }
}

/// The weighted median of `values` (one per scored thing: a candidate, or a track), each
/// weighted `exp(−rate × (its decayed error sum − the least) / the best's mean error)`; the
/// index of the best-scored one saying that value. `None` while nothing is scored.
fn weighted_median<const N: usize>(
    values: &[f64; N],
    errors: &[Decayed; N],
    chosen: usize,
    rate: f64,
) -> Option<usize> {
    if rate <= 0.0 || errors.iter().all(|e| e.weight < 1.0) {
        return None;
    }
    let least = errors.iter().map(|e| e.sum).fold(f64::INFINITY, f64::min);
    // In units of the best's mean error: what counts is being relatively worse.
    let unit = (least / errors[chosen].weight.max(1.0)).max(1e-9);
    let mut weighted: Vec<(f64, f64, usize)> = (0..N)
        .map(|k| (values[k], (-rate * (errors[k].sum - least) / unit).exp(), k))
        .collect();
    // Stable: equal values keep their order (which of them is named is decided below).
    weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let half = weighted.iter().map(|x| x.1).sum::<f64>() / 2.0;
    let mut seen = 0.0;
    let &(value, _, _) = weighted.iter().find(|x| {
        seen += x.1;
        seen >= half
    })?;
    // The one named is the best-scored saying that value (one that cannot speak yet says the
    // fallback's value and is not named for it).
    weighted
        .iter()
        .filter(|x| x.0 == value)
        .min_by(|a, b| {
            errors[a.2]
                .sum
                .total_cmp(&errors[b.2].sum)
                .then((b.2 == chosen).cmp(&(a.2 == chosen)))
                .then(a.2.cmp(&b.2))
        })
        .map(|x| x.2)
}

/// The selector of one series.
pub struct Selector {
    config: SelectorConfig,
    /// How the tracks' own errors decay.
    keep: f64,
    /// Counts up to the last minute observed (NaN: unknown), a week and a horizon long (f32: a
    /// week is 40 KB a series).
    history: VecDeque<f32>,
    last_minute: Option<i64>,
    smoother: Smoother,
    said: VecDeque<Said>,
    tracks: [Track; TRACKS],
    /// Each track's error of what it served, per horizon.
    track_errors: [[Decayed; TRACKS]; HORIZON],
    /// Every candidate's one-minute-ahead error of the last `HORIZON` scored minutes, newest
    /// last (see `blind_penalty`).
    recent_one: VecDeque<[f64; METHODS]>,
    /// The track chosen per horizon, and its chosen candidate.
    chosen_track: [usize; HORIZON],
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
            tracks: TRACK_HALF_LIVES.map(Track::new),
            track_errors: [[Decayed::default(); TRACKS]; HORIZON],
            recent_one: VecDeque::new(),
            chosen_track: [0; HORIZON],
            chosen: [Method::default(); HORIZON],
        }
    }

    /// The method chosen at each horizon (index 0: one minute ahead).
    pub fn chosen(&self) -> &[Method; HORIZON] {
        &self.chosen
    }

    /// Recent mean sMAPE of `method` at horizon `h` (1-based), at the memory chosen there;
    /// infinite when never scored.
    pub fn recent_error(&self, method: Method, h: usize) -> f64 {
        self.tracks[self.chosen_track[h - 1]].errors[h - 1][method.index()].mean()
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
            for said in &self.said {
                let h = (minute - said.origin) as usize;
                if !(1..=HORIZON).contains(&h) {
                    continue;
                }
                for m in 0..METHODS {
                    let p = said.by[m][h - 1];
                    if p.is_finite() {
                        let error = smape_term(actual, p);
                        for track in &mut self.tracks {
                            track.errors[h - 1][m].add(error, track.keep);
                        }
                    }
                }
                if h == 1 {
                    let one: [f64; METHODS] = std::array::from_fn(|m| {
                        let p = said.by[m][0];
                        if p.is_finite() {
                            smape_term(actual, p)
                        } else {
                            0.0
                        }
                    });
                    self.recent_one.push_back(one);
                    while self.recent_one.len() > HORIZON {
                        self.recent_one.pop_front();
                    }
                }
                for (t, served) in said.by_track.iter().enumerate() {
                    if served[h - 1].is_finite() {
                        self.track_errors[h - 1][t]
                            .add(smape_term(actual, served[h - 1]), self.keep);
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

    /// Per horizon `h` and candidate: its one-minute-ahead errors summed over the last `h − 1`
    /// scored minutes, less the least such sum — added to its error sum at `h` as if those
    /// minutes were already scored there. A forecast `h` minutes ahead is scored `h` minutes
    /// after it was made, so when a candidate stops fitting, the `h − 1` forecasts it has made
    /// since are out, unscored, and will be as wrong; its one-minute errors say so at once.
    /// On WorldCup98, `day` (yesterday's semi-final, which went to extra time) kept being
    /// served a quarter of an hour ahead for half an hour after a semi-final without extra
    /// time ended, at five times the model's error: most of the one week that missed 1.02×
    /// the best candidate in hindsight (1.026 → 1.012).
    fn blind_penalty(&self) -> [[f64; METHODS]; HORIZON] {
        let mut penalty = [[0.0; METHODS]; HORIZON];
        for (i, row) in penalty.iter_mut().enumerate() {
            let window = i.min(self.recent_one.len());
            if window == 0 {
                continue;
            }
            let recent = self.recent_one.iter().rev().take(window);
            let mut mean = [0.0; METHODS];
            for one in recent {
                for (s, e) in mean.iter_mut().zip(one) {
                    *s += e / window as f64;
                }
            }
            let least = mean.iter().copied().fold(f64::INFINITY, f64::min);
            for (p, m) in row.iter_mut().zip(mean) {
                *p = (m - least) * window as f64;
            }
        }
        penalty
    }

    fn choose(&mut self) {
        let blind = self.blind_penalty();
        for track in &mut self.tracks {
            track.choose(&self.config, &blind);
        }
        for h in 0..HORIZON {
            let errors = &self.track_errors[h];
            let current = self.chosen_track[h];
            let best = (0..TRACKS)
                .filter(|&t| errors[t].weight > 0.0)
                .min_by(|&a, &b| errors[a].mean().total_cmp(&errors[b].mean()));
            if let Some(best) = best
                && errors[best].mean() < errors[current].mean() * (1.0 - self.config.switch_margin)
            {
                self.chosen_track[h] = best;
            }
            self.chosen[h] = self.tracks[self.chosen_track[h]].chosen[h];
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

    /// What each track serves at horizon index `i`, and what is served: the weighted median
    /// of the tracks' forecasts by their own recent errors (the chosen track's before any is
    /// scored), with the candidate it is.
    fn serve(&self, by: &[[f64; HORIZON]; METHODS], i: usize) -> ([f64; TRACKS], (f64, Method)) {
        let rate = self.config.hedge_rate;
        let blind = self.blind_penalty();
        let per_track: [(f64, Method); TRACKS] =
            std::array::from_fn(|t| self.tracks[t].serve(by, i, rate, &blind[i]));
        let values = per_track.map(|(v, _)| v);
        let chosen = self.chosen_track[i];
        let t = weighted_median(&values, &self.track_errors[i], chosen, rate).unwrap_or(chosen);
        (values, per_track[t])
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
        let per_horizon: Vec<([f64; TRACKS], (f64, Method))> =
            (0..HORIZON).map(|i| self.serve(&by, i)).collect();
        let by_track: [[f64; HORIZON]; TRACKS] =
            std::array::from_fn(|t| std::array::from_fn(|i| per_horizon[i].0[t]));
        let served: Vec<(f64, Method)> = per_horizon.iter().map(|p| p.1).collect();
        let choice = Choice {
            forecast: served.iter().map(|s| s.0).collect(),
            methods: served.iter().map(|s| s.1).collect(),
            candidates: by.to_vec(),
        };
        self.said.push_back(Said {
            origin,
            by,
            by_track,
        });
        while self.said.len() > HORIZON {
            self.said.pop_front();
        }
        choice
    }
}

#[cfg(test)]
#[path = "selector_tests.rs"]
mod tests;
