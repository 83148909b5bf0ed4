//! Who is given time: a client here before a measure could judge it is not acted on for its
//! volume until it has shown whether it is established; one that arrived after the measure
//! judged is held to it from its first minute, even while the whole site's baseline is still
//! gathering (on a small site it takes far longer than a busy route's).

use super::test_support::requests;
use super::*;
use crate::learn::observe::{Aggregator, ObserveConfig};
use crate::rules::Tier;
use crate::time::NANOS_PER_SEC;

const MINUTE: Nanos = 60 * NANOS_PER_SEC;
const SEC: Nanos = NANOS_PER_SEC;

/// `n` page requests of `client` to the product route, evenly over the first 50 s of a minute.
fn pages(agg: &Aggregator, client: &str, n: u64, start: Nanos) {
    requests(
        agg,
        client,
        Tier::Std,
        "/product/1000",
        n,
        (start, start + 50 * SEC),
    );
}

#[test]
fn a_client_that_arrived_after_its_route_judged_is_not_given_the_time_of_one_here_before() {
    let mut l = Learner::new(LearnerConfig::default());
    let agg = Aggregator::new(ObserveConfig::default());
    let t = 1_000 * MINUTE;
    let walker = "203.0.113.2";
    let mut acted_at = None;
    for m in 0..20u64 {
        let start = t + m * MINUTE;
        // Twenty people a minute, 1–4 pages each: the route judges from minute 1 (its 20th
        // value), the whole site from minute 11 (its 200th, decayed).
        for i in 0..20u64 {
            pages(&agg, &format!("10.0.{m}.{i}"), 1 + (i + m) % 4, start);
        }
        // From minute 10, one minute before the site judges: 15 product pages a minute, every
        // minute — under the route's threshold (20), over its sustained bar (0.6 of it), so it
        // is caught at its second minute, when the site has begun to judge.
        if m >= 10 {
            pages(&agg, walker, 15, start);
        }
        l.tick(start, agg.drain(), start + MINUTE);
        if acted_at.is_none() && l.actions().get(walker).is_some() {
            acted_at = Some(m);
        }
    }
    assert_eq!(
        l.baselines().ready_since(),
        Some(1_000 + 11),
        "the scenario needs the site to judge from minute 11"
    );
    // Here before the *site* judged, but after its route did: not taken for a client here
    // before the baselines (nor, ten minutes on, for an established one).
    assert_eq!(acted_at, Some(11));
    let why = l.actions().get(walker).map(|a| a.why.to_string());
    assert!(
        why.as_ref().is_some_and(|w| w.contains("/product/{id}")),
        "{why:?}"
    );
}
