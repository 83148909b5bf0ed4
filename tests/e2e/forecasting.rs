//! Forecasting and pressure in the live server: `ReportLoad` cuts STD limits on low-priority
//! endpoints (PRM keeps its own) and lifting the load restores them, with the reason reaching
//! callers and the changes recorded; the model file is hot-reloaded, a broken one refused, and a
//! missing one leaves the baseline forecasting while decisions go on. Ticks are one second.

use std::path::{Path, PathBuf};

use sluice::app::config::Config;
use sluice::proto::sluice::v1 as pb;
use tonic::Code;

use crate::harness::*;

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

fn fast(config: &mut Config) {
    config.learn_tick_secs = 1;
    config.learn.pressure_hold_secs = 1;
}

async fn info(server: &TestServer) -> pb::ModelInfo {
    server.model_info().await
}

async fn report_load(
    server: &TestServer,
    utilisation: f64,
) -> Result<pb::ReportLoadResponse, tonic::Status> {
    server
        .api()
        .await
        .report_load(admin(pb::ReportLoadRequest {
            backend: "payments-db".into(),
            utilisation,
        }))
        .await
        .map(|r| r.into_inner())
}

/// How many of 6 requests by `user` (of `tier`) to /api/browse are allowed, and the reasons of
/// the denials.
async fn browse(server: &TestServer, user: &str, tier: pb::Tier) -> (usize, Vec<i32>) {
    let mut api = server.api().await;
    let mut allowed = 0;
    let mut reasons = Vec::new();
    for _ in 0..6 {
        let r = api
            .should_allow(pb::ShouldAllowRequest {
                subject: Some(pb::Subject {
                    user_id: user.into(),
                    tier: tier as i32,
                    endpoint: "/api/browse".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if r.allowed {
            allowed += 1;
        } else {
            reasons.push(r.reason);
        }
    }
    (allowed, reasons)
}

/// Browsing is low priority: 4 requests a minute per user.
fn browse_rule() -> pb::Rule {
    pb::Rule {
        priority: pb::Priority::Low as i32,
        ..rule(
            "sluice",
            &[("endpoint", "/api/browse"), ("user_id", "")],
            4,
            pb::Unit::Minute,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_load_cuts_low_priority_std_limits_until_it_subsides() {
    let (db, server) = TestServer::sqlite_with(fast).await;
    // Payment is high priority, with a capacity.
    let browse_rule = browse_rule();
    let payment_rule = pb::Rule {
        priority: pb::Priority::High as i32,
        capacity_per_minute: Some(1_000),
        ..rule(
            "sluice",
            &[("endpoint", "/api/payment")],
            1_000,
            pb::Unit::Minute,
        )
    };
    put_rules(&server, vec![browse_rule, payment_rule]).await;

    // Bad reports change nothing and name the field; reports need the admin token.
    let bad = report_load(&server, 1.5).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("utilisation"), "{}", bad.message());
    let anonymous = server
        .api()
        .await
        .report_load(pb::ReportLoadRequest {
            backend: "db".into(),
            utilisation: 0.99,
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert_eq!(browse(&server, "before", pb::Tier::Std).await.0, 4);

    // The policy runs once a minute: the reply says the cut is coming, not that it is in force.
    let first = report_load(&server, 0.95).await.unwrap();
    assert!(first.pending, "{first:?}");
    assert_eq!(first.factor, 1.0);
    assert!(first.cause.contains("next minute"), "{}", first.cause);
    eventually("the cut applies", async || {
        info(&server).await.pressure_factor == 0.5
    })
    .await;
    let again = report_load(&server, 0.95).await.unwrap();
    assert!(!again.pending && again.factor == 0.5, "{again:?}");
    let cause = info(&server).await.pressure_cause;
    assert!(cause.contains("payments-db"), "{cause}");
    let (allowed, reasons) = browse(&server, "std-user", pb::Tier::Std).await;
    assert_eq!(allowed, 2, "STD browse cut to half");
    assert!(
        reasons
            .iter()
            .all(|r| *r == pb::Reason::ThrottledForecast as i32),
        "{reasons:?}"
    );
    // Envoy callers (no tier descriptor: STD) are told why, in a header and in metadata.
    let mut rls = server.rls().await;
    let mut last = None;
    for _ in 0..3 {
        let descriptors = vec![crate::rls::desc(&[
            ("endpoint", "/api/browse"),
            ("user_id", "envoy-user"),
        ])];
        last = Some(
            rls.should_rate_limit(crate::rls::request("sluice", descriptors))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let denied = last.unwrap();
    assert_eq!(denied.overall_code, 2, "OVER_LIMIT on the third request");
    assert!(
        denied
            .response_headers_to_add
            .iter()
            .any(|h| h.key == "x-sluice-throttled" && h.value == "forecast"),
        "{:?}",
        denied.response_headers_to_add
    );
    assert!(
        denied
            .dynamic_metadata
            .unwrap()
            .fields
            .contains_key("sluice_throttled")
    );
    let (allowed, reasons) = browse(&server, "prm-user", pb::Tier::Prm).await;
    assert_eq!(allowed, 4, "PRM keeps its limit");
    assert!(reasons.iter().all(|r| *r == pb::Reason::OverLimit as i32));

    // The load subsides: after the hold the rules' own limits are back.
    report_load(&server, 0.3).await.unwrap();
    eventually("the cut is lifted", async || {
        info(&server).await.pressure_factor == 1.0
    })
    .await;
    assert_eq!(browse(&server, "std-later", pb::Tier::Std).await.0, 4);

    // Both changes are in the adjustment history.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    eventually("adjustments written", async || {
        let causes: Vec<String> = sqlx::query_scalar(
            "SELECT cause FROM limit_adjustments WHERE client = 'priority=low,tier=STD' ORDER BY at_ms",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        causes == ["pressure_load", "pressure_restored"]
    })
    .await;
    server.stop().await;
}

fn shipped_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lstm.onnx")
}

/// A copy of the shipped model and metadata in `dir`, the metadata's version set to `version`.
fn install_model(dir: &Path, version: u64) -> PathBuf {
    let model = dir.join("lstm.onnx");
    std::fs::copy(shipped_model(), &model).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shipped_model().with_extension("json")).unwrap(),
    )
    .unwrap();
    meta["version"] = version.into();
    std::fs::write(dir.join("lstm.json"), meta.to_string()).unwrap();
    model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_file_is_hot_reloaded_and_a_broken_one_refused() {
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some(),
        "ORT_DYLIB_PATH must name ONNX Runtime's library: run scripts/test.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let model = install_model(dir.path(), 1);
    let (_db, server) = TestServer::sqlite_with(|c| {
        fast(c);
        c.learn.model.forecast_model = model.clone();
    })
    .await;
    let i = info(&server).await;
    assert_eq!(
        (i.forecaster.as_str(), i.forecast_model_version),
        ("lstm", 1),
        "{}",
        i.forecast_problem
    );
    eventually("forecaster health", async || {
        server.health(sluice::grpc::server::FORECASTER_HEALTH).await == SERVING
    })
    .await;

    // A new file is picked up by itself.
    std::thread::sleep(std::time::Duration::from_millis(20)); // a later modification time
    install_model(dir.path(), 2);
    eventually("version 2 loaded", async || {
        info(&server).await.forecast_model_version == 2
    })
    .await;

    // A broken file is refused; the model in service keeps forecasting.
    std::fs::write(&model, b"not a model").unwrap();
    let refused = server
        .api()
        .await
        .reload_models(admin(pb::ReloadModelsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("lstm.onnx"),
        "{}",
        refused.message()
    );
    let i = info(&server).await;
    assert_eq!(
        (i.forecaster.as_str(), i.forecast_model_version),
        ("lstm", 2)
    );
    assert!(!i.forecast_problem.is_empty());

    // ReloadModels needs the admin token; a good file again loads on request.
    let anonymous = server
        .api()
        .await
        .reload_models(pb::ReloadModelsRequest {})
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    install_model(dir.path(), 3);
    let reloaded = server
        .api()
        .await
        .reload_models(admin(pb::ReloadModelsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reloaded.forecast_model_version, 3);
    assert!(reloaded.forecast_problem.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_model_the_baseline_forecasts_and_decisions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, server) = TestServer::sqlite_with(|c| {
        fast(c);
        c.learn.model.forecast_model = dir.path().join("missing.onnx");
    })
    .await;
    let i = info(&server).await;
    assert_eq!(i.forecaster, "baseline:mean5");
    assert!(
        i.forecast_problem.contains("missing.json"),
        "{}",
        i.forecast_problem
    );
    eventually("forecaster health says so", async || {
        server.health(sluice::grpc::server::FORECASTER_HEALTH).await == NOT_SERVING
    })
    .await;
    assert_eq!(server.health("").await, SERVING);
    put_rules(
        &server,
        vec![rule(
            "sluice",
            &[("endpoint", "/api/browse")],
            3,
            pb::Unit::Minute,
        )],
    )
    .await;
    let (admitted, _) = browse(&server, "u", pb::Tier::Std).await;
    assert_eq!(admitted, 3);
    // Forecasts still come (from the baseline) once a window of traffic exists: checked in
    // replay; here only that ticks run without a model — the minute with a request from an
    // address (observed; `browse` sends user ids only) closes and is recorded.
    server
        .api()
        .await
        .should_allow(pb::ShouldAllowRequest {
            subject: Some(pb::Subject {
                client_ip: "203.0.113.5".into(),
                endpoint: "/api/browse".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually("a minute closed without a model", async || {
        requests_recorded(&server).await >= 1
    })
    .await;
    assert_eq!(info(&server).await.forecaster, "baseline:mean5");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_shadow_mode_a_cut_is_recorded_but_nothing_is_denied() {
    let (db, server) = TestServer::sqlite_with(|c| {
        fast(c);
        c.learn.adaptive_shadow = true;
    })
    .await;
    let browse_rule = browse_rule();
    put_rules(&server, vec![browse_rule]).await;
    report_load(&server, 0.95).await.unwrap();
    eventually("the shadow cut is recorded", async || {
        let i = info(&server).await;
        i.pressure_shadow && i.pressure_factor == 0.5
    })
    .await;
    let (allowed, reasons) = browse(&server, "std-user", pb::Tier::Std).await;
    assert_eq!(allowed, 4, "the rule's own limit, not the cut");
    assert!(reasons.iter().all(|r| *r == pb::Reason::OverLimit as i32));
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    eventually("a shadow adjustment written", async || {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM limit_adjustments WHERE shadow AND cause = 'pressure_load'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        n == 1
    })
    .await;
    server.stop().await;
}
