//! The learning loop in the live server: once per tick (a minute) it closes the engine's
//! observation, runs the learner, installs the new actions and hands the history to the writer.
//! It also restores the saved model and actions once the database is reachable, and serves the
//! admin RPCs' questions. The learning itself is `core::learn`; this is the thin, timed edge
//! around it, the counterpart of `replay` on the wall clock.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::clock::LiveClock;
use crate::core::engine::Engine;
use crate::core::forecast::pressure::PressureChange;
use crate::core::learn::actions::Action;
use crate::core::learn::features::NAMES;
use crate::core::learn::learner::{Learner, LearnerConfig, ModelInfo, Snapshot, Tick};
use crate::core::time::{NANOS_PER_MILLI, Nanos};
use crate::forecasting::Forecasting;
use crate::history::History;
use crate::rules_service::RulesService;
use crate::store::history::{
    ActionRow, ActionSet, AdjustmentRow, HistoryBatch, ModelRow, ScoreRow, TrafficRow,
};

pub struct Learning {
    engine: Arc<Engine>,
    learner: Mutex<Learner>,
    /// The forecaster and the pressure policy (cuts of low-priority STD limits).
    pub forecasting: Forecasting,
    pub history: History,
    /// Off: observe and record traffic, never act.
    pub adaptive: bool,
    /// This instance's name in the shared `anomaly_actions` table (`--instance-id`).
    instance: String,
    restored: std::sync::atomic::AtomicBool,
}

fn ms(n: Nanos) -> i64 {
    (n / NANOS_PER_MILLI) as i64
}

impl Learning {
    pub fn new(
        engine: Arc<Engine>,
        config: LearnerConfig,
        forecasting: Forecasting,
        history: History,
        adaptive: bool,
        instance: String,
    ) -> Learning {
        Learning {
            engine,
            learner: Mutex::new(Learner::new(config)),
            forecasting,
            history,
            adaptive,
            instance,
            restored: false.into(),
        }
    }

    pub fn config(&self) -> LearnerConfig {
        self.learner.lock().config().clone()
    }

    pub fn model_info(&self) -> ModelInfo {
        self.learner.lock().model_info()
    }

    /// Actions in force (expired ones are dropped at the next tick).
    pub fn flagged(&self) -> Vec<Action> {
        self.engine.actions().sorted()
    }

    pub fn observation_overflow(&self) -> u64 {
        self.engine.observer().overflow_total()
    }

    /// Closes the minute that started at `start`.
    pub fn tick(&self, start: Nanos, now: Nanos) {
        let span = tracing::info_span!(
            "learning_tick",
            minute_ms = ms(start),
            clients = tracing::field::Empty,
            actions = tracing::field::Empty
        );
        let _entered = span.enter();
        let tick = if self.adaptive {
            self.learner.lock().tick_engine(&self.engine, start, now)
        } else {
            // Static rules only: keep the traffic history, score nobody.
            let data = self.engine.observer().drain();
            Tick {
                traffic: data.endpoints,
                ..Tick::default()
            }
        };
        span.record("clients", tick.scores.len());
        span.record("actions", self.engine.actions().len());
        let model = tick.trained.as_ref().and_then(|_| self.model_row());
        let mut batch = batch(
            start,
            now,
            &tick,
            model,
            self.adaptive.then_some(&*self.instance),
        );
        if self.adaptive
            && let Some(change) = self
                .forecasting
                .tick(&self.engine, start, now, &tick.traffic)
        {
            batch.adjustments.push(pressure_row(&change));
        }
        self.history.submit(batch);
    }

    /// Retrains now; `Err` when the sample is too small.
    #[tracing::instrument(name = "train_now", skip_all)]
    pub fn train_now(&self, now: Nanos) -> Result<ModelInfo, String> {
        let mut learner = self.learner.lock();
        let Some(info) = learner.maybe_train(now, true) else {
            let (have, need) = (
                learner.model_info().pending_sample,
                learner.config().min_train,
            );
            return Err(format!(
                "the training sample holds {have} client-minutes; at least {need} are needed"
            ));
        };
        drop(learner);
        let model = self.model_row();
        self.history.submit(HistoryBatch {
            model,
            ..HistoryBatch::default()
        });
        Ok(info)
    }

    fn model_row(&self) -> Option<ModelRow> {
        let snapshot = self.learner.lock().snapshot()?;
        Some(ModelRow {
            version: snapshot.version as i64,
            trained_at_ms: snapshot.trained_at.map_or(0, ms),
            trained_on: snapshot.forest.trained_on as i64,
            body: serde_json::to_string(&snapshot).ok()?,
        })
    }

    /// Loads the saved model and actions once, when the database is first reachable. A model
    /// grown in the meantime is kept (it is newer).
    pub async fn restore(&self, rules: &RulesService) {
        use std::sync::atomic::Ordering;
        if self.restored.load(Ordering::Relaxed) {
            return;
        }
        let Some(store) = rules.store() else { return };
        let (model, actions) = match store.load_learning().await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the saved model yet");
                return;
            }
        };
        self.restored.store(true, Ordering::Relaxed);
        let snapshot = model.and_then(|body| match serde_json::from_str::<Snapshot>(&body) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "saved model is unreadable; starting cold");
                None
            }
        });
        let actions: Vec<Action> = actions
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect();
        let mut learner = self.learner.lock();
        let snapshot = snapshot.filter(|_| learner.model_info().version == 0);
        let (version, count) = (snapshot.as_ref().map(|s| s.version), actions.len());
        match learner.restore(snapshot, actions) {
            Ok(()) => {
                if self.adaptive {
                    self.engine.set_actions(learner.actions());
                }
                tracing::info!(?version, actions = count, "restored the learning state");
            }
            Err(e) => tracing::error!(error = %e, "saved model failed its check; starting cold"),
        }
    }
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

/// The subject pressure adjustments are recorded under.
pub const PRESSURE_SUBJECT: &str = "priority=low,tier=STD";

/// The history of one tick; with `instance` (adaptive mode), also the actions it has in force.
fn batch(
    start: Nanos,
    now: Nanos,
    tick: &Tick,
    model: Option<ModelRow>,
    instance: Option<&str>,
) -> HistoryBatch {
    let minute_ms = ms(start);
    let features = |x: &[f64]| {
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
        serde_json::Value::Object(map).to_string()
    };
    HistoryBatch {
        scores: tick
            .scores
            .iter()
            .map(|s| ScoreRow {
                minute_ms,
                client: s.client.to_string(),
                score: s.score,
                requests: s.requests as i64,
                features: features(&s.features),
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
                errors: e.errors as i64,
            })
            .collect(),
        adjustments: tick
            .adjustments
            .iter()
            .map(|a| AdjustmentRow {
                at_ms: ms(a.at),
                client: a.client.clone(),
                from_action: a
                    .from
                    .map(|k| serde_json::to_string(&k).unwrap_or_default()),
                to_action: a.to.map(|k| serde_json::to_string(&k).unwrap_or_default()),
                score: a.score,
                cause: a.cause,
                shadow: a.shadow,
                expires_at_ms: a.expires_at.map(ms),
            })
            .collect(),
        actions: instance.map(|instance| ActionSet {
            instance: instance.to_string(),
            at_ms: ms(now),
            actions: tick
                .actions
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
        }),
        model,
    }
}

/// The health service name that reports the forecaster: SERVING with the LSTM, NOT_SERVING
/// while the statistical baseline stands in (decisions are unaffected either way).
pub const FORECASTER_HEALTH: &str = "sluice.v1.Forecaster";

/// Ticks every `period` until `stop`; restores saved state as soon as the database allows, and
/// picks up a changed model file within a second.
pub async fn run_loop(
    learning: Arc<Learning>,
    rules: Arc<RulesService>,
    clock: LiveClock,
    period: Duration,
    health: tonic_health::server::HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    let mut start = clock.now();
    let mut next = tokio::time::Instant::now() + period;
    let mut reported: Option<bool> = None;
    loop {
        let loaded = {
            let learning = learning.clone();
            tokio::task::spawn_blocking(move || {
                learning.forecasting.reload_if_changed();
                learning.forecasting.model_loaded()
            })
            .await
            .unwrap_or(false)
        };
        if reported != Some(loaded) {
            let status = if loaded {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            health.set_service_status(FORECASTER_HEALTH, status).await;
            reported = Some(loaded);
        }
        // Poll for the database every second until the saved state is back.
        let wake = next.min(tokio::time::Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.changed() => return,
        }
        learning.restore(&rules).await;
        if tokio::time::Instant::now() < next {
            continue;
        }
        next += period;
        let now = clock.now();
        let learning = learning.clone();
        // Scoring and training take milliseconds of CPU: off the async workers.
        let _ = tokio::task::spawn_blocking(move || learning.tick(start, now)).await;
        start = now;
    }
}
