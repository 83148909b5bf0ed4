//! The model's input and output encoding, defined once: training tensors (`sluice
//! export-features`), evaluation and live forecasting all call [`encode`] and [`decode`].
//!
//! Per-series normalisation lets one model serve any endpoint whatever its scale: a window's
//! `scale` is its mean request count (at least 1), the request feature is
//! `ln(1 + requests) − ln(1 + scale)`, and the model predicts the same quantity for each of the
//! next `HORIZON` minutes. Shares are already 0..1; time of day and of week are on the circle.
//! `models/lstm.json` records these names and their order; a test checks the two agree.

use super::{Forecast, HORIZON, MinutePoint, WINDOW};

/// Input features per minute, in tensor order.
pub const NAMES: [&str; 8] = [
    "log_requests_rel",
    "prm_share",
    "error_rate",
    "denied_share",
    "tod_sin",
    "tod_cos",
    "dow_sin",
    "dow_cos",
];
pub const DIM: usize = NAMES.len();

/// One window, encoded: `input` is `WINDOW × DIM` row-major (oldest minute first).
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub input: Vec<f32>,
    pub scale: f64,
}

/// The window's scale: its mean request count, at least 1.
pub fn scale(window: &[MinutePoint]) -> f64 {
    let n = window.len().max(1) as f64;
    (window.iter().map(|p| p.requests.max(0.0)).sum::<f64>() / n).max(1.0)
}

/// Encodes one window of exactly `WINDOW` minutes into `out` (appended).
pub fn encode_into(window: &[MinutePoint], out: &mut Vec<f32>) -> f64 {
    debug_assert_eq!(window.len(), WINDOW);
    let scale = scale(window);
    let base = scale.ln_1p();
    for p in window {
        // Minute 0 of the epoch was a Thursday; shift so a week starts on Monday 00:00 UTC.
        let of_day = p.minute.rem_euclid(1440) as f64 / 1440.0;
        let of_week = (p.minute + 3 * 1440).rem_euclid(7 * 1440) as f64 / (7.0 * 1440.0);
        let tau = std::f64::consts::TAU;
        out.extend_from_slice(&[
            (p.requests.max(0.0).ln_1p() - base) as f32,
            p.prm_share.clamp(0.0, 1.0) as f32,
            p.error_rate.clamp(0.0, 1.0) as f32,
            p.denied_share.clamp(0.0, 1.0) as f32,
            (tau * of_day).sin() as f32,
            (tau * of_day).cos() as f32,
            (tau * of_week).sin() as f32,
            (tau * of_week).cos() as f32,
        ]);
    }
    scale
}

pub fn encode(window: &[MinutePoint]) -> Encoded {
    let mut input = Vec::with_capacity(WINDOW * DIM);
    let scale = encode_into(window, &mut input);
    Encoded { input, scale }
}

/// Minutes without a request that make a series "stopped" (see [`forecast_from`]).
pub const STOPPED_AFTER: usize = 10;

/// The forecast for `window` from the model's raw outputs. A series whose last
/// [`STOPPED_AFTER`] minutes had no request at all (an endpoint nobody calls, a site in an
/// outage) is forecast to stay at zero: nothing in the window says when traffic returns, any
/// positive guess costs the most sMAPE there is, and the model, trained on live traffic, has
/// seldom seen a stop.
pub fn forecast_from(window: &[MinutePoint], output: &[f32], scale: f64) -> Forecast {
    let tail = &window[window.len().saturating_sub(STOPPED_AFTER)..];
    if tail.iter().all(|p| p.requests == 0.0) {
        return [0.0; HORIZON];
    }
    decode(output, scale)
}

/// Turns the model's `HORIZON` outputs back into request counts (never negative).
pub fn decode(output: &[f32], scale: f64) -> Forecast {
    let base = scale.ln_1p();
    let mut f = [0.0; HORIZON];
    for (slot, &o) in f.iter_mut().zip(output) {
        // Outputs beyond e^20 × scale are nonsense from a broken model: cap, do not overflow.
        *slot = ((o as f64).min(20.0) + base).exp_m1().max(0.0);
    }
    f
}

#[cfg(test)]
#[path = "features_tests.rs"]
mod tests;
