//! `ListAdjustments` and `ListScores`: the learning loop's history, read back from the database
//! (the only RPCs that read it; decisions never do), translated to protobuf.

use super::{ApiError, AppState};
use crate::core::validate::ValidationError;
use crate::proto::sluice::v1 as pb;
use crate::rules_service::ManageError;
use crate::store::history::{HistoryQuery, StoredAdjustment, StoredScore};

/// Rows returned when the request does not say, and the most it may ask for.
pub const DEFAULT_ROWS: u32 = 100;
pub const MAX_ROWS: u32 = 1000;

/// Checks a request and fills in its defaults (`until_ms` 0 is `now_ms`).
pub fn query(
    req: &pb::ListHistoryRequest,
    max_client_len: usize,
    now_ms: i64,
) -> Result<HistoryQuery, ValidationError> {
    if req.client.len() > max_client_len {
        return Err(ValidationError::new(
            "client",
            format!("is {} bytes, more than {max_client_len}", req.client.len()),
        ));
    }
    if req.limit > MAX_ROWS {
        return Err(ValidationError::new(
            "limit",
            format!("{} is more than {MAX_ROWS}", req.limit),
        ));
    }
    if req.since_ms < 0 || req.until_ms < 0 {
        let field = if req.since_ms < 0 {
            "since_ms"
        } else {
            "until_ms"
        };
        return Err(ValidationError::new(field, "must not be negative"));
    }
    let until_ms = if req.until_ms == 0 {
        now_ms.saturating_add(1)
    } else {
        req.until_ms
    };
    if req.since_ms >= until_ms {
        return Err(ValidationError::new(
            "until_ms",
            format!("{until_ms} is not after since_ms {}", req.since_ms),
        ));
    }
    Ok(HistoryQuery {
        client: (!req.client.is_empty()).then(|| req.client.clone()),
        since_ms: req.since_ms,
        until_ms,
        limit: if req.limit == 0 {
            DEFAULT_ROWS
        } else {
            req.limit
        },
    })
}

pub async fn list_adjustments(
    state: &AppState,
    req: &pb::ListHistoryRequest,
) -> Result<pb::ListAdjustmentsResponse, ApiError> {
    let q = query(req, state.caps.max_value_len, state.clock.now_millis())?;
    let store = state.rules.connected()?;
    let rows = store.adjustments(&q).await.map_err(ManageError::from)?;
    Ok(pb::ListAdjustmentsResponse {
        adjustments: rows.into_iter().map(adjustment).collect(),
    })
}

pub async fn list_scores(
    state: &AppState,
    req: &pb::ListHistoryRequest,
) -> Result<pb::ListScoresResponse, ApiError> {
    let q = query(req, state.caps.max_value_len, state.clock.now_millis())?;
    let store = state.rules.connected()?;
    let rows = store.scores(&q).await.map_err(ManageError::from)?;
    Ok(pb::ListScoresResponse {
        scores: rows.into_iter().map(score).collect(),
    })
}

fn adjustment(r: StoredAdjustment) -> pb::Adjustment {
    pb::Adjustment {
        at_ms: r.at_ms,
        client: r.client,
        from_action: r.from_action.unwrap_or_default(),
        to_action: r.to_action.unwrap_or_default(),
        score: r.score,
        cause: r.cause,
        shadow: r.shadow,
        expires_at_ms: r.expires_at_ms.unwrap_or(0),
    }
}

fn score(r: StoredScore) -> pb::ClientScore {
    // Written by this service as a JSON object of numbers; a row that is not (edited by hand)
    // comes back without features rather than failing the whole listing.
    let features = serde_json::from_str(&r.features).unwrap_or_default();
    pb::ClientScore {
        minute_ms: r.minute_ms,
        client: r.client,
        score: r.score,
        requests: r.requests.max(0) as u64,
        features,
        action: r.action.unwrap_or_default(),
        model_version: r.model_version.max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (request, Ok((client, since, until, limit)) or Err(field))
    #[test]
    fn requests_are_checked_and_defaulted() {
        type Expected = Result<(Option<&'static str>, i64, i64, u32), &'static str>;
        let req = |client: &str, since_ms, until_ms, limit| pb::ListHistoryRequest {
            client: client.into(),
            since_ms,
            until_ms,
            limit,
        };
        let cases: Vec<(pb::ListHistoryRequest, Expected)> = vec![
            (req("", 0, 0, 0), Ok((None, 0, 1_001, 100))),
            (
                req("10.0.0.1", 5, 900, 7),
                Ok((Some("10.0.0.1"), 5, 900, 7)),
            ),
            (req("", 0, 0, 1000), Ok((None, 0, 1_001, 1000))),
            (req("", 0, 0, 1001), Err("limit")),
            (req(&"x".repeat(65), 0, 0, 0), Err("client")),
            (req("", -1, 0, 0), Err("since_ms")),
            (req("", 0, -5, 0), Err("until_ms")),
            (req("", 900, 900, 0), Err("until_ms")),
            (req("", 2_000, 0, 0), Err("until_ms")),
        ];
        for (i, (request, expected)) in cases.into_iter().enumerate() {
            let got = query(&request, 64, 1_000);
            match (got, expected) {
                (Ok(q), Ok((client, since, until, limit))) => assert_eq!(
                    (q.client.as_deref(), q.since_ms, q.until_ms, q.limit),
                    (client, since, until, limit),
                    "case {i}"
                ),
                (Err(e), Err(field)) => assert_eq!(e.field, field, "case {i}: {e}"),
                (got, expected) => panic!("case {i}: got {got:?}, expected {expected:?}"),
            }
        }
    }
}
