//! Leases and reservation records on the shared counters: a lease key is a sorted set of its
//! holders' deadlines (`leases.lua`, on Redis's clock, so replicas' clocks cannot disagree on
//! an expiry); a reservation is a value with the reservation's own expiry, taken once
//! (`GETDEL`) by whichever replica settles it.
//!
//! Keys: `<prefix>:{lease:<id>}` and `<prefix>:{res:<id>}` (one key each: any Cluster slot).

use std::time::Duration;

use sluice_core::lease::Acquired;
use sluice_core::time::Nanos;

use super::{CountersError, RedisCounters};

pub const LEASES: &str = include_str!("leases.lua");

/// What `leases.lua` answered.
fn reply(r: &[i64]) -> Result<(bool, Nanos, u32), CountersError> {
    let [done, ms, holders] = r else {
        return Err(CountersError::ShortReply {
            got: r.len(),
            asked: 1,
        });
    };
    Ok((
        *done == 1,
        (*ms).max(0) as u64 * 1_000_000,
        (*holders).max(0) as u32,
    ))
}

fn millis(d: Nanos) -> u64 {
    d.div_ceil(1_000_000).max(1)
}

impl RedisCounters {
    fn lease_key(&self, key: u128) -> String {
        format!("{}:{{lease:{key:032x}}}", self.prefix)
    }

    fn reservation_key(&self, id: u128) -> String {
        format!("{}:{{res:{id:032x}}}", self.prefix)
    }

    async fn lease_script(
        &self,
        key: u128,
        mode: &str,
        id: u128,
        limit: u32,
        ttl: Nanos,
    ) -> Result<(bool, Nanos, u32), CountersError> {
        let mut invocation = self.leases.prepare_invoke();
        invocation
            .key(self.lease_key(key))
            .arg(mode)
            .arg(format!("{id:032x}"))
            .arg(limit)
            .arg(millis(ttl));
        let r: Vec<i64> = match &self.connection {
            super::Connection::Standalone(c) => invocation.invoke_async(&mut c.clone()).await?,
            super::Connection::Cluster(c) => invocation.invoke_async(&mut c.clone()).await?,
        };
        reply(&r)
    }

    /// Acquires lease `id` on `key` (see `sluice_core::lease::LeaseTable::acquire`); `now` only
    /// turns the answer's durations into this replica's deadlines.
    pub async fn acquire_lease(
        &self,
        key: u128,
        id: u128,
        limit: u32,
        ttl: Nanos,
        now: Nanos,
    ) -> Result<Acquired, CountersError> {
        let (granted, wait, holders) = self.lease_script(key, "a", id, limit, ttl).await?;
        Ok(if granted {
            Acquired::Granted {
                expires_at: now.saturating_add(wait),
                holders,
            }
        } else {
            Acquired::Full {
                holders,
                retry_after: wait,
            }
        })
    }

    /// Renews live lease `id` for `ttl`; whether it was live.
    pub async fn renew_lease(
        &self,
        key: u128,
        id: u128,
        ttl: Nanos,
    ) -> Result<bool, CountersError> {
        Ok(self.lease_script(key, "n", id, 1, ttl).await?.0)
    }

    /// Releases lease `id`; whether it was live.
    pub async fn release_lease(&self, key: u128, id: u128) -> Result<bool, CountersError> {
        Ok(self.lease_script(key, "r", id, 1, 1).await?.0)
    }

    /// Records reservation `id` (its charges, as JSON) until `ttl` has passed.
    pub async fn put_reservation(
        &self,
        id: u128,
        body: &str,
        ttl: Duration,
    ) -> Result<(), CountersError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.reservation_key(id))
            .arg(body)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        self.query::<()>(&cmd).await
    }

    /// Takes reservation `id` (once: a second take finds nothing); `None` when unknown,
    /// settled already or expired.
    pub async fn take_reservation(&self, id: u128) -> Result<Option<String>, CountersError> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.reservation_key(id));
        self.query(&cmd).await
    }
}
