//! Sluice: an adaptive rate-limit decision service.
//!
//! The pure decisions, learning and forecasting are the `sluice-core` crate (`crates/core`). This
//! crate adapts it to the world and drives it, one directory per role (ARCHITECTURE.md has the map):
//! - `app`: the composition root: configuration, wiring, start and orderly stop;
//! - `service`: the live service's parts, which drive the core on the wall clock;
//! - `http`: the HTTP admin listener (metrics, probes, dashboard);
//! - `grpc`: the gRPC edge; `store`: the SQL store; `adapters`: ONNX Runtime, moka, files;
//! - `replay`: drives the same core in virtual time from a trace;
//! - `cli`: the `sluice` subcommands, one module each.

pub mod adapters;
pub mod app;
pub mod cli;
pub mod grpc;
pub mod http;
pub mod proto;
pub mod replay;
pub mod service;
pub mod store;
