//! The live service's parts, which drive the core on the wall clock: the decider and the fleet's
//! shared counters, the minute loop, the model slot, the history writer, the database
//! supervisor, the rule sources, the handle bundle the listeners read and the metrics
//! catalogue. Wiring them together and starting them is the composition root's (`crate::app`);
//! nothing here imports a listener (`grpc`, `http`) or a subcommand (`cli`).

pub mod admin_token;
pub mod backend_loads;
pub mod background;
pub mod clock;
pub mod database;
pub mod db_supervisor;
pub mod decider;
pub mod descriptors;
pub mod fleet;
pub mod fleet_sync;
pub mod handles;
pub mod history_writer;
pub mod latency;
pub mod leases;
pub mod metric_catalogue;
pub mod metric_readers;
pub mod minute_exchange;
pub mod minute_loop;
pub mod model_slot;
pub mod quotas;
pub mod readiness;
pub mod reservations;
pub mod rules_file_follower;
pub mod rules_manager;
pub mod shutdown;
pub mod telemetry;
pub mod timeline;
