//! Service configuration: command-line flags, each also settable as a `SLUICE_*` environment
//! variable (and `DATABASE_URL`). The defaults run a working service with no setup: an embedded
//! SQLite file in the working directory, loopback only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::adapters::moka_store::StoreKind;
use crate::service::model_slot::ModelArgs;
use crate::store::StoreOptions;
use sluice_core::engine::EngineConfig;
use sluice_core::forecast::pressure::PressureConfig;
use sluice_core::headers::HeaderStyle;
use sluice_core::learn::baselines::BaselineConfig;
use sluice_core::learn::forest::ForestParams;
use sluice_core::learn::learner::LearnerConfig;
use sluice_core::learn::observe::ObserveConfig;
use sluice_core::learn::policy::{Allowlist, PolicyConfig};
use sluice_core::limit::{Rate, Unit};
use sluice_core::validate::InputLimits;

#[derive(Clone, Debug, Parser)]
pub struct Config {
    /// Address to serve gRPC on (Envoy RLS, Sluice API, health, reflection).
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// PEM certificate (chain): serve gRPC over TLS. Needs --tls-key.
    #[arg(long, env = "SLUICE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): every client must present a certificate it signed (mutual TLS).
    #[arg(long, env = "SLUICE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// `sqlite:PATH` (embedded, created if missing) or `postgres://user:pass@host/db`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite:sluice.db")]
    pub database_url: String,

    /// A rules file (envoyproxy/ratelimit YAML) applied at start-up; it replaces the rules of the
    /// domains it defines.
    #[arg(long, env = "SLUICE_RULES")]
    pub rules: Option<PathBuf>,

    /// Bearer token the admin RPCs require. When unset, a random token is generated and written
    /// to --admin-token-file.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Where a generated admin token is written (mode 0600).
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN_FILE",
        default_value = "sluice-admin.token"
    )]
    pub admin_token_file: PathBuf,

    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Headers added to Envoy RLS responses: `none` (Envoy renders its own from the statuses when
    /// `enable_x_ratelimit_headers` is on), `draft03` or `ietf`.
    #[arg(long, env = "SLUICE_RLS_HEADERS", default_value = "none")]
    pub rls_headers: HeaderStyle,

    /// Headers returned by ShouldAllow: `ietf`, `draft03` or `none` (Retry-After is always sent
    /// on a denial).
    #[arg(long, env = "SLUICE_ALLOW_HEADERS", default_value = "ietf")]
    pub allow_headers: HeaderStyle,

    /// Domain ShouldAllow uses when a request names none.
    #[arg(long, env = "SLUICE_ALLOW_DOMAIN", default_value = "sluice")]
    pub allow_domain: String,

    /// What a domain no rule mentions gets: `allow`, or a limit per descriptor such as `100/second`.
    #[arg(long, env = "SLUICE_UNKNOWN_DOMAIN", default_value = "allow", value_parser = parse_unknown_domain)]
    pub unknown_domain: UnknownDomain,

    /// Global shadow mode: decide and record, never deny.
    #[arg(long, env = "SLUICE_SHADOW", default_value_t = false)]
    pub shadow: bool,

    /// Where bucket states live: `sharded` (Sluice's own sharded table: faster and half the
    /// memory at a million keys; the default on its own) or `moka` (a moka cache: the default as
    /// the local cache of `--counters-mode cached`). See ARCHITECTURE.md.
    #[arg(long, env = "SLUICE_BUCKET_STORE")]
    pub bucket_store: Option<StoreKind>,

    /// Most bucket states kept in memory.
    #[arg(long, env = "SLUICE_CACHE_CAPACITY", default_value_t = 2_000_000)]
    pub cache_capacity: u64,

    /// Seconds a bucket may sit idle before it is dropped (never before its limit has fully
    /// recovered, so dropping it changes no decision).
    #[arg(long, env = "SLUICE_CACHE_IDLE_TTL_SECS", default_value_t = 600)]
    pub cache_idle_ttl_secs: u64,

    /// Most descriptors in one Envoy request.
    #[arg(long, env = "SLUICE_MAX_DESCRIPTORS", default_value_t = InputLimits::default().max_descriptors)]
    pub max_descriptors: usize,
    /// Most entries in one descriptor (request or rule).
    #[arg(long, env = "SLUICE_MAX_ENTRIES", default_value_t = InputLimits::default().max_entries)]
    pub max_entries: usize,
    /// Longest descriptor key, domain or limit name, in bytes.
    #[arg(long, env = "SLUICE_MAX_KEY_LEN", default_value_t = InputLimits::default().max_key_len)]
    pub max_key_len: usize,
    /// Longest descriptor value or subject field, in bytes.
    #[arg(long, env = "SLUICE_MAX_VALUE_LEN", default_value_t = InputLimits::default().max_value_len)]
    pub max_value_len: usize,

    /// How often to check the database for rule changes (made by other instances, or missed
    /// while it was down), in milliseconds.
    #[arg(long, env = "SLUICE_RESYNC_INTERVAL_MS", default_value_t = 5_000)]
    pub resync_interval_ms: u64,

    /// How long a SQLite write waits for a lock before failing as unavailable, in milliseconds.
    #[arg(long, env = "SLUICE_DB_BUSY_TIMEOUT_MS", default_value_t = 5_000)]
    pub db_busy_timeout_ms: u64,

    /// How long to wait for a database connection before failing as unavailable, in milliseconds.
    #[arg(long, env = "SLUICE_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3_000)]
    pub db_acquire_timeout_ms: u64,

    /// Longest one database call (a query or a transaction) may take before it fails as
    /// unavailable, in milliseconds; a rule change waits at most this long for another one.
    #[arg(long, env = "SLUICE_DB_STATEMENT_TIMEOUT_MS", default_value_t = 10_000)]
    pub db_statement_timeout_ms: u64,

    #[command(flatten)]
    pub learn: LearnArgs,

    #[command(flatten)]
    pub fleet: crate::app::config_fleet::FleetArgs,

    /// Seconds between learning-loop ticks. A tick closes the current "minute" of observation;
    /// the features are calibrated for 60, so change it only for tests and demos.
    #[arg(
        long,
        env = "SLUICE_LEARN_TICK_SECS",
        default_value_t = 60,
        hide = true
    )]
    pub learn_tick_secs: u64,

    /// Threads serving requests. 1 runs tokio's single-threaded scheduler (cheaper per
    /// decision: a connection writes the responses of every finished handler at once, where the
    /// multi-thread one writes each on its own); more, its multi-thread scheduler. Default: one
    /// per CPU this process may use (affinity mask and cgroup quota), so one CPU means 1.
    #[arg(long, env = "SLUICE_WORKER_THREADS", value_parser = parse_worker_threads)]
    pub worker_threads: Option<std::num::NonZeroUsize>,

    /// Threads that serve gRPC connections, each running tokio's single-threaded scheduler
    /// with the connections it is handed (a connection stays on its thread). Default: the
    /// `--worker-threads` count when it is more than 1 — the single-threaded scheduler's cheap
    /// writes on every core, where the multi-thread scheduler's tail is long on shared cores;
    /// on one, the connections are served by the main scheduler. 0: always by the main
    /// scheduler (the multi-thread one when there are several workers).
    #[arg(long, env = "SLUICE_GRPC_THREADS", value_parser = parse_grpc_threads)]
    pub grpc_threads: Option<usize>,

    /// Niceness of the thread that runs the learning loop's minute, its looks, the bucket sweep
    /// and model reloads, and of the embedded SQLite database's threads (Linux), 0–19: above 0
    /// the decisions are served first on a busy machine and this work takes the time they
    /// leave; 0 runs it at their priority.
    #[arg(long, env = "SLUICE_BACKGROUND_NICE", default_value_t = crate::service::background::NICE,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    pub background_nice: i32,

    /// Days of score, traffic and adjustment history kept in the database.
    #[arg(long, env = "SLUICE_HISTORY_RETENTION_DAYS", default_value_t = 14)]
    pub history_retention_days: u64,

    /// History rows buffered in memory while the database is unreachable; past this the oldest
    /// are dropped (and counted).
    #[arg(long, env = "SLUICE_HISTORY_BUFFER", default_value_t = 200_000)]
    pub history_buffer: usize,

    /// This instance's name where several share one database or counters (its anomaly actions
    /// and fleet state are stored under it). Default: `HOST:PORT`, the host name and the gRPC
    /// port, so replicas on one host are distinct and a restarted one is itself again.
    #[arg(long, env = "SLUICE_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Most gRPC connections at once; more wait in the kernel's backlog until one closes. Lowered
    /// at start to what the process's descriptor limit leaves after the HTTP listener's and a
    /// reserve (the log says so).
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Milliseconds a connection may go without a request before it is closed: a new gRPC
    /// connection until its first request (bytes that are not a request, such as the HTTP/2
    /// preface or pings, do not count); on the HTTP listener, each request's head.
    #[arg(
        long,
        env = "SLUICE_FIRST_BYTE_TIMEOUT_MS",
        alias = "first-request-timeout-ms",
        default_value_t = 10_000
    )]
    pub first_byte_timeout_ms: u64,

    /// Most HTTP admin connections at once (more wait in the kernel's backlog): the admin port
    /// never takes the descriptors the decision port needs.
    #[arg(long, env = "SLUICE_HTTP_MAX_CONNECTIONS", default_value_t = 256)]
    pub http_max_connections: usize,

    /// Address of the HTTP admin listener: `/metrics` (Prometheus), `/healthz`, `/readyz` and the
    /// dashboard at `/`. Off when unset; TLS and the admin token are the gRPC listener's.
    #[arg(long, env = "SLUICE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// OpenTelemetry collector to push metrics and spans to over OTLP/gRPC, e.g.
    /// `http://otel-collector:4317`. Nothing is exported when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = crate::service::telemetry::parse_endpoint)]
    pub otlp_endpoint: Option<String>,

    /// Milliseconds between metric exports to the collector.
    #[arg(
        long,
        env = "SLUICE_OTLP_INTERVAL_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..)
    )]
    pub otlp_interval_ms: u64,
}

/// The learning loop's settings: shared by `serve`, `replay` and `simulate`'s server.
#[derive(Clone, Debug, clap::Args)]
pub struct LearnArgs {
    /// Turn the learning loop off: static rules only (decisions are still observed for history).
    #[arg(long, env = "SLUICE_NO_ADAPTIVE", default_value_t = false)]
    pub no_adaptive: bool,
    /// Adaptive shadow mode: compute and record anomaly actions, never enforce them.
    #[arg(long, env = "SLUICE_ADAPTIVE_SHADOW", default_value_t = false)]
    pub adaptive_shadow: bool,
    /// Risk at or above which a client is blocked.
    #[arg(long, env = "SLUICE_BLOCK_AT", default_value_t = PolicyConfig::default().block_at)]
    pub block_at: f64,
    /// Risk at or above which a client is throttled.
    #[arg(long, env = "SLUICE_THROTTLE_AT", default_value_t = PolicyConfig::default().throttle_at)]
    pub throttle_at: f64,
    /// Requests per minute a throttled client keeps.
    #[arg(long, env = "SLUICE_THROTTLE_PER_MINUTE", default_value_t = PolicyConfig::default().throttle_per_minute)]
    pub throttle_per_minute: u64,
    /// A PRM client is never blocked nor throttled below this many requests per minute.
    #[arg(long, env = "SLUICE_PRM_FLOOR_PER_MINUTE", default_value_t = PolicyConfig::default().prm_floor_per_minute)]
    pub prm_floor_per_minute: u64,
    /// Seconds an anomaly action lasts unless renewed.
    #[arg(long, env = "SLUICE_ACTION_TTL_SECS", default_value_t = 300)]
    pub action_ttl_secs: u64,
    /// Fewest requests in a minute before a client can be acted on.
    #[arg(long, env = "SLUICE_MIN_REQUESTS", default_value_t = PolicyConfig::default().min_requests)]
    pub min_requests: u32,
    /// Clients never acted on: IPs, IP networks (CIDR) or ids, comma-separated.
    #[arg(long, env = "SLUICE_ALLOWLIST", default_value = "", value_parser = Allowlist::parse)]
    pub allowlist: Allowlist,
    /// Seconds between retrainings of the isolation forest.
    #[arg(long, env = "SLUICE_RETRAIN_SECS", default_value_t = 300)]
    pub retrain_secs: u64,
    /// Seconds on static rules only before the first model is grown.
    #[arg(long, env = "SLUICE_COLD_START_SECS", default_value_t = 300)]
    pub cold_start_secs: u64,
    /// Minutes of client behaviour the training sample covers.
    #[arg(long, env = "SLUICE_SAMPLE_MINUTES", default_value_t = LearnerConfig::default().sample_minutes)]
    pub sample_minutes: usize,
    /// Most client-minutes in the training sample.
    #[arg(long, env = "SLUICE_SAMPLE_CAP", default_value_t = LearnerConfig::default().sample_cap)]
    pub sample_cap: usize,
    /// Fewest client-minutes a forest is grown from.
    #[arg(long, env = "SLUICE_MIN_TRAIN", default_value_t = LearnerConfig::default().min_train)]
    pub min_train: usize,
    /// Trees in the isolation forest.
    #[arg(long, env = "SLUICE_FOREST_TREES", default_value_t = ForestParams::default().trees)]
    pub forest_trees: usize,
    /// Points each tree is grown from.
    #[arg(long, env = "SLUICE_FOREST_SAMPLE", default_value_t = ForestParams::default().sample_size)]
    pub forest_sample: usize,
    /// Seed of the forest's randomness (replays with the same seed decide the same).
    #[arg(long, env = "SLUICE_SEED", default_value_t = ForestParams::default().seed)]
    pub seed: u64,
    /// A client is beyond a site baseline at this many times the measure's p99 (requests per route
    /// and tier, requests, errors, authentication failures per client-minute).
    #[arg(long, env = "SLUICE_BASELINE_FACTOR", default_value_t = BaselineConfig::default().factor)]
    pub baseline_factor: f64,
    /// ...and at least this many requests a minute (errors and failures: a fifth of it).
    #[arg(long, env = "SLUICE_BASELINE_MIN_PER_MINUTE", default_value_t = BaselineConfig::default().min_per_minute)]
    pub baseline_min_per_minute: f64,
    /// The forest's contamination budget: its threshold is at least the site's 1 − budget score
    /// quantile, and at most this share of the minute's active clients is newly acted on by it.
    #[arg(long, env = "SLUICE_FOREST_BUDGET", default_value_t = LearnerConfig::default().forest_budget)]
    pub forest_budget: f64,
    /// Do not apply the explicit "tool user agent with mostly failing requests" heuristic.
    #[arg(long, env = "SLUICE_NO_HEURISTICS", default_value_t = false)]
    pub no_heuristics: bool,
    /// Most clients observed per minute; observations past it are counted, not stored.
    #[arg(long, env = "SLUICE_MAX_CLIENTS_PER_MINUTE", default_value_t = ObserveConfig::default().max_clients)]
    pub max_clients_per_minute: usize,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Under pressure, STD limits on low-priority endpoints are multiplied by this.
    #[arg(long, env = "SLUICE_PRESSURE_CUT_FACTOR", default_value_t = PressureConfig::default().cut_factor)]
    pub pressure_cut_factor: f64,
    /// Backend utilisation (ReportLoad, 0..1) at or above which low-priority endpoints are cut.
    #[arg(long, env = "SLUICE_LOAD_THRESHOLD", default_value_t = PressureConfig::default().load_threshold)]
    pub load_threshold: f64,
    /// Seconds a cut holds after its last trigger before it may be lifted.
    #[arg(long, env = "SLUICE_PRESSURE_HOLD_SECS", default_value_t = PressureConfig::default().hold.as_secs())]
    pub pressure_hold_secs: u64,
}

impl LearnArgs {
    pub fn learner(&self) -> LearnerConfig {
        LearnerConfig {
            policy: PolicyConfig {
                block_at: self.block_at,
                throttle_at: self.throttle_at,
                throttle_per_minute: self.throttle_per_minute,
                prm_floor_per_minute: self.prm_floor_per_minute,
                action_ttl: Duration::from_secs(self.action_ttl_secs),
                min_requests: self.min_requests,
                allowlist: self.allowlist.clone(),
                shadow: self.adaptive_shadow,
            },
            forest: ForestParams {
                trees: self.forest_trees,
                sample_size: self.forest_sample,
                seed: self.seed,
            },
            retrain_every: Duration::from_secs(self.retrain_secs),
            cold_start: Duration::from_secs(self.cold_start_secs),
            sample_minutes: self.sample_minutes,
            sample_cap: self.sample_cap,
            min_train: self.min_train,
            heuristics: !self.no_heuristics,
            baselines: BaselineConfig {
                factor: self.baseline_factor,
                min_per_minute: self.baseline_min_per_minute,
                ..BaselineConfig::default()
            },
            forest_budget: self.forest_budget,
            ..LearnerConfig::default()
        }
    }

    pub fn pressure(&self) -> PressureConfig {
        PressureConfig {
            cut_factor: self.pressure_cut_factor,
            load_threshold: self.load_threshold,
            hold: Duration::from_secs(self.pressure_hold_secs),
            shadow: self.adaptive_shadow,
            ..PressureConfig::default()
        }
    }

    pub fn observe(&self) -> ObserveConfig {
        ObserveConfig {
            max_clients: self.max_clients_per_minute,
            ..ObserveConfig::default()
        }
    }

    /// Checks what clap cannot: ranges and orderings.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        if !unit(self.block_at) || !unit(self.throttle_at) {
            return Err("--block-at and --throttle-at must be between 0 and 1".into());
        }
        if self.throttle_at > self.block_at {
            return Err("--throttle-at must not be above --block-at".into());
        }
        if self.throttle_per_minute == 0 {
            return Err("--throttle-per-minute must be at least 1 (use blocking for 0)".into());
        }
        if self.forest_trees == 0 || self.forest_sample < 2 {
            return Err("--forest-trees must be at least 1 and --forest-sample at least 2".into());
        }
        if !(self.pressure_cut_factor > 0.0 && self.pressure_cut_factor <= 1.0) {
            return Err("--pressure-cut-factor must be in (0, 1]".into());
        }
        if !(self.load_threshold > 0.0 && self.load_threshold <= 1.0) {
            return Err("--load-threshold must be in (0, 1]".into());
        }
        if !(self.baseline_factor >= 1.0 && self.baseline_factor <= 1_000.0) {
            return Err("--baseline-factor must be in [1, 1000]".into());
        }
        if !(self.baseline_min_per_minute >= 1.0 && self.baseline_min_per_minute <= 1e6) {
            return Err("--baseline-min-per-minute must be in [1, 1000000]".into());
        }
        if !(self.forest_budget > 0.0 && self.forest_budget <= 1.0) {
            return Err("--forest-budget must be in (0, 1] (1: no budget)".into());
        }
        if self.sample_minutes == 0 || self.sample_cap == 0 || self.retrain_secs == 0 {
            return Err(
                "--sample-minutes, --sample-cap and --retrain-secs must be positive".into(),
            );
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownDomain {
    Allow,
    Limit(Rate),
}

fn parse_unknown_domain(text: &str) -> Result<UnknownDomain, String> {
    if text == "allow" {
        return Ok(UnknownDomain::Allow);
    }
    let (n, unit) = text
        .split_once('/')
        .ok_or_else(|| format!("expected `allow` or N/UNIT such as 100/second, got {text:?}"))?;
    let requests_per_unit: u64 = n
        .parse()
        .map_err(|_| format!("{n:?} is not a whole number"))?;
    if requests_per_unit == 0 {
        return Err("the limit must be greater than zero".into());
    }
    let unit = Unit::parse(unit).ok_or_else(|| format!("unknown unit {unit:?}"))?;
    Ok(UnknownDomain::Limit(Rate {
        requests_per_unit,
        unit,
        unit_multiplier: 1,
    }))
}

impl Config {
    /// How the gRPC listener admits connections.
    pub fn connection_limits(&self) -> crate::grpc::incoming::ConnectionLimits {
        crate::grpc::incoming::ConnectionLimits {
            max_connections: self.max_connections.max(1),
            first_byte_timeout: Duration::from_millis(self.first_byte_timeout_ms.max(100)),
        }
    }

    /// How the HTTP admin listener admits connections.
    pub fn http_limits(&self) -> crate::http::guard::HttpLimits {
        crate::http::guard::HttpLimits {
            max_connections: self.http_max_connections.max(1),
            head_timeout: Duration::from_millis(self.first_byte_timeout_ms.max(100)),
        }
    }

    /// The listener's TLS files, as configured (checked by `ServerTlsFiles::load`).
    pub fn tls(&self) -> crate::grpc::tls::ServerTlsFiles {
        crate::grpc::tls::ServerTlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            client_ca: self.tls_client_ca.clone(),
        }
    }

    /// `--instance-id`, else `HOST:PORT` (the host name, else `sluice`; `port`: the gRPC
    /// listener's).
    pub fn instance_id(&self, port: u16) -> String {
        self.instance_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "sluice".to_string());
                format!("{host}:{port}")
            })
    }

    /// Where to export telemetry, if anywhere.
    pub fn telemetry(&self) -> Option<crate::service::telemetry::TelemetryConfig> {
        self.otlp_endpoint
            .as_ref()
            .map(|endpoint| crate::service::telemetry::TelemetryConfig {
                endpoint: endpoint.clone(),
                interval: Duration::from_millis(self.otlp_interval_ms),
            })
    }
}

/// 1 to 1024 worker threads.
fn parse_worker_threads(text: &str) -> Result<std::num::NonZeroUsize, String> {
    text.parse::<std::num::NonZeroUsize>()
        .ok()
        .filter(|n| n.get() <= 1024)
        .ok_or_else(|| format!("{text:?} is not a number of threads from 1 to 1024"))
}

fn parse_grpc_threads(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n <= 1024)
        .ok_or_else(|| format!("{text:?} is not a number of threads from 0 to 1024"))
}

impl Config {
    /// The gRPC serving threads to start (0: none, the main scheduler serves), given the main
    /// scheduler's `workers`.
    pub fn grpc_serving_threads(&self, workers: usize) -> usize {
        match self.grpc_threads {
            Some(threads) => threads,
            None if workers > 1 => workers,
            None => 0,
        }
    }
}

impl Default for Config {
    /// The built-in defaults, ignoring the environment (for tests and embedding).
    fn default() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let command = Config::command().mut_args(|arg| arg.env(clap::builder::Resettable::Reset));
        let matches = command.get_matches_from(["sluice"]);
        Config::from_arg_matches(&matches).expect("the defaults parse")
    }
}

impl Config {
    pub fn input_limits(&self) -> InputLimits {
        InputLimits {
            max_descriptors: self.max_descriptors,
            max_entries: self.max_entries,
            max_key_len: self.max_key_len,
            max_value_len: self.max_value_len,
            ..InputLimits::default()
        }
    }

    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            bucket_capacity: self.cache_capacity,
            bucket_idle_ttl: Duration::from_secs(self.cache_idle_ttl_secs),
            unknown_domain_limit: match self.unknown_domain {
                UnknownDomain::Allow => None,
                UnknownDomain::Limit(rate) => Some(rate),
            },
            shadow: self.shadow,
            observe: self.learn.observe(),
        }
    }

    /// The engine on the configured bucket store.
    pub fn build_engine(&self) -> sluice_core::engine::Engine {
        crate::adapters::moka_store::engine(self.engine(), self.bucket_store())
    }

    /// The bucket store in use: as configured, else `sharded`, or `moka` as the cached
    /// counters mode's local cache.
    pub fn bucket_store(&self) -> StoreKind {
        self.bucket_store.unwrap_or(
            if self.fleet.url().ok().flatten().is_some()
                && self.fleet.counters_mode == crate::service::fleet::CountersMode::Cached
            {
                StoreKind::Moka
            } else {
                StoreKind::Sharded
            },
        )
    }

    pub fn store(&self) -> StoreOptions {
        StoreOptions {
            url: self.database_url.clone(),
            busy_timeout: Duration::from_millis(self.db_busy_timeout_ms),
            acquire_timeout: Duration::from_millis(self.db_acquire_timeout_ms),
            statement_timeout: Duration::from_millis(self.db_statement_timeout_ms.max(100)),
            worker_nice: self.background_nice,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fleet::CountersMode;

    #[test]
    fn the_bucket_store_defaults_to_sharded_and_to_moka_as_the_cached_modes_cache() {
        // (configured, counters, mode) -> store
        let table = [
            (None, None, CountersMode::Exact, StoreKind::Sharded),
            (
                None,
                Some("redis://r:6379"),
                CountersMode::Exact,
                StoreKind::Sharded,
            ),
            (
                None,
                Some("redis://r:6379"),
                CountersMode::Cached,
                StoreKind::Moka,
            ),
            (None, None, CountersMode::Cached, StoreKind::Sharded),
            (
                Some(StoreKind::Moka),
                None,
                CountersMode::Exact,
                StoreKind::Moka,
            ),
            (
                Some(StoreKind::Sharded),
                Some("redis://r:6379"),
                CountersMode::Cached,
                StoreKind::Sharded,
            ),
        ];
        for (configured, counters, mode, expected) in table {
            let mut config = Config {
                bucket_store: configured,
                ..Config::default()
            };
            config.fleet.counters = counters.map(String::from);
            config.fleet.counters_mode = mode;
            assert_eq!(
                config.bucket_store(),
                expected,
                "{configured:?} {counters:?} {mode:?}"
            );
        }
    }

    #[test]
    fn grpc_serving_threads_follow_the_workers_unless_set() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            Config::try_parse_from([&["sluice"], args].concat()).map_err(|e| e.to_string())
        };
        // (flags, the main scheduler's workers, serving threads started)
        for (args, workers, threads) in [
            (&[][..], 1, 0),
            (&[][..], 2, 2),
            (&[][..], 16, 16),
            (&["--grpc-threads", "0"][..], 4, 0),
            (&["--grpc-threads", "3"][..], 1, 3),
            (&["--grpc-threads", "1024"][..], 2, 1024),
        ] {
            let config = parse(args).unwrap();
            assert_eq!(
                config.grpc_serving_threads(workers),
                threads,
                "{args:?} on {workers} workers"
            );
        }
        for bad in ["1025", "-1", "two", ""] {
            let error = parse(&[&format!("--grpc-threads={bad}")]).expect_err(bad);
            assert!(error.contains("--grpc-threads"), "{bad}: {error}");
        }
    }

    #[test]
    fn worker_threads_from_1_to_1024_else_the_flag_is_named() {
        use clap::Parser;
        let parse = |value: &str| {
            Config::try_parse_from(["sluice".to_string(), format!("--worker-threads={value}")])
                .map(|c| c.worker_threads.map(std::num::NonZeroUsize::get))
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse("1"), Ok(Some(1)));
        assert_eq!(parse("1024"), Ok(Some(1024)));
        for bad in ["0", "1025", "-1", "two", ""] {
            let error = parse(bad).expect_err(bad);
            assert!(error.contains("--worker-threads"), "{bad}: {error}");
        }
        assert_eq!(
            Config::default().worker_threads,
            None,
            "one per CPU unless asked"
        );
    }
}
