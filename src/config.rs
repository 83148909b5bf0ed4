//! Service configuration: command-line flags, each also settable as a `SLUICE_*` environment
//! variable (and `DATABASE_URL`). The defaults run a working service with no setup: an embedded
//! SQLite file in the working directory, loopback only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::core::buckets::StoreKind;
use crate::core::engine::EngineConfig;
use crate::core::headers::HeaderStyle;
use crate::core::limit::{Rate, Unit};
use crate::core::validate::InputLimits;
use crate::store::StoreOptions;

#[derive(Clone, Debug, Parser)]
pub struct Config {
    /// Address to serve gRPC on (Envoy RLS, Sluice API, health, reflection).
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

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

    /// Where bucket states live: `moka` (a moka cache, the default) or `sharded` (Sluice's own
    /// sharded table: faster and smaller at millions of keys; see ARCHITECTURE.md).
    #[arg(long, env = "SLUICE_BUCKET_STORE", default_value = "moka")]
    pub bucket_store: StoreKind,

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
    }))
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
            bucket_store: self.bucket_store,
        }
    }

    pub fn store(&self) -> StoreOptions {
        StoreOptions {
            url: self.database_url.clone(),
            busy_timeout: Duration::from_millis(self.db_busy_timeout_ms),
            acquire_timeout: Duration::from_millis(self.db_acquire_timeout_ms),
        }
    }
}
