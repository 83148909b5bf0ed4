//! The minute: everything Sluice does once a minute, as one function. It closes the engine's
//! observation, runs the learner (score, act, retrain when due), installs the actions, forecasts
//! the watched endpoints, runs the pressure policy and installs the cut, and returns what the
//! history keeps.
//!
//! The live service (`sluice::service::minute_loop`, on the wall clock and the blocking pool) and
//! replays (`sluice::replay`, in virtual time) both call [`Minutes::close`] with the same inputs,
//! so "a replay drives the code that serves live traffic" is true by construction. This module
//! reads no clock and does no I/O; turning a [`ClosedMinute`] into database rows is the store's job.

use std::sync::Arc;

use crate::engine::Engine;
use crate::forecast::Forecaster;
use crate::forecast::live::{self, Pipeline, Step};
use crate::forecast::pressure::{PressureChange, PressureConfig};
use crate::learn::actions::ActionTable;
use crate::learn::learner::{Learner, LearnerConfig, ModelInfo, Snapshot, Tick};
use crate::learn::observe::MinuteData;
use crate::learn::policy::Adjustment;
use crate::time::Nanos;

/// How often inside a minute the early look runs ([`Minutes::look`]): at 15, 30 and 45 s.
pub const LOOK_EVERY: Nanos = 15 * crate::time::NANOS_PER_SEC;

/// When the next early look of the minute that started at `start` is due once `taken` were
/// taken; `None` when the minute has no more.
pub fn next_look(start: Nanos, taken: u64) -> Option<Nanos> {
    let due = start + (taken + 1) * LOOK_EVERY;
    (due < start + 60 * crate::time::NANOS_PER_SEC).then_some(due)
}

/// A backend's reported utilisation (0..1) and when it was reported (`ReportLoad`).
pub type BackendLoad = (String, f64, Nanos);

/// What one minute is given besides the engine.
pub struct MinuteInput<'a> {
    /// When the minute started and when it closed.
    pub start: Nanos,
    pub end: Nanos,
    /// Backend loads in force (a replay has none).
    pub loads: &'a [BackendLoad],
    /// The LSTM when it is loaded, the baseline otherwise; a failure falls back for the minute.
    pub forecaster: &'a mut dyn Forecaster,
}

/// What one minute did: for the history, the replay report, logs and status.
#[derive(Debug)]
pub struct ClosedMinute {
    pub start: Nanos,
    pub end: Nanos,
    /// Scores, adjustments, the closed minute's endpoint traffic and the actions now in force.
    pub tick: Tick,
    /// The forecasts of this minute and who made them.
    pub forecast: Step,
    /// A change of the pressure cut (adaptive mode only).
    pub pressure: Option<PressureChange>,
    /// The cut factor installed in the engine for the next minute (1.0: none).
    pub factor: f64,
    /// The model grown this minute, to save.
    pub model: Option<Snapshot>,
    /// Adaptive mode: the actions in force are this instance's to save.
    pub adaptive: bool,
}

/// The state the minute carries from one to the next: the learner and the forecasting pipeline.
pub struct Minutes {
    learner: Learner,
    pipeline: Pipeline,
    adaptive: bool,
}

impl Minutes {
    /// `adaptive` off: observe, record traffic and forecast; score nobody, act on nothing.
    pub fn new(learner: LearnerConfig, pressure: PressureConfig, adaptive: bool) -> Minutes {
        Minutes {
            learner: Learner::new(learner),
            pipeline: Pipeline::new(pressure),
            adaptive,
        }
    }

    pub fn adaptive(&self) -> bool {
        self.adaptive
    }

    pub fn learner(&self) -> &Learner {
        &self.learner
    }

    /// The learner, for what happens between minutes (`TrainNow`, restoring a saved model).
    pub fn learner_mut(&mut self) -> &mut Learner {
        &mut self.learner
    }

    /// An operator's correction between minutes (a list change, a lift): applied to the learner
    /// and, in adaptive mode, installed in the engine at once. Returns what changed.
    pub fn correct(
        &mut self,
        engine: &Engine,
        change: impl FnOnce(&mut Learner) -> Vec<Adjustment>,
    ) -> Vec<Adjustment> {
        let changes = change(&mut self.learner);
        if self.adaptive {
            engine.set_actions(self.learner.actions());
        }
        changes
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Closes the minute `input.start..input.end` of `engine`.
    pub fn close(&mut self, engine: &Engine, input: MinuteInput<'_>) -> ClosedMinute {
        let data = engine.observer().drain();
        self.close_with(engine, input, data)
    }

    /// Closes the minute on `data`: what `engine` observed, drained by the caller, with what
    /// other replicas shared merged in (`learn::fleet_minute`).
    pub fn close_with(
        &mut self,
        engine: &Engine,
        input: MinuteInput<'_>,
        data: MinuteData,
    ) -> ClosedMinute {
        let tick = if self.adaptive {
            let tick = self.learner.tick(input.start, data, input.end);
            engine.set_actions(tick.actions.clone());
            tick
        } else {
            Tick {
                traffic: data.endpoints,
                overflow: data.overflow,
                actions: Arc::new(ActionTable::default()),
                ..Tick::default()
            }
        };
        let capacities = live::capacities(&engine.rules());
        let forecast = self
            .pipeline
            .step(
                input.start,
                input.end,
                &tick.traffic,
                &capacities,
                input.loads,
                input.forecaster,
                self.adaptive,
            )
            .clone();
        let factor = if self.adaptive {
            self.pipeline.enforced_factor()
        } else {
            1.0
        };
        if self.adaptive {
            engine.set_pressure(factor);
        }
        let model = tick.trained.as_ref().and_then(|_| self.learner.snapshot());
        ClosedMinute {
            start: input.start,
            end: input.end,
            pressure: forecast.change.clone(),
            factor,
            forecast,
            tick,
            model,
            adaptive: self.adaptive,
        }
    }

    /// An early look inside the open minute `start..now` (adaptive mode only): clients already
    /// far beyond a baseline are acted on now and the actions installed; returns the changes.
    pub fn look(&mut self, engine: &Engine, start: Nanos, now: Nanos) -> Vec<Adjustment> {
        if !self.adaptive {
            return Vec::new();
        }
        let Some(floor) = self.learner.look_floor(start, now) else {
            return Vec::new();
        };
        let clients = engine.observer().peek_where(|c| floor.admits(c));
        let changes = self.learner.look(start, &clients, now);
        if !changes.is_empty() {
            engine.set_actions(self.learner.actions());
        }
        changes
    }

    /// Retrains now (`TrainNow`); `Err` says why not (too small a sample).
    pub fn train_now(&mut self, now: Nanos) -> Result<(ModelInfo, Snapshot), String> {
        let Some(info) = self.learner.maybe_train(now, true) else {
            let (have, need) = (
                self.learner.model_info().pending_sample,
                self.learner.config().min_train,
            );
            return Err(format!(
                "the training sample holds {have} client-minutes; at least {need} are needed"
            ));
        };
        let snapshot = self
            .learner
            .snapshot()
            .ok_or("the forest was grown but cannot be read back")?;
        Ok((info, snapshot))
    }
}

#[cfg(test)]
#[path = "minute_tests.rs"]
mod tests;
