//! The `sluice` command: run the service, manage rules files, and measure.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::config::Config;
use sluice::core::validate::InputLimits;
use sluice::grpc::convert::rule_to_proto;
use sluice::loadgen::{self, LoadArgs};
use sluice::proto::sluice::v1 as pb;
use sluice::rulesfile;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Adaptive rate-limit decision service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(Box<Config>),
    /// Rules files (envoyproxy/ratelimit YAML).
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Closed-loop load against a running server; prints a JSON report.
    Load(LoadArgs),
    /// Replay a trace through the engine and learning loop in virtual time; prints a JSON report.
    Replay(Box<sluice::replay::cli::ReplayArgs>),
    /// Write a labelled synthetic trace.
    GenTrace(sluice::replay::cli::GenTraceArgs),
    /// Drive a running server live over gRPC with synthetic traffic; prints a JSON summary.
    Simulate(sluice::simulate::SimulateArgs),
    /// Write the forecaster's training tensors (the model's exact input encoding).
    ExportFeatures(sluice::forecast::cli::ExportFeaturesArgs),
    /// Score the shipped forecaster against the baselines on a series (MAE, sMAPE at 1/5/15 min).
    EvalForecast(sluice::forecast::cli::EvalForecastArgs),
    /// Ask a running server's health (exit 0 when SERVING): an exec probe that also speaks TLS.
    Health {
        #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:50051")]
        server: String,
        /// The service to ask about ("" is the server as a whole; `sluice.v1.Forecaster` says
        /// whether the LSTM is forecasting).
        #[arg(long, default_value = "")]
        service: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
        #[command(flatten)]
        tls: sluice::tls::ClientTlsArgs,
    },
    /// A server that answers every Envoy RLS call with OK at once (the benchmark's baseline).
    NoopServer {
        #[arg(long, default_value = "127.0.0.1:50052")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate a rules file and print what it defines; changes nothing.
    Check { file: PathBuf },
    /// Apply a rules file to a running server: its domains' rules become exactly the file's.
    Apply {
        file: PathBuf,
        #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:50051")]
        server: String,
        /// Admin token; defaults to SLUICE_ADMIN_TOKEN, then the server's generated token file.
        #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(
            long,
            env = "SLUICE_ADMIN_TOKEN_FILE",
            default_value = "sluice-admin.token"
        )]
        token_file: PathBuf,
        /// Fail unless the server's rules are at this revision.
        #[arg(long)]
        expected_revision: Option<u64>,
        #[command(flatten)]
        tls: sluice::tls::ClientTlsArgs,
    },
}

/// Logs to stderr; with `spans`, `tracing` spans are also exported as OpenTelemetry spans.
fn init_logging(json: bool, spans: Option<&opentelemetry_sdk::trace::SdkTracerProvider>) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(spans.map(sluice::telemetry::tracing_layer));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            let spans = match config.telemetry() {
                Some(t) => Some(sluice::telemetry::tracer_provider(&t)?),
                None => None,
            };
            init_logging(
                config.log_format == sluice::config::LogFormat::Json,
                spans.as_ref(),
            );
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let served = sluice::server::run(*config, listener, shutdown_signal()).await;
            if let Some(spans) = spans {
                // Flushes the last spans: blocking, so off the async workers.
                let _ =
                    tokio::task::spawn_blocking(move || sluice::telemetry::shutdown_tracer(spans))
                        .await;
            }
            served?;
        }
        Command::Rules { command } => rules(command).await?,
        Command::Load(args) => {
            let report = loadgen::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Replay(args) => sluice::replay::cli::replay(&args)?,
        Command::GenTrace(args) => sluice::replay::cli::gen_trace(&args)?,
        Command::Simulate(args) => {
            let summary = sluice::simulate::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::ExportFeatures(args) => sluice::forecast::cli::export_features(&args).await?,
        Command::EvalForecast(args) => sluice::forecast::cli::eval_forecast(&args)?,
        Command::Health {
            server,
            service,
            timeout,
            tls,
        } => health(&server, &service, timeout, &tls).await?,
        Command::NoopServer { listen } => {
            init_logging(false, None);
            loadgen::noop_server(listen, shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// Prints the status; an error (non-zero exit) unless it is SERVING.
async fn health(
    server: &str,
    service: &str,
    timeout: f64,
    tls: &sluice::tls::ClientTlsArgs,
) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    if !(timeout > 0.0 && timeout <= 3600.0) {
        anyhow::bail!("--timeout must be in (0, 3600] seconds");
    }
    let ask = async {
        let channel = tls
            .endpoint(server)?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {server}"))?;
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

async fn rules(command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Check { file } => {
            let parsed = rulesfile::load(&file, &InputLimits::default())?;
            for rule in &parsed.rules {
                println!("{}", rule.id());
            }
            eprintln!(
                "{}: {} rules in {} domains",
                file.display(),
                parsed.rules.len(),
                parsed.domains.len()
            );
        }
        RulesCommand::Apply {
            file,
            server,
            token,
            token_file,
            expected_revision,
            tls,
        } => {
            let parsed = rulesfile::load(&file, &InputLimits::default())?;
            let token = match token {
                Some(t) => t,
                None => std::fs::read_to_string(&token_file)
                    .with_context(|| {
                        format!(
                            "no --token / SLUICE_ADMIN_TOKEN, and cannot read {}",
                            token_file.display()
                        )
                    })?
                    .trim()
                    .to_string(),
            };
            let endpoint = tls.endpoint(&server)?;
            let mut client = pb::sluice_client::SluiceClient::new(
                endpoint
                    .connect()
                    .await
                    .with_context(|| format!("cannot connect to {server}"))?,
            );
            let mut request = tonic::Request::new(pb::UpdateRulesRequest {
                rules: parsed.rules.iter().map(rule_to_proto).collect(),
                expected_revision,
                replace_domains: parsed.domains.clone(),
                actor: format!("sluice rules apply {}", file.display()),
            });
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}")
                    .parse()
                    .context("token is not valid header text")?,
            );
            let reply = client
                .update_rules(request)
                .await
                .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?;
            println!(
                "applied {} rules in {} domains: revision {}",
                parsed.rules.len(),
                parsed.domains.len(),
                reply.get_ref().revision
            );
        }
    }
    Ok(())
}
