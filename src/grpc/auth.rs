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

    /// The one check both listeners make of an `authorization` value (`None`: absent).
    fn verify(&self, header: Option<&str>) -> Result<(), Refusal> {
        let header = header.ok_or(Refusal::Missing)?;
        let presented = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(Refusal::NotBearer)?;
        if constant_time_eq(presented.trim().as_bytes(), self.0.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }

    /// Checks an HTTP `authorization` header value; the error says what is wrong.
    pub fn accepts(&self, header: Option<&str>) -> Result<(), &'static str> {
        self.verify(header).map_err(|refusal| match refusal {
            Refusal::Missing => "missing `authorization: Bearer <admin token>` header",
            Refusal::NotBearer => "authorization must be `Bearer <admin token>`",
            Refusal::Wrong => "wrong admin token",
        })
    }

    /// Checks an admin RPC's `authorization` metadata (a value that is not text is not a
    /// bearer token).
    pub fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), ApiError> {
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

/// Why a presented token was refused.
enum Refusal {
    Missing,
    NotBearer,
    Wrong,
}

/// Compares without an early exit, so response time does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
