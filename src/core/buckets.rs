//! Where bucket states live: one entry per (limit, descriptor values) key, bounded in number.
//!
//! Two stores behind one interface, chosen by configuration:
//! - `Moka`: a `moka::sync::Cache` of `Arc<Mutex<BucketState>>` with per-entry expiry; moka's
//!   TinyLFU evicts at capacity. Expiry follows the wall clock (moka's own), not `now`.
//! - `Sharded`: 256 mutex-guarded probe tables holding states inline; time is the caller's `now`,
//!   so expiry is exact in replays too. At capacity a shard first drops entries whose limit has
//!   fully recovered (losing nothing), then its least recently used eighth.
//!
//! Both keep an idle entry for at least `max(idle TTL, the time its limit needs to recover fully)`:
//! dropping a bucket before then would hand its key a fresh allowance. Entries are only lost
//! early under capacity pressure, and each such loss is counted (`lossy_evictions`).

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::bucket::BucketState;
use super::probe_table::ProbeTable;
use super::time::Nanos;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreKind {
    #[default]
    Moka,
    Sharded,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "moka" => Ok(StoreKind::Moka),
            "sharded" => Ok(StoreKind::Sharded),
            other => Err(format!(
                "unknown bucket store {other:?}: expected moka or sharded"
            )),
        }
    }
}

pub enum BucketStore {
    Moka(MokaStore),
    Sharded(ShardedStore),
}

impl BucketStore {
    pub fn new(kind: StoreKind, capacity: u64, idle_ttl: Duration) -> BucketStore {
        match kind {
            StoreKind::Moka => {
                BucketStore::Moka(MokaStore::new(capacity, idle_ttl.as_nanos() as Nanos))
            }
            StoreKind::Sharded => {
                BucketStore::Sharded(ShardedStore::new(capacity, idle_ttl.as_nanos() as Nanos))
            }
        }
    }

    /// Runs `f` on the key's state (created fresh if absent), exclusively. `keep_for` is how long
    /// the state matters after its last use (see the module docs).
    #[inline]
    pub fn update<R>(
        &self,
        key: u128,
        keep_for: Nanos,
        now: Nanos,
        f: impl FnOnce(&mut BucketState) -> R,
    ) -> R {
        match self {
            BucketStore::Moka(s) => s.update(key, keep_for, f),
            BucketStore::Sharded(s) => s.update(key, keep_for, now, f),
        }
    }

    /// A copy of the key's state, if tracked.
    pub fn get(&self, key: u128) -> Option<BucketState> {
        match self {
            BucketStore::Moka(s) => s.cache.get(&key).map(|b| b.state.lock().clone()),
            BucketStore::Sharded(s) => s.shard(key).lock().get(key).map(|slot| slot.state.clone()),
        }
    }

    pub fn remove(&self, key: u128) -> bool {
        match self {
            BucketStore::Moka(s) => s.cache.remove(&key).is_some(),
            BucketStore::Sharded(s) => s.shard(key).lock().remove(key).is_some(),
        }
    }

    /// Drops entries idle past their keep time. The sharded store needs this called now and then
    /// (the server does, every few seconds); moka expires entries itself.
    pub fn sweep(&self, now: Nanos) {
        match self {
            BucketStore::Moka(s) => s.cache.run_pending_tasks(),
            BucketStore::Sharded(s) => s.sweep(now),
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            BucketStore::Moka(s) => {
                s.cache.run_pending_tasks();
                s.cache.entry_count()
            }
            BucketStore::Sharded(s) => s.shards.iter().map(|m| m.0.lock().len() as u64).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries dropped at capacity while their state still mattered (sharded store only; moka
    /// does not say why it evicted).
    pub fn lossy_evictions(&self) -> u64 {
        match self {
            BucketStore::Moka(_) => 0,
            BucketStore::Sharded(s) => s.lossy.load(Ordering::Relaxed),
        }
    }
}

// ---- moka ----

pub struct MokaStore {
    cache: moka::sync::Cache<u128, Arc<MokaBucket>, KeyHasherBuilder>,
    idle_ttl: Nanos,
}

struct MokaBucket {
    state: Mutex<BucketState>,
    keep_for: Duration,
}

impl MokaStore {
    fn new(capacity: u64, idle_ttl: Nanos) -> MokaStore {
        MokaStore {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(MokaExpiry)
                .build_with_hasher(KeyHasherBuilder),
            idle_ttl,
        }
    }

    #[inline]
    fn update<R>(&self, key: u128, keep_for: Nanos, f: impl FnOnce(&mut BucketState) -> R) -> R {
        let bucket = self.cache.get_with(key, || {
            Arc::new(MokaBucket {
                state: Mutex::new(BucketState::Fresh),
                keep_for: Duration::from_nanos(keep_for.max(self.idle_ttl)),
            })
        });
        f(&mut bucket.state.lock())
    }
}

struct MokaExpiry;

impl moka::Expiry<u128, Arc<MokaBucket>> for MokaExpiry {
    fn expire_after_create(
        &self,
        _: &u128,
        value: &Arc<MokaBucket>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }

    fn expire_after_read(
        &self,
        _: &u128,
        value: &Arc<MokaBucket>,
        _: std::time::Instant,
        _: Option<Duration>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.keep_for)
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
    fn new(capacity: u64, idle_ttl: Nanos) -> ShardedStore {
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

    fn sweep(&self, now: Nanos) {
        for shard in self.shards.iter() {
            shard.0.lock().retain(|slot| !slot.expired(now));
        }
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
