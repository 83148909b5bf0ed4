//! Adapters: the core's types to and from things outside it that are neither the network nor the
//! database — ONNX Runtime, the moka cache, and the files Sluice reads and writes. Each module is
//! the only one that knows its crate or format.

pub mod corrections_file;
pub mod moka_store;
pub mod onnx;
pub mod redis_counters;
pub mod rules_file;
pub mod series_file;
pub mod thread_priority;
pub mod trace_file;
pub mod training_tensors;
