//! The fleet's minute exchange (`--counters`): at each minute's close every replica publishes
//! the clients worth sharing (`sluice_core::learn::fleet_minute::to_share`) to the shared
//! store under the minute's index, waits a moment for the other replicas alive to do the same,
//! and takes theirs, which the minute loop merges into its own before it learns. Every replica
//! learns (there is no leader to elect or lose): each judges every shared client on the fleet's
//! whole minute, and their actions meet in the fleet state (`fleet_sync`).
//!
//! The exchange never holds a minute up for long and never fails it: when the store does not
//! answer, or a replica is late, the minute is learned on what arrived (alone at worst), said
//! in health (`sluice.v1.FleetLearning`) and `/metrics`.
//!
//! Not here: which clients are shared and how minutes merge (the core's `fleet_minute`), the
//! store's commands (`adapters::redis_counters`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sluice_core::learn::observe::ClientSummary;

use crate::service::fleet::Fleet;
use crate::service::readiness::Readiness;

/// Longest a replica's share may be on the wire; a larger one is not read (a damaged or
/// hostile entry must not take the minute's memory). 10,000 clients take a few megabytes.
const MAX_SHARE_BYTES: usize = 64 << 20;

/// How often the store is asked whether every replica has published.
const POLL: Duration = Duration::from_millis(50);

/// What the exchange did, for `/metrics` and OTLP.
#[derive(Debug, Default)]
pub struct ExchangeStats {
    /// Minutes learned with at least one other replica's share merged in.
    pub together: AtomicU64,
    /// Minutes learned alone although other replicas were alive (the store failed, or none
    /// published in time).
    pub alone: AtomicU64,
    /// Clients this replica published, and clients it took from the others.
    pub shared_clients: AtomicU64,
    pub received_clients: AtomicU64,
    /// Shares that could not be read (unreadable or too large), skipped.
    pub unreadable: AtomicU64,
    /// Whether the last minute was learned with the fleet.
    pub fleet_wide: AtomicBool,
}

/// The exchange of one replica.
pub struct MinuteExchange {
    fleet: Arc<Fleet>,
    instance: String,
    readiness: Readiness,
    /// How long a close waits for the other replicas' shares.
    wait: Duration,
    /// How long a share stays in the store.
    keep: Duration,
    pub stats: ExchangeStats,
}

impl MinuteExchange {
    /// An exchange for minutes `period` long: it waits at most a tenth of the period (up to
    /// 5 s) for the others, and keeps a share three periods.
    pub fn new(
        fleet: Arc<Fleet>,
        instance: String,
        readiness: Readiness,
        period: Duration,
    ) -> MinuteExchange {
        readiness.fleet_learning(true);
        MinuteExchange {
            fleet,
            instance,
            readiness,
            wait: (period / 10).clamp(Duration::from_millis(200), Duration::from_secs(5)),
            keep: period * 3,
            stats: ExchangeStats::default(),
        }
    }

    /// The replicas alive, this one included (the fleet state's count).
    pub fn replicas(&self) -> u32 {
        self.fleet.divisor().min(u32::MAX as u64) as u32
    }

    /// Publishes `own` as this replica's share of `minute` and returns the other replicas'
    /// shares of it; `Vec::new()` (learning alone) when the store fails.
    pub async fn exchange(&self, minute: i64, own: &[ClientSummary]) -> Vec<ClientSummary> {
        let replicas = self.replicas() as u64;
        let result = tokio::time::timeout(self.wait * 2, self.swap(minute, own, replicas)).await;
        let others = match result {
            Ok(Ok(others)) => others,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, minute, "the minute exchange failed: learning this minute alone");
                None
            }
            Err(_) => {
                tracing::warn!(
                    minute,
                    "the minute exchange timed out: learning this minute alone"
                );
                None
            }
        };
        self.stats
            .shared_clients
            .fetch_add(own.len() as u64, Ordering::Relaxed);
        let together = others.is_some() || replicas <= 1;
        self.stats.fleet_wide.store(together, Ordering::Relaxed);
        self.readiness.fleet_learning(together);
        let others = others.unwrap_or_default();
        if !others.is_empty() {
            self.stats.together.fetch_add(1, Ordering::Relaxed);
        } else if replicas > 1 {
            self.stats.alone.fetch_add(1, Ordering::Relaxed);
        }
        self.stats
            .received_clients
            .fetch_add(others.len() as u64, Ordering::Relaxed);
        others
    }

    /// `None` when the store answered but no other replica published in time while some are
    /// alive (learning alone), else their shares.
    async fn swap(
        &self,
        minute: i64,
        own: &[ClientSummary],
        replicas: u64,
    ) -> Result<Option<Vec<ClientSummary>>, Box<dyn std::error::Error + Send + Sync>> {
        let counters = self.fleet.counters();
        let share = serde_json::to_vec(own)?;
        counters
            .put_minute(minute, &self.instance, &share, self.keep)
            .await?;
        let deadline = tokio::time::Instant::now() + self.wait;
        while counters.minute_publishers(minute).await? < replicas
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(POLL).await;
        }
        let mut others = Vec::new();
        let mut heard = false;
        for (instance, bytes) in counters.minute_shares(minute).await? {
            if instance == self.instance {
                continue;
            }
            heard = true;
            if bytes.len() > MAX_SHARE_BYTES {
                self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match serde_json::from_slice::<Vec<ClientSummary>>(&bytes) {
                Ok(share) => others.extend(share),
                Err(e) => {
                    self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(replica = instance, error = %e, "unreadable minute share; skipped");
                }
            }
        }
        Ok((heard || replicas <= 1).then_some(others))
    }
}
