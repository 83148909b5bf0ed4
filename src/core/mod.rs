//! The pure core: limits, bucket math, rules, validation, matching and the decision engine.
//!
//! Nothing here does I/O, reads a clock or knows about gRPC, SQL or ONNX; adapters translate
//! into these types. Time is always a parameter (`time::Nanos`).

pub mod bucket;
pub mod buckets;
pub mod engine;
pub mod forecast;
pub mod headers;
pub mod keys;
pub mod learn;
pub mod limit;
pub mod matcher;
pub mod probe_table;
pub mod rules;
pub mod time;
pub mod validate;
pub mod verdict;
