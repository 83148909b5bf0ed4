//! Sluice: an adaptive rate-limit decision service.
//!
//! The pure decisions, learning and forecasting are the `sluice-core` crate (`crates/core`). This
//! crate adapts it to the world and drives it, one directory per role (ARCHITECTURE.md has the map):
//! - `service`: the live service, which drives the core on the wall clock;
//! - `grpc`: the gRPC edge; `store`: the SQL store; `adapters`: ONNX Runtime, moka, files;
//! - `replay`: drives the same core in virtual time from a trace;
//! - `cli`: the `sluice` subcommands, one module each.

pub mod adapters;
pub mod cli;
pub mod grpc;
pub mod http;
pub mod proto;
pub mod replay;
pub mod service;
pub mod store;
