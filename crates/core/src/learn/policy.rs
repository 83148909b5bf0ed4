//! Policy: a risk score becomes an action on a client, and actions expire.
//!
//! - risk ≥ `block_at` → block; `throttle_at` ≤ risk < `block_at` → throttle to
//!   `throttle_per_minute`; below → no new action;
//! - an action lasts `action_ttl` and is re-evaluated each minute: flagged again renews it (the
//!   stronger of the old and new kinds while the old is unexpired); not flagged lets it run out;
//! - nothing is acted on during cold start (no model yet), nor for a client with fewer than
//!   `min_requests` requests in the minute (too little evidence; a call whose evidence spans
//!   earlier minutes, the slow failure window, counts the window's), nor for an allowlisted client;
//! - PRM clients are never acted on by an anomaly action: what the signals call for against them
//!   is recorded (`reported`), so they keep every limit their rules give them.
//!
//! The rest of the safety envelope — no adaptive limit below a rule's `floor` — is applied where the
//! rules are known, in the engine (`actions::ActionTable::effective`). This module decides what to
//! do; it does not enforce anything.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::actions::{Action, ActionKind, ActionTable, Signal};
use super::lists::Lists;
use crate::time::Nanos;

/// Clients no adaptive action ever touches: exact ids (IP, session or user id) or IP networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    exact: Vec<String>,
    networks: Vec<(IpAddr, u8)>,
}

impl Allowlist {
    /// Parses comma- or whitespace-separated entries: `10.0.0.0/8`, `192.0.2.7`, `ops-user`.
    pub fn parse(text: &str) -> Result<Allowlist, String> {
        let mut list = Allowlist::default();
        for entry in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            match entry.split_once('/') {
                Some((ip, bits)) => {
                    let ip: IpAddr = ip
                        .parse()
                        .map_err(|_| format!("entry {entry:?}: not an IP network"))?;
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    let bits: u8 = bits
                        .parse()
                        .ok()
                        .filter(|b| *b <= max)
                        .ok_or_else(|| format!("entry {entry:?}: prefix must be 0..={max}"))?;
                    list.networks.push((ip, bits));
                }
                None => list
                    .exact
                    .push(super::observe::bounded_key(entry).into_owned()),
            }
        }
        Ok(list)
    }

    /// Whether a client key is allowlisted. A user key `user:alice` matches the entry `alice`
    /// (or `user:alice`); a network identity matches its exact entry or a network holding it.
    pub fn contains(&self, client: &str) -> bool {
        // Exact entries are kept bounded (`bounded_key`); so is the key they are compared with.
        let client = &*super::observe::bounded_key(client);
        let user = super::observe::user_of_key(client);
        if self
            .exact
            .iter()
            .any(|e| e == client || user == Some(e.as_str()))
        {
            return true;
        }
        // Asked for every scored client every minute: without networks (the default list is
        // empty) the key is not parsed as an address.
        if self.networks.is_empty() {
            return false;
        }
        let Ok(ip) = client.parse::<IpAddr>() else {
            return false;
        };
        self.networks
            .iter()
            .any(|&(net, bits)| in_network(ip, net, bits))
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let mask = |len: u32, bits: u8| -> u128 {
        if bits == 0 {
            0
        } else {
            (!0u128) << (len - bits as u32)
        }
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = mask(32, bits) as u32;
            u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = mask(128, bits);
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    pub block_at: f64,
    pub throttle_at: f64,
    pub throttle_per_minute: u64,
    pub prm_floor_per_minute: u64,
    pub action_ttl: Duration,
    pub min_requests: u32,
    pub allowlist: Allowlist,
    /// Compute and record actions, never enforce them.
    pub shadow: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            // The forest alone acts only on strong outliers: on the generated worlds and on real
            // sessions people score 0.74–0.77 like bots do, so the site-calibrated signals
            // (volume, failures) carry detection and the forest is the last resort (its threshold
            // rises further with the site's own score distribution, `forest_budget`).
            block_at: 0.95,
            throttle_at: 0.85,
            throttle_per_minute: 10,
            prm_floor_per_minute: 60,
            action_ttl: Duration::from_secs(300),
            min_requests: 10,
            allowlist: Allowlist::default(),
            shadow: false,
        }
    }
}

/// What the signals call for against one client: an action, the signal and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub kind: ActionKind,
    pub signal: Signal,
    pub why: Arc<str>,
    /// Requests the evidence spans when it reaches back over earlier minutes (the slow failure
    /// window); 0 when it is this minute's alone. Counts towards `min_requests`.
    pub evidence: u32,
}

/// One client's evidence this minute.
#[derive(Clone, Debug)]
pub struct Assessment<'a> {
    pub client: &'a str,
    /// The score recorded for the client (the forest's, or a signal's).
    pub risk: f64,
    pub requests: u32,
    pub prm: bool,
    /// What the signals call for, if anything.
    pub call: Option<Call>,
}

impl Assessment<'_> {
    /// Requests the evidence rests on: this minute's, or the call's window when longer.
    pub fn evidence(&self) -> u32 {
        self.requests
            .max(self.call.as_ref().map_or(0, |c| c.evidence))
    }
}

/// A change to a client's adaptive limit, as kept in history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adjustment {
    pub at: Nanos,
    pub client: String,
    pub from: Option<ActionKind>,
    pub to: Option<ActionKind>,
    pub score: f64,
    /// `flagged`, `renewed`, `escalated`, `expired` or `reported` (a PRM client the signals
    /// called for: recorded, not acted on).
    pub cause: &'static str,
    /// The signal and why (empty for an expiry).
    #[serde(default)]
    pub signal: Option<Signal>,
    #[serde(default)]
    pub why: String,
    pub shadow: bool,
    pub expires_at: Option<Nanos>,
}

impl PolicyConfig {
    /// The action the signals call for, inside the envelope: nothing with too little evidence,
    /// for an allowlisted client, or for a PRM client (reported instead).
    pub fn action_for(&self, a: &Assessment<'_>) -> Option<Call> {
        if a.evidence() < self.min_requests || self.allowlist.contains(a.client) || a.prm {
            return None;
        }
        a.call.clone()
    }

    /// The thresholds' action for a forest risk: block at `block_at`, throttle at `throttle_at`.
    pub fn kind_for_risk(&self, risk: f64) -> Option<ActionKind> {
        if risk >= self.block_at {
            Some(ActionKind::Block)
        } else if risk >= self.throttle_at {
            Some(ActionKind::Throttle {
                per_minute: self.throttle_per_minute,
            })
        } else {
            None
        }
    }

    /// One minute of policy with no operator lists (see [`PolicyConfig::step_with_lists`]).
    pub fn step(
        &self,
        now: Nanos,
        assessments: &[Assessment<'_>],
        current: &ActionTable,
        acting: bool,
        model_version: u64,
    ) -> (ActionTable, Vec<Adjustment>) {
        self.step_with_lists(
            now,
            assessments,
            current,
            acting,
            model_version,
            &Lists::default(),
        )
    }

    /// One minute of policy: the next action table and what changed. `acting` is false during
    /// cold start: existing actions still run out, no new ones are taken. The operators' lists
    /// come first: an allowlisted client is never acted on (an action in force is lifted), a
    /// denylisted one is blocked on that evidence alone (PRM too).
    pub fn step_with_lists(
        &self,
        now: Nanos,
        assessments: &[Assessment<'_>],
        current: &ActionTable,
        acting: bool,
        model_version: u64,
        lists: &Lists,
    ) -> (ActionTable, Vec<Adjustment>) {
        let ttl = self.action_ttl.as_nanos() as u64;
        let mut next: FxHashMap<Arc<str>, Action> = FxHashMap::default();
        let mut changes = Vec::new();
        for a in assessments {
            let old = current.get(a.client);
            if lists.allows(a.client) {
                continue;
            }
            let denied = lists.denies(a.client);
            if acting
                && !denied
                && a.prm
                && a.evidence() >= self.min_requests
                && !self.allowlist.contains(a.client)
                && let Some(call) = &a.call
            {
                // Known-good by policy: a PRM client is reported, never throttled by an anomaly.
                changes.push(Adjustment {
                    at: now,
                    client: a.client.to_string(),
                    from: None,
                    to: None,
                    score: a.risk,
                    cause: "reported",
                    shadow: true,
                    expires_at: None,
                    signal: Some(call.signal),
                    why: call.why.to_string(),
                });
            }
            let wanted = if denied {
                Some(Call {
                    kind: ActionKind::Block,
                    signal: Signal::Denylist,
                    why: "on the operators' denylist".into(),
                    evidence: 0,
                })
            } else if acting {
                self.action_for(a)
            } else {
                None
            };
            let Some(call) = wanted else { continue };
            let (kind, cause, signal, why) = match old {
                Some(old) if old.expires_at > now => {
                    let stronger = old.kind.stronger(call.kind);
                    if stronger == old.kind {
                        // The kind in force is the old one: so is what decided it.
                        (stronger, "renewed", old.signal, old.why.clone())
                    } else {
                        (stronger, "escalated", call.signal, call.why.clone())
                    }
                }
                _ => (call.kind, "flagged", call.signal, call.why.clone()),
            };
            let action = Action {
                client: Arc::from(a.client),
                kind,
                score: a.risk,
                since: old.filter(|o| o.expires_at > now).map_or(now, |o| o.since),
                expires_at: now + ttl,
                shadow: self.shadow,
                model_version,
                signal,
                why: why.clone(),
            };
            if cause != "renewed" {
                changes.push(Adjustment {
                    at: now,
                    client: a.client.to_string(),
                    from: old.map(|o| o.kind),
                    to: Some(kind),
                    score: a.risk,
                    cause,
                    shadow: self.shadow,
                    expires_at: Some(action.expires_at),
                    signal: Some(signal),
                    why: why.to_string(),
                });
            }
            next.insert(action.client.clone(), action);
        }
        // Unflagged this minute: keep until expiry, then record the expiry.
        for old in current.iter() {
            if next.contains_key(&old.client) {
                continue;
            }
            if old.expires_at > now
                && !self.allowlist.contains(&old.client)
                && !lists.allows(&old.client)
            {
                next.insert(old.client.clone(), old.clone());
            } else {
                changes.push(Adjustment {
                    at: now,
                    client: old.client.to_string(),
                    from: Some(old.kind),
                    to: None,
                    score: old.score,
                    cause: if old.expires_at > now {
                        "allowlisted"
                    } else {
                        "expired"
                    },
                    shadow: old.shadow,
                    expires_at: None,
                    signal: None,
                    why: String::new(),
                });
            }
        }
        changes.sort_by(|a, b| a.client.cmp(&b.client));
        (ActionTable::from_map(next), changes)
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
