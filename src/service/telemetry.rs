//! OpenTelemetry export: the service's metrics and its tracing spans, pushed over OTLP/gRPC to a
//! collector (`--otlp-endpoint`). Off unless an endpoint is configured. The only module that
//! knows `opentelemetry`.
//!
//! Metrics are *observed*: each instrument is a callback that reads a counter the service keeps
//! anyway (engine statistics, bucket store, observation overflow, history writer, forecaster),
//! run on the exporter's own thread at each export. Nothing is added to the engine's decision.
//!
//! One instrument is recorded rather than observed: `sluice.rpc.duration`, timed at the gRPC
//! edge around each decision RPC (two clock reads and one histogram update per call, and only
//! when export is on).
//!
//! Spans: every `tracing` span the service opens at `info` (learning ticks, rule changes, model
//! reloads and trainings — not individual decisions, which are too many to trace) becomes an
//! OpenTelemetry span through `tracing-opentelemetry`.
//!
//! Export failures (collector down, slow) are the SDK's to retry or drop, and it logs them
//! through `tracing` (its `internal-logs` feature); they never reach a decision or stop the
//! service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Histogram, Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::service::fleet::Fleet;
use crate::service::history_writer::HistoryStats;
use crate::service::latency::Latency;
use crate::service::minute_loop::MinuteLoop;
use crate::service::model_slot::ModelSlot;
use sluice_core::engine::Engine;
use sluice_core::learn::actions::ActionKind;

/// Longest wait for the collector per export: a dead collector must not hold up shutdown long.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where and how often to export.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// `http://host:4317` (validated by [`parse_endpoint`]).
    pub endpoint: String,
    /// Between metric exports.
    pub interval: Duration,
}

impl TelemetryConfig {
    fn exporter_error(&self, e: impl std::fmt::Display) -> TelemetryError {
        TelemetryError::Exporter {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// Checks an `--otlp-endpoint` value: an `http://` URL with a host. Used as the flag's parser,
/// so a bad value fails at start-up with the flag named. Plaintext only: collectors usually run
/// beside the service (agent or sidecar); `https://` is refused rather than failing every export.
pub fn parse_endpoint(value: &str) -> Result<String, String> {
    let uri: tonic::codegen::http::Uri = value
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected e.g. http://otel-collector:4317"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "TLS to the collector is not supported: use a local collector over http://".into(),
            );
        }
        _ => return Err("the scheme must be http, e.g. http://otel-collector:4317".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host; expected e.g. http://otel-collector:4317".into());
    }
    Ok(value.to_string())
}

fn resource() -> Resource {
    Resource::builder()
        .with_service_name("sluice")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The span exporter, for the `tracing` subscriber. Must be called inside the tokio runtime
/// (the gRPC channel is created there). Keep the provider and [`shutdown_tracer`] it on exit,
/// or the last spans are lost.
pub fn tracer_provider(config: &TelemetryConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| config.exporter_error(e))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans.
pub fn tracing_layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("sluice"))
}

/// Flushes and stops span export; blocking, so run it off the async workers.
pub fn shutdown_tracer(provider: SdkTracerProvider) {
    if let Err(e) = provider.shutdown() {
        eprintln!("telemetry: span export did not shut down cleanly: {e}");
    }
}

/// What the metrics read.
pub struct Sources {
    pub engine: Arc<Engine>,
    pub learning: Arc<MinuteLoop>,
    pub models: Arc<ModelSlot>,
    pub history: Arc<HistoryStats>,
    /// With `--counters`.
    pub fleet: Option<Arc<Fleet>>,
}

/// Metric export, running until [`Metrics::shutdown`].
pub struct Metrics {
    provider: SdkMeterProvider,
    rpc: RpcMetrics,
}

/// How long the decision RPCs take inside the server (from the handler's start to its reply;
/// the transport's own time is not included). A no-op without an OTLP endpoint or `/metrics`:
/// no clock read.
#[derive(Clone, Default)]
pub struct RpcMetrics {
    duration: Option<Histogram<f64>>,
    /// The histograms `/metrics` shows (with `--http-listen`).
    latency: Option<Arc<Latency>>,
}

impl RpcMetrics {
    /// Timers recording into `meter` (the bench uses its own).
    pub fn new(meter: &Meter) -> RpcMetrics {
        RpcMetrics {
            duration: Some(
                meter
                    .f64_histogram("sluice.rpc.duration")
                    .with_unit("s")
                    .with_description("Time to answer a decision RPC inside the server")
                    .with_boundaries(crate::service::latency::BOUNDS.to_vec())
                    .build(),
            ),
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
        let timed = self.duration.is_some() || latency.is_some();
        RpcTimer {
            started: timed.then(Instant::now),
            duration: self.duration.as_ref(),
            latency,
            method,
        }
    }
}

/// Records a call's duration when dropped, whatever way the handler returned.
pub struct RpcTimer<'a> {
    started: Option<Instant>,
    duration: Option<&'a Histogram<f64>>,
    latency: Option<&'a crate::service::latency::Histogram>,
    method: &'static str,
}

impl Drop for RpcTimer<'_> {
    fn drop(&mut self) {
        let Some(started) = self.started else { return };
        let elapsed = started.elapsed();
        if let Some(histogram) = self.duration {
            histogram.record(
                elapsed.as_secs_f64(),
                &[KeyValue::new("rpc.method", self.method)],
            );
        }
        if let Some(latency) = self.latency {
            latency.record(elapsed);
        }
    }
}

impl Metrics {
    /// Starts exporting every `config.interval`. Must be called inside the tokio runtime.
    pub fn start(config: &TelemetryConfig, sources: Sources) -> Result<Metrics, TelemetryError> {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| config.exporter_error(e))?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(config.interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource())
            .build();
        let meter = provider.meter("sluice");
        register(&meter, sources);
        let rpc = RpcMetrics::new(&meter);
        Ok(Metrics { provider, rpc })
    }

    /// The call timers for the gRPC edge.
    pub fn rpc(&self) -> RpcMetrics {
        self.rpc.clone()
    }

    /// Exports what is left and stops; blocking, so run it off the async workers.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "metric export did not shut down cleanly");
        }
    }
}

/// Whether an instrument is a monotonic count (decisions, denials…) or a current value.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// One instrument reading a `u64` off a source of type `T`.
type Reading<T> = (&'static str, Kind, &'static str, fn(&T) -> u64);

fn stat(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Names are documented in README.md ("Metrics and traces"): keep both in step.
const ENGINE: &[Reading<Engine>] = &[
    (
        "sluice.decisions",
        Kind::Counter,
        "Decisions taken (RLS requests and ShouldAllow calls)",
        |e| stat(&e.stats().decisions),
    ),
    (
        "sluice.decisions.denied",
        Kind::Counter,
        "Decisions that denied (all causes)",
        |e| stat(&e.stats().denied),
    ),
    (
        "sluice.decisions.shadow_denied",
        Kind::Counter,
        "Decisions a shadow-mode limit would have denied",
        |e| stat(&e.stats().shadow_denied),
    ),
    (
        "sluice.decisions.anomaly_denied",
        Kind::Counter,
        "Denials by an anomaly action (throttle or block)",
        |e| stat(&e.stats().anomaly_denied),
    ),
    (
        "sluice.decisions.forecast_denied",
        Kind::Counter,
        "Denials by a limit cut under pressure (forecast or backend load)",
        |e| stat(&e.stats().forecast_denied),
    ),
    (
        "sluice.buckets",
        Kind::Gauge,
        "Bucket states held in memory",
        |e| e.tracked_buckets(),
    ),
    (
        "sluice.buckets.lossy_evictions",
        Kind::Counter,
        "Buckets evicted at capacity before their limit had recovered",
        |e| e.lossy_evictions(),
    ),
    (
        "sluice.observe.overflow",
        Kind::Counter,
        "Observations dropped at the per-minute caps",
        |e| e.observer().overflow_total(),
    ),
    (
        "sluice.rules.revision",
        Kind::Gauge,
        "Revision of the rule set in force",
        |e| e.rules().revision(),
    ),
];

const MODELS: &[Reading<ModelSlot>] = &[(
    "sluice.forecaster.lstm",
    Kind::Gauge,
    "1 while the LSTM forecasts, 0 while the baseline does",
    |m| u64::from(m.status().lstm_loaded()),
)];

const LEARNING: &[Reading<MinuteLoop>] = &[(
    "sluice.learner.model_version",
    Kind::Gauge,
    "Version of the isolation forest scoring clients (0: none yet)",
    |l| l.status().model.version,
)];

const HISTORY: &[Reading<HistoryStats>] = &[
    (
        "sluice.history.rows_written",
        Kind::Counter,
        "History rows written to the database",
        |h| stat(&h.written_rows),
    ),
    (
        "sluice.history.rows_dropped",
        Kind::Counter,
        "History rows dropped (buffer full while the database was down)",
        |h| stat(&h.dropped_rows),
    ),
    (
        "sluice.history.rows_buffered",
        Kind::Gauge,
        "History rows waiting for the database",
        |h| stat(&h.buffered_rows),
    ),
];

const FLEET: &[Reading<Fleet>] = &[
    (
        "sluice.counters.shared",
        Kind::Counter,
        "Decisions whose buckets the shared counters (Redis) answered",
        |f| stat(&f.stats.shared),
    ),
    (
        "sluice.counters.fallbacks",
        Kind::Counter,
        "Decisions the failure policy answered (counters slow, down, or the breaker open)",
        |f| stat(&f.stats.fallbacks),
    ),
    (
        "sluice.counters.timeouts",
        Kind::Counter,
        "Calls to the shared counters that outlived the budget",
        |f| stat(&f.stats.timeouts),
    ),
    (
        "sluice.counters.errors",
        Kind::Counter,
        "Calls to the shared counters that failed",
        |f| stat(&f.stats.errors),
    ),
    (
        "sluice.counters.breaker_opened",
        Kind::Counter,
        "Times the circuit breaker opened",
        |f| stat(&f.stats.breaker_opened),
    ),
    (
        "sluice.counters.cached",
        Kind::Counter,
        "Cached mode: decisions answered from local buckets",
        |f| stat(&f.stats.cached),
    ),
    (
        "sluice.counters.flushes",
        Kind::Counter,
        "Cached mode: flushes of admitted hits that Redis answered",
        |f| stat(&f.stats.flushes),
    ),
    (
        "sluice.counters.dropped_hits",
        Kind::Counter,
        "Admitted hits never flushed (too many keys waiting while Redis was down)",
        |f| stat(&f.stats.dropped_hits),
    ),
    (
        "sluice.counters.late",
        Kind::Counter,
        "Exact mode: scripts that answered after their decision's budget, then reconciled",
        |f| stat(&f.stats.late),
    ),
    (
        "sluice.counters.refunded_hits",
        Kind::Counter,
        "Exact mode: hits a late script counted for a refused decision, given back",
        |f| stat(&f.stats.refunded_hits),
    ),
    (
        "sluice.counters.local_admitted_hits",
        Kind::Counter,
        "Hits admitted without the shared counters (failure policy, or cached mode while they were out of reach)",
        |f| stat(&f.stats.local_admitted_hits),
    ),
    (
        "sluice.counters.reconciled_hits",
        Kind::Counter,
        "Exact mode: hits admitted without the counters, added to them once they answered",
        |f| stat(&f.stats.reconciled_hits),
    ),
    (
        "sluice.counters.repaired_keys",
        Kind::Counter,
        "Counters' keys that held something other than a bucket state, reset to fresh buckets",
        |f| f.counters().repaired_keys(),
    ),
    (
        "sluice.fleet.replicas",
        Kind::Gauge,
        "The local policy's divisor: --fleet-replicas, else the replicas alive in the fleet state",
        |f| f.divisor(),
    ),
    (
        "sluice.counters.degraded",
        Kind::Gauge,
        "1 while the breaker is open (decisions follow the failure policy), else 0",
        |f| u64::from(f.degraded()),
    ),
];

fn observe<T: Send + Sync + 'static>(meter: &Meter, source: &Arc<T>, readings: &[Reading<T>]) {
    for &(name, kind, description, read) in readings {
        let source = source.clone();
        let callback = move |o: &dyn AsyncInstrument<u64>| o.observe(read(&source), &[]);
        match kind {
            Kind::Counter => {
                meter
                    .u64_observable_counter(name)
                    .with_description(description)
                    .with_callback(callback)
                    .build();
            }
            Kind::Gauge => {
                meter
                    .u64_observable_gauge(name)
                    .with_description(description)
                    .with_callback(callback)
                    .build();
            }
        }
    }
}

/// Every instrument: the tables above, and two that do not fit them.
fn register(meter: &Meter, sources: Sources) {
    observe(meter, &sources.engine, ENGINE);
    observe(meter, &sources.learning, LEARNING);
    observe(meter, &sources.models, MODELS);
    observe(meter, &sources.history, HISTORY);
    if let Some(fleet) = &sources.fleet {
        observe(meter, fleet, FLEET);
    }
    let e = sources.engine.clone();
    meter
        .u64_observable_gauge("sluice.anomaly.actions")
        .with_description("Anomaly actions in force, by kind")
        .with_callback(move |o| {
            let actions = e.actions().sorted();
            let blocks = actions
                .iter()
                .filter(|a| a.kind == ActionKind::Block)
                .count() as u64;
            let throttles = actions.len() as u64 - blocks;
            o.observe(throttles, &[KeyValue::new("kind", "throttle")]);
            o.observe(blocks, &[KeyValue::new("kind", "block")]);
        })
        .build();
    let e = sources.engine;
    meter
        .f64_observable_gauge("sluice.pressure.factor")
        .with_description("Factor applied to STD limits on low-priority endpoints (1: no cut)")
        .with_callback(move |o| o.observe(e.pressure(), &[]))
        .build();
}

/// The span exporter `init_logging` started, if any; flushed at shutdown.
pub struct SpanExport(Option<SdkTracerProvider>);

impl SpanExport {
    /// Flushes the last spans (blocking, so off the async workers).
    pub async fn shutdown(self) {
        if let Some(provider) = self.0 {
            let _ = tokio::task::spawn_blocking(move || shutdown_tracer(provider)).await;
        }
    }
}

/// Logs to stderr, as text (coloured only on a terminal) or JSON; with `export`, `tracing` spans
/// also go to the OTLP collector.
pub fn init_logging(
    json: bool,
    export: Option<TelemetryConfig>,
) -> Result<SpanExport, TelemetryError> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let spans = export.as_ref().map(tracer_provider).transpose()?;
    // redis-rs warns once per command while a Cluster node is down (thousands a second); the
    // fleet's breaker says it once. Its errors still show, and RUST_LOG naming `redis` decides.
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if spec.contains("redis") => EnvFilter::new(spec),
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(format!("{spec},redis=error")),
        _ => EnvFilter::new("info,redis=error"),
    };
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(spans.as_ref().map(tracing_layer));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
    Ok(SpanExport(spans))
}
