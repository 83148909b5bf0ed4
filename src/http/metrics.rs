//! `/metrics`: the service's counters in the Prometheus text format, built at each scrape from
//! what the service counts anyway (engine, limits, learning loop, forecaster, history writer,
//! shared counters) and encoded by the `prometheus` crate. Nothing here is on a decision's path.
//!
//! Labels are bounded by configuration, never by traffic: rules and their limits, tiers, denial
//! reasons, action kinds and signals, watched endpoints. No client key is ever a label.
//! README.md ("Metrics") lists every name: keep both in step.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::Encoder;
use prometheus::core::Collector;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use sluice_core::limit_stats::LimitOutcome;
use sluice_core::rules::Tier;

use super::HttpState;
use crate::service::latency;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels<'a> = &'a [(&'a str, &'a str)];

/// The families of one scrape, in the order they are added.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

fn labels(pairs: Labels<'_>) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

impl Families {
    fn family(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        f.set_metric(metrics);
        self.0.push(f);
    }

    /// A counter or gauge family, one metric per (labels, value).
    fn values<'l, L: AsRef<[(&'l str, &'l str)]>>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) {
        let metrics = samples
            .into_iter()
            .map(|(l, v)| {
                let mut m = Metric::from_label(labels(l.as_ref()));
                if kind == MetricType::COUNTER {
                    let mut c = Counter::default();
                    c.set_value(v);
                    m.set_counter(c);
                } else {
                    let mut g = Gauge::default();
                    g.set_value(v);
                    m.set_gauge(g);
                }
                m
            })
            .collect();
        self.family(name, help, kind, metrics);
    }

    fn counters<'l, L: AsRef<[(&'l str, &'l str)]>>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) {
        self.values(name, help, MetricType::COUNTER, samples);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.counters(name, help, [([], value as f64)]);
    }

    fn gauges<'l, L: AsRef<[(&'l str, &'l str)]>>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) {
        self.values(name, help, MetricType::GAUGE, samples);
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.gauges(name, help, [([], value)]);
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The text of one scrape.
pub fn render(state: &HttpState) -> Vec<u8> {
    let mut f = Families::default();
    decisions(&mut f, state);
    limits(&mut f, state);
    learning(&mut f, state);
    forecasting(&mut f, state);
    storage(&mut f, state);
    // The encoder refuses a family without samples (no rules yet, no forecast yet): leave it out.
    let mut families: Vec<MetricFamily> =
        f.0.into_iter()
            .filter(|f| !f.get_metric().is_empty())
            .collect();
    families.extend(prometheus::process_collector::ProcessCollector::for_self().collect());
    let mut out = Vec::with_capacity(16 * 1024);
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
        // Only a family without samples or with a bad name fails; say so in the text.
        tracing::error!(error = %e, "cannot encode the metrics");
        out.extend_from_slice(format!("# encoding failed: {e}\n").as_bytes());
    }
    out
}

fn decisions(f: &mut Families, state: &HttpState) {
    let stats = state.engine.stats();
    let per_tier = |pick: fn(&sluice_core::verdict::TierStats) -> &AtomicU64| {
        Tier::ALL
            .iter()
            .map(|t| {
                let labels: Labels<'static> = match t {
                    Tier::Std => &[("tier", "STD")],
                    Tier::Prm => &[("tier", "PRM")],
                };
                (labels, load(pick(&stats.by_tier[t.index()])) as f64)
            })
            .collect::<Vec<_>>()
    };
    f.counters(
        "sluice_decisions_total",
        "Decisions taken (Envoy RLS requests and ShouldAllow calls), by the caller's tier",
        per_tier(|t| &t.decisions),
    );
    f.counters(
        "sluice_decisions_denied_total",
        "Decisions that denied, by the caller's tier",
        per_tier(|t| &t.denied),
    );
    let denied = load(&stats.denied);
    let anomaly = load(&stats.anomaly_denied);
    let cut = load(&stats.forecast_denied);
    f.counters(
        "sluice_denials_total",
        "Denials by reason: a limit, an anomaly action (throttle or block), a limit cut under pressure",
        vec![
            (&[("reason", "limit")], denied.saturating_sub(anomaly + cut) as f64),
            (&[("reason", "anomaly")], anomaly as f64),
            (&[("reason", "pressure_cut")], cut as f64),
        ],
    );
    f.counter(
        "sluice_shadow_denials_total",
        "Decisions a shadow-mode limit (or global shadow mode) would have denied",
        load(&stats.shadow_denied),
    );
    let mut metrics = Vec::new();
    for (method, h) in state.latency.methods() {
        let r = h.read();
        let mut m = Metric::from_label(labels(&[("method", method)]));
        let mut hist = Histogram::default();
        hist.set_sample_count(r.count);
        hist.set_sample_sum(r.sum_seconds);
        hist.set_bucket(
            latency::BOUNDS
                .iter()
                .zip(r.cumulative)
                .map(|(&bound, count)| {
                    let mut b = Bucket::default();
                    b.set_upper_bound(bound);
                    b.set_cumulative_count(count);
                    b
                })
                .collect(),
        );
        m.set_histogram(hist);
        metrics.push(m);
    }
    f.family(
        "sluice_decision_duration_seconds",
        "Time to answer a decision RPC inside the server (transport excluded)",
        MetricType::HISTOGRAM,
        metrics,
    );
}

fn limits(f: &mut Families, state: &HttpState) {
    let rules = state.engine.rules();
    let mut samples: Vec<([(&str, String); 4], u64)> = Vec::new();
    for rule in rules.rules() {
        for limit in &rule.limits {
            for outcome in LimitOutcome::ALL {
                samples.push((
                    [
                        ("domain", rule.rule.domain.clone()),
                        ("rule", rule.id.to_string()),
                        ("limit", limit.label.name.clone()),
                        ("outcome", outcome.as_str().to_string()),
                    ],
                    limit.label.counts.get(outcome),
                ));
            }
        }
    }
    let owned: Vec<(Vec<(&str, &str)>, f64)> = samples
        .iter()
        .map(|(l, v)| (l.iter().map(|(k, v)| (*k, v.as_str())).collect(), *v as f64))
        .collect();
    f.counters(
        "sluice_rule_decisions_total",
        "Decisions per rule and limit, by outcome: ok, near_limit (80% or more used), over_limit, shadow (a shadow-mode limit would have denied)",
        owned,
    );
    f.gauge("sluice_rules", "Rules in force", rules.len() as f64);
    f.gauge(
        "sluice_rules_revision",
        "Revision of the rule set in force",
        rules.revision() as f64,
    );
    f.gauge(
        "sluice_buckets",
        "Bucket states held in memory",
        state.engine.tracked_buckets() as f64,
    );
    f.counter(
        "sluice_bucket_evictions_total",
        "Buckets evicted at capacity before their limit had recovered (each may hand its key a fresh allowance)",
        state.engine.lossy_evictions(),
    );
    f.counter(
        "sluice_observations_dropped_total",
        "Observations dropped at the learning loop's per-minute caps",
        state.engine.observer().overflow_total(),
    );
}

fn learning(f: &mut Families, state: &HttpState) {
    let counts = &state.learning.counts;
    f.counter(
        "sluice_clients_scored_total",
        "Client-minutes scored by the learning loop",
        load(&counts.clients_scored),
    );
    f.counter(
        "sluice_learning_ticks_total",
        "Minutes (learning ticks) the learning loop closed",
        load(&counts.minutes_closed),
    );
    let adjustments: Vec<(Vec<(&str, &str)>, f64)> = counts
        .adjustments()
        .into_iter()
        .map(|((cause, kind, signal), n)| {
            (
                vec![("cause", cause), ("kind", kind), ("signal", signal)],
                n as f64,
            )
        })
        .collect();
    f.counters(
        "sluice_limit_adjustments_total",
        "Changes of a client's adaptive limit, by cause, the action after it and the signal that called for it",
        adjustments,
    );
    let mut in_force: std::collections::BTreeMap<(&str, &str, &str), u64> = Default::default();
    for kind in ["throttle", "block"] {
        in_force.insert((kind, "forest", "false"), 0);
    }
    for a in state.engine.actions().sorted() {
        let shadow = if a.shadow { "true" } else { "false" };
        *in_force
            .entry((a.kind.name(), a.signal.name(), shadow))
            .or_default() += 1;
    }
    let in_force: Vec<(Vec<(&str, &str)>, f64)> = in_force
        .iter()
        .map(|((kind, signal, shadow), n)| {
            (
                vec![("kind", *kind), ("signal", *signal), ("shadow", *shadow)],
                *n as f64,
            )
        })
        .collect();
    f.gauges(
        "sluice_anomaly_actions",
        "Anomaly actions in force, by kind, the signal that called for them and whether they are recorded only (shadow)",
        in_force,
    );
    let model = state.learning.status().model.clone();
    f.gauge(
        "sluice_anomaly_model_version",
        "Version of the isolation forest scoring clients (0: none yet)",
        model.version as f64,
    );
    f.gauge(
        "sluice_anomaly_model_trained_timestamp_seconds",
        "When the isolation forest in use was trained (0: none yet)",
        model.trained_at.map_or(0.0, |t| t as f64 / 1e9),
    );
}

fn forecasting(f: &mut Families, state: &HttpState) {
    let models = state.models.status();
    f.gauge(
        "sluice_forecaster_lstm",
        "1 while the LSTM forecasts, 0 while the statistical baseline does",
        if models.lstm_loaded() { 1.0 } else { 0.0 },
    );
    f.gauge(
        "sluice_forecast_model_version",
        "Version of the forecasting model loaded (0: none)",
        models.model_version as f64,
    );
    let status = state.learning.status();
    let mut predicted: Vec<(Vec<(&str, &str)>, f64)> = Vec::new();
    for (series, forecast) in &status.forecasts {
        predicted.push((
            vec![("series", series.as_str()), ("horizon", "1m")],
            forecast[0],
        ));
        predicted.push((
            vec![("series", series.as_str()), ("horizon", "15m")],
            forecast[forecast.len() - 1],
        ));
    }
    f.gauges(
        "sluice_forecast_requests",
        "Requests per minute forecast for each watched endpoint (and * for all traffic), 1 and 15 minutes ahead",
        predicted,
    );
    let actual: Vec<(Vec<(&str, &str)>, f64)> = status
        .measured
        .iter()
        .map(|(series, n)| (vec![("series", series.as_str())], *n))
        .collect();
    f.gauges(
        "sluice_actual_requests",
        "Requests measured in the last closed minute for each watched endpoint (and * for all traffic)",
        actual,
    );
    f.gauge(
        "sluice_pressure_factor",
        "Factor applied to STD limits on low-priority endpoints (1: no cut)",
        state.engine.pressure(),
    );
}

fn storage(f: &mut Families, state: &HttpState) {
    let h = &state.history_stats;
    f.counter(
        "sluice_history_rows_written_total",
        "History rows written to the database",
        load(&h.written_rows),
    );
    f.counter(
        "sluice_history_rows_dropped_total",
        "History rows dropped (buffer full while the database was down)",
        load(&h.dropped_rows),
    );
    f.gauge(
        "sluice_history_rows_buffered",
        "History rows waiting for the database",
        load(&h.buffered_rows) as f64,
    );
    let Some(fleet) = &state.fleet else { return };
    let s = &fleet.stats;
    for (name, help, counter) in [
        (
            "sluice_counters_shared_total",
            "Decisions whose buckets the shared counters (Redis) answered",
            &s.shared,
        ),
        (
            "sluice_counters_fallbacks_total",
            "Decisions the failure policy answered (counters slow, down, or the breaker open)",
            &s.fallbacks,
        ),
        (
            "sluice_counters_timeouts_total",
            "Calls to the shared counters that outlived the budget",
            &s.timeouts,
        ),
        (
            "sluice_counters_errors_total",
            "Calls to the shared counters that failed",
            &s.errors,
        ),
        (
            "sluice_counters_breaker_opened_total",
            "Times the circuit breaker opened",
            &s.breaker_opened,
        ),
        (
            "sluice_counters_cached_total",
            "Cached mode: decisions answered from local buckets",
            &s.cached,
        ),
        (
            "sluice_counters_flushes_total",
            "Cached mode: flushes of admitted hits that Redis answered",
            &s.flushes,
        ),
        (
            "sluice_counters_dropped_hits_total",
            "Admitted hits never flushed (too many keys waiting while Redis was down)",
            &s.dropped_hits,
        ),
        (
            "sluice_counters_late_total",
            "Exact mode: scripts that answered after their decision's budget, then reconciled",
            &s.late,
        ),
        (
            "sluice_counters_refunded_hits_total",
            "Exact mode: hits a late script counted for a refused decision, given back",
            &s.refunded_hits,
        ),
        (
            "sluice_counters_local_admitted_hits_total",
            "Hits admitted without the shared counters (failure policy, or cached mode while they were out of reach)",
            &s.local_admitted_hits,
        ),
        (
            "sluice_counters_reconciled_hits_total",
            "Exact mode: hits admitted without the counters, added to them once they answered",
            &s.reconciled_hits,
        ),
    ] {
        f.counter(name, help, load(counter));
    }
    f.counter(
        "sluice_counters_repaired_keys_total",
        "Counters' keys that held something other than a bucket state, reset to fresh buckets",
        fleet.counters().repaired_keys(),
    );
    f.gauge(
        "sluice_fleet_replicas",
        "The local policy's divisor: --fleet-replicas, else the replicas alive in the fleet state",
        fleet.divisor() as f64,
    );
    f.gauge(
        "sluice_counters_degraded",
        "1 while the breaker is open (decisions follow the failure policy), else 0",
        if fleet.degraded() { 1.0 } else { 0.0 },
    );
}
