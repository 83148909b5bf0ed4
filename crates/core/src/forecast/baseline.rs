//! Statistical baselines: the yardsticks a forecaster is judged against, and the fallback that
//! forecasts when the model cannot (no runtime, no model file, a broken model).
//!
//! At horizon `h` for minute `m` (definitions of `docs/trace-format.md`): `last` is the value at
//! `m − h`, `mean5` the mean of the 5 minutes ending at `m − h`, `day` / `week` the value at
//! `m − 1 day` / `m − 7 days`.

use super::{Forecast, Forecaster, HORIZON, MinutePoint};

pub const DAY: usize = 1440;
pub const WEEK: usize = 7 * DAY;

/// The baselines, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    Last,
    Mean5,
    Day,
    Week,
}

impl Baseline {
    pub const ALL: [Baseline; 4] = [
        Baseline::Last,
        Baseline::Mean5,
        Baseline::Day,
        Baseline::Week,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Baseline::Last => "last",
            Baseline::Mean5 => "mean5",
            Baseline::Day => "day",
            Baseline::Week => "week",
        }
    }

    /// Minutes of history needed before minute `m` can be forecast at horizon `h`.
    pub fn warm_up(self, h: usize) -> usize {
        match self {
            Baseline::Last => h,
            Baseline::Mean5 => h + 4,
            Baseline::Day => DAY.max(h),
            Baseline::Week => WEEK.max(h),
        }
    }

    /// The forecast of `series[m]` made `h` minutes ahead; `None` before the warm-up.
    pub fn predict(self, series: &[f64], m: usize, h: usize) -> Option<f64> {
        if m < self.warm_up(h) || m >= series.len() {
            return None;
        }
        Some(match self {
            Baseline::Last => series[m - h],
            Baseline::Mean5 => series[m - h - 4..=m - h].iter().sum::<f64>() / 5.0,
            Baseline::Day => series[m - DAY],
            Baseline::Week => series[m - WEEK],
        })
    }
}

/// The fallback forecaster: every horizon gets the mean of the window's last 5 minutes (the best
/// of the simple baselines on real traffic). Needs nothing but the window, so it always answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fallback;

impl Fallback {
    pub fn forecast_one(window: &[MinutePoint]) -> Forecast {
        let tail = &window[window.len().saturating_sub(5)..];
        let mean = if tail.is_empty() {
            0.0
        } else {
            tail.iter().map(|p| p.requests.max(0.0)).sum::<f64>() / tail.len() as f64
        };
        [mean; HORIZON]
    }
}

impl Forecaster for Fallback {
    fn name(&self) -> &str {
        "baseline:mean5"
    }

    fn forecast(&mut self, windows: &[&[MinutePoint]]) -> Result<Vec<Forecast>, String> {
        Ok(windows.iter().map(|w| Fallback::forecast_one(w)).collect())
    }
}
