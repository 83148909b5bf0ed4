//! ShouldAllow, GetClient and ResetClient over gRPC, against both stores.

use sluice::proto::sluice::v1 as pb;

use crate::harness::*;
use crate::store_tests;

fn subject(user: &str, tier: pb::Tier, endpoint: &str, ip: &str) -> pb::Subject {
    pb::Subject {
        client_ip: ip.into(),
        user_id: user.into(),
        tier: tier as i32,
        endpoint: endpoint.into(),
        method: "GET".into(),
        user_agent: "test".into(),
    }
}

fn ask(subject: pb::Subject) -> pb::ShouldAllowRequest {
    pb::ShouldAllowRequest {
        subject: Some(subject),
        cost: 0,
        domain: String::new(),
    }
}

async fn should_allow(backend: Backend) {
    let db = Db::new(backend).await;
    let server = TestServer::start(&db.url).await;
    let mut shadowed = rule(
        "sluice",
        &[("endpoint", "/api/search")],
        1,
        pb::Unit::Minute,
    );
    shadowed.shadow_mode = true;
    put_rules(
        &server,
        vec![
            rule(
                "sluice",
                &[("tier", "STD"), ("user_id", "")],
                2,
                pb::Unit::Minute,
            ),
            rule(
                "sluice",
                &[("tier", "PRM"), ("user_id", "")],
                100,
                pb::Unit::Minute,
            ),
            rule(
                "sluice",
                &[("endpoint", "/api/login"), ("remote_address", "")],
                1,
                pb::Unit::Hour,
            ),
            shadowed,
        ],
    )
    .await;
    let mut api = server.api().await;

    let std_user = subject("ann", pb::Tier::Std, "/api/browse", "10.0.0.1");
    let first = api
        .should_allow(ask(std_user.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(first.allowed);
    assert_eq!(
        (first.limit, first.remaining, first.unit),
        (2, 1, pb::Unit::Minute as i32)
    );
    assert_eq!(first.rule_id, "sluice|tier=STD|user_id");
    assert_eq!(first.reason, pb::Reason::WithinLimit as i32);
    let names: Vec<&str> = first.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        ["ratelimit-policy", "ratelimit"],
        "IETF headers by default"
    );
    assert!(first.retry_after.is_none());

    api.should_allow(ask(std_user.clone())).await.unwrap();
    let denied = api
        .should_allow(ask(std_user.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(!denied.allowed);
    assert_eq!(denied.reason, pb::Reason::OverLimit as i32);
    assert!(denied.retry_after.as_ref().unwrap().seconds <= 60);
    assert!(denied.headers.iter().any(|h| h.name == "retry-after"));

    // Same user, PRM tier: a different rule and bucket.
    let prm = api
        .should_allow(ask(subject(
            "ann",
            pb::Tier::Prm,
            "/api/browse",
            "10.0.0.1",
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(prm.allowed);
    assert_eq!(prm.limit, 100);

    // Combined key: login per client IP, and cost.
    let login = subject("", pb::Tier::Std, "/api/login", "10.0.0.9");
    let mut costly = ask(login.clone());
    costly.cost = 2;
    assert!(
        !api.should_allow(costly).await.unwrap().get_ref().allowed,
        "cost 2 > limit 1"
    );
    assert!(
        api.should_allow(ask(login.clone()))
            .await
            .unwrap()
            .get_ref()
            .allowed
    );
    assert!(
        !api.should_allow(ask(login))
            .await
            .unwrap()
            .get_ref()
            .allowed
    );

    // Shadow rule: allowed, flagged.
    let search = subject("", pb::Tier::Std, "/api/search", "10.0.0.3");
    api.should_allow(ask(search.clone())).await.unwrap();
    let shadow = api.should_allow(ask(search)).await.unwrap().into_inner();
    assert!(shadow.allowed && shadow.shadow);

    // GetClient shows the live state; ResetClient restores the allowance.
    let state = api
        .get_client(pb::GetClientRequest {
            subject: Some(std_user.clone()),
            domain: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.limits.len(), 1);
    assert_eq!(
        (state.limits[0].remaining, state.limits[0].tracked),
        (0, true)
    );
    let reset = api
        .reset_client(admin(pb::ResetClientRequest {
            subject: Some(std_user.clone()),
            domain: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.buckets_reset, 1);
    assert!(
        api.should_allow(ask(std_user))
            .await
            .unwrap()
            .get_ref()
            .allowed
    );
    server.stop().await;
}

store_tests!(should_allow);

#[tokio::test]
async fn global_shadow_switch_never_denies() {
    let (_db, server) = TestServer::sqlite_with(|c| {
        c.shadow = true;
    })
    .await;
    put_rules(
        &server,
        vec![rule("sluice", &[("remote_address", "")], 1, pb::Unit::Hour)],
    )
    .await;
    let mut api = server.api().await;
    let me = subject("", pb::Tier::Std, "/x", "10.1.1.1");
    for i in 0..5 {
        let r = api
            .should_allow(ask(me.clone()))
            .await
            .unwrap()
            .into_inner();
        assert!(r.allowed);
        assert_eq!(r.shadow, i > 0, "request {i}");
    }
    server.stop().await;
}
