//! The decision engine: matches a request against the current rule set and updates the buckets
//! of every limit that applies. Both gRPC APIs, tests and replays call this, with `now`
//! passed in.
//!
//! Invariants:
//! - never awaits, never does I/O: bucket state is in memory (a bounded `Buckets`), rules are
//!   an immutable `RuleSet` behind an `ArcSwap`, so a rule change is seen whole or not at all;
//! - one bucket's state is only changed under its own mutex, held for a few arithmetic steps;
//! - a denied request consumes nothing: hits taken by limits that admitted it are given back when
//!   another (enforced) limit denies it;
//! - shadow-mode limits decide and are counted but never deny;
//! - anomaly actions (from the learning loop) are an immutable `ActionTable` behind an `ArcSwap`,
//!   applied before the rules' buckets and never below a matched rule's floor;
//! - every decision is observed (`learn::observe`) for the learning loop, in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use smallvec::SmallVec;

use super::bucket::{BucketState, Op, Outcome};
use super::buckets::Buckets;
use super::keys::{bucket_key, caller_from_descriptors, subject_key, synthetic_seed};
use super::learn::actions::{Action, ActionKind, ActionTable, Signal};
use super::learn::observe::{Aggregator, Event, Observation, ObserveConfig};
use super::limit::cut_quota;
use super::limit::{Algorithm, Quota, Rate, Unit};
use super::limit_stats::LimitOutcome;
use super::matcher::{CompiledLimit, LimitLabel, RuleSet, SubjectMatch};
use super::rules::{Priority, Tier};
use super::time::{NANOS_PER_SEC, Nanos};

pub use super::verdict::{
    AnomalyHit, DescriptorInput, EngineStats, LimitState, LimitStatus, ReportedLimit, Subject,
    Verdict,
};

/// Engine settings fixed at start-up (the global shadow switch can also flip at run time).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Most bucket states kept; beyond it the least useful are evicted (and counted).
    pub bucket_capacity: u64,
    /// A bucket idle this long is dropped — but never before its limit would have fully recovered,
    /// so dropping it changes no decision.
    pub bucket_idle_ttl: Duration,
    /// Limit applied per descriptor in domains no rule mentions; `None` answers OK.
    pub unknown_domain_limit: Option<Rate>,
    /// Global shadow mode: decide and record, never deny.
    pub shadow: bool,
    /// Bounds of the per-minute observation the learning loop reads.
    pub observe: ObserveConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            bucket_capacity: 2_000_000,
            bucket_idle_ttl: Duration::from_secs(600),
            unknown_domain_limit: None,
            shadow: false,
            observe: ObserveConfig::default(),
        }
    }
}

pub struct Engine {
    rules: ArcSwap<RuleSet>,
    buckets: Buckets,
    config: EngineConfig,
    shadow: AtomicBool,
    stats: EngineStats,
    override_label: Arc<LimitLabel>,
    default_label: Arc<LimitLabel>,
    throttle_label: Arc<LimitLabel>,
    block_label: Arc<LimitLabel>,
    actions: ArcSwap<ActionTable>,
    /// Actions other replicas of a fleet took (see `set_fleet_actions`): consulted when this
    /// replica has none for the caller.
    fleet_actions: ArcSwap<ActionTable>,
    observer: Aggregator,
    /// The pressure cut in force, as f64 bits (1.0: none). See `set_pressure`.
    pressure: AtomicU64,
    /// The deepest cut another replica of the fleet has in force (1.0: none).
    fleet_pressure: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("revision", &self.rules.load().revision())
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

/// Where a limit that applies came from: a rule, or a limit the engine made up (Envoy's
/// override, or the unknown-domain default).
struct Applied<'r> {
    slot: usize,
    label: &'r Arc<LimitLabel>,
    quota: Quota,
    /// How long the bucket matters after use (`Quota::full_recovery`).
    keep_for: Nanos,
    shadow: bool,
    key: u128,
    /// The limit's floor in requests per minute (0: none): anomaly actions stay above it.
    floor_per_minute: u64,
    /// This is an anomaly throttle, not a rule.
    anomaly: bool,
    /// The quota is cut under pressure (a low-priority endpoint's limit for an STD subject).
    cut: bool,
}

/// A rule floor in requests per minute, rounded up.
fn floor_per_minute(limit: &CompiledLimit, quota: &Quota) -> u64 {
    limit.spec.floor.map_or(0, |f| {
        f.saturating_mul(60).div_ceil(quota.window_seconds().max(1))
    })
}

/// A cut factor in [0, 1]; anything else lifts the cut.
fn clamp_factor(factor: f64) -> f64 {
    if factor.is_finite() {
        factor.clamp(0.0, 1.0)
    } else {
        1.0
    }
}

/// Seed of anomaly-throttle buckets (one per client and throttle rate).
const THROTTLE_SEED: u64 = 0xA70_3A1C;

/// Folds one limit's outcome into its slot's status (the most urgent limit speaks for a slot).
fn record_outcome(verdict: &mut Verdict, a: &Applied<'_>, outcome: &Outcome) {
    record(verdict, a.slot, a.label, a.quota, a.flags(), outcome);
}

/// What kind of limit spoke (see `Applied`).
#[derive(Clone, Copy, Debug)]
struct Flags {
    shadow: bool,
    anomaly: bool,
    cut: bool,
}

impl Applied<'_> {
    fn flags(&self) -> Flags {
        Flags {
            shadow: self.shadow,
            anomaly: self.anomaly,
            cut: self.cut,
        }
    }
}

fn record(
    verdict: &mut Verdict,
    slot: usize,
    label: &Arc<LimitLabel>,
    quota: Quota,
    a: Flags,
    outcome: &Outcome,
) {
    if a.anomaly
        && !outcome.allowed
        && let Some(hit) = verdict.anomaly.as_mut()
    {
        hit.denied = true;
    }
    if a.cut && !outcome.allowed && !a.shadow {
        verdict.forecast_cut = true;
    }
    label.counts.count(LimitOutcome::of(
        outcome.allowed,
        a.shadow,
        outcome.remaining,
        quota.capacity,
    ));
    let status = LimitStatus {
        over_limit: !outcome.allowed && !a.shadow,
        shadow_over: !outcome.allowed && a.shadow,
        limit: Some(ReportedLimit {
            label: label.clone(),
            quota,
        }),
        remaining: outcome.remaining,
        reset_after: outcome.reset_after,
        retry_after: outcome.retry_after,
    };
    let current = &mut verdict.statuses[slot];
    if current.limit.is_none() || status.urgency() > current.urgency() {
        *current = status;
    }
}

impl Engine {
    /// An engine on the built-in sharded store (`bucket_capacity`, `bucket_idle_ttl`).
    pub fn new(config: EngineConfig) -> Engine {
        let buckets = Buckets::sharded(
            config.bucket_capacity,
            config.bucket_idle_ttl.as_nanos() as Nanos,
        );
        Engine::with_store(config, buckets)
    }

    /// An engine on a given store (an adapter's, such as the service's moka store). The store
    /// enforces its own capacity and idle time; `config`'s bucket fields are what it was built with.
    pub fn with_store(config: EngineConfig, buckets: Buckets) -> Engine {
        let observe = config.observe.clone();
        Engine {
            rules: ArcSwap::from_pointee(RuleSet::default()),
            buckets,
            shadow: AtomicBool::new(config.shadow),
            config,
            stats: EngineStats::default(),
            override_label: Arc::new(LimitLabel::new("override", "override")),
            default_label: Arc::new(LimitLabel::new("default", "default")),
            throttle_label: Arc::new(LimitLabel::new("anomaly", "throttle")),
            block_label: Arc::new(LimitLabel::new("anomaly", "block")),
            actions: ArcSwap::from_pointee(ActionTable::default()),
            fleet_actions: ArcSwap::from_pointee(ActionTable::default()),
            observer: Aggregator::new(observe),
            pressure: AtomicU64::new(1.0f64.to_bits()),
            fleet_pressure: AtomicU64::new(1.0f64.to_bits()),
        }
    }

    /// Cuts STD subjects' limits on low-priority endpoints to `factor` of their rate (never below
    /// a limit's floor); 1.0 lifts the cut. Decisions in flight finish on the old factor.
    pub fn set_pressure(&self, factor: f64) {
        self.pressure
            .store(clamp_factor(factor).to_bits(), Ordering::Relaxed);
    }

    /// The deepest cut other replicas of a fleet have in force; this replica applies the deeper
    /// of its own and theirs. 1.0: none.
    pub fn set_fleet_pressure(&self, factor: f64) {
        self.fleet_pressure
            .store(clamp_factor(factor).to_bits(), Ordering::Relaxed);
    }

    /// This replica's own cut (what it publishes to a fleet).
    pub fn own_pressure(&self) -> f64 {
        f64::from_bits(self.pressure.load(Ordering::Relaxed))
    }

    /// The cut in force: the deeper of this replica's and the fleet's.
    pub fn pressure(&self) -> f64 {
        self.own_pressure()
            .min(f64::from_bits(self.fleet_pressure.load(Ordering::Relaxed)))
    }

    /// The quota a rule's limit enforces for this caller: cut under pressure when the rule is a
    /// low-priority one and the caller is STD. PRM and other priorities keep theirs.
    fn pressured(
        &self,
        quota: Quota,
        limit: &CompiledLimit,
        priority: Priority,
        tier: Tier,
    ) -> (Quota, bool) {
        let factor = self.pressure();
        if factor >= 1.0 || priority != Priority::Low || tier != Tier::Std {
            return (quota, false);
        }
        let cut = cut_quota(quota, factor, limit.spec.floor);
        (cut, cut != quota)
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// Swaps in a new rule set; decisions in flight finish on the old one.
    pub fn replace_rules(&self, rules: RuleSet) {
        self.rules.store(Arc::new(rules));
    }

    pub fn set_shadow(&self, on: bool) {
        self.shadow.store(on, Ordering::Relaxed);
    }

    pub fn shadow(&self) -> bool {
        self.shadow.load(Ordering::Relaxed)
    }

    /// Installs the anomaly actions the learner computed; decisions in flight finish on the old.
    pub fn set_actions(&self, actions: Arc<ActionTable>) {
        self.actions.store(actions);
    }

    pub fn actions(&self) -> Arc<ActionTable> {
        self.actions.load_full()
    }

    /// Installs the actions other replicas of a fleet have in force (this replica's own, from
    /// `set_actions`, take precedence for a caller both name).
    pub fn set_fleet_actions(&self, actions: Arc<ActionTable>) {
        self.fleet_actions.store(actions);
    }

    pub fn fleet_actions(&self) -> Arc<ActionTable> {
        self.fleet_actions.load_full()
    }

    /// The per-minute aggregate the learning loop drains.
    pub fn observer(&self) -> &Aggregator {
        &self.observer
    }

    /// A gateway reported the upstream's status for one request (access log or `Report`).
    pub fn report_outcome(&self, subject: &Subject<'_>, status: u16, now: Nanos) {
        self.observe(subject, Event::Outcome { status }, now);
    }

    fn observe(&self, subject: &Subject<'_>, event: Event, now: Nanos) {
        self.observer.record(&Observation {
            now,
            client: subject.remote_address,
            user: subject.user_id,
            tier: subject.tier,
            endpoint: subject.endpoint,
            user_agent: subject.user_agent,
            event,
        });
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn tracked_buckets(&self) -> u64 {
        self.buckets.len()
    }

    /// Bucket states dropped at capacity while they still mattered.
    pub fn lossy_evictions(&self) -> u64 {
        self.buckets.lossy_evictions()
    }

    /// Drops bucket states idle past their keep time; call every few seconds.
    pub fn sweep(&self, now: Nanos) {
        self.buckets.sweep(now);
    }

    /// Envoy RLS: one status per descriptor, in order.
    pub fn check_descriptors(
        &self,
        domain: &str,
        inputs: &[DescriptorInput<'_>],
        now: Nanos,
    ) -> Verdict {
        let rules = self.rules.load();
        let caller = caller_from_descriptors(inputs);
        let applied = self.descriptor_limits(&rules, domain, inputs, &caller);
        let ops = |slot: usize| (inputs[slot].hits, inputs[slot].op);
        self.decide(&caller, inputs.len(), applied, ops, now)
    }

    /// The limits that apply to Envoy descriptors: each one's rule, override or default.
    fn descriptor_limits<'s>(
        &'s self,
        rules: &'s RuleSet,
        domain: &str,
        inputs: &[DescriptorInput<'_>],
        caller: &Subject<'_>,
    ) -> SmallVec<[Applied<'s>; 4]> {
        let global_shadow = self.shadow();
        let mut applied: SmallVec<[Applied<'_>; 4]> = SmallVec::new();
        let mut matched: SmallVec<[Option<&Arc<super::matcher::CompiledRule>>; 4]> =
            SmallVec::new();
        for (slot, input) in inputs.iter().enumerate() {
            if let Some(rate) = input.limit_override {
                let made_up = self.synthetic(
                    slot,
                    domain,
                    input,
                    rate,
                    Algorithm::FixedWindow,
                    &self.override_label,
                );
                applied.push(made_up);
                matched.push(None);
                continue;
            }
            let rule = rules.match_descriptor(domain, &input.entries);
            matched.push(rule);
            if rule.is_none()
                && let Some(rate) = self.config.unknown_domain_limit
                && !rules.has_domain(domain)
            {
                let made_up = self.synthetic(
                    slot,
                    domain,
                    input,
                    rate,
                    Algorithm::TokenBucket,
                    &self.default_label,
                );
                applied.push(made_up);
            }
        }
        let replaced = |name: &str| {
            rules.has_replaces()
                && matched
                    .iter()
                    .flatten()
                    .any(|r| r.rule.replaces.iter().any(|n| n == name))
        };
        for (slot, rule) in matched.iter().enumerate() {
            let Some(rule) = rule else { continue };
            for limit in &rule.limits {
                if !limit.spec.name.is_empty() && replaced(&limit.spec.name) {
                    continue;
                }
                if let Some(quota) = limit.quota {
                    let (quota, cut) = self.pressured(quota, limit, rule.priority(), caller.tier);
                    applied.push(Applied {
                        slot,
                        label: &limit.label,
                        quota,
                        keep_for: limit.recovery,
                        shadow: global_shadow || rule.shadow_mode(),
                        key: bucket_key(limit.seed, inputs[slot].entries.iter().map(|(_, v)| *v)),
                        floor_per_minute: floor_per_minute(limit, &quota),
                        anomaly: false,
                        cut,
                    });
                }
            }
        }
        applied
    }

    /// A limit the engine makes up for one descriptor: Envoy's override, or the unknown-domain
    /// default. Its bucket is per domain, descriptor keys and values, rate and `name`.
    fn synthetic<'s>(
        &'s self,
        slot: usize,
        domain: &str,
        input: &DescriptorInput<'_>,
        rate: Rate,
        algorithm: Algorithm,
        label: &'s Arc<LimitLabel>,
    ) -> Applied<'s> {
        let quota = Quota::without_burst(rate, algorithm);
        let seed = synthetic_seed(&label.name, domain, &input.entries, rate);
        Applied {
            slot,
            label,
            quota,
            keep_for: quota.full_recovery(),
            shadow: self.shadow(),
            key: bucket_key(seed, input.entries.iter().map(|(_, v)| *v)),
            floor_per_minute: 0,
            anomaly: false,
            cut: false,
        }
    }

    /// `ShouldAllow`: every rule formed by the subject's fields applies, with `cost` hits.
    pub fn should_allow(
        &self,
        domain: &str,
        subject: &Subject<'_>,
        cost: u64,
        now: Nanos,
    ) -> Verdict {
        let rules = self.rules.load();
        let applied = self.subject_limits(&rules, domain, subject);
        self.decide(subject, 1, applied, |_| (cost, Op::Consume), now)
    }

    /// The limits of every rule formed by the subject's fields.
    fn subject_limits<'s>(
        &'s self,
        rules: &'s RuleSet,
        domain: &str,
        subject: &Subject<'_>,
    ) -> SmallVec<[Applied<'s>; 4]> {
        let fields = subject.fields();
        let mut matches: SmallVec<[SubjectMatch<'_>; 8]> = SmallVec::new();
        rules.match_subject(domain, &fields, &mut matches);
        let global_shadow = self.shadow();
        let mut applied: SmallVec<[Applied<'_>; 4]> = SmallVec::new();
        for m in &matches {
            for limit in &m.rule.limits {
                if let Some(quota) = limit.quota {
                    let (quota, cut) =
                        self.pressured(quota, limit, m.rule.priority(), subject.tier);
                    applied.push(Applied {
                        slot: 0,
                        label: &limit.label,
                        quota,
                        keep_for: limit.recovery,
                        shadow: global_shadow || m.rule.shadow_mode(),
                        key: subject_key(limit, &fields, &m.order),
                        floor_per_minute: floor_per_minute(limit, &quota),
                        anomaly: false,
                        cut,
                    });
                }
            }
        }
        applied
    }

    /// Applies the caller's anomaly action and every limit, combines them per slot, gives back
    /// what a denied request took, and observes the decision.
    fn decide<'s>(
        &'s self,
        caller: &Subject<'_>,
        slots: usize,
        mut applied: SmallVec<[Applied<'s>; 4]>,
        ops: impl Fn(usize) -> (u64, Op),
        now: Nanos,
    ) -> Verdict {
        let mut verdict = Verdict::for_slots(slots);
        if let Some(until) = self.apply_action(caller, &mut applied, &mut verdict, now) {
            return self.blocked(caller, verdict, until, now);
        }
        let applied = &applied[..];
        // Indexes into `applied` of the limits that took hits, to give back on a denial.
        let mut taken: SmallVec<[u16; 8]> = SmallVec::new();
        for (i, a) in applied.iter().enumerate() {
            let (hits, op) = ops(a.slot);
            let outcome: Outcome = self.buckets.update(a.key, a.keep_for, now, |state| {
                state.apply(&a.quota, now, hits, op)
            });
            if op == Op::Consume && outcome.allowed && hits > 0 {
                taken.push(i as u16);
            }
            record_outcome(&mut verdict, a, &outcome);
        }
        verdict.over_limit = verdict.statuses.iter().any(|s| s.over_limit);
        if verdict.over_limit {
            for &i in &taken {
                let a = &applied[i as usize];
                self.refund(a.key, a.keep_for, &a.quota, ops(a.slot).0, now);
            }
        }
        self.finish(caller, verdict, now)
    }

    /// Gives `hits` back to a bucket that took them for a request another limit denied (the
    /// one refund path: the in-process decision and the fleet's local fallback both use it).
    pub(crate) fn refund(&self, key: u128, keep_for: Nanos, quota: &Quota, hits: u64, now: Nanos) {
        self.buckets.update(key, keep_for, now, |state| {
            state.apply(quota, now, hits, Op::Refund)
        });
    }

    /// The caller's anomaly action, if one is in force: a throttle joins `applied`; a block
    /// returns when it ends (the caller is then answered by `blocked`).
    fn apply_action<'s>(
        &'s self,
        caller: &Subject<'_>,
        applied: &mut SmallVec<[Applied<'s>; 4]>,
        verdict: &mut Verdict,
        now: Nanos,
    ) -> Option<Nanos> {
        let actions = self.actions.load();
        let fleet = self.fleet_actions.load();
        let action = actions
            .active_for(caller.remote_address, caller.user_id, now)
            .or_else(|| fleet.active_for(caller.remote_address, caller.user_id, now))?;
        let floor = applied
            .iter()
            .map(|a| a.floor_per_minute)
            .max()
            .unwrap_or(0);
        // A rule's floor keeps what the learner decides above it; an operator's denylist is
        // explicit evidence and blocks outright.
        let kind = if action.signal == Signal::Denylist {
            action.kind
        } else {
            action.kind.within_floor(floor)
        };
        let shadow = action.shadow || self.shadow();
        let mut hit = AnomalyHit {
            kind,
            score: action.score,
            shadow,
            denied: false,
        };
        match kind {
            ActionKind::Block => {
                hit.denied = true;
                if !shadow {
                    verdict.anomaly = Some(hit);
                    return Some(action.expires_at);
                }
            }
            ActionKind::Throttle { per_minute } => {
                let rate = Rate {
                    requests_per_unit: per_minute,
                    unit: Unit::Minute,
                    unit_multiplier: 1,
                };
                let quota = Quota::without_burst(rate, Algorithm::TokenBucket);
                applied.push(Applied {
                    slot: 0,
                    label: &self.throttle_label,
                    quota,
                    keep_for: quota.full_recovery(),
                    shadow,
                    // Per action key: a throttled user shares one bucket across addresses.
                    key: bucket_key(THROTTLE_SEED ^ per_minute, [&*action.client].into_iter()),
                    floor_per_minute: 0,
                    anomaly: true,
                    cut: false,
                });
            }
        }
        verdict.anomaly = Some(hit);
        None
    }

    /// Counts the decision (its statuses already combined) and observes it.
    fn finish(&self, caller: &Subject<'_>, mut verdict: Verdict, now: Nanos) -> Verdict {
        verdict.over_limit = verdict.statuses.iter().any(|s| s.over_limit);
        verdict.shadow_over = verdict.statuses.iter().any(|s| s.shadow_over);
        if verdict.over_limit {
            self.stats.denied.fetch_add(1, Ordering::Relaxed);
        } else if verdict.shadow_over {
            self.stats.shadow_denied.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.decisions.fetch_add(1, Ordering::Relaxed);
        self.stats.count_tier(caller.tier, verdict.over_limit);
        let by_anomaly =
            verdict.over_limit && verdict.anomaly.is_some_and(|h| h.denied && !h.shadow);
        if by_anomaly {
            self.stats.anomaly_denied.fetch_add(1, Ordering::Relaxed);
        }
        if verdict.forecast_cut {
            self.stats.forecast_denied.fetch_add(1, Ordering::Relaxed);
        }
        let event = Event::Decision {
            allowed: !verdict.over_limit,
            anomaly: by_anomaly,
            cut: verdict.forecast_cut,
        };
        self.observe(caller, event, now);
        verdict
    }

    /// A blocked caller: every descriptor is over its limit until the action expires; no bucket
    /// is touched.
    fn blocked(
        &self,
        caller: &Subject<'_>,
        mut verdict: Verdict,
        until: Nanos,
        now: Nanos,
    ) -> Verdict {
        let wait = until.saturating_sub(now);
        let status = LimitStatus {
            over_limit: true,
            shadow_over: false,
            limit: Some(ReportedLimit {
                label: self.block_label.clone(),
                quota: Quota::without_burst(
                    Rate {
                        requests_per_unit: 0,
                        unit: Unit::Minute,
                        unit_multiplier: 1,
                    },
                    Algorithm::FixedWindow,
                ),
            }),
            remaining: 0,
            reset_after: wait,
            retry_after: wait.max(NANOS_PER_SEC),
        };
        for s in verdict.statuses.iter_mut() {
            *s = status.clone();
        }
        verdict.over_limit = true;
        self.stats.decisions.fetch_add(1, Ordering::Relaxed);
        self.stats.denied.fetch_add(1, Ordering::Relaxed);
        self.stats.anomaly_denied.fetch_add(1, Ordering::Relaxed);
        self.stats.count_tier(caller.tier, true);
        self.observe(
            caller,
            Event::Decision {
                allowed: false,
                anomaly: true,
                cut: false,
            },
            now,
        );
        verdict
    }

    /// The limits in force for a subject and the state of their buckets; changes nothing.
    pub fn client_state(&self, domain: &str, subject: &Subject<'_>, now: Nanos) -> Vec<LimitState> {
        let rules = self.rules.load();
        let fields = subject.fields();
        let mut matches: SmallVec<[SubjectMatch<'_>; 8]> = SmallVec::new();
        rules.match_subject(domain, &fields, &mut matches);
        let mut out = Vec::new();
        for m in &matches {
            for limit in &m.rule.limits {
                let Some(configured) = limit.quota else {
                    continue;
                };
                let (quota, cut) =
                    self.pressured(configured, limit, m.rule.priority(), subject.tier);
                let key = subject_key(limit, &fields, &m.order);
                let (tracked, outcome) = match self.buckets.get(key) {
                    Some(state) => (true, state.peek(&quota, now)),
                    None => (false, BucketState::Fresh.peek(&quota, now)),
                };
                out.push(LimitState {
                    limit: ReportedLimit {
                        label: limit.label.clone(),
                        quota,
                    },
                    shadow: m.rule.shadow_mode(),
                    tracked,
                    remaining: outcome.remaining,
                    reset_after: outcome.reset_after,
                    cut,
                });
            }
        }
        out
    }

    /// The anomaly action in force on a subject's address or user (this engine's, else the
    /// fleet's), as decisions would meet it.
    pub fn action_for(&self, subject: &Subject<'_>, now: Nanos) -> Option<Action> {
        let own = self.actions.load();
        if let Some(a) = own.active_for(subject.remote_address, subject.user_id, now) {
            return Some(a.clone());
        }
        self.fleet_actions
            .load()
            .active_for(subject.remote_address, subject.user_id, now)
            .cloned()
    }

    /// Forgets the subject's buckets, giving it its full allowance back. Returns how many existed.
    pub fn reset_client(&self, domain: &str, subject: &Subject<'_>) -> usize {
        self.client_bucket_keys(domain, subject)
            .into_iter()
            .filter(|&key| self.buckets.remove(key))
            .count()
    }

    /// Drops one bucket's state; whether there was one.
    pub fn reset_bucket(&self, key: u128) -> bool {
        self.buckets.remove(key)
    }

    /// The bucket keys of every limit that applies to `subject` (whether or not a bucket is
    /// held for them): what a reset clears, here and on shared counters.
    /// The rule one Envoy descriptor matches in `domain` and the buckets of its limits for that
    /// descriptor's values (an admin's reset of one key); `None` when no rule matches.
    pub fn descriptor_bucket_keys(
        &self,
        domain: &str,
        entries: &[(&str, &str)],
    ) -> Option<(Arc<str>, Vec<u128>)> {
        let rules = self.rules.load();
        let rule = rules.match_descriptor(domain, entries)?;
        let keys = rule
            .limits
            .iter()
            .filter(|limit| limit.quota.is_some())
            .map(|limit| bucket_key(limit.seed, entries.iter().map(|(_, v)| *v)))
            .collect();
        Some((rule.id.clone(), keys))
    }

    pub fn client_bucket_keys(&self, domain: &str, subject: &Subject<'_>) -> Vec<u128> {
        let rules = self.rules.load();
        let fields = subject.fields();
        let mut matches: SmallVec<[SubjectMatch<'_>; 8]> = SmallVec::new();
        rules.match_subject(domain, &fields, &mut matches);
        matches
            .iter()
            .flat_map(|m| {
                m.rule
                    .limits
                    .iter()
                    .map(|limit| subject_key(limit, &fields, &m.order))
            })
            .collect()
    }
}

#[path = "engine_prepared.rs"]
mod prepared;

#[path = "engine_quota.rs"]
mod quota;
pub use prepared::{BucketOp, Prepared, give_backs, refuses};
pub use quota::{BucketQuota, MAX_OBSERVED_PER_REPORT, per_unit};

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
