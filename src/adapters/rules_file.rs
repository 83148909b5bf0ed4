//! Rules files in envoyproxy/ratelimit's YAML format, with Sluice's extensions.
//!
//! A file holds one or more YAML documents (`---`), each one domain:
//!
//! ```yaml
//! domain: edge
//! descriptors:
//!   - key: remote_address            # no value: one bucket per address
//!     rate_limit: {unit: second, requests_per_unit: 50}
//!   - key: tier
//!     value: STD
//!     descriptors:
//!       - key: user_id
//!         rate_limit: {unit: minute, requests_per_unit: 100, name: std-user}
//!         # Sluice extensions:
//!         limits: [{unit: day, requests_per_unit: 10000, name: std-daily}]
//!         priority: low
//! ```
//!
//! Envoy's fields (`key`, `value`, `rate_limit {unit, requests_per_unit, unit_multiplier,
//! unlimited, name, replaces}`, `shadow_mode`, `detailed_metric`, nested `descriptors`) load as is. Sluice adds
//! `limits` (more limits on the same descriptor), `priority`, `capacity` (requests per minute the
//! endpoint can take), and per limit `algorithm`,
//! `burst`, `floor`, `ceiling`. Unknown fields are errors, so typos do not pass silently.
//! This module parses and validates; it changes nothing.
//!
//! Hostile files are bounded while they are parsed, not after: a file is at most
//! `MAX_FILE_BYTES`; every string at most `MAX_STRING_BYTES` and every descriptor and limit
//! counts against a budget (`node_budget`), checked as YAML aliases are expanded, so an alias
//! bomb (a megabyte anchored once, aliased twenty thousand times) is refused with a named error
//! before it can take memory. Nesting is bounded by serde_yaml's depth limit. Callers parse off
//! the async runtime.

use std::cell::Cell;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};

use sluice_core::limit::{Algorithm, LimitSpec, Rate, Unit};
use sluice_core::rules::{EntryMatch, Priority, Rule};
use sluice_core::validate::{InputLimits, ValidationError, check_entry, check_limit, check_rule};

#[derive(Debug, thiserror::Error)]
pub enum RulesFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Malformed YAML or a field of the wrong type; serde_yaml's message carries the line.
    #[error("{origin}: {message}")]
    Yaml { origin: String, message: String },
    #[error("{path}: {size} bytes, more than a rules file may be ({MAX_FILE_BYTES} bytes)")]
    TooLarge { path: String, size: u64 },
    #[error("{origin}: {error}")]
    Invalid {
        origin: String,
        error: ValidationError,
    },
}

/// The domains a file defines and its rules, flattened.
#[derive(Debug, Default, PartialEq)]
pub struct RulesFile {
    pub domains: Vec<String>,
    pub rules: Vec<Rule>,
}

/// Largest rules file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// Longest string in a rules file (a key, value or name; validation then applies the tighter
/// `InputLimits`).
pub const MAX_STRING_BYTES: usize = 64 << 10;

thread_local! {
    /// Descriptors and limits the file being parsed may still hold (aliases included).
    static NODES_LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Bytes of strings it may still hold (aliases included): a string aliased many times is
    /// as many strings once parsed.
    static STRING_BYTES_LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Bytes of strings one file may hold once its aliases are expanded.
const STRING_BUDGET: usize = 4 * MAX_FILE_BYTES as usize;

/// Spends `len` bytes of the string budget, or says why the file is refused.
fn spend_string(len: usize) -> Result<(), String> {
    if len > MAX_STRING_BYTES {
        return Err(format!(
            "a string of {len} bytes, more than a rules file may hold ({MAX_STRING_BYTES})"
        ));
    }
    let left = STRING_BYTES_LEFT.with(Cell::get);
    if len > left {
        return Err(format!(
            "more than {STRING_BUDGET} bytes of strings once YAML aliases are expanded"
        ));
    }
    STRING_BYTES_LEFT.with(|b| b.set(left - len));
    Ok(())
}

/// Descriptors and limits one file may hold: every rule of an update, each with its limits,
/// and the inner descriptors that carry none.
fn node_budget(caps: &InputLimits) -> usize {
    caps.max_rules_per_update
        .saturating_mul(caps.max_limits_per_rule + 2)
        .saturating_add(1_000)
}

fn bounded_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    spend_string(s.len()).map_err(serde::de::Error::custom)?;
    Ok(s)
}

fn bounded_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    if let Some(s) = &s {
        spend_string(s.len()).map_err(serde::de::Error::custom)?;
    }
    Ok(s)
}

/// A list whose every element spends one unit of the file's node budget as it is read.
fn budgeted<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    struct Budgeted<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Budgeted<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            loop {
                let left = NODES_LEFT.with(Cell::get);
                if left == 0 {
                    return Err(serde::de::Error::custom(
                        "more descriptors and limits than one rules file may hold \
                         (YAML aliases count each time they are used)",
                    ));
                }
                match seq.next_element()? {
                    Some(item) => {
                        NODES_LEFT.with(|n| n.set(n.get().saturating_sub(1)));
                        out.push(item);
                    }
                    None => return Ok(out),
                }
            }
        }
    }
    d.deserialize_seq(Budgeted(std::marker::PhantomData))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainDoc {
    #[serde(deserialize_with = "bounded_string")]
    domain: String,
    #[serde(default, deserialize_with = "budgeted")]
    descriptors: Vec<DescriptorDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DescriptorDoc {
    #[serde(deserialize_with = "bounded_string")]
    key: String,
    #[serde(default, deserialize_with = "bounded_opt_string")]
    value: Option<String>,
    #[serde(default)]
    rate_limit: Option<LimitDoc>,
    #[serde(default, deserialize_with = "budgeted")]
    limits: Vec<LimitDoc>,
    #[serde(default)]
    shadow_mode: bool,
    #[serde(default)]
    #[allow(dead_code)] // accepted for compatibility; Sluice's metrics are always per rule
    detailed_metric: bool,
    #[serde(default)]
    priority: Option<Priority>,
    /// Requests per minute the endpoint can take (Sluice extension).
    #[serde(default)]
    capacity: Option<u64>,
    #[serde(default, deserialize_with = "budgeted")]
    descriptors: Vec<DescriptorDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitDoc {
    #[serde(default)]
    unit: Option<Unit>,
    #[serde(default)]
    requests_per_unit: Option<u64>,
    /// The period in units (envoyproxy/ratelimit's `unit_multiplier`); 1 unless set.
    #[serde(default)]
    unit_multiplier: Option<u32>,
    #[serde(default)]
    unlimited: bool,
    #[serde(default, deserialize_with = "bounded_opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "budgeted")]
    replaces: Vec<ReplacesDoc>,
    #[serde(default)]
    algorithm: Option<Algorithm>,
    #[serde(default)]
    burst: Option<u64>,
    #[serde(default)]
    floor: Option<u64>,
    #[serde(default)]
    ceiling: Option<u64>,
    /// A calendar period in this IANA time zone (fixed windows of a day, week, month, year).
    #[serde(default, deserialize_with = "bounded_opt_string")]
    calendar: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplacesDoc {
    #[serde(deserialize_with = "bounded_string")]
    name: String,
}

/// Reads a rules file, refusing one larger than `MAX_FILE_BYTES` before reading it (and
/// reading no more than that, should it grow meanwhile). Blocking.
pub fn read(path: &std::path::Path) -> Result<String, RulesFileError> {
    use std::io::Read;
    let failed = |source| RulesFileError::Read {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    let size = file.metadata().map_err(failed)?.len();
    let too_big = |size: u64| RulesFileError::TooLarge {
        path: path.display().to_string(),
        size,
    };
    if size > MAX_FILE_BYTES {
        return Err(too_big(size));
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(failed)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(text.len() as u64));
    }
    Ok(text)
}

/// Reads, parses and validates a rules file. Blocking.
pub fn load(path: &std::path::Path, caps: &InputLimits) -> Result<RulesFile, RulesFileError> {
    let text = read(path)?;
    parse(&path.display().to_string(), &text, caps)
}

/// Parses and validates a whole file; `origin` names it in errors.
pub fn parse(origin: &str, text: &str, caps: &InputLimits) -> Result<RulesFile, RulesFileError> {
    let mut file = RulesFile::default();
    NODES_LEFT.with(|n| n.set(node_budget(caps)));
    STRING_BYTES_LEFT.with(|b| b.set(STRING_BUDGET));
    for (n, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let parsed = DomainDoc::deserialize(document);
        let doc = parsed.map_err(|e| RulesFileError::Yaml {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let at = format!("{origin}: document {} (domain {:?})", n + 1, doc.domain);
        let invalid = |error: ValidationError| RulesFileError::Invalid {
            origin: at.clone(),
            error,
        };
        if doc.domain.is_empty() {
            return Err(invalid(ValidationError::new("domain", "must not be empty")));
        }
        if file.domains.contains(&doc.domain) {
            return Err(invalid(ValidationError::new(
                "domain",
                "is defined twice in this file",
            )));
        }
        let mut path = Vec::new();
        for (i, d) in doc.descriptors.iter().enumerate() {
            flatten(
                &doc.domain,
                d,
                &format!("descriptors[{i}]"),
                &mut path,
                &mut file.rules,
                caps,
            )
            .map_err(invalid)?;
        }
        file.domains.push(doc.domain);
        if file.rules.len() > caps.max_rules_per_update {
            break;
        }
    }
    NODES_LEFT.with(|n| n.set(usize::MAX));
    STRING_BYTES_LEFT.with(|b| b.set(usize::MAX));
    if file.rules.len() > caps.max_rules_per_update {
        return Err(RulesFileError::Invalid {
            origin: origin.to_string(),
            error: ValidationError::new(
                "descriptors",
                format!(
                    "the file defines more than {} rules, the most one update may hold",
                    caps.max_rules_per_update
                ),
            ),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for rule in &file.rules {
        if !seen.insert(rule.id()) {
            return Err(RulesFileError::Invalid {
                origin: origin.to_string(),
                error: ValidationError::new(rule.id(), "the same descriptor is defined twice"),
            });
        }
    }
    Ok(file)
}

fn flatten(
    domain: &str,
    doc: &DescriptorDoc,
    at: &str,
    path: &mut Vec<EntryMatch>,
    out: &mut Vec<Rule>,
    caps: &InputLimits,
) -> Result<(), ValidationError> {
    let entry = EntryMatch::parse(&doc.key, doc.value.as_deref().unwrap_or(""));
    // Checked here, where the YAML position of the entry is known: the rule's own check would
    // name the entry by its depth in the flattened rule.
    check_entry(at, &entry, path, caps)?;
    path.push(entry);
    let docs: Vec<(String, &LimitDoc)> = doc
        .rate_limit
        .iter()
        .map(|l| (format!("{at}.rate_limit"), l))
        .chain(
            doc.limits
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("{at}.limits[{i}]"), l)),
        )
        .collect();
    if !docs.is_empty() {
        let mut limits = Vec::with_capacity(docs.len());
        let mut replaces = Vec::new();
        for (field, l) in &docs {
            let spec = limit_spec(field, l)?;
            check_limit(field, &spec, caps)?;
            limits.push(spec);
            replaces.extend(l.replaces.iter().map(|r| r.name.clone()));
        }
        let rule = Rule {
            domain: domain.to_string(),
            path: path.clone(),
            limits,
            shadow_mode: doc.shadow_mode,
            priority: doc.priority.unwrap_or_default(),
            replaces,
            capacity_per_minute: doc.capacity,
        };
        // Re-label the core's `rules[..]`-style field names with the YAML position.
        check_rule(at, &rule, caps)?;
        out.push(rule);
    } else if doc.priority.is_some() || doc.shadow_mode || doc.capacity.is_some() {
        return Err(ValidationError::new(
            at,
            "priority, capacity and shadow_mode need a rate_limit (or limits) on the same descriptor",
        ));
    }
    for (i, child) in doc.descriptors.iter().enumerate() {
        flatten(
            domain,
            child,
            &format!("{at}.descriptors[{i}]"),
            path,
            out,
            caps,
        )?;
    }
    path.pop();
    Ok(())
}

fn limit_spec(field: &str, doc: &LimitDoc) -> Result<LimitSpec, ValidationError> {
    let rate = if doc.unlimited {
        if doc.requests_per_unit.is_some() || doc.unit.is_some() || doc.unit_multiplier.is_some() {
            return Err(ValidationError::new(
                field,
                "unlimited cannot be combined with requests_per_unit or unit",
            ));
        }
        None
    } else {
        let requests_per_unit = doc.requests_per_unit.ok_or_else(|| {
            ValidationError::new(
                format!("{field}.requests_per_unit"),
                "is required unless unlimited: true",
            )
        })?;
        let unit = doc.unit.ok_or_else(|| {
            ValidationError::new(
                format!("{field}.unit"),
                "is required unless unlimited: true",
            )
        })?;
        Some(Rate {
            requests_per_unit,
            unit,
            unit_multiplier: doc.unit_multiplier.unwrap_or(1),
        })
    };
    Ok(LimitSpec {
        name: doc.name.clone().unwrap_or_default(),
        rate,
        algorithm: doc.algorithm.unwrap_or_default(),
        burst: doc.burst,
        floor: doc.floor,
        ceiling: doc.ceiling,
        calendar: doc.calendar.clone(),
    })
}

#[cfg(test)]
#[path = "rules_file_tests.rs"]
mod tests;
