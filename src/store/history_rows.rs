//! A closed minute (`sluice_core::minute::ClosedMinute`) as history rows: scores, endpoint
//! traffic, adjustments (the learner's and the pressure cut's), forecasts beside the actual
//! counts, the model grown and, in adaptive
//! mode, the instance's actions in force. Pure: the live minute loop submits what this returns,
//! and the equivalence test compares it between the live and the replay paths.

use sluice_core::forecast::pressure::PressureChange;
use sluice_core::learn::actions::ActionTable;
use sluice_core::learn::features::NAMES;
use sluice_core::learn::learner::Snapshot;
use sluice_core::learn::policy::Adjustment;
use sluice_core::minute::ClosedMinute;
use sluice_core::time::{NANOS_PER_MILLI, Nanos};

use super::history::{
    ActionRow, ActionSet, AdjustmentRow, ForecastRow, HistoryBatch, ModelRow, ScoreRow, TrafficRow,
};

/// The subject pressure adjustments are recorded under.
pub const PRESSURE_SUBJECT: &str = "priority=low,tier=STD";

fn ms(n: Nanos) -> i64 {
    (n / NANOS_PER_MILLI) as i64
}

/// A saved model as its row; `None` if it cannot be encoded (never, for a forest of numbers).
pub fn model_row(snapshot: &Snapshot) -> Option<ModelRow> {
    Some(ModelRow {
        version: snapshot.version as i64,
        trained_at_ms: snapshot.trained_at.map_or(0, ms),
        trained_on: snapshot.forest.trained_on as i64,
        body: serde_json::to_string(snapshot).ok()?,
    })
}

/// A change of the pressure cut as an adjustment row: its subject is every STD subject of the
/// low-priority endpoints.
fn pressure_row(c: &PressureChange) -> AdjustmentRow {
    let cut = |factor: f64| serde_json::json!({"kind": "cut", "factor": factor}).to_string();
    let (from, to) = match c.what {
        "tightened" => (None, Some(cut(c.factor))),
        // Restored: the cut is lifted, back to the rules' own limits.
        _ => (Some(r#"{"kind":"cut"}"#.to_string()), None),
    };
    AdjustmentRow {
        at_ms: ms(c.at),
        client: PRESSURE_SUBJECT.into(),
        from_action: from,
        to_action: to,
        score: 0.0,
        cause: match (c.what, c.kind) {
            ("restored", _) => "pressure_restored",
            (_, "forecast") => "pressure_forecast",
            (_, "measured") => "pressure_measured",
            _ => "pressure_load",
        },
        shadow: c.shadow,
        expires_at_ms: None,
    }
}

/// A client's features as a JSON object, keys in alphabetical order, values to 4 decimals (a
/// non-finite one is `null`): what `serde_json` makes of a map of them, written straight into
/// one string. This runs for every scored client every minute (up to 200,000): building a map
/// per client was a tenth of the minute's CPU.
pub fn features_json(x: &[f64]) -> String {
    static ALPHABETICAL: std::sync::LazyLock<[usize; NAMES.len()]> =
        std::sync::LazyLock::new(|| {
            let mut order: [usize; NAMES.len()] = std::array::from_fn(|i| i);
            order.sort_unstable_by_key(|&i| NAMES[i]);
            order
        });
    let mut out = Vec::with_capacity(24 * NAMES.len());
    out.push(b'{');
    for &i in ALPHABETICAL.iter().filter(|&&i| i < x.len()) {
        if out.len() > 1 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, NAMES[i]);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, &((x[i] * 10_000.0).round() / 10_000.0));
    }
    out.push(b'}');
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// The history of one closed minute. `instance` names this instance's saved action set, which
/// is written in adaptive mode only.
pub fn minute_batch(minute: &ClosedMinute, instance: &str) -> HistoryBatch {
    let tick = &minute.tick;
    let minute_ms = ms(minute.start);
    let mut adjustments: Vec<AdjustmentRow> = tick.adjustments.iter().map(adjustment_row).collect();
    adjustments.extend(minute.pressure.iter().map(pressure_row));
    HistoryBatch {
        scores: tick
            .scores
            .iter()
            .map(|s| ScoreRow {
                minute_ms,
                client: s.client.to_string(),
                score: s.score,
                requests: s.requests as i64,
                features: features_json(&s.features),
                action: s.action,
                model_version: s.model_version as i64,
            })
            .collect(),
        traffic: tick
            .traffic
            .iter()
            .map(|e| TrafficRow {
                minute_ms,
                endpoint: e.endpoint.to_string(),
                tier: e.tier.as_str(),
                requests: e.requests as i64,
                allowed: e.allowed as i64,
                denied: e.denied as i64,
                denied_anomaly: e.denied_anomaly as i64,
                denied_cut: e.denied_cut as i64,
                errors: e.errors as i64,
            })
            .collect(),
        adjustments,
        actions: minute
            .adaptive
            .then(|| action_set(instance, minute.end, &tick.actions)),
        model: minute.model.as_ref().and_then(model_row),
        forecasts: forecast_rows(minute),
        instance: instance.to_string(),
    }
}

/// Each forecast series' minute: its measured count and what was forecast from it.
fn forecast_rows(minute: &ClosedMinute) -> Vec<ForecastRow> {
    let step = &minute.forecast;
    step.forecasts
        .iter()
        .zip(&step.methods)
        .map(|((series, forecast), methods)| {
            let rounded: Vec<f64> = forecast
                .iter()
                .map(|x| (x * 100.0).round() / 100.0)
                .collect();
            ForecastRow {
                minute_ms: ms(minute.start),
                series: series.clone(),
                actual: step.measured_of(series),
                forecast: serde_json::to_string(&rounded).unwrap_or_default(),
                method_1: methods.at_1.name(),
                method_15: methods.at_horizon.name(),
            }
        })
        .collect()
}

/// A learner's adjustment as its row; the action's JSON carries the signal and why.
pub fn adjustment_row(a: &Adjustment) -> AdjustmentRow {
    AdjustmentRow {
        at_ms: ms(a.at),
        client: a.client.clone(),
        from_action: a
            .from
            .map(|k| serde_json::to_string(&k).unwrap_or_default()),
        // The action, with the signal that called for it and why.
        to_action: a.to.map(|k| {
            let mut v = serde_json::to_value(k).unwrap_or_default();
            if let (Some(object), Some(signal)) = (v.as_object_mut(), a.signal) {
                object.insert("signal".into(), signal.name().into());
                object.insert("why".into(), a.why.clone().into());
            }
            v.to_string()
        }),
        score: a.score,
        cause: a.cause,
        shadow: a.shadow,
        expires_at_ms: a.expires_at.map(ms),
    }
}

/// The actions one instance has in force at `at`, to save.
pub fn action_set(instance: &str, at: Nanos, actions: &ActionTable) -> ActionSet {
    ActionSet {
        instance: instance.to_string(),
        at_ms: ms(at),
        actions: actions
            .sorted()
            .into_iter()
            .filter_map(|a| {
                Some(ActionRow {
                    client: a.client.to_string(),
                    body: serde_json::to_string(&a).ok()?,
                    expires_at_ms: ms(a.expires_at),
                })
            })
            .collect(),
    }
}

/// Adjustments between minutes — an operator's correction (a reset, a list change) or an early
/// look's new actions — and the actions now in force.
pub fn adjustments_batch(
    adjustments: &[Adjustment],
    instance: &str,
    at: Nanos,
    actions: &ActionTable,
) -> HistoryBatch {
    HistoryBatch {
        adjustments: adjustments.iter().map(adjustment_row).collect(),
        actions: Some(action_set(instance, at, actions)),
        ..HistoryBatch::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same text a `serde_json` map of the rounded features gives (the stored format).
    #[test]
    fn features_json_is_what_a_map_of_them_serialises_to() {
        let cases: [&[f64]; 4] = [
            &[0.0; NAMES.len()],
            &[
                1.23456789,
                -2.5,
                3.0,
                f64::NAN,
                1e-9,
                1e12,
                0.33335,
                7.0,
                8.0,
                9.0,
                10.0,
                11.0,
            ],
            &[f64::INFINITY; NAMES.len()],
            &[0.5],
        ];
        for x in cases {
            let map: serde_json::Map<String, serde_json::Value> = NAMES
                .iter()
                .zip(x)
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        serde_json::json!((v * 10_000.0).round() / 10_000.0),
                    )
                })
                .collect();
            assert_eq!(
                features_json(x),
                serde_json::Value::Object(map).to_string(),
                "{x:?}"
            );
        }
    }
}
