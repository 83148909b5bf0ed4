//! The composition root, alone on the top floor: the configuration (flags and environment),
//! and the wiring that builds every part once, starts the producers and serves until shutdown,
//! then stops everything in order. The only module that knows every other; nothing but the
//! subcommands (`cli`) and the tests import it.
//!
//! - `config`, `config_fleet`: the flags;
//! - `startup_files`: the files read or written before serving (TLS, the admin token), off the
//!   async runtime;
//! - `build`: every part built, nothing started;
//! - `producers`: the background tasks started, and stopped in order;
//! - `run`: build, start, serve, stop;
//! - `start_error`: why it did not start.

mod build;
pub mod config;
pub mod config_fleet;
mod producers;
mod run;
mod start_error;
mod startup_files;

pub use run::{run, run_with};
pub use start_error::StartError;
