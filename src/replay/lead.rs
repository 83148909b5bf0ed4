//! Lead time, measured: for each pressure episode of a replay (a cut and its lifting), when the
//! forecast first said a watched endpoint would go over its capacity and when the measured
//! traffic first did, so a report says whether the forecast saw the rise coming and by how many
//! minutes. Pure bookkeeping over what each closed minute served and measured.

use serde::Serialize;

use sluice_core::forecast::Forecast;
use sluice_core::time::{NANOS_PER_MILLI, Nanos};

/// How far before a cut the crossings are looked for (a forecast reaches 15 minutes ahead).
const LOOK_BACK_MS: i64 = 30 * 60_000;

/// One watched endpoint's minute: was the forecast, or the traffic, over its capacity?
#[derive(Clone, Debug)]
struct Mark {
    at_ms: i64,
    series: String,
    /// The minute the forecast said the crossing would come, if it said so.
    forecast_over_for_ms: Option<i64>,
    measured_over: bool,
}

/// Per pressure episode.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LeadTime {
    /// When the cut came (ms) and on which endpoint the crossings were seen.
    pub cut_ts: i64,
    pub series: String,
    /// The first minute the served forecast was over capacity (ms; when it was made), and the
    /// minute it said the crossing would be.
    pub forecast_over_ts: Option<i64>,
    pub forecast_said_for_ts: Option<i64>,
    /// The first minute the measured traffic was over capacity.
    pub measured_over_ts: Option<i64>,
    /// Minutes the forecast was ahead of the measured crossing (negative: behind; absent when
    /// either never crossed).
    pub lead_minutes: Option<f64>,
}

#[derive(Default)]
pub struct LeadTracker {
    marks: Vec<Mark>,
    /// (tightened at, restored at) in ms.
    episodes: Vec<(i64, Option<i64>)>,
}

/// Most minutes × endpoints kept (a week of 10 watched endpoints); past it, no more marks.
const MAX_MARKS: usize = 100_800;

impl LeadTracker {
    /// A closed minute (`end`): the served forecasts and the measured count of each watched
    /// endpoint (`capacities`: per minute).
    pub fn minute(
        &mut self,
        end: Nanos,
        forecasts: &[(String, Forecast)],
        measured: impl Fn(&str) -> f64,
        capacities: &[(String, u64)],
    ) {
        let at_ms = (end / NANOS_PER_MILLI) as i64;
        for (series, capacity) in capacities {
            if self.marks.len() >= MAX_MARKS {
                return;
            }
            let capacity = *capacity as f64;
            let forecast_over_for_ms = forecasts
                .iter()
                .find(|(s, _)| s == series)
                .and_then(|(_, f)| f.iter().position(|&x| x > capacity))
                .map(|i| at_ms + (i as i64 + 1) * 60_000);
            self.marks.push(Mark {
                at_ms,
                series: series.clone(),
                forecast_over_for_ms,
                measured_over: measured(series) > capacity,
            });
        }
    }

    /// A cut (a change of factor while one is in force is the same episode).
    pub fn tightened(&mut self, at_ms: i64) {
        if self.episodes.last().is_none_or(|e| e.1.is_some()) {
            self.episodes.push((at_ms, None));
        }
    }

    pub fn restored(&mut self, at_ms: i64) {
        if let Some(last) = self.episodes.last_mut()
            && last.1.is_none()
        {
            last.1 = Some(at_ms);
        }
    }

    /// One entry per episode and endpoint that crossed (forecast or measured) within it.
    pub fn finish(self) -> Vec<LeadTime> {
        let mut out = Vec::new();
        for (cut, restored) in &self.episodes {
            let window =
                |m: &&Mark| m.at_ms >= cut - LOOK_BACK_MS && restored.is_none_or(|r| m.at_ms <= r);
            let mut series: Vec<&str> = self
                .marks
                .iter()
                .filter(window)
                .map(|m| m.series.as_str())
                .collect();
            series.sort_unstable();
            series.dedup();
            for s in series {
                let marks = || self.marks.iter().filter(window).filter(|m| m.series == s);
                let forecast = marks().find(|m| m.forecast_over_for_ms.is_some());
                let measured = marks().find(|m| m.measured_over).map(|m| m.at_ms);
                if forecast.is_none() && measured.is_none() {
                    continue;
                }
                let forecast_over_ts = forecast.map(|m| m.at_ms);
                out.push(LeadTime {
                    cut_ts: *cut,
                    series: s.to_string(),
                    forecast_over_ts,
                    forecast_said_for_ts: forecast.and_then(|m| m.forecast_over_for_ms),
                    measured_over_ts: measured,
                    lead_minutes: forecast_over_ts
                        .zip(measured)
                        .map(|(f, m)| (m - f) as f64 / 60_000.0),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Nanos = 60_000 * NANOS_PER_MILLI;

    #[test]
    fn the_forecast_is_credited_with_the_minutes_it_was_ahead() {
        let caps = vec![("/pay".to_string(), 100)];
        let mut t = LeadTracker::default();
        // Minutes 1..=20: traffic ramps 60 → 155; the forecast says "over" from minute 5 on
        // (for 5 minutes later), the traffic is over from minute 10.
        for m in 1..=20u64 {
            let traffic = 60.0 + 5.0 * (m - 1) as f64;
            let mut f = [traffic; 15];
            if m >= 5 {
                f[4] = 120.0;
            }
            t.minute(m * MIN, &[("/pay".to_string(), f)], |_| traffic, &caps);
            if m == 6 {
                t.tightened(6 * 60_000);
            }
        }
        t.restored(20 * 60_000);
        // A second episode with nothing over capacity in it reports nothing.
        t.tightened(90 * 60_000);
        let leads = t.finish();
        assert_eq!(leads.len(), 1, "{leads:?}");
        let l = &leads[0];
        assert_eq!(l.series, "/pay");
        assert_eq!(l.forecast_over_ts, Some(5 * 60_000));
        assert_eq!(l.forecast_said_for_ts, Some(10 * 60_000));
        // 60 + 5·(m−1) > 100 from m = 10.
        assert_eq!(l.measured_over_ts, Some(10 * 60_000));
        assert_eq!(l.lead_minutes, Some(5.0));
    }
}
