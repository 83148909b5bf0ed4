//! What the learner's tests share: observations made as the service makes them.

use crate::learn::observe::{Aggregator, Event, Observation};
use crate::rules::Tier;
use crate::time::Nanos;

/// `n` requests of `client` to `endpoint`, evenly from `from` to `to` (a burst when they meet).
pub fn requests(
    agg: &Aggregator,
    client: &str,
    tier: Tier,
    endpoint: &str,
    n: u64,
    (from, to): (Nanos, Nanos),
) {
    for i in 0..n {
        let o = Observation {
            now: from + (to - from) * i / n.max(1),
            client,
            user: "",
            tier,
            endpoint,
            user_agent: "Mozilla/5.0",
            event: Event::Decision {
                allowed: true,
                anomaly: false,
                cut: false,
            },
        };
        agg.record(&o);
        agg.record(&Observation {
            event: Event::Outcome { status: 200 },
            ..o
        });
    }
}
