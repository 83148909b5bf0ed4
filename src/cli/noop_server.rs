//! `sluice noop-server`: a server that answers every Envoy RLS call with OK at once, the floor
//! any RLS server's cost is measured against (`scripts/bench-rls.sh`).

use std::net::SocketAddr;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};

/// Answers every ShouldRateLimit with OK at once: the floor any RLS server's cost is measured against.
pub struct NoopRls;

#[tonic::async_trait]
impl RateLimitService for NoopRls {
    async fn should_rate_limit(
        &self,
        _request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        Ok(tonic::Response::new(RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..Default::default()
        }))
    }
}

/// Serves until `shutdown` completes.
pub async fn run(
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(NoopRls))
        .serve_with_shutdown(listen, shutdown)
        .await?;
    Ok(())
}
