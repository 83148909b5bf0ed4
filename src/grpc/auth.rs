//! The admin token at the gRPC edge: an admin RPC's `authorization` metadata checked against
//! the service's [`AdminToken`], a refusal answered as `UNAUTHENTICATED` naming what is wrong.

use super::ApiError;
pub use crate::service::admin_token::AdminToken;
use crate::service::admin_token::Refusal;

/// The check admin RPCs make.
pub trait CheckAdmin {
    /// Checks an admin RPC's `authorization` metadata (a value that is not text is not a
    /// bearer token).
    fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), ApiError>;
}

impl CheckAdmin for AdminToken {
    fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), ApiError> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|h| h.to_str().unwrap_or(""));
        self.verify(header).map_err(|refusal| {
            ApiError::Unauthenticated(
                match refusal {
                    Refusal::Missing => {
                        "admin RPC: missing `authorization: Bearer <token>` metadata"
                    }
                    Refusal::NotBearer => "admin RPC: authorization must be `Bearer <token>`",
                    Refusal::Wrong => "admin RPC: wrong admin token",
                }
                .into(),
            )
        })
    }
}
