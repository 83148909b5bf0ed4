//! The client side of TLS, for the commands that call a server (`rules apply`, `health`, `load`,
//! `simulate`): one set of flags, one way to make an endpoint, one way to explain a failed connect.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::grpc::tls::{TlsError, read_pem};

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
    /// An endpoint for `url`, with these TLS settings when a CA is given. A bare `host:port`
    /// means `http://host:port`, or `https://` when a CA is given.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TlsError> {
        let url = with_scheme(url, self.tls_ca.is_some());
        let bad = |e: tonic::transport::Error| TlsError::BadUrl {
            url: url.clone(),
            reason: e.to_string(),
        };
        let endpoint = Endpoint::from_shared(url.clone()).map_err(bad)?;
        match client_config(
            self.tls_ca.as_deref(),
            self.tls_client_cert.as_deref(),
            self.tls_client_key.as_deref(),
        )? {
            Some(tls) => endpoint.tls_config(tls).map_err(bad),
            None => Ok(endpoint),
        }
    }

    /// Connects to `url`; a failure says what was tried and, where it can tell, why.
    pub async fn connect(&self, url: &str) -> anyhow::Result<Channel> {
        let endpoint = self.endpoint(url)?;
        endpoint.connect().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to {url}: {}",
                explain(&e, self.tls_ca.is_some())
            )
        })
    }
}

/// `host:port` → `http://host:port` (`https://` with TLS); a URL with a scheme is kept.
fn with_scheme(url: &str, tls: bool) -> String {
    if url.contains("://") {
        url.to_string()
    } else if tls {
        format!("https://{url}")
    } else {
        format!("http://{url}")
    }
}

/// The innermost cause of a connect error (tonic wraps the same text several times), with a hint
/// for the usual TLS mismatches.
fn explain(e: &tonic::transport::Error, tls: bool) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    let cause = source.to_string();
    let hint = if tls && (cause.contains("InvalidContentType") || cause.contains("corrupt message"))
    {
        " (the server may be speaking plaintext: drop --tls-ca, or use http://)"
    } else if tls && cause.contains("UnknownIssuer") {
        " (the server's certificate is not signed by --tls-ca)"
    } else if !tls
        && (cause.contains("connection reset")
            || cause.contains("broken pipe")
            || cause.contains("h2 protocol error"))
    {
        " (the server may require TLS: pass --tls-ca and use https://)"
    } else {
        ""
    };
    format!("{cause}{hint}")
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_bare_address_gets_the_scheme_its_tls_settings_mean() {
        // (given, with a CA, endpoint URL)
        for (given, tls, url) in [
            ("127.0.0.1:50051", false, "http://127.0.0.1:50051"),
            ("127.0.0.1:50051", true, "https://127.0.0.1:50051"),
            ("http://a:1", true, "http://a:1"),
            ("https://a:1", false, "https://a:1"),
        ] {
            assert_eq!(super::with_scheme(given, tls), url, "{given} tls={tls}");
        }
    }
}
