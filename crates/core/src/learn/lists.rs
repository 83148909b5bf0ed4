//! The operators' client lists, in force at run time: an allowlist (never acted on; a client marked
//! as a false positive is on it for a while) and a denylist (blocked on this explicit evidence
//! alone, PRM or not); a client on both is allowed. Entries are exact ids (an address, a session
//! id, a user id — `alice` also covers `user:alice`) or IP networks, each with an optional expiry.
//!
//! Pure data: the service keeps them durable and audited, and hands the learner the entries.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::policy::Allowlist;
use crate::time::Nanos;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    Allow,
    Deny,
}

impl ListKind {
    pub fn name(self) -> &'static str {
        match self {
            ListKind::Allow => "allow",
            ListKind::Deny => "deny",
        }
    }
}

/// One entry of a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListEntry {
    pub list: ListKind,
    /// An exact id or an IP network (`10.0.0.0/8`).
    pub client: String,
    pub reason: String,
    pub actor: String,
    pub created_at: Nanos,
    /// `None`: until removed.
    pub expires_at: Option<Nanos>,
}

impl ListEntry {
    pub fn in_force(&self, now: Nanos) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// Checks an entry's client: an exact id, or an IP network with a valid prefix. `Err` says why.
pub fn check_client(client: &str) -> Result<(), String> {
    if client.trim().is_empty() || client.trim() != client {
        return Err("must be an address, network or id without surrounding spaces".into());
    }
    if client.contains(|c: char| c == ',' || c.is_whitespace()) {
        return Err("must be one address, network or id (no commas or spaces)".into());
    }
    Allowlist::parse(client).map(|_| ())
}

/// The lists in force at one time, compiled for lookups.
#[derive(Clone, Debug, Default)]
pub struct Lists {
    allow: Allowlist,
    deny: Allowlist,
    /// Exact denylisted ids (blocked at once, without waiting to be seen).
    deny_exact: Vec<String>,
}

impl Lists {
    /// The entries in force at `now`.
    pub fn compile(entries: &[ListEntry], now: Nanos) -> Lists {
        let mut lists = Lists::default();
        let join = |kind: ListKind| {
            entries
                .iter()
                .filter(|e| e.list == kind && e.in_force(now))
                .map(|e| e.client.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        // Entries were checked when added; one that no longer parses is left out.
        lists.allow = Allowlist::parse(&join(ListKind::Allow)).unwrap_or_default();
        lists.deny = Allowlist::parse(&join(ListKind::Deny)).unwrap_or_default();
        lists.deny_exact = entries
            .iter()
            .filter(|e| e.list == ListKind::Deny && e.in_force(now))
            .filter(|e| !e.client.contains('/'))
            .map(|e| {
                if e.client.parse::<IpAddr>().is_ok() {
                    e.client.clone()
                } else {
                    super::observe::user_key(&e.client)
                }
            })
            .collect();
        let allow = &lists.allow;
        lists.deny_exact.retain(|key| !allow.contains(key));
        lists
    }

    pub fn allows(&self, client: &str) -> bool {
        self.allow.contains(client)
    }

    /// On the denylist and not on the allowlist: the allowlist wins, so an operator's explicit
    /// "let it through" (a false-positive mark among them) is never overridden by a broader or
    /// older deny entry.
    pub fn denies(&self, client: &str) -> bool {
        self.deny.contains(client) && !self.allow.contains(client)
    }

    /// Client keys to block at once: exact addresses as given, other ids as user keys.
    pub fn deny_keys(&self) -> &[String] {
        &self.deny_exact
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(list: ListKind, client: &str, expires_at: Option<Nanos>) -> ListEntry {
        ListEntry {
            list,
            client: client.into(),
            reason: String::new(),
            actor: "test".into(),
            created_at: 0,
            expires_at,
        }
    }

    #[test]
    fn entries_in_force_and_what_they_cover() {
        let entries = [
            entry(ListKind::Allow, "10.0.0.0/8", None),
            entry(ListKind::Allow, "partner", Some(100)),
            entry(ListKind::Deny, "203.0.113.9", None),
            entry(ListKind::Deny, "mallory", None),
            entry(ListKind::Deny, "198.51.100.0/24", Some(50)),
            entry(ListKind::Deny, "192.0.2.66", None),
            entry(ListKind::Allow, "192.0.2.64/30", None),
        ];
        // (time, client, allowed, denied)
        let cases = [
            (10, "10.1.2.3", true, false),
            (10, "user:partner", true, false),
            (200, "user:partner", false, false),
            (10, "203.0.113.9", false, true),
            (10, "user:mallory", false, true),
            (10, "198.51.100.7", false, true),
            (60, "198.51.100.7", false, false),
            (10, "192.0.2.1", false, false),
            // On both lists: the allowlist wins.
            (10, "192.0.2.66", true, false),
        ];
        for (now, client, allowed, denied) in cases {
            let lists = Lists::compile(&entries, now);
            assert_eq!(
                (lists.allows(client), lists.denies(client)),
                (allowed, denied),
                "{client} at {now}"
            );
        }
        let lists = Lists::compile(&entries, 10);
        assert_eq!(lists.deny_keys(), ["203.0.113.9", "user:mallory"]);
    }

    #[test]
    fn bad_clients_say_why() {
        for (client, ok) in [
            ("192.0.2.1", true),
            ("10.0.0.0/8", true),
            ("alice", true),
            ("", false),
            (" alice", false),
            ("a,b", false),
            ("10.0.0.0/40", false),
            ("not an ip/8", false),
        ] {
            assert_eq!(check_client(client).is_ok(), ok, "{client:?}");
        }
    }
}
