//! `sluice export-features`: the forecaster's training tensors (the model's exact input
//! encoding, `core::forecast::features`) from series files, traces or the service's database.

use std::path::PathBuf;

use anyhow::Context;

use sluice_core::forecast::MinutePoint;
use sluice_core::forecast::series::SeriesBuilder;

use crate::adapters::series_file::{self, minute_arg};
use crate::adapters::trace_file;
use crate::adapters::training_tensors::{Samples, Selection};

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
        let s = series_file::read_path(path)?;
        samples.add_series(&path.display().to_string(), &s, &selection);
        sources.push(format!("series {}", path.display()));
    }
    for path in &args.trace {
        for (endpoint, s) in trace_file::endpoint_series(path)? {
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
            sluice_core::forecast::WINDOW + sluice_core::forecast::HORIZON
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
