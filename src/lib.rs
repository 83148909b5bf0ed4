//! Sluice: an adaptive rate-limit decision service.
//!
//! `core` is the pure decision logic; everything else adapts it to the outside world (gRPC,
//! SQL, files, clocks). See ARCHITECTURE.md for the map.

pub mod core;
