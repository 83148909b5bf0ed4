//! `sluice-core`, Sluice's pure core: limits, bucket math and the sharded bucket store, rules,
//! validation, matching, the decision engine, and the learning and forecasting logic with the
//! minute that ties them together (`minute`).
//!
//! Nothing here does I/O, reads a clock or knows gRPC, SQL, ONNX Runtime or moka: its manifest
//! has none of them, so the compiler checks it. Adapters in the `sluice` crate translate into
//! these types. Time is always a parameter (`time::Nanos`).

pub mod bucket;
pub mod buckets;
pub mod calendar;
pub mod engine;
#[cfg(any(test, feature = "behaviour-suite"))]
pub mod engine_suite;
pub mod forecast;
pub mod headers;
pub mod keys;
pub mod learn;
pub mod lease;
pub mod limit;
pub mod limit_stats;
pub mod matcher;
pub mod minute;
pub mod probe_table;
pub mod quota;
pub mod reservation;
pub mod rules;
pub mod time;
pub mod validate;
pub mod verdict;
