//! The `sluice` command: parses the command line, starts the runtime (`cli::runtime`) and hands
//! each subcommand to its module in `sluice::cli`, on mimalloc as the allocator. Nothing else
//! happens here.

use clap::{Parser, Subcommand};

use sluice::app::config::Config;
use sluice::cli;

/// mimalloc, not glibc's malloc: under a decision load glibc's per-thread arenas kept growing
/// (a server with 1M keys held 414 MB after two minutes of churn) and its malloc and free were
/// 6% of the server's CPU in a profile. The dependency was declared but never installed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        command: cli::rules::RulesCommand,
    },
    /// Closed-loop load against a running server; prints a JSON report.
    Load(cli::load::LoadArgs),
    /// Replay a trace through the engine and learning loop in virtual time; prints a JSON report.
    Replay(Box<cli::replay::ReplayArgs>),
    /// Write a labelled synthetic trace.
    GenTrace(cli::gen_trace::GenTraceArgs),
    /// Drive a running server live over gRPC with synthetic traffic; prints a JSON summary.
    Simulate(cli::simulate::SimulateArgs),
    /// Write the forecaster's training tensors (the model's exact input encoding).
    ExportFeatures(cli::export_features::ExportFeaturesArgs),
    /// Score the shipped forecaster against the baselines on a series (MAE, sMAPE at 1/5/15 min).
    EvalForecast(cli::eval_forecast::EvalForecastArgs),
    /// Detection quality over generated worlds: worst and median figures (held-out seeds).
    EvalDetection(Box<cli::eval_detection::EvalDetectionArgs>),
    /// Print suggested static limits (a rules file) learned from a trace of your own traffic.
    SuggestLimits(Box<cli::suggest_limits::SuggestLimitsArgs>),
    /// Call any Sluice RPC of a running server: JSON in, JSON out (`sluice call ListFlagged`).
    Call(Box<cli::call::CallArgs>),
    /// Ask a running server whether a request may pass (`ShouldAllow`); prints the answer.
    Decide(Box<cli::call::DecideArgs>),
    /// A client's limits and action (`get`), or give it its allowance back (`reset`).
    Client {
        #[command(subcommand)]
        command: cli::call::ClientCommand,
    },
    /// The clients a running server acts on now, and why.
    Flagged(Box<cli::call::FlaggedArgs>),
    /// Traffic and denials by endpoint and tier, from a running server's history.
    Stats(Box<cli::call::StatsArgs>),
    /// Ask a running server's health (exit 0 when SERVING): an exec probe that also speaks TLS.
    Health(cli::health::HealthArgs),
    /// A server that answers every Envoy RLS call with OK at once (the benchmark's baseline).
    NoopServer {
        #[arg(long, default_value = "127.0.0.1:50052")]
        listen: std::net::SocketAddr,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let requested = match &cli.command {
        Command::Serve(config) => config.worker_threads,
        _ => None,
    };
    let runtime = match cli::runtime::build(cli::runtime::workers(requested)) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => cli::serve::run(*config).await?,
        Command::Rules { command } => cli::rules::run(command).await?,
        Command::Load(args) => {
            let report = cli::load::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Replay(args) => cli::replay::replay(&args)?,
        Command::GenTrace(args) => cli::gen_trace::gen_trace(&args)?,
        Command::Simulate(args) => {
            let summary = cli::simulate::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::ExportFeatures(args) => cli::export_features::export_features(&args).await?,
        Command::EvalForecast(args) => cli::eval_forecast::eval_forecast(&args)?,
        Command::Health(args) => cli::health::run(&args).await?,
        Command::Call(args) => {
            println!(
                "{}",
                cli::call::call(&args.method, &args.request, &args.connection).await?
            );
        }
        Command::Decide(args) => {
            let request = args.request()?;
            let reply = cli::call::call("ShouldAllow", &request, &args.subject.connection);
            println!("{}", reply.await?);
        }
        Command::Client { command } => println!("{}", cli::call::client(&command).await?),
        Command::Flagged(args) => {
            let request = serde_json::json!({"limit": args.limit}).to_string();
            println!(
                "{}",
                cli::call::call("ListFlagged", &request, &args.connection).await?
            );
        }
        Command::Stats(args) => {
            let request = args.request();
            let reply = cli::call::call("GetStats", &request, &args.connection);
            println!("{}", reply.await?);
        }
        Command::EvalDetection(args) => cli::eval_detection::run(&args)?,
        Command::SuggestLimits(args) => cli::suggest_limits::run(&args)?,
        Command::NoopServer { listen } => {
            sluice::service::telemetry::init_logging(false, None)?;
            cli::noop_server::run(listen, cli::serve::shutdown_signal()).await?;
        }
    }
    Ok(())
}
