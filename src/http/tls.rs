//! TLS for the HTTP admin listener: the same `--tls-cert`, `--tls-key` and `--tls-client-ca` as
//! the gRPC listener (one certificate for the service), with rustls and ring as there.
//!
//! Handshakes run in their own tasks, bounded in number and time, so a client that opens a
//! connection and says nothing holds neither the accept loop nor a slot for long.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::grpc::tls::{ServerTlsFiles, TlsError, read_pem};

/// Longest a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// The listener's rustls configuration; `None` when TLS is off.
pub fn server_config(
    files: &ServerTlsFiles,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    // The same checks (and errors) as the gRPC listener's first.
    if files.load()?.is_none() {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&files.cert, &files.key) else {
        return Ok(None);
    };
    let bad = |flag: &'static str, path: &std::path::Path, what: &'static str| TlsError::NotPem {
        flag,
        path: path.display().to_string(),
        expected: what,
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read_pem("--tls-cert", cert, "CERTIFICATE")?)
            .collect::<Result<_, _>>()
            .map_err(|_| bad("--tls-cert", cert, "CERTIFICATE"))?;
    let key = PrivateKeyDer::from_pem_slice(&read_pem("--tls-key", key, "PRIVATE KEY")?)
        .map_err(|_| bad("--tls-key", key, "PRIVATE KEY"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadUrl {
            url: "the HTTP listener".into(),
            reason: e.to_string(),
        })?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                CertificateDer::pem_slice_iter(&read_pem("--tls-client-ca", ca, "CERTIFICATE")?)
            {
                let c = c.map_err(|_| bad("--tls-client-ca", ca, "CERTIFICATE"))?;
                roots
                    .add(c)
                    .map_err(|_| bad("--tls-client-ca", ca, "CERTIFICATE"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|_| bad("--tls-client-ca", ca, "CERTIFICATE"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|_| {
        bad(
            "--tls-key",
            &files.key.clone().unwrap_or_default(),
            "PRIVATE KEY matching --tls-cert",
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Accepted and handshaken connections, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` and handshakes in the background until the listener is dropped.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(error = %e, "HTTP listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "HTTP listener: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "HTTP listener: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The acceptor task only ends when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
