//! Every kind of bad input: INVALID_ARGUMENT naming the field, and nothing changed.

use sluice::proto::sluice::v1 as pb;
use tonic::Code;

use crate::harness::*;
use crate::rls::{desc, request};
use crate::store_tests;

type Call = Box<dyn FnOnce(&TestServer) -> futures::future::BoxFuture<'_, tonic::Status> + Send>;

fn rls_call(r: envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest) -> Call {
    Box::new(move |s| {
        Box::pin(async move { s.rls().await.should_rate_limit(r).await.unwrap_err() })
    })
}

fn allow_call(r: pb::ShouldAllowRequest) -> Call {
    Box::new(move |s| Box::pin(async move { s.api().await.should_allow(r).await.unwrap_err() }))
}

fn update_call(rules: Vec<pb::Rule>) -> Call {
    Box::new(move |s| {
        Box::pin(async move {
            s.api()
                .await
                .update_rules(admin(pb::UpdateRulesRequest {
                    rules,
                    ..Default::default()
                }))
                .await
                .unwrap_err()
        })
    })
}

fn with_limit(mut rule: pb::Rule, edit: impl FnOnce(&mut pb::Limit)) -> pb::Rule {
    edit(&mut rule.limits[0]);
    rule
}

fn good() -> pb::Rule {
    rule("d", &[("k", "")], 10, pb::Unit::Minute)
}

fn cases() -> Vec<(&'static str, Call, &'static str)> {
    let long = "x".repeat(2000);
    let many_entries: Vec<(&str, &str)> = (0..17).map(|_| ("k", "v")).collect();
    let mut zero_override = request("d", vec![desc(&[("k", "v")])]);
    zero_override.descriptors[0].limit = Some(Default::default());
    let mut bad_unit_override = request("d", vec![desc(&[("k", "v")])]);
    bad_unit_override.descriptors[0].limit = Some(
        envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::RateLimitOverride {
            requests_per_unit: 5,
            unit: 99,
        },
    );
    vec![
        (
            "rls empty domain",
            rls_call(request("", vec![desc(&[("k", "v")])])),
            "domain",
        ),
        (
            "rls too many descriptors",
            rls_call(request("d", (0..33).map(|_| desc(&[("k", "v")])).collect())),
            "descriptors",
        ),
        (
            "rls too many entries",
            rls_call(request("d", vec![desc(&many_entries)])),
            "descriptors[0].entries",
        ),
        (
            "rls empty descriptor",
            rls_call(request("d", vec![desc(&[])])),
            "descriptors[0].entries",
        ),
        (
            "rls long key",
            rls_call(request("d", vec![desc(&[(&long, "v")])])),
            "descriptors[0].entries[0].key",
        ),
        (
            "rls long value",
            rls_call(request("d", vec![desc(&[("k", &long)])])),
            "descriptors[0].entries[0].value",
        ),
        (
            "rls zero override",
            rls_call(zero_override),
            "descriptors[0].limit.requests_per_unit",
        ),
        (
            "rls unknown override unit",
            rls_call(bad_unit_override),
            "descriptors[0].limit.unit",
        ),
        (
            "allow without subject",
            allow_call(pb::ShouldAllowRequest::default()),
            "subject",
        ),
        (
            "allow unknown tier",
            allow_call(pb::ShouldAllowRequest {
                subject: Some(pb::Subject {
                    tier: 9,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "subject.tier",
        ),
        (
            "allow long endpoint",
            allow_call(pb::ShouldAllowRequest {
                subject: Some(pb::Subject {
                    endpoint: long.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "subject.endpoint",
        ),
        (
            "update empty domain",
            update_call(vec![rule("", &[("k", "")], 1, pb::Unit::Second)]),
            "rules[0].domain",
        ),
        (
            "update no descriptors",
            update_call(vec![rule("d", &[], 1, pb::Unit::Second)]),
            "rules[0].descriptors",
        ),
        (
            "update missing unit",
            update_call(vec![rule("d", &[("k", "")], 1, pb::Unit::Unspecified)]),
            "rules[0].limits[0].unit",
        ),
        (
            "update unknown unit",
            update_call(vec![with_limit(good(), |l| l.unit = 42)]),
            "rules[0].limits[0].unit",
        ),
        (
            "update unknown algorithm",
            update_call(vec![with_limit(good(), |l| l.algorithm = 9)]),
            "rules[0].limits[0].algorithm",
        ),
        (
            "update zero limit",
            update_call(vec![good(), rule("d", &[("z", "")], 0, pb::Unit::Second)]),
            "rules[1].limits[0].requests_per_unit",
        ),
        (
            "update a period of no units",
            update_call(vec![with_limit(good(), |l| {
                l.unit_multiplier = 200_000_000
            })]),
            "rules[0].limits[0].unit_multiplier",
        ),
        (
            "update an unknown calendar zone",
            update_call(vec![with_limit(good(), |l| {
                l.algorithm = pb::Algorithm::FixedWindow as i32;
                l.unit = pb::Unit::Month as i32;
                l.calendar = "Mars/Olympus".into();
            })]),
            "rules[0].limits[0].calendar",
        ),
        (
            "update a calendar token bucket",
            update_call(vec![with_limit(good(), |l| {
                l.unit = pb::Unit::Month as i32;
                l.calendar = "UTC".into();
            })]),
            "rules[0].limits[0].calendar",
        ),
        (
            "update floor above ceiling",
            update_call(vec![with_limit(good(), |l| {
                l.floor = Some(9);
                l.ceiling = Some(3);
            })]),
            "rules[0].limits[0].floor",
        ),
        (
            "update unknown tier",
            update_call(vec![rule("d", &[("tier", "GOLD")], 1, pb::Unit::Second)]),
            "rules[0].descriptors[0].value",
        ),
        (
            "update long key",
            update_call(vec![rule("d", &[(&long, "")], 1, pb::Unit::Second)]),
            "rules[0].descriptors[0].key",
        ),
        (
            "update duplicate rules",
            update_call(vec![good(), good()]),
            "rules[1]",
        ),
        (
            "update with 100,000 replaces",
            update_call(vec![pb::Rule {
                replaces: (0..100_000).map(|i| format!("l{i}")).collect(),
                ..good()
            }]),
            "rules[0].replaces",
        ),
        (
            "update with a 3.5 MB replaces name",
            update_call(vec![pb::Rule {
                replaces: vec!["r".repeat(3_500_000)],
                ..good()
            }]),
            "rules[0].replaces[0]",
        ),
        (
            "update no limits",
            update_call(vec![pb::Rule {
                limits: vec![],
                ..good()
            }]),
            "rules[0].limits",
        ),
        (
            "delete nothing",
            Box::new(|s: &TestServer| {
                Box::pin(async move {
                    s.api()
                        .await
                        .delete_rules(admin(pb::DeleteRulesRequest::default()))
                        .await
                        .unwrap_err()
                })
            }),
            "ids",
        ),
        (
            "get empty id",
            Box::new(|s: &TestServer| {
                Box::pin(async move {
                    s.api()
                        .await
                        .get_rule(pb::GetRuleRequest::default())
                        .await
                        .unwrap_err()
                })
            }),
            "id",
        ),
        // A megabyte id names no rule: refused on its length, the reply stays small (checked
        // below for every case).
        (
            "get a 1 MB id",
            Box::new(|s: &TestServer| {
                Box::pin(async move {
                    s.api()
                        .await
                        .get_rule(pb::GetRuleRequest {
                            id: "d|k=".to_string() + &"x".repeat(1 << 20),
                        })
                        .await
                        .unwrap_err()
                })
            }),
            "id",
        ),
        (
            "delete a 1 MB id",
            Box::new(|s: &TestServer| {
                Box::pin(async move {
                    s.api()
                        .await
                        .delete_rules(admin(pb::DeleteRulesRequest {
                            ids: vec!["d|k".into(), "y".repeat(1 << 20)],
                            ..Default::default()
                        }))
                        .await
                        .unwrap_err()
                })
            }),
            "ids[1]",
        ),
        (
            "delete 10,001 ids",
            Box::new(|s: &TestServer| {
                Box::pin(async move {
                    s.api()
                        .await
                        .delete_rules(admin(pb::DeleteRulesRequest {
                            ids: (0..10_001).map(|i| format!("d|k={i}")).collect(),
                            ..Default::default()
                        }))
                        .await
                        .unwrap_err()
                })
            }),
            "ids",
        ),
    ]
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let db = Db::new(backend).await;
    let server = TestServer::start(&db.url).await;
    let revision = put_rules(&server, vec![rule("d", &[("k", "")], 3, pb::Unit::Minute)]).await;
    for (name, call, field) in cases() {
        let status = call(&server).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{name}: message {:?} should name {field:?}",
            status.message()
        );
        assert!(
            status.message().len() <= 2_048,
            "{name}: a {}-byte message",
            status.message().len()
        );
    }
    let after = server
        .api()
        .await
        .list_rules(pb::ListRulesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.revision, revision);
    assert_eq!(after.rules.len(), 1);
    assert_eq!(after.rules[0].limits[0].requests_per_unit, 3);
    // The server is still answering.
    server.wait_serving().await;
    server.stop().await;
}

store_tests!(bad_input_is_refused_and_changes_nothing);
