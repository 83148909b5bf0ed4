//! `sluice simulate`: drives a running server over gRPC with synthetic traffic, live, so the
//! learning loop can be watched at work (`ListFlagged`, `GetModelInfo`, the history tables).
//!
//! Open loop at `--rate` requests per second, from a pool of benign clients, shaped by
//! `--pattern`: `steady`; `spike` (the middle third at five times the rate, as a flash crowd);
//! `attack` (steady benign traffic plus a few clients hammering login with a tool user agent and
//! reporting 401s). Prints a JSON summary. This is a demo driver, not a benchmark (`sluice load`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::proto::sluice::v1 as pb;
use crate::proto::sluice::v1::sluice_client::SluiceClient;

#[derive(Clone, Debug, clap::Args)]
pub struct SimulateArgs {
    /// Server address, e.g. http://127.0.0.1:50051.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// Benign requests per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// steady, spike or attack.
    #[arg(long, default_value = "steady")]
    pub pattern: String,
    /// Seconds to run.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Domain to ask in (default: the server's ShouldAllow domain).
    #[arg(long, default_value = "")]
    pub domain: String,
    #[command(flatten)]
    pub tls: crate::cli::client_tls::ClientTlsArgs,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub sent: u64,
    pub allowed: u64,
    pub denied: u64,
    pub errors: u64,
    pub by_reason: BTreeMap<String, u64>,
    pub attacker_denied: u64,
    pub attacker_sent: u64,
    pub seconds: f64,
}

pub async fn run(args: &SimulateArgs) -> anyhow::Result<Summary> {
    if !["steady", "spike", "attack"].contains(&args.pattern.as_str()) {
        anyhow::bail!(
            "--pattern must be steady, spike or attack, not {:?}",
            args.pattern
        );
    }
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        anyhow::bail!("--rate must be in (0, 100000]");
    }
    let mut client = SluiceClient::new(args.tls.connect(&args.target).await?);
    let started = Instant::now();
    let total = Duration::from_secs(args.duration);
    let mut summary = Summary::default();
    let mut n: u64 = 0;
    let tick = Duration::from_millis(10);
    let mut next = tokio::time::Instant::now();
    let mut owed = 0.0;
    let mut progress = crate::cli::progress::Progress::new("simulate");
    while started.elapsed() < total {
        progress.update(
            started.elapsed().as_secs(),
            Some(args.duration),
            &format!("seconds, {} requests sent", summary.sent),
        );
        next += tick;
        tokio::time::sleep_until(next).await;
        let phase = started.elapsed().as_secs_f64() / total.as_secs_f64();
        let rate = match args.pattern.as_str() {
            "spike" if (1.0 / 3.0..2.0 / 3.0).contains(&phase) => args.rate * 5.0,
            _ => args.rate,
        };
        owed += rate * tick.as_secs_f64();
        while owed >= 1.0 {
            owed -= 1.0;
            n += 1;
            let attacker = args.pattern == "attack" && n % 3 == 0;
            let subject = if attacker {
                pb::Subject {
                    client_ip: format!("198.51.100.{}", n % 7 + 1),
                    endpoint: "/api/login".into(),
                    method: "POST".into(),
                    user_agent: "python-requests/2.32".into(),
                    ..Default::default()
                }
            } else {
                pb::Subject {
                    client_ip: format!("10.20.{}.{}", (n / 7) % 4, n % 250 + 1),
                    endpoint: format!("/api/products/{}", n % 97),
                    method: "GET".into(),
                    user_agent: "Mozilla/5.0 Firefox/133.0".into(),
                    ..Default::default()
                }
            };
            let reply = client
                .should_allow(pb::ShouldAllowRequest {
                    subject: Some(subject.clone()),
                    cost: 1,
                    domain: args.domain.clone(),
                })
                .await;
            summary.sent += 1;
            summary.attacker_sent += u64::from(attacker);
            match reply {
                Ok(r) => {
                    let r = r.into_inner();
                    let reason = pb::Reason::try_from(r.reason)
                        .map_or("unknown".into(), |x| x.as_str_name().to_string());
                    *summary.by_reason.entry(reason).or_default() += 1;
                    if r.allowed {
                        summary.allowed += 1;
                        let status = if attacker { 401 } else { 200 };
                        let _ = client
                            .report(pb::ReportRequest {
                                subject: Some(subject),
                                status,
                                count: 1,
                            })
                            .await;
                    } else {
                        summary.denied += 1;
                        summary.attacker_denied += u64::from(attacker);
                    }
                }
                Err(_) => summary.errors += 1,
            }
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
