//! A closed-loop gRPC load client for capacity planning and the overhead benchmark, and a no-op
//! RLS server to compare against. `concurrency` workers each keep one request in flight over
//! `connections` HTTP/2 connections; the report gives throughput and latency percentiles. Besides
//! decisions (RLS, ShouldAllow) it drives the limits' other calls, an operation being the pair a
//! caller makes: a lease acquired and released, a reservation reserved and committed.

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use crate::proto::sluice::v1 as pb;
use crate::proto::sluice::v1::sluice_client::SluiceClient;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// Envoy's ShouldRateLimit.
    Rls,
    /// Sluice's ShouldAllow.
    Allow,
    /// AcquireLease then ReleaseLease of the lease granted (one operation, two calls; a lease
    /// refused is counted over the limit and not released).
    Lease,
    /// Reserve (an estimate of 100 `tokens`) then CommitReservation (80 spent): one operation,
    /// two calls; a reservation refused is counted over the limit.
    Reserve,
}

#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// Server address, e.g. http://127.0.0.1:50051.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: String,
    #[arg(long, value_enum, default_value = "rls")]
    pub api: Api,
    /// Requests kept in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// HTTP/2 connections the workers share.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Seconds to measure (after a one-second warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Distinct client keys to spread requests over.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// RLS only: descriptors per request, each a different key (Envoy sends several; a flood
    /// of distinct keys sends many).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=32))]
    pub descriptors: u64,
    /// Walk the keys in order (every worker its own stride) instead of drawing them at random:
    /// every key is touched once per `keys / descriptors` requests (for memory measurements).
    #[arg(long)]
    pub sweep: bool,
    /// Requests per second to offer in all, paced (each worker sends on its own schedule and
    /// catches up when late, never more than `--concurrency` in flight). Unset: as fast as the
    /// server answers (closed loop). A fixed rate below every server's capacity compares their
    /// CPU per decision at the same load; a closed loop lets the faster one batch more.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Domain of every call (ShouldAllow names it only when it is not `sluice`, the server's
    /// default: a server started with another `--allow-domain` keeps it).
    #[arg(long, default_value = "sluice")]
    pub domain: String,
    /// ShouldAllow only: every subject field (client address, user id, user agent, endpoint)
    /// is made this many bytes long, distinct per key (a flood of caller-chosen strings, for
    /// memory measurements). 0: the usual short address and one endpoint.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=65_536))]
    pub pad_bytes: u64,
    #[command(flatten)]
    pub tls: crate::cli::client_tls::ClientTlsArgs,
}

/// `field` and `key` padded with `x` to `bytes` (never shorter than the two).
fn padded(field: &str, key: &str, bytes: usize) -> String {
    let mut out = format!("{field}-{key}-");
    while out.len() < bytes {
        out.push('x');
    }
    out
}

/// A positive, finite number of requests per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of requests per second"
        )),
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    pub requests: u64,
    /// Requests answered during the one-second warm-up (not in `requests` or the latencies):
    /// with `requests`, what a server did over the whole run, for CPU per request.
    pub warmup_requests: u64,
    pub errors: u64,
    pub over_limit: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
}

pub async fn run(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(args.tls.connect(&args.target).await?);
    }
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let mut workers = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let channel = channels[w % channels.len()].clone();
        let args = args.clone();
        workers.push(tokio::spawn(async move {
            worker(w as u64, channel, &args, measure_from, end).await
        }));
    }
    let mut latencies = Vec::new();
    let mut report = LoadReport::default();
    for w in workers {
        let (lat, warmup, errors, over) = w.await?;
        report.requests += lat.len() as u64;
        report.warmup_requests += warmup;
        report.errors += errors;
        report.over_limit += over;
        latencies.extend(lat);
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map_or(0.0, |&ns| ns as f64 / 1_000.0)
    };
    report.seconds = measure.as_secs_f64();
    report.rps = report.requests as f64 / report.seconds;
    report.p50_us = pct(0.50);
    report.p90_us = pct(0.90);
    report.p99_us = pct(0.99);
    Ok(report)
}

async fn worker(
    id: u64,
    channel: Channel,
    args: &LoadArgs,
    measure_from: Instant,
    end: Instant,
) -> (Vec<u64>, u64, u64, u64) {
    let mut rls = RateLimitServiceClient::new(channel.clone());
    let mut sluice = SluiceClient::new(channel);
    let mut latencies = Vec::new();
    let (mut errors, mut over, mut warmup) = (0, 0, 0);
    let mut n: u64 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let keys = args.keys.max(1);
    let per_request = args.descriptors.max(1);
    let workers = args.concurrency.max(1) as u64;
    let mut swept: u64 = id * per_request;
    let ip = |k: u64| format!("10.{}.{}.{}", k >> 16 & 0xff, k >> 8 & 0xff, k & 0xff);
    // Paced: this worker's share of the rate, its first send offset so the workers interleave.
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(workers as f64 / rate));
    let mut next_send =
        Instant::now() + interval.map_or(Duration::ZERO, |i| i * id as u32 / workers as u32);
    loop {
        if let Some(interval) = interval {
            if next_send > Instant::now() {
                tokio::time::sleep_until(next_send.into()).await;
            }
            next_send += interval;
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = if args.sweep {
            let k = swept % keys;
            swept = swept.wrapping_add(workers * per_request);
            k
        } else {
            (n >> 16) % keys
        };
        let key = ip(k);
        let denied = match args.api {
            Api::Rls => rls
                .should_rate_limit(RateLimitRequest {
                    domain: args.domain.clone(),
                    descriptors: (0..per_request)
                        .map(|d| RateLimitDescriptor {
                            entries: vec![Entry {
                                key: "remote_address".into(),
                                value: if d == 0 {
                                    key.clone()
                                } else {
                                    ip((k + d) % keys)
                                },
                            }],
                            ..Default::default()
                        })
                        .collect(),
                    hits_addend: 1,
                })
                .await
                .map(|r| r.get_ref().overall_code == Code::OverLimit as i32),
            Api::Allow => sluice
                .should_allow(pb::ShouldAllowRequest {
                    subject: Some(if args.pad_bytes == 0 {
                        pb::Subject {
                            client_ip: key,
                            endpoint: "/api/browse".into(),
                            ..Default::default()
                        }
                    } else {
                        let pad = |field: &str| padded(field, &key, args.pad_bytes as usize);
                        pb::Subject {
                            client_ip: pad("ip"),
                            user_id: pad("user"),
                            user_agent: pad("agent"),
                            endpoint: format!("/{}", pad("endpoint")),
                            ..Default::default()
                        }
                    }),
                    domain: if args.domain == "sluice" {
                        String::new()
                    } else {
                        args.domain.clone()
                    },
                    ..Default::default()
                })
                .await
                .map(|r| !r.get_ref().allowed),
            Api::Lease => lease_pair(&mut sluice, &args.domain, key).await,
            Api::Reserve => reserve_pair(&mut sluice, &args.domain, key).await,
        };
        let took = now.elapsed().as_nanos() as u64;
        if now < measure_from {
            warmup += u64::from(denied.is_ok());
            continue;
        }
        match denied {
            Ok(d) => {
                latencies.push(took);
                over += d as u64;
            }
            Err(_) => errors += 1,
        }
    }
    (latencies, warmup, errors, over)
}

/// A lease on `key` (at most 1,000 holders, 30 s) acquired, then released; whether refused.
async fn lease_pair(
    sluice: &mut SluiceClient<Channel>,
    domain: &str,
    key: String,
) -> Result<bool, tonic::Status> {
    let granted = sluice
        .acquire_lease(pb::AcquireLeaseRequest {
            domain: domain.to_string(),
            key: key.clone(),
            limit: 1_000,
            ttl: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    if !granted.granted {
        return Ok(true);
    }
    sluice
        .release_lease(pb::ReleaseLeaseRequest {
            domain: domain.to_string(),
            key,
            lease_id: granted.lease_id,
        })
        .await?;
    Ok(false)
}

/// A reservation of 100 `tokens` for client `key`, then committed at 80; whether refused.
async fn reserve_pair(
    sluice: &mut SluiceClient<Channel>,
    domain: &str,
    key: String,
) -> Result<bool, tonic::Status> {
    let cost = |amount| pb::Cost {
        unit: "tokens".into(),
        amount,
    };
    let reserved = sluice
        .reserve(pb::ReserveRequest {
            subject: Some(pb::Subject {
                client_ip: key,
                endpoint: "/v1/complete".into(),
                ..Default::default()
            }),
            domain: domain.to_string(),
            estimate: vec![cost(100)],
            ttl: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
        })
        .await?
        .into_inner();
    if !reserved.allowed {
        return Ok(true);
    }
    sluice
        .commit_reservation(pb::CommitReservationRequest {
            reservation_id: reserved.reservation_id,
            actual: vec![cost(80)],
        })
        .await?;
    Ok(false)
}
