//! Starts everything and stops it in order: the engine, the database supervisor (connect,
//! migrate, apply the rules file, then resync on an interval), the minute loop and its history
//! writer, the bucket sweeper, and the gRPC server. On shutdown the server drains its calls, then
//! the producers (supervisor, sweeper, minute loop) are told and joined, and only then the history
//! writer, which therefore drains every batch they submitted (`shutdown::Stages`).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use crate::adapters::redis_counters::RedisCounters;
use crate::service::fleet::{self, Fleet};
use crate::service::fleet_sync;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use sluice_core::engine::Engine;

use crate::adapters::rules_file;
use crate::grpc::access_log::AccessLogs;
use crate::grpc::auth::AdminToken;
use crate::grpc::rls::Rls;
use crate::grpc::server::{ServeError, Server, Services};
use crate::grpc::sluice_api::SluiceApi;
use crate::http::HttpState;
use crate::service::backend_loads::BackendLoads;
use crate::service::background::Background;
use crate::service::clock::LiveClock;
use crate::service::config::Config;
use crate::service::database::Database;
use crate::service::db_supervisor::{self, RulesFiles, SupervisorConfig};
use crate::service::history_writer::{self, History, HistoryConfig};
use crate::service::latency::Latency;
use crate::service::minute_loop::{self, MinuteLoop, MinuteLoopParts};
use crate::service::model_slot::ModelSlot;
use crate::service::readiness::Readiness;
use crate::service::rules_file_follower::RulesFileWatch;
use crate::service::rules_manager::RulesManager;
use crate::service::shutdown::{Shutdown, Stages};
use crate::service::telemetry::{Metrics, Sources};
use crate::service::timeline::Timeline;
use crate::store::redact;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    RulesFile(#[from] rules_file::RulesFileError),
    #[error("cannot write the admin token to {path}: {source}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Telemetry(#[from] crate::service::telemetry::TelemetryError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("--http-listen {addr}: {source}")]
    HttpListen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The admin token: configured, or generated and written where the CLI will find it.
pub fn admin_token(config: &Config) -> Result<AdminToken, StartError> {
    if let Some(token) = config.admin_token.as_ref().filter(|t| !t.is_empty()) {
        return AdminToken::new(token).map_err(StartError::Config);
    }
    let token = AdminToken::generate();
    write_private(&config.admin_token_file, token.secret()).map_err(|source| {
        StartError::TokenFile {
            path: config.admin_token_file.display().to_string(),
            source,
        }
    })?;
    tracing::info!(path = %config.admin_token_file.display(), "no SLUICE_ADMIN_TOKEN set: generated an admin token");
    Ok(token)
}

/// Writes `text` to `path` readable by the owner only, whatever was there: a new file (mode
/// 0600, created exclusively beside it) is renamed over the path. An existing file that others
/// could read is replaced, not rewritten in place (its mode would stay); a symbolic link is
/// replaced by the file, never followed (its target is left alone).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    // An unpredictable name: one another user could guess could be made in advance (a file or
    // a link), and `create_new` would then fail the start.
    let temp = dir.join(format!(
        ".{}.{:016x}.tmp",
        name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&temp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
    let result = written.and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Both listeners' connection caps, fitted to the descriptors the process may open
/// (`descriptors`): said in the log when lowered.
fn connection_caps(
    config: &Config,
) -> (
    crate::grpc::incoming::ConnectionLimits,
    crate::http::guard::HttpLimits,
) {
    let (mut grpc, mut http) = (config.connection_limits(), config.http_limits());
    if let Some(descriptors) = crate::service::descriptors::raise_limit() {
        let (g, h) = crate::service::descriptors::caps(
            grpc.max_connections,
            http.max_connections,
            descriptors,
        );
        if (g, h) != (grpc.max_connections, http.max_connections) {
            tracing::warn!(
                descriptors,
                grpc_connections = g,
                http_connections = h,
                "the descriptor limit is low: connection caps lowered to fit it with a reserve"
            );
        }
        (grpc.max_connections, http.max_connections) = (g, h);
    }
    (grpc, http)
}

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
    // Fail before serving if the rules file is bad: running on the wrong rules is worse than not running.
    // Read and parsed on the blocking pool, as every later poll is.
    let (rules_watch, first) = match config.rules.as_deref().map(RulesFileWatch::new) {
        Some(watch) => {
            let (watch, first) = watch
                .poll_off_runtime(config.input_limits())
                .await
                .map_err(|e| {
                    StartError::Config(format!("--rules: reading the file failed: {e}"))
                })?;
            (Some(watch), first)
        }
        None => (None, None),
    };
    let rules_file = first.transpose()?;
    let (connection_limits, http_limits) = connection_caps(&config);
    let server = Server::new(&config.tls(), connection_limits).await?;
    let http_tls = match &http {
        Some(_) => crate::http::tls::server_config(&config.tls()).map_err(ServeError::from)?,
        None => None,
    };
    let admin = admin_token(&config)?;
    config.learn.validate().map_err(StartError::Config)?;
    config.fleet.validate().map_err(StartError::Config)?;
    let engine = Arc::new(config.build_engine());
    let readiness = Readiness::default();
    // One name for this instance in the shared history and the fleet state.
    let instance = config.instance_id(listener.local_addr().map_or(0, |a| a.port()));
    let fleet = match config.fleet.url().map_err(StartError::Config)? {
        Some(url) => {
            let fleet_config = config.fleet.config();
            let counters = RedisCounters::connect(
                &url,
                &config.fleet.counters_prefix,
                fleet_config.budget.max(fleet::ANSWER_TIMEOUT),
            )
            .await
            .map_err(|e| StartError::Config(format!("--counters: {e}")))?;
            tracing::info!(counters = ?counters, "limits are shared through the counters");
            Some(Arc::new(Fleet::new(
                counters,
                fleet_config,
                readiness.clone(),
            )))
        }
        None => None,
    };
    let database = Arc::new(Database::default());
    let rules = Arc::new(
        RulesManager::new(engine.clone(), database.clone(), config.input_limits())
            .with_write_wait(config.store().statement_timeout),
    );
    let (history, history_rx) = History::new();
    let history_stats = history.stats.clone();
    // Loading the model (and ONNX Runtime) takes a moment and may fail: off the async workers,
    // and never fatal (the baseline forecasts instead).
    let models = {
        let args = config.learn.model.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || ModelSlot::new(args))
                .await
                .expect("loading the forecaster does not panic"),
        )
    };
    let loads = Arc::new(BackendLoads::default());
    let background = Background::start_with(config.background_nice);
    let learning = Arc::new(MinuteLoop::new(MinuteLoopParts {
        engine: engine.clone(),
        learner: config.learn.learner(),
        pressure: config.learn.pressure(),
        adaptive: !config.learn.no_adaptive,
        models: models.clone(),
        loads: loads.clone(),
        history,
        database: database.clone(),
        instance: instance.clone(),
        background: background.clone(),
    }));
    let metrics = match config.telemetry() {
        Some(telemetry) => Some(Metrics::start(
            &telemetry,
            Sources {
                engine: engine.clone(),
                learning: learning.clone(),
                models: models.clone(),
                history: history_stats.clone(),
                fleet: fleet.clone(),
            },
        )?),
        None => None,
    };
    let latency = Arc::new(Latency::default());
    let rpc = metrics.as_ref().map(Metrics::rpc).unwrap_or_default();
    let rpc = if http.is_some() {
        rpc.with_latency(latency.clone())
    } else {
        rpc
    };
    let timeline = Arc::new(Timeline::default());
    let clock = LiveClock::new();
    let caps = config.input_limits();
    let services = Services {
        rls: Rls {
            engine: engine.clone(),
            fleet: fleet.clone(),
            clock,
            caps,
            headers: config.rls_headers,
            rpc: rpc.clone(),
        },
        access_logs: AccessLogs {
            engine: engine.clone(),
            clock,
            max_value_len: caps.max_value_len,
        },
        api: SluiceApi {
            engine: engine.clone(),
            fleet: fleet.clone(),
            clock,
            caps,
            headers: config.allow_headers,
            default_domain: config.allow_domain.clone(),
            admin,
            rules: rules.clone(),
            learning: learning.clone(),
            models,
            loads,
            database: database.clone(),
            history_stats: history_stats.clone(),
            rpc,
        },
    };

    let http_state = Arc::new(HttpState {
        engine: engine.clone(),
        learning: services.api.learning.clone(),
        models: services.api.models.clone(),
        history_stats: history_stats.clone(),
        fleet: fleet.clone(),
        database: database.clone(),
        readiness: readiness.subscribe(),
        timeline: timeline.clone(),
        latency,
        admin: services.api.admin.clone(),
        clock,
        instance: instance.clone(),
        allow_domain: config.allow_domain.clone(),
    });

    let stages = Stages::default();
    let producers = vec![
        (
            "database supervisor",
            tokio::spawn(db_supervisor::run(
                SupervisorConfig {
                    store: config.store(),
                    resync_interval: Duration::from_millis(config.resync_interval_ms.max(10)),
                    caps,
                },
                database.clone(),
                rules,
                readiness.clone(),
                RulesFiles {
                    watch: rules_watch,
                    pending: rules_file,
                },
                clock,
                stages.producers.subscribe(),
            )),
        ),
        (
            "bucket sweeper",
            tokio::spawn(sweep_buckets(
                engine.clone(),
                background,
                clock,
                stages.producers.subscribe(),
            )),
        ),
        (
            "minute loop",
            tokio::spawn(minute_loop::run(
                learning,
                clock,
                Duration::from_secs(config.learn_tick_secs.max(1)),
                readiness.clone(),
                stages.producers.subscribe(),
            )),
        ),
    ];
    let mut producers = producers;
    if http.is_some() {
        producers.push((
            "timeline",
            tokio::spawn(crate::service::timeline::run(
                timeline,
                engine.clone(),
                clock,
                stages.producers.subscribe(),
            )),
        ));
    }
    if let Some(fleet) = fleet.as_ref() {
        producers.push((
            "counters flush",
            tokio::spawn(fleet::flush_loop(
                fleet.clone(),
                engine.clone(),
                clock,
                stages.producers.subscribe(),
            )),
        ));
    }
    if let Some(fleet) = fleet {
        producers.push((
            "fleet sync",
            tokio::spawn(fleet_sync::run(
                fleet,
                engine,
                instance,
                clock,
                stages.producers.subscribe(),
            )),
        ));
    }
    let writer = tokio::spawn(history_writer::run_writer(
        history_rx,
        database.clone(),
        history_stats,
        HistoryConfig {
            buffer_rows: config.history_buffer,
            retention: Duration::from_secs(config.history_retention_days.saturating_mul(86_400)),
        },
        clock,
        stages.writers.subscribe(),
    ));

    // One shutdown for both listeners: the gRPC server's future, passed on to the HTTP one.
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = http.map(|http| {
        let addr = http.local_addr().ok();
        tracing::info!(
            ?addr,
            tls = http_tls.is_some(),
            "serving HTTP (metrics, probes, dashboard)"
        );
        tokio::spawn(crate::http::serve(
            http,
            http_tls,
            http_limits,
            http_state,
            async {
                let _ = http_stopped.await;
            },
        ))
    });
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, database = %redact(&config.database_url), "serving gRPC");
    let served = server
        .serve(listener, services, readiness.subscribe(), shutdown)
        .await;
    let _ = http_stop.send(());
    if let Some(task) = http_task {
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP listener failed"),
            Err(e) => tracing::error!(error = %e, "HTTP listener panicked"),
            Ok(Ok(())) => {}
        }
    }

    stop_in_order(&stages, producers, writer).await;
    database.close().await;
    if let Some(metrics) = metrics {
        // The final export: blocking (the exporter's own thread), so off the async workers.
        let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
    }
    tracing::info!("stopped");
    Ok(served?)
}

/// Stops the producers and joins them, then stops the writer and joins it: everything a
/// producer submitted before it returned is in the writer's queue for its last drain.
pub async fn stop_in_order(
    stages: &Stages,
    producers: Vec<(&'static str, JoinHandle<()>)>,
    writer: JoinHandle<()>,
) {
    stages.producers.trigger();
    for (name, task) in producers {
        if let Err(e) = task.await {
            tracing::error!(error = %e, task = name, "background task panicked");
        }
    }
    stages.writers.trigger();
    if let Err(e) = writer.await {
        tracing::error!(error = %e, task = "history writer", "background task panicked");
    }
}

/// Drops idle bucket states every few seconds, off the async workers and below the decisions'
/// priority (a sweep walks every shard).
async fn sweep_buckets(
    engine: Arc<Engine>,
    background: Background,
    clock: LiveClock,
    mut shutdown: Shutdown,
) {
    while shutdown.sleep(Duration::from_secs(5)).await {
        let engine = engine.clone();
        let now = clock.now();
        background.run(move || engine.sweep(now)).await;
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
