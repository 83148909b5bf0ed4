//! `sluice eval-forecast`: the forecaster against the baselines on a series (MAE and sMAPE at
//! 1, 5 and 15 minutes), saying which forecaster and which ONNX Runtime library were used.

use std::path::PathBuf;

use crate::adapters::onnx::load_or_baseline;
use sluice_core::forecast::series::TOTAL;

use crate::adapters::series_file::{self, minute_arg};
use crate::adapters::trace_file;
use crate::service::model_slot::ModelArgs;

#[derive(Clone, Debug, clap::Args)]
pub struct EvalForecastArgs {
    /// The forecast series (`minute`, `requests`; see docs/trace-format.md).
    #[arg(long, required_unless_present = "trace", conflicts_with = "trace")]
    pub series: Option<PathBuf>,
    /// Or a trace (CSV or combined access log, e.g. from `sluice gen-trace` or your own logs):
    /// its total requests per minute are evaluated.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Evaluate only minutes at or after this one; earlier rows are history only.
    #[arg(long)]
    pub from: Option<String>,
    /// Print one JSON object (the documented format) instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn eval_forecast(args: &EvalForecastArgs) -> anyhow::Result<()> {
    let series = match (&args.series, &args.trace) {
        (Some(path), _) => series_file::read_path(path)?,
        (None, Some(path)) => trace_file::endpoint_series(path)?
            .into_iter()
            .find(|(key, _)| key == TOTAL)
            .map(|(_, series)| series)
            .unwrap_or_default(),
        (None, None) => anyhow::bail!("give --series or --trace"),
    };
    let from = minute_arg("from", &args.from)?;
    // Found as `serve` and `replay` find it: from the working directory, else beside the binary.
    let model = args.model.model_path();
    let (mut forecaster, fallback) = load_or_baseline(&model, args.model.ort_dylib.as_deref());
    match (&fallback, crate::adapters::onnx::loaded_runtime()) {
        (Some(reason), _) => eprintln!(
            "warning: the LSTM is unavailable, scoring the fallback baseline instead: {reason}"
        ),
        (None, Some(library)) => eprintln!(
            "forecasting with the LSTM {} on ONNX Runtime {}",
            model.display(),
            library.display()
        ),
        (None, None) => {}
    }
    let report = sluice_core::forecast::eval::evaluate(&series, forecaster.as_mut(), from)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if report.minutes_evaluated == 0 {
        anyhow::bail!(
            "no minute to evaluate: the series has {} minutes, and scoring starts after the \
             model's hour of history and 15 minutes ahead, with an hour left to score (the \
             yesterday and last-week baselines join when the series is a day or a week longer)",
            series.len()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} minutes evaluated; model = {}; selected = what Sluice serves (per horizon, the candidate with the lowest recent error)",
        report.minutes_evaluated, report.forecaster
    );
    println!(
        "{:>8} {:>8} {:>10} {:>8}",
        "horizon", "method", "MAE", "sMAPE"
    );
    for (h, methods) in &report.horizons {
        for (name, score) in methods {
            println!("{h:>8} {name:>8} {:>10.3} {:>8.4}", score.mae, score.smape);
        }
        if let Some(shares) = report.selected_methods.get(h) {
            let words: Vec<String> = shares
                .iter()
                .map(|(m, share)| format!("{m} {:.0}%", share * 100.0))
                .collect();
            println!("{h:>8} selected = {}", words.join(", "));
        }
        if let Some(hs) = report.hindsight.get(h) {
            println!(
                "{h:>8} selected / best single candidate in hindsight: {:.3} overall ({}), worst week {:.3} (weeks: {:?})",
                hs.overall, hs.best_overall, hs.worst_week, hs.weeks
            );
        }
    }
    Ok(())
}
