//! The live service: drives the core on the wall clock. `run` wires everything and stops it in
//! order; the minute loop, the model slot, the history writer, the database supervisor and the
//! rule sources are its parts. Nothing here imports a subcommand module (`crate::cli`).

pub mod backend_loads;
pub mod background;
pub mod clock;
pub mod config;
pub mod config_fleet;
pub mod database;
pub mod db_supervisor;
pub mod descriptors;
pub mod fleet;
pub mod fleet_sync;
pub mod history_writer;
pub mod latency;
pub mod minute_loop;
pub mod model_slot;
pub mod readiness;
pub mod rules_file_follower;
pub mod rules_manager;
pub mod run;
pub mod shutdown;
pub mod telemetry;
pub mod timeline;

pub use run::{StartError, run};
