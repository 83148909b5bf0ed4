//! How each metric's samples are read off the handle bundle: the counters the service keeps
//! anyway, loaded, and labelled by what configuration bounds (tiers, rules, reasons, watched
//! series). The catalogue (`metric_catalogue`) names each metric and points at its reader here.
//!
//! Not here: names, kinds, help texts or the OTLP views (the catalogue's).

use std::sync::atomic::{AtomicU64, Ordering};

use sluice_core::limit_stats::LimitOutcome;
use sluice_core::rules::Tier;
use sluice_core::verdict::TierStats;

use crate::service::fleet::{Fleet, FleetStats};
use crate::service::handles::Handles;
use crate::service::metric_catalogue::Sample;
use crate::service::minute_exchange::ExchangeStats;

pub(super) fn load(c: &AtomicU64) -> f64 {
    c.load(Ordering::Relaxed) as f64
}

pub(super) fn one(value: f64) -> Vec<Sample> {
    vec![Sample {
        labels: Vec::new(),
        value,
    }]
}

pub(super) fn flag(on: bool) -> Vec<Sample> {
    one(if on { 1.0 } else { 0.0 })
}

pub(super) fn labelled(labels: &[(&'static str, &str)], value: f64) -> Sample {
    Sample {
        labels: labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
        value,
    }
}

pub(super) fn per_tier(h: &Handles, pick: fn(&TierStats) -> &AtomicU64) -> Vec<Sample> {
    let stats = h.engine.stats();
    Tier::ALL
        .iter()
        .map(|t| {
            let tier = match t {
                Tier::Std => "STD",
                Tier::Prm => "PRM",
            };
            labelled(&[("tier", tier)], load(pick(&stats.by_tier[t.index()])))
        })
        .collect()
}

/// A reading of the shared counters, none without them.
pub(super) fn fleet(h: &Handles, read: fn(&Fleet) -> f64) -> Vec<Sample> {
    h.fleet.as_deref().map(read).map(one).unwrap_or_default()
}

pub(super) fn fleet_stat(h: &Handles, pick: fn(&FleetStats) -> &AtomicU64) -> Vec<Sample> {
    h.fleet
        .as_deref()
        .map(|f| one(load(pick(&f.stats))))
        .unwrap_or_default()
}

/// A reading of the minute exchange, none without shared counters.
pub(super) fn exchange(h: &Handles, read: fn(&ExchangeStats) -> f64) -> Vec<Sample> {
    h.exchange
        .as_deref()
        .map(|x| one(read(&x.stats)))
        .unwrap_or_default()
}

pub(super) fn denials(h: &Handles) -> Vec<Sample> {
    let stats = h.engine.stats();
    let (denied, anomaly, cut) = (
        stats.denied.load(Ordering::Relaxed),
        stats.anomaly_denied.load(Ordering::Relaxed),
        stats.forecast_denied.load(Ordering::Relaxed),
    );
    vec![
        labelled(
            &[("reason", "limit")],
            denied.saturating_sub(anomaly + cut) as f64,
        ),
        labelled(&[("reason", "anomaly")], anomaly as f64),
        labelled(&[("reason", "pressure_cut")], cut as f64),
    ]
}

pub(super) fn rule_decisions(h: &Handles) -> Vec<Sample> {
    let rules = h.engine.rules();
    let mut samples = Vec::new();
    for rule in rules.rules() {
        for limit in &rule.limits {
            for outcome in LimitOutcome::ALL {
                samples.push(Sample {
                    labels: vec![
                        ("domain", rule.rule.domain.clone()),
                        ("rule", rule.id.to_string()),
                        ("limit", limit.label.name.clone()),
                        ("outcome", outcome.as_str().to_string()),
                    ],
                    value: limit.label.counts.get(outcome) as f64,
                });
            }
        }
    }
    samples
}

pub(super) fn adjustments(h: &Handles) -> Vec<Sample> {
    h.learning
        .counts
        .adjustments()
        .into_iter()
        .map(|((cause, kind, signal), n)| {
            labelled(
                &[("cause", cause), ("kind", kind), ("signal", signal)],
                n as f64,
            )
        })
        .collect()
}

pub(super) fn actions_in_force(h: &Handles) -> Vec<Sample> {
    let mut in_force: std::collections::BTreeMap<(&str, &str, &str), u64> = Default::default();
    // Both kinds always present, so "none in force" is a zero rather than no series.
    for kind in ["throttle", "block"] {
        in_force.insert((kind, "forest", "false"), 0);
    }
    for a in h.engine.actions().sorted() {
        let shadow = if a.shadow { "true" } else { "false" };
        *in_force
            .entry((a.kind.name(), a.signal.name(), shadow))
            .or_default() += 1;
    }
    in_force
        .iter()
        .map(|((kind, signal, shadow), n)| {
            labelled(
                &[("kind", kind), ("signal", signal), ("shadow", shadow)],
                *n as f64,
            )
        })
        .collect()
}

pub(super) fn forecasts(h: &Handles) -> Vec<Sample> {
    let status = h.learning.status();
    let mut samples = Vec::new();
    for (series, forecast) in &status.forecasts {
        samples.push(labelled(
            &[("series", series.as_str()), ("horizon", "1m")],
            forecast[0],
        ));
        samples.push(labelled(
            &[("series", series.as_str()), ("horizon", "15m")],
            forecast[forecast.len() - 1],
        ));
    }
    samples
}

pub(super) fn measured(h: &Handles) -> Vec<Sample> {
    h.learning
        .status()
        .measured
        .iter()
        .map(|(series, n)| labelled(&[("series", series.as_str())], *n))
        .collect()
}
