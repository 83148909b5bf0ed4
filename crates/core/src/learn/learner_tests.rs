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

#[test]
fn each_correction_does_what_the_api_does() {
    let correction = |kind: CorrectionKind, client: &str| Correction {
        kind,
        client: client.into(),
        ttl: None,
        reason: "ops ticket 7".into(),
        actor: "replay".into(),
    };
    let mut l = Learner::new(LearnerConfig::default());
    // (correction, the causes of what changed, the actions after)
    type Step<'a> = (Correction, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let steps: [Step; 4] = [
        (
            correction(CorrectionKind::Deny, "203.0.113.9"),
            &["denylisted"],
            &[("203.0.113.9", "block")],
        ),
        (
            correction(CorrectionKind::Deny, "198.51.100.1"),
            &["denylisted"],
            &[("198.51.100.1", "block"), ("203.0.113.9", "block")],
        ),
        (
            correction(CorrectionKind::Reset, "198.51.100.1"),
            &["reset"],
            // Still denylisted: blocked again at the next change of the lists or minute...
            &[("203.0.113.9", "block")],
        ),
        (
            correction(CorrectionKind::FalsePositive, "203.0.113.9"),
            // ...which this change of the lists is: 198.51.100.1 is blocked again.
            &["false_positive", "denylisted"],
            &[("198.51.100.1", "block")],
        ),
    ];
    for (c, causes, after) in steps {
        let changes = l.apply(&c, T0);
        let got: Vec<&str> = changes.iter().map(|a| a.cause).collect();
        assert_eq!(got, causes, "{c:?}");
        let now: Vec<(String, &str)> = kinds(&l).into_iter().map(|(c, k, _)| (c, k)).collect();
        let want: Vec<(String, &str)> = after.iter().map(|(c, k)| (c.to_string(), *k)).collect();
        assert_eq!(now, want, "after {c:?}");
    }
    // The false positive is allowlisted for a day, with its reason.
    let lists = Lists::compile(&l.lists, T0 + 3_600 * NANOS_PER_SEC);
    assert!(lists.allows("203.0.113.9"));
    assert!(!Lists::compile(&l.lists, T0 + 86_401 * NANOS_PER_SEC).allows("203.0.113.9"));
    assert!(
        l.lists
            .iter()
            .any(|e| e.reason == "false positive: ops ticket 7")
    );
}

/// A minute of more clients than the history keeps: every client acted on, then the highest
/// scores, in the minute's order; with fewer, every one.
#[test]
fn the_history_keeps_the_acted_on_and_the_highest_scores() {
    use crate::learn::actions::{Action, ActionKind, ActionTable};
    let clients: Vec<ClientMinute> = (0..MAX_SCORE_RECORDS + 100)
        .map(|i| {
            let mut c = ClientMinute::default();
            c.client = format!("c{i:06}").into();
            c
        })
        .collect();
    // Client i scores i / n: the highest are the last; c000000 (the lowest) is acted on.
    let n = clients.len() as f64;
    let acted = Action {
        client: "c000000".into(),
        kind: ActionKind::Block,
        score: 0.0,
        since: 0,
        expires_at: 1,
        shadow: false,
        model_version: 1,
        signal: Default::default(),
        why: "".into(),
    };
    let table = ActionTable::from_actions([acted]);
    let record = |(c, _, score): (&ClientMinute, (), f64)| ScoreRecord {
        minute: 0,
        client: c.client.clone(),
        score,
        features: Default::default(),
        requests: 0,
        action: None,
        model_version: 1,
    };
    let items = || {
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c, (), i as f64 / n))
    };
    let kept = kept_scores(items(), &table, record);
    assert_eq!(kept.len(), MAX_SCORE_RECORDS);
    assert_eq!(
        &*kept[0].client, "c000000",
        "the acted-on client is kept, first by name"
    );
    assert!(
        kept.windows(2).all(|w| w[0].client < w[1].client),
        "in the minute's order"
    );
    let lowest_other = kept[1..].iter().map(|r| r.score).fold(1.0, f64::min);
    assert!(
        lowest_other >= 101.0 / n - 1e-9,
        "the highest scores: lowest kept {lowest_other}"
    );
    let few = kept_scores(items().take(10), &table, record);
    assert_eq!(few.len(), 10, "a small minute keeps every client");
}
