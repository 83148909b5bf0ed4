//! Pressure: when a high-priority endpoint is heading over its capacity (by forecast, or by what
//! it measured last minute), or a backend reports high utilisation (`ReportLoad`), Sluice cuts
//! STD limits on low-priority endpoints by a factor; PRM keeps its limits. The cut is lifted
//! with hysteresis: only once every signal is well below its trigger and the cut has held for a
//! while, so limits do not flap minute to minute.
//!
//! Pure: signals and `now` come in, the next state and what changed come out. The engine applies
//! the cut (`Engine::set_pressure`), inside each limit's `floor`; the live server and replays
//! drive the same `step`.

use std::time::Duration;

use serde::Serialize;

use super::Forecast;
use crate::time::{NANOS_PER_SEC, Nanos};

#[derive(Clone, Debug, PartialEq)]
pub struct PressureConfig {
    /// Limits of STD subjects on low-priority endpoints are multiplied by this under pressure.
    pub cut_factor: f64,
    /// Backend utilisation (0..1) at or above which the cut applies.
    pub load_threshold: f64,
    /// The cut is lifted only when every endpoint's forecast and measured traffic are below
    /// this share of its capacity, and every backend below `load_threshold − 0.1`.
    pub release_below: f64,
    /// …and no trigger was seen for this long.
    pub hold: Duration,
    /// A load report older than this is ignored (a backend that stopped reporting).
    pub load_ttl: Duration,
    /// Compute and record the cut, never enforce it.
    pub shadow: bool,
}

impl Default for PressureConfig {
    fn default() -> Self {
        PressureConfig {
            cut_factor: 0.5,
            load_threshold: 0.8,
            release_below: 0.8,
            hold: Duration::from_secs(300),
            load_ttl: Duration::from_secs(120),
            shadow: false,
        }
    }
}

/// Why limits are cut.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// `endpoint` is forecast to reach `requests` a minute `in_minutes` from now, over `capacity`.
    Forecast {
        endpoint: String,
        requests: f64,
        capacity: u64,
        in_minutes: usize,
    },
    /// `endpoint` took `requests` last minute, over `capacity`.
    Measured {
        endpoint: String,
        requests: f64,
        capacity: u64,
    },
    /// `backend` reported `utilisation` at or over the threshold.
    Load { backend: String, utilisation: f64 },
}

impl Cause {
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::Forecast { .. } => "forecast",
            Cause::Measured { .. } => "measured",
            Cause::Load { .. } => "load",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Cause::Forecast {
                endpoint,
                requests,
                capacity,
                in_minutes,
            } => format!(
                "forecast: {endpoint} at {requests:.0}/min in {in_minutes} min, capacity {capacity}/min"
            ),
            Cause::Measured {
                endpoint,
                requests,
                capacity,
            } => format!("measured: {endpoint} at {requests:.0}/min, capacity {capacity}/min"),
            Cause::Load {
                backend,
                utilisation,
            } => format!("load: {backend} at {:.0}% utilisation", utilisation * 100.0),
        }
    }
}

/// The cut in force.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cut {
    pub factor: f64,
    pub since: Nanos,
    /// The last time a trigger was seen (the hold runs from here).
    pub last_triggered: Nanos,
    pub cause: Cause,
    pub shadow: bool,
}

/// A change of the cut, as recorded in history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PressureChange {
    pub at: Nanos,
    /// `tightened` or `restored`.
    pub what: &'static str,
    /// What triggered it: `forecast`, `measured` or `load` (for `restored`: what had).
    pub kind: &'static str,
    pub factor: f64,
    pub cause: String,
    pub shadow: bool,
}

/// What the loop knows this minute.
#[derive(Clone, Copy, Debug, Default)]
pub struct Signals<'a> {
    /// High-priority endpoints with a capacity (requests per minute).
    pub capacities: &'a [(String, u64)],
    /// The latest forecast per endpoint.
    pub forecasts: &'a [(String, Forecast)],
    /// Requests per endpoint in the minute just closed.
    pub measured: &'a [(String, f64)],
    /// (backend, utilisation 0..1, reported at).
    pub loads: &'a [(String, f64, Nanos)],
}

impl PressureConfig {
    /// The strongest trigger this minute, if any, and whether everything is calm enough to
    /// release.
    fn assess(&self, now: Nanos, s: &Signals<'_>) -> (Option<Cause>, bool) {
        let mut trigger: Option<(f64, Cause)> = None;
        let mut calm = true;
        let mut consider = |ratio: f64, cause: Cause| {
            if ratio.is_finite() && trigger.as_ref().is_none_or(|(r, _)| ratio > *r) {
                trigger = Some((ratio, cause));
            }
        };
        for (endpoint, capacity) in s.capacities {
            let cap = (*capacity).max(1) as f64;
            if let Some((_, f)) = s.forecasts.iter().find(|(e, _)| e == endpoint)
                && let Some((i, &peak)) = f.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))
            {
                calm &= peak < cap * self.release_below;
                if peak > cap {
                    consider(
                        peak / cap,
                        Cause::Forecast {
                            endpoint: endpoint.clone(),
                            requests: peak,
                            capacity: *capacity,
                            in_minutes: i + 1,
                        },
                    );
                }
            }
            if let Some((_, m)) = s.measured.iter().find(|(e, _)| e == endpoint) {
                calm &= *m < cap * self.release_below;
                if *m > cap {
                    consider(
                        m / cap,
                        Cause::Measured {
                            endpoint: endpoint.clone(),
                            requests: *m,
                            capacity: *capacity,
                        },
                    );
                }
            }
        }
        let ttl = self.load_ttl.as_nanos() as u64;
        for (backend, utilisation, at) in s.loads {
            if now.saturating_sub(*at) > ttl {
                continue;
            }
            calm &= *utilisation < self.load_threshold - 0.1;
            if *utilisation >= self.load_threshold {
                consider(
                    utilisation / self.load_threshold,
                    Cause::Load {
                        backend: backend.clone(),
                        utilisation: *utilisation,
                    },
                );
            }
        }
        (trigger.map(|(_, c)| c), calm)
    }

    /// One minute: the next cut (if any) and the change, if it changed.
    pub fn step(
        &self,
        now: Nanos,
        current: Option<&Cut>,
        signals: &Signals<'_>,
    ) -> (Option<Cut>, Option<PressureChange>) {
        let (trigger, calm) = self.assess(now, signals);
        match (current, trigger) {
            (None, None) => (None, None),
            (None, Some(cause)) => {
                let change = PressureChange {
                    at: now,
                    what: "tightened",
                    kind: cause.kind(),
                    factor: self.cut_factor,
                    cause: cause.describe(),
                    shadow: self.shadow,
                };
                let cut = Cut {
                    factor: self.cut_factor,
                    since: now,
                    last_triggered: now,
                    cause,
                    shadow: self.shadow,
                };
                (Some(cut), Some(change))
            }
            (Some(cut), Some(cause)) => (
                Some(Cut {
                    last_triggered: now,
                    cause,
                    ..cut.clone()
                }),
                None,
            ),
            (Some(cut), None) => {
                let held = now.saturating_sub(cut.last_triggered) >= self.hold.as_nanos() as u64;
                if calm && held {
                    let change = PressureChange {
                        at: now,
                        what: "restored",
                        kind: cut.cause.kind(),
                        factor: 1.0,
                        cause: format!(
                            "calm for {} s after {}",
                            (now - cut.last_triggered) / NANOS_PER_SEC,
                            cut.cause.describe()
                        ),
                        shadow: cut.shadow,
                    };
                    (None, Some(change))
                } else {
                    (Some(cut.clone()), None)
                }
            }
        }
    }
}

// The cut's arithmetic is the decision path's: `limit::cut_quota`, `limit::cut_limit`.
pub use crate::limit::{cut_limit, cut_quota};

#[cfg(test)]
#[path = "pressure_tests.rs"]
mod tests;
