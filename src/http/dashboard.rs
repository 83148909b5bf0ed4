//! The dashboard's JSON endpoints (`/api/…`), read by the page the listener serves at `/`. Each
//! answers one panel from what the service already holds (engine, learning loop, the timeline)
//! or reads from the history in the database; none of them changes anything.
//!
//! The shapes are the page's, documented in docs/operating.md ("Watching it"); they carry client keys, so
//! the listener asks for the admin token.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use sluice_core::forecast::live::capacities;
use sluice_core::learn::actions::ActionKind;
use sluice_core::learn::observe::user_of_key;
use sluice_core::rules::Tier;
use sluice_core::time::NANOS_PER_MILLI;
use sluice_core::verdict::Subject;

use super::{ApiResult, HttpError, Shared};
use crate::store::forecast_history::{HORIZON_MS, predicted_for};
use crate::store::history::HistoryQuery;
use crate::store::history_rows::PRESSURE_SUBJECT;

/// Most rows one panel reads from the database.
const MAX_ROWS: u32 = 1_000;
/// Busiest keys shown per tier.
const BUSIEST: usize = 8;

fn ms(nanos: u64) -> i64 {
    (nanos / NANOS_PER_MILLI) as i64
}

/// `?minutes=N`: how far back a panel looks (1 to 1,440; default 60).
#[derive(Debug, Deserialize)]
pub struct Window {
    minutes: Option<i64>,
}

impl Window {
    fn since(&self, now_ms: i64) -> Result<i64, HttpError> {
        let minutes = self.minutes.unwrap_or(60);
        if !(1..=1_440).contains(&minutes) {
            return Err(HttpError::BadRequest(format!(
                "minutes: {minutes} is out of range (1 to 1440)"
            )));
        }
        Ok(now_ms - minutes * 60_000)
    }
}

/// The header line: what is in force.
pub async fn overview(State(s): State<Shared>) -> ApiResult {
    let stats = s.engine.stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let rules = s.engine.rules();
    let status = s.learning.status();
    let models = s.models.status();
    let ready = *s.ready.borrow();
    Ok(Json(json!({
        "instance": s.instance,
        "version": env!("CARGO_PKG_VERSION"),
        "now_ms": s.clock.now_millis(),
        "ready": ready.rules_loaded,
        "rules": rules.len(),
        "revision": rules.revision(),
        "shadow": s.engine.shadow(),
        "decisions": load(&stats.decisions),
        "denied": load(&stats.denied),
        "buckets": s.engine.tracked_buckets(),
        "actions_in_force": s.engine.actions().sorted().len(),
        "pressure_factor": s.engine.pressure(),
        "cut": status.cut.as_ref().map(|c| json!({
            "factor": c.factor, "since_ms": ms(c.since), "cause": c.cause.describe(), "shadow": c.shadow,
        })),
        "forecaster": models.forecaster,
        "anomaly_model_version": status.model.version,
        "shared_counters": ready.shared_counters,
        "fleet_learning": ready.fleet_learning,
        "quotas": s.quotas.snapshot(),
    })))
}

/// Decisions and denials over the last hour, by tier and reason.
pub async fn timeline(State(s): State<Shared>) -> ApiResult {
    Ok(Json(json!({
        "every_seconds": crate::service::timeline::SAMPLE_EVERY.as_secs(),
        "samples": s.timeline.samples(),
    })))
}

#[derive(Serialize)]
struct LimitView {
    rule: String,
    limit: String,
    capacity: u64,
    remaining: u64,
    unit: &'static str,
    shadow: bool,
}

/// The busiest keys of the open minute per tier, and their buckets (available vs used).
pub async fn buckets(State(s): State<Shared>) -> ApiResult {
    let now = s.clock.now();
    let busiest_by_tier = s.engine.observer().busiest(BUSIEST);
    let domain = s.default_domain.as_str();
    let mut tiers: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (tier, clients) in Tier::ALL.into_iter().zip(&busiest_by_tier) {
        let busiest = clients
            .iter()
            .map(|c| {
                let (user, address) = match user_of_key(&c.client) {
                    Some(user) => (user, ""),
                    None => ("", &*c.client),
                };
                let subject = Subject {
                    user_id: user,
                    remote_address: address,
                    tier,
                    ..Subject::default()
                };
                let limits: Vec<LimitView> = s
                    .engine
                    .client_state(domain, &subject, now)
                    .into_iter()
                    .map(|l| LimitView {
                        rule: l.limit.label.rule_id.clone(),
                        limit: l.limit.label.name.clone(),
                        capacity: l.limit.quota.capacity,
                        remaining: l.remaining,
                        unit: l.limit.quota.unit.as_str(),
                        shadow: l.shadow,
                    })
                    .collect();
                // An anomaly action in force is the limit that holds: a throttled client's rule
                // bucket may be full while the action denies it.
                let action = s.engine.action_for(&subject, now).map(|a| {
                    let per_minute = match a.kind {
                        ActionKind::Throttle { per_minute } => Some(per_minute),
                        ActionKind::Block => None,
                    };
                    json!({ "kind": a.kind.name(), "per_minute": per_minute, "shadow": a.shadow })
                });
                json!({
                    "client": c.client,
                    "requests": c.requests,
                    "denied": c.denied + c.denied_anomaly,
                    "limits": limits,
                    "action": action,
                })
            })
            .collect();
        tiers.insert(tier.as_str(), busiest);
    }
    Ok(Json(json!({ "domain": domain, "tiers": tiers })))
}

/// Predicted vs actual requests per watched endpoint, with its capacity and the cut periods.
pub async fn forecasts(State(s): State<Shared>, Query(w): Query<Window>) -> ApiResult {
    let now_ms = s.clock.now_millis();
    let since_ms = w.since(now_ms)?;
    let query = |since_ms, until_ms| HistoryQuery {
        client: None,
        since_ms,
        until_ms,
        limit: MAX_ROWS * 4,
    };
    let mut rows = s.database.forecasts(&query(since_ms, now_ms + 1)).await?;
    rows.retain(|r| r.instance == s.instance);
    let mut earlier = s
        .database
        .forecasts(&query(since_ms - HORIZON_MS, since_ms))
        .await?;
    earlier.retain(|r| r.instance == s.instance);
    rows.sort_by_key(|r| r.minute_ms);
    let predicted = predicted_for(&rows, &earlier);
    let capacity: BTreeMap<String, u64> = capacities(&s.engine.rules()).into_iter().collect();
    let mut series: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (r, (p1, p15)) in rows.iter().zip(predicted) {
        series.entry(r.series.as_str()).or_default().push(json!({
            "minute_ms": r.minute_ms, "actual": r.actual, "predicted_1": p1, "predicted_15": p15,
            "method_1": r.method_1, "method_15": r.method_15,
        }));
    }
    let adjustments = s
        .database
        .adjustments(&HistoryQuery {
            client: Some(PRESSURE_SUBJECT.to_string()),
            ..query(since_ms - 86_400_000, now_ms + 1)
        })
        .await?;
    let mut cuts: Vec<Value> = Vec::new();
    let mut open: Option<(i64, Value)> = None;
    for a in adjustments.iter().rev() {
        match &a.to_action {
            Some(to) => {
                let factor = serde_json::from_str::<Value>(to)
                    .ok()
                    .and_then(|v| v.get("factor").cloned());
                if open.is_none() {
                    open = Some((a.at_ms, factor.unwrap_or(Value::Null)));
                }
            }
            None => {
                if let Some((from, factor)) = open.take() {
                    cuts.push(json!({ "from_ms": from, "to_ms": a.at_ms, "factor": factor }));
                }
            }
        }
    }
    if let Some((from, factor)) = open {
        cuts.push(json!({ "from_ms": from, "to_ms": null, "factor": factor }));
    }
    cuts.retain(|c| c["to_ms"].as_i64().is_none_or(|to| to >= since_ms));
    let series: Vec<Value> = series
        .into_iter()
        .map(|(name, points)| {
            json!({ "series": name, "capacity_per_minute": capacity.get(name), "points": points })
        })
        .collect();
    Ok(Json(json!({ "series": series, "cuts": cuts })))
}

/// Anomaly scores over time, the actions in force and why.
pub async fn anomalies(State(s): State<Shared>, Query(w): Query<Window>) -> ApiResult {
    let now_ms = s.clock.now_millis();
    let since_ms = w.since(now_ms)?;
    let scores = s
        .database
        .scores(&HistoryQuery {
            client: None,
            since_ms,
            until_ms: now_ms + 1,
            limit: MAX_ROWS * 5,
        })
        .await?;
    let scores: Vec<Value> = scores
        .iter()
        .map(|r| {
            json!({
                "minute_ms": r.minute_ms, "client": r.client, "score": r.score,
                "requests": r.requests, "action": action_name(r.action.as_deref()),
            })
        })
        .collect();
    let actions: Vec<Value> = s
        .engine
        .actions()
        .sorted()
        .iter()
        .map(|a| {
            let per_minute = match a.kind {
                ActionKind::Throttle { per_minute } => Some(per_minute),
                ActionKind::Block => None,
            };
            json!({
                "client": a.client, "kind": a.kind.name(), "per_minute": per_minute,
                "signal": a.signal.name(), "why": a.why, "score": a.score,
                "since_ms": ms(a.since), "expires_at_ms": ms(a.expires_at), "shadow": a.shadow,
            })
        })
        .collect();
    Ok(Json(json!({ "scores": scores, "actions": actions })))
}

/// `throttle`, `block`, `cut` (a pressure cut) or `none`, from an action as stored.
fn action_name(stored: Option<&str>) -> &'static str {
    // Scores store the kind's name alone; adjustments the action as JSON.
    match stored {
        Some("block") => return "block",
        Some("throttle") => return "throttle",
        _ => {}
    }
    let kind = stored
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .and_then(|v| v.get("kind").and_then(Value::as_str).map(str::to_owned));
    match kind.as_deref() {
        Some("block") => "block",
        Some("throttle") => "throttle",
        Some("cut") => "cut",
        _ => "none",
    }
}

/// Recent rule changes (the audit log) and limit adjustments.
pub async fn changes(State(s): State<Shared>, Query(w): Query<Window>) -> ApiResult {
    let now_ms = s.clock.now_millis();
    let since_ms = w.since(now_ms)?;
    let audit = s.database.audit_log("", 50).await?;
    let rules: Vec<Value> = audit
        .iter()
        .map(|e| {
            json!({
                "at_ms": e.at_ms, "revision": e.revision, "actor": e.actor,
                "action": e.action, "rule_id": e.rule_id,
            })
        })
        .collect();
    let adjustments = s
        .database
        .adjustments(&HistoryQuery {
            client: None,
            since_ms,
            until_ms: now_ms + 1,
            limit: 100,
        })
        .await?;
    let adjustments: Vec<Value> = adjustments
        .iter()
        .map(|a| {
            json!({
                "at_ms": a.at_ms, "client": a.client, "from": action_name(a.from_action.as_deref()),
                "to": action_name(a.to_action.as_deref()), "cause": a.cause, "score": a.score,
                "shadow": a.shadow,
            })
        })
        .collect();
    Ok(Json(json!({ "rules": rules, "adjustments": adjustments })))
}
