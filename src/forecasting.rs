//! Forecasting in the live server: the model slot (the ONNX LSTM, hot-reloaded when its file
//! changes or on `ReloadModels`, or the statistical baseline when it cannot load), backend loads
//! reported with `ReportLoad`, and the pressure pipeline run once a minute by the learning loop.
//!
//! Runs on the learning loop's blocking thread (inference blocks), never on the decision path:
//! the only thing decisions see is the cut factor it installs in the engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::core::engine::Engine;
use crate::core::forecast::baseline::Fallback;
use crate::core::forecast::live::{self, Pipeline};
use crate::core::forecast::pressure::{Cut, PressureChange, PressureConfig};
use crate::core::forecast::{Forecast, Forecaster};
use crate::core::learn::observe::EndpointMinute;
use crate::core::time::Nanos;
use crate::forecast::cli::ModelArgs;
use crate::forecast::onnx::{OnnxForecaster, meta_path};

/// Backends tracked at most for `ReportLoad` (the oldest report is forgotten past it).
const MAX_BACKENDS: usize = 256;

/// What is forecasting, for health, `GetModelInfo` and logs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ForecastStatus {
    /// `lstm` or `baseline:mean5`.
    pub forecaster: String,
    pub model_path: String,
    pub model_version: u64,
    /// Why the LSTM is not in use (or why the last reload failed while an older model serves).
    pub problem: Option<String>,
    pub cut: Option<Cut>,
    pub forecasts: Vec<(String, Forecast)>,
}

struct Slot {
    model: Option<OnnxForecaster>,
    /// Modification times of the model and its metadata when last (attempted to be) loaded.
    seen: Option<(SystemTime, SystemTime)>,
    problem: Option<String>,
}

pub struct Forecasting {
    args: ModelArgs,
    slot: Mutex<Slot>,
    pipeline: Mutex<Pipeline>,
    loads: Mutex<BTreeMap<String, (f64, Nanos)>>,
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Forecasting {
    /// Tries to load the model; the service runs either way.
    pub fn new(args: ModelArgs, pressure: PressureConfig) -> Forecasting {
        let f = Forecasting {
            args,
            slot: Mutex::new(Slot {
                model: None,
                seen: None,
                problem: None,
            }),
            pipeline: Mutex::new(Pipeline::new(pressure)),
            loads: Mutex::new(BTreeMap::new()),
        };
        let _ = f.reload();
        f
    }

    fn paths(&self) -> (PathBuf, PathBuf) {
        let model = self.args.forecast_model.clone();
        let meta = meta_path(&model);
        (model, meta)
    }

    /// Loads the model file now. On failure an already loaded model keeps serving (a broken
    /// new file does not take forecasting down); without one, the baseline forecasts.
    #[tracing::instrument(name = "reload_forecast_model", skip_all)]
    pub fn reload(&self) -> Result<u64, String> {
        let (model, meta) = self.paths();
        let stamps = modified(&model).zip(modified(&meta));
        let loaded = OnnxForecaster::load(&model, self.args.ort_dylib.as_deref());
        let mut slot = self.slot.lock();
        slot.seen = stamps;
        match loaded {
            Ok(f) => {
                let version = f.meta().version;
                tracing::info!(model = %model.display(), version, "forecasting with the LSTM");
                slot.model = Some(f);
                slot.problem = None;
                Ok(version)
            }
            Err(e) => {
                let message = e.to_string();
                match &slot.model {
                    Some(old) => tracing::error!(
                        error = %message,
                        serving = old.meta().version,
                        "new forecasting model refused; the previous one keeps serving"
                    ),
                    None => tracing::warn!(
                        error = %message,
                        "forecasting model unavailable; forecasting with the statistical baseline (mean of the last 5 minutes)"
                    ),
                }
                slot.problem = Some(message.clone());
                Err(message)
            }
        }
    }

    /// Reloads when the model or its metadata changed on disk since the last attempt.
    pub fn reload_if_changed(&self) {
        let (model, meta) = self.paths();
        let now = modified(&model).zip(modified(&meta));
        let changed = {
            let slot = self.slot.lock();
            now.is_some() && now != slot.seen
        };
        if changed {
            tracing::info!(model = %model.display(), "forecasting model file changed; reloading");
            let _ = self.reload();
        }
    }

    /// A backend's utilisation (0..1), from `ReportLoad`.
    pub fn report_load(&self, backend: &str, utilisation: f64, now: Nanos) {
        let mut loads = self.loads.lock();
        if !loads.contains_key(backend) && loads.len() >= MAX_BACKENDS {
            let oldest = loads
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                loads.remove(&k);
            }
        }
        loads.insert(backend.to_string(), (utilisation, now));
    }

    /// One closed minute: forecast, run the pressure policy, install the cut in the engine.
    /// Returns the change to record, if the cut changed.
    pub fn tick(
        &self,
        engine: &Engine,
        minute: Nanos,
        now: Nanos,
        traffic: &[EndpointMinute],
    ) -> Option<PressureChange> {
        // (A changed model file is picked up by the learning loop's one-second poll.)
        let capacities = live::capacities(&engine.rules());
        let loads: Vec<(String, f64, Nanos)> = self
            .loads
            .lock()
            .iter()
            .map(|(b, (u, at))| (b.clone(), *u, *at))
            .collect();
        let mut slot = self.slot.lock();
        let forecaster: &mut dyn Forecaster = match slot.model.as_mut() {
            Some(m) => m,
            None => &mut Fallback,
        };
        let mut pipeline = self.pipeline.lock();
        let step = pipeline.step(minute, now, traffic, &capacities, &loads, forecaster);
        if let Some(e) = &step.error {
            tracing::warn!(error = %e, "forecast failed this minute; used the statistical baseline");
        }
        let change = step.change.clone();
        engine.set_pressure(pipeline.enforced_factor());
        if let Some(c) = &change {
            tracing::info!(
                what = c.what,
                factor = c.factor,
                cause = %c.cause,
                shadow = c.shadow,
                "low-priority STD limits {}",
                if c.what == "tightened" { "cut" } else { "restored" }
            );
        }
        change
    }

    pub fn status(&self) -> ForecastStatus {
        let slot = self.slot.lock();
        let pipeline = self.pipeline.lock();
        ForecastStatus {
            forecaster: slot
                .model
                .as_ref()
                .map_or_else(|| Fallback.name().to_string(), |m| m.name().to_string()),
            model_path: self.args.forecast_model.display().to_string(),
            model_version: slot.model.as_ref().map_or(0, |m| m.meta().version),
            problem: slot.problem.clone(),
            cut: pipeline.cut().cloned(),
            forecasts: pipeline.last().forecasts.clone(),
        }
    }

    /// True when the LSTM is serving (health reports the forecaster on this).
    pub fn model_loaded(&self) -> bool {
        self.slot.lock().model.is_some()
    }
}
