//! `sluice health`: an exec probe. Prints the server's (or one service's) health status and exits
//! 0 only when it is SERVING; speaks TLS, so it works where Kubernetes' built-in gRPC probe cannot.

use super::client_tls::ClientTlsArgs;

#[derive(Clone, Debug, clap::Args)]
pub struct HealthArgs {
    /// The server: `http://host:port`, `https://host:port`, or `host:port`.
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// The service to ask about ("" is the server as a whole; `sluice.v1.Forecaster` says
    /// whether the LSTM is forecasting).
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// Prints the status; an error (non-zero exit) unless it is SERVING.
pub async fn run(args: &HealthArgs) -> anyhow::Result<()> {
    let (server, service, timeout, tls) = (&args.server, &args.service, args.timeout, &args.tls);
    use tonic_health::pb::health_check_response::ServingStatus;
    if !(timeout > 0.0 && timeout <= 3600.0) {
        anyhow::bail!("--timeout must be in (0, 3600] seconds");
    }
    let ask = async {
        let channel = tls.connect(server).await?;
        let reply = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?;
        anyhow::Ok(reply.into_inner().status)
    };
    let status = tokio::time::timeout(std::time::Duration::from_secs_f64(timeout), ask)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {server} within {timeout} s"))??;
    let name = ServingStatus::try_from(status).map_or("UNKNOWN", |s| s.as_str_name());
    println!("{name}");
    if status != ServingStatus::Serving as i32 {
        anyhow::bail!("{server} is {name}");
    }
    Ok(())
}
