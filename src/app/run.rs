//! Runs the service: build everything (`build`), start the background tasks (`producers`),
//! serve both listeners until the shutdown future completes, then stop in order: the listeners
//! drain their calls, the producers are told and joined, the history writer drains what they
//! submitted, the database closes and the metric export sends its last.

use std::future::Future;

use tokio::net::TcpListener;

use crate::app::build::{self, Built, HttpParts};
use crate::app::config::Config;
use crate::app::producers;
use crate::app::start_error::StartError;
use crate::store::redact;

/// Runs the service on `listener` (and `--http-listen`, if set) until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let http = match config.http_listen {
        Some(addr) => {
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::HttpListen {
                        addr: addr.to_string(),
                        source,
                    })?,
            )
        }
        None => None,
    };
    run_with(config, listener, http, shutdown).await
}

/// Runs the service on listeners already bound: gRPC on `listener`, the HTTP admin listener on
/// `http` (tests bind port 0 and read the port back).
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let port = listener.local_addr().map_or(0, |a| a.port());
    let Built {
        handles,
        server,
        services,
        http: http_parts,
        metrics,
        producers,
    } = build::build(&config, port, http.is_some()).await?;
    let running = producers::start(&handles, producers);

    // One shutdown for both listeners: the gRPC server's future, passed on to the HTTP one.
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = http
        .zip(http_parts)
        .map(|(http, HttpParts { tls, limits })| {
            let addr = http.local_addr().ok();
            tracing::info!(
                ?addr,
                tls = tls.is_some(),
                "serving HTTP (metrics, probes, dashboard)"
            );
            tokio::spawn(crate::http::serve(
                http,
                tls,
                limits,
                handles.clone(),
                async {
                    let _ = http_stopped.await;
                },
            ))
        });
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, database = %redact(&config.database_url), "serving gRPC");
    let served = server
        .serve(listener, services, handles.ready.clone(), shutdown)
        .await;
    let _ = http_stop.send(());
    if let Some(task) = http_task {
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP listener failed"),
            Err(e) => tracing::error!(error = %e, "HTTP listener panicked"),
            Ok(Ok(())) => {}
        }
    }

    running.stop().await;
    handles.database.close().await;
    if let Some(metrics) = metrics {
        // The final export: blocking (the exporter's own thread), so off the async workers.
        let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
    }
    tracing::info!("stopped");
    Ok(served?)
}
