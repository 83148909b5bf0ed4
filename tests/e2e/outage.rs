//! The database going away: decisions keep flowing from memory, rule changes fail with
//! UNAVAILABLE and a clear message, and everything resyncs when it comes back — no restart.

use std::time::Duration;

use sluice::proto::sluice::v1 as pb;
use sqlx::Connection;
use tonic::Code;

use crate::harness::*;
use crate::rls::{desc, request};

async fn decisions_still_flow(server: &TestServer) {
    let mut rls = server.rls().await;
    let r = rls
        .should_rate_limit(request("d", vec![desc(&[("k", "during-outage")])]))
        .await
        .expect("decisions never need the database")
        .into_inner();
    assert_eq!(
        r.statuses[0]
            .current_limit
            .as_ref()
            .unwrap()
            .requests_per_unit,
        5
    );
}

async fn update(server: &TestServer, rpu: u64) -> Result<u64, tonic::Status> {
    server
        .api()
        .await
        .update_rules(admin(pb::UpdateRulesRequest {
            rules: vec![rule("d", &[("k", "")], rpu, pb::Unit::Minute)],
            ..Default::default()
        }))
        .await
        .map(|r| r.get_ref().revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_by_another_process() {
    let db = Db::new(Backend::Sqlite).await;
    let server = TestServer::start(&db.url).await;
    update(&server, 5).await.unwrap();

    // Another program takes the write lock and holds it.
    let mut other = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    let refused = update(&server, 6).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("database unavailable"),
        "{}",
        refused.message()
    );
    decisions_still_flow(&server).await;

    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let revision = update(&server, 7)
        .await
        .expect("writes work again once the lock is gone");
    let listed = server
        .api()
        .await
        .list_rules(pb::ListRulesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (listed.revision, listed.rules[0].limits[0].requests_per_unit),
        (revision, 7)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted() {
    let cluster = PgCluster::start();
    let url = fresh_pg_database(&cluster.url()).await;
    // Two instances sharing one database, as in production.
    let a = TestServer::start(&url).await;
    let b = TestServer::start(&url).await;
    update(&a, 5).await.unwrap();
    eventually("instance b to load a's rule", async || {
        b.api()
            .await
            .list_rules(pb::ListRulesRequest::default())
            .await
            .unwrap()
            .get_ref()
            .rules
            .len()
            == 1
    })
    .await;

    cluster.down();
    decisions_still_flow(&a).await;
    decisions_still_flow(&b).await;
    let refused = update(&a, 6).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("database unavailable"),
        "{}",
        refused.message()
    );

    cluster.up();
    let mut revision = 0;
    eventually("writes to work again", async || match update(&a, 8).await {
        Ok(r) => {
            revision = r;
            true
        }
        Err(_) => false,
    })
    .await;
    eventually("instance b to resync without a restart", async || {
        let listed = b
            .api()
            .await
            .list_rules(pb::ListRulesRequest::default())
            .await
            .unwrap()
            .into_inner();
        listed.revision == revision && listed.rules[0].limits[0].requests_per_unit == 8
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// PostgreSQL stops answering (SIGSTOP) with connections open: a rule change fails as
/// UNAVAILABLE within the statement timeout, the one queued behind it too, decisions go on, and
/// writes work again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_that_stops_answering_fails_changes_in_time() {
    let cluster = PgCluster::start();
    let url = fresh_pg_database(&cluster.url()).await;
    let mut config = config(&url);
    config.db_statement_timeout_ms = 1_500;
    config.resync_interval_ms = 60_000;
    let server = TestServer::start_with(config).await;
    update(&server, 5).await.unwrap();
    cluster.freeze(true);
    let started = std::time::Instant::now();
    let (first, second) = tokio::join!(update(&server, 6), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        update(&server, 7).await
    });
    let took = started.elapsed();
    for refused in [first.unwrap_err(), second.unwrap_err()] {
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    }
    assert!(took < Duration::from_secs(6), "both refused after {took:?}");
    decisions_still_flow(&server).await;
    cluster.freeze(false);
    eventually("writes to work again", async || {
        update(&server, 8).await.is_ok()
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_serving_until_rules_are_loaded() {
    let cluster = PgCluster::start();
    let url = fresh_pg_database(&cluster.url()).await;
    cluster.down();
    let server = TestServer::spawn(config(&url)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        server.health("").await,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
    // It still answers decisions (no rules: unknown domain, OK), and says why writes fail.
    let r = server
        .rls()
        .await
        .should_rate_limit(request("d", vec![desc(&[("k", "v")])]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.overall_code, 1);
    let refused = update(&server, 5).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("not connected"),
        "{}",
        refused.message()
    );

    cluster.up();
    server.wait_serving().await;
    for name in sluice::grpc::server::HEALTH_SERVICES {
        assert_eq!(server.health(name).await, 1, "{name}");
    }
    update(&server, 5).await.unwrap();
    server.stop().await;
}
