//! Protobuf ⇄ core translations, with the validation only the wire format needs (enum numbers
//! that name nothing, fields that must be present). Errors name the field.

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit as EnvoyUnit;

use crate::proto::sluice::v1 as pb;
use sluice_core::engine::Subject;
use sluice_core::learn::actions::ActionKind;
use sluice_core::limit::{Algorithm, LimitSpec, Rate, Unit};
use sluice_core::rules::{EntryMatch, Priority, Rule, Tier};
use sluice_core::time::Nanos;
use sluice_core::validate::{InputLimits, ValidationError, check_len};

pub fn duration(nanos: Nanos) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (nanos / 1_000_000_000) as i64,
        nanos: (nanos % 1_000_000_000) as i32,
    }
}

pub fn unit_to_proto(unit: Unit) -> pb::Unit {
    match unit {
        Unit::Second => pb::Unit::Second,
        Unit::Minute => pb::Unit::Minute,
        Unit::Hour => pb::Unit::Hour,
        Unit::Day => pb::Unit::Day,
        Unit::Week => pb::Unit::Week,
        Unit::Month => pb::Unit::Month,
        Unit::Year => pb::Unit::Year,
    }
}

fn unit_from_proto(field: &str, value: i32) -> Result<Unit, ValidationError> {
    match pb::Unit::try_from(value) {
        Ok(pb::Unit::Second) => Ok(Unit::Second),
        Ok(pb::Unit::Minute) => Ok(Unit::Minute),
        Ok(pb::Unit::Hour) => Ok(Unit::Hour),
        Ok(pb::Unit::Day) => Ok(Unit::Day),
        Ok(pb::Unit::Week) => Ok(Unit::Week),
        Ok(pb::Unit::Month) => Ok(Unit::Month),
        Ok(pb::Unit::Year) => Ok(Unit::Year),
        Ok(pb::Unit::Unspecified) => Err(ValidationError::new(field, "is required")),
        Err(_) => Err(ValidationError::new(field, format!("unknown unit {value}"))),
    }
}

pub fn unit_to_envoy(unit: Unit) -> EnvoyUnit {
    match unit {
        Unit::Second => EnvoyUnit::Second,
        Unit::Minute => EnvoyUnit::Minute,
        Unit::Hour => EnvoyUnit::Hour,
        Unit::Day => EnvoyUnit::Day,
        Unit::Week => EnvoyUnit::Week,
        Unit::Month => EnvoyUnit::Month,
        Unit::Year => EnvoyUnit::Year,
    }
}

/// Envoy's `envoy.type.v3.RateLimitUnit` (used by a descriptor's limit override).
pub fn unit_from_envoy_override(field: &str, value: i32) -> Result<Unit, ValidationError> {
    use envoy_types::pb::envoy::r#type::v3::RateLimitUnit as U;
    match U::try_from(value) {
        Ok(U::Second) => Ok(Unit::Second),
        Ok(U::Minute) => Ok(Unit::Minute),
        Ok(U::Hour) => Ok(Unit::Hour),
        Ok(U::Day) => Ok(Unit::Day),
        Ok(U::Month) => Ok(Unit::Month),
        Ok(U::Year) => Ok(Unit::Year),
        _ => Err(ValidationError::new(field, format!("unknown unit {value}"))),
    }
}

fn algorithm_from_proto(field: &str, value: i32) -> Result<Algorithm, ValidationError> {
    match pb::Algorithm::try_from(value) {
        Ok(pb::Algorithm::Unspecified | pb::Algorithm::TokenBucket) => Ok(Algorithm::TokenBucket),
        Ok(pb::Algorithm::FixedWindow) => Ok(Algorithm::FixedWindow),
        Ok(pb::Algorithm::SlidingWindow) => Ok(Algorithm::SlidingWindow),
        Ok(pb::Algorithm::Gcra) => Ok(Algorithm::Gcra),
        Err(_) => Err(ValidationError::new(
            field,
            format!("unknown algorithm {value}"),
        )),
    }
}

pub fn algorithm_to_proto(algorithm: Algorithm) -> pb::Algorithm {
    match algorithm {
        Algorithm::TokenBucket => pb::Algorithm::TokenBucket,
        Algorithm::FixedWindow => pb::Algorithm::FixedWindow,
        Algorithm::SlidingWindow => pb::Algorithm::SlidingWindow,
        Algorithm::Gcra => pb::Algorithm::Gcra,
    }
}

fn priority_from_proto(field: &str, value: i32) -> Result<Priority, ValidationError> {
    match pb::Priority::try_from(value) {
        Ok(pb::Priority::Unspecified | pb::Priority::Normal) => Ok(Priority::Normal),
        Ok(pb::Priority::High) => Ok(Priority::High),
        Ok(pb::Priority::Low) => Ok(Priority::Low),
        Err(_) => Err(ValidationError::new(
            field,
            format!("unknown priority {value}"),
        )),
    }
}

fn priority_to_proto(priority: Priority) -> pb::Priority {
    match priority {
        Priority::Normal => pb::Priority::Normal,
        Priority::High => pb::Priority::High,
        Priority::Low => pb::Priority::Low,
    }
}

/// A rule from the API; `field` is its position (`rules[3]`). Semantic checks (limits, lengths,
/// tiers, floors) are the core's `check_rule`, run on the whole batch afterwards.
pub fn rule_from_proto(field: &str, rule: &pb::Rule) -> Result<Rule, ValidationError> {
    let path = rule
        .descriptors
        .iter()
        .map(|e| EntryMatch::parse(&e.key, &e.value))
        .collect();
    let mut limits = Vec::with_capacity(rule.limits.len());
    for (i, l) in rule.limits.iter().enumerate() {
        let at = format!("{field}.limits[{i}]");
        let rate = if l.unlimited {
            if l.requests_per_unit != 0 || l.unit != 0 {
                return Err(ValidationError::new(
                    at,
                    "unlimited cannot be combined with requests_per_unit or unit",
                ));
            }
            None
        } else {
            Some(Rate {
                requests_per_unit: l.requests_per_unit,
                unit: unit_from_proto(&format!("{at}.unit"), l.unit)?,
                unit_multiplier: l.unit_multiplier.max(1),
            })
        };
        limits.push(LimitSpec {
            name: l.name.clone(),
            rate,
            algorithm: algorithm_from_proto(&format!("{at}.algorithm"), l.algorithm)?,
            burst: (l.burst != 0).then_some(l.burst),
            floor: l.floor,
            ceiling: l.ceiling,
            calendar: (!l.calendar.is_empty()).then(|| l.calendar.clone()),
        });
    }
    Ok(Rule {
        domain: rule.domain.clone(),
        path,
        limits,
        shadow_mode: rule.shadow_mode,
        priority: priority_from_proto(&format!("{field}.priority"), rule.priority)?,
        replaces: rule.replaces.clone(),
        capacity_per_minute: rule.capacity_per_minute,
    })
}

pub fn rule_to_proto(rule: &Rule) -> pb::Rule {
    pb::Rule {
        id: rule.id(),
        domain: rule.domain.clone(),
        descriptors: rule
            .path
            .iter()
            .map(|e| pb::DescriptorEntry {
                key: e.key.clone(),
                value: e.value.spelling(),
            })
            .collect(),
        limits: rule
            .limits
            .iter()
            .map(|l| pb::Limit {
                name: l.name.clone(),
                requests_per_unit: l.rate.map_or(0, |r| r.requests_per_unit),
                unit: l
                    .rate
                    .map_or(pb::Unit::Unspecified, |r| unit_to_proto(r.unit))
                    as i32,
                unlimited: l.rate.is_none(),
                algorithm: algorithm_to_proto(l.algorithm) as i32,
                burst: l.burst.unwrap_or(0),
                floor: l.floor,
                ceiling: l.ceiling,
                unit_multiplier: l.rate.map_or(0, |r| r.unit_multiplier),
                calendar: l.calendar.clone().unwrap_or_default(),
            })
            .collect(),
        shadow_mode: rule.shadow_mode,
        priority: priority_to_proto(rule.priority) as i32,
        replaces: rule.replaces.clone(),
        capacity_per_minute: rule.capacity_per_minute,
    }
}

/// A subject from the API, borrowed; every field length-checked, the tier must name a tier.
pub fn subject_from_proto<'a>(
    field: &str,
    subject: Option<&'a pb::Subject>,
    caps: &InputLimits,
) -> Result<Subject<'a>, ValidationError> {
    let subject = subject.ok_or_else(|| ValidationError::new(field, "is required"))?;
    let tier = match pb::Tier::try_from(subject.tier) {
        Ok(pb::Tier::Unspecified | pb::Tier::Std) => Tier::Std,
        Ok(pb::Tier::Prm) => Tier::Prm,
        Err(_) => {
            return Err(ValidationError::new(
                format!("{field}.tier"),
                format!(
                    "unknown tier {}: expected TIER_STD or TIER_PRM",
                    subject.tier
                ),
            ));
        }
    };
    for (name, value) in [
        ("client_ip", &subject.client_ip),
        ("user_id", &subject.user_id),
        ("endpoint", &subject.endpoint),
        ("method", &subject.method),
        ("user_agent", &subject.user_agent),
    ] {
        check_len(&format!("{field}.{name}"), value, caps.max_value_len)?;
    }
    Ok(Subject {
        remote_address: &subject.client_ip,
        user_id: &subject.user_id,
        tier,
        endpoint: &subject.endpoint,
        method: &subject.method,
        user_agent: &subject.user_agent,
    })
}

/// The reason a decision denied by an anomaly action carries.
pub fn action_reason(kind: ActionKind) -> pb::Reason {
    match kind {
        ActionKind::Block => pb::Reason::BlockedAnomaly,
        ActionKind::Throttle { .. } => pb::Reason::ThrottledAnomaly,
    }
}

/// Why a `ShouldAllow`-like verdict ended as it did: within limits, an anomaly action, a
/// forecast cut, or a limit.
pub fn verdict_reason(verdict: &sluice_core::engine::Verdict, allowed: bool) -> pb::Reason {
    match verdict.anomaly {
        _ if allowed => pb::Reason::WithinLimit,
        Some(hit) if hit.denied && !hit.shadow => action_reason(hit.kind),
        _ if verdict.forecast_cut => pb::Reason::ThrottledForecast,
        _ => pb::Reason::OverLimit,
    }
}
