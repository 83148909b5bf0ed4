//! Envoy's `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.
//!
//! Semantics, as Envoy and envoyproxy/ratelimit define them: request `hits_addend` (0 = 1) and
//! the per-descriptor override (0 = check without consuming), `is_negative_hits` (give back),
//! a descriptor's `limit` override, one status per descriptor in order, OVER_LIMIT overall if
//! any descriptor is. Sluice differs in one deliberate way: a denied request consumes nothing.

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use smallvec::SmallVec;
use tonic::{Request, Response, Status};

use super::convert::{unit_from_envoy_override, unit_to_envoy};
use std::sync::Arc;

use super::ApiError;
use crate::service::handles::Handles;
use sluice_core::bucket::Op;
use sluice_core::engine::AnomalyHit;
use sluice_core::engine::DescriptorInput;
use sluice_core::engine::per_unit;

use sluice_core::headers;
use sluice_core::headers::HeaderStyle;
use sluice_core::limit::Rate;
use sluice_core::validate::InputLimits;
use sluice_core::validate::{ValidationError, check_domain, check_len_of};

/// Envoy's rate-limit service: the service's handle bundle and the header style of its replies.
pub struct Rls {
    pub handles: Arc<Handles>,
    pub headers: HeaderStyle,
}

/// Validates a request and borrows it as engine input.
fn inputs<'r>(
    caps: &InputLimits,
    req: &'r RateLimitRequest,
) -> Result<SmallVec<[DescriptorInput<'r>; 4]>, ValidationError> {
    check_domain("domain", &req.domain, caps)?;
    if req.descriptors.len() > caps.max_descriptors {
        return Err(ValidationError::new(
            "descriptors",
            format!(
                "has {} descriptors, more than the maximum of {}",
                req.descriptors.len(),
                caps.max_descriptors
            ),
        ));
    }
    let request_hits = if req.hits_addend == 0 {
        1
    } else {
        req.hits_addend as u64
    };
    let mut out = SmallVec::with_capacity(req.descriptors.len());
    for (i, d) in req.descriptors.iter().enumerate() {
        let at = |f: &str| format!("descriptors[{i}].{f}");
        if d.entries.is_empty() {
            return Err(ValidationError::new(at("entries"), "must not be empty"));
        }
        if d.entries.len() > caps.max_entries {
            return Err(ValidationError::new(
                at("entries"),
                format!(
                    "has {} entries, more than the maximum of {}",
                    d.entries.len(),
                    caps.max_entries
                ),
            ));
        }
        let mut entries = SmallVec::with_capacity(d.entries.len());
        for (j, e) in d.entries.iter().enumerate() {
            if e.key.is_empty() {
                return Err(ValidationError::new(
                    at(&format!("entries[{j}].key")),
                    "must not be empty",
                ));
            }
            // Every call checks these: the field's name is built only when one fails.
            check_len_of(
                || at(&format!("entries[{j}].key")),
                &e.key,
                caps.max_key_len,
            )?;
            check_len_of(
                || at(&format!("entries[{j}].value")),
                &e.value,
                caps.max_value_len,
            )?;
            entries.push((e.key.as_str(), e.value.as_str()));
        }
        let hits = d.hits_addend.as_ref().map_or(request_hits, |h| h.value);
        let op = if d.is_negative_hits {
            Op::Refund
        } else if hits == 0 {
            Op::Check
        } else {
            Op::Consume
        };
        let limit_override = match &d.limit {
            None => None,
            Some(l) => {
                if l.requests_per_unit == 0 {
                    return Err(ValidationError::new(
                        at("limit.requests_per_unit"),
                        "must be greater than zero",
                    ));
                }
                Some(Rate {
                    requests_per_unit: l.requests_per_unit as u64,
                    unit: unit_from_envoy_override(&at("limit.unit"), l.unit)?,
                    unit_multiplier: 1,
                })
            }
        };
        out.push(DescriptorInput {
            entries,
            hits,
            op,
            limit_override,
        });
    }
    Ok(out)
}

#[tonic::async_trait]
impl RateLimitService for Rls {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let _timer = self.handles.rpc.time("ShouldRateLimit");
        let req = request.get_ref();
        let inputs = inputs(&self.handles.caps, req).map_err(ApiError::from)?;
        let now = self.handles.clock.now();
        let verdict = self
            .handles
            .decider
            .check_descriptors(&req.domain, &inputs, now)
            .await;
        let statuses = verdict
            .statuses
            .iter()
            .map(|s| DescriptorStatus {
                code: if s.over_limit {
                    Code::OverLimit
                } else {
                    Code::Ok
                } as i32,
                current_limit: s.limit.as_ref().map(|l| {
                    // Envoy's limit has no multiplier: a period of several units is told per
                    // one unit, never above it ("5 per 30 seconds": 10 a minute).
                    let (requests, unit) =
                        per_unit(l.quota.limit, l.quota.unit, l.quota.multiplier);
                    RateLimit {
                        name: l.label.name.clone(),
                        requests_per_unit: requests.min(u32::MAX as u64) as u32,
                        unit: unit_to_envoy(unit) as i32,
                    }
                }),
                limit_remaining: s.remaining.min(u32::MAX as u64) as u32,
                duration_until_reset: s.limit.as_ref().map(|_| {
                    envoy_types::pb::google::protobuf::Duration {
                        seconds: (s.reset_after / 1_000_000_000) as i64,
                        nanos: (s.reset_after % 1_000_000_000) as i32,
                    }
                }),
                quota: None,
            })
            .collect();
        let mut rendered = headers::render(self.headers, verdict.deciding(), verdict.over_limit);
        // An anomaly action met: say which and with what score, to the client (headers) and to
        // Envoy's other filters and access log (dynamic metadata).
        let mut dynamic_metadata = None;
        if let Some(hit) = verdict.anomaly {
            let reason = anomaly_reason(&hit);
            rendered.push(("x-sluice-anomaly", reason.to_string()));
            rendered.push(("x-sluice-anomaly-score", format!("{:.3}", hit.score)));
            dynamic_metadata = Some(anomaly_metadata(reason, &hit));
        }
        // Denied by a limit cut under pressure (forecast spike or backend load): say so, so
        // dashboards can tell adaptive throttling from ordinary limits.
        if verdict.forecast_cut {
            rendered.push(("x-sluice-throttled", "forecast".to_string()));
            let fields = dynamic_metadata.get_or_insert_with(Default::default);
            fields.fields.insert(
                "sluice_throttled".to_string(),
                envoy_types::pb::google::protobuf::Value {
                    kind: Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(
                        "forecast".to_string(),
                    )),
                },
            );
        }
        let response_headers_to_add = rendered
            .into_iter()
            .map(|(key, value)| HeaderValue {
                key: key.to_string(),
                value,
                raw_value: Vec::new(),
            })
            .collect();
        Ok(Response::new(RateLimitResponse {
            overall_code: if verdict.over_limit {
                Code::OverLimit
            } else {
                Code::Ok
            } as i32,
            statuses,
            response_headers_to_add,
            dynamic_metadata,
            ..Default::default()
        }))
    }
}

/// `blocked`, `throttled`, with `-shadow` when only recorded.
fn anomaly_reason(hit: &AnomalyHit) -> &'static str {
    match (hit.kind.name(), hit.shadow) {
        ("block", false) => "blocked",
        ("block", true) => "blocked-shadow",
        (_, false) => "throttled",
        (_, true) => "throttled-shadow",
    }
}

fn anomaly_metadata(reason: &str, hit: &AnomalyHit) -> envoy_types::pb::google::protobuf::Struct {
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
    let mut fields = std::collections::HashMap::new();
    fields.insert(
        "sluice_anomaly".to_string(),
        Value {
            kind: Some(Kind::StringValue(reason.to_string())),
        },
    );
    fields.insert(
        "sluice_anomaly_score".to_string(),
        Value {
            kind: Some(Kind::NumberValue(hit.score)),
        },
    );
    Struct { fields }
}
