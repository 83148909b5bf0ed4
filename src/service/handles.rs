//! The handle bundle: every shared part of the running service, built once by the composition
//! root (`app`) and read by both listeners (the gRPC services and the HTTP admin listener) and
//! by the metrics catalogue. A handler takes what it needs from here; nothing here is copied
//! per listener.
//!
//! Not here: how the parts are built and started (`app`), what a listener does with them.

use std::sync::Arc;

use tokio::sync::watch;

use sluice_core::engine::Engine;
use sluice_core::validate::InputLimits;

use crate::service::admin_token::AdminToken;
use crate::service::backend_loads::BackendLoads;
use crate::service::clock::LiveClock;
use crate::service::database::Database;
use crate::service::decider::Decider;
use crate::service::fleet::Fleet;
use crate::service::history_writer::HistoryStats;
use crate::service::latency::Latency;
use crate::service::latency::RpcMetrics;
use crate::service::minute_exchange::MinuteExchange;
use crate::service::minute_loop::MinuteLoop;
use crate::service::model_slot::ModelSlot;
use crate::service::quotas::Quotas;
use crate::service::readiness::Ready;
use crate::service::rules_manager::RulesManager;
use crate::service::timeline::Timeline;

/// What the listeners and the metrics read, shared behind one `Arc`.
pub struct Handles {
    /// Rules in force, clients, actions, statistics (decisions go through `decider`).
    pub engine: Arc<Engine>,
    /// Decides on the in-process buckets or the shared counters: handlers never choose.
    pub decider: Decider,
    /// The shared counters' state, for the metrics and the dashboard (`--counters`).
    pub fleet: Option<Arc<Fleet>>,
    /// The fleet's minute exchange (`--counters`), for the metrics.
    pub exchange: Option<Arc<MinuteExchange>>,
    pub clock: LiveClock,
    /// Caps on every input a caller sends.
    pub caps: InputLimits,
    /// The domain of requests that name none (`--allow-domain`), also the one whose limits the
    /// dashboard shows for the busiest keys.
    pub default_domain: String,
    /// This instance's name in the shared history and the fleet state.
    pub instance: String,
    pub admin: AdminToken,
    /// The RLQS quota board: Envoys' buckets and their shares.
    pub quotas: Arc<Quotas>,
    /// Concurrency leases, here or on the shared counters.
    pub leases: Arc<crate::service::leases::Leases>,
    /// Reservations waiting to be settled, here or on the shared counters.
    pub reservations: Arc<crate::service::reservations::Reservations>,
    /// Rule changes: validated, stored, then put in force.
    pub rules: Arc<RulesManager>,
    /// The minute loop: its status, corrections, training.
    pub learning: Arc<MinuteLoop>,
    pub models: Arc<ModelSlot>,
    pub loads: Arc<BackendLoads>,
    pub database: Arc<Database>,
    pub history_stats: Arc<HistoryStats>,
    /// What the service is ready for, as its parts last said.
    pub ready: watch::Receiver<Ready>,
    /// The last minutes' decisions, for the dashboard (`--http-listen`).
    pub timeline: Arc<Timeline>,
    /// Decision RPC durations as `/metrics` shows them (`--http-listen`).
    pub latency: Arc<Latency>,
    /// Timers the decision RPCs start (a no-op without an exporter to read them).
    pub rpc: RpcMetrics,
}
