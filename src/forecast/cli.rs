//! `sluice export-features` and `sluice eval-forecast`.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::core::forecast::MinutePoint;
use crate::core::forecast::series::{SeriesBuilder, TOTAL};
use crate::core::rules::Tier;

use super::export::{Samples, Selection};
use super::series;

#[derive(Clone, Debug, clap::Args)]
pub struct ExportFeaturesArgs {
    /// A forecast series CSV (`minute`, `requests`; see docs/trace-format.md). Repeatable.
    #[arg(long)]
    pub series: Vec<PathBuf>,
    /// A trace (CSV or combined log): one series per endpoint and one for the total. Repeatable.
    #[arg(long)]
    pub trace: Vec<PathBuf>,
    /// The service's database (`sqlite:PATH` or `postgres://…`): its stored per-minute
    /// endpoint traffic, one series per endpoint.
    #[arg(long)]
    pub database: Option<String>,
    /// Output directory (x.npy, y.npy, scale.npy, meta.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Only windows forecasting minutes at or after this one (as in `minute`: a time or index).
    #[arg(long)]
    pub from: Option<String>,
    /// Only windows forecasting minutes before this one.
    #[arg(long)]
    pub to: Option<String>,
    /// One window every N minutes.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// Skip series with a mean below this many requests a minute.
    #[arg(long, default_value_t = 0.5)]
    pub min_mean: f64,
}

fn minute_arg(flag: &str, text: &Option<String>) -> anyhow::Result<Option<i64>> {
    text.as_deref()
        .map(|t| {
            series::parse_minute(t).with_context(|| {
                format!(
                    "--{flag} {t:?} is not a minute index, RFC 3339 time or YYYY-MM-DD HH:MM:SS"
                )
            })
        })
        .transpose()
}

pub fn read_series(path: &Path) -> anyhow::Result<Vec<MinutePoint>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    series::read(BufReader::new(file)).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// One series per endpoint, and the total, from a trace.
pub fn trace_series(path: &Path) -> anyhow::Result<Vec<(String, Vec<MinutePoint>)>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut builder = SeriesBuilder::default();
    crate::replay::trace::read::<_, crate::replay::trace::TraceError>(
        BufReader::with_capacity(1 << 20, file),
        |row| {
            let minute = row.ts_ms.div_euclid(60_000);
            let prm = if row.tier == Tier::Prm { 1.0 } else { 0.0 };
            let error = if row.status.is_some_and(|s| s >= 400) {
                1.0
            } else {
                0.0
            };
            builder.add(row.endpoint, minute, 1.0, prm, 0.0, error);
            builder.add(TOTAL, minute, 1.0, prm, 0.0, error);
            Ok(())
        },
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(builder.build())
}

pub async fn database_series(url: &str) -> anyhow::Result<Vec<(String, Vec<MinutePoint>)>> {
    let store = crate::store::Store::connect(&crate::store::StoreOptions::new(url)).await?;
    let rows = store.traffic_history().await?;
    store.close().await;
    let mut builder = SeriesBuilder::default();
    for r in rows {
        let prm = if r.tier == "PRM" {
            r.requests as f64
        } else {
            0.0
        };
        builder.add(
            &r.endpoint,
            r.minute_ms.div_euclid(60_000),
            r.requests as f64,
            prm,
            r.denied as f64,
            r.errors as f64,
        );
    }
    Ok(builder.build())
}

pub async fn export_features(args: &ExportFeaturesArgs) -> anyhow::Result<()> {
    if args.series.is_empty() && args.trace.is_empty() && args.database.is_none() {
        anyhow::bail!("nothing to export: give --series, --trace or --database");
    }
    let selection = Selection {
        from: minute_arg("from", &args.from)?,
        to: minute_arg("to", &args.to)?,
        stride: args.stride.max(1),
        min_mean: args.min_mean,
    };
    let mut samples = Samples::default();
    let mut sources = Vec::new();
    for path in &args.series {
        let s = read_series(path)?;
        samples.add_series(&path.display().to_string(), &s, &selection);
        sources.push(format!("series {}", path.display()));
    }
    for path in &args.trace {
        for (endpoint, s) in trace_series(path)? {
            samples.add_series(&format!("{}#{endpoint}", path.display()), &s, &selection);
        }
        sources.push(format!("trace {}", path.display()));
    }
    if let Some(url) = &args.database {
        for (endpoint, s) in database_series(url).await? {
            samples.add_series(&format!("database#{endpoint}"), &s, &selection);
        }
        sources.push(format!("database {}", crate::store::redact(url)));
    }
    if samples.is_empty() {
        anyhow::bail!(
            "no training windows: every series is shorter than {} minutes, quieter than --min-mean, or outside --from/--to",
            crate::core::forecast::WINDOW + crate::core::forecast::HORIZON
        );
    }
    samples
        .write(&args.out, &sources.join("; "))
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} windows from {} series to {}",
        samples.len(),
        samples.sources.len(),
        args.out.display()
    );
    Ok(())
}

#[derive(Clone, Debug, clap::Args)]
pub struct EvalForecastArgs {
    /// The forecast series (`minute`, `requests`; see docs/trace-format.md).
    #[arg(long)]
    pub series: PathBuf,
    /// Evaluate only minutes at or after this one; earlier rows are history only.
    #[arg(long)]
    pub from: Option<String>,
    /// Print one JSON object (the documented format) instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Where the forecasting model and ONNX Runtime are.
#[derive(Clone, Debug, clap::Args)]
pub struct ModelArgs {
    /// The LSTM (its metadata beside it, `.json`).
    #[arg(
        long = "forecast-model",
        env = "SLUICE_FORECAST_MODEL",
        default_value = "models/lstm.onnx"
    )]
    pub forecast_model: PathBuf,
    /// ONNX Runtime's shared library (default: ORT_DYLIB_PATH).
    #[arg(long, env = "SLUICE_ORT_DYLIB")]
    pub ort_dylib: Option<PathBuf>,
}

/// The shipped forecaster, or the baseline with the reason it had to stand in.
pub fn load_forecaster(
    args: &ModelArgs,
) -> (
    Box<dyn crate::core::forecast::Forecaster + Send>,
    Option<String>,
) {
    match super::onnx::OnnxForecaster::load(&args.forecast_model, args.ort_dylib.as_deref()) {
        Ok(f) => (Box::new(f), None),
        Err(e) => (
            Box::new(crate::core::forecast::baseline::Fallback),
            Some(e.to_string()),
        ),
    }
}

pub fn eval_forecast(args: &EvalForecastArgs) -> anyhow::Result<()> {
    let series = read_series(&args.series)?;
    let from = minute_arg("from", &args.from)?;
    let (mut forecaster, fallback) = load_forecaster(&args.model);
    if let Some(reason) = &fallback {
        eprintln!(
            "warning: the LSTM is unavailable, scoring the fallback baseline instead: {reason}"
        );
    }
    let report = crate::core::forecast::eval::evaluate(&series, forecaster.as_mut(), from)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} minutes evaluated; model = {}",
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
    }
    Ok(())
}
