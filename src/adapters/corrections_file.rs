//! Reading a replay's corrections file: what an operator did, and when, during the traced time
//! (`docs/trace-format.md`). CSV with a header: `ts` (as in traces), `action` (`false_positive`,
//! `allow`, `deny`, `reset`), `client`, and optionally `ttl_secs` and `reason`. Errors name the
//! line and the field; a bad file is refused whole. This module only parses; `replay` applies.

use std::io::Read;
use std::time::Duration;

use sluice_core::learn::learner::{Correction, CorrectionKind};
use sluice_core::learn::lists::check_client;

use super::trace_file::{TraceError, parse_ts};

/// Most corrections a file may hold (a replay keeps them all in memory).
pub const MAX_CORRECTIONS: usize = 100_000;

/// One correction and the time (epoch milliseconds) it is applied at.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedCorrection {
    pub ts_ms: i64,
    pub correction: Correction,
    pub line: u64,
}

fn err(line: u64, message: impl Into<String>) -> TraceError {
    TraceError {
        line,
        message: message.into(),
    }
}

/// Reads a whole corrections file, in time order (rows with the same time keep the file's order).
pub fn read(input: impl Read) -> Result<Vec<TimedCorrection>, TraceError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let header = reader
        .headers()
        .map_err(|e| err(1, format!("header is not valid CSV: {e}")))?
        .clone();
    let find = |name: &str| header.iter().position(|c| c == name);
    let need = |name: &str| {
        find(name).ok_or_else(|| {
            err(
                1,
                format!(
                    "header has no `{name}` column (a corrections file needs ts, action and client)"
                ),
            )
        })
    };
    let (ts, action, client) = (need("ts")?, need("action")?, need("client")?);
    let (ttl, reason) = (find("ttl_secs"), find("reason"));
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            err(
                e.position().map_or(0, |p| p.line()),
                format!("not valid CSV: {e}"),
            )
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        if out.len() == MAX_CORRECTIONS {
            return Err(err(
                line,
                format!("more than {MAX_CORRECTIONS} corrections"),
            ));
        }
        let get = |i: usize| record.get(i).unwrap_or("");
        let ts_text = get(ts);
        let ts_ms = parse_ts(ts_text).ok_or_else(|| {
            err(
                line,
                format!("ts {ts_text:?} is neither epoch milliseconds nor RFC 3339"),
            )
        })?;
        let kind_text = get(action);
        let kind = CorrectionKind::parse(kind_text).ok_or_else(|| {
            err(
                line,
                format!("action {kind_text:?} must be false_positive, allow, deny or reset"),
            )
        })?;
        let who = get(client);
        check_client(who).map_err(|why| err(line, format!("client {who:?} {why}")))?;
        if kind == CorrectionKind::Reset && who.contains('/') {
            return Err(err(
                line,
                format!("client {who:?}: reset takes one client, not a network"),
            ));
        }
        let ttl = match ttl.map_or("", get) {
            "" => None,
            t => match t.parse::<u64>() {
                Ok(secs) if secs > 0 && kind != CorrectionKind::Reset => {
                    Some(Duration::from_secs(secs))
                }
                Ok(_) if kind == CorrectionKind::Reset => {
                    return Err(err(line, "ttl_secs: a reset has no duration"));
                }
                _ => {
                    return Err(err(
                        line,
                        format!("ttl_secs {t:?} must be a whole number of seconds above 0"),
                    ));
                }
            },
        };
        out.push(TimedCorrection {
            ts_ms,
            correction: Correction {
                kind,
                client: who.to_string(),
                ttl,
                reason: reason.map_or("", get).to_string(),
                actor: "corrections file".into(),
            },
            line,
        });
    }
    out.sort_by_key(|c| c.ts_ms);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_action() {
        let text = "ts,action,client,ttl_secs,reason\n\
                    120000,false_positive,192.0.2.1,,our monitor\n\
                    60000,deny,198.51.100.0/24,3600,\n\
                    60000,allow,alice,,partner\n\
                    180000,reset,203.0.113.9,,\n";
        let got = read(text.as_bytes()).unwrap();
        let seen: Vec<(i64, &str, &str, Option<u64>)> = got
            .iter()
            .map(|c| {
                (
                    c.ts_ms,
                    c.correction.kind.name(),
                    c.correction.client.as_str(),
                    c.correction.ttl.map(|t| t.as_secs()),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (60_000, "deny", "198.51.100.0/24", Some(3600)),
                (60_000, "allow", "alice", None),
                (120_000, "false_positive", "192.0.2.1", None),
                (180_000, "reset", "203.0.113.9", None),
            ]
        );
        assert_eq!(got[2].correction.reason, "our monitor");
    }

    #[test]
    fn bad_input_names_the_line_and_field() {
        // (file, the error's words)
        let cases = [
            ("ts,client\n1,a\n", "line 1: header has no `action` column"),
            ("ts,action,client\nsoon,deny,a\n", "line 2: ts \"soon\""),
            ("ts,action,client\n1,ban,a\n", "line 2: action \"ban\""),
            (
                "ts,action,client\n1,deny,\n2,deny,a\n",
                "line 2: client \"\"",
            ),
            (
                "ts,action,client\n1,deny,a\n2,deny,a b\n",
                "line 3: client \"a b\"",
            ),
            (
                "ts,action,client\n1,reset,10.0.0.0/8\n",
                "line 2: client \"10.0.0.0/8\": reset",
            ),
            (
                "ts,action,client,ttl_secs\n1,deny,a,-5\n",
                "line 2: ttl_secs \"-5\"",
            ),
            (
                "ts,action,client,ttl_secs\n1,reset,a,60\n",
                "line 2: ttl_secs: a reset",
            ),
        ];
        for (text, words) in cases {
            let e = read(text.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with(words), "{text:?}: {e}");
        }
    }
}
