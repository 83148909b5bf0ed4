//! Operators correct the learning loop: `ResetClient` lifts anomaly actions, the client lists
//! (allow and deny: admin only, durable across a restart, audited, expiring, bad input named by
//! field) take effect at once, and a false-positive mark lifts an action and keeps the client from
//! being acted on, recorded in history. Eager learning as in `learning.rs`.

use sluice::proto::sluice::v1 as pb;
use tonic::Code;

use crate::harness::*;
use crate::learning::{ask, eager};
use crate::store_tests;

/// The clients acted on now.
async fn flagged(server: &TestServer) -> Vec<String> {
    crate::learning::flagged(server)
        .await
        .into_iter()
        .map(|c| c.client)
        .collect()
}

async fn until_flagged(server: &TestServer, ip: &str) {
    eventually("the client flagged", async || {
        for _ in 0..3 {
            ask(server, ip).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        flagged(server).await.iter().any(|c| c == ip)
    })
    .await;
}

fn put(list: pb::ClientList, client: &str, ttl_secs: u64) -> pb::UpdateClientListRequest {
    pb::UpdateClientListRequest {
        list: list as i32,
        client: client.into(),
        reason: "e2e".into(),
        ttl_secs,
        actor: "ops".into(),
    }
}

async fn entries(server: &TestServer) -> Vec<(i32, String)> {
    server
        .api()
        .await
        .list_client_lists(admin(pb::ListClientListsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| (e.list, e.client))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_lifts_the_anomaly_action() {
    let db = Db::new(Backend::Sqlite).await;
    let mut cfg = config(&db.url);
    eager(&mut cfg);
    let server = TestServer::start_with(cfg).await;
    until_flagged(&server, "192.0.2.1").await;
    let reply = server
        .api()
        .await
        .reset_client(admin(pb::ResetClientRequest {
            subject: Some(pb::Subject {
                client_ip: "192.0.2.1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.actions_lifted, 1);
    // Lifted at once: no longer listed, and its next request is not an anomaly's denial.
    assert!(!flagged(&server).await.contains(&"192.0.2.1".to_string()));
    let next = ask(&server, "192.0.2.1").await;
    assert_ne!(next.reason, pb::Reason::ThrottledAnomaly as i32);
    server.stop().await;
}

async fn lists_are_admin_durable_audited_and_expire(backend: Backend) {
    let db = Db::new(backend).await;
    let mut cfg = config(&db.url);
    cfg.learn_tick_secs = 1;
    let server = TestServer::start_with(cfg.clone()).await;
    let api = || async { server.api().await };

    // Admin only.
    let anonymous = api()
        .await
        .update_client_list(tonic::Request::new(put(
            pb::ClientList::Deny,
            "203.0.113.9",
            0,
        )))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // Bad input is refused naming the field, and changes nothing.
    let mut long_reason = put(pb::ClientList::Deny, "203.0.113.9", 0);
    long_reason.reason = "x".repeat(501);
    let cases = [
        (put(pb::ClientList::Unspecified, "203.0.113.9", 0), "list"),
        (put(pb::ClientList::Deny, "10.0.0.0/40", 0), "client"),
        (put(pb::ClientList::Deny, "", 0), "client"),
        (put(pb::ClientList::Deny, "a b", 0), "client"),
        (
            put(pb::ClientList::Deny, "203.0.113.9", 400 * 86_400),
            "ttl_secs",
        ),
        (long_reason, "reason"),
    ];
    for (request, field) in cases {
        let e = api()
            .await
            .update_client_list(admin(request))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    assert!(entries(&server).await.is_empty());

    // A denylisted address is blocked at once, on that evidence alone.
    api()
        .await
        .update_client_list(admin(put(pb::ClientList::Deny, "203.0.113.9", 0)))
        .await
        .unwrap();
    let denied = ask(&server, "203.0.113.9").await;
    assert!(!denied.allowed);
    assert_eq!(denied.reason, pb::Reason::BlockedAnomaly as i32);
    // One that expires in a second, and an allow entry.
    api()
        .await
        .update_client_list(admin(put(pb::ClientList::Deny, "198.51.100.4", 1)))
        .await
        .unwrap();
    api()
        .await
        .update_client_list(admin(put(pb::ClientList::Allow, "10.0.0.0/8", 0)))
        .await
        .unwrap();
    assert_eq!(entries(&server).await.len(), 3);

    // Durable: a restart on the same database still has the lists, and enforces them.
    server.stop().await;
    let server = TestServer::start_with(cfg).await;
    eventually("the denylist enforced after the restart", async || {
        !ask(&server, "203.0.113.9").await.allowed
    })
    .await;
    // The one-second entry is gone by now, and so is its block.
    eventually("the expired entry dropped", async || {
        let e = entries(&server).await;
        e.len() == 2 && !e.iter().any(|(_, c)| c == "198.51.100.4")
    })
    .await;
    eventually("its block lifted", async || {
        !flagged(&server).await.contains(&"198.51.100.4".to_string())
    })
    .await;
    // Removal.
    let removed = server
        .api()
        .await
        .remove_from_client_list(admin(pb::RemoveFromClientListRequest {
            list: pb::ClientList::Deny as i32,
            client: "203.0.113.9".into(),
            actor: "ops".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed);
    server.stop().await;

    // Audited: every change, by whom.
    let store = sluice::store::Store::connect(&sluice::store::StoreOptions::new(&db.url))
        .await
        .unwrap();
    let audit = store.list_audit(100).await.unwrap();
    let actions: Vec<(String, String, String)> = audit
        .into_iter()
        .rev()
        .map(|(_, actor, action, _, client)| (actor, action, client))
        .collect();
    assert_eq!(
        actions,
        [
            ("ops".into(), "put".into(), "203.0.113.9".into()),
            ("ops".into(), "put".into(), "198.51.100.4".into()),
            ("ops".into(), "put".into(), "10.0.0.0/8".into()),
            ("ops".into(), "remove".into(), "203.0.113.9".into()),
        ]
    );
    store.close().await;
}

store_tests!(lists_are_admin_durable_audited_and_expire);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_positive_is_lifted_kept_alone_and_recorded() {
    let db = Db::new(Backend::Sqlite).await;
    let mut cfg = config(&db.url);
    eager(&mut cfg);
    let server = TestServer::start_with(cfg).await;
    until_flagged(&server, "192.0.2.7").await;
    let reply = server
        .api()
        .await
        .mark_false_positive(admin(pb::MarkFalsePositiveRequest {
            client: "192.0.2.7".into(),
            reason: "our own monitoring".into(),
            ttl_secs: 0,
            actor: "ops".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.actions_lifted, 1);
    let entry = reply.allowlisted.unwrap();
    assert_eq!(entry.reason, "false positive: our own monitoring");
    assert!(
        entry.expires_at_ms > entry.created_at_ms,
        "a day by default"
    );
    // It keeps sending, ticks go by, and it is not acted on again: each time the minute
    // holding its requests has closed (the history counts them) before the check, so the
    // check cannot pass for want of a tick.
    for _ in 0..3 {
        let before = requests_recorded(&server).await;
        for _ in 0..3 {
            ask(&server, "192.0.2.7").await;
        }
        eventually("the minute with its requests judged", async || {
            requests_recorded(&server).await >= before + 3
        })
        .await;
        assert!(!flagged(&server).await.contains(&"192.0.2.7".to_string()));
    }
    // History says so.
    eventually("the lift recorded", async || {
        server
            .api()
            .await
            .list_adjustments(admin(pb::ListHistoryRequest {
                client: "192.0.2.7".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .adjustments
            .iter()
            .any(|a| a.cause == "false_positive")
    })
    .await;
    server.stop().await;
}
