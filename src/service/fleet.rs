//! Decisions on counters shared by a fleet (`--counters`): each decision's bucket operations go
//! to Redis within a time budget; when Redis is slow or down, the configured policy answers
//! instead (allow, deny, or this replica's own buckets at a share of each limit), and a circuit
//! breaker stops paying the budget on every request while Redis stays down. Every fallback is
//! counted; recovery is automatic (the breaker lets one probe through after its cool-down).
//!
//! Not here: the bucket arithmetic (the core's, and `decide.lua` on Redis) or the connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use sluice_core::bucket::{Op, Outcome};
use sluice_core::engine::{BucketOp, DescriptorInput, Engine, Prepared, Subject, Verdict};
use sluice_core::time::Nanos;

use crate::adapters::redis_counters::{CountersError, RedisCounters};
use crate::service::readiness::Readiness;

/// What a decision does when the shared counters cannot answer within the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Admit (availability first: a limiter outage is not an API outage).
    Allow,
    /// Refuse what would consume (protection first).
    Deny,
    /// This replica's own buckets, each limit divided by the expected replicas.
    #[default]
    Local,
}

impl std::str::FromStr for FailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(FailurePolicy::Allow),
            "deny" => Ok(FailurePolicy::Deny),
            "local" => Ok(FailurePolicy::Local),
            other => Err(format!(
                "unknown failure policy {other:?}: expected allow, deny or local"
            )),
        }
    }
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Allow => "allow",
            FailurePolicy::Deny => "deny",
            FailurePolicy::Local => "local",
        }
    }
}

/// How decisions use the shared counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CountersMode {
    /// Every decision's buckets are updated on Redis before it is answered: never over the limit.
    #[default]
    Exact,
    /// Decisions are answered at once from local buckets; hits are flushed to Redis every
    /// `flush` and the global state read back. Over-admission is bounded (README).
    Cached,
}

impl std::str::FromStr for CountersMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(CountersMode::Exact),
            "cached" => Ok(CountersMode::Cached),
            other => Err(format!(
                "unknown counters mode {other:?}: expected exact or cached"
            )),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct FleetConfig {
    pub mode: CountersMode,
    /// Cached mode: how often admitted hits are flushed and the global state read back.
    pub flush: Duration,
    /// The most a decision waits for Redis.
    pub budget: Duration,
    pub policy: FailurePolicy,
    /// Replicas expected to share the limits: the `local` policy enforces `limit / replicas`.
    pub replicas: u64,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker skips Redis before one probe is let through.
    pub breaker_cooldown: Duration,
}

/// Counts what the fleet path did, for health and telemetry.
#[derive(Debug, Default)]
pub struct FleetStats {
    pub shared: AtomicU64,
    pub fallbacks: AtomicU64,
    pub timeouts: AtomicU64,
    pub errors: AtomicU64,
    pub breaker_opened: AtomicU64,
    /// Cached mode: decisions answered from local buckets, flushes, and hits dropped because
    /// too many keys waited for a flush while Redis was unreachable.
    pub cached: AtomicU64,
    pub flushes: AtomicU64,
    pub dropped_hits: AtomicU64,
}

/// Keys waiting for a flush at most (while Redis is down they accumulate).
const MAX_PENDING_KEYS: usize = 100_000;
/// Buckets per flush script.
const FLUSH_CHUNK: usize = 256;
/// The longest a flush script is waited for.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Closed: Redis is asked. Open until `until`: it is not; then one probe is let through.
#[derive(Debug)]
struct Breaker {
    failures: AtomicU64,
    open_until: Mutex<Option<Instant>>,
    probing: AtomicBool,
}

impl Breaker {
    fn new() -> Breaker {
        Breaker {
            failures: AtomicU64::new(0),
            open_until: Mutex::new(None),
            probing: AtomicBool::new(false),
        }
    }

    /// Whether this decision may ask Redis (and, when the breaker is half-open, is the probe).
    fn admit(&self) -> bool {
        let open = *self.open_until.lock();
        match open {
            None => true,
            Some(until) if Instant::now() < until => false,
            // Half-open: one probe at a time.
            Some(_) => !self.probing.swap(true, Ordering::AcqRel),
        }
    }

    /// Returns true when this success closed the breaker.
    fn success(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        let closed = self.open_until.lock().take().is_some();
        if closed {
            tracing::info!("shared counters answer again; breaker closed");
        }
        self.probing.store(false, Ordering::Release);
        closed
    }

    /// Returns true when this failure opened the breaker.
    fn failure(&self, config: &FleetConfig) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        if failures >= config.breaker_failures as u64 || was_probe {
            let mut open = self.open_until.lock();
            let opened = open.is_none();
            *open = Some(Instant::now() + config.breaker_cooldown);
            return opened;
        }
        false
    }

    fn is_open(&self) -> bool {
        self.open_until.lock().is_some()
    }
}

pub struct Fleet {
    counters: RedisCounters,
    config: FleetConfig,
    breaker: Breaker,
    readiness: Readiness,
    /// Cached mode: hits admitted locally since the last flush, by bucket.
    pending: Mutex<FxHashMap<u128, (BucketOp, u64)>>,
    pub stats: FleetStats,
}

impl Fleet {
    pub fn new(counters: RedisCounters, config: FleetConfig, readiness: Readiness) -> Fleet {
        readiness.shared_counters(true);
        Fleet {
            counters,
            config,
            breaker: Breaker::new(),
            readiness,
            pending: Mutex::new(FxHashMap::default()),
            stats: FleetStats::default(),
        }
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// The breaker is open: decisions follow the failure policy without asking Redis.
    pub fn degraded(&self) -> bool {
        self.breaker.is_open()
    }

    pub fn counters(&self) -> &RedisCounters {
        &self.counters
    }

    /// Envoy RLS on the shared counters.
    pub async fn check_descriptors(
        &self,
        engine: &Engine,
        domain: &str,
        inputs: &[DescriptorInput<'_>],
        now: Nanos,
    ) -> Verdict {
        let prepared = engine.prepare_descriptors(domain, inputs, now);
        let outcomes = self.settle(engine, &prepared, now).await;
        engine.conclude(&Engine::descriptor_caller(inputs), prepared, &outcomes, now)
    }

    /// `ShouldAllow` on the shared counters.
    pub async fn should_allow(
        &self,
        engine: &Engine,
        domain: &str,
        subject: &Subject<'_>,
        cost: u64,
        now: Nanos,
    ) -> Verdict {
        let prepared = engine.prepare_allow(domain, subject, cost, now);
        let outcomes = self.settle(engine, &prepared, now).await;
        engine.conclude(subject, prepared, &outcomes, now)
    }

    async fn settle(&self, engine: &Engine, prepared: &Prepared, now: Nanos) -> Vec<Outcome> {
        if prepared.is_blocked() || prepared.ops().len() == 0 {
            return Vec::new();
        }
        let ops: Vec<BucketOp> = prepared.ops().collect();
        if self.config.mode == CountersMode::Cached {
            return self.settle_cached(engine, prepared, &ops, now);
        }
        if self.breaker.admit() {
            let call = self.counters.run(&ops);
            if let Some(outcomes) = self
                .ask(self.config.budget, call, "no answer within the budget")
                .await
            {
                self.stats.shared.fetch_add(1, Ordering::Relaxed);
                return outcomes;
            }
        }
        self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        match self.config.policy {
            FailurePolicy::Local => engine.settle_locally(prepared, self.config.replicas, now),
            FailurePolicy::Allow => ops.iter().map(|_| allowed()).collect(),
            FailurePolicy::Deny => ops
                .iter()
                .map(|op| {
                    if op.op == Op::Consume && op.hits > 0 {
                        denied(op)
                    } else {
                        allowed()
                    }
                })
                .collect(),
        }
    }

    /// Cached mode: local buckets answer; what they admitted waits for the next flush.
    fn settle_cached(
        &self,
        engine: &Engine,
        prepared: &Prepared,
        ops: &[BucketOp],
        now: Nanos,
    ) -> Vec<Outcome> {
        let outcomes = engine.settle_locally(prepared, 1, now);
        self.stats.cached.fetch_add(1, Ordering::Relaxed);
        let denied = ops
            .iter()
            .zip(&outcomes)
            .any(|(op, o)| op.enforced && op.op == Op::Consume && !o.allowed);
        if !denied {
            let mut pending = self.pending.lock();
            for (op, outcome) in ops.iter().zip(&outcomes) {
                if op.op != Op::Consume || !outcome.allowed || op.hits == 0 {
                    continue;
                }
                if pending.len() >= MAX_PENDING_KEYS && !pending.contains_key(&op.key) {
                    self.stats
                        .dropped_hits
                        .fetch_add(op.hits, Ordering::Relaxed);
                    continue;
                }
                pending.entry(op.key).or_insert((*op, 0)).1 += op.hits;
            }
        }
        outcomes
    }

    /// Cached mode: sends the hits admitted since the last flush and adopts the global states,
    /// in scripts of at most `FLUSH_CHUNK` buckets (one script holds Redis for its whole run:
    /// thousands of keys in one would stall every other replica's calls). A chunk that fails
    /// puts its hits and the rest back for the next flush; a chunk that timed out may have run
    /// on Redis, and its hits are then counted twice (conservative). The wait per chunk is long
    /// (`FLUSH_WAIT`): giving up early on a script that still runs would count it again and again.
    pub async fn flush(&self, engine: &Engine, now: Nanos) {
        let batch: Vec<(BucketOp, u64)> = std::mem::take(&mut *self.pending.lock())
            .into_values()
            .collect();
        for (i, chunk) in batch.chunks(FLUSH_CHUNK).enumerate() {
            let call = self.counters.sync(chunk, now);
            let Some(states) = self
                .ask(FLUSH_WAIT, call, "no answer to a flush in time")
                .await
            else {
                self.put_back(&batch[i * FLUSH_CHUNK..]);
                return;
            };
            self.stats.flushes.fetch_add(1, Ordering::Relaxed);
            let pending = self.pending.lock();
            for ((op, _), state) in chunk.iter().zip(states) {
                if let Some(state) = state {
                    let since = pending.get(&op.key).map_or(0, |p| p.1);
                    engine.adopt_shared(op, state, since, now);
                }
            }
        }
    }

    /// One call to the counters within `wait`: its answer, with the breaker told; or `None`,
    /// with the error or the timeout (`late`) counted and the breaker told.
    async fn ask<T>(
        &self,
        wait: Duration,
        call: impl std::future::Future<Output = Result<T, CountersError>>,
        late: &str,
    ) -> Option<T> {
        match tokio::time::timeout(wait, call).await {
            Ok(Ok(answer)) => {
                if self.breaker.success() {
                    self.readiness.shared_counters(true);
                }
                Some(answer)
            }
            Ok(Err(error)) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.note_failure(&error.to_string());
                None
            }
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                self.note_failure(late);
                None
            }
        }
    }

    fn put_back(&self, hits: &[(BucketOp, u64)]) {
        let mut pending = self.pending.lock();
        for &(op, n) in hits {
            if pending.len() >= MAX_PENDING_KEYS && !pending.contains_key(&op.key) {
                self.stats.dropped_hits.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            pending.entry(op.key).or_insert((op, 0)).1 += n;
        }
    }

    fn note_failure(&self, why: &str) {
        if self.breaker.failure(&self.config) {
            self.stats.breaker_opened.fetch_add(1, Ordering::Relaxed);
            self.readiness.shared_counters(false);
            tracing::warn!(
                why,
                policy = self.config.policy.as_str(),
                cooldown_ms = self.config.breaker_cooldown.as_millis() as u64,
                "shared counters unavailable; breaker open, decisions follow the failure policy"
            );
        }
    }
}

fn allowed() -> Outcome {
    Outcome {
        allowed: true,
        remaining: 0,
        reset_after: 0,
        retry_after: 0,
    }
}

/// A refusal while the counters are out of reach: retry after a second (when the breaker will
/// have probed again or the next replica may answer).
fn denied(_op: &BucketOp) -> Outcome {
    Outcome {
        allowed: false,
        remaining: 0,
        reset_after: 1_000_000_000,
        retry_after: 1_000_000_000,
    }
}

/// Cached mode: flushes every `flush` until shutdown, then once more (what was admitted before
/// shutdown reaches the shared counters).
pub async fn flush_loop(
    fleet: std::sync::Arc<Fleet>,
    engine: std::sync::Arc<Engine>,
    clock: crate::service::clock::LiveClock,
    mut shutdown: crate::service::shutdown::Shutdown,
) {
    loop {
        let running = shutdown.sleep(fleet.config.flush).await;
        fleet.flush(&engine, clock.now()).await;
        if !running {
            return;
        }
    }
}
