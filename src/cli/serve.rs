//! `sluice serve`: logging (and span export when configured), the listener, the service until
//! SIGINT or SIGTERM.

use anyhow::Context;

use crate::app::config::{Config, LogFormat};
use crate::service::telemetry;

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let spans = telemetry::init_logging(config.log_format == LogFormat::Json, config.telemetry())?;
    let (scheduler, workers) = super::runtime::describe();
    let grpc_threads = config.grpc_serving_threads(workers);
    let serving = match grpc_threads {
        0 => format!("tokio's {scheduler} scheduler"),
        n => format!(
            "{n} gRPC threads (tokio's current-thread scheduler each); the rest on tokio's {scheduler} scheduler"
        ),
    };
    tracing::info!(
        scheduler,
        workers,
        grpc_threads,
        "serving decisions on {serving}"
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let served = crate::app::run(config, listener, shutdown_signal()).await;
    spans.shutdown().await;
    Ok(served?)
}
