//! What a decision takes and returns: the caller's descriptors or subject going in, the
//! verdict and its per-limit statuses coming out, and the engine's counters.
//!
//! Plain data; the decision itself is `engine`, which re-exports these types.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use smallvec::SmallVec;

use super::bucket::Op;
use super::learn::actions::ActionKind;
use super::limit::{Quota, Rate};
use super::matcher::LimitLabel;
use super::rules::{Tier, subject_keys};
use super::time::Nanos;

/// One Envoy descriptor, borrowed from the request.
#[derive(Clone, Debug, Default)]
pub struct DescriptorInput<'a> {
    pub entries: SmallVec<[(&'a str, &'a str); 8]>,
    pub hits: u64,
    pub op: Op,
    /// Envoy may send the limit itself; it then replaces any configured rule for this descriptor.
    pub limit_override: Option<Rate>,
}

/// Who is calling and what, for `ShouldAllow`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject<'a> {
    pub remote_address: &'a str,
    pub user_id: &'a str,
    pub tier: Tier,
    pub endpoint: &'a str,
    pub method: &'a str,
    pub user_agent: &'a str,
}

impl<'a> Subject<'a> {
    /// The subject as descriptor fields; see `matcher` for how rules match them.
    pub fn fields(&self) -> [(&'static str, &'a str); 5] {
        [
            (subject_keys::ENDPOINT, self.endpoint),
            (subject_keys::METHOD, self.method),
            (subject_keys::TIER, self.tier.as_str()),
            (subject_keys::USER_ID, self.user_id),
            (subject_keys::REMOTE_ADDRESS, self.remote_address),
        ]
    }
}

/// The limit a status reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedLimit {
    /// Which rule and limit (one shared allocation: one reference count to bump per status).
    pub label: Arc<LimitLabel>,
    pub quota: Quota,
}

/// The answer for one descriptor (or, for `ShouldAllow`, the deciding limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitStatus {
    /// An enforced limit denied.
    pub over_limit: bool,
    /// A shadow-mode limit would have denied.
    pub shadow_over: bool,
    /// `None` when no limit applies (no rule, or an unlimited one).
    pub limit: Option<ReportedLimit>,
    pub remaining: u64,
    pub reset_after: Nanos,
    pub retry_after: Nanos,
}

impl LimitStatus {
    /// Orders statuses by how close to their limit they are: enforced denials first, then shadow
    /// denials, then least remaining. The closest speaks for a response.
    pub(super) fn urgency(&self) -> (bool, bool, bool, std::cmp::Reverse<u64>) {
        (
            self.over_limit,
            self.shadow_over,
            self.limit.is_some(),
            std::cmp::Reverse(self.remaining),
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    pub statuses: SmallVec<[LimitStatus; 2]>,
    pub over_limit: bool,
    /// Some shadow-mode limit would have denied (and did not).
    pub shadow_over: bool,
    /// An anomaly action applied to the caller (enforced or in shadow).
    pub anomaly: Option<AnomalyHit>,
    /// A limit cut under pressure (forecast or backend load) denied this request.
    pub forecast_cut: bool,
}

/// An anomaly action met by a decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnomalyHit {
    /// The action as enforced: after the rules' floors (a block may become a throttle).
    pub kind: ActionKind,
    pub score: f64,
    /// Recorded, not enforced.
    pub shadow: bool,
    /// The action denied this request (or, in shadow, would have).
    pub denied: bool,
}

impl Verdict {
    /// A verdict with one empty status per descriptor (a `ShouldAllow` subject is one).
    pub fn for_slots(slots: usize) -> Verdict {
        Verdict {
            statuses: (0..slots).map(|_| LimitStatus::default()).collect(),
            ..Verdict::default()
        }
    }

    /// The status closest to its limit, if any limit applied.
    pub fn deciding(&self) -> Option<&LimitStatus> {
        self.statuses
            .iter()
            .filter(|s| s.limit.is_some())
            .max_by_key(|s| s.urgency())
    }
}

/// The live state of one limit for one subject (`GetClient`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitState {
    pub limit: ReportedLimit,
    pub shadow: bool,
    /// False when no bucket exists yet: the subject has its full allowance.
    pub tracked: bool,
    pub remaining: u64,
    pub reset_after: Nanos,
    /// The limit reported is cut under pressure for this subject.
    pub cut: bool,
}

/// Counters since start; read by health/metrics and tests.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub decisions: AtomicU64,
    pub denied: AtomicU64,
    pub shadow_denied: AtomicU64,
    /// Denied by an anomaly action (included in `denied`).
    pub anomaly_denied: AtomicU64,
    /// Denied by a limit cut under pressure (included in `denied`).
    pub forecast_denied: AtomicU64,
    /// Decisions and denials by the caller's tier (`Tier::index`).
    pub by_tier: [TierStats; 2],
}

/// One tier's share of the counters.
#[derive(Debug, Default)]
pub struct TierStats {
    pub decisions: AtomicU64,
    pub denied: AtomicU64,
}

impl EngineStats {
    /// Counts one decision of a caller of `tier`.
    pub(crate) fn count_tier(&self, tier: Tier, denied: bool) {
        let t = &self.by_tier[tier.index()];
        t.decisions.fetch_add(1, Ordering::Relaxed);
        if denied {
            t.denied.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts `allowed` and `denied` decisions of a caller of `tier` at once (RLQS usage).
    pub(crate) fn count_tier_many(&self, tier: Tier, allowed: u64, denied: u64) {
        let t = &self.by_tier[tier.index()];
        t.decisions
            .fetch_add(allowed.saturating_add(denied), Ordering::Relaxed);
        t.denied.fetch_add(denied, Ordering::Relaxed);
    }
}
