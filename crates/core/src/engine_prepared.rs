//! A decision in two halves, for counters that live outside this process (the service's Redis
//! adapter, which awaits them). `prepare_*` matches the rules and the caller's anomaly action and
//! lists the bucket operations the decision needs; the caller runs them where the counters live —
//! atomically, a denied request consuming nothing — and `conclude` turns their outcomes into the
//! verdict exactly as a local decision would (statuses, stats, observation). `settle_locally`
//! runs them on this engine's own buckets instead, each limit a `share` of its rate: the
//! fallback while the shared store cannot answer.
//!
//! Not here: talking to any store. The in-process path (`check_descriptors`, `should_allow`)
//! does not go through this module; it borrows instead of owning, and stays as fast as it was.

use std::sync::Arc;

use smallvec::SmallVec;

use super::{Applied, Engine, Flags, record};
use crate::bucket::{BucketState, Op, Outcome};
use crate::keys::caller_from_descriptors;
use crate::limit::Quota;
use crate::matcher::LimitLabel;
use crate::time::Nanos;
use crate::verdict::{DescriptorInput, Subject, Verdict};

/// One bucket operation a decision needs, in the order the local path would run them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketOp {
    pub key: u128,
    pub quota: Quota,
    /// How long the bucket matters after this use (a store's expiry for it).
    pub keep_for: Nanos,
    pub hits: u64,
    pub op: Op,
    /// A denial here denies the request (not shadow mode): then no limit may keep its hits.
    pub enforced: bool,
}

/// Whether `outcomes` (answering `ops`) refuse the request: an enforced consume was denied.
pub fn refuses(ops: &[BucketOp], outcomes: &[Outcome]) -> bool {
    ops.iter()
        .zip(outcomes)
        .any(|(op, o)| op.enforced && op.op == Op::Consume && !o.allowed)
}

/// The refunds that give back what `outcomes` kept of `ops`: each consume admitted with hits.
pub fn give_backs(ops: &[BucketOp], outcomes: &[Outcome]) -> Vec<BucketOp> {
    ops.iter()
        .zip(outcomes)
        .filter(|(op, o)| op.op == Op::Consume && o.allowed && op.hits > 0)
        .map(|(op, _)| BucketOp {
            op: Op::Refund,
            enforced: false,
            ..*op
        })
        .collect()
}

struct Limit {
    slot: usize,
    label: Arc<LimitLabel>,
    flags: Flags,
    op: BucketOp,
}

/// A decision waiting for its bucket outcomes.
pub struct Prepared {
    verdict: Verdict,
    blocked_until: Option<Nanos>,
    limits: SmallVec<[Limit; 4]>,
}

impl Prepared {
    /// The bucket operations to run; none when the caller is blocked.
    pub fn ops(&self) -> impl ExactSizeIterator<Item = BucketOp> + '_ {
        self.limits.iter().map(|l| l.op)
    }

    /// Each operation with the name of its limit (`#N` when unnamed): what a reservation
    /// records to settle later.
    pub fn charges(&self) -> impl Iterator<Item = (&str, BucketOp)> + '_ {
        self.limits.iter().map(|l| (l.label.name.as_str(), l.op))
    }

    /// The caller is blocked by an anomaly action: no bucket is touched.
    pub fn is_blocked(&self) -> bool {
        self.blocked_until.is_some()
    }
}

impl Engine {
    /// The caller Envoy descriptors speak for (what `conclude` needs for them).
    pub fn descriptor_caller<'a>(inputs: &[DescriptorInput<'a>]) -> Subject<'a> {
        caller_from_descriptors(inputs)
    }

    /// `check_descriptors`, first half.
    pub fn prepare_descriptors(
        &self,
        domain: &str,
        inputs: &[DescriptorInput<'_>],
        now: Nanos,
    ) -> Prepared {
        let rules = self.rules.load();
        let caller = caller_from_descriptors(inputs);
        let applied = self.descriptor_limits(&rules, domain, inputs, &caller);
        self.prepare(
            &caller,
            inputs.len(),
            applied,
            |a| (inputs[a.slot].hits, inputs[a.slot].op),
            now,
        )
    }

    /// `should_allow`, first half.
    pub fn prepare_allow(
        &self,
        domain: &str,
        subject: &Subject<'_>,
        cost: u64,
        now: Nanos,
    ) -> Prepared {
        let rules = self.rules.load();
        let applied = self.subject_limits(&rules, domain, subject);
        self.prepare(subject, 1, applied, |_| (cost, Op::Consume), now)
    }

    /// A reservation's charges, first half: `subject`'s limits in `domain`, each charged the
    /// cost its limit's name has in `costs` (`input_tokens: 1200`), or 1 when none (the call
    /// itself, for a limit of requests).
    pub fn prepare_reserve(
        &self,
        domain: &str,
        subject: &Subject<'_>,
        costs: &[(&str, u64)],
        now: Nanos,
    ) -> Prepared {
        let rules = self.rules.load();
        let applied = self.subject_limits(&rules, domain, subject);
        let cost_of = |a: &Applied<'_>| {
            costs
                .iter()
                .find(|(name, _)| *name == a.label.name)
                .map_or(1, |(_, cost)| *cost)
        };
        self.prepare(subject, 1, applied, |a| (cost_of(a), Op::Consume), now)
    }

    fn prepare<'s>(
        &'s self,
        caller: &Subject<'_>,
        slots: usize,
        mut applied: SmallVec<[Applied<'s>; 4]>,
        ops: impl Fn(&Applied<'s>) -> (u64, Op),
        now: Nanos,
    ) -> Prepared {
        let mut verdict = Verdict::for_slots(slots);
        let blocked_until = self.apply_action(caller, &mut applied, &mut verdict, now);
        let limits = if blocked_until.is_some() {
            SmallVec::new()
        } else {
            applied
                .iter()
                .map(|a| {
                    let (hits, op) = ops(a);
                    Limit {
                        slot: a.slot,
                        label: a.label.clone(),
                        flags: a.flags(),
                        op: BucketOp {
                            key: a.key,
                            quota: a.quota,
                            keep_for: a.keep_for,
                            hits,
                            op,
                            enforced: !a.shadow,
                        },
                    }
                })
                .collect()
        };
        Prepared {
            verdict,
            blocked_until,
            limits,
        }
    }

    /// The second half: `outcomes[i]` is what `prepared.ops()`'s i-th operation did (a denied
    /// request's hits already given back). Missing outcomes count as allowed with nothing left
    /// said (a store that answered for fewer keys than asked is the caller's error, not a denial).
    pub fn conclude(
        &self,
        caller: &Subject<'_>,
        prepared: Prepared,
        outcomes: &[Outcome],
        now: Nanos,
    ) -> Verdict {
        let Prepared {
            mut verdict,
            blocked_until,
            limits,
        } = prepared;
        if let Some(until) = blocked_until {
            return self.blocked(caller, verdict, until, now);
        }
        for (limit, outcome) in limits.iter().zip(outcomes) {
            record(
                &mut verdict,
                limit.slot,
                &limit.label,
                limit.op.quota,
                limit.flags,
                outcome,
            );
        }
        self.finish(caller, verdict, now)
    }

    /// Runs a prepared decision's operations on this engine's buckets, each limit at `1/share`
    /// of its rate and burst (never below 1): what a replica enforces alone while the shared
    /// counters are out of reach. A denied request consumes nothing, as on the shared store.
    pub fn settle_locally(&self, prepared: &Prepared, share: u64, now: Nanos) -> Vec<Outcome> {
        let ops: SmallVec<[BucketOp; 4]> = prepared
            .limits
            .iter()
            .map(|limit| local_share(&limit.op, share.max(1)))
            .collect();
        self.run_atomically(&ops, now)
    }

    /// Runs a prepared decision's operations on the buckets the in-process path decides from
    /// (a reservation when there are no shared counters). A denied request consumes nothing.
    pub fn settle_in_process(&self, prepared: &Prepared, now: Nanos) -> Vec<Outcome> {
        let ops: SmallVec<[BucketOp; 4]> = prepared.limits.iter().map(|l| l.op).collect();
        self.run_atomically(&ops, now)
    }

    /// Runs `ops` on the in-process buckets one by one (a reservation's settlement: refunds
    /// and added hits, which are never denied).
    pub fn run_ops(&self, ops: &[BucketOp], now: Nanos) -> Vec<Outcome> {
        ops.iter()
            .map(|op| {
                self.buckets.update(op.key, op.keep_for, now, |state| {
                    state.apply(&op.quota, now, op.hits, op.op)
                })
            })
            .collect()
    }

    fn run_atomically(&self, ops: &[BucketOp], now: Nanos) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut denied = false;
        for op in ops {
            let outcome = self.buckets.update(op.key, op.keep_for, now, |state| {
                state.apply(&op.quota, now, op.hits, op.op)
            });
            denied |= op.enforced && !outcome.allowed;
            outcomes.push(outcome);
        }
        if denied {
            for (op, outcome) in ops.iter().zip(&outcomes) {
                if op.op == Op::Consume && outcome.allowed && op.hits > 0 {
                    self.refund(op.key, op.keep_for, &op.quota, op.hits, now);
                }
            }
        }
        outcomes
    }
}

impl Engine {
    /// Replaces this engine's copy of a bucket that `settle_locally(…, 1, …)` decides on (the
    /// cached mode's local bucket) with the shared counters' state, then counts again the
    /// `since` hits admitted here after that state was read (they are in the next flush).
    pub fn adopt_shared(&self, op: &BucketOp, state: BucketState, since: u64, now: Nanos) {
        let local = local_share(op, 1);
        self.buckets
            .update(local.key, local.keep_for, now, |bucket| {
                *bucket = state;
                if since > 0 {
                    // Over the limit, the shared state already says so: nothing more to count.
                    bucket.apply(&local.quota, now, since, Op::Consume);
                }
            });
    }
}

fn local_share(op: &BucketOp, share: u64) -> BucketOp {
    let mut op = *op;
    op.quota.limit = (op.quota.limit / share).max(1);
    op.quota.capacity = (op.quota.capacity / share).max(1);
    // The local buckets are another bucket than the shared one: keep them apart.
    op.key ^= LOCAL_SHARE_SALT;
    op
}

/// Keeps a replica's fallback buckets apart from any bucket the in-process path keeps.
const LOCAL_SHARE_SALT: u128 = 0x5ea1_f00d_0000_0000_0000_0000_0000_0001;

#[cfg(test)]
#[path = "engine_prepared_tests.rs"]
mod tests;
