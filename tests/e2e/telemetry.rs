//! OpenTelemetry export over real sockets: an OTLP/gRPC collector (opentelemetry-proto's
//! generated services, served in this process) receives what a `sluice serve` process pushes.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use sluice::proto::sluice::v1 as pb;
use sluice::proto::sluice::v1::sluice_client::SluiceClient;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::harness::{TOKEN, TestServer, admin, eventually, rule};
use crate::rls::{desc, request as rls_request};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;

/// What the collector has received.
#[derive(Clone, Default)]
struct Received {
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.metrics.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.traces.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Received {
    /// The newest exported value of metric `name` with all of `attributes`, as f64.
    fn latest(&self, name: &str, attributes: &[(&str, &str)]) -> Option<f64> {
        let exports = self.metrics.lock().unwrap();
        let mut latest = None;
        for export in exports.iter() {
            for metric in export
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == name)
            {
                let points = match &metric.data {
                    Some(Data::Sum(s)) => &s.data_points,
                    Some(Data::Gauge(g)) => &g.data_points,
                    _ => continue,
                };
                for point in points {
                    let matches = attributes.iter().all(|(k, v)| {
                        point.attributes.iter().any(|kv| {
                            kv.key == *k && format!("{:?}", kv.value).contains(&format!("{v:?}"))
                        })
                    });
                    if !matches {
                        continue;
                    }
                    latest = match point.value {
                        Some(Value::AsInt(i)) => Some(i as f64),
                        Some(Value::AsDouble(d)) => Some(d),
                        None => latest,
                    };
                }
            }
        }
        latest
    }

    /// The newest exported data point of histogram `name` whose `rpc.method` is `method`:
    /// (count, bucket counts, bounds).
    fn histogram(&self, name: &str, method: &str) -> Option<(u64, Vec<u64>, Vec<f64>)> {
        let exports = self.metrics.lock().unwrap();
        let mut latest = None;
        for metric in exports
            .iter()
            .flat_map(|e| &e.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name)
        {
            let Some(Data::Histogram(h)) = &metric.data else {
                continue;
            };
            for point in &h.data_points {
                if point.attributes.iter().any(|kv| {
                    kv.key == "rpc.method"
                        && format!("{:?}", kv.value).contains(&format!("{method:?}"))
                }) {
                    latest = Some((
                        point.count,
                        point.bucket_counts.clone(),
                        point.explicit_bounds.clone(),
                    ));
                }
            }
        }
        latest
    }

    fn span_names(&self) -> Vec<String> {
        self.traces
            .lock()
            .unwrap()
            .iter()
            .flat_map(|t| &t.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect()
    }

    /// `service.name` of the first export of either kind.
    fn service_name(&self) -> Option<String> {
        let exports = self.metrics.lock().unwrap();
        let resource = exports
            .first()?
            .resource_metrics
            .first()?
            .resource
            .as_ref()?;
        resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .map(|kv| format!("{:?}", kv.value))
    }
}

/// Serves a collector on a free port until the test ends.
async fn collector() -> (SocketAddr, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = received.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(served.clone()))
            .add_service(TraceServiceServer::new(served))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
    });
    (addr, received)
}

/// A `sluice serve` process, killed when dropped.
struct Process(Child, std::path::PathBuf);

impl Process {
    /// `sluice serve` in `dir` on `port`, a fresh SQLite database, exporting to `collector`
    /// every `interval_ms`, with `extra` flags; its log goes to `dir/sluice.log` (a file, not a
    /// pipe: a pipe nobody reads until the end would stall a chatty server).
    fn serve(
        dir: &std::path::Path,
        port: u16,
        collector: &str,
        interval_ms: u32,
        extra: &[&str],
    ) -> Process {
        let log = std::fs::File::create(dir.join("sluice.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .current_dir(dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", "sqlite:sluice.db", "--admin-token", TOKEN])
            .args(["--otlp-endpoint", collector])
            .args(["--otlp-interval-ms", &interval_ms.to_string()])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Process(child, dir.join("sluice.log"))
    }

    /// Stops the server at once and returns its log.
    fn log_after_kill(&mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn connect(port: u16) -> Channel {
    for _ in 0..500 {
        if let Ok(ch) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            return ch;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sluice serve never listened on {port}");
}

/// A channel to the process on `port`, once it reports SERVING.
async fn serving(port: u16) -> Channel {
    let channel = connect(port).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    eventually("sluice serve reports SERVING", async || {
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32)
    })
    .await;
    channel
}

fn ask(client_ip: &str) -> pb::ShouldAllowRequest {
    pb::ShouldAllowRequest {
        subject: Some(pb::Subject {
            client_ip: client_ip.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// On one worker thread (tokio's current-thread scheduler, what one CPU gets) and on two (the
/// multi-thread one), the server decides, learns, writes history and exports all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_spans_reach_an_otlp_collector_on_one_thread() {
    metrics_and_spans_reach_an_otlp_collector(
        &["--worker-threads", "1"],
        "tokio's current-thread scheduler",
    )
    .await;
}

/// Two workers: by default each serves gRPC connections on a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_spans_reach_an_otlp_collector_on_two_serving_threads() {
    metrics_and_spans_reach_an_otlp_collector(&["--worker-threads", "2"], "2 gRPC threads").await;
}

/// Two workers, connections served by the multi-thread scheduler itself (`--grpc-threads 0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_spans_reach_an_otlp_collector_on_the_multi_thread_scheduler() {
    metrics_and_spans_reach_an_otlp_collector(
        &["--worker-threads", "2", "--grpc-threads", "0"],
        "tokio's multi-thread scheduler",
    )
    .await;
}

async fn metrics_and_spans_reach_an_otlp_collector(threads: &[&str], logged: &str) {
    let (collector_addr, received) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut process = Process::serve(
        dir.path(),
        port,
        &format!("http://{collector_addr}"),
        200,
        &[&["--learn-tick-secs", "1"], threads].concat(),
    );
    let channel = serving(port).await;
    let mut api = SluiceClient::new(channel.clone());
    // Two requests a minute per client address, then five asks: two allowed, three denied.
    api.update_rules(admin(pb::UpdateRulesRequest {
        rules: vec![rule(
            "sluice",
            &[("remote_address", "")],
            2,
            pb::Unit::Minute,
        )],
        ..Default::default()
    }))
    .await
    .unwrap();
    let mut allowed = 0;
    for _ in 0..5 {
        let reply = api
            .should_allow(ask("10.0.0.7"))
            .await
            .unwrap()
            .into_inner();
        allowed += usize::from(reply.allowed);
    }
    assert_eq!(allowed, 2);

    eventually("the decision counters reach the collector", async || {
        received.latest("sluice.decisions", &[]) == Some(5.0)
            && received.latest("sluice.decisions.denied", &[]) == Some(3.0)
    })
    .await;
    assert_eq!(received.latest("sluice.rules.revision", &[]), Some(1.0));
    assert_eq!(received.latest("sluice.buckets", &[]), Some(1.0));
    assert_eq!(received.latest("sluice.pressure.factor", &[]), Some(1.0));
    assert_eq!(
        received.latest("sluice.anomaly.actions", &[("kind", "block")]),
        Some(0.0)
    );
    assert_eq!(
        received.latest("sluice.decisions.anomaly_denied", &[]),
        Some(0.0)
    );
    // Every ShouldAllow call was timed, in buckets sized for microseconds: the calls land below
    // the last bound (1 s), and not all in the top bucket.
    let (count, buckets, bounds) = received
        .histogram("sluice.rpc.duration", "ShouldAllow")
        .expect("ShouldAllow durations exported");
    assert_eq!(count, 5);
    assert_eq!(bounds.first(), Some(&5e-6));
    assert_eq!(buckets.iter().sum::<u64>(), 5);
    assert_eq!(
        buckets.last(),
        Some(&0),
        "no call took a second: {buckets:?}"
    );
    // Envoy's RLS calls are timed under their own method.
    let mut rls = RateLimitServiceClient::new(channel);
    rls.should_rate_limit(rls_request(
        "sluice",
        vec![desc(&[("remote_address", "10.0.0.8")])],
    ))
    .await
    .unwrap();
    eventually(
        "the RLS call's duration reaches the collector",
        async || {
            received
                .histogram("sluice.rpc.duration", "ShouldRateLimit")
                .is_some_and(|(count, _, _)| count == 1)
        },
    )
    .await;
    assert!(
        received
            .service_name()
            .is_some_and(|name| name.contains("sluice")),
        "resource names the service: {:?}",
        received.service_name()
    );
    // The rule change and the learning loop's ticks (one a second here) are traced.
    eventually("spans reach the collector", async || {
        let names = received.span_names();
        names.iter().any(|n| n == "update_rules") && names.iter().any(|n| n == "learning_tick")
    })
    .await;
    // The learning loop wrote that minute's traffic: history counters move too.
    eventually("history rows are counted", async || {
        received
            .latest("sluice.history.rows_written", &[])
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    let log = process.log_after_kill();
    assert!(
        log.contains(&format!("serving decisions on {logged}")),
        "{threads:?} did not serve as expected ({logged}):\n{log}"
    );
}

/// A collector that is down costs nothing but the metrics: decisions go on, and the server
/// still stops promptly (the final export gives up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_changes_no_decision() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (_db, server) = TestServer::sqlite_with(|c| {
        c.otlp_endpoint = Some(dead);
        c.otlp_interval_ms = 100;
    })
    .await;
    crate::harness::put_rules(
        &server,
        vec![rule(
            "sluice",
            &[("remote_address", "")],
            1,
            pb::Unit::Minute,
        )],
    )
    .await;
    let mut api = server.api().await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a few failed exports
    let first = api
        .should_allow(ask("10.0.0.9"))
        .await
        .unwrap()
        .into_inner();
    let second = api
        .should_allow(ask("10.0.0.9"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.allowed && !second.allowed);
    server.stop().await;
}

/// Operators learn that telemetry is being lost: failed exports are logged (the SDK's own
/// errors, through the service's log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_exports_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut process = Process::serve(dir.path(), port, &dead, 100, &[]);
    // Serving despite the dead collector.
    let channel = connect(port).await;
    let mut api = SluiceClient::new(channel);
    assert!(
        api.should_allow(ask("10.0.0.5"))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let output = process.log_after_kill();
    assert!(
        output.contains("PeriodicReader.ExportError"),
        "no export failure in the log:\n{output}"
    );
}

#[test]
fn a_bad_endpoint_is_refused_at_start_naming_the_flag() {
    for bad in [
        "otel-collector:4317",
        "ftp://collector:4317",
        "https://collector:4317",
        "http://",
        "not a url",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--otlp-endpoint", bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(stderr.contains("--otlp-endpoint"), "{bad}: {stderr}");
    }
}

/// With shared counters, what they did is exported: decisions Redis answered, and after Redis
/// stops, the policy's fallbacks, the breaker opening and the degraded gauge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_counters_are_visible_in_metrics() {
    let (collector_addr, received) = collector().await;
    let mut redis = crate::fleet_harness::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = redis.url();
    let _process = Process::serve(
        dir.path(),
        port,
        &format!("http://{collector_addr}"),
        200,
        &["--counters", &url, "--counters-budget-ms", "20"],
    );
    let channel = serving(port).await;
    let mut api = SluiceClient::new(channel.clone());
    api.update_rules(admin(pb::UpdateRulesRequest {
        rules: vec![rule(
            "sluice",
            &[("remote_address", "")],
            100,
            pb::Unit::Minute,
        )],
        ..Default::default()
    }))
    .await
    .unwrap();
    for _ in 0..3 {
        api.should_allow(ask("10.0.0.8")).await.unwrap();
    }
    eventually(
        "decisions on the shared counters are exported",
        async || {
            received.latest("sluice.counters.shared", &[]) >= Some(3.0)
                && received.latest("sluice.counters.degraded", &[]) == Some(0.0)
        },
    )
    .await;
    redis.down();
    for _ in 0..5 {
        api.should_allow(ask("10.0.0.8")).await.unwrap();
    }
    eventually(
        "the fallbacks and the open breaker are exported",
        async || {
            received.latest("sluice.counters.fallbacks", &[]) >= Some(5.0)
                && received.latest("sluice.counters.breaker_opened", &[]) >= Some(1.0)
                && received.latest("sluice.counters.degraded", &[]) == Some(1.0)
        },
    )
    .await;
}
