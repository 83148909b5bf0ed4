//! Anomaly actions and the pressure cut, fleet-wide: every second each replica publishes what it
//! enforces (its actions in force and its cut) to the shared counters' store, and installs what
//! the others published as the engine's fleet actions and fleet cut. An action taken by any
//! replica is so enforced by all within about two seconds, and a replica that starts late picks
//! up the actions in force on its first round. A replica silent for `STALE` is forgotten. The
//! count of replicas alive is the fleet's own size: the `local` failure policy's divisor. Each
//! replica also publishes the demand of the Envoys reporting RLQS buckets to it, so every
//! replica divides a bucket's quota among all the fleet's Envoys (`quota::QuotaBoard`).
//!
//! The learning itself is shared at each minute's close (`minute_exchange`); this makes what
//! any replica decided hold everywhere.
//!
//! Not here: deciding actions (the minute loop) or applying them (the engine).

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sluice_core::engine::Engine;
use sluice_core::learn::actions::{Action, ActionTable};
use sluice_core::quota::BucketKey;

use crate::service::clock::LiveClock;
use crate::service::fleet::Fleet;
use crate::service::quotas::Quotas;
use crate::service::shutdown::Shutdown;

/// How often a replica publishes and reads.
pub const ROUND: Duration = Duration::from_secs(1);
/// A replica whose state is older than this is forgotten (its actions lapse).
const STALE_MS: i64 = 30_000;

#[derive(Debug, Serialize, Deserialize)]
struct ReplicaState {
    at_ms: i64,
    pressure: f64,
    actions: Vec<Action>,
    /// The demand of the Envoys reporting each RLQS bucket to this replica.
    #[serde(default)]
    quotas: Vec<(BucketKey, Vec<f64>)>,
}

pub async fn run(
    fleet: Arc<Fleet>,
    engine: Arc<Engine>,
    quotas: Arc<Quotas>,
    instance: String,
    clock: LiveClock,
    mut shutdown: Shutdown,
) {
    let mut warned = false;
    // The replicas counted in the rounds of the last `STALE_MS`: the divisor is their most, so
    // a Redis restarted empty (every state gone until each replica publishes again) does not
    // make a replica believe it is alone.
    let mut counted: std::collections::VecDeque<(i64, u64)> = Default::default();
    loop {
        match tokio::time::timeout(ROUND, round(&fleet, &engine, &quotas, &instance, clock)).await {
            Ok(Ok(alive)) => {
                warned = false;
                let now_ms = clock.now_millis();
                counted.push_back((now_ms, alive));
                while counted
                    .front()
                    .is_some_and(|(at, _)| now_ms - at > STALE_MS)
                {
                    counted.pop_front();
                }
                fleet.set_live_replicas(counted.iter().map(|(_, n)| *n).max().unwrap_or(1));
            }
            Ok(Err(e)) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "could not share actions with the fleet; retrying");
            }
            Err(_) if !warned => {
                warned = true;
                tracing::warn!("sharing actions with the fleet timed out; retrying");
            }
            _ => {}
        }
        if !shutdown.sleep(ROUND).await {
            return;
        }
    }
}

/// One round: publishes, installs the others' actions and cut; returns the replicas alive.
async fn round(
    fleet: &Fleet,
    engine: &Engine,
    quotas: &Quotas,
    instance: &str,
    clock: LiveClock,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let (now, now_ms) = (clock.now(), clock.now_millis());
    let own = ReplicaState {
        at_ms: now_ms,
        pressure: engine.own_pressure(),
        actions: engine
            .actions()
            .iter()
            .filter(|a| a.expires_at > now)
            .cloned()
            .collect(),
        quotas: quotas.local_demand(now),
    };
    let counters = fleet.counters();
    counters
        .put_state(instance, &serde_json::to_string(&own)?)
        .await?;
    let mut merged: FxHashMap<Arc<str>, Action> = FxHashMap::default();
    let mut pressure = 1.0f64;
    let mut remote_quotas = Vec::new();
    let mut stale = Vec::new();
    // This one, and every other that published within `STALE_MS`: the `local` policy's divisor.
    let mut alive = 1u64;
    for (id, json) in counters.states().await? {
        if id == instance {
            continue;
        }
        let Ok(state) = serde_json::from_str::<ReplicaState>(&json) else {
            tracing::debug!(replica = id, "unreadable fleet state; ignored");
            continue;
        };
        if now_ms - state.at_ms > STALE_MS {
            stale.push(id);
            continue;
        }
        alive += 1;
        pressure = pressure.min(state.pressure);
        remote_quotas.extend(state.quotas);
        for action in state.actions.into_iter().filter(|a| a.expires_at > now) {
            match merged.get(&action.client) {
                // Two replicas acted on one client: the stronger action holds.
                Some(held) if held.kind.stronger(action.kind) == held.kind => {}
                _ => {
                    merged.insert(action.client.clone(), action);
                }
            }
        }
    }
    engine.set_fleet_actions(Arc::new(ActionTable::from_map(merged)));
    engine.set_fleet_pressure(pressure);
    quotas.set_remote(remote_quotas);
    counters.drop_states(&stale).await?;
    Ok(alive)
}
