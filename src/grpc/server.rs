//! The gRPC server: every service on one listener (Envoy's RLS and access-log services, Sluice's
//! API, health, reflection), optionally over TLS, until a shutdown future completes, draining the
//! calls in flight. Health answers what the service's `Readiness` says: NOT_SERVING until the rules
//! are loaded, and `sluice.v1.Forecaster` SERVING only while the LSTM forecasts.

use std::future::Future;
use std::sync::Arc;

use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::AccessLogServiceServer;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_service_server::RateLimitQuotaServiceServer;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use super::access_log::AccessLogs;
use super::incoming::{self, ConnectionLimits};
use super::rlqs::Rlqs;
use super::rls::Rls;
use super::sluice_api::SluiceApi;
use super::tls::ServerTlsFiles;
use crate::proto::sluice::v1::sluice_server::SluiceServer;
use crate::service::readiness::Ready;

/// Service names health reports on, besides the overall `""`.
pub const HEALTH_SERVICES: [&str; 4] = [
    "envoy.service.ratelimit.v3.RateLimitService",
    "envoy.service.rate_limit_quota.v3.RateLimitQuotaService",
    "envoy.service.accesslog.v3.AccessLogService",
    "sluice.v1.Sluice",
];

/// The health service name that reports the forecaster: SERVING with the LSTM, NOT_SERVING
/// while the statistical baseline stands in (decisions are unaffected either way).
pub const FORECASTER_HEALTH: &str = "sluice.v1.Forecaster";

/// With `--counters`: SERVING while decisions are on the shared counters, NOT_SERVING while the
/// failure policy answers (decisions are still served either way).
pub const COUNTERS_HEALTH: &str = "sluice.v1.Counters";

/// With `--counters`: SERVING while each minute is learned on the fleet's whole minute,
/// NOT_SERVING while this replica learns alone (the exchange failed; decisions are unaffected).
pub const FLEET_LEARNING_HEALTH: &str = "sluice.v1.FleetLearning";

/// What the standard gRPC health service answers.
struct Health {
    reporter: HealthReporter,
}

impl Health {
    /// `""` and every decision service follow the rules; the forecaster has its own name.
    async fn show(&self, ready: Ready) {
        self.set("", ready.rules_loaded).await;
        for name in HEALTH_SERVICES {
            self.set(name, ready.rules_loaded).await;
        }
        self.set(FORECASTER_HEALTH, ready.lstm_loaded).await;
        if let Some(together) = ready.fleet_learning {
            self.set(FLEET_LEARNING_HEALTH, together).await;
        }
        if let Some(shared) = ready.shared_counters {
            self.set(COUNTERS_HEALTH, shared).await;
        }
    }

    async fn set(&self, service: &str, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status(service, status).await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    #[error("--tls-cert / --tls-key: {0}")]
    TlsConfig(String),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot start a gRPC serving thread: {0}")]
    Runtime(std::io::Error),
}

/// The services to serve.
pub struct Services {
    pub rls: Rls,
    pub rlqs: Rlqs,
    pub access_logs: AccessLogs,
    pub api: SluiceApi,
}

/// A server ready to run (its TLS files read and checked).
pub struct Server {
    tls: Option<tonic::transport::ServerTlsConfig>,
    limits: ConnectionLimits,
    threads: usize,
}

/// Most calls in flight on one HTTP/2 connection: Envoy multiplexes many on a few connections;
/// one peer opening streams without end must not take every worker.
const MAX_CONCURRENT_STREAMS: u32 = 1_024;

impl Server {
    /// Reads and checks the TLS files (a bad one fails here, before anything is served);
    /// blocking, so the composition root calls it off the runtime.
    pub fn new(tls: &ServerTlsFiles, limits: ConnectionLimits) -> Result<Server, ServeError> {
        Ok(Server {
            tls: tls.load()?,
            limits,
            threads: 0,
        })
    }

    /// Serves connections from `threads` threads of their own (`transport_threads`); 0 serves
    /// them on the caller's runtime.
    pub fn with_threads(self, threads: usize) -> Server {
        Server { threads, ..self }
    }

    /// Serves until `shutdown` completes, then drains the calls in flight. Health follows
    /// `readiness` for as long as the server runs.
    pub async fn serve(
        self,
        listener: TcpListener,
        services: Services,
        mut readiness: watch::Receiver<Ready>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let health = Health {
            reporter: HealthReporter::new(),
        };
        let initial = *readiness.borrow_and_update();
        health.show(initial).await;
        let services = SharedServices {
            rls: Arc::new(services.rls),
            rlqs: Arc::new(services.rlqs),
            access_logs: Arc::new(services.access_logs),
            api: Arc::new(services.api),
        };
        let threads = self.threads;
        let serving = async {
            if threads == 0 {
                serve_connections(
                    self.tls.clone(),
                    &health.reporter,
                    &services,
                    incoming::accept(listener, self.limits),
                    async {
                        shutdown.await;
                        tracing::info!("shutting down: draining in-flight calls");
                    },
                )
                .await
            } else {
                super::transport_threads::serve(
                    threads,
                    listener,
                    self.limits,
                    self.tls.clone(),
                    health.reporter.clone(),
                    Arc::new(services),
                    shutdown,
                )
                .await
            }
        };
        // Health follows readiness while the server runs; when every writer is gone it stays.
        let follow = async {
            while readiness.changed().await.is_ok() {
                let now = *readiness.borrow_and_update();
                health.show(now).await;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            served = serving => served,
            _ = follow => unreachable!("following readiness never ends"),
        }
    }
}

/// The services, shared by every thread that serves connections.
pub(super) struct SharedServices {
    rls: Arc<Rls>,
    rlqs: Arc<Rlqs>,
    access_logs: Arc<AccessLogs>,
    api: Arc<SluiceApi>,
}

/// Serves every service, with its layers and TLS, on `incoming`'s connections until `shutdown`
/// completes, then drains the calls in flight.
pub(super) async fn serve_connections(
    tls: Option<tonic::transport::ServerTlsConfig>,
    health: &HealthReporter,
    services: &SharedServices,
    incoming: impl futures::Stream<Item = std::io::Result<incoming::Guarded>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
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
    // No HTTP/2 keepalive: dead peers are found by TCP keepalive (`incoming`), which costs
    // nothing per request.
    let mut server =
        tonic::transport::Server::builder().max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS));
    if let Some(tls) = tls {
        // rustls parses the certificate and key here: a bad one fails the start.
        server = server
            .tls_config(tls)
            .map_err(|e| ServeError::TlsConfig(e.to_string()))?;
    }
    server
        .layer(
            tower::ServiceBuilder::new()
                .layer(tower::util::MapResponseLayer::new(
                    undecodable_is_invalid_argument as fn(_) -> _,
                ))
                // A request arrived: its connection is no longer closed for silence.
                .layer(tower::util::MapRequestLayer::new(
                    incoming::mark_served as fn(_) -> _,
                ))
                .into_inner(),
        )
        .add_service(HealthServer::new(HealthService::from_health_reporter(
            health.clone(),
        )))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RateLimitServiceServer::from_arc(services.rls.clone()))
        .add_service(RateLimitQuotaServiceServer::from_arc(services.rlqs.clone()))
        .add_service(AccessLogServiceServer::from_arc(
            services.access_logs.clone(),
        ))
        .add_service(SluiceServer::from_arc(services.api.clone()))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// A request tonic could not decode (invalid UTF-8 in a string field, a truncated message) is
/// the caller's mistake: tonic answers INTERNAL; this says INVALID_ARGUMENT, keeping tonic's
/// message, which names the message and field (`RateLimitRequest.domain: invalid string value`).
fn undecodable_is_invalid_argument<B>(
    mut response: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    use tonic::codegen::http::HeaderValue;
    let headers = response.headers_mut();
    let internal = headers.get("grpc-status").is_some_and(|s| s == "13");
    let undecodable = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| {
            m.starts_with("failed%20to%20decode") || m.starts_with("failed to decode")
        });
    if internal && undecodable {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
    }
    response
}
