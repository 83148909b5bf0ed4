//! The compiled rule set: rules arranged as one tree per domain, and the two ways requests walk it.
//!
//! - An Envoy descriptor is a list of entries walked in order from the domain's root; at each level
//!   an exact value beats a prefix (`foo*`), which beats a key-only entry. The node reached by the
//!   last entry decides, if it holds a rule (envoyproxy/ratelimit semantics).
//! - A `ShouldAllow` subject is a set of (key, value) fields. Every rule whose path is made of the
//!   subject's fields, in any order, applies — with the same exact-beats-wildcard choice at each
//!   level. This is how one rule model serves both APIs.
//!
//! A `RuleSet` is immutable once built; the engine swaps whole sets atomically.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::limit::{LimitSpec, Quota};
use super::limit_stats::LimitCounters;
use super::rules::{Priority, Rule, ValueMatch};

/// The names a decision reports: which rule, and which of its limits; and that limit's
/// decision counts, which live as long as the label (kept across reloads).
#[derive(Debug)]
pub struct LimitLabel {
    pub rule_id: String,
    /// The limit's name, or `#N` (its position) when unnamed.
    pub name: String,
    pub counts: LimitCounters,
}

/// Labels are the same when they name the same limit; their counts are not compared.
impl PartialEq for LimitLabel {
    fn eq(&self, other: &Self) -> bool {
        self.rule_id == other.rule_id && self.name == other.name
    }
}

impl Eq for LimitLabel {}

impl LimitLabel {
    pub fn new(rule_id: &str, name: &str) -> LimitLabel {
        LimitLabel {
            rule_id: rule_id.to_string(),
            name: name.to_string(),
            counts: LimitCounters::default(),
        }
    }
}

/// One limit of a compiled rule, with the seed its bucket keys derive from.
#[derive(Debug)]
pub struct CompiledLimit {
    pub label: Arc<LimitLabel>,
    pub spec: LimitSpec,
    /// `None` for an unlimited limit.
    pub quota: Option<Quota>,
    /// `quota.full_recovery()`, computed once.
    pub recovery: u64,
    /// Stable across rule-set reloads as long as the rule's id and the limit's name (or position,
    /// when unnamed) stay: a changed number keeps its bucket's state.
    pub seed: u64,
}

#[derive(Debug)]
pub struct CompiledRule {
    pub id: Arc<str>,
    pub rule: Arc<Rule>,
    pub limits: Vec<CompiledLimit>,
}

impl CompiledRule {
    pub fn shadow_mode(&self) -> bool {
        self.rule.shadow_mode
    }

    pub fn priority(&self) -> Priority {
        self.rule.priority
    }
}

#[derive(Debug, Default)]
struct Node {
    children: FxHashMap<Box<str>, KeyChildren>,
    rule: Option<Arc<CompiledRule>>,
}

#[derive(Debug, Default)]
struct KeyChildren {
    exact: FxHashMap<Box<str>, Node>,
    /// Longest prefix first, so the most specific wildcard wins.
    prefixes: Vec<(Box<str>, Node)>,
    any: Option<Box<Node>>,
}

impl KeyChildren {
    fn child_mut(&mut self, value: &ValueMatch) -> &mut Node {
        match value {
            ValueMatch::Exact(v) => self.exact.entry(v.as_str().into()).or_default(),
            ValueMatch::Prefix(p) => {
                let at = match self.prefixes.iter().position(|(q, _)| **q == **p) {
                    Some(at) => at,
                    None => {
                        self.prefixes.push((p.as_str().into(), Node::default()));
                        self.prefixes
                            .sort_by_key(|(q, _)| std::cmp::Reverse(q.len()));
                        self.prefixes
                            .iter()
                            .position(|(q, _)| **q == **p)
                            .expect("just pushed")
                    }
                };
                &mut self.prefixes[at].1
            }
            ValueMatch::Any => self.any.get_or_insert_with(Default::default),
        }
    }

    fn lookup(&self, value: &str) -> Option<&Node> {
        if let Some(node) = self.exact.get(value) {
            return Some(node);
        }
        if let Some((_, node)) = self.prefixes.iter().find(|(p, _)| value.starts_with(&**p)) {
            return Some(node);
        }
        self.any.as_deref()
    }
}

/// A rule reached by a subject, and the order in which the subject's fields formed its path
/// (indexes into the subject's field list): the bucket key hashes the values in this order.
#[derive(Clone, Debug)]
pub struct SubjectMatch<'a> {
    pub rule: &'a Arc<CompiledRule>,
    pub order: SmallVec<[u8; 8]>,
}

#[derive(Debug, Default)]
pub struct RuleSet {
    revision: u64,
    by_id: BTreeMap<Arc<str>, Arc<CompiledRule>>,
    domains: FxHashMap<Box<str>, Node>,
    has_replaces: bool,
}

impl RuleSet {
    /// Compiles validated rules. Later rules with the same id replace earlier ones.
    pub fn build(revision: u64, rules: impl IntoIterator<Item = Rule>) -> RuleSet {
        RuleSet::build_after(revision, rules, &RuleSet::default())
    }

    /// Compiles validated rules that replace `previous`: a limit `previous` had (same rule id and
    /// limit name) keeps its label, so its decision counts run on.
    pub fn build_after(
        revision: u64,
        rules: impl IntoIterator<Item = Rule>,
        previous: &RuleSet,
    ) -> RuleSet {
        let mut set = RuleSet {
            revision,
            ..RuleSet::default()
        };
        for rule in rules {
            let id: Arc<str> = rule.id().into();
            let limits = rule
                .limits
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    let name = if spec.name.is_empty() {
                        format!("#{i}")
                    } else {
                        spec.name.clone()
                    };
                    CompiledLimit {
                        seed: limit_seed(&id, &name),
                        quota: spec.quota(),
                        recovery: spec.quota().map_or(0, |q| q.full_recovery()),
                        spec: spec.clone(),
                        label: previous
                            .label(&id, &name)
                            .unwrap_or_else(|| Arc::new(LimitLabel::new(&id, &name))),
                    }
                })
                .collect();
            set.has_replaces |= !rule.replaces.is_empty();
            let compiled = Arc::new(CompiledRule {
                id: id.clone(),
                rule: Arc::new(rule),
                limits,
            });
            let mut node = set
                .domains
                .entry(compiled.rule.domain.as_str().into())
                .or_default();
            for entry in &compiled.rule.path {
                node = node
                    .children
                    .entry(entry.key.as_str().into())
                    .or_default()
                    .child_mut(&entry.value);
            }
            node.rule = Some(compiled.clone());
            set.by_id.insert(id, compiled);
        }
        set
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn has_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }

    /// Whether any rule uses Envoy's `replaces` (lets the engine skip that pass when none do).
    pub fn has_replaces(&self) -> bool {
        self.has_replaces
    }

    /// The label of one limit of one rule, if this set has it.
    pub fn label(&self, rule_id: &str, limit_name: &str) -> Option<Arc<LimitLabel>> {
        self.by_id
            .get(rule_id)?
            .limits
            .iter()
            .find(|l| l.label.name == limit_name)
            .map(|l| l.label.clone())
    }

    pub fn get(&self, id: &str) -> Option<&Arc<CompiledRule>> {
        self.by_id.get(id)
    }

    pub fn rules(&self) -> impl Iterator<Item = &Arc<CompiledRule>> {
        self.by_id.values()
    }

    /// The plain rules, for building a changed set.
    pub fn to_rules(&self) -> Vec<Rule> {
        self.by_id.values().map(|r| (*r.rule).clone()).collect()
    }

    /// Envoy semantics: walk `entries` in order; the node reached by the last entry decides.
    pub fn match_descriptor<'s>(
        &'s self,
        domain: &str,
        entries: &[(&str, &str)],
    ) -> Option<&'s Arc<CompiledRule>> {
        let mut node = self.domains.get(domain)?;
        for (key, value) in entries {
            node = node.children.get(*key)?.lookup(value)?;
        }
        node.rule.as_ref()
    }

    /// ShouldAllow semantics: every rule whose path is formed by the fields in any order.
    /// `fields` holds at most 8 entries (the subject has five).
    pub fn match_subject<'s>(
        &'s self,
        domain: &str,
        fields: &[(&str, &str)],
        out: &mut SmallVec<[SubjectMatch<'s>; 8]>,
    ) {
        debug_assert!(fields.len() <= 8);
        if let Some(root) = self.domains.get(domain) {
            let mut order = SmallVec::new();
            walk(root, fields, 0, &mut order, out);
        }
    }
}

fn walk<'s>(
    node: &'s Node,
    fields: &[(&str, &str)],
    used: u32,
    order: &mut SmallVec<[u8; 8]>,
    out: &mut SmallVec<[SubjectMatch<'s>; 8]>,
) {
    if let Some(rule) = &node.rule
        && !order.is_empty()
    {
        out.push(SubjectMatch {
            rule,
            order: order.clone(),
        });
    }
    if node.children.is_empty() {
        return;
    }
    for (i, (key, value)) in fields.iter().enumerate() {
        if used & (1 << i) != 0 || value.is_empty() {
            continue;
        }
        if let Some(child) = node.children.get(*key).and_then(|c| c.lookup(value)) {
            order.push(i as u8);
            walk(child, fields, used | (1 << i), order, out);
            order.pop();
        }
    }
}

/// Stable 64-bit seed of one limit of one rule.
fn limit_seed(rule_id: &str, limit_name: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(rule_id.as_bytes());
    h.update(&[0xff]);
    h.update(limit_name.as_bytes());
    h.digest()
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
