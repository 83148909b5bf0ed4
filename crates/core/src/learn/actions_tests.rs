use super::*;
use crate::time::NANOS_PER_SEC;

const NOW: Nanos = 1_000 * NANOS_PER_SEC;

fn action(client: &str, kind: ActionKind, expires_at: Nanos) -> Action {
    Action {
        client: client.into(),
        kind,
        score: 0.9,
        since: 0,
        expires_at,
        shadow: false,
        model_version: 1,
        signal: Default::default(),
        why: "".into(),
    }
}

#[test]
fn a_request_meets_the_stronger_of_its_address_and_user_actions() {
    let throttle = |n| ActionKind::Throttle { per_minute: n };
    let later = NOW + 60 * NANOS_PER_SEC;
    let table = ActionTable::from_actions([
        action("192.0.2.1", throttle(10), later),
        action("192.0.2.2", ActionKind::Block, later),
        action("user:bob", ActionKind::Block, later),
        action("user:carol", throttle(5), later),
        action("user:dave", ActionKind::Block, NOW), // expired
    ]);
    // (address, user, the key of the action expected)
    let cases = [
        ("192.0.2.1", "", Some("192.0.2.1")),
        ("192.0.2.9", "bob", Some("user:bob")),
        ("192.0.2.1", "bob", Some("user:bob")),
        ("192.0.2.2", "carol", Some("192.0.2.2")),
        ("192.0.2.1", "carol", Some("user:carol")),
        ("192.0.2.9", "dave", None),
        ("192.0.2.9", "erin", None),
        ("", "", None),
        // A user id is not an address, nor the reverse.
        ("bob", "", None),
        ("192.0.2.9", "192.0.2.1", None),
    ];
    for (address, user, expected) in cases {
        let got = table.active_for(address, user, NOW).map(|a| &*a.client);
        assert_eq!(got, expected, "{address:?} as {user:?}");
    }
}

/// Kilobyte ids are stored bounded (`bounded_key`): a request carrying the raw id still meets
/// the action on it, and another long id with the same beginning does not.
#[test]
fn actions_on_long_ids_are_met_by_the_raw_ids() {
    use crate::learn::observe::{bounded_key, user_key};
    let later = NOW + 60 * NANOS_PER_SEC;
    let (long_user, long_address) = ("u".repeat(1_000), "s".repeat(1_000));
    let table = ActionTable::from_actions([
        action(&user_key(&long_user), ActionKind::Block, later),
        action(&bounded_key(&long_address), ActionKind::Block, later),
    ]);
    assert!(table.active_for("192.0.2.9", &long_user, NOW).is_some());
    assert!(table.active_for(&long_address, "", NOW).is_some());
    assert!(table.get(&long_address).is_some());
    let other = format!("{}v", "u".repeat(999));
    assert!(table.active_for("192.0.2.9", &other, NOW).is_none());
}
