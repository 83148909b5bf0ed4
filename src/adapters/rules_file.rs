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
//! Envoy's fields (`key`, `value`, `rate_limit {unit, requests_per_unit, unlimited, name,
//! replaces}`, `shadow_mode`, `detailed_metric`, nested `descriptors`) load as is. Sluice adds
//! `limits` (more limits on the same descriptor), `priority`, `capacity` (requests per minute the
//! endpoint can take), and per limit `algorithm`,
//! `burst`, `floor`, `ceiling`. Unknown fields are errors, so typos do not pass silently.
//! This module parses and validates; it changes nothing.

use serde::Deserialize;

use sluice_core::limit::{Algorithm, LimitSpec, Rate, Unit};
use sluice_core::rules::{EntryMatch, Priority, Rule};
use sluice_core::validate::{InputLimits, ValidationError, check_rule};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainDoc {
    domain: String,
    #[serde(default)]
    descriptors: Vec<DescriptorDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DescriptorDoc {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    rate_limit: Option<LimitDoc>,
    #[serde(default)]
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
    #[serde(default)]
    descriptors: Vec<DescriptorDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitDoc {
    #[serde(default)]
    unit: Option<Unit>,
    #[serde(default)]
    requests_per_unit: Option<u64>,
    #[serde(default)]
    unlimited: bool,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    replaces: Vec<ReplacesDoc>,
    #[serde(default)]
    algorithm: Option<Algorithm>,
    #[serde(default)]
    burst: Option<u64>,
    #[serde(default)]
    floor: Option<u64>,
    #[serde(default)]
    ceiling: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplacesDoc {
    name: String,
}

pub fn load(path: &std::path::Path, caps: &InputLimits) -> Result<RulesFile, RulesFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| RulesFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&path.display().to_string(), &text, caps)
}

/// Parses and validates a whole file; `origin` names it in errors.
pub fn parse(origin: &str, text: &str, caps: &InputLimits) -> Result<RulesFile, RulesFileError> {
    let mut file = RulesFile::default();
    for (n, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc = DomainDoc::deserialize(document).map_err(|e| RulesFileError::Yaml {
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
    path.push(EntryMatch::parse(
        &doc.key,
        doc.value.as_deref().unwrap_or(""),
    ));
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
            limits.push(limit_spec(field, l)?);
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
        if doc.requests_per_unit.is_some() || doc.unit.is_some() {
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
        })
    };
    Ok(LimitSpec {
        name: doc.name.clone().unwrap_or_default(),
        rate,
        algorithm: doc.algorithm.unwrap_or_default(),
        burst: doc.burst,
        floor: doc.floor,
        ceiling: doc.ceiling,
    })
}

#[cfg(test)]
#[path = "rules_file_tests.rs"]
mod tests;
