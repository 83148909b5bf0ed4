//! The rule model shared by both APIs, the rules file and the store.
//!
//! A rule is a path of descriptor entries inside a domain (as in envoyproxy/ratelimit's nested
//! `descriptors`) plus the limits that apply when a request's descriptor reaches it. A rule's
//! identity is its domain and path; [`Rule::id`] spells it canonically, and that id is how rules
//! are stored, listed, fetched and deleted.
//!
//! This module is plain data (serde for the store's JSON column); validation is in `validate`,
//! matching in `matcher`.

use serde::{Deserialize, Serialize};

use super::limit::LimitSpec;

/// Descriptor keys `ShouldAllow` derives from its subject. Rules written with these keys serve
/// both APIs; `remote_address` is the key Envoy's `remote_address` action emits.
pub mod subject_keys {
    pub const ENDPOINT: &str = "endpoint";
    pub const METHOD: &str = "method";
    pub const TIER: &str = "tier";
    pub const USER_ID: &str = "user_id";
    pub const REMOTE_ADDRESS: &str = "remote_address";
}

/// Customer tiers. Anonymous traffic is `Std`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tier {
    #[default]
    #[serde(rename = "STD")]
    Std,
    #[serde(rename = "PRM")]
    Prm,
}

impl Tier {
    pub const ALL: [Tier; 2] = [Tier::Std, Tier::Prm];

    /// Position in `ALL` (for per-tier arrays).
    pub fn index(self) -> usize {
        match self {
            Tier::Std => 0,
            Tier::Prm => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Std => "STD",
            Tier::Prm => "PRM",
        }
    }

    pub fn parse(text: &str) -> Option<Tier> {
        match text {
            "STD" => Some(Tier::Std),
            "PRM" => Some(Tier::Prm),
            _ => None,
        }
    }
}

/// Endpoint priority, read by the adaptive loop: low-priority endpoints are tightened first when a
/// high-priority one is under pressure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Normal,
    High,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Low => "low",
        }
    }
}

/// How one rule entry matches a descriptor entry's value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueMatch {
    /// No value in the rule: every distinct value matches and gets its own bucket.
    Any,
    Exact(String),
    /// A value ending in `*` in the rules file: values with this prefix match and share a bucket
    /// per distinct value, as in envoyproxy/ratelimit's wildcards.
    Prefix(String),
}

impl ValueMatch {
    /// Parses the rules-file / API spelling: empty = any, trailing `*` = prefix.
    pub fn from_spelling(value: &str) -> ValueMatch {
        if value.is_empty() {
            ValueMatch::Any
        } else if let Some(prefix) = value.strip_suffix('*') {
            ValueMatch::Prefix(prefix.to_string())
        } else {
            ValueMatch::Exact(value.to_string())
        }
    }

    pub fn spelling(&self) -> String {
        match self {
            ValueMatch::Any => String::new(),
            ValueMatch::Exact(v) => v.clone(),
            ValueMatch::Prefix(p) => format!("{p}*"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntryMatch {
    pub key: String,
    pub value: ValueMatch,
}

impl EntryMatch {
    /// From the rules-file / API spelling of the value (see `ValueMatch::from_spelling`).
    pub fn parse(key: &str, value: &str) -> EntryMatch {
        EntryMatch {
            key: key.to_string(),
            value: ValueMatch::from_spelling(value),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub domain: String,
    pub path: Vec<EntryMatch>,
    pub limits: Vec<LimitSpec>,
    #[serde(default)]
    pub shadow_mode: bool,
    #[serde(default)]
    pub priority: Priority,
    /// Names of limits this rule's limits replace when both match (Envoy's `replaces`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
    /// Requests per minute the endpoint this rule names can take. When its forecast (or measured)
    /// traffic goes over it, the adaptive loop cuts STD limits on low-priority endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_per_minute: Option<u64>,
}

impl Rule {
    /// A rule with the given path (`(key, value spelling)` pairs) and limits, and defaults for
    /// everything else.
    pub fn new(domain: &str, path: &[(&str, &str)], limits: Vec<LimitSpec>) -> Rule {
        Rule {
            domain: domain.to_string(),
            path: path.iter().map(|(k, v)| EntryMatch::parse(k, v)).collect(),
            limits,
            shadow_mode: false,
            priority: Priority::Normal,
            replaces: Vec::new(),
            capacity_per_minute: None,
        }
    }

    /// The endpoint this rule names: the exact value of its `endpoint` entry, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.path.iter().find_map(|e| match &e.value {
            ValueMatch::Exact(v) if e.key == subject_keys::ENDPOINT => Some(v.as_str()),
            _ => None,
        })
    }

    /// The canonical id: `domain|key=value|key` — `|`, `=` and `\` inside names are escaped with
    /// `\`, so two different rules never share an id.
    pub fn id(&self) -> String {
        rule_id(&self.domain, &self.path)
    }
}

pub fn rule_id(domain: &str, path: &[EntryMatch]) -> String {
    let mut id = escape(domain);
    for entry in path {
        id.push('|');
        id.push_str(&escape(&entry.key));
        if entry.value != ValueMatch::Any {
            id.push('=');
            id.push_str(&escape(&entry.value.spelling()));
        }
    }
    id
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '|' | '=' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A batch of changes to the rule set, applied all or nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleChange {
    pub upserts: Vec<Rule>,
    /// Rule ids to delete; each must exist.
    pub deletes: Vec<String>,
    /// Domains whose rules not in `upserts` are deleted (a rules file replaces its domains).
    pub replace_domains: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(entries: &[(&str, &str)]) -> Vec<EntryMatch> {
        entries
            .iter()
            .map(|(k, v)| EntryMatch::parse(k, v))
            .collect()
    }

    #[test]
    fn ids_are_canonical_and_unambiguous() {
        let cases = [
            (
                "sluice",
                vec![("tier", "STD"), ("user_id", "")],
                "sluice|tier=STD|user_id",
            ),
            (
                "sluice",
                vec![("endpoint", "/api/*")],
                "sluice|endpoint=/api/*",
            ),
            ("a|b", vec![("k=1", "v|2")], "a\\|b|k\\=1=v\\|2"),
        ];
        for (domain, entries, want) in cases {
            assert_eq!(rule_id(domain, &path(&entries)), want);
        }
        assert_ne!(
            rule_id("d", &path(&[("k", "a|b")])),
            rule_id("d", &path(&[("k", "a"), ("b", "")]))
        );
    }
}
