//! Per-minute series built from counts: traffic history rows, trace requests or the learner's
//! closed minutes go in keyed by series (an endpoint, or `*` for the total), contiguous
//! [`MinutePoint`] series come out, with minutes nobody called filled with zeros.

use std::collections::BTreeMap;

use super::MinutePoint;

/// The key of the all-endpoints series.
pub const TOTAL: &str = "*";

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    requests: f64,
    prm: f64,
    denied: f64,
    errors: f64,
}

/// Accumulates counts per series and minute.
#[derive(Debug, Default)]
pub struct SeriesBuilder {
    by_key: BTreeMap<String, BTreeMap<i64, Counts>>,
}

impl SeriesBuilder {
    /// Adds `requests` (of which `prm` from PRM subjects, `denied` denied, `errors` failed) to
    /// series `key` at `minute`.
    pub fn add(
        &mut self,
        key: &str,
        minute: i64,
        requests: f64,
        prm: f64,
        denied: f64,
        errors: f64,
    ) {
        let minutes = match self.by_key.get_mut(key) {
            Some(m) => m,
            None => self.by_key.entry(key.to_string()).or_default(),
        };
        let c = minutes.entry(minute).or_default();
        c.requests += requests;
        c.prm += prm;
        c.denied += denied;
        c.errors += errors;
    }

    /// The series, by key, each contiguous from its first to its last minute.
    pub fn build(self) -> Vec<(String, Vec<MinutePoint>)> {
        self.by_key
            .into_iter()
            .map(|(key, minutes)| {
                let first = *minutes.keys().next().expect("non-empty");
                let last = *minutes.keys().next_back().expect("non-empty");
                let points = (first..=last)
                    .map(|m| {
                        let c = minutes.get(&m).copied().unwrap_or_default();
                        let share = |x: f64| {
                            if c.requests > 0.0 {
                                (x / c.requests).clamp(0.0, 1.0)
                            } else {
                                0.0
                            }
                        };
                        MinutePoint {
                            minute: m,
                            requests: c.requests,
                            prm_share: share(c.prm),
                            error_rate: share(c.errors),
                            denied_share: share(c.denied),
                        }
                    })
                    .collect();
                (key, points)
            })
            .collect()
    }
}
