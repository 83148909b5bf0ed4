//! Why the service did not start (or its gRPC listener failed): each layer's error, said once.

use crate::adapters::rules_file;
use crate::grpc::server::ServeError;

/// Why the service did not start (or its gRPC listener failed).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    RulesFile(#[from] rules_file::RulesFileError),
    #[error("cannot write the admin token to {path}: {source}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Telemetry(#[from] crate::service::telemetry::TelemetryError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("--http-listen {addr}: {source}")]
    HttpListen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}
