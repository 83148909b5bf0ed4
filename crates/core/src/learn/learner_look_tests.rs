//! The early look: who is acted on inside a minute, and on what evidence.

use super::*;
use crate::learn::learner::LearnerConfig;
use crate::learn::learner::test_support::requests;
use crate::learn::observe::{Aggregator, ObserveConfig};
use crate::rules::Tier;
use crate::time::NANOS_PER_SEC;

const MINUTE: Nanos = 60 * NANOS_PER_SEC;
const SEC: Nanos = NANOS_PER_SEC;

/// The open minute's clients with 10 requests or more (the policy's minimum), copied.
fn peek(agg: &Aggregator) -> Vec<ClientMinute> {
    agg.peek_where(|c| c.requests >= 10)
}

/// 300 people a minute, 1..=12 pages each, spread over the minute.
fn people(agg: &Aggregator, start: Nanos, minute: u64) {
    for i in 0..300u64 {
        let n = 1 + (i * 7 + minute * 3) % 12;
        let client = format!("10.0.{}.{}", i / 250, i % 250);
        requests(agg, &client, Tier::Std, "/x", n, (start, start + 50 * SEC));
    }
}

/// A learner whose baselines judge from `T + 12 minutes`, and the aggregator feeding it.
fn warmed() -> (Learner, Aggregator, Nanos) {
    let mut l = Learner::new(LearnerConfig::default());
    let agg = Aggregator::new(ObserveConfig::default());
    let t = 1_000 * MINUTE;
    for m in 0..12 {
        let start = t + m * MINUTE;
        people(&agg, start, m);
        l.tick(start, agg.drain(), start + MINUTE);
    }
    (l, agg, t + 12 * MINUTE)
}

#[test]
fn the_look_acts_on_a_flood_inside_the_minute_and_on_no_one_else() {
    let (mut l, agg, start) = warmed();
    assert!(l.baselines().ready_since().is_some());
    people(&agg, start, 12);
    // (client, tier, endpoint, requests, from, to, acted on at the look at 30 s)
    let clients: &[(&str, Tier, &str, u64, Nanos, Nanos, bool)] = &[
        ("203.0.0.1", Tier::Std, "/x", 300, 1, 30, true),
        // Its page and 40 assets in one second: a burst, not a rate.
        ("10.5.0.1", Tier::Std, "/static/app.js", 40, 25, 26, false),
        // 30 pages in one second: under 5 s, a burst is judged as it is, not stretched to a
        // minute (90 would be beyond the threshold, 54; 30 is not).
        ("10.5.0.3", Tier::Std, "/x", 30, 25, 26, false),
        // 15 pages in 8 s: stretched as if from 20 s, it did not make a third of the
        // threshold (18) in the time it had...
        ("10.5.0.2", Tier::Std, "/x", 15, 22, 30, false),
        // ...25 did.
        ("203.0.0.2", Tier::Std, "/x", 25, 22, 30, true),
        // A PRM client is only reported, at the close.
        ("10.6.0.1", Tier::Prm, "/x", 300, 1, 30, false),
    ];
    for &(client, tier, endpoint, n, from, to, _) in clients {
        requests(
            &agg,
            client,
            tier,
            endpoint,
            n,
            (start + from * SEC, start + to * SEC),
        );
    }
    // Too early in the minute: a look judges from 20 seconds on.
    assert_eq!(l.look_floor(start, start + 15 * SEC), None);
    let none = l.look(start, &peek(&agg), start + 15 * SEC);
    assert!(none.is_empty(), "{none:?}");
    // What the minute loop copies for the look: the flooders and the bursts, not the 300
    // people (1 to 12 pages each) nor the 15-page newcomer below a third of the threshold.
    let now = start + 30 * SEC;
    let floor = l.look_floor(start, now).expect("the baselines are ready");
    let candidates = agg.peek_where(|c| floor.admits(c));
    let names: Vec<&str> = candidates.iter().map(|c| &*c.client).collect();
    assert_eq!(
        names,
        ["10.5.0.1", "10.5.0.3", "203.0.0.1", "203.0.0.2"],
        "{floor:?}"
    );
    let changes = l.look(start, &candidates, now);
    for &(client, .., acted) in clients {
        let action = l.actions().get(client).cloned();
        assert_eq!(action.is_some(), acted, "{client}: {action:?}");
        if let Some(a) = action {
            assert_eq!(a.signal.name(), "volume", "{client}");
            assert_eq!(a.since, start + 30 * SEC, "{client}");
        }
    }
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.client.as_str(), c.cause))
            .collect::<Vec<_>>(),
        [("203.0.0.1", "flagged"), ("203.0.0.2", "flagged")]
    );
    // A second look does not act again on who is acted on; the close renews it.
    assert!(l.look(start, &peek(&agg), start + 45 * SEC).is_empty());
    let tick = l.tick(start, agg.drain(), start + MINUTE);
    assert!(tick.actions.get("203.0.0.1").is_some());
    assert!(
        !tick
            .adjustments
            .iter()
            .any(|a| a.client == "203.0.0.1" && a.cause == "flagged"),
        "{:?}",
        tick.adjustments
    );
}

#[test]
fn the_look_waits_for_the_baselines() {
    let mut l = Learner::new(LearnerConfig::default());
    let agg = Aggregator::new(ObserveConfig::default());
    let start = 1_000 * MINUTE;
    requests(
        &agg,
        "203.0.0.1",
        Tier::Std,
        "/x",
        3_000,
        (start, start + 30 * SEC),
    );
    assert!(l.look(start, &peek(&agg), start + 30 * SEC).is_empty());
    assert_eq!(l.look_floor(start, start + 30 * SEC), None);
    assert!(l.actions().is_empty());
}
