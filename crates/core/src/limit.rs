//! Limits as the core sees them: a rate (`requests_per_unit` per `unit`), the algorithm that
//! enforces it, and the envelope (floor/ceiling) the adaptive loop must stay within.
//!
//! This module is plain data with no I/O; the rules file and the gRPC API both translate into it.

use serde::{Deserialize, Serialize};

use super::time::NANOS_PER_SEC;

/// The unit a limit is counted in. Month and year are fixed lengths (30 and 365 days), as in
/// envoyproxy/ratelimit, so that windows never depend on a calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    pub const ALL: [Unit; 7] = [
        Unit::Second,
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Year,
    ];

    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
            Unit::Week => 604_800,
            Unit::Month => 2_592_000,
            Unit::Year => 31_536_000,
        }
    }

    pub fn nanos(self) -> u64 {
        self.seconds() * NANOS_PER_SEC
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    pub fn parse(text: &str) -> Option<Unit> {
        Unit::ALL
            .into_iter()
            .find(|u| u.as_str().eq_ignore_ascii_case(text))
    }
}

/// How a limit is enforced. All three never admit more than the limit allows (see `bucket`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Capacity `burst` (default `requests_per_unit`), refilled at `requests_per_unit` per unit.
    #[default]
    TokenBucket,
    /// A counter per unit-long window aligned to the Unix epoch (envoyproxy/ratelimit's model).
    FixedWindow,
    /// A window of one unit that slides with time, kept as ten sub-windows.
    SlidingWindow,
    /// The generic cell rate algorithm: one timestamp per key (the theoretical arrival time),
    /// requests spaced a period ÷ limit apart, `burst` of them at once at most (default 1: evenly
    /// spaced). Admits as a token bucket of capacity `burst` would, from less state.
    Gcra,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::Gcra => "gcra",
        }
    }

    pub const ALL: [Algorithm; 4] = [
        Algorithm::TokenBucket,
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
        Algorithm::Gcra,
    ];

    /// The capacity when a limit names no `burst`: a token bucket holds a whole period's
    /// requests; GCRA spaces requests evenly (one at a time), which is why one chooses it.
    pub fn default_capacity(self, requests_per_unit: u64) -> u64 {
        match self {
            Algorithm::Gcra => 1,
            _ => requests_per_unit,
        }
    }
}

/// `requests_per_unit` requests per `unit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rate {
    pub requests_per_unit: u64,
    pub unit: Unit,
    /// The period is this many units ("5 per 30 seconds": 30 × `second`); 1 unless set.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub unit_multiplier: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The most units one period may span: any period up to about three years of seconds stays
/// well inside the arithmetic's range.
pub const MAX_UNIT_MULTIPLIER: u32 = 100_000_000;

impl Rate {
    /// The period's length.
    pub fn period_nanos(&self) -> u64 {
        self.unit
            .nanos()
            .saturating_mul(u64::from(self.unit_multiplier.max(1)))
    }
}

/// One limit of a rule. A rule may carry several (say a burst limit and a daily limit); all apply
/// and the strictest decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSpec {
    /// Display name; also what Envoy's `replaces` refers to. Empty means unnamed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `None` means unlimited: the rule matches and stops less specific rules, but never denies.
    pub rate: Option<Rate>,
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Token-bucket capacity; defaults to `requests_per_unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// The lowest `requests_per_unit` an adaptive change may set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<u64>,
    /// The highest `requests_per_unit` an adaptive change may set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<u64>,
    /// A calendar period in this IANA time zone (`Europe/Berlin`): the window of a fixed-window
    /// limit of a day, week, month or year starts at local midnight, on Monday, on the 1st, on
    /// 1 January (see `calendar`). `None`: windows of fixed length from the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
}

impl LimitSpec {
    /// `requests_per_unit` per `unit`: a token bucket with no name, burst or envelope.
    pub fn per(requests_per_unit: u64, unit: Unit) -> LimitSpec {
        LimitSpec {
            name: String::new(),
            rate: Some(Rate {
                requests_per_unit,
                unit,
                unit_multiplier: 1,
            }),
            algorithm: Algorithm::TokenBucket,
            burst: None,
            floor: None,
            ceiling: None,
            calendar: None,
        }
    }

    pub fn quota(&self) -> Option<Quota> {
        self.rate.map(|rate| Quota {
            limit: rate.requests_per_unit,
            unit: rate.unit,
            multiplier: rate.unit_multiplier.max(1),
            capacity: self
                .burst
                .unwrap_or(self.algorithm.default_capacity(rate.requests_per_unit)),
            algorithm: self.algorithm,
            calendar: self
                .calendar
                .as_deref()
                .and_then(crate::calendar::parse_zone),
        })
    }
}

/// What a bucket needs to know to decide: the enforced numbers of one limit, after any adaptive
/// adjustment. Cheap to copy; built per decision from the compiled rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Requests admitted per period: `multiplier` × `unit` (the refill rate of a token bucket).
    pub limit: u64,
    pub unit: Unit,
    /// Units in the period (1: one unit).
    pub multiplier: u32,
    /// Token-bucket capacity, GCRA's burst (ignored by the window algorithms).
    pub capacity: u64,
    pub algorithm: Algorithm,
    /// A fixed window on the calendar of this zone (validated: fixed windows of a day or more).
    pub calendar: Option<crate::calendar::Tz>,
}

impl Quota {
    /// `rate` with no burst named: the algorithm's default capacity.
    pub fn without_burst(rate: Rate, algorithm: Algorithm) -> Quota {
        Quota {
            limit: rate.requests_per_unit,
            unit: rate.unit,
            multiplier: rate.unit_multiplier.max(1),
            capacity: algorithm.default_capacity(rate.requests_per_unit),
            algorithm,
            calendar: None,
        }
    }

    /// The period's length: `multiplier` units.
    pub fn window_nanos(&self) -> u64 {
        self.unit
            .nanos()
            .saturating_mul(u64::from(self.multiplier.max(1)))
    }

    /// The period in seconds.
    pub fn window_seconds(&self) -> u64 {
        self.unit
            .seconds()
            .saturating_mul(u64::from(self.multiplier.max(1)))
    }

    /// How long after its last use a bucket is indistinguishable from a fresh one: dropping it
    /// any earlier would hand its key a fresh allowance.
    pub fn full_recovery(&self) -> u64 {
        let window = self.window_nanos();
        match self.algorithm {
            // GCRA's timestamp runs at most `capacity` spacings ahead of the last use.
            Algorithm::TokenBucket | Algorithm::Gcra => ((self.capacity as u128 * window as u128)
                .div_ceil(self.limit.max(1) as u128))
            .min(u64::MAX as u128) as u64,
            Algorithm::FixedWindow => match self.calendar {
                Some(_) => crate::calendar::longest(self.unit),
                None => window,
            },
            Algorithm::SlidingWindow => window + window / super::bucket::SLIDING_SLOTS,
        }
    }
}
/// A quota under a pressure cut (every decision asks, `forecast::pressure` decides the factor): its rate and its burst capacity each cut by `cut_limit`.
pub fn cut_quota(quota: Quota, factor: f64, floor: Option<u64>) -> Quota {
    Quota {
        limit: cut_limit(quota.limit, factor, floor),
        capacity: cut_limit(quota.capacity, factor, floor),
        ..quota
    }
}

/// A limit under a cut: `limit` requests per unit times `factor`, rounded up, never below the
/// limit's `floor` nor below 1.
pub fn cut_limit(limit: u64, factor: f64, floor: Option<u64>) -> u64 {
    let cut = (limit as f64 * factor).ceil() as u64;
    cut.max(floor.unwrap_or(0)).max(1).min(limit)
}
