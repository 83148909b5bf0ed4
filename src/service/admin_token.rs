//! The admin bearer token, the one credential both listeners check: admin RPCs (`UpdateRules`,
//! `DeleteRules`, `ResetClient`…) and the dashboard's `/api/…` require
//! `authorization: Bearer <token>`; decision RPCs do not. The scheme is matched in any case
//! (`bearer`, `BEARER`: RFC 9110 makes it case-insensitive); the configured and the presented
//! token are both trimmed of surrounding whitespace, so a secret written with `echo` (a
//! trailing newline) still matches. What a refusal becomes on the wire is each listener's
//! (`grpc::auth`, `http`).

#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// The shortest admin token accepted: shorter ones are guessable.
pub const MIN_TOKEN_BYTES: usize = 16;

impl AdminToken {
    /// A configured token, trimmed; `Err` says why it is refused (too short once trimmed).
    pub fn new(token: &str) -> Result<AdminToken, String> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "the admin token (--admin-token / SLUICE_ADMIN_TOKEN) is {} bytes once trimmed of \
                 whitespace; at least {MIN_TOKEN_BYTES} are needed (unset it to have one generated)",
                token.len()
            ));
        }
        Ok(AdminToken(token.to_string()))
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
    pub fn verify(&self, header: Option<&str>) -> Result<(), Refusal> {
        let header = header.ok_or(Refusal::Missing)?;
        let presented = header
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
            .map(|_| &header[7..])
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
}

/// Why a presented token was refused.
pub enum Refusal {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_tokens_are_trimmed_and_long_enough() {
        // (configured, accepted)
        for (configured, ok) in [
            ("0123456789abcdef", true),
            ("0123456789abcdef\n", true),
            ("  0123456789abcdef\r\n", true),
            ("0123456789abcde", false),
            ("short\n", false),
            ("                    ", false),
        ] {
            let made = AdminToken::new(configured);
            assert_eq!(made.is_ok(), ok, "{configured:?}");
            if let Err(why) = made {
                assert!(why.contains("at least 16"), "{why}");
            }
        }
    }

    #[test]
    fn presented_tokens_match_in_any_scheme_case_and_trimmed() {
        let token = AdminToken::new("0123456789abcdef\n").unwrap();
        // (authorization header, accepted)
        for (header, ok) in [
            (Some("Bearer 0123456789abcdef"), true),
            (Some("bearer 0123456789abcdef"), true),
            (Some("BEARER 0123456789abcdef "), true),
            (Some("Bearer 0123456789abcdef\n"), true),
            (Some("Bearer 0123456789abcdeX"), false),
            (Some("Basic 0123456789abcdef"), false),
            (Some("Bearer"), false),
            (Some("Bé"), false),
            (None, false),
        ] {
            assert_eq!(token.accepts(header).is_ok(), ok, "{header:?}");
        }
    }
}
