//! Sluice: an adaptive rate-limit decision service.
//!
//! `core` is the pure decision logic; everything else adapts it to the outside world (gRPC,
//! SQL, files, clocks). See ARCHITECTURE.md for the map.

pub mod clock;
pub mod config;
pub mod core;
pub mod forecast;
pub mod forecasting;
pub mod grpc;
pub mod history;
pub mod learning;
pub mod loadgen;
pub mod proto;
pub mod replay;
pub mod rules_service;
pub mod rulesfile;
pub mod rulesfile_watch;
pub mod server;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod tls;
