//! `sluice gen-trace`: a labelled synthetic trace from one of the built-in scenarios
//! (`crate::replay::scenario`), for tests, demos and replays.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::Context;

use crate::adapters::trace_file::parse_ts;
use crate::replay::scenario;

#[derive(Clone, Debug, clap::Args)]
pub struct GenTraceArgs {
    /// normal, ddos, credential-stuffing, scraper, account-scraper, flash-crowd, mix,
    /// payment-spike, worldcup-spike, world:SEED or scanned:SEED (a generated world of
    /// `eval-detection`, of its `mixed` or `scanned` family).
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
    // `world:SEED` / `scanned:SEED`: one of `eval-detection`'s generated worlds (population
    // capped at 1000 / 5000 × scale).
    for (prefix, family, cap) in [("world:", "mixed", 1000.0), ("scanned:", "scanned", 5000.0)] {
        if let Some(seed) = args.scenario.strip_prefix(prefix) {
            let seed: u64 = seed
                .parse()
                .with_context(|| format!("--scenario {}: {prefix}SEED", args.scenario))?;
            let world =
                crate::cli::eval_detection::world_of(family, seed, (cap * args.scale) as usize);
            eprintln!("{}", world.params);
            return write(args, &world.requests);
        }
    }
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
                parse_ts(t).with_context(|| {
                    format!("--start {t:?} is not an RFC 3339 time or epoch milliseconds")
                })
            })
            .transpose()?,
    })
    .map_err(anyhow::Error::msg)?;
    write(args, &requests)
}

fn write(args: &GenTraceArgs, requests: &[scenario::Request]) -> anyhow::Result<()> {
    match &args.out {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            scenario::write_csv(BufWriter::new(file), requests)?;
        }
        None => scenario::write_csv(std::io::stdout().lock(), requests)?,
    }
    eprintln!("{} requests", requests.len());
    Ok(())
}
