//! OpenTelemetry export: the service's metrics and its tracing spans, pushed over OTLP/gRPC to a
//! collector (`--otlp-endpoint`). Off unless an endpoint is configured. The only module that
//! knows `opentelemetry`.
//!
//! Metrics are *observed*: each instrument of the metric catalogue (`metric_catalogue`, shared
//! with `/metrics`) is a callback that reads a counter the service keeps anyway, run on the
//! exporter's own thread at each export. Nothing is added to the engine's decision.
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
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Histogram, Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::service::handles::Handles;
use crate::service::latency::RpcMetrics;
use crate::service::metric_catalogue::{CATALOGUE, DECISION_DURATION, Kind, otlp_samples};

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

/// Decision timers that record into `meter`'s `sluice.rpc.duration` histogram, by method
/// (the bench uses its own meter).
pub fn rpc_metrics(meter: &Meter) -> RpcMetrics {
    let histogram: Histogram<f64> = meter
        .f64_histogram(DECISION_DURATION.otlp)
        .with_unit("s")
        .with_description(DECISION_DURATION.help)
        .with_boundaries(crate::service::latency::BOUNDS.to_vec())
        .build();
    RpcMetrics::exporting(Arc::new(move |elapsed: Duration, method: &'static str| {
        histogram.record(
            elapsed.as_secs_f64(),
            &[KeyValue::new("rpc.method", method)],
        );
    }))
}

/// Metric export, running until [`Metrics::shutdown`].
pub struct Metrics {
    provider: SdkMeterProvider,
    rpc: RpcMetrics,
}

impl Metrics {
    /// Starts exporting every `config.interval` (the decision timers at once, the catalogue once
    /// [`Metrics::observe`] is given the handles). Must be called inside the tokio runtime.
    pub fn start(config: &TelemetryConfig) -> Result<Metrics, TelemetryError> {
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
        let rpc = rpc_metrics(&provider.meter("sluice"));
        Ok(Metrics { provider, rpc })
    }

    /// Exports every metric of the catalogue, read off `handles` at each export.
    pub fn observe(&self, handles: &Arc<Handles>) {
        let meter = self.provider.meter("sluice");
        for def in CATALOGUE {
            for view in def.otlp {
                let (handles, read) = (handles.clone(), def.read);
                let callback = move |o: &dyn AsyncInstrument<f64>| {
                    for sample in otlp_samples(view, read(&handles)) {
                        let attributes: Vec<KeyValue> = sample
                            .labels
                            .into_iter()
                            .map(|(k, v)| KeyValue::new(k, v))
                            .collect();
                        o.observe(sample.value, &attributes);
                    }
                };
                match def.kind {
                    Kind::Counter => {
                        meter
                            .f64_observable_counter(view.name)
                            .with_description(def.help)
                            .with_callback(callback)
                            .build();
                    }
                    Kind::Gauge => {
                        meter
                            .f64_observable_gauge(view.name)
                            .with_description(def.help)
                            .with_callback(callback)
                            .build();
                    }
                }
            }
        }
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
