//! Starts everything and stops it cleanly: the engine, the store supervisor (connect, migrate,
//! apply the start-up rules file, then resync on an interval), the learning loop and its history
//! writer, and the gRPC server with health and reflection. One shutdown signal stops the server (draining in-flight calls) and every
//! background task, whose handles are joined before `run` returns.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::AccessLogServiceServer;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::clock::LiveClock;
use crate::config::Config;
use crate::core::engine::Engine;
use crate::core::rules::RuleChange;
use crate::core::validate::InputLimits;
use crate::forecasting::Forecasting;
use crate::grpc::AppState;
use crate::grpc::access_log::AccessLogs;
use crate::grpc::auth::AdminToken;
use crate::grpc::rls::Rls;
use crate::grpc::sluice_api::SluiceApi;
use crate::history::{self, History, HistoryConfig};
use crate::learning::{self, Learning};
use crate::proto::sluice::v1::sluice_server::SluiceServer;
use crate::rules_service::RulesService;
use crate::rulesfile;
use crate::rulesfile_watch::{Change, RulesFileWatch};
use crate::store::{Store, redact};
use crate::telemetry::{Metrics, Sources};

/// Service names health reports on, besides the overall `""`.
pub const HEALTH_SERVICES: [&str; 3] = [
    "envoy.service.ratelimit.v3.RateLimitService",
    "envoy.service.accesslog.v3.AccessLogService",
    "sluice.v1.Sluice",
];

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    RulesFile(#[from] rulesfile::RulesFileError),
    #[error("cannot write the admin token to {path}: {source}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The admin token: configured, or generated and written where the CLI will find it.
pub fn admin_token(config: &Config) -> Result<AdminToken, StartError> {
    if let Some(token) = config.admin_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(AdminToken::new(token.clone()));
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

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// Runs the service on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    // Fail before serving if the rules file is bad: running on the wrong rules is worse than not running.
    let mut rules_watch = config.rules.as_deref().map(RulesFileWatch::new);
    let rules_file = match rules_watch.as_mut() {
        Some(watch) => match watch.poll(&config.input_limits()) {
            Some(first) => Some(first?),
            None => None,
        },
        None => None,
    };
    let tls = config.tls().load()?;
    let admin = admin_token(&config)?;
    config.learn.validate().map_err(StartError::Config)?;
    let engine = Arc::new(Engine::new(config.engine()));
    let rules = Arc::new(RulesService::new(engine.clone(), config.input_limits()));
    let (history, history_rx) = History::new();
    // Loading the model (and ONNX Runtime) takes a moment and may fail: off the async workers,
    // and never fatal (the baseline forecasts instead).
    let forecasting = {
        let (model, pressure) = (config.learn.model.clone(), config.learn.pressure());
        tokio::task::spawn_blocking(move || Forecasting::new(model, pressure))
            .await
            .expect("loading the forecaster does not panic")
    };
    let learning = Arc::new(Learning::new(
        engine.clone(),
        config.learn.learner(),
        forecasting,
        history.clone(),
        !config.learn.no_adaptive,
        config.instance_id(),
    ));
    let metrics = match config.telemetry() {
        Some(telemetry) => Some(Metrics::start(
            &telemetry,
            Sources {
                engine: engine.clone(),
                learning: learning.clone(),
                history: history.stats.clone(),
            },
        )?),
        None => None,
    };
    let state = AppState {
        engine: engine.clone(),
        rules: rules.clone(),
        clock: LiveClock::new(),
        caps: config.input_limits(),
        rls_headers: config.rls_headers,
        allow_headers: config.allow_headers,
        allow_domain: config.allow_domain.clone(),
        admin,
        learning: learning.clone(),
        rpc: metrics.as_ref().map(Metrics::rpc).unwrap_or_default(),
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;

    // v1 for current grpcurl and clients, v1alpha for older ones; both describe the same files.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::REFLECTION_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the embedded descriptor set is valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the embedded descriptor set is valid");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_sweep = stop_tx.subscribe();
    let supervisor = tokio::spawn(supervise_store(
        config.clone(),
        rules.clone(),
        health.clone(),
        RulesFiles {
            watch: rules_watch,
            pending: rules_file,
        },
        state.clock,
        stop_rx,
    ));

    let sweeper = tokio::spawn(sweep_buckets(engine.clone(), state.clock, stop_rx_sweep));
    let learner = tokio::spawn(learning::run_loop(
        learning.clone(),
        rules.clone(),
        state.clock,
        Duration::from_secs(config.learn_tick_secs.max(1)),
        health.clone(),
        stop_tx.subscribe(),
    ));
    let history_writer = tokio::spawn(history::run_writer(
        history_rx,
        rules.clone(),
        history.stats.clone(),
        HistoryConfig {
            buffer_rows: config.history_buffer,
            retention: Duration::from_secs(config.history_retention_days.saturating_mul(86_400)),
        },
        state.clock,
        stop_tx.subscribe(),
    ));

    let addr = listener.local_addr().ok();
    tracing::info!(?addr, database = %redact(&config.database_url), "serving gRPC");
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        // rustls parses the certificate and key here: a bad one fails the start.
        server = server
            .tls_config(tls)
            .map_err(|e| StartError::Config(format!("--tls-cert / --tls-key: {e}")))?;
    }
    let served = server
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RateLimitServiceServer::new(Rls {
            state: state.clone(),
        }))
        .add_service(AccessLogServiceServer::new(AccessLogs {
            state: state.clone(),
        }))
        .add_service(SluiceServer::new(SluiceApi { state }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight calls");
        })
        .await;

    let _ = stop_tx.send(true);
    for (name, task) in [
        ("store supervisor", supervisor),
        ("bucket sweeper", sweeper),
        ("learning loop", learner),
        // Last: it flushes what the learning loop queued before it stopped.
        ("history writer", history_writer),
    ] {
        if let Err(e) = task.await {
            tracing::error!(error = %e, task = name, "background task panicked");
        }
    }
    if let Some(store) = rules.store() {
        store.close().await;
    }
    if let Some(metrics) = metrics {
        // The final export: blocking (the exporter's own thread), so off the async workers.
        let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
    }
    tracing::info!("stopped");
    Ok(served?)
}

/// Drops idle bucket states every few seconds, off the async workers (a sweep walks every shard).
async fn sweep_buckets(engine: Arc<Engine>, clock: LiveClock, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
        let engine = engine.clone();
        let now = clock.now();
        let _ = tokio::task::spawn_blocking(move || engine.sweep(now)).await;
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in HEALTH_SERVICES {
        health.set_service_status(name, status).await;
    }
}

/// The `--rules` file: followed for changes, and the version waiting to be applied (the
/// database may be down when it changes).
struct RulesFiles {
    watch: Option<RulesFileWatch>,
    pending: Option<Change>,
}

impl RulesFiles {
    /// Looks for a new version unless one is still waiting.
    fn poll(&mut self, caps: &InputLimits) {
        let Some(watch) = self.watch.as_mut().filter(|_| self.pending.is_none()) else {
            return;
        };
        match watch.poll(caps) {
            None => {}
            Some(Ok(change)) => {
                tracing::info!(origin = watch.origin(), "rules file changed; applying it");
                self.pending = Some(change);
            }
            Some(Err(e)) => tracing::error!(
                error = %e,
                "rules file changed but cannot be used; the rules in force stay"
            ),
        }
    }

    /// Applies the waiting version, if any; it stays waiting if the database refuses.
    async fn apply(
        &mut self,
        rules: &RulesService,
        now_ms: i64,
    ) -> Result<(), crate::rules_service::ManageError> {
        let (Some(change), Some(watch)) = (self.pending.take(), self.watch.as_ref()) else {
            return Ok(());
        };
        let origin = watch.origin();
        let update = RuleChange {
            upserts: change.file.rules.clone(),
            deletes: Vec::new(),
            replace_domains: change.replace_domains.clone(),
        };
        let count = update.upserts.len();
        match rules
            .update(update, None, &format!("rules-file:{origin}"), now_ms)
            .await
        {
            Ok(revision) => {
                tracing::info!(origin, rules = count, revision, "applied rules file");
                Ok(())
            }
            Err(e) => {
                self.pending = Some(change);
                Err(e)
            }
        }
    }
}

/// Connects (retrying), applies the rules file (at start-up, then whenever it changes), loads
/// the rules, then keeps them in step with the database. Reports SERVING once rules are loaded.
/// Decisions never wait on this.
async fn supervise_store(
    config: Config,
    rules: Arc<RulesService>,
    health: HealthReporter,
    mut files: RulesFiles,
    clock: LiveClock,
    mut stop: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(config.resync_interval_ms.max(10));
    let caps = config.input_limits();
    let mut healthy = false;
    let mut reported_down = false;
    loop {
        let step = async {
            if rules.store().is_none() {
                let store = Store::connect(&config.store()).await?;
                tracing::info!(backend = store.backend(), "connected to the rules database");
                rules.set_store(store);
            }
            files.poll(&caps);
            files.apply(&rules, clock.now_millis()).await?;
            rules.sync().await
        };
        // A connect can take up to the acquire timeout; shutdown does not wait for it.
        let outcome = tokio::select! {
            outcome = step => outcome,
            _ = stop.changed() => return,
        };
        match outcome {
            Ok(_) => {
                if reported_down {
                    tracing::info!("rules database is reachable again; rules are in sync");
                    reported_down = false;
                }
                if !healthy && rules.is_loaded() {
                    set_health(&health, ServingStatus::Serving).await;
                    healthy = true;
                }
            }
            Err(e) => {
                rules.note_store_error(&e.to_string());
                if !reported_down {
                    tracing::warn!(error = %e, "rules database unavailable; decisions continue on the rules in memory");
                    reported_down = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}
