//! The HTTP admin listener over a real socket: `/metrics` is valid Prometheus text (checked by
//! Prometheus' own `promtool check metrics`) and counts each rule's outcomes and the decision
//! latency; the probes answer; the dashboard's page and assets are served; its JSON needs the
//! admin token and names a bad parameter.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;
use sluice::proto::sluice::v1 as pb;

/// One HTTP/1.1 GET (connection closed after): the status and the body.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = get_with_head(addr, path, token).await;
    (status, body)
}

/// One HTTP/1.1 GET: the status, the head (status line and headers, lower-cased) and the body.
async fn get_with_head(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: sluice\r\n{auth}Connection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head = head.to_ascii_lowercase();
    // Chunked bodies (axum streams larger ones): keep only the data lines.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// The value of one sample line, exactly as named with its labels.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

async fn http_server() -> (Db, TestServer) {
    TestServer::sqlite_with(|c| c.http_listen = Some("127.0.0.1:0".parse().unwrap())).await
}

/// Every response carries the headers that keep a browser safe: a content security policy
/// allowing only this origin's scripts, no framing, no type sniffing, no referrer.
#[tokio::test]
async fn every_response_says_how_a_browser_must_treat_it() {
    let (_db, server) = http_server().await;
    let http = server.http.unwrap();
    for (path, token) in [
        ("/", None),
        ("/assets/dashboard.js", None),
        ("/metrics", None),
        ("/api/overview", Some(TOKEN)),
        ("/api/overview", None),
    ] {
        let (_, head, _) = get_with_head(http, path, token).await;
        for wanted in [
            "content-security-policy: default-src 'none'; script-src 'self';",
            "frame-ancestors 'none'",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
        ] {
            assert!(head.contains(wanted), "{path}: no {wanted:?} in\n{head}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_and_count_each_rule() {
    let (_db, server) = http_server().await;
    let http = server.http.unwrap();
    put_rules(
        &server,
        vec![rule("sluice", &[("user_id", "")], 5, pb::Unit::Minute)],
    )
    .await;
    let mut api = server.api().await;
    for _ in 0..7 {
        api.should_allow(pb::ShouldAllowRequest {
            subject: Some(pb::Subject {
                user_id: "alice".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let (status, text) = get(http, "/metrics", None).await;
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's `prometheus` package; scripts/test.sh installs it)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let of = |outcome: &str| {
        sample(
            &text,
            &format!(
                "sluice_rule_decisions_total{{domain=\"sluice\",rule=\"sluice|user_id\",limit=\"#0\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    // 5 a minute: 4 left .. 0 left; used >= 80% from the fourth; then two denials.
    assert_eq!(
        [of("ok"), of("near_limit"), of("over_limit"), of("shadow")],
        [3.0, 2.0, 2.0, 0.0]
    );
    assert_eq!(sample(&text, "sluice_decisions_total{tier=\"STD\"}"), 7.0);
    assert_eq!(sample(&text, "sluice_denials_total{reason=\"limit\"}"), 2.0);
    assert_eq!(
        sample(
            &text,
            "sluice_decision_duration_seconds_count{method=\"ShouldAllow\"}"
        ),
        7.0
    );
    assert!(
        !text.contains("alice"),
        "no client key is ever a label:\n{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn probes_dashboard_and_its_json_behind_the_admin_token() {
    let (_db, server) = http_server().await;
    let http = server.http.unwrap();
    assert_eq!(get(http, "/healthz", None).await, (200, "ok\n".into()));
    let (status, ready) = get(http, "/readyz", None).await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready.contains("\"rules_loaded\":true"), "{ready}");

    let (status, page) = get(http, "/", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("/assets/dashboard.js"), "{page}");
    for asset in [
        "dashboard.js",
        "dashboard.css",
        "uPlot.iife.min.js",
        "uPlot.min.css",
    ] {
        let (status, body) = get(http, &format!("/assets/{asset}"), None).await;
        assert_eq!(status, 200, "{asset}");
        assert!(body.len() > 100, "{asset} is served whole");
    }
    assert_eq!(get(http, "/assets/../Cargo.toml", None).await.0, 404);

    for path in [
        "/api/overview",
        "/api/timeline",
        "/api/buckets",
        "/api/forecasts",
        "/api/anomalies",
        "/api/changes",
    ] {
        let (status, body) = get(http, path, None).await;
        assert_eq!(status, 401, "{path} without the token: {body}");
        assert!(body.contains("authorization"), "{body}");
        assert_eq!(get(http, path, Some("wrong")).await.0, 401, "{path}");
        let (status, body) = get(http, path, Some(TOKEN)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.starts_with('{'), "{path}: {body}");
    }
    // The overview says what the quota service holds (nothing yet).
    let (_, body) = get(http, "/api/overview", Some(TOKEN)).await;
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["quotas"]["streams"], 0, "{body}");
    assert_eq!(overview["quotas"]["buckets"], 0, "{body}");
    let (status, body) = get(http, "/api/forecasts?minutes=0", Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert!(body.contains("minutes"), "{body}");
    server.stop().await;
}
