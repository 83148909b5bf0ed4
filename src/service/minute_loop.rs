//! The minute on the wall clock: once per tick it runs the core's minute
//! (`sluice_core::minute::Minutes::close`) on the blocking pool with this instance's inputs — the
//! model slot's forecaster and the backend loads reported since — submits its history, publishes
//! what status reads show, and logs what the learner did. It also restores the saved model and
//! actions once the database is reachable, and serves `TrainNow`.
//!
//! Replays run the very same `close` in virtual time (`crate::replay`); this module adds only the
//! clock, the thread and the I/O around it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use sluice_core::engine::Engine;
use sluice_core::forecast::Forecast;
use sluice_core::forecast::live::SeriesMethods;
use sluice_core::forecast::pressure::{Cut, PressureConfig};
use sluice_core::learn::actions::Action;
use sluice_core::learn::baselines::{BaselineView, Measure};
use sluice_core::learn::fleet_minute;
use sluice_core::learn::learner::{Learner, LearnerConfig, ModelInfo, Snapshot};
use sluice_core::learn::lists::ListEntry;
use sluice_core::learn::observe::{ClientSummary, MinuteData};
use sluice_core::learn::policy::Adjustment;
use sluice_core::minute::{ClosedMinute, LOOK_EVERY, MinuteInput, Minutes};
use sluice_core::time::{NANOS_PER_MILLI, NANOS_PER_SEC, Nanos};

use crate::service::backend_loads::BackendLoads;
use crate::service::background::Background;
use crate::service::clock::LiveClock;
use crate::service::database::Database;
use crate::service::history_writer::History;
use crate::service::minute_exchange::MinuteExchange;
use crate::service::model_slot::ModelSlot;
use crate::service::readiness::Readiness;
use crate::service::shutdown::Shutdown;
use crate::store::history::HistoryBatch;
use crate::store::history_rows::{adjustments_batch, minute_batch, model_row};

/// What the learning loop shows between minutes: published after each minute, training and
/// restore, so status reads never wait for a running minute (or its inference).
#[derive(Clone, Debug, Default)]
pub struct LearningStatus {
    pub model: ModelInfo,
    /// The cut in force (shadow cuts included).
    pub cut: Option<Cut>,
    /// The last minute's forecasts per watched endpoint (and the total).
    pub forecasts: Vec<(String, Forecast)>,
    /// Which candidate speaks for each of them, and why (same order).
    pub methods: Vec<SeriesMethods>,
    /// The learned per-client baselines (most used first, at most 50), with route names.
    pub baselines: Vec<(BaselineView, f64, Option<String>)>,
    /// The last closed minute's measured requests per watched series (and the total `*`).
    pub measured: Vec<(String, f64)>,
}

/// Counts since start, for the metrics: clients scored, and limit adjustments by cause, kind
/// and signal (a handful of combinations: causes, kinds and signals are fixed sets).
#[derive(Debug, Default)]
pub struct LearningCounts {
    pub clients_scored: std::sync::atomic::AtomicU64,
    pub minutes_closed: std::sync::atomic::AtomicU64,
    adjustments: Mutex<std::collections::BTreeMap<(&'static str, &'static str, &'static str), u64>>,
}

impl LearningCounts {
    fn count_adjustments(&self, changes: &[Adjustment]) {
        let mut counts = self.adjustments.lock();
        for a in changes {
            let kind = a.to.map_or("none", |k| k.name());
            let signal = a.signal.map_or("none", |s| s.name());
            *counts.entry((a.cause, kind, signal)).or_default() += 1;
        }
    }

    /// (cause, kind now in force, signal) → adjustments.
    pub fn adjustments(&self) -> Vec<((&'static str, &'static str, &'static str), u64)> {
        self.adjustments
            .lock()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}

/// What the minute loop is given at start-up.
pub struct MinuteLoopParts {
    pub engine: Arc<Engine>,
    pub learner: LearnerConfig,
    pub pressure: PressureConfig,
    pub adaptive: bool,
    pub models: Arc<ModelSlot>,
    pub loads: Arc<BackendLoads>,
    pub history: History,
    pub database: Arc<Database>,
    /// This instance's name in the shared `anomaly_actions` table (`--instance-id`).
    pub instance: String,
    /// Where the minute's work runs: below the decisions' priority.
    pub background: Background,
}

pub struct MinuteLoop {
    engine: Arc<Engine>,
    minutes: Mutex<Minutes>,
    config: LearnerConfig,
    pressure: PressureConfig,
    models: Arc<ModelSlot>,
    loads: Arc<BackendLoads>,
    history: History,
    database: Arc<Database>,
    instance: String,
    background: Background,
    adaptive: bool,
    restored: AtomicBool,
    status: ArcSwap<LearningStatus>,
    /// The list entries last installed.
    lists_seen: Mutex<Vec<ListEntry>>,
    pub counts: LearningCounts,
}

fn ms(n: Nanos) -> i64 {
    (n / NANOS_PER_MILLI) as i64
}

impl MinuteLoop {
    pub fn new(parts: MinuteLoopParts) -> MinuteLoop {
        let minutes = Minutes::new(
            parts.learner.clone(),
            parts.pressure.clone(),
            parts.adaptive,
        );
        let status = LearningStatus {
            model: minutes.learner().model_info(),
            ..LearningStatus::default()
        };
        MinuteLoop {
            engine: parts.engine,
            minutes: Mutex::new(minutes),
            config: parts.learner,
            pressure: parts.pressure,
            models: parts.models,
            loads: parts.loads,
            history: parts.history,
            database: parts.database,
            instance: parts.instance,
            background: parts.background,
            adaptive: parts.adaptive,
            restored: AtomicBool::new(false),
            status: ArcSwap::from_pointee(status),
            lists_seen: Mutex::new(Vec::new()),
            counts: LearningCounts::default(),
        }
    }

    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    pub fn pressure(&self) -> &PressureConfig {
        &self.pressure
    }

    /// Off: observe and record traffic, never act.
    pub fn adaptive(&self) -> bool {
        self.adaptive
    }

    /// What the learner and the pressure policy last published; never waits.
    pub fn status(&self) -> Arc<LearningStatus> {
        self.status.load_full()
    }

    fn publish(&self, minutes: &Minutes) {
        let pipeline = minutes.pipeline();
        let learner = minutes.learner();
        let baselines = learner.baselines();
        let views = baselines
            .views()
            .into_iter()
            .take(50)
            .map(|v| {
                let threshold = baselines.threshold(v.measure).map_or(0.0, |t| t.1);
                let route = match v.measure {
                    Measure::Endpoint { endpoint, .. } => {
                        learner.route_name(endpoint).map(String::from)
                    }
                    _ => None,
                };
                (v, threshold, route)
            })
            .collect();
        self.status.store(Arc::new(LearningStatus {
            model: minutes.learner().model_info(),
            cut: pipeline.cut().cloned(),
            forecasts: pipeline.last().forecasts.clone(),
            methods: pipeline.last().methods.clone(),
            baselines: views,
            measured: pipeline.last().measured.clone(),
        }));
    }

    /// Closes the minute that started at `start` (blocking: scoring, training and inference) and
    /// submits its history; returns the closed minute.
    pub fn tick(&self, start: Nanos, now: Nanos) -> ClosedMinute {
        let data = self.engine.observer().drain();
        self.tick_with(start, now, data, Vec::new())
    }

    /// Drains the open minute for the fleet's exchange (blocking): the minute, and its clients
    /// worth sharing with the other `replicas`.
    pub fn drain_for_fleet(&self, replicas: u32) -> (MinuteData, Vec<ClientSummary>) {
        let data = self.engine.observer().drain();
        let floor = self.minutes.lock().learner().share_floor(replicas);
        let own = fleet_minute::to_share(&data.clients, floor, fleet_minute::SHARE_CAP);
        (data, own)
    }

    /// [`MinuteLoop::tick`] on `data`, drained by the caller, with the other replicas'
    /// `shared` clients merged in.
    pub fn tick_with(
        &self,
        start: Nanos,
        now: Nanos,
        mut data: MinuteData,
        shared: Vec<ClientSummary>,
    ) -> ClosedMinute {
        fleet_minute::merge_shared(&mut data, shared);
        let span = tracing::info_span!(
            "learning_tick",
            minute_ms = ms(start),
            clients = tracing::field::Empty,
            actions = tracing::field::Empty
        );
        let _entered = span.enter();
        let loads = self.loads.snapshot();
        let mut minutes = self.minutes.lock();
        let closed = self.models.with_forecaster(|forecaster| {
            minutes.close_with(
                &self.engine,
                MinuteInput {
                    start,
                    end: now,
                    loads: &loads,
                    forecaster,
                },
                data,
            )
        });
        self.publish(&minutes);
        drop(minutes);
        span.record("clients", closed.tick.scored);
        span.record("actions", closed.tick.actions.len());
        self.counts
            .clients_scored
            .fetch_add(closed.tick.scored as u64, Ordering::Relaxed);
        self.counts.minutes_closed.fetch_add(1, Ordering::Relaxed);
        self.counts.count_adjustments(&closed.tick.adjustments);
        log_minute(&closed);
        // Submitted, not cloned: a busy minute's batch holds a row per client.
        self.history.submit(minute_batch(&closed, &self.instance));
        closed
    }

    /// An early look inside the minute that started at `start` (blocking): clients already far
    /// beyond a baseline are acted on now; the new actions are installed and recorded.
    pub fn look(&self, start: Nanos, now: Nanos) -> Vec<Adjustment> {
        let changes =
            self.change_between_minutes(now, |minutes, engine| minutes.look(engine, start, now));
        for c in changes.iter().filter(|c| c.to.is_some()) {
            tracing::info!(client = %c.client, signal = ?c.signal, why = %c.why, "acted on early in the minute");
        }
        changes
    }

    /// A change of the actions between minutes (blocking: waits for a running minute): applied
    /// to the minute's state, and recorded with the actions then in force when anything changed.
    fn change_between_minutes(
        &self,
        now: Nanos,
        change: impl FnOnce(&mut Minutes, &Engine) -> Vec<Adjustment>,
    ) -> Vec<Adjustment> {
        let mut minutes = self.minutes.lock();
        let changes = change(&mut minutes, &self.engine);
        let actions = minutes.learner().actions();
        drop(minutes);
        self.counts.count_adjustments(&changes);
        if !changes.is_empty() {
            self.history
                .submit(adjustments_batch(&changes, &self.instance, now, &actions));
        }
        changes
    }

    /// Retrains now (blocking); `Err` when the sample is too small.
    #[tracing::instrument(name = "train_now", skip_all)]
    pub fn train_now(&self, now: Nanos) -> Result<ModelInfo, String> {
        let mut minutes = self.minutes.lock();
        let (info, snapshot) = minutes.train_now(now)?;
        self.publish(&minutes);
        drop(minutes);
        tracing::info!(
            version = info.version,
            trained_on = info.trained_on,
            "grew a new isolation forest on request"
        );
        self.history.submit(HistoryBatch {
            model: model_row(&snapshot),
            instance: self.instance.clone(),
            ..HistoryBatch::default()
        });
        Ok(info)
    }

    /// An operator's correction applied to the learner (blocking: waits for a running minute),
    /// installed in the engine and recorded. Returns what changed.
    fn correct(
        &self,
        now: Nanos,
        change: impl FnOnce(&mut Learner) -> Vec<Adjustment>,
    ) -> Vec<Adjustment> {
        let changes =
            self.change_between_minutes(now, |minutes, engine| minutes.correct(engine, change));
        for c in &changes {
            tracing::info!(client = %c.client, cause = c.cause, "anomaly action changed by an operator");
        }
        changes
    }

    /// Lifts the actions on these client keys (`ResetClient`, `MarkFalsePositive`); blocking.
    pub fn lift(&self, clients: Vec<String>, now: Nanos, cause: &'static str) -> usize {
        self.correct(now, |learner| learner.lift(&clients, now, cause))
            .len()
    }

    /// A false positive (`MarkFalsePositive`): its actions lifted and `entries` (with its
    /// allowlist entry) installed; blocking. Returns how many of its actions were lifted.
    pub fn mark_false_positive(
        &self,
        client: String,
        entries: Vec<ListEntry>,
        now: Nanos,
    ) -> usize {
        self.correct(now, |learner| {
            learner.mark_false_positive(&client, entries, now)
        })
        .iter()
        .filter(|a| a.cause == "false_positive")
        .count()
    }

    /// Installs the operators' list entries (blocking); returns the actions lifted or added.
    pub fn set_lists(&self, entries: Vec<ListEntry>, now: Nanos) -> usize {
        self.correct(now, |learner| learner.set_lists(entries, now))
            .len()
    }

    /// Reloads the list entries from the database when they changed (another instance's edit,
    /// an expiry); cheap when they did not.
    async fn sync_lists(self: &Arc<Self>, now: Nanos) {
        let Some(store) = self.database.get() else {
            return;
        };
        let Ok(entries) = store.list_entries(ms(now)).await else {
            return;
        };
        if *self.lists_seen.lock() == entries {
            return;
        }
        *self.lists_seen.lock() = entries.clone();
        let this = self.clone();
        this.background
            .clone()
            .run(move || this.set_lists(entries, now))
            .await;
    }

    /// Loads the saved model and actions once, when the database is first reachable. A model
    /// grown in the meantime is kept (it is newer).
    pub async fn restore(&self) {
        if self.restored.load(Ordering::Relaxed) {
            return;
        }
        let Some(store) = self.database.get() else {
            return;
        };
        let (model, actions) = match store.load_learning(&self.instance).await {
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
        let mut minutes = self.minutes.lock();
        let adaptive = self.adaptive;
        let learner = minutes.learner_mut();
        let snapshot = snapshot.filter(|_| learner.model_info().version == 0);
        let (version, count) = (snapshot.as_ref().map(|s| s.version), actions.len());
        match learner.restore(snapshot, actions) {
            Ok(()) => {
                if adaptive {
                    self.engine.set_actions(learner.actions());
                }
                tracing::info!(?version, actions = count, "restored the learning state");
            }
            Err(e) => tracing::error!(error = %e, "saved model failed its check; starting cold"),
        }
        self.publish(&minutes);
    }
}

/// Once a minute at info level: a new forest, and the clients acted on with the top causes.
fn log_minute(closed: &ClosedMinute) {
    if let Some(info) = &closed.tick.trained {
        tracing::info!(
            version = info.version,
            trained_on = info.trained_on,
            trees = info.trees,
            "grew a new isolation forest"
        );
    }
    let actions = &closed.tick.actions;
    if actions.is_empty() && closed.tick.adjustments.is_empty() {
        return;
    }
    let (mut blocked, mut throttled) = (0usize, 0usize);
    for a in actions.sorted() {
        match a.kind.name() {
            "block" => blocked += 1,
            _ => throttled += 1,
        }
    }
    let mut causes: std::collections::BTreeMap<&str, usize> = Default::default();
    for a in &closed.tick.adjustments {
        *causes.entry(a.cause).or_default() += 1;
    }
    let mut top: Vec<(&str, usize)> = causes.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = top
        .iter()
        .take(3)
        .map(|(c, n)| format!("{c}×{n}"))
        .collect();
    tracing::info!(
        blocked,
        throttled,
        changed = closed.tick.adjustments.len(),
        top_causes = %top.join(", "),
        "anomaly actions in force"
    );
}

/// Early looks inside a period: `LOOK_EVERY` apart in a minute (at a quarter, a half and three
/// quarters of the period).
const LOOKS: u32 = (60 * NANOS_PER_SEC / LOOK_EVERY) as u32 - 1;

/// Ticks every `period` until shutdown, with the early looks between; restores saved state as soon as the database allows,
/// and picks up a changed model file within a second. A minute already running when shutdown
/// comes is finished and submitted: this task returns only between minutes.
pub async fn run(
    minute_loop: Arc<MinuteLoop>,
    clock: LiveClock,
    period: Duration,
    readiness: Readiness,
    exchange: Option<Arc<MinuteExchange>>,
    mut shutdown: Shutdown,
) {
    let mut start = clock.now();
    let period_nanos = period.as_nanos().max(1) as u64;
    // The fleet's replicas close the same minutes: aligned on the wall clock (the first one is
    // shorter), so each minute's exchange pairs like with like.
    let first = match exchange {
        Some(_) => Duration::from_nanos(period_nanos - start % period_nanos),
        None => period,
    };
    let mut next = tokio::time::Instant::now() + first;
    let mut looks = 0;
    loop {
        let models = minute_loop.models.clone();
        minute_loop
            .background
            .run(move || models.reload_if_changed())
            .await;
        readiness.lstm_loaded(minute_loop.models.status().lstm_loaded());
        // Poll for the database every second until the saved state is back.
        let wake = next.min(tokio::time::Instant::now() + Duration::from_secs(1));
        if !shutdown.sleep_until(wake).await {
            return;
        }
        let restored = minute_loop.restored.load(Ordering::Relaxed);
        minute_loop.restore().await;
        if !restored && minute_loop.restored.load(Ordering::Relaxed) {
            minute_loop.sync_lists(clock.now()).await;
        }
        if tokio::time::Instant::now() < next {
            // The early looks of the open minute, each once, when due.
            let due = next - period + period * (looks + 1) / (LOOKS + 1);
            if looks < LOOKS && tokio::time::Instant::now() >= due {
                looks += 1;
                let (looking, now) = (minute_loop.clone(), clock.now());
                minute_loop
                    .background
                    .run(move || looking.look(start, now))
                    .await;
            }
            continue;
        }
        looks = 0;
        minute_loop.sync_lists(clock.now()).await;
        next += period;
        let now = clock.now();
        let ticking = minute_loop.clone();
        // Scoring, training and inference take milliseconds of CPU: off the async workers, and
        // below the decisions' priority. The closed minute is dropped there too: freeing a busy
        // minute's clients is work of its own.
        match &exchange {
            None => {
                minute_loop
                    .background
                    .run(move || drop(ticking.tick(start, now)))
                    .await;
            }
            Some(exchange) => {
                // The minute's index: the boundary it closes at (the nearest, whatever the
                // timer's lateness), the same on every replica.
                let minute = ((now + period_nanos / 2) / period_nanos) as i64;
                let (draining, replicas) = (minute_loop.clone(), exchange.replicas());
                let drained = minute_loop
                    .background
                    .run(move || draining.drain_for_fleet(replicas))
                    .await;
                if let Some((data, own)) = drained {
                    let shared = exchange.exchange(minute, &own).await;
                    drop(own);
                    minute_loop
                        .background
                        .run(move || drop(ticking.tick_with(start, now, data, shared)))
                        .await;
                }
            }
        }
        start = now;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::service::model_slot::ModelArgs;

    /// Status reads answer while a minute holds the learner and the model (as during inference).
    #[test]
    fn status_reads_never_wait_for_a_running_minute() {
        let engine = Arc::new(Engine::new(Default::default()));
        let (history, _rx) = History::new();
        let models = Arc::new(ModelSlot::new(ModelArgs {
            forecast_model: "/nonexistent/lstm.onnx".into(),
            ort_dylib: None,
        }));
        let minute_loop = Arc::new(MinuteLoop::new(MinuteLoopParts {
            engine,
            learner: LearnerConfig::default(),
            pressure: PressureConfig::default(),
            adaptive: true,
            models: models.clone(),
            loads: Arc::new(BackendLoads::default()),
            history,
            database: Arc::new(Database::default()),
            instance: "test".into(),
            background: Background::start(),
        }));
        let (entered, inside) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let busy = minute_loop.clone();
        let minute = std::thread::spawn(move || {
            let _learner = busy.minutes.lock();
            busy.models.with_forecaster(|_| {
                entered.send(()).unwrap();
                released.recv().unwrap();
            });
        });
        inside.recv().unwrap();
        let (answer, answered) = mpsc::channel();
        let reader = minute_loop.clone();
        std::thread::spawn(move || {
            let status = reader.status();
            let model = reader.models.status();
            answer
                .send((
                    status.model.version,
                    model.forecaster.clone(),
                    reader.adaptive(),
                ))
                .unwrap();
        });
        // A deadlock would never answer; a wait would answer only after the release below.
        let got = answered.recv_timeout(Duration::from_secs(10));
        release.send(()).unwrap();
        minute.join().unwrap();
        assert_eq!(got.unwrap(), (0, "baseline:mean5".to_string(), true));
    }
}
