//! The flags of a fleet: where the shared counters are and what a decision does without them.

use std::time::Duration;

use crate::adapters::redis_counters::CountersUrl;
use crate::service::fleet::{CountersMode, FailurePolicy, FleetConfig};

#[derive(Clone, Debug, clap::Args)]
pub struct FleetArgs {
    /// Shared counters, making every limit global across the replicas that name the same store:
    /// `redis://HOST:PORT[/DB]` or `redis+cluster://H1:P1,H2:P2,...` (Valkey too). Unset: this
    /// instance's buckets alone (a single instance).
    #[arg(long, env = "SLUICE_COUNTERS")]
    pub counters: Option<String>,

    /// `exact` (every decision's buckets updated on the counters before it is answered: never
    /// over the limit) or `cached` (answered at once from local buckets, hits flushed every
    /// --counters-flush-ms: faster, over-admission bounded — see docs/fleet.md).
    #[arg(long, env = "SLUICE_COUNTERS_MODE", default_value = "exact")]
    pub counters_mode: CountersMode,

    /// Cached mode: milliseconds between flushes of admitted hits to the counters.
    #[arg(long, env = "SLUICE_COUNTERS_FLUSH_MS", default_value_t = 5)]
    pub counters_flush_ms: u64,

    /// Prefix of the counters' keys (replicas sharing limits use the same one).
    #[arg(long, env = "SLUICE_COUNTERS_PREFIX", default_value = "sluice")]
    pub counters_prefix: String,

    /// Milliseconds a decision waits for the shared counters before it is answered without them
    /// (Envoy's whole rate-limit call times out at 20 ms by default: 15 leaves it 5). In exact
    /// mode a decision that misses it while Redis is alive is refused (`allow`: admitted) and
    /// reconciled when its script lands; set it above Redis's slowest answers under load.
    #[arg(long, env = "SLUICE_COUNTERS_BUDGET_MS", default_value_t = 15)]
    pub counters_budget_ms: u64,

    /// When the shared counters cannot answer: `allow`, `deny`, or `local` (this replica's own
    /// buckets, each limit divided by the replicas alive, or --fleet-replicas).
    #[arg(long, env = "SLUICE_COUNTERS_FAILURE_POLICY", default_value = "local")]
    pub counters_failure_policy: FailurePolicy,

    /// Replicas sharing the limits (the `local` policy's divisor). Unset: the replicas alive in
    /// the fleet state the replicas publish every second (the last count known before an
    /// outage).
    #[arg(long, env = "SLUICE_FLEET_REPLICAS")]
    pub fleet_replicas: Option<u64>,

    /// Consecutive failures after which decisions stop asking the counters for a cool-down.
    #[arg(long, env = "SLUICE_COUNTERS_BREAKER_FAILURES", default_value_t = 3)]
    pub counters_breaker_failures: u32,

    /// Milliseconds the breaker stays open before one decision probes the counters again.
    #[arg(
        long,
        env = "SLUICE_COUNTERS_BREAKER_COOLDOWN_MS",
        default_value_t = 1_000
    )]
    pub counters_breaker_cooldown_ms: u64,
}

impl FleetArgs {
    /// The counters' URL, checked; `None` for a single instance.
    pub fn url(&self) -> Result<Option<CountersUrl>, String> {
        self.counters
            .as_deref()
            .map(|u| u.parse::<CountersUrl>().map_err(|e| e.to_string()))
            .transpose()
    }

    pub fn validate(&self) -> Result<(), String> {
        self.url()?;
        if !(1..=1_000).contains(&self.counters_budget_ms) {
            return Err("--counters-budget-ms must be in [1, 1000]".into());
        }
        if !(1..=10_000).contains(&self.counters_flush_ms) {
            return Err("--counters-flush-ms must be in [1, 10000]".into());
        }
        if self
            .fleet_replicas
            .is_some_and(|r| !(1..=10_000).contains(&r))
        {
            return Err("--fleet-replicas must be in [1, 10000]".into());
        }
        if self.counters_breaker_failures == 0 {
            return Err("--counters-breaker-failures must be at least 1".into());
        }
        if !(10..=600_000).contains(&self.counters_breaker_cooldown_ms) {
            return Err("--counters-breaker-cooldown-ms must be in [10, 600000]".into());
        }
        if self.counters_prefix.is_empty() || self.counters_prefix.contains(['{', '}', ' ']) {
            return Err("--counters-prefix must be non-empty, without braces or spaces".into());
        }
        Ok(())
    }

    pub fn config(&self) -> FleetConfig {
        FleetConfig {
            mode: self.counters_mode,
            flush: Duration::from_millis(self.counters_flush_ms),
            budget: Duration::from_millis(self.counters_budget_ms),
            policy: self.counters_failure_policy,
            replicas: self.fleet_replicas,
            breaker_failures: self.counters_breaker_failures,
            breaker_cooldown: Duration::from_millis(self.counters_breaker_cooldown_ms),
        }
    }
}
