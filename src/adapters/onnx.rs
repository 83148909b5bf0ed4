//! The LSTM forecaster on ONNX Runtime (`ort`, loaded at run time from a shared library).
//!
//! This is the only module that knows `ort`. It loads the runtime library once per process
//! (`ort::init_from`, so a missing or wrong library is an error, not a panic), keeps the
//! `Environment` alive for the process, and checks a model before serving it: its metadata
//! (`lstm.json` beside `lstm.onnx`) must name the features in the order `core::forecast::features`
//! encodes them, and the model must reproduce the test vectors recorded at export. A model that
//! fails any check is refused with the reason; callers fall back to the statistical baseline.
//!
//! `Session::run` blocks (and takes `&mut self`): async callers run it on a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Deserialize;

use sluice_core::forecast::features::{self, DIM, NAMES};
use sluice_core::forecast::{Forecast, Forecaster, HORIZON, MinutePoint, WINDOW};

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error(
        "ONNX Runtime library not found: set ORT_DYLIB_PATH (or --ort-dylib) to libonnxruntime.so.1.31.1, or run scripts/fetch-onnxruntime.sh to fill the cache Sluice also looks in"
    )]
    RuntimeNotConfigured,
    #[error("ONNX Runtime library {path} cannot be loaded: {reason}")]
    Runtime { path: PathBuf, reason: String },
    #[error("model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("model metadata {path}: {reason}")]
    Metadata { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
}

/// The process's ONNX Runtime environment, created on first successful load and kept for the
/// life of the process (ONNX Runtime allows one; sessions need it alive).
static ENVIRONMENT: Mutex<Option<(Environment, PathBuf)>> = Mutex::new(None);

/// The ONNX Runtime version the shipped model is exported for, and its library's file name.
pub const RUNTIME_VERSION: &str = "1.31.1";

/// Where `scripts/fetch-onnxruntime.sh` caches the library: `$SLUICE_ORT_CACHE`, else
/// `$XDG_CACHE_HOME/sluice/onnxruntime-VERSION`, else `~/.cache/sluice/onnxruntime-VERSION`.
pub fn cached_runtime() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = var("SLUICE_ORT_CACHE").or_else(|| {
        var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".cache")))
            .map(|c| {
                c.join("sluice")
                    .join(format!("onnxruntime-{RUNTIME_VERSION}"))
            })
    })?;
    Some(dir.join(format!("libonnxruntime.so.{RUNTIME_VERSION}")))
}

/// Where the runtime library is: the explicit path, else `ORT_DYLIB_PATH`, else the cache that
/// `scripts/fetch-onnxruntime.sh` fills (when the file is there).
pub fn runtime_path(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| cached_runtime().filter(|p| p.is_file()))
}

/// The runtime library this process loaded, once one is.
pub fn loaded_runtime() -> Option<PathBuf> {
    let slot = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    slot.as_ref().map(|(_, path)| path.clone())
}

/// Loads the runtime library (once) and returns the environment.
pub fn environment(dylib: Option<&Path>) -> Result<Environment, OnnxError> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((env, _)) = slot.as_ref() {
        return Ok(env.clone());
    }
    let path = runtime_path(dylib).ok_or(OnnxError::RuntimeNotConfigured)?;
    if !path.is_file() {
        return Err(OnnxError::Runtime {
            path,
            reason: "no such file".into(),
        });
    }
    let runtime = |reason: String| OnnxError::Runtime {
        path: path.clone(),
        reason,
    };
    let env = ort::init_from(&path)
        .map_err(|e| runtime(e.to_string()))?
        .with_name("sluice")
        .build()
        .map_err(|e| runtime(e.to_string()))?;
    tracing::info!(library = %path.display(), "loaded ONNX Runtime");
    *slot = Some((env.clone(), path.clone()));
    Ok(env)
}

/// `lstm.json`: what the model expects and what it was trained on.
#[derive(Clone, Debug, Deserialize)]
pub struct ModelMeta {
    pub version: u64,
    pub window: usize,
    pub horizon: usize,
    pub features: Vec<String>,
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub training: serde_json::Value,
    #[serde(default)]
    pub metrics: serde_json::Value,
    #[serde(default)]
    pub test_vectors: Vec<TestVector>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TestVector {
    pub input: Vec<f32>,
    pub output: Vec<f32>,
}

/// The metadata path of a model: `lstm.onnx` → `lstm.json`.
pub fn meta_path(model: &Path) -> PathBuf {
    model.with_extension("json")
}

impl ModelMeta {
    pub fn load(path: &Path) -> Result<ModelMeta, OnnxError> {
        let bad = |reason: String| OnnxError::Metadata {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let meta: ModelMeta = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        meta.check().map_err(bad)?;
        Ok(meta)
    }

    /// The model must take exactly what `features::encode` produces.
    pub fn check(&self) -> Result<(), String> {
        if self.features != NAMES {
            return Err(format!(
                "features {:?} differ from the encoder's {:?}: retrain with this version's `sluice export-features`",
                self.features, NAMES
            ));
        }
        if self.window != WINDOW || self.horizon != HORIZON {
            return Err(format!(
                "window {} / horizon {} differ from this build's {WINDOW} / {HORIZON}",
                self.window, self.horizon
            ));
        }
        for (i, v) in self.test_vectors.iter().enumerate() {
            if v.input.len() != WINDOW * DIM || v.output.len() != HORIZON {
                return Err(format!("test vector {i} has the wrong shape"));
            }
        }
        Ok(())
    }
}

/// Largest difference from a recorded test output the runtime may show (float32 round-off
/// across LSTM steps, different CPUs).
pub const TEST_VECTOR_TOLERANCE: f32 = 1e-3;

pub struct OnnxForecaster {
    session: Session,
    meta: ModelMeta,
    path: PathBuf,
    _environment: Environment,
}

impl std::fmt::Debug for OnnxForecaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxForecaster")
            .field("path", &self.path)
            .field("version", &self.meta.version)
            .finish()
    }
}

impl OnnxForecaster {
    /// Loads and checks a model (its metadata beside it). `dylib`: the runtime library, else
    /// `ORT_DYLIB_PATH`.
    pub fn load(model: &Path, dylib: Option<&Path>) -> Result<OnnxForecaster, OnnxError> {
        let meta = ModelMeta::load(&meta_path(model))?;
        let environment = environment(dylib)?;
        let bad = |reason: String| OnnxError::Model {
            path: model.to_path_buf(),
            reason,
        };
        if !model.is_file() {
            return Err(bad("no such file".into()));
        }
        let session = Session::builder(&environment)
            .map_err(|e| bad(e.to_string()))?
            // One thread: forecasts are small and run once a minute; leave the cores to decisions.
            .with_intra_threads(1)
            .map_err(|e| bad(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| bad(e.to_string()))?;
        let mut forecaster = OnnxForecaster {
            session,
            meta,
            path: model.to_path_buf(),
            _environment: environment,
        };
        forecaster.self_check().map_err(bad)?;
        Ok(forecaster)
    }

    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs the model on encoded windows (`n × WINDOW × DIM`), returning `n × HORIZON` raw outputs.
    pub fn run_raw(&mut self, input: &[f32], n: usize) -> Result<Vec<f32>, OnnxError> {
        let fail = |e: ort::Error| OnnxError::Inference(e.to_string());
        let tensor = TensorRef::from_array_view(([n, WINDOW, DIM], input)).map_err(fail)?;
        let outputs = self
            .session
            .run(ort::inputs!["window" => tensor])
            .map_err(fail)?;
        let (shape, data) = outputs["forecast"]
            .try_extract_tensor::<f32>()
            .map_err(fail)?;
        if data.len() != n * HORIZON {
            return Err(OnnxError::Inference(format!(
                "output shape {shape:?}, expected [{n}, {HORIZON}]"
            )));
        }
        Ok(data.to_vec())
    }

    /// The recorded test vectors must come out as recorded.
    fn self_check(&mut self) -> Result<(), String> {
        let vectors = self.meta.test_vectors.clone();
        if vectors.is_empty() {
            return Err("metadata has no test vectors to check the model against".into());
        }
        let input: Vec<f32> = vectors
            .iter()
            .flat_map(|v| v.input.iter().copied())
            .collect();
        let got = self
            .run_raw(&input, vectors.len())
            .map_err(|e| e.to_string())?;
        let worst = vectors
            .iter()
            .flat_map(|v| v.output.iter())
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Written so that a NaN (a broken graph) fails the check too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(worst <= TEST_VECTOR_TOLERANCE) {
            return Err(format!(
                "outputs differ from the test vectors recorded at export by up to {worst}: the file does not match its metadata"
            ));
        }
        Ok(())
    }
}

impl Forecaster for OnnxForecaster {
    fn name(&self) -> &str {
        "lstm"
    }

    fn forecast(&mut self, windows: &[&[MinutePoint]]) -> Result<Vec<Forecast>, String> {
        let mut input = Vec::with_capacity(windows.len() * WINDOW * DIM);
        let mut scales = Vec::with_capacity(windows.len());
        for w in windows {
            if w.len() != WINDOW {
                return Err(format!(
                    "a window of {} minutes, expected {WINDOW}",
                    w.len()
                ));
            }
            scales.push(features::encode_into(w, &mut input));
        }
        let raw = self
            .run_raw(&input, windows.len())
            .map_err(|e| e.to_string())?;
        Ok(raw
            .chunks(HORIZON)
            .zip(windows.iter().zip(scales))
            .map(|(out, (window, scale))| features::forecast_from(window, out, scale))
            .collect())
    }
}

/// The shipped forecaster, or the baseline with the reason it had to stand in.
pub fn load_or_baseline(
    model: &Path,
    dylib: Option<&Path>,
) -> (
    Box<dyn sluice_core::forecast::Forecaster + Send>,
    Option<String>,
) {
    match OnnxForecaster::load(model, dylib) {
        Ok(f) => (Box::new(f), None),
        Err(e) => (
            Box::new(sluice_core::forecast::baseline::Fallback),
            Some(e.to_string()),
        ),
    }
}
