//! Where leases live: this process's table when it decides alone, the shared counters with
//! `--counters` (every replica then sees every holder). Handlers ask here and never choose.
//!
//! Not here: the lease semantics (`sluice_core::lease`), the Redis script
//! (`adapters::redis_counters`), input checks (the gRPC handler).

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use sluice_core::lease::{Acquired, LeaseTable};
use sluice_core::time::Nanos;

use crate::adapters::redis_counters::{CountersError, RedisCounters};

/// Keys with live leases one process keeps at most (a new key past it is refused).
pub const MAX_LEASE_KEYS: usize = 100_000;

pub struct Leases {
    local: Mutex<LeaseTable>,
    shared: Option<RedisCounters>,
    /// Acquires answered, for `/metrics`.
    pub granted: AtomicU64,
    pub refused: AtomicU64,
}

/// A lease's key: its domain and the caller's key, hashed (bounded, and apart per domain).
pub fn lease_key(domain: &str, key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(format!("{domain}\u{0}{key}").as_bytes())
}

impl Leases {
    pub fn new(shared: Option<RedisCounters>) -> Leases {
        Leases {
            local: Mutex::new(LeaseTable::new(MAX_LEASE_KEYS)),
            shared,
            granted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub async fn acquire(
        &self,
        key: u128,
        id: u128,
        limit: u32,
        ttl: Nanos,
        now: Nanos,
    ) -> Result<Acquired, CountersError> {
        let acquired = match &self.shared {
            Some(counters) => counters.acquire_lease(key, id, limit, ttl, now).await?,
            None => self.local.lock().acquire(key, id, limit, ttl, now),
        };
        let counter = match acquired {
            Acquired::Granted { .. } => &self.granted,
            _ => &self.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(acquired)
    }

    /// The new deadline, or `None` when the lease is not live.
    pub async fn renew(
        &self,
        key: u128,
        id: u128,
        ttl: Nanos,
        now: Nanos,
    ) -> Result<Option<Nanos>, CountersError> {
        match &self.shared {
            Some(counters) => Ok(counters
                .renew_lease(key, id, ttl)
                .await?
                .then(|| now.saturating_add(ttl))),
            None => Ok(self.local.lock().renew(key, id, ttl, now)),
        }
    }

    pub async fn release(&self, key: u128, id: u128, now: Nanos) -> Result<bool, CountersError> {
        match &self.shared {
            Some(counters) => counters.release_lease(key, id).await,
            None => Ok(self.local.lock().release(key, id, now)),
        }
    }
}
