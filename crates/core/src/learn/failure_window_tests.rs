//! The slow failure window: sums over the last minutes, forgets what left the window, bounded.

use super::*;
use crate::learn::observe::{Aggregator, Event, Observation, ObserveConfig};
use crate::rules::Tier;

/// One minute of clients: `(client, requests, failed)`, every request a page.
fn minute(clients: &[(&str, u32, u32)]) -> Vec<ClientMinute> {
    let agg = Aggregator::new(ObserveConfig::default());
    for &(client, requests, failed) in clients {
        for i in 0..requests {
            let endpoint = format!("/probe/{i}.php");
            let o = Observation {
                now: i as u64,
                client,
                user: "",
                tier: Tier::Std,
                endpoint: &endpoint,
                user_agent: "",
                event: Event::Decision {
                    allowed: true,
                    anomaly: false,
                    cut: false,
                },
            };
            agg.record(&o);
            let status = if i < failed { 404 } else { 200 };
            agg.record(&Observation {
                event: Event::Outcome { status },
                ..o
            });
        }
    }
    agg.drain().clients
}

#[test]
fn sums_the_failures_of_the_last_minutes() {
    let mut w = FailureWindow::new(100);
    // A scanner at 8 failed probes a minute; a person who never fails.
    for m in 0..3 {
        let clients = minute(&[("scanner", 9, 8), ("person", 12, 0)]);
        if m == 2 {
            let sum = w.sum(&clients[1], m);
            assert_eq!(clients[1].client.as_ref(), "scanner");
            assert_eq!(
                sum,
                WindowSum {
                    failed: 24,
                    outcomes: 27,
                    minutes: 3
                }
            );
            assert_eq!(w.sum(&clients[0], m).failed, 0);
        }
        w.record(m, clients.iter());
    }
    // Only clients that failed are kept.
    assert_eq!(w.len(), 1);
}

#[test]
fn forgets_minutes_that_left_the_window() {
    let mut w = FailureWindow::new(100);
    let failing = minute(&[("scanner", 10, 10)]);
    w.record(0, failing.iter());
    let quiet = minute(&[("scanner", 1, 1)]);
    // Minutes 1..=4 see minute 0; minute 5 does not.
    assert_eq!(w.sum(&quiet[0], MINUTES as i64 - 1).failed, 11);
    assert_eq!(w.sum(&quiet[0], MINUTES as i64).failed, 1);
    // Recording a later minute drops a client whose minutes all left.
    w.record(MINUTES as i64, std::iter::empty());
    assert!(w.is_empty());
}

#[test]
fn is_bounded() {
    let mut w = FailureWindow::new(3);
    let names: Vec<String> = (0..10).map(|i| format!("10.0.0.{i}")).collect();
    let clients: Vec<(&str, u32, u32)> = names.iter().map(|n| (n.as_str(), 2, 2)).collect();
    w.record(0, minute(&clients).iter());
    assert_eq!(w.len(), 3);
}

#[test]
fn the_window_threshold_is_twice_a_minutes_and_at_least_the_minimum() {
    assert_eq!(window_threshold(4.0), WINDOW_MIN);
    assert_eq!(window_threshold(20.0), 40.0);
}
