//! `sluice replay`: a trace through the engine and the learning loop in virtual time (the same
//! minute the service runs, `crate::replay`), a JSON report and optionally one CSV row per decision.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;

use sluice_core::engine::EngineConfig;
use sluice_core::validate::InputLimits;

use crate::adapters::corrections_file;
use crate::adapters::moka_store::StoreKind;
use crate::adapters::onnx::load_or_baseline;
use crate::adapters::rules_file;
use crate::app::config::LearnArgs;
use crate::replay::ReplayOptions;

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
    /// Operators' corrections to apply as the trace reaches their times: CSV `ts,action,client`
    /// (+ `ttl_secs`, `reason`); actions `false_positive`, `allow`, `deny`, `reset`
    /// (docs/trace-format.md). The report lists them and marks the clients called false positives.
    #[arg(long)]
    pub corrections: Option<PathBuf>,
    /// Bucket store (`sharded` is faster; decisions are the same).
    #[arg(long, default_value = "sharded")]
    pub bucket_store: StoreKind,
    /// Replay as this many replicas behind a round-robin balancer, each with its own engine
    /// and learner, exchanging their minutes as a live fleet on shared counters does.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub replicas: u16,
    #[command(flatten)]
    pub learn: LearnArgs,
}

pub fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    args.learn.validate().map_err(anyhow::Error::msg)?;
    let rules = match &args.rules {
        Some(path) => rules_file::load(path, &InputLimits::default())?.rules,
        None => Vec::new(),
    };
    let (forecaster, fallback) = load_or_baseline(
        &args.learn.model.model_path(),
        args.learn.model.ort_dylib.as_deref(),
    );
    if let Some(reason) = fallback {
        eprintln!("warning: forecasting with the statistical baseline: {reason}");
    }
    let corrections = match &args.corrections {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            corrections_file::read(BufReader::new(file))
                .with_context(|| format!("corrections file {}", path.display()))?
        }
        None => Vec::new(),
    };
    // Progress on a terminal: minutes closed and the trace's clock.
    let mut progress = crate::cli::progress::Progress::new("replay");
    let mut minutes = 0u64;
    let mut on_minute = |closed: &sluice_core::minute::ClosedMinute| {
        minutes += 1;
        let clients = closed.tick.scored;
        progress.update(
            minutes,
            None,
            &format!("minutes closed, {clients} clients in the last"),
        );
    };
    let options = ReplayOptions {
        rules,
        engine: EngineConfig {
            observe: args.learn.observe(),
            ..EngineConfig::default()
        },
        bucket_store: args.bucket_store,
        learner: args.learn.learner(),
        pressure: args.learn.pressure(),
        forecaster: Some(forecaster),
        adaptive: !args.learn.no_adaptive,
        domain: args.domain.clone(),
        on_minute: Some(&mut on_minute),
        corrections,
        replicas: args.replicas as usize,
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
    let report = crate::replay::run(
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
