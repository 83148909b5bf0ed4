use super::*;
use crate::time::NANOS_PER_SEC;

fn obs<'a>(client: &'a str, endpoint: &'a str, event: Event, sec: u64) -> Observation<'a> {
    Observation {
        now: sec * NANOS_PER_SEC,
        client,
        user: "",
        tier: Tier::Std,
        endpoint,
        user_agent: "",
        event,
    }
}

/// `n` distinct addresses `10.<net>.x.y` (spread over the shards by their hashes).
fn addresses(net: u8, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{net}.{}.{}", i / 256, i % 256))
        .collect()
}

const OK: Event = Event::Decision {
    allowed: true,
    anomaly: false,
    cut: false,
};

#[test]
fn welford_matches_the_textbook() {
    let mut w = Welford::default();
    for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
        w.push(x);
    }
    assert_eq!(w.mean, 5.0);
    assert!((w.variance() - 4.0).abs() < 1e-12);
}

#[test]
fn caps_count_the_overflow_and_drain_starts_afresh() {
    let agg = Aggregator::new(ObserveConfig {
        max_clients: 3,
        ..ObserveConfig::default()
    });
    let names: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    for name in &names {
        agg.record(&obs(name, "/a", OK, 1));
    }
    agg.record(&obs("c0", "/a", OK, 2)); // a tracked client is still counted
    let minute = agg.drain();
    assert_eq!(minute.clients.len(), 3);
    assert_eq!(minute.overflow, 2);
    assert_eq!(minute.clients.iter().map(|c| c.requests).sum::<u32>(), 4);
    assert_eq!(agg.overflow_total(), 2);
    let next = agg.drain();
    assert!(next.clients.is_empty() && next.overflow == 0);
}

#[test]
fn decisions_count_requests_and_outcomes_count_errors() {
    let agg = Aggregator::new(ObserveConfig::default());
    agg.record(&obs("a", "/login", OK, 1));
    agg.record(&obs("a", "/login", Event::Outcome { status: 401 }, 1));
    agg.record(&obs(
        "a",
        "/login",
        Event::Decision {
            allowed: false,
            anomaly: false,
            cut: false,
        },
        2,
    ));
    agg.record(&obs(
        "a",
        "/x",
        Event::Decision {
            allowed: false,
            anomaly: true,
            cut: false,
        },
        3,
    ));
    // A client only reported (no decision): each outcome is a request.
    agg.record(&obs("b", "/x", Event::Outcome { status: 500 }, 1));
    agg.record(&obs("b", "/x", Event::Outcome { status: 200 }, 2));
    let m = agg.drain();
    let a = &m.clients[0];
    assert_eq!(
        (a.requests, a.allowed, a.denied, a.denied_anomaly),
        (3, 1, 1, 1)
    );
    assert_eq!(
        (a.outcomes, a.errors, a.auth_failures, a.sensitive),
        (1, 1, 1, 2)
    );
    let b = &m.clients[1];
    assert_eq!((b.requests, b.outcomes, b.errors), (2, 2, 1));
    // Endpoint × tier traffic merged across shards.
    let login = m
        .endpoints
        .iter()
        .find(|e| &*e.endpoint == "/login")
        .unwrap();
    assert_eq!(
        (login.requests, login.allowed, login.denied, login.errors),
        (2, 1, 1, 1)
    );
}

#[test]
fn endpoint_minutes_merge_every_count_across_shards() {
    // Clients in many shards deny `/pay` three ways; the drained minute keeps each way apart
    // (the operator API's denied_limit / denied_anomaly / denied_pressure_cut read them).
    let agg = Aggregator::new(ObserveConfig::default());
    let names = addresses(0, 200);
    let decision = |i: usize| match i % 4 {
        0 => OK,
        1 => Event::Decision {
            allowed: false,
            anomaly: false,
            cut: false,
        },
        2 => Event::Decision {
            allowed: false,
            anomaly: true,
            cut: false,
        },
        _ => Event::Decision {
            allowed: false,
            anomaly: false,
            cut: true,
        },
    };
    for (i, name) in names.iter().enumerate() {
        agg.record(&obs(name, "/pay", decision(i), 1));
        agg.record(&obs(name, "/pay", Event::Outcome { status: 500 }, 2));
    }
    let minute = agg.drain();
    assert_eq!(
        minute.endpoints.len(),
        1,
        "one endpoint × tier after the merge"
    );
    let pay = &minute.endpoints[0];
    assert_eq!(
        (
            pay.requests,
            pay.allowed,
            pay.denied,
            pay.denied_anomaly,
            pay.denied_cut,
            pay.errors
        ),
        (200, 50, 150, 50, 50, 200)
    );
}

#[test]
fn classifier_is_case_insensitive() {
    let c = Classifier::default();
    assert!(c.is_tool("PostmanRuntime/7.43.0"));
    assert!(c.is_tool("python-requests/2.32"));
    assert!(!c.is_tool("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"));
    assert!(c.is_sensitive("/API/Login"));
    assert!(!c.is_sensitive("/api/products/7"));
}

#[test]
fn a_signed_in_request_counts_for_its_address_and_its_user() {
    let agg = Aggregator::new(ObserveConfig::default());
    let by = |client, user, sec| Observation {
        user,
        ..obs(client, "/api/cart", OK, sec)
    };
    // alice from two addresses; bob and carol share one; an anonymous visitor.
    agg.record(&by("10.0.0.1", "alice", 1));
    agg.record(&by("10.0.0.2", "alice", 2));
    agg.record(&by("10.0.0.3", "bob", 3));
    agg.record(&by("10.0.0.3", "carol", 4));
    agg.record(&by("10.0.0.4", "", 5));
    let m = agg.drain();
    let summary: Vec<(&str, ClientKind, u32, u32)> = m
        .clients
        .iter()
        .map(|c| (&*c.client, c.kind, c.requests, c.distinct_partners()))
        .collect();
    use ClientKind::{Network, User};
    assert_eq!(
        summary,
        [
            ("10.0.0.1", Network, 1, 1),
            ("10.0.0.2", Network, 1, 1),
            ("10.0.0.3", Network, 2, 2),
            ("10.0.0.4", Network, 1, 0),
            ("user:alice", User, 2, 2),
            ("user:bob", User, 1, 1),
            ("user:carol", User, 1, 1),
        ]
    );
    // Endpoint traffic counts each request once, not once per key.
    assert_eq!(m.endpoints.len(), 1);
    assert_eq!(m.endpoints[0].requests, 5);
    assert_eq!(user_of_key("user:alice"), Some("alice"));
    assert_eq!(user_of_key("10.0.0.1"), None);
}

#[test]
fn busiest_keeps_the_top_clients_of_each_tier_only() {
    let agg = Aggregator::new(ObserveConfig::default());
    for (i, requests) in [(0, 5), (1, 9), (2, 1), (3, 9), (4, 7)] {
        for _ in 0..requests {
            let client = format!("10.0.0.{i}");
            agg.record(&Observation {
                tier: if i == 4 { Tier::Prm } else { Tier::Std },
                ..obs(&client, "/e", OK, 1)
            });
        }
    }
    let [std, prm] = agg.busiest(2);
    let names = |v: &[ClientMinute]| -> Vec<(String, u32)> {
        v.iter()
            .map(|c| (c.client.to_string(), c.requests))
            .collect()
    };
    assert_eq!(
        names(&std),
        vec![("10.0.0.1".into(), 9), ("10.0.0.3".into(), 9)],
        "ties by name"
    );
    assert_eq!(names(&prm), vec![("10.0.0.4".into(), 7)]);
    assert_eq!(
        agg.peek_where(|c| c.requests >= 1).len(),
        5,
        "nothing was taken"
    );
}

#[test]
fn a_drained_minute_lists_every_client_once_by_name_with_its_own_counts() {
    let agg = Aggregator::new(ObserveConfig::default());
    // Many shards and every permutation cycle length: client i makes i % 7 + 1 requests.
    let clients = addresses(1, 1_000);
    for (i, client) in clients.iter().enumerate() {
        for s in 0..(i % 7 + 1) as u64 {
            agg.record(&obs(client, "/e", OK, s));
        }
    }
    let minute = agg.drain();
    let mut want: Vec<(String, u32)> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), (i % 7 + 1) as u32))
        .collect();
    want.sort();
    let got: Vec<(String, u32)> = minute
        .clients
        .iter()
        .map(|c| (c.client.to_string(), c.requests))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn long_identities_are_stored_bounded_and_stay_distinct() {
    let long_a = format!("{}a", "x".repeat(1_000));
    let long_b = format!("{}b", "x".repeat(1_000));
    // (raw, stored length at most, stored as given)
    for (raw, given) in [
        ("203.0.113.7", true),
        ("user:alice", true),
        (long_a.as_str(), false),
        (&format!("user:{long_a}"), false),
    ] {
        let stored = bounded_key(raw);
        assert!(stored.len() <= MAX_STORED_KEY, "{}", stored.len());
        assert_eq!(stored == raw, given, "{raw:.20}");
        assert_eq!(bounded_key(&stored), stored, "idempotent: {raw:.20}");
    }
    assert_ne!(
        bounded_key(&long_a),
        bounded_key(&long_b),
        "a hash keeps them apart"
    );
    assert!(bounded_key(&format!("user:{long_a}")).starts_with("user:"));
    assert_eq!(user_key(&long_a), bounded_key(&format!("user:{long_a}")));
    // A multi-byte character at the cut is kept whole.
    let accented = "é".repeat(100);
    assert!(bounded_key(&accented).len() <= MAX_STORED_KEY);

    // Observed with kilobyte ids, a minute stores bounded names; actions found by the raw ids.
    let agg = Aggregator::new(ObserveConfig::default());
    let mut o = obs(
        &long_a,
        "/x",
        Event::Decision {
            allowed: true,
            anomaly: false,
            cut: false,
        },
        1,
    );
    o.user = &long_b;
    agg.record(&o);
    let minute = agg.drain();
    assert_eq!(minute.clients.len(), 2);
    for c in &minute.clients {
        assert!(c.client.len() <= MAX_STORED_KEY, "{}", c.client.len());
    }
}
