//! Input validation for rules and descriptors. Every error names the offending field with a path
//! such as `rules[2].limits[0].floor`, so a client can point at the exact input to fix.
//!
//! Validation is complete before anything changes: callers validate a whole batch, then apply it.

use std::collections::HashMap;

use super::limit::{LimitSpec, MAX_UNIT_MULTIPLIER};
use super::rules::{EntryMatch, Rule, Tier, ValueMatch, subject_keys};

/// Caps on request and rule sizes. Configurable (see `config`); the defaults are generous for
/// real gateways and small enough that no request can make the service do unbounded work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputLimits {
    pub max_descriptors: usize,
    pub max_entries: usize,
    pub max_key_len: usize,
    pub max_value_len: usize,
    pub max_rules_per_update: usize,
    pub max_limits_per_rule: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_descriptors: 32,
            max_entries: 16,
            max_key_len: 128,
            max_value_len: 1024,
            max_rules_per_update: 10_000,
            max_limits_per_rule: 8,
        }
    }
}

impl InputLimits {
    /// The longest rule id a valid rule can have (`domain|key=value|…`): longer ids name no
    /// rule, and are refused before any lookup.
    pub fn max_rule_id_len(&self) -> usize {
        self.max_key_len + self.max_entries * (self.max_key_len + self.max_value_len + 2)
    }
}

/// Most limit names one rule's `replaces` may list.
pub const MAX_REPLACES: usize = 64;

/// Longest period a limit may have (`unit_multiplier` units): ten years.
pub const MAX_PERIOD_SECONDS: u64 = 10 * 365 * 86_400;

/// Largest `requests_per_unit` accepted: keeps every bucket computation far from overflow.
pub const MAX_REQUESTS_PER_UNIT: u64 = 1_000_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }
}

type Result<T = ()> = std::result::Result<T, ValidationError>;

pub fn check_domain(field: &str, domain: &str, caps: &InputLimits) -> Result {
    if domain.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    check_len(field, domain, caps.max_key_len)
}

pub fn check_len(field: &str, text: &str, max: usize) -> Result {
    check_len_of(|| field.to_string(), text, max)
}

/// `check_len` with the field's name built only when the check fails: for names made per
/// element (`descriptors[2].entries[0].value`) on paths checked on every call.
pub fn check_len_of(field: impl FnOnce() -> String, text: &str, max: usize) -> Result {
    if text.len() > max {
        return Err(ValidationError::new(
            field(),
            format!(
                "is {} bytes long, more than the maximum of {max}",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Validates one entry of a rule's path; `before` are the entries above it (a key may appear
/// once per rule). `at` names the entry (`rules[3].descriptors[1]`, or a rules file's YAML
/// position), and errors name its `.key` or `.value`.
pub fn check_entry(
    at: &str,
    entry: &EntryMatch,
    before: &[EntryMatch],
    caps: &InputLimits,
) -> Result {
    if entry.key.is_empty() {
        return Err(ValidationError::new(
            format!("{at}.key"),
            "must not be empty",
        ));
    }
    check_len(&format!("{at}.key"), &entry.key, caps.max_key_len)?;
    let value = entry.value.spelling();
    check_len(&format!("{at}.value"), &value, caps.max_value_len)?;
    if entry.key == subject_keys::TIER
        && let ValueMatch::Exact(v) = &entry.value
        && Tier::parse(v).is_none()
    {
        return Err(ValidationError::new(
            format!("{at}.value"),
            format!("unknown tier {v:?}: expected STD or PRM"),
        ));
    }
    if before.iter().any(|e| e.key == entry.key) {
        return Err(ValidationError::new(
            format!("{at}.key"),
            format!("key {:?} appears twice in one rule", entry.key),
        ));
    }
    Ok(())
}

/// Validates one rule; `field` is its position in the batch (e.g. `rules[3]`).
pub fn check_rule(field: &str, rule: &Rule, caps: &InputLimits) -> Result {
    check_domain(&format!("{field}.domain"), &rule.domain, caps)?;
    if rule.path.is_empty() {
        return Err(ValidationError::new(
            format!("{field}.descriptors"),
            "must have at least one entry",
        ));
    }
    if rule.path.len() > caps.max_entries {
        return Err(ValidationError::new(
            format!("{field}.descriptors"),
            format!(
                "has {} entries, more than the maximum of {}",
                rule.path.len(),
                caps.max_entries
            ),
        ));
    }
    if rule.capacity_per_minute == Some(0) {
        return Err(ValidationError::new(
            format!("{field}.capacity_per_minute"),
            "must be at least 1 (leave it unset for no capacity)",
        ));
    }
    if rule.capacity_per_minute.is_some() && rule.endpoint().is_none() {
        return Err(ValidationError::new(
            format!("{field}.capacity_per_minute"),
            "needs a rule that names one endpoint (an `endpoint` entry with an exact value)",
        ));
    }
    for (i, entry) in rule.path.iter().enumerate() {
        check_entry(
            &format!("{field}.descriptors[{i}]"),
            entry,
            &rule.path[..i],
            caps,
        )?;
    }
    if rule.limits.is_empty() {
        return Err(ValidationError::new(
            format!("{field}.limits"),
            "must have at least one limit (use `unlimited` for none)",
        ));
    }
    if rule.limits.len() > caps.max_limits_per_rule {
        return Err(ValidationError::new(
            format!("{field}.limits"),
            format!(
                "has {} limits, more than the maximum of {}",
                rule.limits.len(),
                caps.max_limits_per_rule
            ),
        ));
    }
    for (i, limit) in rule.limits.iter().enumerate() {
        let at = format!("{field}.limits[{i}]");
        check_limit(&at, limit, caps)?;
        if !limit.name.is_empty() && rule.limits[..i].iter().any(|l| l.name == limit.name) {
            return Err(ValidationError::new(
                format!("{at}.name"),
                format!("limit name {:?} is used twice in one rule", limit.name),
            ));
        }
    }
    if rule.replaces.len() > MAX_REPLACES {
        return Err(ValidationError::new(
            format!("{field}.replaces"),
            format!(
                "names {} limits, more than the maximum of {MAX_REPLACES}",
                rule.replaces.len()
            ),
        ));
    }
    for (i, name) in rule.replaces.iter().enumerate() {
        // Names of limits: as long as a limit's name may be.
        check_len(&format!("{field}.replaces[{i}]"), name, caps.max_key_len)?;
        if name.is_empty() {
            return Err(ValidationError::new(
                format!("{field}.replaces[{i}]"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

pub fn check_limit(field: &str, limit: &LimitSpec, caps: &InputLimits) -> Result {
    check_len(&format!("{field}.name"), &limit.name, caps.max_key_len)?;
    let Some(rate) = limit.rate else {
        if limit.burst.is_some() || limit.floor.is_some() || limit.ceiling.is_some() {
            return Err(ValidationError::new(
                field,
                "an unlimited limit cannot have burst, floor or ceiling",
            ));
        }
        return Ok(());
    };
    let rpu = rate.requests_per_unit;
    if rpu == 0 {
        return Err(ValidationError::new(
            format!("{field}.requests_per_unit"),
            "must be greater than zero (use `unlimited: true` for no limit)",
        ));
    }
    if rpu > MAX_REQUESTS_PER_UNIT {
        return Err(ValidationError::new(
            format!("{field}.requests_per_unit"),
            format!("{rpu} is more than the maximum of {MAX_REQUESTS_PER_UNIT}"),
        ));
    }
    let multiplier = rate.unit_multiplier;
    let period_seconds = rate.unit.seconds().saturating_mul(u64::from(multiplier));
    if multiplier == 0 || multiplier > MAX_UNIT_MULTIPLIER || period_seconds > MAX_PERIOD_SECONDS {
        return Err(ValidationError::new(
            format!("{field}.unit_multiplier"),
            format!(
                "{multiplier} is not a period: 1 or more {}s, ten years at most",
                rate.unit.as_str()
            ),
        ));
    }
    if let Some(zone) = &limit.calendar {
        check_calendar(&format!("{field}.calendar"), zone, limit, &rate, caps)?;
    }
    if let Some(burst) = limit.burst
        && (burst == 0 || burst > MAX_REQUESTS_PER_UNIT)
    {
        return Err(ValidationError::new(
            format!("{field}.burst"),
            format!("must be between 1 and {MAX_REQUESTS_PER_UNIT}"),
        ));
    }
    if let Some(floor) = limit.floor
        && floor == 0
    {
        return Err(ValidationError::new(
            format!("{field}.floor"),
            "must be greater than zero",
        ));
    }
    if let (Some(floor), Some(ceiling)) = (limit.floor, limit.ceiling)
        && floor > ceiling
    {
        return Err(ValidationError::new(
            format!("{field}.floor"),
            format!("floor {floor} is above ceiling {ceiling}"),
        ));
    }
    if let Some(floor) = limit.floor
        && floor > rpu
    {
        return Err(ValidationError::new(
            format!("{field}.floor"),
            format!("floor {floor} is above requests_per_unit {rpu}"),
        ));
    }
    if let Some(ceiling) = limit.ceiling
        && ceiling < rpu
    {
        return Err(ValidationError::new(
            format!("{field}.ceiling"),
            format!("ceiling {ceiling} is below requests_per_unit {rpu}"),
        ));
    }
    Ok(())
}

/// Validates a batch: every rule, then that no two rules in it share an id.
/// A calendar period: a known zone, on a fixed window of one day, week, month or year.
fn check_calendar(
    field: &str,
    zone: &str,
    limit: &LimitSpec,
    rate: &crate::limit::Rate,
    caps: &InputLimits,
) -> Result {
    check_len(field, zone, caps.max_key_len)?;
    if crate::calendar::parse_zone(zone).is_none() {
        return Err(ValidationError::new(
            field,
            format!("unknown time zone {zone:?}: an IANA name such as Europe/Berlin or UTC"),
        ));
    }
    if limit.algorithm != crate::limit::Algorithm::FixedWindow {
        return Err(ValidationError::new(
            field,
            format!(
                "a calendar period is counted per calendar window: algorithm must be fixed_window, not {}",
                limit.algorithm.as_str()
            ),
        ));
    }
    if !crate::calendar::CALENDAR_UNITS.contains(&rate.unit) || rate.unit_multiplier != 1 {
        return Err(ValidationError::new(
            field,
            format!(
                "a calendar period is one day, week, month or year, not {} {}(s)",
                rate.unit_multiplier,
                rate.unit.as_str()
            ),
        ));
    }
    Ok(())
}

pub fn check_batch(rules: &[Rule], caps: &InputLimits) -> Result {
    if rules.len() > caps.max_rules_per_update {
        return Err(ValidationError::new(
            "rules",
            format!(
                "has {} rules, more than the maximum of {}",
                rules.len(),
                caps.max_rules_per_update
            ),
        ));
    }
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        check_rule(&format!("rules[{i}]"), rule, caps)?;
        if let Some(first) = seen.insert(rule.id(), i) {
            return Err(ValidationError::new(
                format!("rules[{i}]"),
                format!(
                    "has the same domain and descriptors as rules[{first}] ({})",
                    rule.id()
                ),
            ));
        }
    }
    Ok(())
}
