//! What the rules, the anomaly actions and the pressure cut say of a quota bucket (Envoy's
//! Rate Limit Quota Service): the engine's side of an RLQS assignment, before it is divided
//! among the Envoys reporting the bucket (`quota::QuotaBoard`).
//!
//! A bucket id is an order-free map of entries; rules are nested descriptors. The bucket meets
//! the rules as a `ShouldAllow` subject does (`RuleSet::match_subject`): every rule whose path
//! is made of the bucket's entries, in any order, applies, and the most specific one (the
//! longest path; the first found among equals) decides. Its first limit with a rate is the
//! quota. The client an action is on is read from the entries as RLS reads a descriptor's
//! (`remote_address`, `user_id`, `tier`…).

use smallvec::SmallVec;

use super::Engine;
use crate::bucket::Op;
use crate::engine::DescriptorInput;
use crate::keys::caller_from_descriptors;
use std::sync::atomic::Ordering;

use crate::learn::actions::ActionKind;
use crate::learn::observe::Event;
use crate::limit::{Quota, Unit};
use crate::matcher::SubjectMatch;
use crate::time::Nanos;

/// What governs a bucket now.
#[derive(Clone, Debug, PartialEq)]
pub enum BucketQuota {
    /// No rule covers the bucket (or its rule sets no rate): Envoy should stop reporting it.
    Uncovered,
    /// Its client is blocked by an anomaly action (or the operators' denylist).
    Blocked { client: String },
    /// `limit` requests per `unit` for the whole bucket, from `rule` (cut under pressure when
    /// `cut`); `throttle` when an anomaly action throttles its client to that many a minute.
    Limit {
        rule: String,
        limit: u64,
        unit: Unit,
        cut: bool,
        throttle: Option<u64>,
    },
}

impl Engine {
    /// The quota of the bucket `entries` in `domain` at `now` (at most 8 entries are matched:
    /// the rest are ignored).
    pub fn bucket_quota(&self, domain: &str, entries: &[(&str, &str)], now: Nanos) -> BucketQuota {
        let fields = &entries[..entries.len().min(8)];
        let rules = self.rules();
        let mut matches: SmallVec<[SubjectMatch<'_>; 8]> = SmallVec::new();
        rules.match_subject(domain, fields, &mut matches);
        let Some(best) = matches
            .iter()
            .enumerate()
            .max_by_key(|(i, m)| (m.order.len(), std::cmp::Reverse(*i)))
            .map(|(_, m)| m)
        else {
            return BucketQuota::Uncovered;
        };
        let Some((limit, quota)) = best
            .rule
            .limits
            .iter()
            .find_map(|l| l.quota.map(|q| (l, q)))
        else {
            return BucketQuota::Uncovered;
        };
        let input = DescriptorInput {
            entries: fields.iter().copied().collect(),
            hits: 0,
            op: Op::Check,
            limit_override: None,
        };
        let caller = caller_from_descriptors(std::slice::from_ref(&input));
        let action = self.action_for(&caller, now).filter(|a| !a.shadow);
        if let Some(a) = &action
            && a.kind == ActionKind::Block
        {
            return BucketQuota::Blocked {
                client: a.client.to_string(),
            };
        }
        let (pressured, cut): (Quota, bool) =
            self.pressured(quota, limit, best.rule.priority(), caller.tier);
        let (limit, unit) = per_unit(pressured.limit, pressured.unit, pressured.multiplier);
        BucketQuota::Limit {
            rule: best.rule.id.to_string(),
            limit,
            unit,
            cut,
            throttle: action.and_then(|a| match a.kind {
                ActionKind::Throttle { per_minute } => Some(per_minute),
                ActionKind::Block => None,
            }),
        }
    }
}

/// `limit` per `multiplier` units as a number per one unit (Envoy's quotas have no multiplier),
/// rounded down so an assignment never admits more than the rule's rate: the smallest unit that
/// loses at most 5% to the rounding, else the one that loses least — never a unit longer than
/// needed to hold the period (a weekly limit is not told per year). "5 per 30 seconds" is 10 a
/// minute; "1,000 per 5 minutes" 200 a minute; "3 per 7 days" 12 a month.
pub fn per_unit(limit: u64, unit: Unit, multiplier: u32) -> (u64, Unit) {
    if multiplier <= 1 {
        return (limit, unit);
    }
    const UNITS: [Unit; 6] = [
        Unit::Second,
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Month,
        Unit::Year,
    ];
    let period = u128::from(unit.seconds()) * u128::from(multiplier);
    let longest = UNITS
        .iter()
        .position(|u| u128::from(u.seconds()) >= period)
        .unwrap_or(UNITS.len() - 1);
    let mut least: Option<(u64, Unit, f64)> = None;
    for &u in &UNITS[..=longest] {
        let n = (u128::from(limit) * u128::from(u.seconds()) / period) as u64;
        if n == 0 {
            continue;
        }
        let exact = limit as f64 * u.seconds() as f64 / period as f64;
        let loss = 1.0 - n as f64 / exact;
        if loss <= 0.05 {
            return (n, u);
        }
        if least.is_none_or(|(_, _, l)| loss < l) {
            least = Some((n, u, loss));
        }
    }
    least.map_or((0, UNITS[longest]), |(n, u, _)| (n, u))
}

/// Most requests of one bucket's usage observed one by one for the learning loop; the rest are
/// counted only. A report's counts are whatever an Envoy says: observing each would let one
/// report cost unbounded CPU (the gRPC edge also bounds a whole report message).
pub const MAX_OBSERVED_PER_REPORT: u64 = 1_000;

impl Engine {
    /// An Envoy's usage report for a bucket (RLQS): `allowed` and `denied` requests it decided
    /// itself over the `elapsed` ending at `now`. Counted as decisions, as RLS's are, and
    /// observed for the learning loop under the bucket's client, spread evenly over the span
    /// (at most `max_observed` of them, in proportion); returns how many were observed.
    pub fn record_usage(
        &self,
        entries: &[(&str, &str)],
        allowed: u64,
        denied: u64,
        elapsed: Nanos,
        now: Nanos,
        max_observed: u64,
    ) -> u64 {
        let input = DescriptorInput {
            entries: entries.iter().take(8).copied().collect(),
            hits: 0,
            op: Op::Check,
            limit_override: None,
        };
        let caller = caller_from_descriptors(std::slice::from_ref(&input));
        let total = allowed.saturating_add(denied);
        self.stats.decisions.fetch_add(total, Ordering::Relaxed);
        self.stats.denied.fetch_add(denied, Ordering::Relaxed);
        self.stats.count_tier_many(caller.tier, allowed, denied);
        if total == 0 || caller.remote_address.is_empty() && caller.user_id.is_empty() {
            return 0;
        }
        let observed = total.min(max_observed);
        if observed == 0 {
            return 0;
        }
        let denied_observed = (denied as u128 * observed as u128 / total as u128) as u64;
        let start = now.saturating_sub(elapsed);
        for i in 0..observed {
            let at = start + (elapsed as u128 * (i + 1) as u128 / observed as u128) as u64;
            let event = Event::Decision {
                allowed: i >= denied_observed,
                anomaly: false,
                cut: false,
            };
            self.observe(&caller, event, at);
        }
        observed
    }
}

#[cfg(test)]
#[path = "engine_quota_tests.rs"]
mod tests;
