//! Decision latency: the timers the decision RPCs start (`RpcMetrics`), and a fixed-bucket
//! histogram of atomics they record into (one clock read at each end of a decision RPC and three
//! relaxed increments, no lock, no allocation). The `/metrics` endpoint renders the histogram;
//! an OTLP exporter, when there is one, is handed each duration too (`telemetry::rpc_metrics`).
//! Knows nothing of Prometheus or OpenTelemetry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the buckets, in seconds: a decision takes microseconds, a slow one
/// (the shared counters, a loaded machine) milliseconds.
pub const BOUNDS: [f64; 14] = [
    5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3,
    1.0,
];

/// The decision RPCs timed, in the order `Latency::methods` reports them.
pub const METHODS: [&str; 2] = ["ShouldRateLimit", "ShouldAllow"];

/// One method's histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is above every bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A reading: cumulative counts per bound (Prometheus' `le`), the sum in seconds and the count.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramReading {
    pub cumulative: [u64; BOUNDS.len()],
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BOUNDS.partition_point(|&b| b < seconds);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> HistogramReading {
        let mut cumulative = [0; BOUNDS.len()];
        let mut running = 0;
        for (i, slot) in cumulative.iter_mut().enumerate() {
            running += self.buckets[i].load(Ordering::Relaxed);
            *slot = running;
        }
        HistogramReading {
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            // The count includes the overflow bucket (Prometheus' `+Inf`).
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// The histograms of the decision RPCs.
#[derive(Debug, Default)]
pub struct Latency {
    methods: [Histogram; METHODS.len()],
}

impl Latency {
    /// The histogram of `method`, if it is one of `METHODS`.
    pub fn of(&self, method: &str) -> Option<&Histogram> {
        METHODS
            .iter()
            .position(|m| *m == method)
            .map(|i| &self.methods[i])
    }

    pub fn methods(&self) -> impl Iterator<Item = (&'static str, &Histogram)> {
        METHODS.iter().copied().zip(self.methods.iter())
    }
}

/// Hands one call's duration and method to an exporter (OTLP's histogram).
pub type Export = Arc<dyn Fn(Duration, &'static str) + Send + Sync>;

/// How long the decision RPCs take inside the server (from the handler's start to its reply;
/// the transport's own time is not included). A no-op without an exporter or `/metrics`: no
/// clock read.
#[derive(Clone, Default)]
pub struct RpcMetrics {
    export: Option<Export>,
    /// The histograms `/metrics` shows (with `--http-listen`).
    latency: Option<Arc<Latency>>,
}

impl RpcMetrics {
    /// Timers whose durations go to `export`.
    pub fn exporting(export: Export) -> RpcMetrics {
        RpcMetrics {
            export: Some(export),
            latency: None,
        }
    }

    /// Also (or only) records into `latency`.
    pub fn with_latency(mut self, latency: Arc<Latency>) -> RpcMetrics {
        self.latency = Some(latency);
        self
    }

    /// Starts timing one call of `method`; the time is recorded when the guard is dropped.
    pub fn time(&self, method: &'static str) -> RpcTimer<'_> {
        let latency = self.latency.as_ref().and_then(|l| l.of(method));
        let timed = self.export.is_some() || latency.is_some();
        RpcTimer {
            started: timed.then(Instant::now),
            export: self.export.as_ref(),
            latency,
            method,
        }
    }
}

/// Records a call's duration when dropped, whatever way the handler returned.
pub struct RpcTimer<'a> {
    started: Option<Instant>,
    export: Option<&'a Export>,
    latency: Option<&'a Histogram>,
    method: &'static str,
}

impl Drop for RpcTimer<'_> {
    fn drop(&mut self) {
        let Some(started) = self.started else { return };
        let elapsed = started.elapsed();
        if let Some(export) = self.export {
            export(elapsed, self.method);
        }
        if let Some(latency) = self.latency {
            latency.record(elapsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_into_the_bucket_of_the_first_bound_not_below_it() {
        let h = Histogram::default();
        for micros in [3, 5, 7, 600, 2_000_000] {
            h.record(Duration::from_micros(micros));
        }
        let r = h.read();
        assert_eq!(r.count, 5);
        assert_eq!(r.cumulative[0], 2, "3 µs and exactly 5 µs are <= 5 µs");
        assert_eq!(r.cumulative[1], 3, "7 µs <= 10 µs");
        assert_eq!(r.cumulative[7], 4, "600 µs <= 1 ms");
        assert_eq!(
            r.cumulative[BOUNDS.len() - 1],
            4,
            "2 s is above every bound"
        );
        assert!((r.sum_seconds - 2.000615).abs() < 1e-9);
    }
}
