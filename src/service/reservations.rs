//! Reserve and commit, the service's half: a reservation is decided like `ShouldAllow` (through
//! the decider, so the shared counters and their failure policy apply), and what it charged is
//! recorded here — in this process, or in the shared counters with `--counters`, so any replica
//! settles it. Settling takes the record once, then gives back or adds what the actual costs
//! say; if the counters cannot take the settlement, the record is put back and the caller told
//! to retry (an acknowledged settlement is never lost, nor applied twice).
//!
//! Not here: which limit is charged what and how a commit becomes refunds and added hits
//! (`sluice_core::reservation`), input checks (the gRPC handler).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sluice_core::engine::{Subject, Verdict};
use sluice_core::reservation::{
    Charge, Reservation, ReservationTable, StoredCharge, cancellation, settlement,
};
use sluice_core::time::Nanos;

use crate::adapters::redis_counters::{CountersError, RedisCounters};
use crate::service::decider::Decider;

/// Unsettled reservations one process keeps at most.
pub const MAX_RESERVATIONS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    #[error("{0} unsettled reservations are held, the most this server keeps: settle some first")]
    TooMany(usize),
    #[error("the shared counters did not answer: {0}")]
    Counters(#[from] CountersError),
    #[error("the shared counters hold a reservation this server cannot read: {0}")]
    Unreadable(String),
}

/// What the shared counters keep of a reservation.
#[derive(Serialize, Deserialize)]
struct Stored {
    charges: Vec<StoredCharge>,
    /// Wall-clock deadline (ms since the epoch): a record put back keeps its deadline.
    expires_at_ms: u64,
}

pub struct Reservations {
    decider: Decider,
    local: Mutex<ReservationTable>,
    shared: Option<RedisCounters>,
    /// What reservations came to, for `/metrics`.
    pub stats: ReservationStats,
}

#[derive(Default)]
pub struct ReservationStats {
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    pub committed: AtomicU64,
    pub cancelled: AtomicU64,
    /// Settlements of a reservation unknown, settled already or expired.
    pub unknown: AtomicU64,
}

impl ReservationStats {
    pub fn by_result(&self) -> [(&'static str, u64); 5] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("allowed", n(&self.allowed)),
            ("denied", n(&self.denied)),
            ("committed", n(&self.committed)),
            ("cancelled", n(&self.cancelled)),
            ("unknown", n(&self.unknown)),
        ]
    }
}

/// How a settlement ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Commit,
    Cancel,
}

impl Reservations {
    pub fn new(decider: Decider, shared: Option<RedisCounters>) -> Reservations {
        Reservations {
            decider,
            local: Mutex::new(ReservationTable::new(MAX_RESERVATIONS)),
            shared,
            stats: ReservationStats::default(),
        }
    }

    /// Reserves `costs` for `subject`; the verdict, and the reservation's id when allowed.
    pub async fn reserve(
        &self,
        domain: &str,
        subject: &Subject<'_>,
        costs: &[(&str, u64)],
        ttl: Nanos,
        now: Nanos,
        wall_ms: u64,
    ) -> Result<(Verdict, Option<u128>), ReservationError> {
        let (verdict, charges) = self.decider.reserve(domain, subject, costs, now).await;
        if verdict.over_limit {
            self.stats.denied.fetch_add(1, Ordering::Relaxed);
            return Ok((verdict, None));
        }
        let id: u128 = rand::random();
        let kept = match &self.shared {
            Some(counters) => {
                let stored = Stored {
                    charges: charges.iter().map(StoredCharge::from).collect(),
                    expires_at_ms: wall_ms + ttl / 1_000_000,
                };
                let body = serde_json::to_string(&stored).expect("plain data serialises");
                counters
                    .put_reservation(id, &body, Duration::from_nanos(ttl))
                    .await
                    .map_err(ReservationError::from)
            }
            None => self
                .local
                .lock()
                .insert(
                    id,
                    Reservation {
                        charges: charges.clone(),
                        expires_at: now.saturating_add(ttl),
                    },
                    now,
                )
                .map_err(|e| ReservationError::TooMany(e.max)),
        };
        if let Err(e) = kept {
            // Not recorded: nothing could ever settle it, so the estimate is given back now.
            let _ = self.decider.apply(&cancellation(&charges), now).await;
            return Err(e);
        }
        self.stats.allowed.fetch_add(1, Ordering::Relaxed);
        Ok((verdict, Some(id)))
    }

    /// Settles reservation `id`: `actual` costs for a commit, nothing for a cancel. `false`:
    /// unknown, settled already or expired.
    pub async fn settle(
        &self,
        id: u128,
        how: Settle,
        actual: &[(&str, u64)],
        now: Nanos,
        wall_ms: u64,
    ) -> Result<bool, ReservationError> {
        let settled = self.settle_once(id, how, actual, now, wall_ms).await?;
        let counter = match (settled, how) {
            (false, _) => &self.stats.unknown,
            (true, Settle::Commit) => &self.stats.committed,
            (true, Settle::Cancel) => &self.stats.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(settled)
    }

    async fn settle_once(
        &self,
        id: u128,
        how: Settle,
        actual: &[(&str, u64)],
        now: Nanos,
        wall_ms: u64,
    ) -> Result<bool, ReservationError> {
        let ops = |charges: &[Charge]| match how {
            Settle::Commit => settlement(charges, actual),
            Settle::Cancel => cancellation(charges),
        };
        let Some(counters) = &self.shared else {
            let Some(reservation) = self.local.lock().take(id, now) else {
                return Ok(false);
            };
            // In-process buckets (no shared counters): this cannot fail.
            self.decider.apply(&ops(&reservation.charges), now).await?;
            return Ok(true);
        };
        let Some(body) = counters.take_reservation(id).await? else {
            return Ok(false);
        };
        let stored: Stored =
            serde_json::from_str(&body).map_err(|e| ReservationError::Unreadable(e.to_string()))?;
        let charges: Vec<Charge> = stored
            .charges
            .iter()
            .map(|c| c.charge())
            .collect::<Option<_>>()
            .ok_or_else(|| ReservationError::Unreadable("a bucket key is not hex".into()))?;
        if let Err(e) = self.decider.apply(&ops(&charges), now).await {
            // Not applied: the record goes back with its own deadline, to be settled again.
            let left = stored.expires_at_ms.saturating_sub(wall_ms).max(1);
            let _ = counters
                .put_reservation(id, &body, Duration::from_millis(left))
                .await;
            return Err(e.into());
        }
        Ok(true)
    }
}
