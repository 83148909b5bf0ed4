use super::*;
use crate::learn::observe::{Aggregator, Event, Observation, ObserveConfig};
use crate::rules::Tier;
use crate::time::NANOS_PER_SEC;

/// One request: (seconds into the minute, path, status).
type Req = (f64, &'static str, u16);

/// `client`'s requests dealt round robin over `replicas` aggregators, each drained.
fn dealt(client: &str, agent: &str, reqs: &[Req], replicas: usize) -> Vec<MinuteData> {
    let aggs: Vec<Aggregator> = (0..replicas)
        .map(|_| Aggregator::new(ObserveConfig::default()))
        .collect();
    for (i, &(at, path, status)) in reqs.iter().enumerate() {
        let o = Observation {
            now: (at * NANOS_PER_SEC as f64) as u64,
            client,
            user: "",
            tier: Tier::Std,
            endpoint: path,
            user_agent: agent,
            event: Event::Decision {
                allowed: true,
                anomaly: false,
                cut: false,
            },
        };
        let agg = &aggs[i % replicas];
        agg.record(&o);
        agg.record(&Observation {
            event: Event::Outcome { status },
            ..o
        });
    }
    aggs.iter().map(Aggregator::drain).collect()
}

/// The first replica's minute with every other's shared and merged in.
fn merged(mut minutes: Vec<MinuteData>) -> ClientMinute {
    let mut first = minutes.remove(0);
    let shared = minutes
        .iter()
        .flat_map(|m| {
            to_share(
                &m.clients,
                ShareFloor {
                    requests: 1,
                    errors: 1,
                },
                SHARE_CAP,
            )
        })
        .collect();
    merge_shared(&mut first, shared);
    assert_eq!(first.clients.len(), 1);
    first.clients.remove(0)
}

#[test]
fn a_client_dealt_over_replicas_merges_into_its_whole_minute() {
    let regular: Vec<Req> = (0..60)
        .map(|i| {
            (
                i as f64 * 0.5,
                if i % 3 == 0 { "/login" } else { "/product/1" },
                200,
            )
        })
        .collect();
    let scanner: Vec<Req> = (0..45)
        .map(|i| {
            (
                10.0 + i as f64,
                ["/a.php", "/b.php", "/c", "/d"][i % 4],
                404,
            )
        })
        .collect();
    let person: Vec<Req> = [0.0, 0.2, 0.3, 9.0, 9.1, 30.0, 31.5, 50.0]
        .iter()
        .map(|&t| (t, "/page", 200))
        .collect();
    // (what, requests)
    for (what, reqs) in [
        ("regular", regular),
        ("scanner", scanner),
        ("person", person),
    ] {
        let whole = dealt("c", "Mozilla/5.0", &reqs, 1)
            .remove(0)
            .clients
            .remove(0);
        for replicas in [2, 3] {
            let m = merged(dealt("c", "Mozilla/5.0", &reqs, replicas));
            let at = format!("{what} over {replicas}");
            assert_eq!(m.requests, whole.requests, "{at}");
            assert_eq!(m.errors, whole.errors, "{at}");
            assert_eq!(m.page_errors(), whole.page_errors(), "{at}");
            assert_eq!(m.distinct_endpoints(), whole.distinct_endpoints(), "{at}");
            assert_eq!(m.distinct_agents(), whole.distinct_agents(), "{at}");
            let routes = |c: &ClientMinute| {
                let mut r: Vec<_> = c.route_counts().collect();
                r.sort();
                r
            };
            assert_eq!(routes(&m), routes(&whole), "{at}");
            // Bursts are each replica's own sequence's (an approximation of the whole's); what
            // one replica saw crosses the wire exactly.
            let bursts = |c: &ClientMinute| c.route_bursts().map(|r| r.2).sum::<u32>();
            let wire = ClientMinute::from_summary(whole.summary());
            assert_eq!(bursts(&wire), bursts(&whole), "{at}: through the wire");
            assert_eq!(
                m.top_endpoint_requests(),
                whole.top_endpoint_requests(),
                "{at}"
            );
            assert!(
                (m.span_seconds() - whole.span_seconds()).abs() < 1e-6,
                "{at}: span {} against {}",
                m.span_seconds(),
                whole.span_seconds()
            );
            assert_eq!(m.inter_arrival.n, whole.inter_arrival.n, "{at}");
            assert!(!m.remote(), "{at}: seen here");
        }
    }
}

#[test]
fn a_regular_client_stays_regular_when_interleaved() {
    let reqs: Vec<Req> = (0..90).map(|i| (i as f64 * 0.6, "/search", 200)).collect();
    let m = merged(dealt("bot", "curl/8", &reqs, 3));
    let cv = m.inter_arrival.variance().sqrt() / m.inter_arrival.mean;
    assert!(cv < 0.05, "cv {cv}");
    assert!(
        (m.inter_arrival.mean - 0.6).abs() < 0.01,
        "{}",
        m.inter_arrival.mean
    );
}

#[test]
fn only_clients_past_the_floor_are_shared_busiest_first_up_to_the_cap() {
    let clients: Vec<ClientMinute> = [("a", 1, 200), ("b", 5, 200), ("c", 9, 200), ("d", 1, 404)]
        .into_iter()
        .flat_map(|(client, n, status)| {
            let reqs: Vec<Req> = (0..n).map(|i| (i as f64, "/x", status)).collect();
            dealt(client, "", &reqs, 1).remove(0).clients
        })
        .collect();
    let names = |floor, cap| {
        let mut n: Vec<String> = to_share(&clients, floor, cap)
            .into_iter()
            .map(|s| ClientMinute::from_summary(s).client.to_string())
            .collect();
        n.sort();
        n
    };
    // (floor, cap) -> shared
    let table: [(ShareFloor, usize, &[&str]); 4] = [
        (ShareFloor::ANY, 10, &["b", "c", "d"]),
        (
            ShareFloor {
                requests: 6,
                errors: 1,
            },
            10,
            &["c", "d"],
        ),
        (
            ShareFloor {
                requests: 2,
                errors: 5,
            },
            1,
            &["c"],
        ),
        (
            ShareFloor {
                requests: 100,
                errors: 100,
            },
            10,
            &[],
        ),
    ];
    for (floor, cap, expected) in table {
        assert_eq!(names(floor, cap), expected, "{floor:?} cap {cap}");
    }
}

#[test]
fn a_summary_past_the_bounds_is_taken_within_them() {
    let reqs: Vec<Req> = (0..200)
        .map(|i| (i as f64 * 0.1, ["/p/a", "/p/b", "/q"][i % 3], 200))
        .collect();
    let c = dealt("c", "x", &reqs, 1).remove(0).clients.remove(0);
    let mut json = serde_json::to_value(c.summary()).unwrap();
    // A hostile summary: a thousand endpoints and routes, NaN statistics.
    json["endpoints"] = (0..1000u64)
        .map(|i| serde_json::json!([i, 1, false, 250, false]))
        .collect();
    json["routes"] = (0..1000u64)
        .map(|i| serde_json::json!([i, 1, false]))
        .collect();
    json["gaps"] = serde_json::json!([5, null, null]);
    let parsed: Result<ClientSummary, _> = serde_json::from_value(json.clone());
    // JSON has no NaN: null is refused, and a finite value is taken as it is.
    assert!(parsed.is_err());
    json["gaps"] = serde_json::json!([5, 1.0, -4.0]);
    let m = ClientMinute::from_summary(serde_json::from_value(json).unwrap());
    assert!(m.remote());
    assert!(m.distinct_endpoints() >= 32 && m.route_counts().count() <= 32);
    assert!(m.inter_arrival.variance() >= 0.0);
}

#[test]
fn bursts_on_the_wire_are_optional_and_never_more_than_the_requests() {
    let reqs: Vec<Req> = (0..30).map(|i| (i as f64 * 0.1, "/img/1/a", 200)).collect();
    let c = dealt("c", "x", &reqs, 1).remove(0).clients.remove(0);
    let mut json = serde_json::to_value(c.summary()).unwrap();
    let bursts = |json: &serde_json::Value| {
        let s: ClientSummary = serde_json::from_value(json.clone()).unwrap();
        ClientMinute::from_summary(s)
            .route_bursts()
            .map(|r| r.2)
            .sum::<u32>()
    };
    assert_eq!(bursts(&json), 29);
    // A replica of the version before sends none: its routes count no bursts.
    json.as_object_mut().unwrap().remove("route_bursts");
    assert_eq!(bursts(&json), 0);
    // A hostile one claims more bursts than requests.
    json["route_bursts"] = serde_json::json!([60_000]);
    assert_eq!(bursts(&json), 30);
}
