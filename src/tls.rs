//! TLS for the gRPC listener (`--tls-cert`, `--tls-key`, optionally `--tls-client-ca` for mutual
//! TLS, as Envoy's rate-limit cluster can be set to present a client certificate) and for the
//! commands that call a server (`rules apply`, `load`, `simulate`). rustls with ring; PEM only.
//!
//! Files are read and checked at start-up: a missing file or one that is not PEM of the
//! expected kind fails the start with the flag and path named, before anything is served.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

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

/// Client-side TLS flags, shared by the commands that call a server (`rules apply`, `load`,
/// `simulate`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// PEM CA certificate to trust for an `https://` server.
    #[arg(long, env = "SLUICE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a server that requires one (mutual TLS).
    #[arg(long, env = "SLUICE_TLS_CLIENT_CERT")]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert.
    #[arg(long, env = "SLUICE_TLS_CLIENT_KEY")]
    pub tls_client_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// An endpoint for `url`, with these TLS settings when a CA is given.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TlsError> {
        let bad = |e: tonic::transport::Error| TlsError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let endpoint = Endpoint::from_shared(url.to_string()).map_err(bad)?;
        match client_config(
            self.tls_ca.as_deref(),
            self.tls_client_cert.as_deref(),
            self.tls_client_key.as_deref(),
        )? {
            Some(tls) => endpoint.tls_config(tls).map_err(bad),
            None => Ok(endpoint),
        }
    }
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
fn read_pem(flag: &'static str, path: &Path, expected: &'static str) -> Result<Vec<u8>, TlsError> {
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

/// A client's TLS: trust `ca` (else nothing: plaintext `http://` only), and
/// present `cert`/`key` when the server asks for a client certificate.
pub fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ClientTlsConfig>, TlsError> {
    let Some(ca) = ca else {
        return match (cert, key) {
            (None, None) => Ok(None),
            _ => Err(TlsError::Incomplete("--tls-client-cert", "--tls-ca")),
        };
    };
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(
        "--tls-ca",
        ca,
        "CERTIFICATE",
    )?));
    match (cert, key) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read_pem("--tls-client-cert", cert, "CERTIFICATE")?,
                read_pem("--tls-client-key", key, "PRIVATE KEY")?,
            ));
        }
        (Some(_), None) => {
            return Err(TlsError::Incomplete(
                "--tls-client-cert",
                "--tls-client-key",
            ));
        }
        (None, Some(_)) => {
            return Err(TlsError::Incomplete(
                "--tls-client-key",
                "--tls-client-cert",
            ));
        }
    }
    Ok(Some(config))
}
