//! Test harness: real servers on port 0 with generated tonic clients, over a real database.
//!
//! SQLite databases are files in a temp dir. PostgreSQL tests need a server: `SLUICE_TEST_PG_URL`
//! (set by `scripts/test.sh`, which starts a throwaway cluster) names one, and each test gets its
//! own fresh database on it. `PgCluster` starts a private cluster for tests that stop the server.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use sluice::app::config::Config;
use sluice::proto::sluice::v1 as pb;
use sluice::proto::sluice::v1::sluice_client::SluiceClient;
use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub const TOKEN: &str = "test-admin-token";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named test once per store, as `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::harness::Backend;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(Backend::Postgres).await }
        }
    )*};
}

/// A fresh, empty database for one test.
pub struct Db {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub async fn new(backend: Backend) -> Db {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite:{}", dir.path().join("sluice.db").display());
                Db {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let base = std::env::var("SLUICE_TEST_PG_URL").expect(
                    "PostgreSQL tests need SLUICE_TEST_PG_URL: run ./scripts/test.sh, which starts a throwaway server",
                );
                Db {
                    url: fresh_pg_database(&base).await,
                    _dir: None,
                }
            }
        }
    }
}

/// Creates a uniquely named database on the server `base` points at; returns its URL.
pub async fn fresh_pg_database(base: &str) -> String {
    let name = format!("sluice_test_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').expect("URL has a database path");
    format!("{prefix}/{name}")
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    /// The HTTP admin listener, when the configuration asked for one (`http_listen`, bound
    /// here on a free port whatever port it names).
    pub http: Option<std::net::SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), sluice::app::StartError>>>,
    _token_dir: tempfile::TempDir,
}

pub fn config(db_url: &str) -> Config {
    Config {
        database_url: db_url.to_string(),
        admin_token: Some(TOKEN.into()),
        resync_interval_ms: 100,
        db_acquire_timeout_ms: 1_000,
        db_busy_timeout_ms: 300,
        ..Config::default()
    }
}

impl TestServer {
    /// Starts a server and waits until it reports SERVING (rules loaded).
    pub async fn start(db_url: &str) -> TestServer {
        Self::start_with(config(db_url)).await
    }

    pub async fn start_with(config: Config) -> TestServer {
        let server = Self::spawn(config).await;
        server.wait_serving().await;
        server
    }

    /// A server on a fresh SQLite database, with `tweak` applied to the test configuration.
    /// Keep the `Db`: dropping it deletes the database.
    pub async fn sqlite_with(tweak: impl FnOnce(&mut Config)) -> (Db, TestServer) {
        let db = Db::new(Backend::Sqlite).await;
        let mut config = config(&db.url);
        tweak(&mut config);
        let server = Self::start_with(config).await;
        (db, server)
    }

    /// Starts a server without waiting for it to be healthy.
    pub async fn spawn(mut config: Config) -> TestServer {
        let token_dir = tempfile::tempdir().unwrap();
        config.admin_token_file = token_dir.path().join("token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http = match config.http_listen.take() {
            Some(_) => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
            None => None,
        };
        let http_addr = http.as_ref().map(|l| l.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(sluice::app::run_with(config, listener, http, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            http: http_addr,
            stop: Some(stop),
            handle: Some(handle),
            _token_dir: token_dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        for _ in 0..100 {
            if let Ok(ch) = Channel::from_shared(self.url()).unwrap().connect().await {
                return ch;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server at {} never accepted a connection", self.addr);
    }

    pub async fn api(&self) -> SluiceClient<Channel> {
        SluiceClient::new(self.channel().await)
    }

    pub async fn rls(&self) -> RateLimitServiceClient<Channel> {
        RateLimitServiceClient::new(self.channel().await)
    }

    /// `GetModelInfo`: the forest, the forecaster and the pressure cut in force.
    pub async fn model_info(&self) -> pb::ModelInfo {
        self.api()
            .await
            .get_model_info(pb::GetModelInfoRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn health(&self, service: &str) -> i32 {
        health_at(self.channel().await, service).await
    }

    pub async fn wait_serving(&self) {
        for _ in 0..250 {
            if self.health("").await
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server never reported SERVING");
    }

    /// Stops the server, draining in-flight calls, and waits for every task to end.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(10), handle)
                .await
                .expect("server stops within 10 s")
                .expect("server task did not panic")
                .expect("server ended cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The health status a server reports for `service` (-1: no answer).
pub async fn health_at(channel: Channel, service: &str) -> i32 {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.get_ref().status)
        .unwrap_or(-1)
}

/// Requests the history has counted (closed minutes only): when it grows past requests sent,
/// the minute holding them has closed and been judged.
pub async fn requests_recorded(server: &TestServer) -> u64 {
    server
        .api()
        .await
        .get_stats(admin(pb::GetStatsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .total
        .unwrap_or_default()
        .requests
}

/// A request carrying the admin token.
pub fn admin<T>(message: T) -> tonic::Request<T> {
    with_token(message, TOKEN)
}

pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A rule in the API's form: `entries` as (key, value) with "" for key-only. Token bucket (the
/// default algorithm): unlike epoch-aligned windows, it has no boundary a test could straddle.
pub fn rule(domain: &str, entries: &[(&str, &str)], rpu: u64, unit: pb::Unit) -> pb::Rule {
    pb::Rule {
        domain: domain.into(),
        descriptors: entries
            .iter()
            .map(|(k, v)| pb::DescriptorEntry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        limits: vec![pb::Limit {
            requests_per_unit: rpu,
            unit: unit as i32,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub async fn put_rules(server: &TestServer, rules: Vec<pb::Rule>) -> u64 {
    server
        .api()
        .await
        .update_rules(admin(pb::UpdateRulesRequest {
            rules,
            ..Default::default()
        }))
        .await
        .expect("UpdateRules")
        .get_ref()
        .revision
}

/// A private PostgreSQL cluster that a test may stop and start.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn pg_bin(tool: &str) -> PathBuf {
    let dir =
        std::env::var("SLUICE_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    PathBuf::from(dir).join(tool)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (PostgreSQL refuses root).
fn pg_command(tool: &str) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(tool));
        c
    } else {
        Command::new(pg_bin(tool))
    }
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("sluice-pg-")
            .tempdir()
            .unwrap();
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let out = pg_command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(dir.path().join("data"))
            .output()
            .expect("initdb runs (is the postgresql package installed?)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = PgCluster { dir, port };
        cluster.up();
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the cluster, retrying a few times: a restart right after `down` can find the port
    /// still held for a moment, and a fresh port picked by binding to :0 can be taken by a
    /// parallel test before PostgreSQL binds it. The last failure quotes the server's log.
    pub fn up(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let mut last = String::new();
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(500));
            }
            let out = pg_command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1",
                    self.port,
                    self.dir.path().display()
                ))
                .args(["-l"])
                .arg(&log)
                .args(["-w", "start"])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(15).collect();
        panic!(
            "pg_ctl start failed 5 times: {last}\nserver log (newest first):\n{}",
            tail.join("\n")
        );
    }

    /// Stops every process of the cluster with SIGSTOP (or resumes them with SIGCONT): a server
    /// that accepts nothing and answers nothing, connections left open.
    pub fn freeze(&self, frozen: bool) {
        let pidfile = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).unwrap();
        let postmaster = pidfile.lines().next().unwrap().trim().to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let _ = Command::new("pkill")
            .args([signal, "-P", &postmaster])
            .status();
        assert!(
            Command::new("kill")
                .args([signal, &postmaster])
                .status()
                .unwrap()
                .success()
        );
    }

    pub fn down(&self) {
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Polls `check` every 100 ms for up to `seconds`; panics naming `what` if it never holds.
pub async fn eventually_within(seconds: u64, what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..seconds * 10 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

pub async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    eventually_within(10, what, check).await
}
