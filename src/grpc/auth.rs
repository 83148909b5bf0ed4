//! The admin bearer token: admin RPCs (`UpdateRules`, `DeleteRules`, `ResetClient`) require
//! `authorization: Bearer <token>`; decision RPCs do not.

use super::ApiError;

#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

impl AdminToken {
    pub fn new(token: String) -> AdminToken {
        AdminToken(token)
    }

    /// A fresh random token (32 bytes, hex).
    pub fn generate() -> AdminToken {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        AdminToken(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Checks an HTTP `authorization` header value; the error says what is wrong.
    pub fn accepts(&self, header: Option<&str>) -> Result<(), &'static str> {
        let header = header.ok_or("missing `authorization: Bearer <admin token>` header")?;
        let presented = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or("authorization must be `Bearer <admin token>`")?;
        if constant_time_eq(presented.trim().as_bytes(), self.0.as_bytes()) {
            Ok(())
        } else {
            Err("wrong admin token")
        }
    }

    pub fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), ApiError> {
        let header = request.metadata().get("authorization").ok_or_else(|| {
            ApiError::Unauthenticated(
                "admin RPC: missing `authorization: Bearer <token>` metadata".into(),
            )
        })?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "admin RPC: authorization must be `Bearer <token>`".into(),
                )
            })?;
        if constant_time_eq(presented.trim().as_bytes(), self.0.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::Unauthenticated(
                "admin RPC: wrong admin token".into(),
            ))
        }
    }
}

/// Compares without an early exit, so response time does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
