//! Every part of the running service built once, in dependency order, and nothing started:
//! the rules file read and checked, the start-up files, the engine, the shared counters, the
//! database slot, the rule manager, the model slot, the minute loop, the metric export and the
//! handle bundle both listeners read. A bad flag or file fails here, before anything serves.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::redis_counters::RedisCounters;
use crate::app::config::Config;
use crate::app::producers::ProducerParts;
use crate::app::start_error::StartError;
use crate::app::startup_files;
use crate::grpc::access_log::AccessLogs;
use crate::grpc::incoming::ConnectionLimits;
use crate::grpc::rlqs::Rlqs;
use crate::grpc::rls::Rls;
use crate::grpc::server::{Server, Services};
use crate::grpc::sluice_api::SluiceApi;
use crate::http::guard::HttpLimits;
use crate::service::backend_loads::BackendLoads;
use crate::service::background::Background;
use crate::service::clock::LiveClock;
use crate::service::database::Database;
use crate::service::db_supervisor::{RulesFiles, SupervisorConfig};
use crate::service::decider::Decider;
use crate::service::fleet::{self, Fleet};
use crate::service::handles::Handles;
use crate::service::history_writer::{History, HistoryConfig};
use crate::service::latency::Latency;
use crate::service::leases::Leases;
use crate::service::minute_exchange::MinuteExchange;
use crate::service::minute_loop::{MinuteLoop, MinuteLoopParts};
use crate::service::model_slot::ModelSlot;
use crate::service::quotas::Quotas;
use crate::service::readiness::Readiness;
use crate::service::reservations::Reservations;
use crate::service::rules_file_follower::RulesFileWatch;
use crate::service::rules_manager::RulesManager;
use crate::service::telemetry::Metrics;
use crate::service::timeline::Timeline;
use sluice_core::quota::QuotaConfig;

/// The service, built and not started.
pub struct Built {
    pub handles: Arc<Handles>,
    pub server: Server,
    pub services: Services,
    /// With `--http-listen`: its TLS and limits.
    pub http: Option<HttpParts>,
    /// With `--otlp-endpoint`.
    pub metrics: Option<Metrics>,
    /// What the background tasks are started with.
    pub producers: ProducerParts,
}

pub struct HttpParts {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: HttpLimits,
}

/// Builds everything `config` asks for; `grpc_port` names this instance when no
/// `--instance-id` does.
pub async fn build(
    config: &Config,
    grpc_port: u16,
    serves_http: bool,
) -> Result<Built, StartError> {
    config.learn.validate().map_err(StartError::Config)?;
    config.fleet.validate().map_err(StartError::Config)?;
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
    let (grpc_limits, http_limits) = connection_caps(config);
    let files = startup_files::read(config, grpc_limits, serves_http).await?;

    let engine = Arc::new(config.build_engine());
    let readiness = Readiness::default();
    // One name for this instance in the shared history and the fleet state.
    let instance = config.instance_id(grpc_port);
    let fleet = connect_fleet(config, &readiness).await?;
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
    let metrics = config.telemetry().map(|t| Metrics::start(&t)).transpose()?;
    let latency = Arc::new(Latency::default());
    let rpc = metrics.as_ref().map(Metrics::rpc).unwrap_or_default();
    // `/metrics` shows the decision durations only when there is a `/metrics`.
    let rpc = match serves_http {
        true => rpc.with_latency(latency.clone()),
        false => rpc,
    };
    let tick = Duration::from_secs(config.learn_tick_secs.max(1));
    let exchange = fleet.as_ref().map(|fleet| {
        Arc::new(MinuteExchange::new(
            fleet.clone(),
            instance.clone(),
            readiness.clone(),
            tick,
        ))
    });
    let decider = Decider::new(engine.clone(), fleet.clone());
    let shared = fleet.as_ref().map(|f| f.counters().clone());
    let handles = Arc::new(Handles {
        leases: Arc::new(Leases::new(shared.clone())),
        reservations: Arc::new(Reservations::new(decider.clone(), shared)),
        decider,
        engine,
        fleet,
        exchange,
        clock: LiveClock::new(),
        caps: config.input_limits(),
        default_domain: config.allow_domain.clone(),
        instance,
        admin: files.admin,
        quotas: Arc::new(Quotas::new(QuotaConfig::default())),
        rules,
        learning,
        models,
        loads,
        database,
        history_stats,
        ready: readiness.subscribe(),
        timeline: Arc::new(Timeline::default()),
        latency,
        rpc,
    });
    if let Some(metrics) = &metrics {
        metrics.observe(&handles);
    }
    let services = Services {
        rls: Rls {
            handles: handles.clone(),
            headers: config.rls_headers,
        },
        rlqs: Rlqs {
            handles: handles.clone(),
        },
        access_logs: AccessLogs {
            handles: handles.clone(),
        },
        api: SluiceApi {
            handles: handles.clone(),
            headers: config.allow_headers,
        },
    };
    let producers = ProducerParts {
        supervisor: SupervisorConfig {
            store: config.store(),
            resync_interval: Duration::from_millis(config.resync_interval_ms.max(10)),
            caps: config.input_limits(),
        },
        rules_files: RulesFiles {
            watch: rules_watch,
            pending: rules_file,
        },
        readiness,
        background,
        tick,
        history_rx,
        history: HistoryConfig {
            buffer_rows: config.history_buffer,
            retention: Duration::from_secs(config.history_retention_days.saturating_mul(86_400)),
        },
        timeline: serves_http,
    };
    Ok(Built {
        handles,
        server: files.server,
        services,
        http: serves_http.then_some(HttpParts {
            tls: files.http_tls,
            limits: http_limits,
        }),
        metrics,
        producers,
    })
}

/// The shared counters, with `--counters`.
async fn connect_fleet(
    config: &Config,
    readiness: &Readiness,
) -> Result<Option<Arc<Fleet>>, StartError> {
    let Some(url) = config.fleet.url().map_err(StartError::Config)? else {
        return Ok(None);
    };
    let fleet_config = config.fleet.config();
    let counters = RedisCounters::connect(
        &url,
        &config.fleet.counters_prefix,
        fleet_config.budget.max(fleet::ANSWER_TIMEOUT),
    )
    .await
    .map_err(|e| StartError::Config(format!("--counters: {e}")))?;
    tracing::info!(counters = ?counters, "limits are shared through the counters");
    Ok(Some(Arc::new(Fleet::new(
        counters,
        fleet_config,
        readiness.clone(),
    ))))
}

/// Both listeners' connection caps, fitted to the descriptors the process may open
/// (`descriptors`): said in the log when lowered.
fn connection_caps(config: &Config) -> (ConnectionLimits, HttpLimits) {
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
