//! The operators' views: `GetStats` (traffic over a window from the per-minute history),
//! `ListRuleAudit` (who changed which rule), and what `GetClient` adds to the limits (the
//! anomaly action and the pressure cut in force). Reads only; translated to protobuf here.

use sluice_core::engine::Subject;
use sluice_core::learn::actions::ActionKind;
use sluice_core::time::NANOS_PER_MILLI;
use sluice_core::validate::{ValidationError, check_len};

use super::ApiError;
use super::requests::{DEFAULT_ROWS, MAX_ROWS};
use super::sluice_api::SluiceApi;
use crate::proto::sluice::v1 as pb;
use crate::store::traffic_stats::TrafficSums;

/// The longest window `GetStats` sums over.
const MAX_WINDOW_MS: i64 = 31 * 86_400_000;
const DAY_MS: i64 = 86_400_000;

/// Checks a `GetStats` window and fills in its defaults: (since, until, limit).
pub fn stats_window(
    req: &pb::GetStatsRequest,
    now_ms: i64,
) -> Result<(i64, i64, u32), ValidationError> {
    for (field, value) in [("since_ms", req.since_ms), ("until_ms", req.until_ms)] {
        if value < 0 {
            return Err(ValidationError::new(field, "must not be negative"));
        }
    }
    if req.limit > MAX_ROWS {
        return Err(ValidationError::new(
            "limit",
            format!("{} is more than {MAX_ROWS}", req.limit),
        ));
    }
    let until = if req.until_ms == 0 {
        now_ms.saturating_add(1)
    } else {
        req.until_ms
    };
    let since = if req.since_ms == 0 {
        until - DAY_MS
    } else {
        req.since_ms
    };
    if since >= until {
        return Err(ValidationError::new(
            "until_ms",
            format!("{until} is not after since_ms {since}"),
        ));
    }
    if until - since > MAX_WINDOW_MS {
        return Err(ValidationError::new(
            "since_ms",
            "the window is longer than 31 days",
        ));
    }
    let limit = if req.limit == 0 {
        DEFAULT_ROWS
    } else {
        req.limit
    };
    Ok((since, until, limit))
}

fn traffic(s: &TrafficSums) -> pb::TrafficStats {
    let n = |v: i64| v.max(0) as u64;
    let tier = match s.tier.as_str() {
        "PRM" => pb::Tier::Prm,
        "STD" => pb::Tier::Std,
        _ => pb::Tier::Unspecified,
    };
    pb::TrafficStats {
        endpoint: s.endpoint.clone(),
        tier: tier as i32,
        requests: n(s.requests),
        allowed: n(s.allowed),
        denied: n(s.denied),
        denied_limit: n(s.denied - s.denied_anomaly - s.denied_cut),
        denied_anomaly: n(s.denied_anomaly),
        denied_pressure_cut: n(s.denied_cut),
        errors: n(s.errors),
    }
}

impl SluiceApi {
    pub(super) async fn get_stats_of(
        &self,
        req: &pb::GetStatsRequest,
    ) -> Result<pb::GetStatsResponse, ApiError> {
        let (since_ms, until_ms, limit) = stats_window(req, self.handles.clock.now_millis())?;
        let stats = self
            .handles
            .database
            .window_stats(since_ms, until_ms, limit)
            .await?;
        Ok(pb::GetStatsResponse {
            since_ms,
            until_ms,
            total: Some(traffic(&stats.total)),
            unique_clients: stats.unique_clients.max(0) as u64,
            endpoints: stats.endpoints.iter().map(traffic).collect(),
            truncated: stats.truncated,
            quotas: Some(quota_stats(self.handles.quotas.snapshot())),
        })
    }

    pub(super) async fn list_rule_audit_of(
        &self,
        req: &pb::ListRuleAuditRequest,
    ) -> Result<pb::ListRuleAuditResponse, ApiError> {
        check_len("rule_id", &req.rule_id, self.handles.caps.max_value_len * 4)?;
        if req.limit > MAX_ROWS {
            return Err(ValidationError::new(
                "limit",
                format!("{} is more than {MAX_ROWS}", req.limit),
            )
            .into());
        }
        let limit = if req.limit == 0 {
            DEFAULT_ROWS
        } else {
            req.limit
        };
        let entries = self.handles.database.audit_log(&req.rule_id, limit).await?;
        Ok(pb::ListRuleAuditResponse {
            entries: entries
                .into_iter()
                .map(|e| pb::RuleAuditEntry {
                    revision: e.revision,
                    at_ms: e.at_ms,
                    actor: e.actor,
                    action: e.action,
                    rule_id: e.rule_id,
                    before_json: e.before.unwrap_or_default(),
                    after_json: e.after.unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// The anomaly action on a subject, as `GetClient` shows it.
    pub(super) fn client_action(&self, subject: &Subject<'_>) -> Option<pb::ClientAction> {
        let ms = |n: u64| (n / NANOS_PER_MILLI) as i64;
        self.handles
            .engine
            .action_for(subject, self.handles.clock.now())
            .map(|a| pb::ClientAction {
                client: a.client.to_string(),
                kind: a.kind.name().into(),
                per_minute: match a.kind {
                    ActionKind::Throttle { per_minute } => per_minute,
                    ActionKind::Block => 0,
                },
                signal: a.signal.name().into(),
                why: a.why.to_string(),
                score: a.score,
                since_ms: ms(a.since),
                expires_at_ms: ms(a.expires_at),
                shadow: a.shadow,
            })
    }

    /// The cut in force and why (`""` with factor 1 when there is none).
    pub(super) fn pressure_in_force(&self) -> (f64, String) {
        let factor = self.handles.engine.pressure();
        let cause = match self.handles.learning.status().cut.as_ref() {
            Some(cut) if factor < 1.0 => cut.cause.describe(),
            _ if factor < 1.0 => "a cut another replica shares (fleet)".into(),
            _ => String::new(),
        };
        (factor, cause)
    }
}

fn quota_stats(q: crate::service::quotas::QuotaSnapshot) -> pb::QuotaStats {
    pb::QuotaStats {
        streams: q.streams,
        buckets: q.buckets,
        reports: q.reports,
        requests_allowed: q.requests_allowed,
        requests_denied: q.requests_denied,
        assignments: q
            .assignments
            .into_iter()
            .map(|(reason, n)| (reason.to_string(), n))
            .collect(),
        refused: q.refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_windows_are_checked_and_defaulted() {
        let now = 10 * DAY_MS;
        let req = |since_ms, until_ms, limit| pb::GetStatsRequest {
            since_ms,
            until_ms,
            limit,
        };
        assert_eq!(
            stats_window(&req(0, 0, 0), now).unwrap(),
            (now + 1 - DAY_MS, now + 1, 100)
        );
        assert_eq!(stats_window(&req(5, 9, 7), now).unwrap(), (5, 9, 7));
        for (bad, field) in [
            (req(-1, 0, 0), "since_ms"),
            (req(0, -1, 0), "until_ms"),
            (req(9, 5, 0), "until_ms"),
            (req(0, 0, 1001), "limit"),
            (req(1, 40 * DAY_MS, 0), "since_ms"),
        ] {
            assert_eq!(stats_window(&bad, now).unwrap_err().field, field, "{bad:?}");
        }
    }
}
