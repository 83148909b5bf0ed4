use super::*;
use crate::time::NANOS_PER_SEC;

const MIN: Nanos = 60 * NANOS_PER_SEC;

/// The thresholds these tests are written against (throttle at 0.73, block at 0.80).
fn policy() -> PolicyConfig {
    PolicyConfig {
        throttle_at: 0.73,
        block_at: 0.80,
        ..PolicyConfig::default()
    }
}

/// A client the forest scored `risk`: the call is the thresholds' (as the learner makes it).
fn assess(client: &str, risk: f64, requests: u32, prm: bool) -> Assessment<'_> {
    assess_by(client, risk, requests, prm, Signal::Forest)
}

fn assess_by(client: &str, risk: f64, requests: u32, prm: bool, signal: Signal) -> Assessment<'_> {
    let call = policy().kind_for_risk(risk).map(|kind| Call {
        kind,
        signal,
        why: format!("{} {risk}", signal.name()).into(),
        evidence: 0,
    });
    Assessment {
        client,
        risk,
        requests,
        prm,
        call,
    }
}

#[test]
fn risk_to_action_table() {
    let policy = PolicyConfig {
        allowlist: Allowlist::parse("10.0.0.0/8, ops, 2001:db8::/32").unwrap(),
        ..policy()
    };
    let throttle = Some(ActionKind::Throttle { per_minute: 10 });

    // (what, client, risk, requests, prm, expected)
    let cases = [
        ("ordinary", "192.0.2.1", 0.5, 100, false, None),
        ("throttle band", "192.0.2.1", 0.75, 100, false, throttle),
        (
            "block",
            "192.0.2.1",
            0.85,
            100,
            false,
            Some(ActionKind::Block),
        ),
        ("too little evidence", "192.0.2.1", 0.95, 9, false, None),
        (
            "PRM is never blocked (reported)",
            "192.0.2.1",
            0.95,
            100,
            true,
            None,
        ),
        (
            "PRM is never throttled (reported)",
            "192.0.2.1",
            0.75,
            100,
            true,
            None,
        ),
        ("allowlisted network", "10.4.5.6", 0.99, 100, false, None),
        ("allowlisted id", "ops", 0.99, 100, false, None),
        ("allowlisted user's key", "user:ops", 0.99, 100, false, None),
        (
            "a user named like a network is not in it",
            "user:10.1.1.1",
            0.85,
            100,
            false,
            Some(ActionKind::Block),
        ),
        (
            "other users are not allowlisted",
            "user:opsx",
            0.85,
            100,
            false,
            Some(ActionKind::Block),
        ),
        (
            "allowlisted v6 network",
            "2001:db8::7",
            0.99,
            100,
            false,
            None,
        ),
        (
            "outside the v6 network",
            "2001:db9::7",
            0.99,
            100,
            false,
            Some(ActionKind::Block),
        ),
    ];
    for (what, client, risk, requests, prm, expected) in cases {
        assert_eq!(
            policy
                .action_for(&assess(client, risk, requests, prm))
                .map(|call| call.kind),
            expected,
            "{what}"
        );
    }
}

#[test]
fn allowlist_errors_name_the_entry() {
    for (text, needle) in [
        ("10.0.0.0/33", "10.0.0.0/33"),
        ("nonsense/8", "nonsense/8"),
        ("::/129", "::/129"),
    ] {
        let e = Allowlist::parse(text).unwrap_err();
        assert!(e.contains(needle), "{text}: {e}");
        // The same parser reads the deny list: the words must not name the allowlist.
        assert!(!e.contains("allowlist"), "{text}: {e}");
    }
}

#[test]
fn actions_renew_escalate_expire_and_wait_for_a_model() {
    let policy = policy();
    let empty = ActionTable::default();
    let t0 = 100 * MIN;
    // Cold start: no model yet, nothing is taken.
    let (table, changes) = policy.step(t0, &[assess("a", 0.99, 100, false)], &empty, false, 0);
    assert!(table.is_empty() && changes.is_empty());

    let (table, changes) = policy.step(t0, &[assess("a", 0.75, 100, false)], &empty, true, 1);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].cause, "flagged");
    let a = table.get("a").unwrap().clone();
    assert_eq!(a.expires_at, t0 + 5 * MIN);

    // Flagged harder a minute later: escalated to a block, first-flagged time kept.
    let (table, changes) = policy.step(t0 + MIN, &[assess("a", 0.9, 100, false)], &table, true, 1);
    assert_eq!(changes[0].cause, "escalated");
    assert_eq!(table.get("a").unwrap().kind, ActionKind::Block);
    assert_eq!(table.get("a").unwrap().since, t0);

    // A milder score while blocked renews the block (the stronger kind wins until expiry).
    let (table, changes) = policy.step(
        t0 + 2 * MIN,
        &[assess("a", 0.75, 100, false)],
        &table,
        true,
        1,
    );
    assert!(changes.is_empty(), "a renewal is not a change: {changes:?}");
    assert_eq!(table.get("a").unwrap().kind, ActionKind::Block);
    let expires = table.get("a").unwrap().expires_at;
    assert_eq!(expires, t0 + 7 * MIN);

    // Quiet: kept until it expires, then dropped and recorded.
    let (table, _) = policy.step(expires - 1, &[], &table, true, 1);
    assert!(table.get("a").is_some());
    let (table, changes) = policy.step(expires, &[], &table, true, 1);
    assert!(table.is_empty());
    assert_eq!((changes[0].cause, changes[0].to), ("expired", None));
}

#[test]
fn shadow_policy_marks_its_actions() {
    let policy = PolicyConfig {
        shadow: true,
        ..policy()
    };
    let (table, changes) = policy.step(
        MIN,
        &[assess("a", 0.9, 100, false)],
        &ActionTable::default(),
        true,
        1,
    );
    assert!(table.get("a").unwrap().shadow);
    assert!(changes[0].shadow);
}

#[test]
fn floors_turn_blocks_into_throttles() {
    assert_eq!(ActionKind::Block.within_floor(0), ActionKind::Block);
    assert_eq!(
        ActionKind::Block.within_floor(30),
        ActionKind::Throttle { per_minute: 30 }
    );
    assert_eq!(
        ActionKind::Throttle { per_minute: 10 }.within_floor(30),
        ActionKind::Throttle { per_minute: 30 }
    );
    assert_eq!(
        ActionKind::Throttle { per_minute: 50 }.within_floor(30),
        ActionKind::Throttle { per_minute: 50 }
    );
}

#[test]
fn a_renewal_keeps_the_signal_that_decided_the_kind_in_force() {
    let policy = policy();
    let by = |signal, risk| assess_by("198.51.100.7", risk, 50, false, signal);
    // Minute 1: the heuristic's 0.9 blocks.
    let (t1, _) = policy.step(
        MIN,
        &[by(Signal::Heuristic, 0.9)],
        &ActionTable::default(),
        true,
        1,
    );
    let first = t1.get("198.51.100.7").unwrap().clone();
    assert_eq!(
        (first.kind, first.signal),
        (ActionKind::Block, Signal::Heuristic)
    );
    // Minute 2: the forest alone says throttle (0.78 < block_at): the block in force is renewed,
    // and it is still the heuristic's, whatever score is shown.
    let (t2, _) = policy.step(2 * MIN, &[by(Signal::Forest, 0.78)], &t1, true, 1);
    let renewed = t2.get("198.51.100.7").unwrap();
    assert_eq!(
        (renewed.kind, renewed.signal),
        (ActionKind::Block, Signal::Heuristic)
    );
    // Minute 3, a fresh client flagged by the forest, escalated later by the heuristic.
    let (t3, _) = policy.step(
        3 * MIN,
        &[by(Signal::Forest, 0.75)],
        &ActionTable::default(),
        true,
        1,
    );
    assert_eq!(t3.get("198.51.100.7").unwrap().signal, Signal::Forest);
    let (t4, _) = policy.step(4 * MIN, &[by(Signal::Heuristic, 0.9)], &t3, true, 1);
    let escalated = t4.get("198.51.100.7").unwrap();
    assert_eq!(
        (escalated.kind, escalated.signal),
        (ActionKind::Block, Signal::Heuristic)
    );
}

/// Entries and client keys longer than the stored bound are compared as stored: the raw id,
/// the stored key and its user key all match; another long id with the same start does not.
#[test]
fn long_entries_match_the_keys_they_name() {
    use crate::learn::observe::{bounded_key, user_key};
    let long = "k".repeat(1_000);
    let list = Allowlist::parse(&long).unwrap();
    assert!(list.contains(&long));
    assert!(list.contains(&bounded_key(&long)));
    assert!(list.contains(&user_key(&long)));
    assert!(!list.contains(&format!("{}j", "k".repeat(999))));
}
