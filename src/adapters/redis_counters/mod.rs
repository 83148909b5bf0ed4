//! Bucket counters on Redis or Valkey, standalone or Cluster (redis-rs): one decision's bucket
//! operations run as one server-side script (`decide.lua`), on Redis's clock, a denied request
//! consuming nothing. Concurrent decisions share one multiplexed connection per node, so they
//! are pipelined rather than waiting for each other's round trips.
//!
//! Why redis-rs: it is the maintained client with async Cluster support (MOVED/ASK redirects and
//! topology refresh during resharding and failover are its job), script caching (EVALSHA with an
//! EVAL fallback) and a reconnecting multiplexed connection; fred would do too, but redis-rs
//! is the one Limitador uses, so its behaviour under failure is the better known.
//!
//! Cluster keys: `<prefix>:{<bucket id>}` — the hash tag is the bucket's id, so a key's slot
//! never depends on the prefix. One decision's keys can fall in different slots (a per-client
//! limit and a per-endpoint limit are shared with different other decisions, so no tag can put
//! every combination in one slot without putting everything there); each slot's share runs as
//! one script, and if an enforced limit in one slot denies, the hits taken in the others are
//! given back with a second script. No CROSSSLOT error can arise (Limitador #514).
//!
//! Not here: the time budget, the circuit breaker and the failure policy (`service::fleet`).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use sluice_core::bucket::{BucketState, Op, Outcome, SLIDING_SLOTS, SlidingRing};
use sluice_core::engine::{BucketOp, give_backs, refuses};
use sluice_core::limit::{Algorithm, Quota};
use sluice_core::time::Nanos;

/// Where the counters live: `redis://HOST:PORT/DB` or `redis+cluster://H1:P1,H2:P2,...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CountersUrl {
    Standalone(String),
    Cluster(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum CountersError {
    #[error("--counters {0:?}: {1}")]
    BadUrl(String, String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis answered {got} values for {asked} operations")]
    ShortReply { got: usize, asked: usize },
}

impl std::str::FromStr for CountersUrl {
    type Err = CountersError;
    fn from_str(text: &str) -> Result<Self, CountersError> {
        let bad = |why: &str| CountersError::BadUrl(text.to_string(), why.to_string());
        if let Some(rest) = text.strip_prefix("redis+cluster://") {
            let nodes: Vec<String> = rest
                .trim_end_matches('/')
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| format!("redis://{n}/"))
                .collect();
            if nodes.is_empty() {
                return Err(bad(
                    "a cluster URL names at least one node: redis+cluster://h1:p1,h2:p2",
                ));
            }
            for node in &nodes {
                redis::Client::open(node.as_str()).map_err(|e| bad(&e.to_string()))?;
            }
            Ok(CountersUrl::Cluster(nodes))
        } else if text.starts_with("rediss://") {
            Err(bad(
                "TLS to Redis (rediss://) is not built in: reach it over a private network or a TLS sidecar",
            ))
        } else if text.starts_with("redis://") {
            redis::Client::open(text).map_err(|e| bad(&e.to_string()))?;
            Ok(CountersUrl::Standalone(text.to_string()))
        } else {
            Err(bad(
                "expected redis://HOST:PORT[/DB] or redis+cluster://H1:P1,H2:P2,...",
            ))
        }
    }
}

#[derive(Clone)]
enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A connection to the counters (cheap to clone: clones share the multiplexed connections).
#[derive(Clone)]
pub struct RedisCounters {
    connection: Connection,
    script: std::sync::Arc<redis::Script>,
    sync: std::sync::Arc<redis::Script>,
    leases: std::sync::Arc<redis::Script>,
    prefix: String,
    /// Keys whose value was not a bucket state, reset by the scripts (`buckets.lua`).
    repaired: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.connection {
            Connection::Standalone(_) => "standalone",
            Connection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisCounters")
            .field("kind", &kind)
            .field("prefix", &self.prefix)
            .finish()
    }
}

const SCRIPT: &str = concat!(include_str!("buckets.lua"), include_str!("decide.lua"));
const SYNC: &str = concat!(include_str!("buckets.lua"), include_str!("sync.lua"));
/// CRC16 slots of Redis Cluster.
const CLUSTER_SLOTS: u16 = 16_384;

impl RedisCounters {
    /// Connects (the first connection must succeed; later ones reconnect on their own).
    /// `io_timeout`: the most one command may take before the connection gives up on it.
    pub async fn connect(
        url: &CountersUrl,
        prefix: &str,
        io_timeout: Duration,
    ) -> Result<RedisCounters, CountersError> {
        let connection = match url {
            CountersUrl::Standalone(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(io_timeout.max(Duration::from_millis(200)))
                    .set_response_timeout(io_timeout)
                    .set_number_of_retries(2)
                    .set_max_delay(500);
                Connection::Standalone(client.get_connection_manager_with_config(config).await?)
            }
            CountersUrl::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.clone())
                    .connection_timeout(io_timeout.max(Duration::from_millis(200)))
                    .response_timeout(io_timeout)
                    .retries(2)
                    .build()?;
                Connection::Cluster(client.get_async_connection().await?)
            }
        };
        Ok(RedisCounters {
            connection,
            script: std::sync::Arc::new(redis::Script::new(SCRIPT)),
            sync: std::sync::Arc::new(redis::Script::new(SYNC)),
            leases: std::sync::Arc::new(redis::Script::new(leases::LEASES)),
            prefix: prefix.to_string(),
            repaired: Default::default(),
        })
    }

    /// Keys found holding something other than a bucket state and reset, since start.
    pub fn repaired_keys(&self) -> u64 {
        self.repaired.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn note_repaired(&self, keys: u64) {
        if keys > 0 {
            self.repaired
                .fetch_add(keys, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                keys,
                "counters' keys held something other than a bucket state; reset to fresh buckets"
            );
        }
    }

    fn key(&self, id: u128) -> String {
        format!("{}:{{{}}}", self.prefix, tag(id))
    }

    /// Indexes of `keys` that can share one script: all of them on a standalone server, those
    /// in one slot on a Cluster (in slot order).
    fn groups(&self, keys: impl Iterator<Item = u128>) -> Vec<Vec<usize>> {
        match &self.connection {
            Connection::Standalone(_) => vec![(0..keys.count()).collect()],
            Connection::Cluster(_) => {
                let mut by_slot: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
                for (i, key) in keys.enumerate() {
                    by_slot
                        .entry(slot(tag(key).as_bytes()))
                        .or_default()
                        .push(i);
                }
                by_slot.into_values().collect()
            }
        }
    }

    /// Runs one decision's operations; `outcomes[i]` answers `ops[i]`. On a Cluster, one script
    /// per slot; an enforced denial in one slot gives back the hits the others took.
    pub async fn run(&self, ops: &[BucketOp]) -> Result<Vec<Outcome>, CountersError> {
        let groups = self.groups(ops.iter().map(|op| op.key));
        if groups.len() <= 1 {
            return self.run_group(ops).await;
        }
        let runs = groups.iter().map(|idx| {
            let group: Vec<BucketOp> = idx.iter().map(|&i| ops[i]).collect();
            async move { self.run_group(&group).await }
        });
        let answers = futures::future::try_join_all(runs).await?;
        let mut outcomes = vec![
            Outcome {
                allowed: true,
                remaining: 0,
                reset_after: 0,
                retry_after: 0
            };
            ops.len()
        ];
        for (idx, answer) in groups.iter().zip(answers) {
            for (&i, outcome) in idx.iter().zip(answer) {
                outcomes[i] = outcome;
            }
        }
        if refuses(ops, &outcomes) {
            let give_back = give_backs(ops, &outcomes);
            for op in give_back {
                self.run_group(std::slice::from_ref(&op)).await?;
            }
        }
        Ok(outcomes)
    }

    /// Operations whose keys share a slot (or any, standalone): one script.
    async fn run_group(&self, ops: &[BucketOp]) -> Result<Vec<Outcome>, CountersError> {
        let mut invocation = self.script.prepare_invoke();
        for op in ops {
            let (window_ms, calendar_start_ms) = window_args(&op.quota);
            invocation
                .key(self.key(op.key))
                .arg(algorithm_code(op.quota.algorithm))
                .arg(op.quota.limit)
                .arg(op.quota.capacity)
                .arg(window_ms)
                .arg(op.hits)
                .arg(match op.op {
                    Op::Consume => "c",
                    Op::Check => "k",
                    Op::Refund => "r",
                    Op::Add => "a",
                })
                .arg(if op.enforced { "1" } else { "0" })
                .arg((op.keep_for / 1_000_000).max(1_000))
                .arg(calendar_start_ms);
        }
        let reply: Vec<i64> = match &self.connection {
            Connection::Standalone(c) => invocation.invoke_async(&mut c.clone()).await?,
            Connection::Cluster(c) => invocation.invoke_async(&mut c.clone()).await?,
        };
        if reply.len() != ops.len() * 4 + 1 {
            return Err(CountersError::ShortReply {
                got: reply.len(),
                asked: ops.len(),
            });
        }
        self.note_repaired(reply[ops.len() * 4].max(0) as u64);
        let ms = |v: i64| (v.max(0) as u64).saturating_mul(1_000_000);
        Ok(reply
            .chunks_exact(4)
            .map(|r| Outcome {
                allowed: r[0] == 1,
                remaining: r[1].max(0) as u64,
                reset_after: ms(r[2]),
                retry_after: ms(r[3]),
            })
            .collect())
    }

    /// The cached mode's flush: adds `hits` to each bucket (admitted elsewhere already) and
    /// returns each one's global state, converted for this replica's clock (`local_now`).
    /// Buckets in several Cluster slots: one script per slot.
    pub async fn sync(
        &self,
        items: &[(BucketOp, u64)],
        local_now: Nanos,
    ) -> Result<Vec<Option<BucketState>>, CountersError> {
        let groups = self.groups(items.iter().map(|(op, _)| op.key));
        let mut states = vec![None; items.len()];
        for group in groups {
            let mut invocation = self.sync.prepare_invoke();
            for &i in &group {
                let (op, hits) = &items[i];
                let (window_ms, calendar_start_ms) = window_args(&op.quota);
                invocation
                    .key(self.key(op.key))
                    .arg(algorithm_code(op.quota.algorithm))
                    .arg(op.quota.limit)
                    .arg(op.quota.capacity)
                    .arg(window_ms)
                    .arg(*hits)
                    .arg((op.keep_for / 1_000_000).max(1_000))
                    .arg(calendar_start_ms);
            }
            let reply: Vec<String> = match &self.connection {
                Connection::Standalone(c) => invocation.invoke_async(&mut c.clone()).await?,
                Connection::Cluster(c) => invocation.invoke_async(&mut c.clone()).await?,
            };
            if reply.len() != group.len() + 2 {
                return Err(CountersError::ShortReply {
                    got: reply.len(),
                    asked: group.len(),
                });
            }
            let redis_now: i64 = reply[group.len()].parse().unwrap_or(0);
            self.note_repaired(reply[group.len() + 1].parse().unwrap_or(0));
            for (&i, text) in group.iter().zip(&reply) {
                let limit = items[i].0.quota.limit;
                states[i] = shared_state(text, redis_now, local_now, limit);
            }
        }
        Ok(states)
    }

    /// The hash where replicas publish what they enforce besides counters (`service::fleet_sync`).
    fn state_key(&self) -> String {
        format!("{}:{{fleet-state}}", self.prefix)
    }

    /// Publishes one replica's state (a JSON document) under its instance id.
    pub async fn put_state(&self, instance: &str, state: &str) -> Result<(), CountersError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.state_key()).arg(instance).arg(state);
        self.query::<()>(&cmd).await
    }

    /// Every replica's published state, by instance id.
    pub async fn states(&self) -> Result<Vec<(String, String)>, CountersError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.state_key());
        self.query(&cmd).await
    }

    /// Forgets replicas' states (gone replicas', once stale).
    pub async fn drop_states(&self, instances: &[String]) -> Result<(), CountersError> {
        if instances.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.state_key()).arg(instances);
        self.query::<()>(&cmd).await
    }

    /// The hash where replicas publish one minute's shared clients (`service::minute_exchange`).
    fn minute_key(&self, minute: i64) -> String {
        format!("{}:{{fleet-minute}}:{minute}", self.prefix)
    }

    /// Publishes this replica's share of `minute` (kept `keep` long: a late reader finds it).
    pub async fn put_minute(
        &self,
        minute: i64,
        instance: &str,
        share: &[u8],
        keep: std::time::Duration,
    ) -> Result<(), CountersError> {
        let key = self.minute_key(minute);
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(&key).arg(instance).arg(share).ignore();
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(keep.as_millis() as u64)
            .ignore();
        match &self.connection {
            Connection::Standalone(c) => pipe.query_async::<()>(&mut c.clone()).await?,
            Connection::Cluster(c) => pipe.query_async::<()>(&mut c.clone()).await?,
        }
        Ok(())
    }

    /// How many replicas have published their share of `minute`.
    pub async fn minute_publishers(&self, minute: i64) -> Result<u64, CountersError> {
        let mut cmd = redis::cmd("HLEN");
        cmd.arg(self.minute_key(minute));
        self.query(&cmd).await
    }

    /// Every replica's share of `minute`, by instance id.
    pub async fn minute_shares(
        &self,
        minute: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, CountersError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.minute_key(minute));
        self.query(&cmd).await
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, CountersError> {
        Ok(match &self.connection {
            Connection::Standalone(c) => cmd.query_async(&mut c.clone()).await?,
            Connection::Cluster(c) => cmd.query_async(&mut c.clone()).await?,
        })
    }

    /// Deletes these buckets' states (a client reset, fleet-wide); returns how many existed.
    pub async fn delete(&self, ids: &[u128]) -> Result<u64, CountersError> {
        let mut deleted = 0;
        // One key a command: on a Cluster the keys lie in different slots.
        for &id in ids {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.key(id));
            deleted += self.query::<u64>(&cmd).await?;
        }
        Ok(deleted)
    }

    /// Round trip to the store (readiness and health).
    pub async fn ping(&self) -> Result<(), CountersError> {
        self.query::<()>(&redis::cmd("PING")).await
    }
}

/// The window the scripts count in, in milliseconds, and where a calendar window starts (0:
/// windows aligned to the epoch). A calendar window is this replica's view of the zone's
/// calendar: replicas' clocks differ by milliseconds, months by days.
fn window_args(quota: &Quota) -> (u64, u64) {
    match quota.calendar {
        Some(zone) if quota.algorithm == Algorithm::FixedWindow => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let (start, end) = sluice_core::calendar::window(zone, quota.unit, now);
            ((end - start) / 1_000_000, start / 1_000_000)
        }
        _ => (quota.window_seconds().saturating_mul(1_000), 0),
    }
}

fn algorithm_code(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::TokenBucket => "t",
        Algorithm::FixedWindow => "f",
        Algorithm::SlidingWindow => "s",
        Algorithm::Gcra => "g",
    }
}

/// A state string of `buckets.lua` as the core's `BucketState`, on this replica's clock: token
/// credit is in token x window units either way (milliseconds there, nanoseconds here, so × 10^6);
/// GCRA's arrival time is kept as how far ahead of Redis's clock it was;
/// the refill instant is moved by the clocks' difference; windows and slots are epoch-aligned.
/// A token debt (negative credit, hits admitted beyond it) is no credit until the refill at
/// `limit` per millisecond has repaid it: the refill instant moves that far ahead.
fn shared_state(
    text: &str,
    redis_now_ms: i64,
    local_now: Nanos,
    limit: u64,
) -> Option<BucketState> {
    const NS: u128 = 1_000_000;
    let mut parts = text.split(' ');
    let kind = parts.next()?;
    if kind == "t" {
        let numbers: Vec<i64> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
        let [credit, last] = numbers.as_slice() else {
            return None;
        };
        let age_ns = (redis_now_ms.max(0) as u64).saturating_sub((*last).max(0) as u64) * 1_000_000;
        let last = local_now.saturating_sub(age_ns);
        return Some(if *credit >= 0 {
            BucketState::Token {
                credit: *credit as u128 * NS,
                last,
            }
        } else {
            let repaid_in_ns = (credit.unsigned_abs() / limit.max(1)).saturating_mul(1_000_000);
            BucketState::Token {
                credit: 0,
                last: last.saturating_add(repaid_in_ns),
            }
        });
    }
    if kind == "g" {
        // GCRA's arrival time in microseconds on Redis's clock: kept as how far ahead of now.
        let [tat_us] = parts.collect::<Vec<_>>().as_slice().try_into().ok()?;
        let tat_us: i64 = tat_us.parse().ok()?;
        let ahead_us = tat_us
            .saturating_sub(redis_now_ms.saturating_mul(1_000))
            .max(0) as u64;
        return Some(BucketState::Gcra {
            tat: local_now.saturating_add(ahead_us.saturating_mul(1_000)),
        });
    }
    let numbers: Vec<u64> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
    match (kind, numbers.as_slice()) {
        ("f", [start, count]) => Some(BucketState::Fixed {
            window_start: start.saturating_mul(1_000_000),
            count: *count,
        }),
        ("s", [newest, counts @ ..]) if counts.len() == SLIDING_SLOTS as usize + 1 => {
            let mut ring = [0; SLIDING_SLOTS as usize + 1];
            ring.copy_from_slice(counts);
            Some(BucketState::Sliding(Box::new(SlidingRing::from_parts(
                *newest, ring,
            ))))
        }
        _ => None,
    }
}

/// A bucket's hash tag: its id, so its slot never depends on the prefix.
fn tag(id: u128) -> String {
    format!("{id:032x}")
}

/// A key's Redis Cluster slot (CRC16/XMODEM of the key, or of its hash tag).
fn slot(tag: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag) % CLUSTER_SLOTS
}

mod leases;

#[cfg(test)]
mod tests;
