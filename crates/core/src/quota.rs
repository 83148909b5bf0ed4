//! The quota board of Envoy's Rate Limit Quota Service (RLQS): which Envoys (streams) report
//! which buckets, how much each wants, and each one's share of a bucket's quota. Instead of a
//! call per request, each Envoy enforces the assignment it was last given and reports its usage;
//! the board divides the bucket's quota among the Envoys reporting it, in proportion to their
//! recent demand, with a floor for each (an Envoy whose demand is low still gets some).
//!
//! Bounded whatever the reports: at most `max_buckets` buckets and `max_reporters` Envoys a
//! bucket (a report past them is refused with a clear error and changes nothing); silent
//! Envoys stop counting after `stale` and are swept.
//!
//! Not here: what the bucket's quota is (`Engine::bucket_quota`: rules, actions, cut), the
//! stream itself (the gRPC edge). Time is passed in.

use rustc_hash::FxHashMap;

use crate::engine::BucketQuota;
use crate::limit::Unit;
use crate::time::{NANOS_PER_SEC, Nanos};

/// An Envoy's stream, numbered by the server.
pub type StreamId = u64;

#[derive(Clone, Debug)]
pub struct QuotaConfig {
    /// Distinct buckets held at most (all streams together).
    pub max_buckets: usize,
    /// Envoys one bucket is divided among at most.
    pub max_reporters: usize,
    /// An Envoy silent this long (or three of its own report intervals, if longer) no longer
    /// takes a share, and is swept.
    pub stale: Nanos,
    /// Each Envoy's floor, as a share of an even division (0.2: at least a fifth of
    /// `quota / n`).
    pub floor_share: f64,
    /// How fast demand follows reports: the demand of this long ago weighs half (an Envoy
    /// reporting every 5 s has its share follow a shift four fifths of the way in one report).
    pub half_life: Nanos,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            max_buckets: 10_000,
            max_reporters: 64,
            stale: 30 * NANOS_PER_SEC,
            floor_share: 0.2,
            half_life: 2 * NANOS_PER_SEC,
        }
    }
}

/// A bucket: a domain and its entries, sorted by key (a bucket id is an order-free map).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BucketKey {
    pub domain: String,
    pub entries: Vec<(String, String)>,
}

impl BucketKey {
    pub fn new(domain: &str, entries: impl IntoIterator<Item = (String, String)>) -> BucketKey {
        let mut entries: Vec<(String, String)> = entries.into_iter().collect();
        entries.sort();
        BucketKey {
            domain: domain.to_string(),
            entries,
        }
    }

    /// The entries as the engine matches them.
    pub fn fields(&self) -> Vec<(&str, &str)> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuotaError {
    #[error("too many quota buckets: at most {max} are held; this report's new bucket is refused")]
    TooManyBuckets { max: usize },
    #[error("too many Envoys report this bucket: at most {max}")]
    TooManyReporters { max: usize },
}

/// What an Envoy is told to do with a bucket.
#[derive(Clone, Debug, PartialEq)]
pub enum Assignment {
    /// Admit `requests` per `unit`; `reason` says why this much (`share`, `cut`, `throttled`).
    Quota {
        requests: u64,
        unit: Unit,
        reason: &'static str,
    },
    /// Deny every request: the bucket's client is blocked.
    DenyAll,
    /// No rule covers the bucket: stop reporting it.
    Abandon,
}

impl Assignment {
    /// The reason as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Assignment::Quota { reason, .. } => reason,
            Assignment::DenyAll => "blocked",
            Assignment::Abandon => "uncovered",
        }
    }
}

#[derive(Clone, Debug)]
struct Reporter {
    stream: StreamId,
    /// Requests a second, decayed.
    demand: f64,
    last: Nanos,
    /// How long its last report covered.
    interval: Nanos,
    /// The share last given, and the bucket's total it was a share of.
    granted: Option<(u64, u64)>,
}

impl Reporter {
    /// Heard from recently: within `stale`, or three of its own report intervals.
    fn alive(&self, now: Nanos, stale: Nanos) -> bool {
        now.saturating_sub(self.last) < stale.max(self.interval.saturating_mul(3))
    }
}

#[derive(Clone, Debug)]
struct Bucket {
    key: BucketKey,
    reporters: Vec<Reporter>,
}

/// The board.
#[derive(Debug, Default)]
pub struct QuotaBoard {
    config: QuotaConfig,
    buckets: FxHashMap<BucketKey, Bucket>,
    /// The demand of the Envoys reporting each bucket to the other replicas of a fleet (shared
    /// counters): a bucket's quota is divided among all of them.
    remote: FxHashMap<BucketKey, Vec<f64>>,
}

/// The longest report interval taken into account (a report may claim any).
const MAX_INTERVAL: Nanos = 600 * NANOS_PER_SEC;

/// Most buckets whose demand one replica shares with the fleet (the busiest).
pub const MAX_SHARED_BUCKETS: usize = 2_000;

impl QuotaBoard {
    pub fn new(config: QuotaConfig) -> QuotaBoard {
        QuotaBoard {
            config,
            buckets: FxHashMap::default(),
            remote: FxHashMap::default(),
        }
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// `stream` saw `requests` (allowed and denied) on `key` over `elapsed`: its demand is
    /// updated (and the bucket subscribed on its first report).
    pub fn report(
        &mut self,
        stream: StreamId,
        key: &BucketKey,
        requests: u64,
        elapsed: Nanos,
        now: Nanos,
    ) -> Result<(), QuotaError> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.config.max_buckets {
            return Err(QuotaError::TooManyBuckets {
                max: self.config.max_buckets,
            });
        }
        let max_reporters = self.config.max_reporters;
        let half_life = self.config.half_life.max(1) as f64;
        let bucket = self.buckets.entry(key.clone()).or_insert_with(|| Bucket {
            key: key.clone(),
            reporters: Vec::new(),
        });
        // A report covers at least a millisecond (Envoy's first may say zero).
        let seconds =
            (elapsed.max(NANOS_PER_SEC / 1_000) as f64 / NANOS_PER_SEC as f64).min(3_600.0);
        let sample = requests as f64 / seconds;
        let full = bucket.reporters.len() >= max_reporters;
        match bucket.reporters.iter_mut().find(|r| r.stream == stream) {
            Some(r) => {
                let weight = 1.0 - 0.5f64.powf(now.saturating_sub(r.last) as f64 / half_life);
                r.demand += weight.clamp(0.0, 1.0) * (sample - r.demand);
                r.last = now.max(r.last);
                r.interval = elapsed.min(MAX_INTERVAL);
            }
            None if full => {
                return Err(QuotaError::TooManyReporters { max: max_reporters });
            }
            None => bucket.reporters.push(Reporter {
                stream,
                demand: sample,
                last: now,
                interval: elapsed.min(MAX_INTERVAL),
                granted: None,
            }),
        }
        Ok(())
    }

    /// `stream`'s share of `total` for `key`: a floor each, the rest in proportion to demand,
    /// among the Envoys heard from within `stale` (`stream` always among them), here and on
    /// the fleet's other replicas. The shares of all of them add up to at most `total`.
    pub fn share(&self, key: &BucketKey, stream: StreamId, total: u64, now: Nanos) -> u64 {
        let Some(bucket) = self.buckets.get(key) else {
            return total;
        };
        let own = bucket
            .reporters
            .iter()
            .find(|r| r.stream == stream)
            .map_or(0.0, |r| r.demand);
        self.divide(bucket, stream, total, now)(own)
    }

    /// The division of `total` among `bucket`'s Envoys (local ones alive, `stream` always, and
    /// the remote ones): a function from one Envoy's demand to its share.
    fn divide(
        &self,
        bucket: &Bucket,
        stream: StreamId,
        total: u64,
        now: Nanos,
    ) -> impl Fn(f64) -> u64 + use<> {
        let mut demands: Vec<f64> = bucket
            .reporters
            .iter()
            .filter(|r| r.stream == stream || r.alive(now, self.config.stale))
            .map(|r| r.demand.max(0.0))
            .collect();
        if let Some(remote) = self.remote.get(&bucket.key) {
            demands.extend(remote.iter().map(|d| d.max(0.0)));
        }
        let n = demands.len().max(1) as u64;
        let floor = ((total as f64 * self.config.floor_share) / n as f64).floor() as u64;
        let rest = total.saturating_sub(floor * n);
        let sum: f64 = demands.iter().sum();
        move |demand: f64| {
            let extra = if sum > 0.0 {
                (rest as f64 * demand.max(0.0) / sum).floor() as u64
            } else {
                rest / n
            };
            floor + extra.min(rest)
        }
    }

    /// The demand of each bucket's Envoys alive here, for the other replicas (the busiest
    /// [`MAX_SHARED_BUCKETS`] buckets).
    pub fn local_demand(&self, now: Nanos) -> Vec<(BucketKey, Vec<f64>)> {
        let mut all: Vec<(BucketKey, Vec<f64>)> = self
            .buckets
            .values()
            .map(|b| {
                let demands = b
                    .reporters
                    .iter()
                    .filter(|r| r.alive(now, self.config.stale))
                    .map(|r| r.demand.max(0.0))
                    .collect::<Vec<f64>>();
                (b.key.clone(), demands)
            })
            .filter(|(_, d)| !d.is_empty())
            .collect();
        if all.len() > MAX_SHARED_BUCKETS {
            let busy = |d: &Vec<f64>| d.iter().sum::<f64>();
            all.sort_by(|a, b| busy(&b.1).total_cmp(&busy(&a.1)));
            all.truncate(MAX_SHARED_BUCKETS);
        }
        all
    }

    /// The other replicas' Envoys' demand, replacing what was known (each of at most
    /// `max_reporters` Envoys a bucket, and only for buckets reported here: a bucket nobody
    /// here reports needs no division here).
    pub fn set_remote(&mut self, remote: impl IntoIterator<Item = (BucketKey, Vec<f64>)>) {
        let mut merged: FxHashMap<BucketKey, Vec<f64>> = FxHashMap::default();
        for (key, demands) in remote {
            if !self.buckets.contains_key(&key) {
                continue;
            }
            let entry = merged.entry(key).or_default();
            let room = self.config.max_reporters.saturating_sub(entry.len());
            entry.extend(demands.into_iter().filter(|d| d.is_finite()).take(room));
        }
        self.remote = merged;
    }

    /// `stream`'s share of `total` for `key`, never more than what the other Envoys' last
    /// shares of the same total leave: what is given out adds up to at most `total` at every
    /// moment, so an Envoy joining a bucket gets its fair share only as the others' shrink
    /// (their next assignment, within a second), and its first may be less. Recorded.
    fn grant(&mut self, key: &BucketKey, stream: StreamId, total: u64, now: Nanos) -> u64 {
        let stale = self.config.stale;
        let Some(bucket) = self.buckets.get(key) else {
            return total;
        };
        // One division serves this Envoy's fair share and the other replicas' Envoys, counted at
        // their fair shares (what their replicas give them, from the same demands).
        let share_of = self.divide(bucket, stream, total, now);
        let own = bucket
            .reporters
            .iter()
            .find(|r| r.stream == stream)
            .map_or(0.0, |r| r.demand);
        let fair = share_of(own);
        let remote: u64 = self
            .remote
            .get(key)
            .map_or(0, |demands| demands.iter().map(|&d| share_of(d)).sum());
        let Some(bucket) = self.buckets.get_mut(key) else {
            return fair;
        };
        let others: u64 = remote
            + bucket
                .reporters
                .iter()
                .filter(|r| r.stream != stream && r.alive(now, stale))
                .filter_map(|r| r.granted.filter(|&(_, of)| of == total).map(|(g, _)| g))
                .sum::<u64>();
        let given = fair.min(total.saturating_sub(others));
        if let Some(r) = bucket.reporters.iter_mut().find(|r| r.stream == stream) {
            r.granted = Some((given, total));
        }
        given
    }

    /// What `stream` is told for `key`, the engine having said `quota` of it (the share given
    /// is recorded: see [`QuotaBoard::grant`]).
    pub fn assign(
        &mut self,
        key: &BucketKey,
        stream: StreamId,
        quota: &BucketQuota,
        now: Nanos,
    ) -> Assignment {
        match quota {
            BucketQuota::Uncovered => Assignment::Abandon,
            BucketQuota::Blocked { .. } => Assignment::DenyAll,
            BucketQuota::Limit {
                limit,
                unit,
                cut,
                throttle,
                ..
            } => {
                let per_minute = |n: u64, unit: Unit| n as f64 * 60.0 / unit.seconds() as f64;
                let (total, unit, reason) = match throttle {
                    Some(t) if (*t as f64) < per_minute(*limit, *unit) => {
                        (*t, Unit::Minute, "throttled")
                    }
                    _ if *cut => (*limit, *unit, "cut"),
                    _ => (*limit, *unit, "share"),
                };
                Assignment::Quota {
                    requests: self.grant(key, stream, total, now),
                    unit,
                    reason,
                }
            }
        }
    }

    /// The buckets `stream` reports.
    pub fn buckets_of(&self, stream: StreamId) -> Vec<BucketKey> {
        self.buckets
            .values()
            .filter(|b| b.reporters.iter().any(|r| r.stream == stream))
            .map(|b| b.key.clone())
            .collect()
    }

    /// `stream` closed: it takes no share any more.
    pub fn forget_stream(&mut self, stream: StreamId) {
        for bucket in self.buckets.values_mut() {
            bucket.reporters.retain(|r| r.stream != stream);
        }
        self.buckets.retain(|_, b| !b.reporters.is_empty());
    }

    /// Drops Envoys silent for `stale` and buckets nobody reports.
    pub fn sweep(&mut self, now: Nanos) {
        let stale = self.config.stale;
        for bucket in self.buckets.values_mut() {
            bucket.reporters.retain(|r| r.alive(now, stale));
        }
        self.buckets.retain(|_, b| !b.reporters.is_empty());
    }
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;
