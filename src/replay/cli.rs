//! The `sluice replay` and `sluice gen-trace` commands: argument parsing and files around
//! `replay::run` and `scenario::generate`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;

use crate::config::LearnArgs;
use crate::core::buckets::StoreKind;
use crate::core::engine::EngineConfig;
use crate::core::validate::InputLimits;
use crate::rulesfile;

use super::{ReplayOptions, scenario};

#[derive(Clone, Debug, clap::Args)]
pub struct ReplayArgs {
    /// The trace: CSV (see docs/trace-format.md) or an Apache/nginx combined access log.
    #[arg(long)]
    pub trace: PathBuf,
    /// Rules file (envoyproxy/ratelimit YAML); without it only anomaly actions limit.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Where to write the JSON report (default: standard output).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Where to write one CSV row per decision.
    #[arg(long)]
    pub decisions: Option<PathBuf>,
    /// Domain the requests are decided in.
    #[arg(long, default_value = "sluice")]
    pub domain: String,
    /// Bucket store (`sharded` is faster; decisions are the same).
    #[arg(long, default_value = "sharded")]
    pub bucket_store: StoreKind,
    #[command(flatten)]
    pub learn: LearnArgs,
}

pub fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    args.learn.validate().map_err(anyhow::Error::msg)?;
    let rules = match &args.rules {
        Some(path) => rulesfile::load(path, &InputLimits::default())?.rules,
        None => Vec::new(),
    };
    let (forecaster, fallback) = crate::forecast::cli::load_forecaster(&args.learn.model);
    if let Some(reason) = fallback {
        eprintln!("warning: forecasting with the statistical baseline: {reason}");
    }
    let options = ReplayOptions {
        rules,
        engine: EngineConfig {
            bucket_store: args.bucket_store,
            observe: args.learn.observe(),
            ..EngineConfig::default()
        },
        learner: args.learn.learner(),
        pressure: args.learn.pressure(),
        forecaster: Some(forecaster),
        adaptive: !args.learn.no_adaptive,
        domain: args.domain.clone(),
    };
    let input =
        File::open(&args.trace).with_context(|| format!("cannot open {}", args.trace.display()))?;
    let mut decisions = match &args.decisions {
        Some(path) => {
            Some(BufWriter::new(File::create(path).with_context(|| {
                format!("cannot create {}", path.display())
            })?))
        }
        None => None,
    };
    let report = super::run(
        BufReader::with_capacity(1 << 20, input),
        options,
        decisions.as_mut().map(|w| w as &mut dyn Write),
    )
    .with_context(|| format!("{}", args.trace.display()))?;
    let json = serde_json::to_string_pretty(&report)?;
    match &args.report {
        Some(path) => std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => println!("{json}"),
    }
    eprintln!(
        "replayed {} requests in {:.2} s ({:.0} requests/s); {} clients and {} users flagged",
        report.requests,
        report.replay_seconds,
        report.requests_per_second,
        report.clients.flagged,
        report.users.flagged
    );
    Ok(())
}

#[derive(Clone, Debug, clap::Args)]
pub struct GenTraceArgs {
    /// normal, ddos, credential-stuffing, scraper, account-scraper, flash-crowd, mix or
    /// payment-spike.
    #[arg(long)]
    pub scenario: String,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Population multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Length in minutes (default: the scenario's own).
    #[arg(long)]
    pub minutes: Option<u32>,
    /// Start time, RFC 3339 or epoch milliseconds (default 2026-01-01T00:00:00Z).
    #[arg(long)]
    pub start: Option<String>,
    /// Move every event (attack, crowd, sale) this many minutes later; the trace grows as much.
    #[arg(long, default_value_t = 0)]
    pub delay: u32,
}

pub fn gen_trace(args: &GenTraceArgs) -> anyhow::Result<()> {
    let requests = scenario::generate(&scenario::Params {
        scenario: args.scenario.clone(),
        seed: args.seed,
        scale: args.scale,
        minutes: args.minutes,
        delay: args.delay,
        start_ms: args
            .start
            .as_deref()
            .map(|t| {
                super::trace::parse_ts(t).with_context(|| {
                    format!("--start {t:?} is not an RFC 3339 time or epoch milliseconds")
                })
            })
            .transpose()?,
    })
    .map_err(anyhow::Error::msg)?;
    match &args.out {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            scenario::write_csv(BufWriter::new(file), &requests)?;
        }
        None => scenario::write_csv(std::io::stdout().lock(), &requests)?,
    }
    eprintln!("{} requests", requests.len());
    Ok(())
}
