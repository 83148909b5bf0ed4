//! The learner's corrections between minutes: the operators' lists (taking effect at once) and
//! lifts (`ResetClient`, a false-positive mark), each recorded as adjustments. [`Correction`] is
//! one operator's correction as a replay's corrections file gives it; the service applies the same
//! steps around its durable lists.

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::Learner;
use crate::learn::actions::{Action, ActionKind, ActionTable, Signal};
use crate::learn::lists::{ListEntry, ListKind, Lists};
use crate::learn::policy::Adjustment;
use crate::time::Nanos;

/// How long a client marked as a false positive stays allowlisted unless told otherwise.
pub const FALSE_POSITIVE_TTL: Duration = Duration::from_secs(86_400);

/// What an operator did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorrectionKind {
    /// Lifted its actions and allowlisted it for a while (default a day); its minutes are then
    /// learned as ordinary traffic.
    FalsePositive,
    /// Put on the allowlist.
    Allow,
    /// Put on the denylist.
    Deny,
    /// Its actions lifted (`ResetClient`).
    Reset,
}

impl CorrectionKind {
    pub fn name(self) -> &'static str {
        match self {
            CorrectionKind::FalsePositive => "false_positive",
            CorrectionKind::Allow => "allow",
            CorrectionKind::Deny => "deny",
            CorrectionKind::Reset => "reset",
        }
    }

    pub fn parse(text: &str) -> Option<CorrectionKind> {
        [
            CorrectionKind::FalsePositive,
            CorrectionKind::Allow,
            CorrectionKind::Deny,
            CorrectionKind::Reset,
        ]
        .into_iter()
        .find(|k| k.name() == text)
    }
}

/// One operator's correction of one client (an id, an address or, for the lists, a network).
#[derive(Clone, Debug, PartialEq)]
pub struct Correction {
    pub kind: CorrectionKind,
    pub client: String,
    /// How long a list entry lasts (`None`: until removed; a false positive: a day).
    pub ttl: Option<Duration>,
    pub reason: String,
    pub actor: String,
}

/// The reason a false-positive mark's allowlist entry carries.
pub fn false_positive_reason(reason: &str) -> String {
    if reason.is_empty() {
        "false positive".to_string()
    } else {
        format!("false positive: {reason}")
    }
}

impl Learner {
    /// Applies one correction now, as the service's API would: returns what changed.
    pub fn apply(&mut self, c: &Correction, now: Nanos) -> Vec<Adjustment> {
        let entry = |list: ListKind, reason: String, ttl: Option<Duration>| ListEntry {
            list,
            client: c.client.clone(),
            reason,
            actor: c.actor.clone(),
            created_at: now,
            expires_at: ttl.map(|t| now + t.as_nanos() as Nanos),
        };
        let with = |learner: &Learner, e: ListEntry| {
            let mut entries = learner.lists.clone();
            entries.push(e);
            entries
        };
        match c.kind {
            CorrectionKind::Reset => self.lift(std::slice::from_ref(&c.client), now, "reset"),
            CorrectionKind::FalsePositive => {
                let e = entry(
                    ListKind::Allow,
                    false_positive_reason(&c.reason),
                    Some(c.ttl.unwrap_or(FALSE_POSITIVE_TTL)),
                );
                self.mark_false_positive(&c.client, with(self, e), now)
            }
            CorrectionKind::Allow | CorrectionKind::Deny => {
                let list = if c.kind == CorrectionKind::Allow {
                    ListKind::Allow
                } else {
                    ListKind::Deny
                };
                let e = entry(list, c.reason.clone(), c.ttl);
                self.set_lists(with(self, e), now)
            }
        }
    }

    /// A false positive: its actions lifted (cause `false_positive`), then the lists installed —
    /// `entries` holding its allowlist entry. Returns what changed.
    pub fn mark_false_positive(
        &mut self,
        client: &str,
        entries: Vec<ListEntry>,
        now: Nanos,
    ) -> Vec<Adjustment> {
        let mut changes = self.lift(&[client.to_string()], now, "false_positive");
        changes.extend(self.set_lists(entries, now));
        changes
    }

    /// The operators' list entries (replacing the previous ones); takes effect at once: actions
    /// on allowlisted clients are lifted, exact denylisted ids blocked. Returns what changed.
    pub fn set_lists(&mut self, entries: Vec<ListEntry>, now: Nanos) -> Vec<Adjustment> {
        self.lists = entries;
        let lists = Lists::compile(&self.lists, now);
        let mut changes = Vec::new();
        let mut by_client: FxHashMap<Arc<str>, Action> = FxHashMap::default();
        for a in self.actions.iter() {
            if lists.allows(&a.client) || self.config.policy.allowlist.contains(&a.client) {
                changes.push(lifted(a, now, "allowlisted"));
            } else {
                by_client.insert(a.client.clone(), a.clone());
            }
        }
        changes.extend(self.block_denied(&lists, &mut by_client, now));
        self.actions = Arc::new(ActionTable::from_map(by_client));
        changes
    }

    /// Blocks every exact denylisted id not blocked yet, and lifts the denylist's blocks on
    /// clients no longer on it; returns the adjustments.
    pub(super) fn block_denied(
        &self,
        lists: &Lists,
        by_client: &mut FxHashMap<Arc<str>, Action>,
        now: Nanos,
    ) -> Vec<Adjustment> {
        let ttl = self.config.policy.action_ttl.as_nanos() as u64;
        let mut changes = Vec::new();
        by_client.retain(|client, a| {
            let stale = a.signal == Signal::Denylist && !lists.denies(client);
            if stale {
                changes.push(lifted(a, now, "undenylisted"));
            }
            !stale
        });
        for key in lists.deny_keys() {
            let old = by_client.get(key.as_str());
            if old.is_some_and(|a| a.kind == ActionKind::Block && a.signal == Signal::Denylist) {
                let a = by_client.get_mut(key.as_str()).expect("present");
                a.expires_at = a.expires_at.max(now + ttl);
                continue;
            }
            let action = Action {
                client: Arc::from(key.as_str()),
                kind: ActionKind::Block,
                score: 1.0,
                since: now,
                expires_at: now + ttl,
                shadow: false,
                model_version: self.version,
                signal: Signal::Denylist,
                why: "on the operators' denylist".into(),
            };
            changes.push(Adjustment {
                at: now,
                client: key.clone(),
                from: old.map(|o| o.kind),
                to: Some(ActionKind::Block),
                score: 1.0,
                cause: "denylisted",
                shadow: false,
                expires_at: Some(action.expires_at),
                signal: Some(Signal::Denylist),
                why: action.why.to_string(),
            });
            by_client.insert(action.client.clone(), action);
        }
        changes
    }

    /// Lifts the actions on these client keys now (`ResetClient`, a false-positive mark):
    /// returns what changed, with `cause`.
    pub fn lift(&mut self, clients: &[String], now: Nanos, cause: &'static str) -> Vec<Adjustment> {
        let mut changes = Vec::new();
        let mut by_client: FxHashMap<Arc<str>, Action> = FxHashMap::default();
        for a in self.actions.iter() {
            if clients
                .iter()
                .any(|c| *crate::learn::observe::bounded_key(c) == *a.client)
            {
                changes.push(lifted(a, now, cause));
            } else {
                by_client.insert(a.client.clone(), a.clone());
            }
        }
        self.actions = Arc::new(ActionTable::from_map(by_client));
        changes
    }
}

/// An action lifted by an operator or a list, as an adjustment.
fn lifted(a: &Action, now: Nanos, cause: &'static str) -> Adjustment {
    Adjustment {
        at: now,
        client: a.client.to_string(),
        from: Some(a.kind),
        to: None,
        score: a.score,
        cause,
        shadow: a.shadow,
        expires_at: None,
        signal: None,
        why: String::new(),
    }
}
