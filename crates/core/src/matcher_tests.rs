//! Table-driven rule matching: which rule (if any) each request reaches.

use super::*;
use crate::limit::Unit;

fn rule(domain: &str, path: &[(&str, &str)], rpu: u64) -> Rule {
    Rule::new(domain, path, vec![LimitSpec::per(rpu, Unit::Second)])
}

fn rules() -> RuleSet {
    RuleSet::build(
        7,
        [
            rule("edge", &[("remote_address", "")], 1),
            rule("edge", &[("remote_address", "10.0.0.1")], 2),
            rule("edge", &[("path", "/api/*")], 3),
            rule("edge", &[("path", "/api/v2/*")], 4),
            rule("edge", &[("path", "/api/v2/login")], 5),
            rule("edge", &[("tier", "STD"), ("user_id", "")], 6),
            rule("edge", &[("tier", "PRM"), ("user_id", "")], 7),
            rule("edge", &[("tier", "STD")], 8),
            rule("other", &[("remote_address", "")], 9),
        ],
    )
}

/// The rate of the rule a descriptor reaches, or `None` for no match.
fn check(domain: &str, entries: &[(&str, &str)], want: Option<u64>) {
    let set = rules();
    let got = set
        .match_descriptor(domain, entries)
        .map(|r| r.limits[0].quota.unwrap().limit);
    assert_eq!(got, want, "{domain} {entries:?}");
}

#[test]
fn envoy_descriptor_matching() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<u64>);
    let cases: &[Case] = &[
        ("edge", &[("remote_address", "10.9.9.9")], Some(1)),
        ("edge", &[("remote_address", "10.0.0.1")], Some(2)), // exact beats key-only
        ("edge", &[("path", "/api/users")], Some(3)),
        ("edge", &[("path", "/api/v2/users")], Some(4)), // longest prefix wins
        ("edge", &[("path", "/api/v2/login")], Some(5)), // exact beats prefix
        ("edge", &[("path", "/static/a.css")], None),
        ("edge", &[("tier", "STD"), ("user_id", "u1")], Some(6)),
        ("edge", &[("tier", "PRM"), ("user_id", "u1")], Some(7)),
        ("edge", &[("tier", "STD")], Some(8)), // a shorter descriptor stops at its own node
        ("edge", &[("tier", "PRM")], None),    // the PRM node holds no rule itself
        ("edge", &[("user_id", "u1"), ("tier", "STD")], None), // order matters for Envoy
        (
            "edge",
            &[("remote_address", "1.2.3.4"), ("extra", "x")],
            None,
        ), // deeper than any rule
        ("other", &[("remote_address", "1.2.3.4")], Some(9)),
        ("nowhere", &[("remote_address", "1.2.3.4")], None),
        ("edge", &[], None),
    ];
    for (domain, entries, want) in cases {
        check(domain, entries, *want);
    }
}

#[test]
fn subject_matching_uses_fields_in_any_order() {
    let set = rules();
    let fields = [
        ("user_id", "u1"),
        ("tier", "STD"),
        ("remote_address", "10.0.0.1"),
        ("path", "/api/x"),
    ];
    let mut out = SmallVec::new();
    set.match_subject("edge", &fields, &mut out);
    let mut got: Vec<(u64, Vec<u8>)> = out
        .iter()
        .map(|m| (m.rule.limits[0].quota.unwrap().limit, m.order.to_vec()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (2, vec![2]),    // remote_address exact
            (3, vec![3]),    // path prefix
            (6, vec![1, 0]), // tier=STD then user_id, whatever order the subject lists them in
            (8, vec![1]),    // tier=STD alone
        ]
    );
}

#[test]
fn empty_subject_fields_match_nothing() {
    let set = rules();
    let mut out = SmallVec::new();
    set.match_subject("edge", &[("user_id", ""), ("tier", "PRM")], &mut out);
    assert!(out.is_empty(), "anonymous PRM has no user bucket: {out:?}");
}

#[test]
fn limit_seeds_survive_a_rebuild() {
    let a = rules();
    let b = RuleSet::build(8, rules().to_rules());
    for rule in a.rules() {
        let other = b.get(&rule.id).expect("same ids");
        assert_eq!(rule.limits[0].seed, other.limits[0].seed);
    }
}
