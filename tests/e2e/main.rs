//! End-to-end tests: the real server on port 0, real gRPC clients, real SQLite and PostgreSQL.

mod fleet_harness;
mod harness;

mod admin;
mod allow;
mod bad_input;
mod cli;
mod corrections;
mod fleet;
mod fleet_busy;
mod fleet_learning;
mod forecast_history;
mod forecasting;
mod http;
mod learning;
mod limits;
mod operators;
mod outage;
mod rlqs_fleet;
mod rls;
mod service;
mod telemetry;
mod tls;
