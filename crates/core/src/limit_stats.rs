//! Per-limit decision counts: how often each limit of each rule let a decision through, let it
//! through near its limit, denied it, or would have denied it in shadow mode. The parity with
//! envoyproxy/ratelimit's per-descriptor `within_limit / near_limit / over_limit / shadow_mode`
//! stats, keyed by rule and limit (never by client), so their number is bounded by the rules.
//!
//! Each `LimitLabel` owns one set; a rule-set reload hands a kept limit its previous label, so
//! the counts run on across reloads (`RuleSet::keep_counts_of`). Reading them is the adapters'
//! business (Prometheus, the dashboard); this module only counts.

use std::sync::atomic::{AtomicU64, Ordering};

/// A limit is near when this share of it or more is used after the decision (envoyproxy/ratelimit's
/// default `NEAR_LIMIT_RATIO` is 0.8).
pub const NEAR_LIMIT_RATIO: f64 = 0.8;

/// Counts for one limit since start (or since the limit first appeared).
#[derive(Debug, Default)]
pub struct LimitCounters {
    within: AtomicU64,
    near: AtomicU64,
    over: AtomicU64,
    shadow_over: AtomicU64,
}

/// What one decision did to one limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitOutcome {
    /// Allowed with more than a fifth of the limit left.
    Within,
    /// Allowed with a fifth of the limit or less left.
    Near,
    /// Denied.
    Over,
    /// A shadow-mode limit would have denied (the request went through).
    ShadowOver,
}

impl LimitOutcome {
    pub const ALL: [LimitOutcome; 4] = [
        LimitOutcome::Within,
        LimitOutcome::Near,
        LimitOutcome::Over,
        LimitOutcome::ShadowOver,
    ];

    /// The outcome of a decision that left `remaining` of `limit` (allowed) or was denied.
    pub fn of(allowed: bool, shadow: bool, remaining: u64, limit: u64) -> LimitOutcome {
        match (allowed, shadow) {
            (false, true) => LimitOutcome::ShadowOver,
            (false, false) => LimitOutcome::Over,
            (true, _) => {
                let used = limit.saturating_sub(remaining) as f64;
                if limit > 0 && used >= NEAR_LIMIT_RATIO * limit as f64 {
                    LimitOutcome::Near
                } else {
                    LimitOutcome::Within
                }
            }
        }
    }

    /// The name the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitOutcome::Within => "ok",
            LimitOutcome::Near => "near_limit",
            LimitOutcome::Over => "over_limit",
            LimitOutcome::ShadowOver => "shadow",
        }
    }
}

impl LimitCounters {
    pub fn count(&self, outcome: LimitOutcome) {
        let counter = match outcome {
            LimitOutcome::Within => &self.within,
            LimitOutcome::Near => &self.near,
            LimitOutcome::Over => &self.over,
            LimitOutcome::ShadowOver => &self.shadow_over,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, outcome: LimitOutcome) -> u64 {
        let counter = match outcome {
            LimitOutcome::Within => &self.within,
            LimitOutcome::Near => &self.near,
            LimitOutcome::Over => &self.over,
            LimitOutcome::ShadowOver => &self.shadow_over,
        };
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::LimitOutcome::{self, *};

    #[test]
    fn outcome_of_a_decision() {
        // (allowed, shadow, remaining, limit) -> outcome
        let table: [((bool, bool, u64, u64), LimitOutcome); 8] = [
            ((true, false, 10, 10), Within),
            ((true, false, 3, 10), Within),
            ((true, false, 2, 10), Near),
            ((true, false, 0, 10), Near),
            ((true, true, 0, 10), Near),
            ((false, false, 0, 10), Over),
            ((false, true, 0, 10), ShadowOver),
            ((true, false, 0, 0), Within),
        ];
        for ((allowed, shadow, remaining, limit), expected) in table {
            assert_eq!(
                LimitOutcome::of(allowed, shadow, remaining, limit),
                expected,
                "allowed={allowed} shadow={shadow} remaining={remaining} limit={limit}"
            );
        }
    }

    #[test]
    fn counts_each_outcome_apart() {
        let c = super::LimitCounters::default();
        c.count(Near);
        c.count(Near);
        c.count(Over);
        assert_eq!(
            LimitOutcome::ALL.map(|o| c.get(o)),
            [0, 2, 1, 0],
            "within, near, over, shadow"
        );
    }
}
