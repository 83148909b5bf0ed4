//! Calendar periods: a limit counted per day from local midnight, per week from Monday, per
//! month from the 1st or per year from 1 January, in a named IANA time zone — where the fixed
//! lengths of `Unit` (a month of 30 days from the Unix epoch) are not what a user means by "a
//! month". Daylight-saving days are 23 or 25 hours long here, as on a wall clock.
//!
//! Pure date arithmetic with time passed in (the zone database is compiled in). Only fixed
//! windows use it: a rate that refills (token bucket, GCRA) or slides has no calendar.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone};
pub use chrono_tz::Tz;

use crate::limit::Unit;
use crate::time::Nanos;

/// The units a calendar period may have.
pub const CALENDAR_UNITS: [Unit; 4] = [Unit::Day, Unit::Week, Unit::Month, Unit::Year];

/// Parses an IANA zone name (`Europe/Berlin`, `UTC`).
pub fn parse_zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

/// The calendar window of `unit` in `zone` that holds `now`: its start and end (exclusive).
/// A unit shorter than a day is taken as a day.
pub fn window(zone: Tz, unit: Unit, now: Nanos) -> (Nanos, Nanos) {
    let utc = DateTime::from_timestamp_nanos(now.min(i64::MAX as u64) as i64);
    let today = utc.with_timezone(&zone).date_naive();
    let start = match unit {
        Unit::Week => today - Days::new(u64::from(today.weekday().num_days_from_monday())),
        Unit::Month => today.with_day(1).unwrap_or(today),
        Unit::Year => today.with_ordinal(1).unwrap_or(today),
        _ => today,
    };
    let end = match unit {
        Unit::Week => start + Days::new(7),
        Unit::Month => start + Months::new(1),
        Unit::Year => start + Months::new(12),
        _ => start + Days::new(1),
    };
    (midnight(zone, start), midnight(zone, end))
}

/// The first instant of `date` in `zone` (where midnight does not exist, the day's first hour
/// that does).
fn midnight(zone: Tz, date: NaiveDate) -> Nanos {
    let at = (0..24)
        .find_map(|hour| {
            zone.from_local_datetime(&date.and_hms_opt(hour, 0, 0)?)
                .earliest()
        })
        .map_or(0, |t| t.timestamp_nanos_opt().unwrap_or(0));
    at.max(0) as Nanos
}

/// The longest one window of `unit` can be (a day and a daylight-saving hour; a month of 31
/// days): how long a bucket must be kept.
pub fn longest(unit: Unit) -> Nanos {
    const HOUR: Nanos = 3_600 * crate::time::NANOS_PER_SEC;
    const DAY: Nanos = 24 * HOUR;
    match unit {
        Unit::Week => 7 * DAY + HOUR,
        Unit::Month => 31 * DAY + HOUR,
        Unit::Year => 366 * DAY + HOUR,
        _ => DAY + HOUR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::NANOS_PER_SEC as S;

    fn at(text: &str) -> Nanos {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap() as Nanos
    }

    #[test]
    fn windows_follow_the_wall_clock_of_their_zone() {
        // (zone, unit, now, window start, window end), all in UTC.
        let cases = [
            // Berlin's March: from 1 March 00:00 CET to 1 April 00:00 CEST (DST on 29 March).
            (
                "Europe/Berlin",
                Unit::Month,
                "2026-03-15T12:00:00Z",
                "2026-02-28T23:00:00Z",
                "2026-03-31T22:00:00Z",
            ),
            // Still February in UTC, already March in Berlin.
            (
                "Europe/Berlin",
                Unit::Month,
                "2026-02-28T23:30:00Z",
                "2026-02-28T23:00:00Z",
                "2026-03-31T22:00:00Z",
            ),
            (
                "UTC",
                Unit::Month,
                "2026-02-28T23:30:00Z",
                "2026-02-01T00:00:00Z",
                "2026-03-01T00:00:00Z",
            ),
            // Weeks start on Monday: Saturday 5 December 2026 is in the week of Monday 30 November.
            (
                "UTC",
                Unit::Week,
                "2026-12-05T17:00:00Z",
                "2026-11-30T00:00:00Z",
                "2026-12-07T00:00:00Z",
            ),
            // New York's DST day (8 March 2026) is 23 hours long.
            (
                "America/New_York",
                Unit::Day,
                "2026-03-08T12:00:00Z",
                "2026-03-08T05:00:00Z",
                "2026-03-09T04:00:00Z",
            ),
            (
                "Asia/Kolkata",
                Unit::Day,
                "2026-06-01T20:00:00Z",
                "2026-06-01T18:30:00Z",
                "2026-06-02T18:30:00Z",
            ),
            (
                "UTC",
                Unit::Year,
                "2028-12-31T23:59:59Z",
                "2028-01-01T00:00:00Z",
                "2029-01-01T00:00:00Z",
            ),
        ];
        for (zone, unit, now, start, end) in cases {
            let tz = parse_zone(zone).unwrap();
            assert_eq!(
                window(tz, unit, at(now)),
                (at(start), at(end)),
                "{zone} {unit:?} at {now}"
            );
            assert!(at(end) - at(start) <= longest(unit));
        }
        assert_eq!(parse_zone("Mars/Olympus"), None);
    }

    /// Every instant lies in its window, and consecutive windows tile time with no gap.
    #[test]
    fn windows_tile_time() {
        let tz = parse_zone("Europe/London").unwrap();
        for unit in CALENDAR_UNITS {
            let mut t = at("2025-12-20T00:00:00Z");
            let mut last_end = None;
            while t < at("2027-02-01T00:00:00Z") {
                let (start, end) = window(tz, unit, t);
                assert!(start <= t && t < end, "{unit:?} at {t}");
                if let Some(e) = last_end {
                    assert!(start == e || start < t, "{unit:?}: a gap before {start}");
                }
                last_end = Some(end);
                t += 7 * 3_600 * S;
            }
        }
    }
}
