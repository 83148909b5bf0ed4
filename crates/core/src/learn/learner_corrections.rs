//! The learner's corrections between minutes: the operators' lists (taking effect at once) and
//! lifts (`ResetClient`, a false-positive mark), each recorded as adjustments.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::Learner;
use crate::learn::actions::{Action, ActionKind, ActionTable, Signal};
use crate::learn::lists::{ListEntry, Lists};
use crate::learn::policy::Adjustment;
use crate::time::Nanos;

impl Learner {
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
            if clients.iter().any(|c| **c == *a.client) {
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
