//! Rate-limit response headers, rendered from the status closest to its limit.
//!
//! Styles: draft-03 `X-RateLimit-*` (what Envoy itself emits with `enable_x_ratelimit_headers`),
//! the IETF httpapi draft's `RateLimit-Policy` / `RateLimit` structured fields, or none.
//! `Retry-After` is added on every denial whatever the style.

use std::str::FromStr;

use super::engine::LimitStatus;
use super::time::ceil_secs;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeaderStyle {
    #[default]
    None,
    Draft03,
    Ietf,
}

impl FromStr for HeaderStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(HeaderStyle::None),
            "draft03" => Ok(HeaderStyle::Draft03),
            "ietf" => Ok(HeaderStyle::Ietf),
            other => Err(format!(
                "unknown header style {other:?}: expected none, draft03 or ietf"
            )),
        }
    }
}

pub type Headers = Vec<(&'static str, String)>;

/// Headers for a response decided by `status` (`None`: no limit applied, so no headers).
/// `denied` is whether the response as a whole is a denial.
pub fn render(style: HeaderStyle, status: Option<&LimitStatus>, denied: bool) -> Headers {
    let mut headers = Headers::new();
    let Some(status) = status else { return headers };
    let Some(limit) = &status.limit else {
        return headers;
    };
    let limit_n = limit.quota.limit;
    let window = limit.quota.window_seconds();
    let reset = ceil_secs(status.reset_after);
    match style {
        HeaderStyle::None => {}
        HeaderStyle::Draft03 => {
            headers.push((
                "x-ratelimit-limit",
                format!("{limit_n}, {limit_n};w={window}"),
            ));
            headers.push(("x-ratelimit-remaining", status.remaining.to_string()));
            headers.push(("x-ratelimit-reset", reset.to_string()));
        }
        HeaderStyle::Ietf => {
            let name = policy_name(&limit.label.name);
            headers.push((
                "ratelimit-policy",
                format!("\"{name}\";q={limit_n};w={window}"),
            ));
            headers.push((
                "ratelimit",
                format!("\"{name}\";r={};t={reset}", status.remaining),
            ));
        }
    }
    if denied {
        headers.push((
            "retry-after",
            ceil_secs(status.retry_after).max(1).to_string(),
        ));
    }
    headers
}

/// A structured-field string must be printable ASCII without `"` or `\`.
fn policy_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ReportedLimit;
    use crate::limit::{Algorithm, Quota, Unit};
    use crate::time::NANOS_PER_SEC;

    fn status(remaining: u64, over: bool) -> LimitStatus {
        LimitStatus {
            over_limit: over,
            shadow_over: false,
            limit: Some(ReportedLimit {
                label: std::sync::Arc::new(crate::matcher::LimitLabel::new("d|k", "per-user")),
                quota: Quota {
                    limit: 100,
                    unit: Unit::Minute,
                    multiplier: 1,
                    capacity: 100,
                    algorithm: Algorithm::FixedWindow,
                    calendar: None,
                },
            }),
            remaining,
            reset_after: 12 * NANOS_PER_SEC + 1,
            retry_after: if over { 12 * NANOS_PER_SEC + 1 } else { 0 },
        }
    }

    #[test]
    fn each_style() {
        type Case<'a> = (HeaderStyle, u64, bool, &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            (HeaderStyle::None, 5, false, &[]),
            (HeaderStyle::None, 0, true, &[("retry-after", "13")]),
            (
                HeaderStyle::Draft03,
                5,
                false,
                &[
                    ("x-ratelimit-limit", "100, 100;w=60"),
                    ("x-ratelimit-remaining", "5"),
                    ("x-ratelimit-reset", "13"),
                ],
            ),
            (
                HeaderStyle::Ietf,
                0,
                true,
                &[
                    ("ratelimit-policy", "\"per-user\";q=100;w=60"),
                    ("ratelimit", "\"per-user\";r=0;t=13"),
                    ("retry-after", "13"),
                ],
            ),
        ];
        for (style, remaining, over, want) in cases {
            let got = render(*style, Some(&status(*remaining, *over)), *over);
            let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(&got, want, "{style:?}");
        }
        assert!(render(HeaderStyle::Ietf, None, false).is_empty());
    }
}
