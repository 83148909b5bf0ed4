//! Anomaly actions in force: which clients are blocked or throttled, until when, and why.
//!
//! The learner builds a new immutable `ActionTable` each minute and the engine swaps it in whole
//! (`ArcSwap`), so the decision path reads it without locks. Applying the rules' floors (the part
//! of the safety envelope that depends on which rule matched) happens at decision time through
//! [`ActionKind::within_floor`].

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::observe::{bounded_key, user_of_key};
use crate::time::Nanos;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionKind {
    Block,
    Throttle { per_minute: u64 },
}

impl ActionKind {
    /// Block beats any throttle; a tighter throttle beats a looser one.
    pub fn stronger(self, other: ActionKind) -> ActionKind {
        match (self, other) {
            (ActionKind::Block, _) | (_, ActionKind::Block) => ActionKind::Block,
            (ActionKind::Throttle { per_minute: a }, ActionKind::Throttle { per_minute: b }) => {
                ActionKind::Throttle {
                    per_minute: a.min(b),
                }
            }
        }
    }

    /// The action once a rule floor (requests per minute) is respected: never below the floor.
    pub fn within_floor(self, floor_per_minute: u64) -> ActionKind {
        match self {
            _ if floor_per_minute == 0 => self,
            ActionKind::Block => ActionKind::Throttle {
                per_minute: floor_per_minute,
            },
            ActionKind::Throttle { per_minute } => ActionKind::Throttle {
                per_minute: per_minute.max(floor_per_minute),
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Block => "block",
            ActionKind::Throttle { .. } => "throttle",
        }
    }
}

/// Which signal called for an action. Each is explainable on its own; `Action::why` says what it
/// saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The isolation forest's score, past the site-calibrated threshold.
    #[default]
    Forest,
    /// A tool user agent with mostly failing requests.
    Heuristic,
    /// Requests far beyond the site's per-client baseline (an endpoint's or the whole site's).
    Volume,
    /// Errors or authentication failures far beyond the site's per-client baseline.
    Failures,
    /// On the operators' denylist.
    Denylist,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Forest => "forest",
            Signal::Heuristic => "heuristic",
            Signal::Volume => "volume",
            Signal::Failures => "failures",
            Signal::Denylist => "denylist",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub client: Arc<str>,
    pub kind: ActionKind,
    /// Risk score that last triggered or renewed the action.
    pub score: f64,
    /// When the client was first flagged (kept across renewals).
    pub since: Nanos,
    pub expires_at: Nanos,
    /// Recorded only: decisions are not changed.
    pub shadow: bool,
    pub model_version: u64,
    /// What decided the kind in force (a renewal keeps the signal of the kind it keeps). Saved
    /// actions from before this field read as `forest`.
    #[serde(default)]
    pub signal: Signal,
    /// Why, in words: the evidence the signal saw (`420 requests/min; the site's p99 is 35 (threshold 140)`).
    #[serde(default)]
    pub why: Arc<str>,
}

/// The actions in force, by client key (a network identity or `user:<id>`).
#[derive(Clone, Debug, Default)]
pub struct ActionTable {
    by_client: FxHashMap<Arc<str>, Action>,
    /// User id → its key in `by_client`, so a decision finds a user's action without building
    /// the `user:` key.
    users: FxHashMap<Box<str>, Arc<str>>,
}

impl ActionTable {
    pub fn from_map(by_client: FxHashMap<Arc<str>, Action>) -> ActionTable {
        let users = by_client
            .keys()
            .filter_map(|k| user_of_key(k).map(|u| (u.into(), k.clone())))
            .collect();
        ActionTable { by_client, users }
    }

    pub fn from_actions(actions: impl IntoIterator<Item = Action>) -> ActionTable {
        ActionTable::from_map(actions.into_iter().map(|a| (a.client.clone(), a)).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// The action on `client` (as given or as stored: compared as `bounded_key` makes it).
    pub fn get(&self, client: &str) -> Option<&Action> {
        self.by_client.get(&*bounded_key(client))
    }

    /// The action in force for `client` at `now` (an expired one is ignored even before the next
    /// minute's table replaces it).
    pub fn active(&self, client: &str, now: Nanos) -> Option<&Action> {
        if self.by_client.is_empty() || client.is_empty() {
            return None;
        }
        self.by_client
            .get(&*bounded_key(client))
            .filter(|a| a.expires_at > now)
    }

    /// The action in force for a request from `address` by `user` (either may be empty): the
    /// stronger of the address's and the user's, the address's on a tie.
    pub fn active_for(&self, address: &str, user: &str, now: Nanos) -> Option<&Action> {
        if self.by_client.is_empty() {
            return None;
        }
        let by_address = self.active(address, now);
        let by_user = match self.users.is_empty() || user.is_empty() {
            true => None,
            false => self
                .users
                .get(&*bounded_key(user))
                .and_then(|key| self.by_client.get(key))
                .filter(|a| a.expires_at > now),
        };
        match (by_address, by_user) {
            (Some(a), Some(u)) if u.kind.stronger(a.kind) != a.kind => Some(u),
            (Some(a), _) => Some(a),
            (None, u) => u,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.by_client.values()
    }

    /// Actions sorted by client, for listing and persistence.
    pub fn sorted(&self) -> Vec<Action> {
        let mut all: Vec<Action> = self.by_client.values().cloned().collect();
        all.sort_by(|a, b| a.client.cmp(&b.client));
        all
    }
}

#[cfg(test)]
#[path = "actions_tests.rs"]
mod tests;
