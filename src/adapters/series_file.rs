//! The forecast series file (format in `docs/trace-format.md`): CSV with a header, `minute`
//! (RFC 3339, `YYYY-MM-DD HH:MM:SS` taken as UTC, or a minute index) and `requests`; optional
//! `prm_share`, `error_rate` and `denied_share`; other columns ignored.
//!
//! Minutes must be in increasing order. Minutes missing between two rows are *unknown* (a gap in
//! the data, like the NASA log's 28–31 July), not quiet: they are filled with `requests = NaN`,
//! and training and evaluation skip every window and target that touches one. A quiet minute is
//! a row with 0. Errors name the line.

use std::io::BufRead;

use chrono::{DateTime, NaiveDateTime};

use sluice_core::forecast::MinutePoint;

/// Longest gap filled (a year): a typo in a date should be an error, not a gigabyte of gap.
const MAX_GAP_MINUTES: i64 = 366 * 1440;

/// Parses a `minute`: an integer index, RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` (UTC). Returns
/// minutes since the epoch (or the index).
pub fn parse_minute(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(index) = text.parse::<i64>() {
        return Some(index);
    }
    let seconds = DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
                .map(|t| t.and_utc().timestamp())
        })
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").map(|t| t.and_utc().timestamp())
        })
        .ok()?;
    Some(seconds.div_euclid(60))
}

pub fn read(input: impl BufRead) -> Result<Vec<MinutePoint>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| format!("line 1: cannot read the header: {e}"))?
        .clone();
    let find = |name: &str| headers.iter().position(|h| h.trim() == name);
    let minute_col = find("minute").ok_or("line 1: the header has no `minute` column")?;
    let requests_col = find("requests").ok_or("line 1: the header has no `requests` column")?;
    let optional = [find("prm_share"), find("error_rate"), find("denied_share")];
    let mut out: Vec<MinutePoint> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| format!("line {line}: {e}"))?;
        let field = |col: usize| record.get(col).unwrap_or("").trim();
        let minute = parse_minute(field(minute_col)).ok_or_else(|| {
            format!(
                "line {line}: minute {:?} is not a minute index, RFC 3339 time or YYYY-MM-DD HH:MM:SS",
                field(minute_col)
            )
        })?;
        let number = |col: usize, name: &str, max: f64| -> Result<f64, String> {
            let text = field(col);
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() && (0.0..=max).contains(&v) => Ok(v),
                _ => Err(format!(
                    "line {line}: {name} {text:?} must be a number in 0..={max}"
                )),
            }
        };
        let requests = number(requests_col, "requests", 1e12)?;
        let mut shares = [0.0; 3];
        for (slot, (col, name)) in
            shares.iter_mut().zip(
                optional
                    .iter()
                    .zip(["prm_share", "error_rate", "denied_share"]),
            )
        {
            if let Some(col) = *col
                && !field(col).is_empty()
            {
                *slot = number(col, name, 1.0)?;
            }
        }
        if let Some(last) = out.last() {
            let gap = minute - last.minute;
            if gap <= 0 {
                return Err(format!(
                    "line {line}: minute {} is not after the previous row's; rows must be in increasing minute order",
                    field(minute_col)
                ));
            }
            if gap > MAX_GAP_MINUTES {
                return Err(format!(
                    "line {line}: {gap} minutes after the previous row; gaps over a year are refused"
                ));
            }
            for m in last.minute + 1..minute {
                out.push(MinutePoint::requests_only(m, f64::NAN));
            }
        }
        out.push(MinutePoint {
            minute,
            requests,
            prm_share: shares[0],
            error_rate: shares[1],
            denied_share: shares[2],
        });
    }
    if out.is_empty() {
        return Err("the series has no rows".into());
    }
    Ok(out)
}

/// Reads a series file, naming it in any error.
pub fn read_path(path: &std::path::Path) -> anyhow::Result<Vec<MinutePoint>> {
    use anyhow::Context;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read(std::io::BufReader::new(file)).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A `--from`/`--to` flag's minute, naming the flag when it does not parse.
pub fn minute_arg(flag: &str, text: &Option<String>) -> anyhow::Result<Option<i64>> {
    use anyhow::Context;
    text.as_deref()
        .map(|t| {
            parse_minute(t).with_context(|| {
                format!(
                    "--{flag} {t:?} is not a minute index, RFC 3339 time or YYYY-MM-DD HH:MM:SS"
                )
            })
        })
        .transpose()
}
