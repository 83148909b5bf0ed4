//! Baselines: calibration from the site's own values, trimming against masking, per-identity
//! values for shared addresses, warm-up.

use super::*;
use crate::learn::learner::test_support::requests;
use crate::learn::observe::{Aggregator, Event, Observation, ObserveConfig};
use crate::time::NANOS_PER_SEC;

/// One minute's client-minutes: `(client, user agents, requests to /x, errors)`.
fn minute(clients: &[(String, usize, u32, u32)]) -> Vec<ClientMinute> {
    let agg = Aggregator::new(ObserveConfig::default());
    let agents: Vec<String> = (0..64).map(|i| format!("agent-{i}")).collect();
    for (client, n_agents, requests, errors) in clients {
        for i in 0..*requests {
            let o = Observation {
                now: i as u64 * NANOS_PER_SEC / 10,
                client,
                user: "",
                tier: Tier::Std,
                endpoint: "/x",
                user_agent: &agents[i as usize % n_agents],
                event: Event::Decision {
                    allowed: true,
                    anomaly: false,
                    cut: false,
                },
            };
            agg.record(&o);
            if i < *errors {
                agg.record(&Observation {
                    event: Event::Outcome { status: 404 },
                    ..o
                });
            } else {
                agg.record(&Observation {
                    event: Event::Outcome { status: 200 },
                    ..o
                });
            }
        }
    }
    agg.drain().clients
}

/// A population of `n` ordinary clients with 1..=12 requests a minute and an error now and then.
fn ordinary(n: usize, minute_index: usize) -> Vec<(String, usize, u32, u32)> {
    (0..n)
        .map(|i| {
            let requests = 1 + ((i * 7 + minute_index * 3) % 12) as u32;
            (
                format!("10.0.{}.{}", i / 250, i % 250),
                1,
                requests,
                (i % 29 == 0) as u32,
            )
        })
        .collect()
}

fn trained(minutes: usize, extra: impl Fn(usize) -> Vec<(String, usize, u32, u32)>) -> Baselines {
    let mut b = Baselines::new(BaselineConfig::default());
    for m in 0..minutes {
        let mut clients = ordinary(300, m);
        clients.extend(extra(m));
        let data = minute(&clients);
        b.note_failing(data.iter());
        b.learn(m as i64, data.iter());
    }
    b
}

fn findings(b: &Baselines, client: (String, usize, u32, u32)) -> Vec<Measure> {
    let data = minute(&[client]);
    b.assess(&data[0]).into_iter().map(|f| f.measure).collect()
}

#[test]
fn thresholds_come_from_the_sites_own_values() {
    let b = trained(10, |_| Vec::new());
    let (p99, threshold) = b.threshold(Measure::Site).unwrap();
    // Ordinary clients make at most 12 requests a minute: p99 is about 12 (a quarter-octave bin).
    assert!((11.0..=14.0).contains(&p99), "p99 {p99}");
    assert_eq!(threshold, 4.0 * p99);
    // (what, client, beyond the site's requests baseline)
    let cases = [
        ("an ordinary client", ("a".to_string(), 1, 10, 0), false),
        (
            "twice the busiest ordinary client",
            ("b".to_string(), 1, 25, 0),
            false,
        ),
        (
            "twenty times an ordinary client",
            ("c".to_string(), 1, 200, 0),
            true,
        ),
    ];
    for (what, client, beyond) in cases {
        let found = findings(&b, client);
        assert_eq!(found.contains(&Measure::Site), beyond, "{what}: {found:?}");
    }
}

#[test]
fn a_botnet_of_any_size_does_not_become_the_baseline() {
    // From minute 10 on, as many bots as people, each at 200 requests a minute.
    let bots = |m: usize| {
        if m < 10 {
            Vec::new()
        } else {
            (0..300)
                .map(|i| (format!("203.0.{}.{}", i / 250, i % 250), 1, 200, 0))
                .collect()
        }
    };
    let b = trained(40, bots);
    let (p99, _) = b.threshold(Measure::Site).unwrap();
    assert!(p99 < 20.0, "the bots were learned: p99 {p99}");
    assert!(findings(&b, ("203.0.0.1".into(), 1, 200, 0)).contains(&Measure::Site));
}

#[test]
fn a_shared_address_is_compared_per_person() {
    let b = trained(10, |_| Vec::new());
    // 40 people behind one address, 10 requests each: 400 a minute, 10 per person.
    assert!(findings(&b, ("100.64.0.1".into(), 40, 400, 0)).is_empty());
    // One agent at 400 a minute is one client at 400.
    assert!(!findings(&b, ("100.64.0.2".into(), 1, 400, 0)).is_empty());
}

#[test]
fn errors_have_their_own_baseline() {
    let b = trained(10, |_| Vec::new());
    // 30 requests (within the requests baseline), all failing.
    let found = findings(&b, ("198.51.100.9".into(), 1, 30, 30));
    assert!(found.contains(&Measure::Errors), "{found:?}");
    assert!(!found.contains(&Measure::Site), "{found:?}");
}

#[test]
fn failures_count_only_when_most_requests_fail() {
    let b = trained(10, |_| Vec::new());
    // 400 requests with 8 errors: busy, and failing more than anyone, but mostly succeeding.
    let found = findings(&b, ("198.51.100.10".into(), 1, 400, 8));
    assert!(!found.contains(&Measure::Errors), "{found:?}");
}

#[test]
fn nobody_is_judged_before_the_baseline_has_seen_enough() {
    let b = trained(0, |_| Vec::new());
    assert!(findings(&b, ("c".into(), 1, 5_000, 0)).is_empty());
    assert!(b.threshold(Measure::Site).is_none());
}

#[test]
fn suggestions_sit_above_what_almost_every_client_uses() {
    let b = trained(10, |_| Vec::new());
    let s = suggestions(&b);
    let site = s.iter().find(|s| s.endpoint.is_none()).unwrap();
    assert!(site.per_minute as f64 >= site.p999, "{site:?}");
    let x = s
        .iter()
        .find(|s| s.endpoint == Some(crate::learn::observe::route_hash("/x")))
        .unwrap();
    assert_eq!(x.tier, Some(Tier::Std));
}

#[test]
fn ids_in_paths_are_one_route() {
    use crate::learn::observe::route_hash;
    // (a, b, same route)
    let cases = [
        ("/product/42", "/product/7", true),
        ("/u/3f9a8b7c6d5e/orders", "/u/0a1b2c3d4e5f/orders", true),
        (
            "/order/123e4567-e89b-12d3-a456-426614174000",
            "/order/00000000-0000-0000-0000-000000000001",
            true,
        ),
        ("/product/42", "/products/42", false),
        ("/static/app.js", "/static/app.css", false),
        ("/api/v1/items", "/api/v2/items", false),
    ];
    for (a, b, same) in cases {
        assert_eq!(route_hash(a) == route_hash(b), same, "{a} ~ {b}");
    }
    use crate::learn::observe::route_template;
    assert_eq!(
        route_template("/product/42/reviews"),
        "/product/{id}/reviews"
    );
    assert_eq!(route_template("/static/app.js"), "/static/app.js");
}

/// One client's minute: `(path, requests)` in turn, all answered 200.
fn visits(client: &str, paths: &[(&str, u32)]) -> ClientMinute {
    let agg = Aggregator::new(ObserveConfig::default());
    let mut at = 0;
    for &(path, n) in paths {
        let until = at + n as u64 * NANOS_PER_SEC / 10;
        requests(&agg, client, Tier::Std, path, n as u64, (at, until));
        at = until;
    }
    agg.drain().clients.remove(0)
}

#[test]
fn a_newcomer_is_judged_on_its_pages_stretched_to_a_minute() {
    // The site: at most 12 requests a client-minute, threshold ≈ 48; a newcomer here 20 s
    // (stretch 3) must make a third of it (≈ 16) and, stretched, pass it.
    let b = trained(10, |_| Vec::new());
    // (what, requests, flagged on the site's baseline)
    type Case<'a> = (&'a str, &'a [(&'a str, u32)], bool);
    let cases: [Case; 5] = [
        ("a flood's first 20 s", &[("/x", 60)], true),
        ("a person's few pages", &[("/x", 10)], false),
        (
            "a person's pages with their assets",
            &[("/x", 5), ("/static/app.js", 30), ("/static/app.css", 25)],
            false,
        ),
        ("only assets", &[("/static/app.js", 80)], false),
        (
            "a flood that also loads assets",
            &[("/x", 60), ("/static/app.js", 60)],
            true,
        ),
    ];
    for (what, paths, flagged) in cases {
        let c = visits("192.0.2.1", paths);
        let found: Vec<Measure> = b
            .assess_newcomer(&c, Stretch::uniform(3.0))
            .into_iter()
            .map(|f| f.measure)
            .collect();
        assert_eq!(found.contains(&Measure::Site), flagged, "{what}: {found:?}");
        assert!(
            found
                .iter()
                .all(|m| !matches!(m, Measure::Endpoint { asset: true, .. })),
            "{what}: an asset route judged: {found:?}"
        );
    }
}

#[test]
fn a_quiet_route_is_judged_on_its_own_once_it_has_a_few_dozen_values() {
    // 300 ordinary clients a minute on /x, and 12 a minute visiting /rare twice.
    let rare_minute = |m: usize| -> Vec<ClientMinute> {
        (0..12)
            .map(|i| visits(&format!("10.9.{m}.{i}"), &[("/rare", 2)]))
            .collect()
    };
    let mut b = Baselines::new(BaselineConfig::default());
    for m in 0..12 {
        let mut data = minute(&ordinary(300, m));
        data.extend(rare_minute(m));
        b.learn(m as i64, data.iter());
    }
    let rare = Measure::Endpoint {
        endpoint: crate::learn::observe::route_hash("/rare"),
        prm: false,
        asset: false,
    };
    // About 130 decayed values: enough for a route (a site-wide measure wants 200).
    let (p99, threshold) = b.threshold(rare).expect("the route judges");
    assert!(p99 <= 3.0, "p99 {p99}");
    assert_eq!(threshold, BaselineConfig::default().min_per_minute);
    // 40 requests to /rare: far beyond the route, within the whole site's per-client bar.
    let found: Vec<Measure> = b
        .assess(&visits("192.0.2.7", &[("/rare", 40)]))
        .into_iter()
        .map(|f| f.measure)
        .collect();
    assert_eq!(found, [rare]);
}

#[test]
fn a_crowd_just_above_the_tail_does_not_ratchet_it_up() {
    // From minute 10, 120 scrapers a minute (a third of the clients), each at 22 requests: under
    // twice the people's p99 (about 12), so each value alone would be learned.
    let crowd = |m: usize| {
        if m < 10 {
            Vec::new()
        } else {
            (0..120)
                .map(|i| (format!("203.0.1.{i}"), 1, 22, 0))
                .collect()
        }
    };
    let b = trained(40, crowd);
    let (p99, _) = b.threshold(Measure::Site).unwrap();
    assert!(p99 < 14.0, "the crowd became the tail: p99 {p99}");
    // A few (2%) a little above the tail are the tail's own business: still learned.
    let few = |m: usize| {
        (0..6)
            .map(|i| (format!("10.7.{m}.{i}"), 1, 18, 0))
            .collect::<Vec<_>>()
    };
    let b = trained(40, few);
    let (p99, _) = b.threshold(Measure::Site).unwrap();
    assert!(p99 >= 14.0, "a 2% tail was refused: p99 {p99}");
}

#[test]
fn a_route_with_a_little_history_is_judged_on_it() {
    // A small site: 60 people a minute on /x, three integrations at 400 a minute on /api (5% of
    // the client-minutes: the site-wide p99 is theirs) and one person a minute searching.
    let mut b = Baselines::new(BaselineConfig::default());
    for m in 0..30 {
        let mut data = minute(&ordinary(60, m));
        data.extend((0..3).map(|i| visits(&format!("198.51.100.{i}"), &[("/api", 400)])));
        data.push(visits(&format!("10.8.{m}.1"), &[("/search", 2)]));
        b.learn(m as i64, data.iter());
    }
    let (site_p99, _) = b.threshold(Measure::Site).unwrap();
    assert!(
        site_p99 >= 300.0,
        "the integrations set the site's tail: {site_p99}"
    );
    let search = Measure::Endpoint {
        endpoint: crate::learn::observe::route_hash("/search"),
        prm: false,
        asset: false,
    };
    // (who, route, requests, the measure that fires)
    let cases: &[(&str, &str, u32, Option<Measure>)] = &[
        ("a person's few searches", "/search", 8, None),
        (
            "a flood of /search at 40× a person's rate",
            "/search",
            400,
            Some(search),
        ),
        ("an integration at its usual rate", "/api", 400, None),
        // No history at all: only the whole site's bar, which the integrations set.
        ("a flood of a page nobody visited", "/new", 400, None),
    ];
    for (what, route, n, fires) in cases {
        let found: Vec<Measure> = b
            .assess(&visits("203.0.0.9", &[(route, *n)]))
            .into_iter()
            .map(|f| f.measure)
            .collect();
        assert_eq!(found.first().copied(), *fires, "{what}: {found:?}");
    }
}

#[test]
fn failures_are_judged_from_a_few_dozen_values_before_the_site_wide_measure() {
    // A small site: 15 people a minute for three minutes, 45 client-minutes.
    let mut b = Baselines::new(BaselineConfig::default());
    for m in 0..3 {
        b.learn(m as i64, minute(&ordinary(15, m)).iter());
    }
    assert!(
        b.threshold(Measure::Site).is_none(),
        "the site-wide measure wants 200"
    );
    // (client: requests, of them errors; flagged on errors)
    let cases: &[(&str, u32, u32, bool)] = &[
        ("a stuffer failing 36 of 38", 38, 36, true),
        ("a person with a few 404s", 10, 3, false),
        ("a busy client failing 10 of 200", 200, 10, false),
    ];
    for &(what, requests, errors, flagged) in cases {
        let found = findings(&b, ("203.0.0.5".into(), 1, requests, errors));
        assert_eq!(
            found.contains(&Measure::Errors),
            flagged,
            "{what}: {found:?}"
        );
    }
}

/// Issue 27's trap: on a small site nearly every client that fails is a scanner. Learning the
/// failure measure from them taught the site that scanning is normal; learned from clients in
/// good standing only, a scanner is beyond it however many others scan.
#[test]
fn scanners_that_are_most_of_the_failing_clients_do_not_become_the_baseline() {
    // 100 people who never fail, and every minute 40 scanners failing 10 to 200 times (none
    // acted on: all of them reach `learn`, as they did on the real log).
    let b = {
        let mut b = Baselines::new(BaselineConfig::default());
        for m in 0..60usize {
            let mut clients: Vec<(String, usize, u32, u32)> = (0..100)
                .map(|i| (format!("10.0.0.{i}"), 1, 1 + ((i + m) % 9) as u32, 0))
                .collect();
            clients.extend((0..40).map(|i| {
                let failed = 10 + ((i * 37 + m * 11) % 190) as u32;
                (format!("203.0.{m}.{i}"), 1, failed + 1, failed)
            }));
            let data = minute(&clients);
            b.note_failing(data.iter());
            b.learn(m as i64, data.iter());
        }
        b
    };
    let (_, threshold, _) = b.threshold_of(Measure::Errors).unwrap();
    assert!(threshold <= 8.0, "failure threshold {threshold}");
    // A scanner failing 12 times in a minute is beyond it; a person is not.
    assert_eq!(
        findings(&b, ("198.51.100.1".into(), 1, 13, 12)),
        vec![Measure::Errors]
    );
    assert!(findings(&b, ("10.9.9.9".into(), 1, 9, 0)).is_empty());
    assert_eq!(b.site_rarely_fails(), Some(true));
}

/// The prior no site's traffic can talk away: where the typical client rarely fails, a client
/// failing more than 20 page requests a minute, most of its requests, is beyond the failure
/// baseline even when the learned threshold is higher (busy integrations with a few per cent
/// of errors set the p99 of clients in good standing high).
#[test]
fn the_failure_prior_caps_a_high_learned_threshold() {
    let b = trained(30, |m| {
        // 10 integrations making 600 requests a minute, 10% failing: in good standing.
        (0..10)
            .map(|i| (format!("198.51.{m}.{i}"), 1, 600, 60))
            .collect()
    });
    let (p99, threshold, prior) = b.threshold_of(Measure::Errors).unwrap();
    assert!(p99 >= 40.0, "p99 {p99}");
    assert!(prior);
    assert_eq!(threshold, FAILURE_PRIOR);
    let found = b.assess(&minute(&[("203.0.113.9".into(), 1, 30, 25)])[0]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].measure, Measure::Errors);
    assert!(
        found[0].why(None).contains("never normal"),
        "{}",
        found[0].why(None)
    );
    // The integrations themselves do not mostly fail: not beyond it.
    assert!(findings(&b, ("198.51.0.1".into(), 1, 600, 60)).is_empty());
}

/// A site where most clients' requests fail is not one where failing is rare: the prior stays
/// off and the learned threshold decides.
#[test]
fn the_failure_prior_is_off_where_most_clients_fail() {
    let b = trained(30, |m| {
        (0..400)
            .map(|i| (format!("100.64.{m}.{i}"), 1, 4, 3))
            .collect()
    });
    assert_eq!(b.site_rarely_fails(), Some(false));
    let (_, _, prior) = b.threshold_of(Measure::Errors).unwrap();
    assert!(!prior);
}

/// Failed static assets say nothing of a client: a phone asking for four missing
/// `apple-touch-icon` variants twice (as real ones do) is not a failing client.
#[test]
fn failed_assets_are_not_failures() {
    let b = trained(30, |_| Vec::new());
    let agg = Aggregator::new(ObserveConfig::default());
    let record = |endpoint: &str, status: u16| {
        let o = Observation {
            now: 0,
            client: "192.0.2.44",
            user: "",
            tier: Tier::Std,
            endpoint,
            user_agent: "MobileSafari/604.1",
            event: Event::Decision {
                allowed: true,
                anomaly: false,
                cut: false,
            },
        };
        agg.record(&o);
        agg.record(&Observation {
            event: Event::Outcome { status },
            ..o
        });
    };
    record("/m/search", 200);
    for _ in 0..2 {
        for icon in ["-120x120-precomposed", "-120x120", "-precomposed", ""] {
            record(&format!("/apple-touch-icon{icon}.png"), 404);
        }
        record("/favicon.ico", 200);
    }
    let phone = &agg.drain().clients[0];
    assert_eq!((phone.errors, phone.page_errors()), (8, 0));
    assert!(!phone.mostly_failing_pages(1));
    assert!(b.assess(phone).is_empty());
}

/// A flood of made-up endpoints (a new route each request) makes at most twice the cap of
/// endpoint histograms in a minute, and the cap stays after it.
#[test]
fn a_flood_of_new_endpoints_makes_a_bounded_number_of_measures() {
    let mut b = Baselines::new(BaselineConfig {
        max_endpoints: 50,
        ..BaselineConfig::default()
    });
    let agg = Aggregator::new(ObserveConfig::default());
    // Letters, not digits: a segment with digits is an id, and ids share one route.
    let letters = |i: usize| -> String {
        (0..3)
            .map(|k| (b'a' + (i / 26usize.pow(k) % 26) as u8) as char)
            .collect()
    };
    let endpoints: Vec<String> = (0..1_000)
        .map(|i| format!("/made-up/{}", letters(i)))
        .collect();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let client = format!("10.0.{}.{}", i / 250, i % 250);
        agg.record(&Observation {
            now: NANOS_PER_SEC,
            client: &client,
            user: "",
            tier: Tier::Std,
            endpoint,
            user_agent: "",
            event: Event::Decision {
                allowed: true,
                anomaly: false,
                cut: false,
            },
        });
    }
    let clients = agg.drain().clients;
    b.learn(0, clients.iter());
    let kept = b
        .measures
        .keys()
        .filter(|m| matches!(m, Measure::Endpoint { .. }))
        .count();
    assert!(
        kept <= 50,
        "{kept} endpoint measures after the minute, cap 50"
    );
    assert_eq!(
        b.most_endpoint_measures, 100,
        "during the minute at most twice the cap were made"
    );
}
