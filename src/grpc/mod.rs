//! The gRPC edge: Envoy's RateLimitService, Rate Limit Quota Service and access-log service and
//! Sluice's own API,
//! translating protobuf to core types and back (`convert`), the server that serves them with
//! health and reflection (`server`), and its TLS (`tls`). The one place errors become `Status`.
//! Each service holds the handles it uses and nothing else.

pub mod access_log;
pub mod auth;
pub mod convert;
pub mod history_api;
pub mod incoming;
pub mod learning_api;
pub mod limits_api;
pub mod lists_api;
mod operators_api;
pub mod requests;
pub mod rlqs;
pub mod rls;
pub mod server;
pub mod sluice_api;
pub mod tls;
mod transport_threads;

use tonic::Status;

use crate::service::database::DatabaseError;
use crate::service::rules_manager::ManageError;
use crate::store::StoreError;
use sluice_core::validate::ValidationError;

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
    #[error(transparent)]
    Data(#[from] DatabaseError),
    /// The shared counters (Redis) did not answer (an admin's reset, a lease, a reservation).
    #[error("{0}")]
    CountersUnavailable(String),
    /// A bounded table is full (leases' keys, unsettled reservations).
    #[error("{0}")]
    Exhausted(String),
    /// A task of ours failed (panicked); a bug.
    #[error("{0}")]
    Internal(String),
}

/// Longest `grpc-message` sent: an error quoting a caller's huge input must not become a
/// reply a default client refuses (4 MB) or a header a proxy drops.
pub const MAX_MESSAGE_LEN: usize = 1_024;

/// `message`, cut to `MAX_MESSAGE_LEN` bytes at a character boundary, saying so.
pub fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE_LEN {
        return message;
    }
    let mut end = MAX_MESSAGE_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes, truncated)", &message[..end], message.len())
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = bounded(e.to_string());
        match e {
            // The caller sent something we will never accept; retrying the same input is useless.
            ApiError::Invalid(_) => Status::invalid_argument(message),
            ApiError::Unauthenticated(_) => Status::unauthenticated(message),
            ApiError::NotFound(_) => Status::not_found(message),
            // Retrying later can succeed once more traffic has been seen; retrying now cannot.
            ApiError::NotReady(_) => Status::failed_precondition(message),
            ApiError::Manage(ManageError::Invalid(_)) => Status::invalid_argument(message),
            // Like a rule change: the database is down or not connected yet, so retry later.
            ApiError::Data(DatabaseError::NotConnected(_))
            | ApiError::Data(DatabaseError::Store(StoreError::Unavailable(_))) => {
                Status::unavailable(message)
            }
            // History and list data have no revision to conflict on; anything else
            // from the store is misconfiguration or a bug.
            ApiError::Data(DatabaseError::Store(_)) => Status::internal(message),
            // Our own bug (a panicked task): nothing the caller can fix.
            ApiError::Internal(_) => Status::internal(message),
            // Redis is down or slow: the local part is done; retry once it answers.
            ApiError::CountersUnavailable(_) => Status::unavailable(message),
            // A cap on live state is reached: retrying after others settle or expire can succeed.
            ApiError::Exhausted(_) => Status::resource_exhausted(message),
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

#[cfg(test)]
mod tests {
    #[test]
    fn long_messages_are_cut_at_a_character_boundary_and_say_so() {
        assert_eq!(super::bounded("short".into()), "short");
        let long = "é".repeat(2_000);
        let cut = super::bounded(long.clone());
        assert!(cut.len() < super::MAX_MESSAGE_LEN + 64, "{}", cut.len());
        assert!(cut.ends_with("(4000 bytes, truncated)"), "{cut}");
        assert!(long.starts_with(cut.split('…').next().unwrap()));
    }
}
