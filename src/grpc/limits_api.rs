//! `sluice.v1.Sluice`'s limits beyond one decision: concurrency leases, reserve and commit, and
//! an admin's reset of one key's counters. Each handler checks its input (a bad field is named
//! and nothing changes), asks the service part that knows where the state lives, and answers.
//!
//! Not here: lease and reservation semantics (`sluice_core::lease`, `sluice_core::reservation`),
//! where their state lives (`service::leases`, `service::reservations`).

use tonic::Request;

use super::ApiError;
use super::convert::{duration, subject_from_proto, verdict_reason};
use super::sluice_api::SluiceApi;
use crate::proto::sluice::v1 as pb;
use crate::service::leases::lease_key;
use crate::service::reservations::{ReservationError, Settle};

use sluice_core::lease::{Acquired, MAX_LEASE_LIMIT, MAX_LEASE_TTL};
use sluice_core::reservation::{MAX_COSTS, MAX_RESERVATION_TTL};
use sluice_core::time::Nanos;
use sluice_core::validate::{ValidationError, check_len};

type Result<T> = std::result::Result<T, ApiError>;

/// A ttl: present, more than zero, at most `max`.
fn ttl(field: &str, given: Option<&prost_types::Duration>, max: Nanos) -> Result<Nanos> {
    let d = given.ok_or_else(|| ValidationError::new(field, "is required"))?;
    let nanos = i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos);
    if nanos <= 0 || nanos > i128::from(max) {
        return Err(ValidationError::new(
            field,
            format!("must be more than 0 and at most {} s", max / 1_000_000_000),
        )
        .into());
    }
    Ok(nanos as Nanos)
}

/// An id this server handed out: 32 hex digits.
fn id(field: &str, text: &str) -> Result<u128> {
    if text.len() != 32 {
        return Err(
            ValidationError::new(field, "is not an id this server gave (32 hex digits)").into(),
        );
    }
    u128::from_str_radix(text, 16).map_err(|_| {
        ValidationError::new(field, "is not an id this server gave (32 hex digits)").into()
    })
}

fn hex(id: u128) -> String {
    format!("{id:032x}")
}

/// Costs by unit: at most `MAX_COSTS`, each unit named once and within the key length.
fn costs<'a>(field: &str, given: &'a [pb::Cost], max_len: usize) -> Result<Vec<(&'a str, u64)>> {
    if given.len() > MAX_COSTS {
        return Err(ValidationError::new(
            field,
            format!(
                "names {} units, more than the maximum of {MAX_COSTS}",
                given.len()
            ),
        )
        .into());
    }
    let mut out: Vec<(&str, u64)> = Vec::with_capacity(given.len());
    for (i, c) in given.iter().enumerate() {
        let at = format!("{field}[{i}].unit");
        if c.unit.is_empty() {
            return Err(ValidationError::new(at, "must name a limit").into());
        }
        check_len(&at, &c.unit, max_len)?;
        if out.iter().any(|(u, _)| *u == c.unit) {
            return Err(ValidationError::new(at, format!("{:?} is named twice", c.unit)).into());
        }
        out.push((c.unit.as_str(), c.amount));
    }
    Ok(out)
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::CountersUnavailable(format!("{what}: the shared counters did not answer: {e}"))
}

impl SluiceApi {
    /// The lease's key (domain and key, checked).
    fn lease_of(&self, domain: &str, key: &str) -> Result<u128> {
        let domain = self.domain(domain)?;
        if key.is_empty() {
            return Err(ValidationError::new("key", "must not be empty").into());
        }
        check_len("key", key, self.handles.caps.max_value_len)?;
        Ok(lease_key(domain, key))
    }

    pub(super) async fn acquire_lease_call(
        &self,
        req: &pb::AcquireLeaseRequest,
    ) -> Result<pb::AcquireLeaseResponse> {
        let key = self.lease_of(&req.domain, &req.key)?;
        if req.limit == 0 || req.limit > MAX_LEASE_LIMIT {
            return Err(ValidationError::new(
                "limit",
                format!("must be between 1 and {MAX_LEASE_LIMIT}"),
            )
            .into());
        }
        let ttl = ttl("ttl", req.ttl.as_ref(), MAX_LEASE_TTL)?;
        let lease_id = match req.lease_id.as_str() {
            "" => rand::random(),
            given => id("lease_id", given)?,
        };
        let now = self.handles.clock.now();
        let acquired = self
            .handles
            .leases
            .acquire(key, lease_id, req.limit, ttl, now)
            .await
            .map_err(|e| unavailable("no lease was taken", e))?;
        Ok(match acquired {
            Acquired::Granted {
                expires_at,
                holders,
            } => pb::AcquireLeaseResponse {
                granted: true,
                lease_id: hex(lease_id),
                expires_in: Some(duration(expires_at.saturating_sub(now))),
                holders,
                retry_after: None,
            },
            Acquired::Full {
                holders,
                retry_after,
            } => pb::AcquireLeaseResponse {
                granted: false,
                lease_id: String::new(),
                expires_in: None,
                holders,
                retry_after: Some(duration(retry_after)),
            },
            Acquired::TooManyKeys => {
                return Err(ApiError::Exhausted(format!(
                    "key: {} keys hold leases, the most this server keeps; retry when some are released",
                    crate::service::leases::MAX_LEASE_KEYS
                )));
            }
        })
    }

    pub(super) async fn renew_lease_call(
        &self,
        req: &pb::RenewLeaseRequest,
    ) -> Result<pb::RenewLeaseResponse> {
        let key = self.lease_of(&req.domain, &req.key)?;
        let lease_id = id("lease_id", &req.lease_id)?;
        let ttl = ttl("ttl", req.ttl.as_ref(), MAX_LEASE_TTL)?;
        let now = self.handles.clock.now();
        let renewed = self
            .handles
            .leases
            .renew(key, lease_id, ttl, now)
            .await
            .map_err(|e| unavailable("the lease was not renewed", e))?;
        Ok(pb::RenewLeaseResponse {
            renewed: renewed.is_some(),
            expires_in: renewed.map(|at| duration(at.saturating_sub(now))),
        })
    }

    pub(super) async fn release_lease_call(
        &self,
        req: &pb::ReleaseLeaseRequest,
    ) -> Result<pb::ReleaseLeaseResponse> {
        let key = self.lease_of(&req.domain, &req.key)?;
        let lease_id = id("lease_id", &req.lease_id)?;
        let released = self
            .handles
            .leases
            .release(key, lease_id, self.handles.clock.now())
            .await
            .map_err(|e| {
                unavailable("the lease was not released; it expires at its deadline", e)
            })?;
        Ok(pb::ReleaseLeaseResponse { released })
    }

    pub(super) async fn reserve_call(
        &self,
        req: &pb::ReserveRequest,
    ) -> Result<pb::ReserveResponse> {
        let subject = subject_from_proto("subject", req.subject.as_ref(), &self.handles.caps)?;
        let domain = self.domain(&req.domain)?;
        let estimate = costs("estimate", &req.estimate, self.handles.caps.max_key_len)?;
        let ttl = ttl("ttl", req.ttl.as_ref(), MAX_RESERVATION_TTL)?;
        let now = self.handles.clock.now();
        let (verdict, id) = self
            .handles
            .reservations
            .reserve(
                domain,
                &subject,
                &estimate,
                ttl,
                now,
                self.handles.clock.now_millis() as u64,
            )
            .await
            .map_err(reservation_error)?;
        let deciding = verdict.deciding();
        let allowed = id.is_some();
        let limit = deciding.and_then(|s| s.limit.as_ref());
        Ok(pb::ReserveResponse {
            allowed,
            reservation_id: id.map_or_else(String::new, hex),
            expires_in: id.map(|_| duration(ttl)),
            limit_name: limit.map_or_else(String::new, |l| l.label.name.clone()),
            remaining: deciding.map_or(0, |s| s.remaining),
            retry_after: deciding
                .filter(|_| !allowed)
                .map(|s| duration(s.retry_after)),
            reason: verdict_reason(&verdict, allowed) as i32,
        })
    }

    pub(super) async fn settle_call(
        &self,
        reservation_id: &str,
        how: Settle,
        actual: &[pb::Cost],
    ) -> Result<pb::SettleReservationResponse> {
        let id = id("reservation_id", reservation_id)?;
        let actual = costs("actual", actual, self.handles.caps.max_key_len)?;
        let settled = self
            .handles
            .reservations
            .settle(
                id,
                how,
                &actual,
                self.handles.clock.now(),
                self.handles.clock.now_millis() as u64,
            )
            .await
            .map_err(reservation_error)?;
        Ok(pb::SettleReservationResponse { settled })
    }

    pub(super) async fn reset_key_call(
        &self,
        request: &Request<pb::ResetKeyRequest>,
    ) -> Result<pb::ResetKeyResponse> {
        let req = request.get_ref();
        let domain = self.domain(&req.domain)?;
        let caps = &self.handles.caps;
        if req.descriptor.is_empty() || req.descriptor.len() > caps.max_entries {
            return Err(ValidationError::new(
                "descriptor",
                format!("must have 1 to {} entries", caps.max_entries),
            )
            .into());
        }
        for (i, e) in req.descriptor.iter().enumerate() {
            check_len(&format!("descriptor[{i}].key"), &e.key, caps.max_key_len)?;
            check_len(
                &format!("descriptor[{i}].value"),
                &e.value,
                caps.max_value_len,
            )?;
        }
        let entries: Vec<(&str, &str)> = req
            .descriptor
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        let Some((rule_id, keys)) = self.handles.engine.descriptor_bucket_keys(domain, &entries)
        else {
            return Ok(pb::ResetKeyResponse::default());
        };
        // Written before anything is reset: a reset the audit log cannot record is not made.
        let actor = Self::actor(request, &req.actor);
        let body = serde_json::json!({
            "domain": domain,
            "descriptor": entries.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "buckets": keys.len(),
        })
        .to_string();
        self.handles
            .database
            .audit_event(
                self.handles.clock.now_millis(),
                &actor,
                "reset",
                &rule_id,
                &body,
            )
            .await?;
        let reset = self
            .handles
            .decider
            .reset_buckets(&keys)
            .await
            .map_err(|e| {
                unavailable(
                    "this replica's buckets were reset; the shared ones were not",
                    e,
                )
            })?;
        tracing::info!(domain, rule = %rule_id, actor, reset, "key reset");
        Ok(pb::ResetKeyResponse {
            rule_id: rule_id.to_string(),
            buckets_reset: reset as u32,
        })
    }
}

fn reservation_error(e: ReservationError) -> ApiError {
    match e {
        ReservationError::TooMany(_) => ApiError::Exhausted(e.to_string()),
        ReservationError::Counters(_) | ReservationError::Unreadable(_) => {
            ApiError::CountersUnavailable(e.to_string())
        }
    }
}
