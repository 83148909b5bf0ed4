//! Envoy RLS semantics over gRPC.

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use sluice::app::config::UnknownDomain;
use sluice::proto::sluice::v1 as pb;
use sluice_core::headers::HeaderStyle;
use sluice_core::limit::{Rate, Unit};

use crate::harness::*;
use crate::store_tests;

pub fn desc(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

pub fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend: 0,
    }
}

fn codes(r: &RateLimitResponse) -> Vec<i32> {
    r.statuses.iter().map(|s| s.code).collect()
}

const OK: i32 = Code::Ok as i32;
const OVER: i32 = Code::OverLimit as i32;

async fn envoy_semantics(backend: Backend) {
    let db = Db::new(backend).await;
    let server = TestServer::start(&db.url).await;
    put_rules(
        &server,
        vec![
            rule("edge", &[("remote_address", "")], 2, pb::Unit::Minute),
            rule(
                "edge",
                &[("tier", "STD"), ("user_id", "")],
                3,
                pb::Unit::Hour,
            ),
        ],
    )
    .await;
    let rls = server.rls().await;
    let ask = |r: RateLimitRequest| {
        let mut rls = rls.clone();
        async move { rls.should_rate_limit(r).await.unwrap().into_inner() }
    };

    // One status per descriptor, in order; an unmatched descriptor is OK with no limit.
    let r = ask(request(
        "edge",
        vec![
            desc(&[("remote_address", "1.1.1.1")]),
            desc(&[("nothing", "x")]),
        ],
    ))
    .await;
    assert_eq!(codes(&r), [OK, OK]);
    assert_eq!(r.overall_code, OK);
    let s = &r.statuses[0];
    let limit = s.current_limit.as_ref().unwrap();
    assert_eq!((limit.requests_per_unit, s.limit_remaining), (2, 1));
    assert!(s.duration_until_reset.as_ref().unwrap().seconds <= 60);
    assert!(r.statuses[1].current_limit.is_none());

    // Key-only entries give each value its own bucket.
    let r = ask(request(
        "edge",
        vec![desc(&[("remote_address", "2.2.2.2")])],
    ))
    .await;
    assert_eq!(r.statuses[0].limit_remaining, 1);

    // The second request for 1.1.1.1 uses the last hit; the third is over; overall follows.
    ask(request(
        "edge",
        vec![desc(&[("remote_address", "1.1.1.1")])],
    ))
    .await;
    let r = ask(request(
        "edge",
        vec![
            desc(&[("nothing", "x")]),
            desc(&[("remote_address", "1.1.1.1")]),
        ],
    ))
    .await;
    assert_eq!(codes(&r), [OK, OVER]);
    assert_eq!(r.overall_code, OVER);

    // Nested descriptors: tier=STD then user_id.
    let nested = |user: &str| request("edge", vec![desc(&[("tier", "STD"), ("user_id", user)])]);
    let r = ask(nested("ann")).await;
    assert_eq!(
        r.statuses[0]
            .current_limit
            .as_ref()
            .unwrap()
            .requests_per_unit,
        3
    );
    assert_eq!(r.statuses[0].limit_remaining, 2);

    // Request-level hits_addend.
    let mut big = nested("bob");
    big.hits_addend = 3;
    assert_eq!(ask(big.clone()).await.statuses[0].limit_remaining, 0);
    assert_eq!(ask(big).await.overall_code, OVER);

    // A per-descriptor hits_addend of 0 checks without consuming.
    let mut check = nested("cy");
    check.descriptors[0].hits_addend =
        Some(envoy_types::pb::google::protobuf::UInt64Value { value: 0 });
    for _ in 0..5 {
        let r = ask(check.clone()).await;
        assert_eq!((r.overall_code, r.statuses[0].limit_remaining), (OK, 3));
    }
    // The per-descriptor hits_addend overrides the request's.
    let mut two = nested("cy");
    two.hits_addend = 1;
    two.descriptors[0].hits_addend =
        Some(envoy_types::pb::google::protobuf::UInt64Value { value: 2 });
    assert_eq!(ask(two).await.statuses[0].limit_remaining, 1);

    // is_negative_hits gives hits back.
    let mut back = nested("cy");
    back.descriptors[0].hits_addend =
        Some(envoy_types::pb::google::protobuf::UInt64Value { value: 2 });
    back.descriptors[0].is_negative_hits = true;
    let r = ask(back).await;
    assert_eq!((r.overall_code, r.statuses[0].limit_remaining), (OK, 3));

    // A denied request consumes nothing from the other descriptors' limits.
    let both = request(
        "edge",
        vec![
            desc(&[("tier", "STD"), ("user_id", "dee")]),
            desc(&[("remote_address", "1.1.1.1")]),
        ],
    );
    assert_eq!(codes(&ask(both).await), [OK, OVER]);
    assert_eq!(ask(nested("dee")).await.statuses[0].limit_remaining, 2);

    // The descriptor's own limit override is honoured.
    let mut overridden = request("edge", vec![desc(&[("remote_address", "9.9.9.9")])]);
    overridden.descriptors[0].limit = Some(RateLimitOverride {
        requests_per_unit: 1,
        unit: envoy_types::pb::envoy::r#type::v3::RateLimitUnit::Day as i32,
    });
    let r = ask(overridden.clone()).await;
    assert_eq!(
        r.statuses[0]
            .current_limit
            .as_ref()
            .unwrap()
            .requests_per_unit,
        1
    );
    assert_eq!(ask(overridden).await.overall_code, OVER);

    // Unknown domain: OK, no limits.
    let r = ask(request(
        "nowhere",
        vec![desc(&[("remote_address", "1.1.1.1")])],
    ))
    .await;
    assert_eq!(
        (r.overall_code, r.statuses[0].current_limit.is_none()),
        (OK, true)
    );
    server.stop().await;
}

store_tests!(envoy_semantics);

/// Header styles for RLS: (style, expected header names on a denial).
#[tokio::test]
async fn rls_header_styles() {
    let cases: &[(HeaderStyle, &[&str])] = &[
        (HeaderStyle::None, &["retry-after"]),
        (
            HeaderStyle::Draft03,
            &[
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
                "retry-after",
            ],
        ),
        (
            HeaderStyle::Ietf,
            &["ratelimit-policy", "ratelimit", "retry-after"],
        ),
    ];
    for (style, want) in cases {
        let (_db, server) = TestServer::sqlite_with(|c| c.rls_headers = *style).await;
        put_rules(
            &server,
            vec![rule("edge", &[("k", "")], 1, pb::Unit::Minute)],
        )
        .await;
        let mut rls = server.rls().await;
        let first = rls
            .should_rate_limit(request("edge", vec![desc(&[("k", "v")])]))
            .await
            .unwrap()
            .into_inner();
        let allowed_names: Vec<&str> = first
            .response_headers_to_add
            .iter()
            .map(|h| h.key.as_str())
            .collect();
        let want_allowed: Vec<&str> = want
            .iter()
            .copied()
            .filter(|h| *h != "retry-after")
            .collect();
        assert_eq!(allowed_names, want_allowed, "{style:?} allowed");
        let denied = rls
            .should_rate_limit(request("edge", vec![desc(&[("k", "v")])]))
            .await
            .unwrap()
            .into_inner();
        let names: Vec<&str> = denied
            .response_headers_to_add
            .iter()
            .map(|h| h.key.as_str())
            .collect();
        assert_eq!(&names, want, "{style:?} denied");
        if *style == HeaderStyle::Draft03 {
            assert_eq!(denied.response_headers_to_add[0].value, "1, 1;w=60");
            assert_eq!(denied.response_headers_to_add[1].value, "0");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn the_descriptor_closest_to_its_limit_speaks_for_the_headers() {
    let (_db, server) = TestServer::sqlite_with(|c| {
        c.rls_headers = HeaderStyle::Draft03;
    })
    .await;
    put_rules(
        &server,
        vec![
            rule("edge", &[("a", "")], 100, pb::Unit::Minute),
            rule("edge", &[("b", "")], 5, pb::Unit::Minute),
        ],
    )
    .await;
    let r = server
        .rls()
        .await
        .should_rate_limit(request(
            "edge",
            vec![desc(&[("a", "x")]), desc(&[("b", "x")])],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.response_headers_to_add[0].value, "5, 5;w=60");
    assert_eq!(r.response_headers_to_add[1].value, "4");
    server.stop().await;
}

#[tokio::test]
async fn unknown_domain_can_take_a_default_limit() {
    let (_db, server) = TestServer::sqlite_with(|c| {
        c.unknown_domain = UnknownDomain::Limit(Rate {
            requests_per_unit: 1,
            unit: Unit::Hour,
            unit_multiplier: 1,
        });
    })
    .await;
    let mut rls = server.rls().await;
    let ask = request("somewhere", vec![desc(&[("remote_address", "1.1.1.1")])]);
    assert_eq!(
        rls.should_rate_limit(ask.clone())
            .await
            .unwrap()
            .get_ref()
            .overall_code,
        OK
    );
    assert_eq!(
        rls.should_rate_limit(ask)
            .await
            .unwrap()
            .get_ref()
            .overall_code,
        OVER
    );
    server.stop().await;
}

#[tokio::test]
async fn the_moka_bucket_store_serves_the_same_answers() {
    let (_db, server) = TestServer::sqlite_with(|c| {
        c.bucket_store = Some(sluice::adapters::moka_store::StoreKind::Moka);
    })
    .await;
    put_rules(&server, vec![rule("edge", &[("k", "")], 2, pb::Unit::Hour)]).await;
    let mut rls = server.rls().await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = rls
            .should_rate_limit(request("edge", vec![desc(&[("k", "v")])]))
            .await
            .unwrap()
            .into_inner();
        seen.push((r.overall_code, r.statuses[0].limit_remaining));
    }
    assert_eq!(seen, [(OK, 1), (OK, 0), (OVER, 0)]);
    server.stop().await;
}
