//! `sluice eval-detection`: detection quality over many generated worlds, each replayed through
//! the same engine and minute as the service. Two families: `mixed` (`replay::worlds`: floods,
//! stuffing, scrapers, scanners among people, NAT gateways, integrations, flash crowds) and
//! `scanned` (`replay::scanned`: small and large sites whose failing clients are 10–80%
//! attackers, in bursts from the first minute). Prints one line per world and the worst and
//! median of each figure — never the best. Default seeds: the held-out set.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use sluice_core::engine::EngineConfig;
use sluice_core::validate::InputLimits;

use crate::adapters::moka_store::StoreKind;
use crate::adapters::rules_file;
use crate::app::config::LearnArgs;
use crate::replay::report::Report;
use crate::replay::{ReplayOptions, scanned, scenario, worlds};

#[derive(Clone, Debug, clap::Args)]
pub struct EvalDetectionArgs {
    /// World seeds: `A-B` (inclusive) or a comma list. Default: the held-out seeds 2001-2020
    /// (the design seeds, 1-20, are for deciding thresholds).
    #[arg(long, default_value = "2001-2020")]
    pub seeds: String,
    /// Which worlds: `mixed` or `scanned` (see the module docs).
    #[arg(long, default_value = "mixed", value_parser = ["mixed", "scanned"])]
    pub family: String,
    /// Cap on a world's drawn population (100 to 50,000 clients); larger worlds take longer.
    #[arg(long, default_value_t = 5_000)]
    pub max_clients: usize,
    /// Rules file; without it only anomaly actions limit.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Under each world, list the benign clients it acted on (label, signal and why) and the
    /// failing attacks it missed (to find what an error is made of; design seeds only).
    #[arg(long)]
    pub explain: bool,
    /// Replay each world as this many replicas behind a round-robin balancer (`replay
    /// --replicas`): the fleet's learning judged on the same worlds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub replicas: u16,
    #[command(flatten)]
    pub learn: LearnArgs,
}

/// One world's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorldFigures {
    pub seed: u64,
    pub clients: u64,
    pub bots: usize,
    pub attacks: String,
    pub precision: f64,
    pub recall: f64,
    /// PRM clients under an enforced anomaly action.
    pub prm_acted_on: usize,
    /// Flash-crowd newcomers flagged.
    pub flash_flagged: usize,
    pub benign_denied_ratio: f64,
    /// Median seconds from a bot's first request to its first action (0 when none caught).
    pub delay_p50: f64,
    /// Benign clients acted on, as a share of the benign clients.
    pub people_acted_on: f64,
    /// Attacks acted on / attacks whose requests mostly fail (1 when there are none).
    pub failing_recall: f64,
}

/// Worst and median over the worlds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub worlds: usize,
    pub precision_min: f64,
    pub precision_median: f64,
    pub recall_min: f64,
    pub recall_median: f64,
    pub prm_acted_on_max: usize,
    pub flash_flagged_max: usize,
    pub benign_denied_max: f64,
    pub benign_denied_median: f64,
    pub delay_p50_max: f64,
    pub delay_p50_median: f64,
    pub people_acted_on_max: f64,
    pub failing_recall_min: f64,
}

fn parse_seeds(text: &str) -> anyhow::Result<Vec<u64>> {
    let mut seeds = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse()?, b.parse()?);
                anyhow::ensure!(a <= b && b - a < 10_000, "--seeds {part}: A-B with A <= B");
                seeds.extend(a..=b);
            }
            None => seeds.push(part.parse().with_context(|| format!("--seeds {part:?}"))?),
        }
    }
    anyhow::ensure!(!seeds.is_empty(), "--seeds names no seed");
    Ok(seeds)
}

/// The figures of one replayed world with `bots` attackers of `attacks` kinds.
pub fn figures(seed: u64, bots: usize, attacks: String, r: &Report) -> WorldFigures {
    let flagged_with = |prefix: &str| {
        r.flagged
            .iter()
            .filter(|f| f.label.starts_with(prefix) && !r.shadow)
            .count()
    };
    WorldFigures {
        seed,
        clients: r.clients.total,
        bots,
        attacks,
        precision: r.clients.precision.unwrap_or(1.0),
        recall: r.clients.recall.unwrap_or(1.0),
        prm_acted_on: flagged_with("benign:prm"),
        flash_flagged: flagged_with("benign:flash"),
        benign_denied_ratio: r.benign_denied_ratio.unwrap_or(0.0),
        delay_p50: r
            .clients
            .detection_delay_seconds
            .as_ref()
            .map_or(0.0, |d| d.p50),
        people_acted_on: {
            let benign = r.clients.labelled.get("benign").copied().unwrap_or(0);
            r.clients.false_positives as f64 / benign.max(1) as f64
        },
        failing_recall: r.clients.failing_attacks_recall.unwrap_or(1.0),
    }
}

/// One generated world of either family.
pub struct GeneratedWorld {
    pub requests: Vec<scenario::Request>,
    pub attackers: usize,
    /// Attack kinds, `+`-joined.
    pub attacks: String,
    /// What was drawn, as JSON.
    pub params: String,
}

/// Generates world `seed` of `family` (`mixed` or `scanned`), its population capped.
pub fn world_of(family: &str, seed: u64, max_clients: usize) -> GeneratedWorld {
    if family == "scanned" {
        let w = scanned::generate(seed, max_clients);
        GeneratedWorld {
            attackers: w.params.attackers,
            attacks: w.params.kinds.join("+"),
            params: serde_json::to_string(&w.params).unwrap_or_default(),
            requests: w.requests,
        }
    } else {
        let w = worlds::generate(seed, max_clients);
        GeneratedWorld {
            attackers: w.params.bots,
            attacks: w.params.attacks.join("+"),
            params: serde_json::to_string(&w.params).unwrap_or_default(),
            requests: w.requests,
        }
    }
}

/// Replays one world's requests with these options.
pub fn replay_world(
    requests: &[scenario::Request],
    args: &EvalDetectionArgs,
    rules: Vec<sluice_core::rules::Rule>,
) -> anyhow::Result<Report> {
    let mut trace = Vec::new();
    scenario::write_csv(&mut trace, requests)?;
    let options = ReplayOptions {
        rules,
        engine: EngineConfig {
            observe: args.learn.observe(),
            ..EngineConfig::default()
        },
        bucket_store: StoreKind::Sharded,
        learner: args.learn.learner(),
        pressure: args.learn.pressure(),
        adaptive: !args.learn.no_adaptive,
        replicas: args.replicas as usize,
        ..ReplayOptions::default()
    };
    Ok(crate::replay::run(trace.as_slice(), options, None)?)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

pub fn summarize(all: &[WorldFigures]) -> Summary {
    let col = |f: fn(&WorldFigures) -> f64| all.iter().map(f).collect::<Vec<f64>>();
    let min = |xs: Vec<f64>| xs.into_iter().fold(f64::INFINITY, f64::min);
    let max = |xs: Vec<f64>| xs.into_iter().fold(0.0, f64::max);
    Summary {
        worlds: all.len(),
        precision_min: min(col(|w| w.precision)),
        precision_median: median(col(|w| w.precision)),
        recall_min: min(col(|w| w.recall)),
        recall_median: median(col(|w| w.recall)),
        prm_acted_on_max: all.iter().map(|w| w.prm_acted_on).max().unwrap_or(0),
        flash_flagged_max: all.iter().map(|w| w.flash_flagged).max().unwrap_or(0),
        benign_denied_max: max(col(|w| w.benign_denied_ratio)),
        benign_denied_median: median(col(|w| w.benign_denied_ratio)),
        delay_p50_max: max(col(|w| w.delay_p50)),
        delay_p50_median: median(col(|w| w.delay_p50)),
        people_acted_on_max: max(col(|w| w.people_acted_on)),
        failing_recall_min: min(col(|w| w.failing_recall)),
    }
}

pub fn run(args: &EvalDetectionArgs) -> anyhow::Result<()> {
    args.learn.validate().map_err(anyhow::Error::msg)?;
    let seeds = parse_seeds(&args.seeds)?;
    let rules = match &args.rules {
        Some(path) => rules_file::load(path, &InputLimits::default())?.rules,
        None => Vec::new(),
    };
    let mut all = Vec::new();
    if !args.json {
        println!(
            "{:>6} {:>7} {:>5} {:<32} {:>9} {:>7} {:>4} {:>6} {:>8} {:>7} {:>7} {:>8}",
            "seed",
            "clients",
            "bots",
            "attacks",
            "precision",
            "recall",
            "prm",
            "flash",
            "benign%",
            "delay",
            "people%",
            "failing"
        );
    }
    let mut progress = crate::cli::progress::Progress::new("eval-detection");
    let worlds = seeds.len() as u64;
    for (done, seed) in seeds.into_iter().enumerate() {
        progress.update(done as u64, Some(worlds), &format!("worlds, seed {seed}"));
        let world = world_of(&args.family, seed, args.max_clients);
        let report = replay_world(&world.requests, args, rules.clone())?;
        let f = figures(seed, world.attackers, world.attacks, &report);
        if !args.json {
            progress.clear();
            println!(
                "{:>6} {:>7} {:>5} {:<32} {:>9.3} {:>7.3} {:>4} {:>6} {:>8.3} {:>7.0} {:>7.2} {:>8.3}",
                f.seed,
                f.clients,
                f.bots,
                f.attacks,
                f.precision,
                f.recall,
                f.prm_acted_on,
                f.flash_flagged,
                f.benign_denied_ratio * 100.0,
                f.delay_p50,
                f.people_acted_on * 100.0,
                f.failing_recall
            );
        }
        if args.explain && !args.json {
            for flagged in report
                .flagged
                .iter()
                .filter(|f| f.label.starts_with("benign"))
            {
                println!(
                    "         {} {} {} ({} requests): {} {}",
                    flagged.label,
                    flagged.client,
                    flagged.action,
                    flagged.requests,
                    flagged.signal,
                    flagged.why
                );
            }
            for m in &report.clients.failing_attacks_missed {
                println!(
                    "         missed {} {}: {} requests, {} failing, over {:.0} s",
                    m.label, m.client, m.requests, m.failed, m.seconds
                );
            }
        }
        all.push(f);
    }
    let summary = summarize(&all);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"worlds": all, "summary": summary}))?
        );
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
