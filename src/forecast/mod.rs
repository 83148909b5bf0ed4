//! Forecasting adapters: the series file reader, the ONNX Runtime forecaster, the training
//! tensors export and the `eval-forecast` / `export-features` commands. The feature encoding and
//! the scoring they use live in `core::forecast`.

pub mod cli;
pub mod export;
pub mod onnx;
pub mod series;
