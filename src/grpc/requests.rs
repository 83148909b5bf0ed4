//! Checks of the requests that carry no rule or subject of their own shape: `Report`,
//! `ReportLoad`, `ListAdjustments` / `ListScores`. Each returns core or store input, or an error
//! naming the field; rules, subjects and units are `convert`'s, Envoy's descriptors `rls`'s.

use sluice_core::engine::Subject;
use sluice_core::learn::lists::{ListKind, check_client};
use sluice_core::validate::{InputLimits, ValidationError, check_len};

use super::convert::subject_from_proto;
use crate::proto::sluice::v1 as pb;
use crate::store::history::HistoryQuery;

/// Most requests one `Report` may stand for.
pub const MAX_REPORT_COUNT: u32 = 10_000;

/// `Report`: the subject, the HTTP status and how many requests it stands for (at least 1).
pub fn report<'a>(
    req: &'a pb::ReportRequest,
    caps: &InputLimits,
) -> Result<(Subject<'a>, u16, u32), ValidationError> {
    let subject = subject_from_proto("subject", req.subject.as_ref(), caps)?;
    if subject.remote_address.is_empty() {
        return Err(ValidationError::new(
            "subject.client_ip",
            "is required: outcomes are per client",
        ));
    }
    if !(100..=599).contains(&req.status) {
        return Err(ValidationError::new(
            "status",
            format!("{} is not an HTTP status (100-599)", req.status),
        ));
    }
    if req.count > MAX_REPORT_COUNT {
        return Err(ValidationError::new(
            "count",
            format!("{} is more than {MAX_REPORT_COUNT}", req.count),
        ));
    }
    Ok((subject, req.status as u16, req.count.max(1)))
}

/// Longest reason kept with a list entry.
pub const MAX_REASON: usize = 500;
/// Longest a list entry may last.
pub const MAX_LIST_TTL_SECS: u64 = 366 * 86_400;

/// Which list a request names.
pub fn list_kind(field: &str, value: i32) -> Result<ListKind, ValidationError> {
    match pb::ClientList::try_from(value) {
        Ok(pb::ClientList::Allow) => Ok(ListKind::Allow),
        Ok(pb::ClientList::Deny) => Ok(ListKind::Deny),
        _ => Err(ValidationError::new(
            field,
            format!("{value} is not CLIENT_LIST_ALLOW or CLIENT_LIST_DENY"),
        )),
    }
}

/// A list entry's client, reason and lifetime, checked.
pub fn list_entry_parts<'a>(
    client: &'a str,
    reason: &'a str,
    ttl_secs: u64,
    caps: &InputLimits,
) -> Result<(&'a str, &'a str, u64), ValidationError> {
    check_len("client", client, caps.max_value_len)?;
    check_client(client).map_err(|e| ValidationError::new("client", e))?;
    check_len("reason", reason, MAX_REASON)?;
    if ttl_secs > MAX_LIST_TTL_SECS {
        return Err(ValidationError::new(
            "ttl_secs",
            format!("{ttl_secs} is more than a year ({MAX_LIST_TTL_SECS})"),
        ));
    }
    Ok((client, reason, ttl_secs))
}

/// `ReportLoad`: the backend and its utilisation (0..1).
pub fn report_load<'a>(
    req: &'a pb::ReportLoadRequest,
    caps: &InputLimits,
) -> Result<(&'a str, f64), ValidationError> {
    if req.backend.is_empty() {
        return Err(ValidationError::new("backend", "is required"));
    }
    check_len("backend", &req.backend, caps.max_value_len)?;
    if !(0.0..=1.0).contains(&req.utilisation) {
        return Err(ValidationError::new(
            "utilisation",
            format!("{} is not a share between 0 and 1", req.utilisation),
        ));
    }
    Ok((&req.backend, req.utilisation))
}

/// Rows returned when the request does not say, and the most it may ask for.
pub const DEFAULT_ROWS: u32 = 100;
pub const MAX_ROWS: u32 = 1000;

/// Checks a request and fills in its defaults (`until_ms` 0 is `now_ms`).
pub fn history_query(
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
            let got = history_query(&request, 64, 1_000);
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
