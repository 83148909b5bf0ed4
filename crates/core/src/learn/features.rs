//! Features: one client's minute turned into a fixed-length vector the forest scores.
//!
//! Each feature is scaled so that "ordinary" sits in a narrow band and abuse stands out on at
//! least one axis (counts are log-scaled; shares are 0..1). `ARCHITECTURE.md` documents each one
//! and why it is there. This module does not score anything; it only measures.

use super::observe::ClientMinute;

/// Number of features.
pub const DIM: usize = 11;

/// Names, in vector order: the history table's JSON and `GetModelInfo` use them.
pub const NAMES: [&str; DIM] = [
    "log_requests",
    "error_rate",
    "auth_failure_rate",
    "top_endpoint_share",
    "log_distinct_endpoints",
    "log_user_agents",
    "log_inter_arrival_mean",
    "inter_arrival_cv",
    "deny_ratio",
    "sensitive_share",
    "tool_agent_error",
];

pub type Features = [f64; DIM];

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Pseudo-count added to the denominator of error and deny rates: two 404s out of six requests
/// is not a 33% error rate worth acting on, fifty-seven 401s out of sixty is.
const RATE_PRIOR: f64 = 4.0;

/// A rate shrunk towards zero when there is little evidence.
fn shrunk(part: u32, whole: u32) -> f64 {
    part as f64 / (whole as f64 + RATE_PRIOR)
}

/// Measures one client-minute.
pub fn extract(m: &ClientMinute) -> Features {
    let requests = m.requests.max(1);
    let error_rate = shrunk(m.errors, m.outcomes);
    let tool_share = ratio(m.tool_agent, requests);
    let decided = m.allowed + m.denied;
    let (ia_mean, ia_cv) = if m.inter_arrival.n >= 2 {
        let mean = m.inter_arrival.mean;
        let cv = if mean > 0.0 {
            m.inter_arrival.variance().sqrt() / mean
        } else {
            0.0
        };
        (mean, cv.min(10.0))
    } else {
        // One or two requests: no rhythm to speak of. Treat as a slow, irregular caller.
        (60.0, 1.0)
    };
    [
        (1.0 + m.requests as f64).log2(),
        error_rate,
        shrunk(m.auth_failures, m.outcomes),
        ratio(m.top_endpoint_requests(), requests),
        (1.0 + m.distinct_endpoints() as f64).log2(),
        (1.0 + m.distinct_agents() as f64).log2(),
        (1.0 + ia_mean).log2(),
        ia_cv,
        shrunk(m.denied, decided),
        ratio(m.sensitive, requests),
        // The seeds' heuristic "a tool user agent with a high error rate", as one axis.
        tool_share * error_rate,
    ]
}

#[cfg(test)]
#[path = "features_tests.rs"]
mod tests;
