//! Replay: a recorded trace runs through the decision engine and the minute in virtual time, as
//! fast as the CPU allows. Time comes from the trace; each time it crosses a minute boundary the
//! core's minute (`sluice_core::minute::Minutes::close`) runs, the very function the service's
//! minute loop runs on the wall clock. Nothing here decides anything itself: it reads rows,
//! calls `Engine::should_allow` / `report_outcome` and `Minutes::close`, and counts.
//!
//! Not here: the server (no sockets, no database) — a replay needs neither. Reading trace files
//! is `adapters::trace_file`'s; the `sluice replay` command is `cli::replay`.

pub mod lead;
pub mod report;
pub mod scanned;
pub mod scenario;
pub mod worldcup;
pub mod worlds;

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::time::Instant;

use std::sync::Arc;

use rustc_hash::FxHashMap;
use sluice_core::engine::{Engine, EngineConfig};
use sluice_core::forecast::Forecaster;
use sluice_core::forecast::eval::ErrorSum;
use sluice_core::forecast::live::{self, SeriesMethods};
use sluice_core::forecast::pressure::PressureConfig;
use sluice_core::learn::actions::{Action, ActionTable};
use sluice_core::learn::fleet_minute;
use sluice_core::learn::learner::LearnerConfig;
use sluice_core::learn::observe::{ClientSummary, MinuteData};
use sluice_core::matcher::RuleSet;
use sluice_core::minute::{ClosedMinute, MinuteInput, Minutes, next_look};
use sluice_core::rules::Rule;
use sluice_core::time::{NANOS_PER_MILLI, NANOS_PER_SEC, Nanos};

use crate::adapters::corrections_file::TimedCorrection;
use crate::adapters::moka_store::{self, StoreKind};
use crate::adapters::trace_file::{self as trace, Row, TraceError};
use report::{Report, ReportBuilder};

/// Rows may arrive this much earlier than the latest row seen (a few seconds of disorder is
/// normal in merged logs); beyond it the file is rejected.
pub const DISORDER_TOLERANCE_MS: i64 = 60_000;
const MINUTE: Nanos = 60 * NANOS_PER_SEC;
/// Empty minutes ticked one by one across a gap in the trace; a longer gap jumps (actions expire
/// on the next tick anyway).
const MAX_EMPTY_TICKS: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Trace(#[from] TraceError),
    #[error("cannot write decisions: {0}")]
    Output(#[from] std::io::Error),
}

pub struct ReplayOptions<'h> {
    pub rules: Vec<Rule>,
    pub engine: EngineConfig,
    /// The bucket store (`sharded` expires on the trace's time; decisions are the same).
    pub bucket_store: StoreKind,
    pub learner: LearnerConfig,
    /// The pressure policy (forecast and measured load → cut of low-priority STD limits).
    pub pressure: PressureConfig,
    /// The forecaster; `None`: the statistical baseline.
    pub forecaster: Option<Box<dyn Forecaster + Send>>,
    /// Run the learning loop (off: static rules only).
    pub adaptive: bool,
    /// Domain the requests are decided in (`ShouldAllow`'s default).
    pub domain: String,
    /// Called with every closed minute (tests compare them with the live service's).
    pub on_minute: Option<&'h mut dyn FnMut(&ClosedMinute)>,
    /// Operators' corrections, in time order, each applied when the trace reaches its time —
    /// the same learner steps the API's would take.
    pub corrections: Vec<TimedCorrection>,
    /// Replicas behind a round-robin balancer (1: a single instance). Each has its own engine
    /// and minute; at each close they exchange their shared clients as live replicas do
    /// (`learn::fleet_minute`), and each installs the others' actions and cut.
    pub replicas: usize,
}

impl Default for ReplayOptions<'_> {
    fn default() -> Self {
        ReplayOptions {
            rules: Vec::new(),
            engine: EngineConfig::default(),
            bucket_store: StoreKind::Sharded,
            learner: LearnerConfig::default(),
            pressure: PressureConfig::default(),
            forecaster: None,
            adaptive: true,
            domain: "sluice".into(),
            on_minute: None,
            corrections: Vec::new(),
            replicas: 1,
        }
    }
}

/// One more replica of a fleet replay: its own engine and minute.
struct Replica {
    engine: Engine,
    minutes: Minutes,
}

struct Replay<'w, 'h> {
    /// The first replica (the only one without `--replicas`): its minute is the one reported
    /// (forecasts, pressure, `on_minute`).
    engine: Engine,
    minutes_state: Minutes,
    /// The other replicas, and whose turn the next request is (0: the first).
    others: Vec<Replica>,
    turn: usize,
    forecaster: Box<dyn Forecaster + Send>,
    on_minute: Option<&'h mut dyn FnMut(&ClosedMinute)>,
    /// The forecast of the next minute's total requests, scored when that minute closes.
    pending_total: Option<f64>,
    forecast_error: ErrorSum,
    domain: String,
    report: ReportBuilder,
    decisions: Option<csv::Writer<&'w mut dyn Write>>,
    minute_start: Option<Nanos>,
    /// Early looks taken in the open minute.
    looks: u64,
    latest_ms: i64,
    minutes: u64,
    overflow: u64,
    /// Corrections not applied yet, earliest first.
    corrections: VecDeque<TimedCorrection>,
    /// Which forecast spoke for each series at the last minute.
    methods: Vec<SeriesMethods>,
    /// The watched endpoints' capacities (from the rules), and when forecasts and traffic
    /// crossed them.
    capacities: Vec<(String, u64)>,
    lead: lead::LeadTracker,
}

impl Replay<'_, '_> {
    fn row(&mut self, row: &Row<'_>) -> Result<(), ReplayError> {
        if row.ts_ms < 0 {
            return Err(TraceError {
                line: row.line,
                message: format!("ts {} is before 1970", row.ts_ms),
            }
            .into());
        }
        if self.minute_start.is_some() && row.ts_ms < self.latest_ms - DISORDER_TOLERANCE_MS {
            return Err(TraceError {
                line: row.line,
                message: format!(
                    "ts {} is {} s earlier than an earlier row's; a trace must be in time order (up to {} s of disorder is accepted)",
                    row.ts_ms,
                    (self.latest_ms - row.ts_ms) / 1000,
                    DISORDER_TOLERANCE_MS / 1000
                ),
            }
            .into());
        }
        self.latest_ms = self.latest_ms.max(row.ts_ms);
        // Late rows are decided at the latest time seen: the clock never runs backwards.
        let now = self.latest_ms as u64 * NANOS_PER_MILLI;
        self.minute_start.get_or_insert(now - now % MINUTE);
        self.correct_up_to(self.latest_ms);
        self.advance_to(now);
        let subject = row.subject();
        // Round robin over the replicas, as a load balancer deals requests.
        let engine = match self.turn {
            0 => &self.engine,
            i => &self.others[i - 1].engine,
        };
        self.turn = (self.turn + 1) % (self.others.len() + 1);
        let verdict = engine.should_allow(&self.domain, &subject, 1, now);
        let allowed = !verdict.over_limit;
        // Only a request that reached the upstream has an outcome.
        if allowed && let Some(status) = row.status {
            engine.report_outcome(&subject, status, now);
        }
        let by_anomaly = !allowed && verdict.anomaly.is_some_and(|h| h.denied && !h.shadow);
        if !allowed && !by_anomaly && verdict.forecast_cut {
            self.report.forecast_cut();
        }
        // The trace's own status (denied requests keep theirs): what the client did, for the
        // report's failing-attacks figure.
        let failed = row.status.is_some_and(|s| s >= 400);
        self.report.request(
            row.client, row.user, row.label, row.ts_ms, allowed, by_anomaly, failed,
        );
        if let Some(w) = self.decisions.as_mut() {
            let reason = match (allowed, by_anomaly, verdict.anomaly) {
                (true, _, _) => "allowed",
                (false, true, Some(h)) if h.kind.name() == "block" => "blocked_anomaly",
                (false, true, _) => "throttled_anomaly",
                (false, false, _) if verdict.forecast_cut => "throttled_forecast",
                (false, false, _) => "over_limit",
            };
            let score = verdict
                .anomaly
                .map_or(String::new(), |h| format!("{:.3}", h.score));
            let rule = verdict
                .deciding()
                .and_then(|s| s.limit.as_ref())
                .map_or("", |l| &*l.label.rule_id);
            w.write_record([
                row.ts_ms.to_string().as_str(),
                row.client,
                row.endpoint,
                if allowed { "1" } else { "0" },
                reason,
                &score,
                rule,
                row.label,
                row.tier.as_str(),
            ])
            .map_err(csv_io)?;
        }
        Ok(())
    }

    /// Applies the corrections due by `ts_ms` in order, each after the minutes that closed before
    /// it (as the service applies an operator's between minutes), and reports them.
    fn correct_up_to(&mut self, ts_ms: i64) {
        while let Some(c) = self.corrections.front()
            && c.ts_ms <= ts_ms
        {
            let c = self.corrections.pop_front().expect("front");
            let at = c.ts_ms.max(0) as u64 * NANOS_PER_MILLI;
            self.advance_to(at);
            let changes = self
                .minutes_state
                .correct(&self.engine, |l| l.apply(&c.correction, at));
            // An operator's correction reaches every replica (lists and marks are shared
            // through the database).
            for r in &mut self.others {
                r.minutes.correct(&r.engine, |l| l.apply(&c.correction, at));
            }
            self.share_actions(at);
            self.report
                .correction(c.ts_ms, &c.correction, Some(&changes));
        }
    }

    /// Ticks every minute boundary up to `now`, and takes the open minute's early looks due by
    /// then (`next_look`), as the service's minute loop does.
    fn advance_to(&mut self, now: Nanos) {
        let mut empty = 0;
        while let Some(start) = self.minute_start
            && now >= start + MINUTE
        {
            self.tick(start, start + MINUTE);
            empty += 1;
            let next = if empty >= MAX_EMPTY_TICKS {
                now - now % MINUTE
            } else {
                start + MINUTE
            };
            self.minute_start = Some(next);
            self.looks = 0;
        }
        while let Some(start) = self.minute_start
            && let Some(due) = next_look(start, self.looks)
            && due <= now
        {
            self.looks += 1;
            let changes = self.minutes_state.look(&self.engine, start, due);
            if !changes.is_empty() {
                let actions = self.minutes_state.learner().actions();
                self.report
                    .actions(&actions, (due / NANOS_PER_MILLI) as i64);
            }
            for r in &mut self.others {
                if !r.minutes.look(&r.engine, start, due).is_empty() {
                    self.report.actions(
                        &r.minutes.learner().actions(),
                        (due / NANOS_PER_MILLI) as i64,
                    );
                }
            }
            self.share_actions(due);
        }
    }

    /// Each replica installs the others' actions in force and their cut, as the fleet state's
    /// round does live (`service::fleet_sync`): the stronger action holds where two meet.
    fn share_actions(&self, now: Nanos) {
        if self.others.is_empty() {
            return;
        }
        let engines: Vec<&Engine> = std::iter::once(&self.engine)
            .chain(self.others.iter().map(|r| &r.engine))
            .collect();
        for (i, engine) in engines.iter().enumerate() {
            let mut merged: FxHashMap<Arc<str>, Action> = FxHashMap::default();
            let mut pressure = 1.0f64;
            for (j, other) in engines.iter().enumerate().filter(|(j, _)| *j != i) {
                let _ = j;
                pressure = pressure.min(other.own_pressure());
                for action in other.actions().iter().filter(|a| a.expires_at > now) {
                    match merged.get(&action.client) {
                        Some(held) if held.kind.stronger(action.kind) == held.kind => {}
                        _ => {
                            merged.insert(action.client.clone(), action.clone());
                        }
                    }
                }
            }
            engine.set_fleet_actions(Arc::new(ActionTable::from_map(merged)));
            engine.set_fleet_pressure(pressure);
        }
    }

    /// Closes one minute through the core's minute, exactly as the service's minute loop does;
    /// a trace has no backend loads.
    fn tick(&mut self, start: Nanos, end: Nanos) {
        self.minutes += 1;
        let mut data = self.engine.observer().drain();
        if !self.others.is_empty() {
            // The fleet's exchange: every replica drains and shares, then each closes on its
            // own minute with the others' shares merged in.
            let replicas = self.others.len() as u32 + 1;
            let mut drained: Vec<MinuteData> = self
                .others
                .iter()
                .map(|r| r.engine.observer().drain())
                .collect();
            let mut shares: Vec<Vec<ClientSummary>> = vec![fleet_minute::to_share(
                &data.clients,
                self.minutes_state.learner().share_floor(replicas),
                fleet_minute::SHARE_CAP,
            )];
            for (r, d) in self.others.iter().zip(&drained) {
                shares.push(fleet_minute::to_share(
                    &d.clients,
                    r.minutes.learner().share_floor(replicas),
                    fleet_minute::SHARE_CAP,
                ));
            }
            let others_of = |i: usize| -> Vec<ClientSummary> {
                shares
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, s)| s.iter().cloned())
                    .collect()
            };
            fleet_minute::merge_shared(&mut data, others_of(0));
            for (i, d) in drained.iter_mut().enumerate() {
                fleet_minute::merge_shared(d, others_of(i + 1));
            }
            for (r, d) in self.others.iter_mut().zip(drained) {
                let closed = r.minutes.close_with(
                    &r.engine,
                    MinuteInput {
                        start,
                        end,
                        loads: &[],
                        forecaster: self.forecaster.as_mut(),
                    },
                    d,
                );
                self.overflow += closed.tick.overflow;
                if closed.adaptive {
                    self.report
                        .actions(&closed.tick.actions, (end / NANOS_PER_MILLI) as i64);
                }
            }
        }
        let closed = self.minutes_state.close_with(
            &self.engine,
            MinuteInput {
                start,
                end,
                loads: &[],
                forecaster: self.forecaster.as_mut(),
            },
            data,
        );
        self.share_actions(end);
        self.overflow += closed.tick.overflow;
        if closed.adaptive {
            self.report
                .actions(&closed.tick.actions, (end / NANOS_PER_MILLI) as i64);
        }
        // The forecast of the total is scored when the minute it forecast closes.
        let total: f64 = closed.tick.traffic.iter().map(|e| e.requests as f64).sum();
        if let Some(predicted) = self.pending_total.take() {
            self.forecast_error.add(total, predicted);
        }
        self.pending_total = closed
            .forecast
            .forecasts
            .iter()
            .find(|(k, _)| k == live::TOTAL)
            .map(|(_, f)| f[0]);
        self.methods.clone_from(&closed.forecast.methods);
        self.lead.minute(
            end,
            &closed.forecast.forecasts,
            |series| closed.forecast.measured_of(series),
            &self.capacities,
        );
        if let Some(change) = &closed.pressure {
            let at_ms = (change.at / NANOS_PER_MILLI) as i64;
            match change.what {
                "tightened" => self.lead.tightened(at_ms),
                _ => self.lead.restored(at_ms),
            }
            self.report.pressure(change);
        }
        if let Some(observe) = self.on_minute.as_mut() {
            observe(&closed);
        }
    }
}

fn csv_io(e: csv::Error) -> ReplayError {
    ReplayError::Output(std::io::Error::other(e))
}

/// Replays a trace; writes one CSV row per decision to `decisions` if given.
pub fn run(
    input: impl BufRead,
    options: ReplayOptions<'_>,
    decisions: Option<&mut dyn Write>,
) -> Result<Report, ReplayError> {
    run_keeping_state(input, options, decisions).map(|(report, _)| report)
}

/// As [`run`], and hands back the minute's state at the end (its learner's baselines, say).
pub fn run_keeping_state(
    input: impl BufRead,
    options: ReplayOptions<'_>,
    decisions: Option<&mut dyn Write>,
) -> Result<(Report, Minutes), ReplayError> {
    let started = Instant::now();
    let engine = moka_store::engine(options.engine.clone(), options.bucket_store);
    let forecaster = options
        .forecaster
        .unwrap_or_else(|| Box::new(sluice_core::forecast::baseline::Fallback));
    let forecaster_name = forecaster.name().to_string();
    let others = (1..options.replicas.max(1))
        .map(|_| {
            let engine = moka_store::engine(options.engine.clone(), options.bucket_store);
            engine.replace_rules(RuleSet::build(0, options.rules.clone()));
            Replica {
                engine,
                minutes: Minutes::new(
                    options.learner.clone(),
                    options.pressure.clone(),
                    options.adaptive,
                ),
            }
        })
        .collect();
    let rules = RuleSet::build(0, options.rules);
    let capacities = live::capacities(&rules);
    engine.replace_rules(rules);
    let mut replay = Replay {
        engine,
        minutes_state: Minutes::new(options.learner, options.pressure, options.adaptive),
        others,
        turn: 0,
        forecaster,
        on_minute: options.on_minute,
        pending_total: None,
        forecast_error: ErrorSum::default(),
        domain: options.domain,
        report: ReportBuilder::default(),
        decisions: decisions.map(csv::Writer::from_writer),
        minute_start: None,
        looks: 0,
        latest_ms: 0,
        minutes: 0,
        overflow: 0,
        corrections: options.corrections.into(),
        methods: Vec::new(),
        capacities,
        lead: lead::LeadTracker::default(),
    };
    if let Some(w) = replay.decisions.as_mut() {
        w.write_record([
            "ts", "client", "endpoint", "allowed", "reason", "score", "rule", "label", "tier",
        ])
        .map_err(csv_io)?;
    }
    trace::read(input, |row| replay.row(row))?;
    // Close the last (partial) minute so short traces are scored too.
    if let Some(start) = replay.minute_start {
        replay.tick(start, start + MINUTE);
    }
    for c in std::mem::take(&mut replay.corrections) {
        replay.report.correction(c.ts_ms, &c.correction, None);
    }
    if let Some(w) = replay.decisions.as_mut() {
        w.flush()?;
    }
    let versions = replay.minutes_state.learner().model_info().version;
    replay
        .report
        .forecast(&forecaster_name, &replay.forecast_error, &replay.methods);
    replay.report.lead_times(replay.lead.finish());
    let report = replay.report.finish(
        replay.minutes,
        versions,
        replay.overflow,
        started.elapsed().as_secs_f64(),
    );
    Ok((report, replay.minutes_state))
}
