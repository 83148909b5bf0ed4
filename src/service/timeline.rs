//! The last hour of decisions, for the dashboard: every few seconds the engine's counters are
//! read and the difference since the last reading kept, in a ring of fixed size. Reading the
//! counters costs the decisions nothing (they count anyway); the ring never grows.
//!
//! Not history: it is per instance, in memory, and lost on restart. Per-minute traffic for the
//! long run is the database's `endpoint_traffic`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use sluice_core::engine::{Engine, EngineStats};
use sluice_core::rules::Tier;

use crate::service::clock::LiveClock;
use crate::service::shutdown::Shutdown;

/// Between readings.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Readings kept: an hour.
pub const SAMPLES_KEPT: usize = 720;

/// What happened between two readings.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// End of the interval, ms since the epoch.
    pub at_ms: i64,
    pub seconds: f64,
    /// Decisions and denials per tier (`STD`, `PRM`).
    pub decisions: [u64; 2],
    pub denied: [u64; 2],
    /// Denials by reason: a limit, an anomaly action, a limit cut under pressure.
    pub denied_limit: u64,
    pub denied_anomaly: u64,
    pub denied_cut: u64,
    /// A shadow-mode limit or global shadow mode would have denied.
    pub shadow: u64,
}

/// Counter values at one reading.
#[derive(Clone, Copy, Debug, Default)]
struct Reading {
    at_ms: i64,
    decisions: [u64; 2],
    denied: [u64; 2],
    denied_all: u64,
    anomaly: u64,
    cut: u64,
    shadow: u64,
}

impl Reading {
    fn of(stats: &EngineStats, at_ms: i64) -> Reading {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Reading {
            at_ms,
            decisions: Tier::ALL.map(|t| load(&stats.by_tier[t.index()].decisions)),
            denied: Tier::ALL.map(|t| load(&stats.by_tier[t.index()].denied)),
            denied_all: load(&stats.denied),
            anomaly: load(&stats.anomaly_denied),
            cut: load(&stats.forecast_denied),
            shadow: load(&stats.shadow_denied),
        }
    }

    fn since(&self, before: &Reading) -> Sample {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        let denied_all = d(self.denied_all, before.denied_all);
        let anomaly = d(self.anomaly, before.anomaly);
        let cut = d(self.cut, before.cut);
        Sample {
            at_ms: self.at_ms,
            seconds: (self.at_ms - before.at_ms).max(1) as f64 / 1_000.0,
            decisions: [0, 1].map(|i| d(self.decisions[i], before.decisions[i])),
            denied: [0, 1].map(|i| d(self.denied[i], before.denied[i])),
            denied_limit: denied_all.saturating_sub(anomaly + cut),
            denied_anomaly: anomaly,
            denied_cut: cut,
            shadow: d(self.shadow, before.shadow),
        }
    }
}

/// The ring of samples and the last reading.
#[derive(Default)]
pub struct Timeline {
    inner: Mutex<(VecDeque<Sample>, Option<Reading>)>,
}

impl Timeline {
    /// Reads the counters and keeps what changed since the last reading.
    pub fn sample(&self, stats: &EngineStats, at_ms: i64) {
        let now = Reading::of(stats, at_ms);
        let mut inner = self.inner.lock();
        if let Some(before) = inner.1 {
            let sample = now.since(&before);
            if inner.0.len() == SAMPLES_KEPT {
                inner.0.pop_front();
            }
            inner.0.push_back(sample);
        }
        inner.1 = Some(now);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.inner.lock().0.iter().cloned().collect()
    }
}

/// Samples every `SAMPLE_EVERY` until shutdown.
pub async fn run(
    timeline: Arc<Timeline>,
    engine: Arc<Engine>,
    clock: LiveClock,
    mut shutdown: Shutdown,
) {
    timeline.sample(engine.stats(), clock.now_millis());
    while shutdown.sleep(SAMPLE_EVERY).await {
        timeline.sample(engine.stats(), clock.now_millis());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    #[test]
    fn samples_are_differences_by_tier_and_reason_and_the_ring_is_bounded() {
        let stats = EngineStats::default();
        let timeline = Timeline::default();
        timeline.sample(&stats, 0);
        assert!(timeline.samples().is_empty(), "one reading is no interval");
        add(&stats.by_tier[0].decisions, 10);
        add(&stats.by_tier[0].denied, 4);
        add(&stats.by_tier[1].decisions, 3);
        add(&stats.denied, 4);
        add(&stats.anomaly_denied, 1);
        add(&stats.forecast_denied, 2);
        timeline.sample(&stats, 5_000);
        assert_eq!(
            timeline.samples(),
            vec![Sample {
                at_ms: 5_000,
                seconds: 5.0,
                decisions: [10, 3],
                denied: [4, 0],
                denied_limit: 1,
                denied_anomaly: 1,
                denied_cut: 2,
                shadow: 0,
            }]
        );
        for i in 2..(SAMPLES_KEPT as i64 + 10) {
            timeline.sample(&stats, i * 5_000);
        }
        let samples = timeline.samples();
        assert_eq!(samples.len(), SAMPLES_KEPT);
        assert_eq!(samples.last().unwrap().decisions, [0, 0]);
    }
}
