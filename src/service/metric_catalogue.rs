//! Every metric the service exports, listed once: its Prometheus name, its OpenTelemetry
//! name(s), its kind, its help text and the reader that takes its samples off the handle
//! bundle. `/metrics` (`http::metrics`) and the OTLP export (`telemetry`) both walk this list,
//! so a metric added here reaches both, with one help text.
//!
//! Readers only load counters the service keeps anyway; nothing here is on a decision's path.
//! Labels are bounded by configuration, never by traffic: rules and their limits, tiers, denial
//! reasons, action kinds and signals, watched endpoints. No client key is ever a label.
//!
//! Not here: the readers themselves (`metric_readers`), the exporters' encodings, the decision-duration histogram's recording (it is timed
//! at the gRPC edge; its names are [`DECISION_DURATION`]), the process metrics Prometheus'
//! own collector adds. docs/operating.md lists every name; a test keeps the two in step.

use std::sync::atomic::Ordering;

use crate::service::handles::Handles;
use crate::service::metric_readers::*;

/// A monotonic count (decisions, denials…) or a current value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One value of a metric, with its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// How a metric is shown over OTLP: under `name`, the samples whose `only` label has that value,
/// summed over every label not in `keep` (`None`: all labels kept). OTLP came first with
/// totals where `/metrics` has a label (decisions by tier), and its names are kept.
#[derive(Clone, Copy, Debug)]
pub struct Otlp {
    pub name: &'static str,
    pub keep: Option<&'static [&'static str]>,
    pub only: Option<(&'static str, &'static str)>,
}

/// The same samples and labels under the OTLP `name`.
const fn same(name: &'static str) -> Otlp {
    Otlp {
        name,
        keep: None,
        only: None,
    }
}

/// One total over every label, under the OTLP `name`.
const fn total(name: &'static str) -> Otlp {
    Otlp {
        name,
        keep: Some(&[]),
        only: None,
    }
}

/// One metric of the catalogue.
pub struct MetricDef {
    /// The Prometheus family name (counters end in `_total`).
    pub prometheus: &'static str,
    /// Its OpenTelemetry instruments: usually one, under a dotted name.
    pub otlp: &'static [Otlp],
    pub kind: Kind,
    pub help: &'static str,
    /// Its samples now; empty when the part it reads is not running (no shared counters).
    pub read: fn(&Handles) -> Vec<Sample>,
}

/// The decision RPCs' duration: a histogram recorded at the gRPC edge, by method.
pub struct HistogramNames {
    pub prometheus: &'static str,
    pub otlp: &'static str,
    pub help: &'static str,
}

pub const DECISION_DURATION: HistogramNames = HistogramNames {
    prometheus: "sluice_decision_duration_seconds",
    otlp: "sluice.rpc.duration",
    help: "Time to answer a decision RPC inside the server (transport excluded)",
};

use Kind::{Counter, Gauge};

/// Every metric, in the order `/metrics` shows them.
pub const CATALOGUE: &[MetricDef] = &[
    // Decisions.
    MetricDef {
        prometheus: "sluice_decisions_total",
        otlp: &[total("sluice.decisions")],
        kind: Counter,
        help: "Decisions taken (Envoy RLS requests and ShouldAllow calls), by the caller's tier",
        read: |h| per_tier(h, |t| &t.decisions),
    },
    MetricDef {
        prometheus: "sluice_decisions_denied_total",
        otlp: &[total("sluice.decisions.denied")],
        kind: Counter,
        help: "Decisions that denied, by the caller's tier",
        read: |h| per_tier(h, |t| &t.denied),
    },
    MetricDef {
        prometheus: "sluice_denials_total",
        otlp: &[
            Otlp {
                name: "sluice.decisions.anomaly_denied",
                keep: Some(&[]),
                only: Some(("reason", "anomaly")),
            },
            Otlp {
                name: "sluice.decisions.forecast_denied",
                keep: Some(&[]),
                only: Some(("reason", "pressure_cut")),
            },
        ],
        kind: Counter,
        help: "Denials by reason: a limit, an anomaly action (throttle or block), a limit cut under pressure",
        read: denials,
    },
    MetricDef {
        prometheus: "sluice_shadow_denials_total",
        otlp: &[same("sluice.decisions.shadow_denied")],
        kind: Counter,
        help: "Decisions a shadow-mode limit (or global shadow mode) would have denied",
        read: |h| one(load(&h.engine.stats().shadow_denied)),
    },
    // Limits and buckets.
    MetricDef {
        prometheus: "sluice_rule_decisions_total",
        otlp: &[same("sluice.rule.decisions")],
        kind: Counter,
        help: "Decisions per rule and limit, by outcome: ok, near_limit (80% or more used), over_limit, shadow (a shadow-mode limit would have denied)",
        read: rule_decisions,
    },
    MetricDef {
        prometheus: "sluice_rules",
        otlp: &[same("sluice.rules")],
        kind: Gauge,
        help: "Rules in force",
        read: |h| one(h.engine.rules().len() as f64),
    },
    MetricDef {
        prometheus: "sluice_rules_revision",
        otlp: &[same("sluice.rules.revision")],
        kind: Gauge,
        help: "Revision of the rule set in force",
        read: |h| one(h.engine.rules().revision() as f64),
    },
    MetricDef {
        prometheus: "sluice_buckets",
        otlp: &[same("sluice.buckets")],
        kind: Gauge,
        help: "Bucket states held in memory",
        read: |h| one(h.engine.tracked_buckets() as f64),
    },
    MetricDef {
        prometheus: "sluice_bucket_evictions_total",
        otlp: &[same("sluice.buckets.lossy_evictions")],
        kind: Counter,
        help: "Buckets evicted at capacity before their limit had recovered (each may hand its key a fresh allowance)",
        read: |h| one(h.engine.lossy_evictions() as f64),
    },
    MetricDef {
        prometheus: "sluice_observations_dropped_total",
        otlp: &[same("sluice.observe.overflow")],
        kind: Counter,
        help: "Observations dropped at the learning loop's per-minute caps",
        read: |h| one(h.engine.observer().overflow_total() as f64),
    },
    // Learning.
    MetricDef {
        prometheus: "sluice_clients_scored_total",
        otlp: &[same("sluice.learner.clients_scored")],
        kind: Counter,
        help: "Client-minutes scored by the learning loop",
        read: |h| one(load(&h.learning.counts.clients_scored)),
    },
    MetricDef {
        prometheus: "sluice_learning_ticks_total",
        otlp: &[same("sluice.learner.ticks")],
        kind: Counter,
        help: "Minutes (learning ticks) the learning loop closed",
        read: |h| one(load(&h.learning.counts.minutes_closed)),
    },
    MetricDef {
        prometheus: "sluice_limit_adjustments_total",
        otlp: &[same("sluice.limit.adjustments")],
        kind: Counter,
        help: "Changes of a client's adaptive limit, by cause, the action after it and the signal that called for it",
        read: adjustments,
    },
    MetricDef {
        prometheus: "sluice_anomaly_actions",
        otlp: &[Otlp {
            name: "sluice.anomaly.actions",
            keep: Some(&["kind"]),
            only: None,
        }],
        kind: Gauge,
        help: "Anomaly actions in force, by kind, the signal that called for them and whether they are recorded only (shadow)",
        read: actions_in_force,
    },
    MetricDef {
        prometheus: "sluice_anomaly_model_version",
        otlp: &[same("sluice.learner.model_version")],
        kind: Gauge,
        help: "Version of the isolation forest scoring clients (0: none yet)",
        read: |h| one(h.learning.status().model.version as f64),
    },
    MetricDef {
        prometheus: "sluice_anomaly_model_trained_timestamp_seconds",
        otlp: &[same("sluice.learner.model_trained")],
        kind: Gauge,
        help: "When the isolation forest in use was trained (0: none yet)",
        read: |h| {
            one(h
                .learning
                .status()
                .model
                .trained_at
                .map_or(0.0, |t| t as f64 / 1e9))
        },
    },
    // Forecasting.
    MetricDef {
        prometheus: "sluice_forecaster_lstm",
        otlp: &[same("sluice.forecaster.lstm")],
        kind: Gauge,
        help: "1 while the LSTM forecasts, 0 while the statistical baseline does",
        read: |h| flag(h.models.status().lstm_loaded()),
    },
    MetricDef {
        prometheus: "sluice_forecast_model_version",
        otlp: &[same("sluice.forecaster.model_version")],
        kind: Gauge,
        help: "Version of the forecasting model loaded (0: none)",
        read: |h| one(h.models.status().model_version as f64),
    },
    MetricDef {
        prometheus: "sluice_forecast_requests",
        otlp: &[same("sluice.forecast.requests")],
        kind: Gauge,
        help: "Requests per minute forecast for each watched endpoint (and * for all traffic), 1 and 15 minutes ahead",
        read: forecasts,
    },
    MetricDef {
        prometheus: "sluice_actual_requests",
        otlp: &[same("sluice.actual.requests")],
        kind: Gauge,
        help: "Requests measured in the last closed minute for each watched endpoint (and * for all traffic)",
        read: measured,
    },
    MetricDef {
        prometheus: "sluice_pressure_factor",
        otlp: &[same("sluice.pressure.factor")],
        kind: Gauge,
        help: "Factor applied to STD limits on low-priority endpoints (1: no cut)",
        read: |h| one(h.engine.pressure()),
    },
    // Storage.
    MetricDef {
        prometheus: "sluice_history_rows_written_total",
        otlp: &[same("sluice.history.rows_written")],
        kind: Counter,
        help: "History rows written to the database",
        read: |h| one(load(&h.history_stats.written_rows)),
    },
    MetricDef {
        prometheus: "sluice_history_rows_dropped_total",
        otlp: &[same("sluice.history.rows_dropped")],
        kind: Counter,
        help: "History rows dropped (buffer full while the database was down)",
        read: |h| one(load(&h.history_stats.dropped_rows)),
    },
    MetricDef {
        prometheus: "sluice_history_rows_buffered",
        otlp: &[same("sluice.history.rows_buffered")],
        kind: Gauge,
        help: "History rows waiting for the database",
        read: |h| one(load(&h.history_stats.buffered_rows)),
    },
    // Envoy's Rate Limit Quota Service.
    MetricDef {
        prometheus: "sluice_rlqs_streams",
        otlp: &[same("sluice.rlqs.streams")],
        kind: Gauge,
        help: "RLQS streams open (one per Envoy, usually)",
        read: |h| one(load(&h.quotas.stats.streams_open)),
    },
    MetricDef {
        prometheus: "sluice_rlqs_buckets",
        otlp: &[same("sluice.rlqs.buckets")],
        kind: Gauge,
        help: "RLQS buckets reported by at least one Envoy",
        read: |h| one(h.quotas.buckets() as f64),
    },
    MetricDef {
        prometheus: "sluice_rlqs_reports_total",
        otlp: &[same("sluice.rlqs.reports")],
        kind: Counter,
        help: "RLQS bucket usage reports received",
        read: |h| one(load(&h.quotas.stats.reports)),
    },
    MetricDef {
        prometheus: "sluice_rlqs_requests_total",
        otlp: &[same("sluice.rlqs.requests")],
        kind: Counter,
        help: "Requests Envoys decided themselves on their RLQS assignments, as they reported them",
        read: |h| {
            vec![
                labelled(
                    &[("decision", "allowed")],
                    load(&h.quotas.stats.requests_allowed),
                ),
                labelled(
                    &[("decision", "denied")],
                    load(&h.quotas.stats.requests_denied),
                ),
            ]
        },
    },
    MetricDef {
        prometheus: "sluice_rlqs_assignments_total",
        otlp: &[same("sluice.rlqs.assignments")],
        kind: Counter,
        help: "RLQS assignments sent, by reason: share, cut, throttled, blocked, uncovered",
        read: |h| {
            h.quotas
                .stats
                .assignments()
                .into_iter()
                .map(|(reason, n)| labelled(&[("reason", reason)], n as f64))
                .collect()
        },
    },
    MetricDef {
        prometheus: "sluice_rlqs_refused_total",
        otlp: &[same("sluice.rlqs.refused")],
        kind: Counter,
        help: "RLQS bucket reports refused at the caps (the stream is ended with RESOURCE_EXHAUSTED)",
        read: |h| one(load(&h.quotas.stats.refused)),
    },
    // Concurrency leases and reservations.
    MetricDef {
        prometheus: "sluice_leases_total",
        otlp: &[same("sluice.leases")],
        kind: Counter,
        help: "Lease acquires, by result: granted, refused",
        read: |h| {
            vec![
                labelled(&[("result", "granted")], load(&h.leases.granted)),
                labelled(&[("result", "refused")], load(&h.leases.refused)),
            ]
        },
    },
    MetricDef {
        prometheus: "sluice_reservations_total",
        otlp: &[same("sluice.reservations")],
        kind: Counter,
        help: "Reservations, by result: allowed, denied, committed, cancelled, unknown (settling one unknown, settled already or expired)",
        read: |h| {
            h.reservations
                .stats
                .by_result()
                .into_iter()
                .map(|(result, n)| labelled(&[("result", result)], n as f64))
                .collect()
        },
    },
    // The shared counters (`--counters`).
    MetricDef {
        prometheus: "sluice_counters_shared_total",
        otlp: &[same("sluice.counters.shared")],
        kind: Counter,
        help: "Decisions whose buckets the shared counters (Redis) answered",
        read: |h| fleet_stat(h, |s| &s.shared),
    },
    MetricDef {
        prometheus: "sluice_counters_fallbacks_total",
        otlp: &[same("sluice.counters.fallbacks")],
        kind: Counter,
        help: "Decisions the failure policy answered (counters slow, down, or the breaker open)",
        read: |h| fleet_stat(h, |s| &s.fallbacks),
    },
    MetricDef {
        prometheus: "sluice_counters_timeouts_total",
        otlp: &[same("sluice.counters.timeouts")],
        kind: Counter,
        help: "Calls to the shared counters that outlived the budget",
        read: |h| fleet_stat(h, |s| &s.timeouts),
    },
    MetricDef {
        prometheus: "sluice_counters_errors_total",
        otlp: &[same("sluice.counters.errors")],
        kind: Counter,
        help: "Calls to the shared counters that failed",
        read: |h| fleet_stat(h, |s| &s.errors),
    },
    MetricDef {
        prometheus: "sluice_counters_breaker_opened_total",
        otlp: &[same("sluice.counters.breaker_opened")],
        kind: Counter,
        help: "Times the circuit breaker opened",
        read: |h| fleet_stat(h, |s| &s.breaker_opened),
    },
    MetricDef {
        prometheus: "sluice_counters_cached_total",
        otlp: &[same("sluice.counters.cached")],
        kind: Counter,
        help: "Cached mode: decisions answered from local buckets",
        read: |h| fleet_stat(h, |s| &s.cached),
    },
    MetricDef {
        prometheus: "sluice_counters_flushes_total",
        otlp: &[same("sluice.counters.flushes")],
        kind: Counter,
        help: "Cached mode: flushes of admitted hits that Redis answered",
        read: |h| fleet_stat(h, |s| &s.flushes),
    },
    MetricDef {
        prometheus: "sluice_counters_dropped_hits_total",
        otlp: &[same("sluice.counters.dropped_hits")],
        kind: Counter,
        help: "Admitted hits never flushed (too many keys waiting while Redis was down)",
        read: |h| fleet_stat(h, |s| &s.dropped_hits),
    },
    MetricDef {
        prometheus: "sluice_counters_late_total",
        otlp: &[same("sluice.counters.late")],
        kind: Counter,
        help: "Exact mode: scripts that answered after their decision's budget, then reconciled",
        read: |h| fleet_stat(h, |s| &s.late),
    },
    MetricDef {
        prometheus: "sluice_counters_refunded_hits_total",
        otlp: &[same("sluice.counters.refunded_hits")],
        kind: Counter,
        help: "Exact mode: hits a late script counted for a refused decision, given back",
        read: |h| fleet_stat(h, |s| &s.refunded_hits),
    },
    MetricDef {
        prometheus: "sluice_counters_local_admitted_hits_total",
        otlp: &[same("sluice.counters.local_admitted_hits")],
        kind: Counter,
        help: "Hits admitted without the shared counters (failure policy, or cached mode while they were out of reach)",
        read: |h| fleet_stat(h, |s| &s.local_admitted_hits),
    },
    MetricDef {
        prometheus: "sluice_counters_reconciled_hits_total",
        otlp: &[same("sluice.counters.reconciled_hits")],
        kind: Counter,
        help: "Exact mode: hits admitted without the counters, added to them once they answered",
        read: |h| fleet_stat(h, |s| &s.reconciled_hits),
    },
    MetricDef {
        prometheus: "sluice_counters_repaired_keys_total",
        otlp: &[same("sluice.counters.repaired_keys")],
        kind: Counter,
        help: "Counters' keys that held something other than a bucket state, reset to fresh buckets",
        read: |h| fleet(h, |f| f.counters().repaired_keys() as f64),
    },
    MetricDef {
        prometheus: "sluice_fleet_replicas",
        otlp: &[same("sluice.fleet.replicas")],
        kind: Gauge,
        help: "The local policy's divisor: --fleet-replicas, else the replicas alive in the fleet state",
        read: |h| fleet(h, |f| f.divisor() as f64),
    },
    MetricDef {
        prometheus: "sluice_fleet_learning",
        otlp: &[same("sluice.fleet.learning")],
        kind: Gauge,
        help: "1 while each minute is learned on the fleet's whole minute, 0 while this replica learns alone (the exchange failed)",
        read: |h| {
            exchange(h, |x| {
                if x.fleet_wide.load(Ordering::Relaxed) {
                    1.0
                } else {
                    0.0
                }
            })
        },
    },
    MetricDef {
        prometheus: "sluice_fleet_minutes_total",
        otlp: &[same("sluice.fleet.minutes")],
        kind: Counter,
        help: "Minutes learned with the other replicas' clients (together) or alone while others were alive (alone)",
        read: |h| {
            h.exchange
                .as_deref()
                .map(|x| {
                    vec![
                        labelled(&[("learned", "together")], load(&x.stats.together)),
                        labelled(&[("learned", "alone")], load(&x.stats.alone)),
                    ]
                })
                .unwrap_or_default()
        },
    },
    MetricDef {
        prometheus: "sluice_fleet_shared_clients_total",
        otlp: &[same("sluice.fleet.shared_clients")],
        kind: Counter,
        help: "Client-minutes this replica shared with the others at its closes",
        read: |h| exchange(h, |x| load(&x.shared_clients)),
    },
    MetricDef {
        prometheus: "sluice_fleet_received_clients_total",
        otlp: &[same("sluice.fleet.received_clients")],
        kind: Counter,
        help: "Client-minutes the other replicas shared, merged into this replica's minutes",
        read: |h| exchange(h, |x| load(&x.received_clients)),
    },
    MetricDef {
        prometheus: "sluice_fleet_unreadable_shares_total",
        otlp: &[same("sluice.fleet.unreadable_shares")],
        kind: Counter,
        help: "Other replicas' minute shares that could not be read (skipped)",
        read: |h| exchange(h, |x| load(&x.unreadable)),
    },
    MetricDef {
        prometheus: "sluice_counters_degraded",
        otlp: &[same("sluice.counters.degraded")],
        kind: Gauge,
        help: "1 while the breaker is open (decisions follow the failure policy), else 0",
        read: |h| fleet(h, |f| if f.degraded() { 1.0 } else { 0.0 }),
    },
];

/// The samples `view` shows of `samples`: those matching its `only`, summed over the labels it
/// does not keep (in the order they first appear).
pub fn otlp_samples(view: &Otlp, samples: Vec<Sample>) -> Vec<Sample> {
    let matching = samples.into_iter().filter(|s| {
        view.only
            .is_none_or(|(key, value)| s.labels.iter().any(|(k, v)| *k == key && v == value))
    });
    let Some(keep) = view.keep else {
        return matching.collect();
    };
    let mut out: Vec<Sample> = Vec::new();
    for s in matching {
        let labels: Vec<(&'static str, String)> = s
            .labels
            .into_iter()
            .filter(|(k, _)| keep.contains(k))
            .collect();
        match out.iter_mut().find(|o| o.labels == labels) {
            Some(o) => o.value += s.value,
            None => out.push(Sample {
                labels,
                value: s.value,
            }),
        }
    }
    out
}

#[cfg(test)]
#[path = "metric_catalogue_tests.rs"]
mod tests;
