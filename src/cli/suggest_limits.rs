//! `sluice suggest-limits`: an operator's first rules file, from their own traffic. Replays a
//! trace (in shadow mode: nothing is enforced) so the learner's per-client rate baselines learn
//! the site, then prints a rules file with a per-client limit a little above what almost every
//! client used: for the whole site, and for each busy route (`2 × p99.9` of per-client requests a
//! minute, with the baseline factor). Routes with an id in the middle (`/u/{id}/orders`) cannot
//! be written as one descriptor; they are printed as comments.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use anyhow::Context;

use sluice_core::learn::baselines::suggestions;
use sluice_core::learn::observe::{route_hash, route_template};

use crate::adapters::trace_file::{self, TraceError};
use crate::app::config::LearnArgs;
use crate::replay::{ReplayOptions, run_keeping_state};

#[derive(Clone, Debug, clap::Args)]
pub struct SuggestLimitsArgs {
    /// The trace: CSV or a combined access log of your own traffic.
    #[arg(long)]
    pub trace: PathBuf,
    /// The rules file's domain.
    #[arg(long, default_value = "sluice")]
    pub domain: String,
    /// Routes with fewer client-minutes than this get no rule of their own.
    #[arg(long, default_value_t = 200.0)]
    pub min_samples: f64,
    #[command(flatten)]
    pub learn: LearnArgs,
}

pub fn run(args: &SuggestLimitsArgs) -> anyhow::Result<()> {
    args.learn.validate().map_err(anyhow::Error::msg)?;
    let open =
        || File::open(&args.trace).with_context(|| format!("cannot open {}", args.trace.display()));
    // Route names: the trace's endpoints, templated.
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    trace_file::read::<_, TraceError>(BufReader::new(open()?), |row| {
        names
            .entry(route_hash(row.endpoint))
            .or_insert_with(|| route_template(row.endpoint));
        Ok(())
    })
    .with_context(|| args.trace.display().to_string())?;
    let mut learner = args.learn.learner();
    learner.policy.shadow = true;
    let options = ReplayOptions {
        learner,
        ..ReplayOptions::default()
    };
    let (report, minutes) = run_keeping_state(BufReader::new(open()?), options, None)
        .with_context(|| args.trace.display().to_string())?;
    let baselines = minutes.learner().baselines();
    let mut out = format!(
        "# Suggested by `sluice suggest-limits` from {} ({} requests, {} clients, {} minutes):\n\
         # per client and minute, a little above what almost every client used. Review before use.\n\
         domain: {}\ndescriptors:\n",
        args.trace.display(),
        report.requests,
        report.clients.total,
        report.minutes,
        args.domain
    );
    let all = suggestions(baselines);
    let Some(site) = all.iter().find(|s| s.endpoint.is_none()) else {
        anyhow::bail!(
            "too little traffic to suggest anything: the baselines need {} client-minutes",
            baselines.config().min_samples
        );
    };
    out += &format!(
        "  - key: remote_address   # every client: p99 {:.0}/min, p99.9 {:.0}/min\n    rate_limit: {{unit: minute, requests_per_unit: {}}}\n",
        site.p99, site.p999, site.per_minute
    );
    let views = baselines.views();
    // One descriptor per route, whichever tiers used it: the rules are keyed by endpoint, and a
    // route written once per tier is "the same descriptor defined twice". The limit is the
    // larger tier's (a limit below what PRM clients used would throttle them); the comment
    // gives each tier's figures.
    let mut by_route: BTreeMap<&str, Vec<(&str, f64, f64, u64)>> = BTreeMap::new();
    for s in all.iter().filter(|s| s.endpoint.is_some()) {
        let hash = s.endpoint.expect("filtered");
        let samples = views
            .iter()
            .find(|v| matches!(v.measure, sluice_core::learn::baselines::Measure::Endpoint { endpoint, .. } if endpoint == hash))
            .map_or(0.0, |v| v.samples);
        if samples < args.min_samples {
            continue;
        }
        let Some(route) = names.get(&hash) else {
            continue;
        };
        let tier = s.tier.map_or("STD", |t| t.as_str());
        by_route
            .entry(route.as_str())
            .or_default()
            .push((tier, s.p99, s.p999, s.per_minute));
    }
    for (route, tiers) in by_route {
        let per_minute = tiers.iter().map(|t| t.3).max().unwrap_or(1);
        let note = tiers
            .iter()
            .map(|(tier, p99, p999, _)| format!("{tier}: p99 {p99:.0}/min, p99.9 {p999:.0}/min"))
            .collect::<Vec<_>>()
            .join("; ");
        let value = match route.find("{id}") {
            None => route.to_string(),
            Some(i) if route[i..] == *"{id}" => format!("{}*", &route[..i]),
            Some(_) => {
                out += &format!("  # {route}: {per_minute} a minute per client ({note})\n");
                continue;
            }
        };
        out += &format!(
            "  - key: endpoint\n    value: \"{value}\"\n    descriptors:\n      - key: remote_address   # {note}\n        rate_limit: {{unit: minute, requests_per_unit: {per_minute}}}\n"
        );
    }
    print!("{out}");
    Ok(())
}
