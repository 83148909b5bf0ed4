//! Reading traces: the CSV trace format and Apache/nginx "combined" access logs (both documented
//! in `docs/trace-format.md`). The format is detected from the first line.
//!
//! Rows are handed to a callback as borrowed views, so reading allocates nothing per row. Errors
//! name the line. This module only parses; `replay` decides what the rows mean.

use std::io::BufRead;

use chrono::DateTime;

use sluice_core::rules::Tier;

/// One request of a trace, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Row<'a> {
    /// Epoch milliseconds.
    pub ts_ms: i64,
    pub client: &'a str,
    pub user: &'a str,
    pub tier: Tier,
    pub endpoint: &'a str,
    pub method: &'a str,
    pub user_agent: &'a str,
    pub status: Option<u16>,
    /// Ground truth (`benign`, `attack`, `attack:<kind>`); empty when unlabelled.
    pub label: &'a str,
    /// 1-based line in the file, for error messages.
    pub line: u64,
}

impl<'a> Row<'a> {
    /// The request as the engine sees it.
    pub fn subject(&self) -> sluice_core::engine::Subject<'a> {
        sluice_core::engine::Subject {
            remote_address: self.client,
            user_id: self.user,
            tier: self.tier,
            endpoint: self.endpoint,
            method: self.method,
            user_agent: self.user_agent,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct TraceError {
    pub line: u64,
    pub message: String,
}

fn err(line: u64, message: impl Into<String>) -> TraceError {
    TraceError {
        line,
        message: message.into(),
    }
}

/// Parses a `ts`: integer epoch milliseconds or RFC 3339.
pub fn parse_ts(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Combined,
}

/// Reads a whole trace, calling `each` per row; stops at the first error (from the file or from
/// `each`).
pub fn read<R: BufRead, E: From<TraceError>>(
    mut input: R,
    mut each: impl FnMut(&Row<'_>) -> Result<(), E>,
) -> Result<Format, E> {
    let mut first = String::new();
    input
        .read_line(&mut first)
        .map_err(|e| err(1, format!("cannot read: {e}")))?;
    if first.trim().is_empty() {
        return Err(err(1, "empty file: expected a CSV header naming ts, client and endpoint, or a combined access log").into());
    }
    if looks_like_combined(&first) {
        let mut line_no = 1;
        let mut line = first;
        loop {
            if !line.trim().is_empty() {
                let row = parse_combined(&line, line_no)?;
                each(&row)?;
            }
            line.clear();
            let n = input
                .read_line(&mut line)
                .map_err(|e| err(line_no + 1, format!("cannot read: {e}")))?;
            if n == 0 {
                return Ok(Format::Combined);
            }
            line_no += 1;
        }
    }
    let header = Header::parse(&first)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(Format::Csv),
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() + 1);
                return Err(err(line, format!("not valid CSV: {e}")).into());
            }
        }
        let line = record.position().map_or(0, |p| p.line() + 1);
        if record.len() == 1 && record[0].trim().is_empty() {
            continue;
        }
        let row = header.row(&record, line)?;
        each(&row)?;
    }
}

/// Column positions, from the header row.
struct Header {
    ts: usize,
    client: usize,
    endpoint: usize,
    user: Option<usize>,
    tier: Option<usize>,
    method: Option<usize>,
    user_agent: Option<usize>,
    status: Option<usize>,
    label: Option<usize>,
}

impl Header {
    fn parse(line: &str) -> Result<Header, TraceError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes());
        let mut record = csv::StringRecord::new();
        reader
            .read_record(&mut record)
            .map_err(|e| err(1, format!("header is not valid CSV: {e}")))?;
        let find = |name: &str| {
            record
                .iter()
                .position(|c| c.trim().trim_start_matches('\u{feff}') == name)
        };
        let need = |name: &str| {
            find(name).ok_or_else(|| {
                err(1, format!("header has no `{name}` column (a trace needs ts, client and endpoint; got {:?})", line.trim()))
            })
        };
        Ok(Header {
            ts: need("ts")?,
            client: need("client")?,
            endpoint: need("endpoint")?,
            user: find("user"),
            tier: find("tier"),
            method: find("method"),
            user_agent: find("user_agent"),
            status: find("status"),
            label: find("label"),
        })
    }

    fn row<'a>(&self, r: &'a csv::StringRecord, line: u64) -> Result<Row<'a>, TraceError> {
        let get = |i: usize| r.get(i).unwrap_or("");
        let opt = |i: Option<usize>| i.map_or("", get);
        let ts_text = get(self.ts);
        let ts_ms = parse_ts(ts_text).ok_or_else(|| {
            err(
                line,
                format!("ts {ts_text:?} is neither epoch milliseconds nor RFC 3339"),
            )
        })?;
        let client = get(self.client);
        if client.is_empty() {
            return Err(err(line, "client is empty"));
        }
        let endpoint = get(self.endpoint);
        if endpoint.is_empty() {
            return Err(err(line, "endpoint is empty"));
        }
        let tier = match opt(self.tier) {
            "" => Tier::Std,
            t => Tier::parse(t)
                .ok_or_else(|| err(line, format!("tier {t:?} must be STD, PRM or empty")))?,
        };
        let status = match opt(self.status) {
            "" => None,
            s => Some(
                s.parse::<u16>()
                    .ok()
                    .filter(|s| (100..=599).contains(s))
                    .ok_or_else(|| err(line, format!("status {s:?} is not an HTTP status")))?,
            ),
        };
        let label = opt(self.label);
        if !(label.is_empty()
            || label == "benign"
            || label == "attack"
            || label.starts_with("attack:")
            || label.starts_with("benign:"))
        {
            return Err(err(
                line,
                format!("label {label:?} must be benign, benign:<kind>, attack or attack:<kind>"),
            ));
        }
        Ok(Row {
            ts_ms,
            client,
            user: opt(self.user),
            tier,
            endpoint,
            method: opt(self.method),
            user_agent: opt(self.user_agent),
            status,
            label,
            line,
        })
    }
}

fn looks_like_combined(line: &str) -> bool {
    let mut parts = line.splitn(4, ' ');
    let _host = parts.next();
    let _ident = parts.next();
    let _user = parts.next();
    parts.next().is_some_and(|rest| rest.starts_with('['))
}

/// `host ident user [time] "METHOD path proto" status bytes "referer" "user agent"`.
fn parse_combined(line: &str, n: u64) -> Result<Row<'_>, TraceError> {
    let bad = |what: &str| {
        err(
            n,
            format!("not a combined log line ({what}): {:?}", truncate(line)),
        )
    };
    let line = line.trim_end_matches(['\n', '\r']);
    let (client, rest) = line.split_once(' ').ok_or_else(|| bad("no host"))?;
    let open = rest.find('[').ok_or_else(|| bad("no [time]"))?;
    let close = rest[open..].find(']').ok_or_else(|| bad("no [time]"))? + open;
    let time = &rest[open + 1..close];
    let ts_ms = DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z")
        .map_err(|_| {
            err(
                n,
                format!("time {time:?} is not dd/Mon/yyyy:HH:MM:SS +zzzz"),
            )
        })?
        .timestamp_millis();
    let rest = rest[close + 1..].trim_start();
    let (request, rest) = quoted(rest).ok_or_else(|| bad("no quoted request"))?;
    let mut words = request.split(' ');
    let (method, target) = match (words.next(), words.next()) {
        (Some(m), Some(t)) => (m, t),
        // A malformed request line ("-", or garbage a scanner sent): keep it as the endpoint.
        _ => ("", request),
    };
    let endpoint = target.split(['?', '#']).next().unwrap_or(target);
    let mut fields = rest.trim_start().splitn(3, ' ');
    let status_text = fields.next().unwrap_or("");
    let status = status_text
        .parse::<u16>()
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| err(n, format!("status {status_text:?} is not an HTTP status")))?;
    let _bytes = fields.next();
    let after = fields.next().unwrap_or("").trim_start();
    let user_agent = quoted(after)
        .and_then(|(_referer, rest)| quoted(rest.trim_start()))
        .map_or("", |(ua, _)| ua);
    Ok(Row {
        ts_ms,
        client,
        user: "",
        tier: Tier::Std,
        endpoint: if endpoint.is_empty() { "-" } else { endpoint },
        method,
        user_agent: if user_agent == "-" { "" } else { user_agent },
        status: Some(status),
        label: "",
        line: n,
    })
}

/// Splits `"…" rest`, honouring `\"` inside.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix('"')?;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((&body[..i], &body[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

fn truncate(line: &str) -> &str {
    let end = line.char_indices().nth(80).map_or(line.len(), |(i, _)| i);
    line[..end].trim_end()
}

/// One series per endpoint, and the total, from a trace file.
pub fn endpoint_series(
    path: &std::path::Path,
) -> anyhow::Result<Vec<(String, Vec<sluice_core::forecast::MinutePoint>)>> {
    let file = {
        use anyhow::Context;
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?
    };
    let mut builder = sluice_core::forecast::series::SeriesBuilder::default();
    read::<_, TraceError>(std::io::BufReader::with_capacity(1 << 20, file), |row| {
        let minute = row.ts_ms.div_euclid(60_000);
        let prm = if row.tier == Tier::Prm { 1.0 } else { 0.0 };
        let error = if row.status.is_some_and(|s| s >= 400) {
            1.0
        } else {
            0.0
        };
        builder.add(row.endpoint, minute, 1.0, prm, 0.0, error);
        builder.add(
            sluice_core::forecast::series::TOTAL,
            minute,
            1.0,
            prm,
            0.0,
            error,
        );
        Ok(())
    })
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(builder.build())
}

#[cfg(test)]
#[path = "trace_file_tests.rs"]
mod tests;
