//! Operability: reflection, graceful shutdown, the health probe and load commands.

use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::harness::*;

#[tokio::test]
async fn reflection_lists_every_service() {
    let db = Db::new(Backend::Sqlite).await;
    let server = TestServer::start(&db.url).await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "sluice.v1.Sluice",
        "envoy.service.ratelimit.v3.RateLimitService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_every_task_and_frees_the_port() {
    let db = Db::new(Backend::Sqlite).await;
    let server = TestServer::start(&db.url).await;
    let addr = server.addr;
    server.stop().await; // panics unless run() returned cleanly within 10 s
    tokio::net::TcpListener::bind(addr)
        .await
        .expect("port is free again");
}

/// Runs the `sluice` binary with `args`.
fn sluice(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap()
}

/// Its stdout, after checking it exited 0 (else its stderr is the failure).
fn stdout_of_success(out: std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// `sluice health` as an exec probe: exit 0 and SERVING from a healthy server, an error naming
/// the server when nothing answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_is_a_probe() {
    let db = Db::new(Backend::Sqlite).await;
    let server = TestServer::start(&db.url).await;
    let probe = |url: &str| sluice(&["health", "--timeout", "3", "--server", url]);
    assert_eq!(stdout_of_success(probe(&server.url())).trim(), "SERVING");
    let url = server.url();
    server.stop().await;
    let down = probe(&url);
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains(&url));
}

/// `sluice load --api lease|reserve` drives the limits' pairs of calls (what
/// `scripts/bench-limits.sh` measures): a lease acquired and released, a reservation reserved
/// and committed, each one operation; every one answered, none refused (a thousand holders
/// allowed, each released before the next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_command_drives_leases_and_reservations() {
    let db = Db::new(Backend::Sqlite).await;
    let server = TestServer::start(&db.url).await;
    let url = server.url();
    for api in ["lease", "reserve"] {
        let out = sluice(&[
            "load",
            "--target",
            &url,
            "--api",
            api,
            "--domain",
            "bench",
            "--duration",
            "1",
            "--rate",
            "100",
            "--concurrency",
            "4",
            "--connections",
            "1",
        ]);
        let report: serde_json::Value = serde_json::from_str(&stdout_of_success(out)).unwrap();
        assert_eq!(report["errors"].as_u64(), Some(0), "{api}: {report}");
        assert_eq!(report["over_limit"].as_u64(), Some(0), "{api}: {report}");
        let done = report["requests"].as_u64().unwrap();
        assert!(
            (70..=130).contains(&done),
            "{api}: 100 a second for 1 s made {done}"
        );
    }
    server.stop().await;
}

/// `sluice load --rate` offers that many requests a second (the benchmark's equal-load mode),
/// where the closed loop offers as many as the server answers; a rate that is not a positive
/// number is refused naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_command_paces_at_a_rate() {
    let db = Db::new(Backend::Sqlite).await;
    let server = TestServer::start(&db.url).await;
    let url = server.url();
    let load = |extra: &[&str]| {
        let mut args = vec![
            "load",
            "--target",
            &url,
            "--domain",
            "bench",
            "--duration",
            "2",
        ];
        args.extend(["--concurrency", "4", "--connections", "1"]);
        args.extend(extra);
        let report: serde_json::Value =
            serde_json::from_str(&stdout_of_success(sluice(&args))).unwrap();
        assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
        report["requests"].as_u64().unwrap()
    };
    let paced = load(&["--rate", "200"]);
    assert!(
        (340..=440).contains(&paced),
        "200 a second for 2 s sent {paced}"
    );
    let closed = load(&[]);
    assert!(closed > 4 * paced, "the closed loop sent only {closed}");
    for bad in ["0", "-5", "fast", "inf"] {
        let out = sluice(&["load", &format!("--rate={bad}")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--rate {bad} accepted");
        assert!(stderr.contains("--rate"), "{bad}: {stderr}");
    }
    server.stop().await;
}
