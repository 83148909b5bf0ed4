//! Concurrency limits: leases on a key, at most `limit` held at once. A caller acquires a lease
//! before the work and releases it after; a lease not released (its holder crashed) expires at
//! its deadline, so a slot never leaks. Renewing moves a live lease's deadline.
//!
//! Plain data with time passed in: the service keeps one table per process when it decides
//! alone; a fleet keeps the same semantics in the shared counters instead (a Redis sorted set
//! per key, `adapters::redis_counters::leases.lua`), so this module never knows about either.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::time::Nanos;

/// The most holders one key's limit may allow.
pub const MAX_LEASE_LIMIT: u32 = 10_000;
/// The longest a lease may live before it is renewed (a day).
pub const MAX_LEASE_TTL: Nanos = 86_400 * crate::time::NANOS_PER_SEC;

/// What an acquire got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Held until `expires_at` unless renewed or released; `holders` with this one.
    Granted { expires_at: Nanos, holders: u32 },
    /// `holders` hold every slot; the earliest of them expires after `retry_after`.
    Full { holders: u32, retry_after: Nanos },
    /// The table holds `max_keys` keys with live leases: a new key is refused until one frees.
    TooManyKeys,
}

/// Live leases per key (a key: the hash of a domain and a lease key, as the service makes it).
#[derive(Debug)]
pub struct LeaseTable {
    by_key: FxHashMap<u128, SmallVec<[(u128, Nanos); 4]>>,
    max_keys: usize,
}

impl LeaseTable {
    pub fn new(max_keys: usize) -> LeaseTable {
        LeaseTable {
            by_key: FxHashMap::default(),
            max_keys,
        }
    }

    /// Acquires lease `id` on `key` for `ttl`, if fewer than `limit` live leases hold it. An
    /// `id` already holding the key is renewed instead (a retried acquire takes one slot).
    pub fn acquire(&mut self, key: u128, id: u128, limit: u32, ttl: Nanos, now: Nanos) -> Acquired {
        self.expire(key, now);
        if !self.by_key.contains_key(&key) && self.by_key.len() >= self.max_keys {
            self.sweep(now);
            if self.by_key.len() >= self.max_keys {
                return Acquired::TooManyKeys;
            }
        }
        let holders = self.by_key.entry(key).or_default();
        let expires_at = now.saturating_add(ttl);
        if let Some(held) = holders.iter_mut().find(|(h, _)| *h == id) {
            held.1 = expires_at;
            return Acquired::Granted {
                expires_at,
                holders: holders.len() as u32,
            };
        }
        // At least one: an entry is never left empty (the service refuses a limit of 0).
        if holders.len() >= limit.max(1) as usize {
            let earliest = holders.iter().map(|(_, e)| *e).min().unwrap_or(now);
            return Acquired::Full {
                holders: holders.len() as u32,
                retry_after: earliest.saturating_sub(now),
            };
        }
        holders.push((id, expires_at));
        Acquired::Granted {
            expires_at,
            holders: holders.len() as u32,
        }
    }

    /// Releases lease `id` on `key`; whether it was live (a second release is a no-op).
    pub fn release(&mut self, key: u128, id: u128, now: Nanos) -> bool {
        self.expire(key, now);
        let Some(holders) = self.by_key.get_mut(&key) else {
            return false;
        };
        let before = holders.len();
        holders.retain(|(h, _)| *h != id);
        let released = holders.len() < before;
        if holders.is_empty() {
            self.by_key.remove(&key);
        }
        released
    }

    /// Moves live lease `id`'s deadline to `now + ttl`; `None` when it is not live (expired,
    /// released, never granted): the holder must acquire again.
    pub fn renew(&mut self, key: u128, id: u128, ttl: Nanos, now: Nanos) -> Option<Nanos> {
        self.expire(key, now);
        let held = self
            .by_key
            .get_mut(&key)?
            .iter_mut()
            .find(|(h, _)| *h == id)?;
        held.1 = now.saturating_add(ttl);
        Some(held.1)
    }

    /// Live leases on `key`.
    pub fn holders(&mut self, key: u128, now: Nanos) -> u32 {
        self.expire(key, now);
        self.by_key.get(&key).map_or(0, |h| h.len() as u32)
    }

    /// Keys with live leases (after the last sweep).
    pub fn keys(&self) -> usize {
        self.by_key.len()
    }

    /// Drops every expired lease, and keys left with none.
    pub fn sweep(&mut self, now: Nanos) {
        self.by_key.retain(|_, holders| {
            holders.retain(|(_, e)| *e > now);
            !holders.is_empty()
        });
    }

    fn expire(&mut self, key: u128, now: Nanos) {
        if let Some(holders) = self.by_key.get_mut(&key) {
            holders.retain(|(_, e)| *e > now);
            if holders.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
