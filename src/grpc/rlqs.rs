//! Envoy's Rate Limit Quota Service (`envoy.service.rate_limit_quota.v3`,
//! `StreamRateLimitQuotas`): each Envoy streams its usage per bucket and enforces the
//! assignment it is sent. A report's buckets are checked and handed to the quota board
//! (`service::quotas`); each report is answered with the assignment of every bucket in it, and
//! every second what changed (a share that moved, a client blocked or let go, a cut) is pushed
//! without waiting for the next report. The stream's first report names the domain (the
//! default domain otherwise). A bucket over the caps ends the stream with the cap named.
//!
//! Not here: how a quota is divided (`sluice_core::quota`) or what governs a bucket
//! (`Engine::bucket_quota`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::r#type::v3::rate_limit_strategy::{
    BlanketRule, RequestsPerTimeUnit, Strategy,
};
use envoy_types::pb::envoy::r#type::v3::{RateLimitStrategy, RateLimitUnit};
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_response::bucket_action::{
    self, AbandonAction, QuotaAssignmentAction,
};
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_response::BucketAction;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_service_server::RateLimitQuotaService;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::{
    BucketId, RateLimitQuotaResponse, RateLimitQuotaUsageReports,
};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::ApiError;
use crate::service::handles::Handles;
use sluice_core::engine::MAX_OBSERVED_PER_REPORT;
use sluice_core::limit::Unit;
use sluice_core::quota::{Assignment, BucketKey, StreamId};
use sluice_core::time::NANOS_PER_SEC;
use sluice_core::validate::{InputLimits, ValidationError, check_domain, check_len_of};

/// How long an assignment holds without news: Envoy falls back to its
/// `expired_assignment_behavior` this long after Sluice went silent.
const ASSIGNMENT_TTL: Duration = Duration::from_secs(30);

/// Most requests of one report message observed one by one, all its buckets together (each
/// bucket at most `MAX_OBSERVED_PER_REPORT`): a report of many buckets costs bounded CPU.
const MAX_OBSERVED_PER_MESSAGE: u64 = 10_000;

/// How often a stream's assignments are looked at again between reports.
const REPUSH_EVERY: Duration = Duration::from_secs(1);

/// Envoy's quota service over the service's handles.
pub struct Rlqs {
    pub handles: Arc<Handles>,
}

type ResponseStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<RateLimitQuotaResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RateLimitQuotaService for Rlqs {
    type StreamRateLimitQuotasStream = ResponseStream;

    async fn stream_rate_limit_quotas(
        &self,
        request: Request<Streaming<RateLimitQuotaUsageReports>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(serve_stream(self.handles.clone(), inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type Sender = mpsc::Sender<Result<RateLimitQuotaResponse, Status>>;

/// One Envoy's stream, until it closes (or its reports are refused).
async fn serve_stream(
    h: Arc<Handles>,
    mut inbound: Streaming<RateLimitQuotaUsageReports>,
    tx: Sender,
) {
    let stream = h.quotas.open();
    let mut domain: Option<String> = None;
    let mut sent: FxHashMap<BucketKey, Assignment> = FxHashMap::default();
    let mut repush = tokio::time::interval(REPUSH_EVERY);
    repush.tick().await;
    loop {
        tokio::select! {
            message = inbound.message() => {
                let reports = match message {
                    Ok(Some(reports)) => reports,
                    // Closed by Envoy, or the connection went away.
                    Ok(None) | Err(_) => break,
                };
                match on_reports(&h, stream, &mut domain, reports) {
                    Ok(keys) => {
                        let actions = assignments(&h, stream, keys, &mut sent, true);
                        if tx.send(Ok(response(actions))).await.is_err() {
                            break;
                        }
                    }
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                }
            }
            _ = repush.tick() => {
                let keys = h.quotas.buckets_of(stream);
                let actions = assignments(&h, stream, keys, &mut sent, false);
                if !actions.is_empty() && tx.send(Ok(response(actions))).await.is_err() {
                    break;
                }
            }
            () = tx.closed() => break,
        }
    }
    h.quotas.close(stream);
}

/// Checks and records one report message; returns the buckets it named.
fn on_reports(
    h: &Handles,
    stream: StreamId,
    domain: &mut Option<String>,
    reports: RateLimitQuotaUsageReports,
) -> Result<Vec<BucketKey>, Status> {
    let caps = &h.caps;
    if !reports.domain.is_empty() {
        check_domain("domain", &reports.domain, caps).map_err(ApiError::from)?;
        domain.get_or_insert(reports.domain);
    }
    let domain = domain
        .get_or_insert_with(|| h.default_domain.clone())
        .clone();
    let max = caps.max_descriptors.saturating_mul(16).max(64);
    if reports.bucket_quota_usages.len() > max {
        return Err(ApiError::from(ValidationError::new(
            "bucket_quota_usages",
            format!(
                "has {} buckets, more than the maximum of {max} a report",
                reports.bucket_quota_usages.len()
            ),
        ))
        .into());
    }
    let now = h.clock.now();
    let mut observe_budget = MAX_OBSERVED_PER_MESSAGE;
    let mut keys = Vec::with_capacity(reports.bucket_quota_usages.len());
    for (i, usage) in reports.bucket_quota_usages.into_iter().enumerate() {
        let field = |name: &str| format!("bucket_quota_usages[{i}].{name}");
        let key = bucket_key(&domain, usage.bucket_id.as_ref(), caps, &field("bucket_id"))
            .map_err(ApiError::from)?;
        let elapsed = usage.time_elapsed.map_or(0, |d| {
            (d.seconds.clamp(0, 86_400) as u64) * NANOS_PER_SEC
                + d.nanos.clamp(0, 999_999_999) as u64
        });
        h.quotas
            .report(
                stream,
                &key,
                usage.num_requests_allowed,
                usage.num_requests_denied,
                elapsed,
                now,
            )
            .map_err(|e| Status::resource_exhausted(format!("{}: {e}", field("bucket_id"))))?;
        observe_budget -= h.engine.record_usage(
            &key.fields(),
            usage.num_requests_allowed,
            usage.num_requests_denied,
            elapsed,
            now,
            observe_budget.min(MAX_OBSERVED_PER_REPORT),
        );
        keys.push(key);
    }
    Ok(keys)
}

/// A report's bucket id, checked against the input caps (its entries as a descriptor's).
fn bucket_key(
    domain: &str,
    id: Option<&BucketId>,
    caps: &InputLimits,
    field: &str,
) -> Result<BucketKey, ValidationError> {
    let Some(id) = id.filter(|id| !id.bucket.is_empty()) else {
        return Err(ValidationError::new(field, "must name at least one entry"));
    };
    if id.bucket.len() > caps.max_entries {
        return Err(ValidationError::new(
            field,
            format!(
                "has {} entries, more than the maximum of {}",
                id.bucket.len(),
                caps.max_entries
            ),
        ));
    }
    for (key, value) in &id.bucket {
        check_len_of(
            || format!("{field}.bucket[{key:.32}] (key)"),
            key,
            caps.max_key_len,
        )?;
        check_len_of(
            || format!("{field}.bucket[{key:.32}]"),
            value,
            caps.max_value_len,
        )?;
        if key.is_empty() {
            return Err(ValidationError::new(field, "an entry's key is empty"));
        }
    }
    Ok(BucketKey::new(
        domain,
        id.bucket.iter().map(|(k, v)| (k.clone(), v.clone())),
    ))
}

/// The assignments of `keys` for `stream`: all of them (`all`, answering a report), or those
/// that changed since last sent.
fn assignments(
    h: &Handles,
    stream: StreamId,
    keys: Vec<BucketKey>,
    sent: &mut FxHashMap<BucketKey, Assignment>,
    all: bool,
) -> Vec<BucketAction> {
    let now = h.clock.now();
    let mut actions = Vec::new();
    for key in keys {
        let assignment = h.quotas.assignment(&h.engine, stream, &key, now);
        if !all && sent.get(&key) == Some(&assignment) {
            continue;
        }
        actions.push(bucket_action(&key, &assignment));
        sent.insert(key, assignment);
    }
    actions
}

fn response(bucket_action: Vec<BucketAction>) -> RateLimitQuotaResponse {
    RateLimitQuotaResponse { bucket_action }
}

fn bucket_action(key: &BucketKey, assignment: &Assignment) -> BucketAction {
    let bucket_id = Some(BucketId {
        bucket: key.entries.iter().cloned().collect(),
    });
    let strategy = match assignment {
        Assignment::Abandon => {
            return BucketAction {
                bucket_id,
                bucket_action: Some(bucket_action::BucketAction::AbandonAction(AbandonAction {})),
            };
        }
        Assignment::DenyAll => Strategy::BlanketRule(BlanketRule::DenyAll as i32),
        Assignment::Quota { requests, unit, .. } => {
            let (requests, unit) = envoy_rate(*requests, *unit);
            Strategy::RequestsPerTimeUnit(RequestsPerTimeUnit {
                requests_per_time_unit: requests,
                time_unit: unit as i32,
            })
        }
    };
    BucketAction {
        bucket_id,
        bucket_action: Some(bucket_action::BucketAction::QuotaAssignmentAction(
            QuotaAssignmentAction {
                assignment_time_to_live: Some(ProtoDuration {
                    seconds: ASSIGNMENT_TTL.as_secs() as i64,
                    nanos: 0,
                }),
                rate_limit_strategy: Some(RateLimitStrategy {
                    strategy: Some(strategy),
                }),
            },
        )),
    }
}

/// A quota in Envoy's units (which have no week: a week's quota is given per day, rounded
/// down, so it is never exceeded).
fn envoy_rate(requests: u64, unit: Unit) -> (u64, RateLimitUnit) {
    match unit {
        Unit::Second => (requests, RateLimitUnit::Second),
        Unit::Minute => (requests, RateLimitUnit::Minute),
        Unit::Hour => (requests, RateLimitUnit::Hour),
        Unit::Day => (requests, RateLimitUnit::Day),
        Unit::Week => (requests / 7, RateLimitUnit::Day),
        Unit::Month => (requests, RateLimitUnit::Month),
        Unit::Year => (requests, RateLimitUnit::Year),
    }
}
