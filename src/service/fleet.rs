//! Decisions on counters shared by a fleet (`--counters`): each decision's bucket operations go
//! to Redis within a time budget; when Redis is slow or down, the configured policy answers
//! instead (allow, deny, or this replica's own buckets at a share of each limit), and a circuit
//! breaker stops paying the budget on every request while Redis stays down. Every fallback is
//! counted; recovery is automatic (the breaker lets one probe through after its cool-down).
//!
//! Exact mode never admits what the counters did not count while Redis is alive: a decision
//! that misses its budget is refused (under `allow`: admitted) at once, and its script, still
//! on its way, is awaited (`late`): hits it counted for a refused decision are given back,
//! hits admitted that it did not count are added. What the policy admits while the breaker
//! is open is added to the counters as soon as they answer again (`flush_loop`).
//!
//! Not here: the bucket arithmetic (the core's, and `decide.lua` on Redis) or the connection.

#[path = "fleet_late.rs"]
mod late;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use sluice_core::bucket::{Op, Outcome};
use sluice_core::engine::{BucketOp, DescriptorInput, Engine, Prepared, Subject, Verdict, refuses};
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
    /// `flush` and the global state read back. Over-admission is bounded (docs/fleet.md).
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
    /// Replicas sharing the limits, when set (`--fleet-replicas`): the `local` policy enforces
    /// `limit / replicas`. Unset: the replicas alive in the fleet state (`Fleet::divisor`).
    pub replicas: Option<u64>,
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
    /// Exact mode: scripts that answered after their decision's budget (and were reconciled),
    /// hits they counted for a refused decision and gave back, and hits admitted without the
    /// counters (by the policy) — each added to them once they answer (`reconciled_hits`).
    pub late: AtomicU64,
    pub refunded_hits: AtomicU64,
    pub local_admitted_hits: AtomicU64,
    pub reconciled_hits: AtomicU64,
}

/// Keys waiting for a flush at most (while Redis is down they accumulate).
const MAX_PENDING_KEYS: usize = 100_000;
/// Buckets per flush script.
const FLUSH_CHUNK: usize = 256;
/// The longest a flush script is waited for.
const FLUSH_WAIT: Duration = Duration::from_secs(2);
/// Exact mode: how often hits admitted without the counters are added to them.
const RECONCILE_EVERY: Duration = Duration::from_millis(100);
/// The longest the connection waits for one answer before it calls it an error: longer than a
/// budget, so a script a busy node or a slow Redis delays lands (and is reconciled) instead of
/// failing and counting against the breaker; a hung Redis is found this long after a call.
pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(250);
/// Keys remembered as refused by the counters, at most (the failure policy refuses them until
/// the counters' own retry-after).
const EXHAUSTED_KEYS: u64 = 100_000;

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
    /// Hits admitted that the counters have not counted yet, by bucket: the cached mode's since
    /// the last flush; the exact mode's admitted by the failure policy.
    pending: Mutex<FxHashMap<u128, (BucketOp, u64)>>,
    /// Replicas alive at the last fleet-state round (`fleet_sync`).
    live_replicas: AtomicU64,
    /// Exact mode: late scripts being awaited (`late`), at most `late::MAX_IN_FLIGHT`.
    late_in_flight: AtomicUsize,
    /// Exact mode: keys the counters last refused, until when (this replica's clock): while
    /// they cannot be asked, the `local` policy refuses these rather than admit from its share
    /// what the fleet has already spent.
    exhausted: moka::sync::Cache<u128, Nanos>,
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
            live_replicas: AtomicU64::new(1),
            late_in_flight: AtomicUsize::new(0),
            exhausted: moka::sync::Cache::new(EXHAUSTED_KEYS),
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
        self: &Arc<Self>,
        engine: &Engine,
        domain: &str,
        inputs: &[DescriptorInput<'_>],
        now: Nanos,
    ) -> Verdict {
        let prepared = engine.prepare_descriptors(domain, inputs, now);
        let outcomes = self.settle_prepared(engine, &prepared, now).await;
        engine.conclude(&Engine::descriptor_caller(inputs), prepared, &outcomes, now)
    }

    /// `ShouldAllow` on the shared counters.
    pub async fn should_allow(
        self: &Arc<Self>,
        engine: &Engine,
        domain: &str,
        subject: &Subject<'_>,
        cost: u64,
        now: Nanos,
    ) -> Verdict {
        let prepared = engine.prepare_allow(domain, subject, cost, now);
        let outcomes = self.settle_prepared(engine, &prepared, now).await;
        engine.conclude(subject, prepared, &outcomes, now)
    }

    /// Runs a prepared decision's bucket operations on the shared counters, under the budget,
    /// breaker and failure policy every decision has (a reservation goes through here too).
    pub async fn settle_prepared(
        self: &Arc<Self>,
        engine: &Engine,
        prepared: &Prepared,
        now: Nanos,
    ) -> Vec<Outcome> {
        if prepared.is_blocked() || prepared.ops().len() == 0 {
            return Vec::new();
        }
        let ops: Vec<BucketOp> = prepared.ops().collect();
        if self.config.mode == CountersMode::Cached {
            return self.settle_cached(engine, prepared, &ops, now);
        }
        if self.breaker.admit() {
            let counters = self.counters.clone();
            let owned = ops.clone();
            let mut call: late::Call = Box::pin(async move { counters.run(&owned).await });
            match tokio::time::timeout(self.config.budget, call.as_mut()).await {
                Ok(Ok(outcomes)) => {
                    self.answered();
                    self.stats.shared.fetch_add(1, Ordering::Relaxed);
                    self.remember_refusals(&ops, &outcomes, now);
                    return outcomes;
                }
                Ok(Err(error)) => {
                    // The script may not have run: what the policy admits is added later.
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    self.note_failure(&error.to_string());
                }
                Err(_) => {
                    // Redis is believed alive (the breaker is closed) and the script is on its
                    // way: the answer must not admit what the counters may refuse, so it is a
                    // refusal (or, under `allow`, an admission the counters are told of); the
                    // script is awaited and its hits given back, or the admitted ones added.
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                    let outcomes = match self.config.policy {
                        FailurePolicy::Allow => ops.iter().map(|_| allowed()).collect(),
                        FailurePolicy::Deny | FailurePolicy::Local => refused(&ops),
                    };
                    self.reconcile_later(call, ops, outcomes.clone());
                    return outcomes;
                }
            }
        }
        self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        let outcomes = match self.config.policy {
            FailurePolicy::Local if self.known_exhausted(&ops, now) => refused(&ops),
            FailurePolicy::Local => engine.settle_locally(prepared, self.divisor(), now),
            FailurePolicy::Allow => ops.iter().map(|_| allowed()).collect(),
            FailurePolicy::Deny => refused(&ops),
        };
        // Admitted without the counters: they are told as soon as they answer again.
        self.owe(&ops, &outcomes);
        outcomes
    }

    /// Remembers the keys whose enforced consume the counters refused, until their retry-after.
    fn remember_refusals(&self, ops: &[BucketOp], outcomes: &[Outcome], now: Nanos) {
        for (op, o) in ops.iter().zip(outcomes) {
            if op.enforced && op.op == Op::Consume && !o.allowed && o.retry_after > 0 {
                let until = now.saturating_add(o.retry_after);
                // A hot key is refused thousands of times a second: write only what moves.
                const CLOSE_ENOUGH: Nanos = 100_000_000;
                let known = self.exhausted.get(&op.key).unwrap_or(0);
                if until > known.saturating_add(CLOSE_ENOUGH) {
                    self.exhausted.insert(op.key, until);
                }
            }
        }
    }

    /// Whether the counters last refused one of `ops`' enforced keys and its retry-after has
    /// not passed.
    fn known_exhausted(&self, ops: &[BucketOp], now: Nanos) -> bool {
        ops.iter()
            .filter(|op| op.enforced && op.op == Op::Consume)
            .any(|op| self.exhausted.get(&op.key).is_some_and(|until| until > now))
    }

    /// The `local` policy's divisor: `--fleet-replicas`, else the replicas alive at the last
    /// round of the fleet state (at least 1; the last count known when Redis went away).
    pub fn divisor(&self) -> u64 {
        self.config
            .replicas
            .unwrap_or_else(|| self.live_replicas.load(Ordering::Relaxed))
            .max(1)
    }

    /// The fleet-state round saw `replicas` replicas alive (this one included).
    pub fn set_live_replicas(&self, replicas: u64) {
        self.live_replicas.store(replicas.max(1), Ordering::Relaxed);
    }

    /// A decision answered `outcomes` without the counters counting it: unless it was refused,
    /// the hits it admitted are queued to be added to them at the next flush, and counted as
    /// admitted locally.
    fn owe(&self, ops: &[BucketOp], outcomes: &[Outcome]) {
        let hits = self.queue(ops, outcomes);
        self.stats
            .local_admitted_hits
            .fetch_add(hits, Ordering::Relaxed);
    }

    /// Queues the hits `outcomes` admitted (none if they refuse the request) for the next
    /// flush; returns how many.
    fn queue(&self, ops: &[BucketOp], outcomes: &[Outcome]) -> u64 {
        if refuses(ops, outcomes) {
            return 0;
        }
        let admitted: Vec<(BucketOp, u64)> = ops
            .iter()
            .zip(outcomes)
            .filter(|(op, o)| op.op == Op::Consume && o.allowed && op.hits > 0)
            .map(|(op, _)| (*op, op.hits))
            .collect();
        self.put_back(&admitted);
        admitted.iter().map(|(_, n)| n).sum()
    }

    /// The counters answered: the breaker hears it (and readiness, if it closes).
    fn answered(&self) {
        if self.breaker.success() {
            self.readiness.shared_counters(true);
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
        // While the counters are out of reach no global state comes back: each replica keeps
        // to its share of each limit (the copy it holds is judged against the share).
        let share = if self.breaker.is_open() {
            self.divisor()
        } else {
            1
        };
        let outcomes = engine.settle_locally(prepared, share, now);
        self.stats.cached.fetch_add(1, Ordering::Relaxed);
        let hits = self.queue(ops, &outcomes);
        if share > 1 {
            self.stats
                .local_admitted_hits
                .fetch_add(hits, Ordering::Relaxed);
        }
        outcomes
    }

    /// Sends the hits admitted that the counters have not counted; the cached mode adopts the
    /// global states they answer with (the exact mode decides on the counters themselves),
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
            if self.config.mode == CountersMode::Exact {
                let hits: u64 = chunk.iter().map(|(_, n)| n).sum();
                self.stats
                    .reconciled_hits
                    .fetch_add(hits, Ordering::Relaxed);
                continue;
            }
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
                self.answered();
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

/// Every consuming operation refused, checks answered.
fn refused(ops: &[BucketOp]) -> Vec<Outcome> {
    ops.iter()
        .map(|op| {
            if op.op == Op::Consume && op.hits > 0 {
                denied(op)
            } else {
                allowed()
            }
        })
        .collect()
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

/// Flushes every `flush` (cached mode) or `RECONCILE_EVERY` (exact mode: the hits the failure
/// policy admitted) until shutdown, then once more (what was admitted before shutdown reaches
/// the shared counters).
pub async fn flush_loop(
    fleet: std::sync::Arc<Fleet>,
    engine: std::sync::Arc<Engine>,
    clock: crate::service::clock::LiveClock,
    mut shutdown: crate::service::shutdown::Shutdown,
) {
    loop {
        let every = match fleet.config.mode {
            CountersMode::Cached => fleet.config.flush,
            CountersMode::Exact => RECONCILE_EVERY,
        };
        let running = shutdown.sleep(every).await;
        fleet.flush(&engine, clock.now()).await;
        if !running {
            return;
        }
    }
}
