//! The moka bucket store, and the choice between it and the core's sharded store.
//!
//! moka is a concurrent cache with TinyLFU admission and per-entry expiry. Its expiry follows the
//! wall clock (moka's own), which is why it lives here and not in the core: the core's
//! `ShardedStore` expires on the caller's `now`, which virtual-time replays need. Both keep a
//! bucket for `max(idle TTL, full recovery)` after its last use and pass the same engine
//! behaviour suite (`sluice_core::engine_suite`).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use sluice_core::bucket::BucketState;
use sluice_core::buckets::{BucketStore, Buckets, KeyHasherBuilder};
use sluice_core::engine::{Engine, EngineConfig};
use sluice_core::time::Nanos;

/// Which store holds bucket states (`--bucket-store`).
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

/// An engine on the chosen store, sized by `config`'s bucket capacity and idle TTL.
pub fn engine(config: EngineConfig, kind: StoreKind) -> Engine {
    match kind {
        StoreKind::Sharded => Engine::new(config),
        StoreKind::Moka => {
            let store = MokaStore::new(config.bucket_capacity, config.bucket_idle_ttl);
            Engine::with_store(config, Buckets::Other(Box::new(store)))
        }
    }
}

pub struct MokaStore {
    cache: moka::sync::Cache<u128, Arc<MokaBucket>, KeyHasherBuilder>,
    idle_ttl: Duration,
}

struct MokaBucket {
    state: Mutex<BucketState>,
    keep_for: Duration,
}

impl MokaStore {
    pub fn new(capacity: u64, idle_ttl: Duration) -> MokaStore {
        MokaStore {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(MokaExpiry)
                .build_with_hasher(KeyHasherBuilder),
            idle_ttl,
        }
    }
}

impl BucketStore for MokaStore {
    fn update_with(
        &self,
        key: u128,
        keep_for: Nanos,
        _now: Nanos,
        f: &mut dyn FnMut(&mut BucketState),
    ) {
        let bucket = self.cache.get_with(key, || {
            Arc::new(MokaBucket {
                state: Mutex::new(BucketState::Fresh),
                keep_for: Duration::from_nanos(keep_for).max(self.idle_ttl),
            })
        });
        f(&mut bucket.state.lock())
    }

    fn get(&self, key: u128) -> Option<BucketState> {
        self.cache.get(&key).map(|b| b.state.lock().clone())
    }

    fn remove(&self, key: u128) -> bool {
        self.cache.remove(&key).is_some()
    }

    /// moka expires entries itself; this runs its pending housekeeping.
    fn sweep(&self, _now: Nanos) {
        self.cache.run_pending_tasks();
    }

    fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// moka does not say why it evicted.
    fn lossy_evictions(&self) -> u64 {
        0
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

#[cfg(test)]
mod tests {
    fn moka(config: sluice_core::engine::EngineConfig) -> sluice_core::engine::Engine {
        super::engine(config, super::StoreKind::Moka)
    }

    sluice_core::engine_behaviour_suite!(moka);
}
