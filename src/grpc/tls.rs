//! TLS for the gRPC listener (`--tls-cert`, `--tls-key`, optionally `--tls-client-ca` for mutual
//! TLS, as Envoy's rate-limit cluster can be set to present a client certificate). rustls with
//! ring; PEM only. The commands that call a server have their side in `cli::client_tls`.
//!
//! Files are read and checked at start-up: a missing file or one that is not PEM of the
//! expected kind fails the start with the flag and path named, before anything is served.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {path}: no PEM {expected} in the file")]
    NotPem {
        flag: &'static str,
        path: String,
        expected: &'static str,
    },
    #[error("{0} needs {1} as well")]
    Incomplete(&'static str, &'static str),
    #[error("{url} is not a server URL: {reason}")]
    BadUrl { url: String, reason: String },
}

/// The listener's TLS settings, as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

/// Reads a PEM file and checks it holds a block of the `expected` kind (`CERTIFICATE`, or
/// `PRIVATE KEY`, which also matches `RSA PRIVATE KEY` and `EC PRIVATE KEY`).
pub(crate) fn read_pem(
    flag: &'static str,
    path: &Path,
    expected: &'static str,
) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.ends_with(&format!("{expected}-----")));
    if !found {
        return Err(TlsError::NotPem {
            flag,
            path: path.display().to_string(),
            expected,
        });
    }
    Ok(bytes)
}

impl ServerTlsFiles {
    /// The server's TLS configuration; `None` when TLS is off (no certificate configured).
    pub fn load(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        let (cert, key) = match (&self.cert, &self.key) {
            (None, None) if self.client_ca.is_some() => {
                return Err(TlsError::Incomplete(
                    "--tls-client-ca",
                    "--tls-cert and --tls-key",
                ));
            }
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(TlsError::Incomplete("--tls-cert", "--tls-key")),
            (None, Some(_)) => return Err(TlsError::Incomplete("--tls-key", "--tls-cert")),
            (Some(cert), Some(key)) => (cert, key),
        };
        let identity = Identity::from_pem(
            read_pem("--tls-cert", cert, "CERTIFICATE")?,
            read_pem("--tls-key", key, "PRIVATE KEY")?,
        );
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read_pem(
                "--tls-client-ca",
                ca,
                "CERTIFICATE",
            )?));
        }
        Ok(Some(config))
    }
}
