//! The files read or written before anything is served: the gRPC and HTTP listeners' TLS
//! files and the admin token (configured, or generated and written where the CLI finds it).
//! All blocking file work, done together on the blocking pool so no async worker waits on a
//! disk (the rules file is read the same way by its follower).

use std::path::Path;
use std::sync::Arc;

use crate::app::config::Config;
use crate::app::start_error::StartError;
use crate::grpc::incoming::ConnectionLimits;
use crate::grpc::server::{ServeError, Server};
use crate::service::admin_token::AdminToken;

/// What the files gave.
pub struct StartupFiles {
    pub server: Server,
    /// The HTTP listener's TLS, when it listens and TLS is configured.
    pub http_tls: Option<Arc<rustls::ServerConfig>>,
    pub admin: AdminToken,
}

/// Reads (and writes) the start-up files on the blocking pool.
pub async fn read(
    config: &Config,
    grpc_limits: ConnectionLimits,
    serves_http: bool,
) -> Result<StartupFiles, StartError> {
    let config = config.clone();
    // The runtime serving us, as it is (what the start-up log reports too), not as the
    // configuration would build one: an embedding caller's runtime may differ.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tokio::task::spawn_blocking(move || {
        let tls = config.tls();
        let server =
            Server::new(&tls, grpc_limits)?.with_threads(config.grpc_serving_threads(workers));
        let http_tls = match serves_http {
            true => crate::http::tls::server_config(&tls).map_err(ServeError::from)?,
            false => None,
        };
        let admin = admin_token(&config)?;
        Ok(StartupFiles {
            server,
            http_tls,
            admin,
        })
    })
    .await
    .map_err(|e| StartError::Config(format!("reading the start-up files failed: {e}")))?
}

/// The admin token: configured, or generated and written where the CLI will find it.
fn admin_token(config: &Config) -> Result<AdminToken, StartError> {
    if let Some(token) = config.admin_token.as_ref().filter(|t| !t.is_empty()) {
        return AdminToken::new(token).map_err(StartError::Config);
    }
    let token = AdminToken::generate();
    write_private(&config.admin_token_file, token.secret()).map_err(|source| {
        StartError::TokenFile {
            path: config.admin_token_file.display().to_string(),
            source,
        }
    })?;
    tracing::info!(path = %config.admin_token_file.display(), "no SLUICE_ADMIN_TOKEN set: generated an admin token");
    Ok(token)
}

/// Writes `text` to `path` readable by the owner only, whatever was there: a new file (mode
/// 0600, created exclusively beside it) is renamed over the path. An existing file that others
/// could read is replaced, not rewritten in place (its mode would stay); a symbolic link is
/// replaced by the file, never followed (its target is left alone).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    // An unpredictable name: one another user could guess could be made in advance (a file or
    // a link), and `create_new` would then fail the start.
    let temp = dir.join(format!(
        ".{}.{:016x}.tmp",
        name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&temp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
    let result = written.and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::write_private;

    /// The admin token file ends up the owner's alone, whatever was at its path: a file others
    /// could read is replaced (not rewritten with its old mode), a symbolic link is replaced by the
    /// file and its target left untouched.
    #[test]
    fn the_token_file_is_private_whatever_was_there() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

        let readable = dir.path().join("readable.token");
        std::fs::write(&readable, "old").unwrap();
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&readable, "new-token").unwrap();
        assert_eq!(std::fs::read_to_string(&readable).unwrap(), "new-token");
        assert_eq!(mode(&readable), 0o600);

        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "precious").unwrap();
        let link = dir.path().join("linked.token");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_private(&link, "new-token").unwrap();
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "precious",
            "target untouched"
        );
        assert!(
            !std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(mode(&link), 0o600);

        // Someone who can write the directory made the temporary file of the old, predictable
        // name (process id) in advance: the token is written all the same.
        let fresh = dir.path().join("fresh.token");
        let planted = dir
            .path()
            .join(format!(".fresh.token.{}.tmp", std::process::id()));
        std::fs::write(&planted, "planted").unwrap();
        write_private(&fresh, "t").unwrap();
        assert_eq!(mode(&fresh), 0o600);
        std::fs::remove_file(&planted).unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary file left behind");
    }
}
