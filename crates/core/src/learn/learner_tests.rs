//! The learner's operator corrections: lists take effect at once, lifts record why.

use super::*;
use crate::learn::lists::ListKind;
use crate::time::NANOS_PER_SEC;

const T0: Nanos = 1_000 * 60 * NANOS_PER_SEC;

fn entry(list: ListKind, client: &str, expires_at: Option<Nanos>) -> ListEntry {
    ListEntry {
        list,
        client: client.into(),
        reason: "test".into(),
        actor: "ops".into(),
        created_at: T0,
        expires_at,
    }
}

fn kinds(l: &Learner) -> Vec<(String, &'static str, &'static str)> {
    l.actions()
        .sorted()
        .iter()
        .map(|a| (a.client.to_string(), a.kind.name(), a.signal.name()))
        .collect()
}

#[test]
fn a_denylist_blocks_at_once_an_allowlist_lifts_at_once_and_a_lift_is_recorded() {
    let mut l = Learner::new(LearnerConfig::default());
    let changes = l.set_lists(
        vec![
            entry(ListKind::Deny, "203.0.113.9", None),
            entry(ListKind::Deny, "mallory", Some(T0 + 60 * NANOS_PER_SEC)),
        ],
        T0,
    );
    assert_eq!(
        kinds(&l),
        [
            ("203.0.113.9".to_string(), "block", "denylist"),
            ("user:mallory".to_string(), "block", "denylist"),
        ]
    );
    assert!(changes.iter().all(|c| c.cause == "denylisted"));
    // The same address moves to the allowlist: its block is lifted.
    let changes = l.set_lists(
        vec![
            entry(ListKind::Allow, "203.0.113.0/24", None),
            entry(ListKind::Deny, "mallory", Some(T0 + 60 * NANOS_PER_SEC)),
        ],
        T0,
    );
    assert_eq!(
        kinds(&l),
        [("user:mallory".to_string(), "block", "denylist")]
    );
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].client.as_str(), changes[0].cause),
        ("203.0.113.9", "allowlisted")
    );
    // An entry that expired lifts its block at the next change of the lists.
    let changes = l.set_lists(
        vec![entry(
            ListKind::Deny,
            "mallory",
            Some(T0 + 60 * NANOS_PER_SEC),
        )],
        T0 + 120 * NANOS_PER_SEC,
    );
    assert!(kinds(&l).is_empty());
    assert_eq!(changes[0].cause, "undenylisted");
    l.set_lists(vec![entry(ListKind::Deny, "mallory", None)], T0);
    // An operator's reset lifts the rest.
    let changes = l.lift(&["user:mallory".to_string()], T0, "reset");
    assert!(kinds(&l).is_empty());
    assert_eq!(changes[0].cause, "reset");
    assert!(l.lift(&["nobody".to_string()], T0, "reset").is_empty());
}
