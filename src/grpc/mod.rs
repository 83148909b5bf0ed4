//! The gRPC edge: Envoy's RateLimitService and Sluice's own API, translating protobuf to core
//! types and back. The only place that knows tonic, and the one place errors become `Status`.

pub mod access_log;
pub mod auth;
pub mod convert;
pub mod history_api;
pub mod learning_api;
pub mod rls;
pub mod sluice_api;

use tonic::Status;

use crate::core::validate::ValidationError;
use crate::rules_service::ManageError;
use crate::store::StoreError;

/// Every error an RPC can end with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Unauthenticated(String),
    #[error(transparent)]
    Manage(#[from] ManageError),
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the system is not in a state to do it (e.g. too little data to
    /// train on yet).
    #[error("{0}")]
    NotReady(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Manage(ManageError::Store(e))
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = e.to_string();
        match e {
            // The caller sent something we will never accept; retrying the same input is useless.
            ApiError::Invalid(_) => Status::invalid_argument(message),
            ApiError::Unauthenticated(_) => Status::unauthenticated(message),
            ApiError::NotFound(_) => Status::not_found(message),
            // Retrying later can succeed once more traffic has been seen; retrying now cannot.
            ApiError::NotReady(_) => Status::failed_precondition(message),
            ApiError::Manage(ManageError::Invalid(_)) => Status::invalid_argument(message),
            // The database is down, locked or not connected yet: retryable, and for Envoy's
            // ext-ratelimit filter UNAVAILABLE is what `failure_mode_deny` keys on. Decisions never
            // reach this arm: they do not touch the database.
            ApiError::Manage(ManageError::NotConnected(_))
            | ApiError::Manage(ManageError::Store(StoreError::Unavailable(_))) => {
                Status::unavailable(message)
            }
            // Optimistic concurrency: someone else changed the rules; re-read and retry.
            ApiError::Manage(ManageError::Store(StoreError::Conflict { .. })) => {
                Status::aborted(message)
            }
            ApiError::Manage(ManageError::Store(StoreError::NotFound(_))) => {
                Status::not_found(message)
            }
            // Misconfiguration or a bug: nothing the caller can fix by retrying.
            ApiError::Manage(ManageError::Store(
                StoreError::BadUrl { .. } | StoreError::Corrupt { .. } | StoreError::Internal(_),
            )) => Status::internal(message),
        }
    }
}

use std::sync::Arc;

use crate::clock::LiveClock;
use crate::core::engine::Engine;
use crate::core::headers::HeaderStyle;
use crate::core::validate::InputLimits;
use crate::rules_service::RulesService;

/// What the RPC handlers share.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub rules: Arc<RulesService>,
    pub clock: LiveClock,
    pub caps: InputLimits,
    pub rls_headers: HeaderStyle,
    pub allow_headers: HeaderStyle,
    pub allow_domain: String,
    pub admin: auth::AdminToken,
    pub learning: Arc<crate::learning::Learning>,
    /// Decision-RPC durations, exported with the metrics (a no-op when export is off).
    pub rpc: crate::telemetry::RpcMetrics,
}
