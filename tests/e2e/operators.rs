//! The operators' views over gRPC: `GetStats` sums the per-minute history over a window (on
//! both stores), `ListRuleAudit` reads who changed which rule, and `GetClient` shows the
//! anomaly action and the pressure cut in force for a subject.

use sluice::proto::sluice::v1 as pb;
use sluice::store::history::{HistoryBatch, ScoreRow, TrafficRow};
use sluice::store::{Store, StoreOptions};
use tonic::Code;

use crate::harness::*;
use crate::store_tests;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

fn traffic(
    m: i64,
    endpoint: &str,
    tier: &'static str,
    requests: i64,
    denied: (i64, i64, i64),
) -> TrafficRow {
    let (limit, anomaly, cut) = denied;
    TrafficRow {
        minute_ms: T0 + m * MIN,
        endpoint: endpoint.into(),
        tier,
        requests,
        allowed: requests - limit - anomaly - cut,
        denied: limit + anomaly + cut,
        denied_anomaly: anomaly,
        denied_cut: cut,
        errors: 1,
    }
}

fn score(m: i64, client: &str) -> ScoreRow {
    ScoreRow {
        minute_ms: T0 + m * MIN,
        client: client.into(),
        score: 0.5,
        requests: 3,
        features: "{}".into(),
        action: None,
        model_version: 1,
    }
}

async fn stats_sum_the_history_over_a_window(backend: Backend) {
    let db = Db::new(backend).await;
    let store = Store::connect(&StoreOptions::new(&db.url)).await.unwrap();
    let batch = HistoryBatch {
        traffic: vec![
            traffic(0, "/api/payment", "STD", 10, (1, 2, 0)),
            traffic(1, "/api/payment", "STD", 20, (0, 0, 3)),
            traffic(1, "/api/payment", "PRM", 5, (0, 0, 0)),
            traffic(2, "/api/browse", "STD", 7, (2, 0, 0)),
            // Outside the window asked below.
            traffic(9, "/api/browse", "STD", 1_000, (0, 0, 0)),
        ],
        scores: vec![score(0, "a"), score(1, "a"), score(2, "b"), score(9, "c")],
        instance: "sluice-a".into(),
        ..HistoryBatch::default()
    };
    store.write_history(&batch).await.unwrap();
    store.close().await;
    let server = TestServer::start_with(config(&db.url)).await;
    let mut api = server.api().await;
    let ask = |limit| pb::GetStatsRequest {
        since_ms: T0,
        until_ms: T0 + 3 * MIN,
        limit,
    };
    let stats = api.get_stats(admin(ask(0))).await.unwrap().into_inner();
    let total = stats.total.unwrap();
    assert_eq!(
        (total.requests, total.allowed, total.denied, total.errors),
        (42, 34, 8, 4)
    );
    assert_eq!(
        (
            total.denied_limit,
            total.denied_anomaly,
            total.denied_pressure_cut
        ),
        (3, 2, 3)
    );
    assert_eq!(stats.unique_clients, 2, "a and b; c is outside the window");
    let rows: Vec<(String, i32, u64)> = stats
        .endpoints
        .iter()
        .map(|e| (e.endpoint.clone(), e.tier, e.requests))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("/api/payment".into(), pb::Tier::Std as i32, 30),
            ("/api/browse".into(), pb::Tier::Std as i32, 7),
            ("/api/payment".into(), pb::Tier::Prm as i32, 5),
        ],
        "busiest first"
    );
    assert!(!stats.truncated);
    let one = api.get_stats(admin(ask(1))).await.unwrap().into_inner();
    assert_eq!(one.endpoints.len(), 1);
    assert!(one.truncated);

    for (request, field) in [
        (
            pb::GetStatsRequest {
                since_ms: -1,
                ..ask(0)
            },
            "since_ms",
        ),
        (
            pb::GetStatsRequest {
                until_ms: T0 - 1,
                ..ask(0)
            },
            "until_ms",
        ),
        (ask(5_000), "limit"),
    ] {
        let e = api.get_stats(admin(request)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(field), "{}", e.message());
    }
    let e = api
        .get_stats(tonic::Request::new(ask(0)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    server.stop().await;
}

store_tests!(stats_sum_the_history_over_a_window);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_audit_log_is_readable_over_grpc() {
    let (_db, server) = TestServer::sqlite_with(|_| {}).await;
    let a = rule("sluice", &[("user_id", "")], 5, pb::Unit::Minute);
    let b = rule("sluice", &[("remote_address", "")], 9, pb::Unit::Minute);
    put_rules(&server, vec![a.clone(), b]).await;
    put_rules(
        &server,
        vec![rule("sluice", &[("user_id", "")], 6, pb::Unit::Minute)],
    )
    .await;
    let mut api = server.api().await;
    let all = api
        .list_rule_audit(admin(pb::ListRuleAuditRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(all.len(), 3);
    assert_eq!(
        (all[0].rule_id.as_str(), all[0].action.as_str()),
        ("sluice|user_id", "update"),
        "newest first"
    );
    assert!(all[0].before_json.contains('5') && all[0].after_json.contains('6'));
    let one = api
        .list_rule_audit(admin(pb::ListRuleAuditRequest {
            rule_id: "sluice|remote_address".into(),
            limit: 10,
        }))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].action, "create");
    assert!(one[0].before_json.is_empty());
    let e = api
        .list_rule_audit(admin(pb::ListRuleAuditRequest {
            limit: 1_001,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("limit"), "{}", e.message());
    let e = api
        .list_rule_audit(tonic::Request::new(pb::ListRuleAuditRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_client_shows_the_action_and_the_cut_in_force() {
    let (_db, server) = TestServer::sqlite_with(|c| {
        c.learn_tick_secs = 1;
        c.learn.pressure_hold_secs = 1;
    })
    .await;
    let browse = pb::Rule {
        priority: pb::Priority::Low as i32,
        ..rule(
            "sluice",
            &[("endpoint", "/api/browse"), ("user_id", "")],
            4,
            pb::Unit::Minute,
        )
    };
    put_rules(&server, vec![browse]).await;
    let mut api = server.api().await;
    let client = |user: &str, tier: pb::Tier, ip: &str| pb::GetClientRequest {
        subject: Some(pb::Subject {
            user_id: user.into(),
            tier: tier as i32,
            endpoint: "/api/browse".into(),
            client_ip: ip.into(),
            ..Default::default()
        }),
        domain: String::new(),
    };
    let before = api
        .get_client(client("u", pb::Tier::Std, "192.0.2.1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.pressure_factor, 1.0);
    assert!(before.action.is_none());
    assert!(!before.limits[0].cut);

    api.report_load(admin(pb::ReportLoadRequest {
        backend: "payments-db".into(),
        utilisation: 0.95,
    }))
    .await
    .unwrap();
    api.update_client_list(admin(pb::UpdateClientListRequest {
        list: pb::ClientList::Deny as i32,
        client: "192.0.2.66".into(),
        reason: "scraper".into(),
        ..Default::default()
    }))
    .await
    .unwrap();
    eventually("the cut applies", async || {
        server.model_info().await.pressure_factor == 0.5
    })
    .await;
    let std = api
        .get_client(client("u", pb::Tier::Std, "192.0.2.66"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(std.pressure_factor, 0.5);
    assert!(
        std.pressure_cause.contains("payments-db"),
        "{}",
        std.pressure_cause
    );
    assert!(std.limits[0].cut);
    assert_eq!(
        std.limits[0].limit, 2,
        "the STD limit as enforced: half of 4"
    );
    let action = std.action.expect("the denylisted address is blocked");
    assert_eq!(
        (
            action.kind.as_str(),
            action.signal.as_str(),
            action.client.as_str()
        ),
        ("block", "denylist", "192.0.2.66")
    );
    let prm = api
        .get_client(client("p", pb::Tier::Prm, "192.0.2.1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!prm.limits[0].cut, "PRM keeps its limits");
    assert_eq!(prm.limits[0].limit, 4);
    assert!(prm.action.is_none());
    server.stop().await;
}
