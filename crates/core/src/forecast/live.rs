//! The forecasting step of the learning loop, pure: each closed minute's endpoint traffic extends
//! a rolling window per watched endpoint, the forecaster forecasts every full window, and the
//! pressure policy turns forecasts, measured traffic and backend loads into the cut in force.
//!
//! `crate::minute` calls [`Pipeline::step`] once a minute for the live service and replays, with
//! the forecaster passed in: the ONNX model when it loaded, the baseline otherwise. A forecaster
//! error degrades to the baseline for that minute; it never stops the step. What is served (and
//! what the pressure policy acts on) is each series' selector's choice among the model and the
//! baselines (`selector`), so a model poor on a series never forecasts it for long.

use std::collections::{BTreeMap, VecDeque};

use super::baseline::Fallback;
use super::pressure::{Cut, PressureChange, PressureConfig, Signals};
use super::selector::{Method, Selector, SelectorConfig};
use super::{Forecast, Forecaster, HORIZON, MinutePoint, WINDOW};
use crate::learn::observe::EndpointMinute;
use crate::matcher::RuleSet;
use crate::rules::{Priority, Tier};
use crate::time::{NANOS_PER_SEC, Nanos};

/// Endpoints watched at most (each keeps `WINDOW` minutes, and its selector a week of counts).
pub const MAX_WATCHED: usize = 1_000;

/// The series key of all traffic together.
pub use super::series::TOTAL;

/// High-priority endpoints with a capacity, from the rules: what the pressure policy watches.
pub fn capacities(rules: &RuleSet) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for r in rules.rules() {
        let rule = &r.rule;
        if rule.priority != Priority::High {
            continue;
        }
        if let (Some(cap), Some(endpoint)) = (rule.capacity_per_minute, rule.endpoint()) {
            // Several rules for one endpoint (per domain): the tightest capacity counts.
            let slot = out.entry(endpoint.to_string()).or_insert(cap);
            *slot = (*slot).min(cap);
        }
    }
    out.into_iter().take(MAX_WATCHED).collect()
}

/// What one step produced.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// The forecast per watched endpoint with a full window (and the total).
    pub forecasts: Vec<(String, Forecast)>,
    /// Who forecast: the forecaster's name, or the fallback's when it failed this minute.
    pub forecaster: String,
    /// The forecaster's error this minute, if it failed.
    pub error: Option<String>,
    pub change: Option<PressureChange>,
    /// Per series in `forecasts`, in the same order: which candidate speaks at 1 and at
    /// `HORIZON` minutes, and why (the selector's recent errors).
    pub methods: Vec<SeriesMethods>,
    /// The minute's measured requests per watched series (and the total), what the forecasts
    /// are later scored against.
    pub measured: Vec<(String, f64)>,
}

impl Step {
    /// The minute's measured requests of `series` (0 when it is not watched).
    pub fn measured_of(&self, series: &str) -> f64 {
        self.measured
            .iter()
            .find(|(k, _)| k == series)
            .map_or(0.0, |m| m.1)
    }
}

/// Which forecast speaks for one series, and why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesMethods {
    pub series: String,
    pub at_1: Method,
    pub at_horizon: Method,
    pub why: String,
}

#[derive(Debug)]
pub struct Pipeline {
    config: PressureConfig,
    series: BTreeMap<String, VecDeque<MinutePoint>>,
    /// One selector per series (forgotten with it).
    selectors: BTreeMap<String, Selector>,
    cut: Option<Cut>,
    last: Step,
}

impl Pipeline {
    pub fn new(config: PressureConfig) -> Pipeline {
        Pipeline {
            config,
            series: BTreeMap::new(),
            selectors: BTreeMap::new(),
            cut: None,
            last: Step::default(),
        }
    }

    pub fn config(&self) -> &PressureConfig {
        &self.config
    }

    /// The cut in force (shadow cuts included).
    pub fn cut(&self) -> Option<&Cut> {
        self.cut.as_ref()
    }

    /// The factor the engine should enforce: 1.0 unless a non-shadow cut is in force.
    pub fn enforced_factor(&self) -> f64 {
        self.cut
            .as_ref()
            .filter(|c| !c.shadow)
            .map_or(1.0, |c| c.factor)
    }

    pub fn last(&self) -> &Step {
        &self.last
    }

    /// Appends one closed minute (`minute`: its start) for every watched endpoint and the
    /// total; an endpoint with no traffic that minute gets a 0.
    fn push(&mut self, minute: Nanos, traffic: &[EndpointMinute], watched: &[(String, u64)]) {
        let index = (minute / (60 * NANOS_PER_SEC)) as i64;
        let mut minutes: BTreeMap<&str, [f64; 4]> = BTreeMap::new();
        for e in traffic {
            for key in [TOTAL, &*e.endpoint] {
                let c = minutes.entry(key).or_default();
                c[0] += e.requests as f64;
                if e.tier == Tier::Prm {
                    c[1] += e.requests as f64;
                }
                c[2] += e.errors as f64;
                c[3] += e.denied as f64;
            }
        }
        let keys = std::iter::once(TOTAL).chain(watched.iter().map(|(e, _)| e.as_str()));
        for key in keys {
            let c = minutes.get(key).copied().unwrap_or_default();
            let share = |x: f64| if c[0] > 0.0 { (x / c[0]).min(1.0) } else { 0.0 };
            let series = match self.series.get_mut(key) {
                Some(s) => s,
                None => self.series.entry(key.to_string()).or_default(),
            };
            series.push_back(MinutePoint {
                minute: index,
                requests: c[0],
                prm_share: share(c[1]),
                error_rate: share(c[2]),
                denied_share: share(c[3]),
            });
            while series.len() > WINDOW {
                series.pop_front();
            }
        }
        // Endpoints no longer watched (rules changed) are forgotten.
        self.series
            .retain(|k, _| k == TOTAL || watched.iter().any(|(e, _)| e == k));
        let series = &self.series;
        self.selectors.retain(|k, _| series.contains_key(k));
        for (key, points) in &self.series {
            let last = points.back().expect("pushed above");
            match self.selectors.get_mut(key) {
                Some(s) => s.observe(last.minute, last.requests),
                None => {
                    let mut s = Selector::new(SelectorConfig::default());
                    s.observe(last.minute, last.requests);
                    self.selectors.insert(key.clone(), s);
                }
            }
        }
    }

    /// One minute: extend the series, forecast, and (when `acting`) run the pressure policy.
    /// Not acting (static rules), no cut is ever computed, so none is shown or recorded.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        minute: Nanos,
        now: Nanos,
        traffic: &[EndpointMinute],
        capacities: &[(String, u64)],
        loads: &[(String, f64, Nanos)],
        forecaster: &mut dyn Forecaster,
        acting: bool,
    ) -> &Step {
        self.push(minute, traffic, capacities);
        let full: Vec<(&String, Vec<MinutePoint>)> = self
            .series
            .iter()
            .filter(|(_, s)| s.len() == WINDOW)
            .map(|(k, s)| (k, s.iter().copied().collect()))
            .collect();
        let windows: Vec<&[MinutePoint]> = full.iter().map(|(_, w)| w.as_slice()).collect();
        let (model_forecasts, name, error) = if windows.is_empty() {
            (Vec::new(), forecaster.name().to_string(), None)
        } else {
            match forecaster.forecast(&windows) {
                Ok(f) if f.len() == windows.len() => (f, forecaster.name().to_string(), None),
                Ok(f) => (
                    Fallback.forecast(&windows).unwrap_or_default(),
                    Fallback.name().to_string(),
                    Some(format!(
                        "{} forecasts for {} windows",
                        f.len(),
                        windows.len()
                    )),
                ),
                Err(e) => (
                    Fallback.forecast(&windows).unwrap_or_default(),
                    Fallback.name().to_string(),
                    Some(e),
                ),
            }
        };
        // What each series' selector serves, the model's forecast one of its candidates.
        let mut methods = Vec::with_capacity(full.len());
        let forecasts: Vec<(String, Forecast)> = full
            .iter()
            .zip(model_forecasts)
            .map(|((key, _), model)| {
                let selector = self.selectors.get_mut(*key).expect("a selector per series");
                // A minute the model failed, the fallback's numbers are not the model's.
                let choice = selector.forecast(error.is_none().then_some(&model));
                let mut served = model;
                served.copy_from_slice(&choice.forecast);
                methods.push(SeriesMethods {
                    series: (*key).clone(),
                    at_1: choice.methods[0],
                    at_horizon: choice.methods[HORIZON - 1],
                    why: choice.why(selector),
                });
                ((*key).clone(), served)
            })
            .collect();
        let measured: Vec<(String, f64)> = self
            .series
            .iter()
            .filter_map(|(k, s)| s.back().map(|p| (k.clone(), p.requests)))
            .collect();
        let (cut, change) = if acting {
            self.config.step(
                now,
                self.cut.as_ref(),
                &Signals {
                    capacities,
                    forecasts: &forecasts,
                    measured: &measured,
                    loads,
                },
            )
        } else {
            (None, None)
        };
        self.cut = cut;
        self.last = Step {
            forecasts,
            forecaster: name,
            error,
            change,
            methods,
            measured,
        };
        &self.last
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
