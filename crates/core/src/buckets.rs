//! Where bucket states live: one entry per (limit, descriptor values) key, bounded in number.
//!
//! The engine talks to a [`Buckets`]: the built-in [`ShardedStore`] (called directly, no dynamic
//! dispatch on the decision path) or any other [`BucketStore`] an adapter provides (the service's
//! moka store, `sluice::adapters::moka_store`, whose expiry follows the wall clock and so cannot
//! live here).
//!
//! `ShardedStore`: 256 mutex-guarded probe tables holding states inline; time is the caller's
//! `now`, so expiry is exact in replays too. At capacity a shard first drops entries whose limit
//! has fully recovered (losing nothing), then its least recently used eighth.
//!
//! Every store keeps an idle entry for at least `max(idle TTL, the time its limit needs to
//! recover fully)`: dropping a bucket before then would hand its key a fresh allowance. Entries
//! are only lost early under capacity pressure, and each such loss is counted where the store can
//! tell (`lossy_evictions`).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::bucket::BucketState;
use super::probe_table::ProbeTable;
use super::time::Nanos;

/// A bounded map from bucket key to bucket state, safe to share between threads. Implemented
/// outside the core by stores that need what the core may not have (a clock, a cache crate).
pub trait BucketStore: Send + Sync {
    /// Runs `f` on the key's state (created `Fresh` if absent), exclusively. `keep_for` is how
    /// long the state matters after its last use (see the module docs).
    fn update_with(
        &self,
        key: u128,
        keep_for: Nanos,
        now: Nanos,
        f: &mut dyn FnMut(&mut BucketState),
    );
    /// A copy of the key's state, if tracked.
    fn get(&self, key: u128) -> Option<BucketState>;
    fn remove(&self, key: u128) -> bool;
    /// Drops entries idle past their keep time (the service calls it every few seconds).
    fn sweep(&self, now: Nanos);
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Entries dropped at capacity while their state still mattered (0 when the store cannot tell).
    fn lossy_evictions(&self) -> u64;
}

/// The engine's store: the built-in one, or an adapter's.
pub enum Buckets {
    Sharded(ShardedStore),
    Other(Box<dyn BucketStore>),
}

impl Buckets {
    pub fn sharded(capacity: u64, idle_ttl: Nanos) -> Buckets {
        Buckets::Sharded(ShardedStore::new(capacity, idle_ttl))
    }

    /// Runs `f` on the key's state (created fresh if absent), exclusively.
    #[inline]
    pub fn update<R>(
        &self,
        key: u128,
        keep_for: Nanos,
        now: Nanos,
        f: impl FnOnce(&mut BucketState) -> R,
    ) -> R {
        match self {
            Buckets::Sharded(s) => s.update(key, keep_for, now, f),
            Buckets::Other(s) => {
                let mut f = Some(f);
                let mut out = None;
                s.update_with(key, keep_for, now, &mut |state| {
                    if let Some(f) = f.take() {
                        out = Some(f(state));
                    }
                });
                out.expect("a bucket store runs the update exactly once")
            }
        }
    }

    pub fn get(&self, key: u128) -> Option<BucketState> {
        match self {
            Buckets::Sharded(s) => s.get(key),
            Buckets::Other(s) => s.get(key),
        }
    }

    pub fn remove(&self, key: u128) -> bool {
        match self {
            Buckets::Sharded(s) => BucketStore::remove(s, key),
            Buckets::Other(s) => s.remove(key),
        }
    }

    pub fn sweep(&self, now: Nanos) {
        match self {
            Buckets::Sharded(s) => BucketStore::sweep(s, now),
            Buckets::Other(s) => s.sweep(now),
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Buckets::Sharded(s) => BucketStore::len(s),
            Buckets::Other(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn lossy_evictions(&self) -> u64 {
        match self {
            Buckets::Sharded(s) => BucketStore::lossy_evictions(s),
            Buckets::Other(s) => s.lossy_evictions(),
        }
    }
}

// ---- sharded ----

/// Enough shards that two cores rarely meet on one lock, few enough that the lock array
/// (16 KiB) stays in cache.
const SHARDS: usize = 256;

/// One shard on its own cache line, so neighbouring shards' locks do not contend.
#[repr(align(64))]
struct Padded(Mutex<ProbeTable<Slot>>);

pub struct ShardedStore {
    shards: Box<[Padded]>,
    per_shard: usize,
    idle_ttl: Nanos,
    lossy: AtomicU64,
}

#[derive(Clone, Default)]
struct Slot {
    state: BucketState,
    last_used: Nanos,
    keep_for: Nanos,
}

impl Slot {
    fn expired(&self, now: Nanos) -> bool {
        now.saturating_sub(self.last_used) >= self.keep_for
    }
}

impl ShardedStore {
    pub fn new(capacity: u64, idle_ttl: Nanos) -> ShardedStore {
        ShardedStore {
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(ProbeTable::new())))
                .collect(),
            per_shard: (capacity as usize).div_ceil(SHARDS).max(1),
            idle_ttl,
            lossy: AtomicU64::new(0),
        }
    }

    #[inline]
    fn shard(&self, key: u128) -> &Mutex<ProbeTable<Slot>> {
        // The table probes by the low bits; the shard comes from the high bits.
        &self.shards[((key >> 64) as usize) & (SHARDS - 1)].0
    }

    #[inline]
    fn update<R>(
        &self,
        key: u128,
        keep_for: Nanos,
        now: Nanos,
        f: impl FnOnce(&mut BucketState) -> R,
    ) -> R {
        let keep_for = keep_for.max(self.idle_ttl);
        let mut map = self.shard(key).lock();
        if map.len() >= self.per_shard && !map.contains(key) {
            self.make_room(&mut map, now);
        }
        let slot = map.get_or_insert_with(key, || Slot {
            state: BucketState::Fresh,
            last_used: now,
            keep_for,
        });
        slot.last_used = slot.last_used.max(now);
        slot.keep_for = keep_for;
        f(&mut slot.state)
    }

    /// Frees at least one place: expired entries first, then the least recently used eighth.
    fn make_room(&self, map: &mut ProbeTable<Slot>, now: Nanos) {
        map.retain(|slot| !slot.expired(now));
        if map.len() < self.per_shard {
            return;
        }
        let mut ages: Vec<Nanos> = map.values().map(|s| s.last_used).collect();
        let cut = (ages.len() / 8).max(1);
        let (_, &mut threshold, _) = ages.select_nth_unstable(cut - 1);
        // Exactly `cut` entries go, even when many share the threshold time.
        let mut removed = 0;
        map.retain(|slot| {
            let evict = removed < cut && slot.last_used <= threshold;
            removed += evict as usize;
            !evict
        });
        self.lossy.fetch_add(removed as u64, Ordering::Relaxed);
    }

    fn get(&self, key: u128) -> Option<BucketState> {
        self.shard(key)
            .lock()
            .get(key)
            .map(|slot| slot.state.clone())
    }
}

impl BucketStore for ShardedStore {
    fn update_with(
        &self,
        key: u128,
        keep_for: Nanos,
        now: Nanos,
        f: &mut dyn FnMut(&mut BucketState),
    ) {
        self.update(key, keep_for, now, f)
    }

    fn get(&self, key: u128) -> Option<BucketState> {
        ShardedStore::get(self, key)
    }

    fn remove(&self, key: u128) -> bool {
        self.shard(key).lock().remove(key).is_some()
    }

    fn sweep(&self, now: Nanos) {
        for shard in self.shards.iter() {
            shard.0.lock().retain(|slot| !slot.expired(now));
        }
    }

    fn len(&self) -> u64 {
        self.shards.iter().map(|m| m.0.lock().len() as u64).sum()
    }

    fn lossy_evictions(&self) -> u64 {
        self.lossy.load(Ordering::Relaxed)
    }
}

/// Bucket keys are already uniform 128-bit hashes; hashing them again would only cost time.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyHasherBuilder;

#[derive(Default)]
pub struct KeyHasher(u64);

impl BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used for u128 keys; kept correct for any other input.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}
