//! Forecasting, the pure part: what a minute of an endpoint's traffic is made of, how a window of
//! minutes becomes the model's input (`features`), the statistical baselines and the fallback
//! forecaster (`baseline`), how forecasts are scored against what happened (`eval`), and which
//! forecast speaks for a series, by recent error (`selector`).
//!
//! It runs no model: a [`Forecaster`] is handed a window and returns the next [`HORIZON`]
//! minutes. The ONNX LSTM lives in an adapter (`sluice::adapters::onnx`), so nothing here knows
//! ONNX Runtime; the same feature code feeds training (`sluice export-features`), evaluation and
//! live forecasting.

pub mod baseline;
pub mod eval;
pub mod features;
pub mod live;
pub mod pressure;
pub mod selector;
pub mod series;

/// Minutes of history a forecast looks at.
pub const WINDOW: usize = 60;
/// Minutes ahead a forecast reaches (horizons 1..=HORIZON).
pub const HORIZON: usize = 15;

/// One minute of one series (an endpoint, a tier, or a whole site).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MinutePoint {
    /// Minutes since the Unix epoch (UTC), or a plain index for series without timestamps
    /// (index 0 is then taken to be a Monday midnight).
    pub minute: i64,
    /// NaN when unknown (a gap in a series file); never NaN in live series.
    pub requests: f64,
    /// Share of requests from PRM subjects (0 when unknown).
    pub prm_share: f64,
    /// Share of requests that ended in an error (status ≥ 400; 0 when unknown).
    pub error_rate: f64,
    /// Share of requests Sluice denied (0 when unknown).
    pub denied_share: f64,
}

impl MinutePoint {
    /// A minute whose count is not known (a gap in the data): `requests` is NaN.
    pub fn is_known(&self) -> bool {
        self.requests.is_finite()
    }

    pub fn requests_only(minute: i64, requests: f64) -> MinutePoint {
        MinutePoint {
            minute,
            requests,
            ..MinutePoint::default()
        }
    }
}

/// The next `HORIZON` minutes' request counts, in order (index 0: the next minute).
pub type Forecast = [f64; HORIZON];

/// Anything that turns the last `WINDOW` minutes into a forecast. Failures are reported, never
/// panicked: the caller falls back to [`baseline::Fallback`].
pub trait Forecaster {
    /// A short name for reports and health (`lstm`, `baseline:mean5`).
    fn name(&self) -> &str;
    /// One forecast per window; every window holds exactly `WINDOW` points, oldest first.
    fn forecast(&mut self, windows: &[&[MinutePoint]]) -> Result<Vec<Forecast>, String>;
}
