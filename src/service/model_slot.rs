//! The forecasting model slot: the ONNX LSTM, hot-reloaded when its file changes or on
//! `ReloadModels`, or the statistical baseline when it cannot load. A broken new file is refused
//! while the old model keeps serving.
//!
//! Inference runs under the model's own lock, on the minute loop's blocking thread. Status reads
//! (`GetModelInfo`, health, `ReportLoad`'s reply) read a published [`ModelStatus`] and never wait
//! for a running inference. Not here: the forecasting logic (`sluice_core::forecast`) and ONNX
//! Runtime itself (`adapters::onnx`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use sluice_core::forecast::Forecaster;
use sluice_core::forecast::baseline::Fallback;

use crate::adapters::onnx::{OnnxForecaster, loaded_runtime, meta_path};

/// What is forecasting, for health, `GetModelInfo` and logs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelStatus {
    /// `lstm` or `baseline:mean5`.
    pub forecaster: String,
    pub model_path: String,
    pub model_version: u64,
    /// Why the LSTM is not in use (or why the last reload failed while an older model serves).
    pub problem: Option<String>,
    /// The ONNX Runtime library in use, once one loaded.
    pub runtime: Option<PathBuf>,
}

impl ModelStatus {
    /// True when the LSTM is serving (health reports the forecaster on this).
    pub fn lstm_loaded(&self) -> bool {
        self.forecaster == "lstm"
    }
}

pub struct ModelSlot {
    args: ModelArgs,
    model: Mutex<Option<OnnxForecaster>>,
    /// Modification times of the model and its metadata when last (attempted to be) loaded.
    seen: Mutex<Option<(SystemTime, SystemTime)>>,
    status: ArcSwap<ModelStatus>,
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ModelSlot {
    /// Tries to load the model (blocking: ONNX Runtime); the service runs either way.
    pub fn new(args: ModelArgs) -> ModelSlot {
        let slot = ModelSlot {
            args,
            model: Mutex::new(None),
            seen: Mutex::new(None),
            status: ArcSwap::from_pointee(ModelStatus::default()),
        };
        let _ = slot.reload();
        slot
    }

    fn paths(&self) -> (PathBuf, PathBuf) {
        let model = self.args.model_path();
        let meta = meta_path(&model);
        (model, meta)
    }

    /// What is forecasting now; never waits.
    pub fn status(&self) -> Arc<ModelStatus> {
        self.status.load_full()
    }

    /// Loads the model file now (blocking). On failure an already loaded model keeps serving (a
    /// broken new file does not take forecasting down); without one, the baseline forecasts.
    #[tracing::instrument(name = "reload_forecast_model", skip_all)]
    pub fn reload(&self) -> Result<u64, String> {
        let (model, meta) = self.paths();
        *self.seen.lock() = modified(&model).zip(modified(&meta));
        // Loaded and checked without holding the slot: a running inference is not disturbed.
        let loaded = OnnxForecaster::load(&model, self.args.ort_dylib.as_deref());
        let status = |forecaster: &str, version: u64, problem: Option<String>| ModelStatus {
            forecaster: forecaster.to_string(),
            model_path: model.display().to_string(),
            model_version: version,
            problem,
            runtime: loaded_runtime(),
        };
        match loaded {
            Ok(f) => {
                let version = f.meta().version;
                tracing::info!(model = %model.display(), version, "forecasting with the LSTM");
                *self.model.lock() = Some(f);
                self.status.store(Arc::new(status("lstm", version, None)));
                Ok(version)
            }
            Err(e) => {
                let message = e.to_string();
                let serving = self.status().model_version;
                if serving > 0 {
                    tracing::error!(
                        error = %message,
                        serving,
                        "new forecasting model refused; the previous one keeps serving"
                    );
                    self.status
                        .store(Arc::new(status("lstm", serving, Some(message.clone()))));
                } else {
                    tracing::warn!(
                        error = %message,
                        "forecasting model unavailable; forecasting with the statistical baseline (mean of the last 5 minutes)"
                    );
                    self.status
                        .store(Arc::new(status(Fallback.name(), 0, Some(message.clone()))));
                }
                Err(message)
            }
        }
    }

    /// Reloads when the model or its metadata changed on disk since the last attempt (blocking).
    pub fn reload_if_changed(&self) {
        let (model, meta) = self.paths();
        let now = modified(&model).zip(modified(&meta));
        let changed = now.is_some() && now != *self.seen.lock();
        if changed {
            tracing::info!(model = %model.display(), "forecasting model file changed; reloading");
            let _ = self.reload();
        }
    }

    /// Runs `f` with the forecaster: the LSTM when loaded, the baseline otherwise. Holds the
    /// model's lock for the inference, which only a reload's swap waits for.
    pub fn with_forecaster<R>(&self, f: impl FnOnce(&mut dyn Forecaster) -> R) -> R {
        let mut model = self.model.lock();
        match model.as_mut() {
            Some(m) => f(m),
            None => f(&mut Fallback),
        }
    }
}

/// Where the forecasting model and ONNX Runtime are.
#[derive(Clone, Debug, clap::Args)]
pub struct ModelArgs {
    /// The LSTM (its metadata beside it, `.json`).
    #[arg(
        long = "forecast-model",
        env = "SLUICE_FORECAST_MODEL",
        default_value = DEFAULT_MODEL
    )]
    pub forecast_model: PathBuf,
    /// ONNX Runtime's shared library (default: ORT_DYLIB_PATH, then the cache
    /// scripts/fetch-onnxruntime.sh fills).
    #[arg(long, env = "SLUICE_ORT_DYLIB")]
    pub ort_dylib: Option<PathBuf>,
}

/// The default `--forecast-model`, relative to the working directory.
pub const DEFAULT_MODEL: &str = "models/lstm.onnx";

impl ModelArgs {
    /// The model file to load. A relative path that is not found from the working directory is
    /// also looked for beside the executable and up to three directories above it (the
    /// repository for `target/release/sluice`, `/opt/sluice` for `/opt/sluice/bin/sluice`), so a
    /// server started elsewhere still finds the shipped model.
    pub fn model_path(&self) -> PathBuf {
        let given = &self.forecast_model;
        if given.is_absolute() || given.exists() {
            return given.clone();
        }
        let exe = std::env::current_exe().ok();
        exe.iter()
            .flat_map(|exe| exe.ancestors().skip(1).take(4))
            .map(|dir| dir.join(given))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| given.clone())
    }
}
