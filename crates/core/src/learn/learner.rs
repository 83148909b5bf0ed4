//! The learner: once a minute it takes the closed minute from the aggregator, measures every
//! client, scores them with the current forest, runs the policy, and every `retrain_every` grows a
//! new forest from a rolling sample of recent client-minutes.
//!
//! Pure and single-threaded: time comes in as `now`, randomness from seeds, so a replay of the same
//! trace makes the same decisions. `crate::minute` calls `tick` once a minute, for the live service
//! and replays alike; this module does not know the engine.
//!
//! Invariants:
//! - clients under any anomaly action (shadow ones included) never enter the training sample, so
//!   an ongoing attack does not teach the forest that attacks are normal;
//! - the forest learns from network keys only and scores both kinds (user keys are mostly
//!   the same requests again; see `observe`);
//! - the sample is bounded (`sample_cap` points over `sample_minutes` minutes);
//! - no new action is taken before a model exists (cold start runs on static rules only).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::actions::{Action, ActionKind, ActionTable, Signal};
use super::baselines::{BaselineConfig, Baselines, Finding, Measure, Stretch, identities};
use super::failure_window::{self, FailureWindow};
use super::features::{self, DIM, Features};
use super::forest::{Forest, ForestParams};
use super::lists::{ListEntry, Lists};
use super::observe::{
    ClientKind, ClientMinute, EndpointMinute, MinuteData, route_family_hash, route_hash,
    route_template,
};
use super::policy::{Adjustment, Assessment, Call, PolicyConfig};
use super::steady::{Steady, SteadyConfig};
use crate::time::Nanos;

#[derive(Clone, Debug)]
pub struct LearnerConfig {
    pub policy: PolicyConfig,
    pub forest: ForestParams,
    pub retrain_every: Duration,
    /// Static rules only, for at least this long after the first minute seen, while the first
    /// sample fills (a restored model skips it).
    pub cold_start: Duration,
    /// How far back the training sample reaches.
    pub sample_minutes: usize,
    /// Most client-minutes kept for training.
    pub sample_cap: usize,
    /// Fewest client-minutes a forest is grown from.
    pub min_train: usize,
    /// Apply the seeds' explicit heuristic (a tool user agent with mostly failing requests) on
    /// top of the forest: its risk is `heuristic_risk`.
    pub heuristics: bool,
    pub heuristic_risk: f64,
    /// Per-client rate baselines (volume and failures signals).
    pub baselines: BaselineConfig,
    /// Established clients (left alone by the volume signal and the forest).
    pub steady: SteadyConfig,
    /// The forest's contamination budget: its threshold is at least the site's
    /// `1 − budget` score quantile, and at most `budget` of the minute's active clients are newly
    /// acted on by the forest.
    pub forest_budget: f64,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            policy: PolicyConfig::default(),
            forest: ForestParams::default(),
            retrain_every: Duration::from_secs(300),
            cold_start: Duration::from_secs(300),
            sample_minutes: 30,
            sample_cap: 20_000,
            min_train: 50,
            heuristics: true,
            heuristic_risk: 0.9,
            baselines: BaselineConfig::default(),
            steady: SteadyConfig::default(),
            forest_budget: 0.005,
        }
    }
}

/// What the model is, for `GetModelInfo` and the history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub version: u64,
    pub trained_at: Option<Nanos>,
    /// Client-minutes the current forest was grown from.
    pub trained_on: usize,
    pub trees: usize,
    pub sample_size: usize,
    /// Client-minutes waiting in the rolling sample for the next training.
    pub pending_sample: usize,
}

/// One scored client-minute, as kept in history.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreRecord {
    pub minute: Nanos,
    pub client: Box<str>,
    pub score: f64,
    pub features: Features,
    pub requests: u32,
    /// The action in force after this minute's policy step, if any.
    pub action: Option<&'static str>,
    pub model_version: u64,
}

/// Score records a tick keeps at most: every client under an action, then the highest scores.
/// A minute of 200,000 clients (a flood of made-up ids) would otherwise hand the history a row
/// for each — hundreds of megabytes in flight at the close, and as many rows a minute on disk.
pub const MAX_SCORE_RECORDS: usize = 5_000;

/// Everything one tick produced; the caller installs `actions` and stores the rest.
#[derive(Debug, Default)]
pub struct Tick {
    pub actions: Arc<ActionTable>,
    /// At most `MAX_SCORE_RECORDS`: the clients under an action, then the highest scores.
    pub scores: Vec<ScoreRecord>,
    /// Clients scored (`scores` keeps at most `MAX_SCORE_RECORDS` of them).
    pub scored: usize,
    pub adjustments: Vec<Adjustment>,
    pub traffic: Vec<EndpointMinute>,
    pub overflow: u64,
    /// Set when this tick grew a new forest.
    pub trained: Option<ModelInfo>,
}

/// What survives a restart: the forest and the actions in force.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u64,
    pub trained_at: Option<Nanos>,
    pub forest: Forest,
}

pub struct Learner {
    config: LearnerConfig,
    forest: Option<Forest>,
    version: u64,
    trained_at: Option<Nanos>,
    last_train_attempt: Option<Nanos>,
    started: Option<Nanos>,
    sample: VecDeque<(Nanos, Features)>,
    actions: Arc<ActionTable>,
    baselines: Baselines,
    steady: Steady,
    /// Decayed histogram of recent forest scores (hundredths), for the calibrated threshold.
    scores: Vec<f64>,
    /// Clients above the sustained bar: the last minute they were, and for how many in a row.
    sustained: FxHashMap<Box<str>, (i64, u32)>,
    /// The operators' allow- and denylist entries.
    lists: Vec<ListEntry>,
    /// Route names by hash, for the words of findings and status (`name_routes`).
    route_names: FxHashMap<u64, String>,
    /// Failing clients' failed page requests over the last minutes (the slow failure signal).
    failures: FailureWindow,
}

/// Failing clients the slow failure window remembers at most.
const MAX_FAILING_CLIENTS: usize = 100_000;

/// A client above this share of a threshold for `SUSTAINED_MINUTES` minutes in a row is beyond
/// it: people burst, machines keep going.
const SUSTAINED_SCALE: f64 = 0.6;
const SUSTAINED_MINUTES: u32 = 2;

/// Route names remembered at most.
const MAX_ROUTE_NAMES: usize = 10_000;

/// Seconds of a client's minute below which its counts are not stretched further to a minute:
/// a burst in its first seconds is not a rate.
const MIN_SPAN_SECONDS: f64 = 20.0;
/// A newcomer whose requests so far span less than this is judged on its request counts as
/// they are, not stretched to a minute at all: a page arriving with its images in a second or two is a
/// burst, not a rate. On a real shop's log a phone loading one page's 18 images (served by a
/// route without a file extension) in one second was stretched to "54 a minute" and throttled;
/// page loads there take 1–4 s. A flood arriving this late in a minute passes the threshold on
/// its raw count, or is judged at the next look on the time since it came.
const BURST_SECONDS: f64 = 5.0;

/// How much a newcomer's counts are stretched to a minute, from the seconds it has been here.
/// Failures are stretched however short the time: fifteen failed pages in two seconds are no
/// person's (on real scanner bursts among real people, not stretching them let a fifth of the
/// failing bursts escape).
fn stretch_for(here: f64) -> Stretch {
    let rate = 60.0 / here.max(MIN_SPAN_SECONDS);
    Stretch {
        volume: if here < BURST_SECONDS { 1.0 } else { rate },
        failures: rate,
    }
}

/// People behind a network key from which it counts as a shared address (NAT, proxy).
const SHARED_IDENTITIES: f64 = 3.0;

/// Bins of the forest-score histogram (scores are in 0..1).
const SCORE_BINS: usize = 200;

impl Learner {
    pub fn new(config: LearnerConfig) -> Learner {
        let (config_baselines, config_steady) = (config.baselines.clone(), config.steady.clone());
        Learner {
            config,
            forest: None,
            version: 0,
            trained_at: None,
            last_train_attempt: None,
            started: None,
            sample: VecDeque::new(),
            actions: Arc::new(ActionTable::default()),
            baselines: Baselines::new(config_baselines),
            steady: Steady::new(config_steady),
            scores: vec![0.0; SCORE_BINS],
            sustained: FxHashMap::default(),
            lists: Vec::new(),
            route_names: FxHashMap::default(),
            failures: FailureWindow::new(MAX_FAILING_CLIENTS),
        }
    }

    /// Remembers the route names (templates) of the minute's endpoints: a new endpoint is
    /// templated once. Bounded: past `MAX_ROUTE_NAMES` the names start afresh.
    fn name_routes(&mut self, endpoints: &[EndpointMinute]) {
        if self.route_names.len() > MAX_ROUTE_NAMES {
            self.route_names.clear();
        }
        for e in endpoints {
            let route = route_hash(&e.endpoint);
            if let std::collections::hash_map::Entry::Vacant(v) = self.route_names.entry(route) {
                v.insert(route_template(&e.endpoint));
                self.baselines
                    .note_family(route, route_family_hash(&e.endpoint));
            }
        }
    }

    /// A route's name (its template, `/product/{id}`) by hash, if one of its endpoints was seen.
    pub fn route_name(&self, route: u64) -> Option<&str> {
        self.route_names.get(&route).map(|r| &**r)
    }

    /// The learned per-client rate baselines.
    pub fn baselines(&self) -> &Baselines {
        &self.baselines
    }

    /// The forest score at or above which the forest acts: `throttle_at`, or the site's own
    /// `1 − forest_budget` quantile of recent scores when that is higher.
    pub fn forest_threshold(&self) -> f64 {
        let total: f64 = self.scores.iter().sum();
        let floor = self.config.policy.throttle_at;
        if total < self.config.min_train as f64 || self.config.forest_budget >= 1.0 {
            return floor;
        }
        let target = total * (1.0 - self.config.forest_budget);
        let mut seen = 0.0;
        for (i, n) in self.scores.iter().enumerate() {
            seen += n;
            if seen >= target {
                return floor.max((i + 1) as f64 / SCORE_BINS as f64);
            }
        }
        floor
    }

    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    pub fn actions(&self) -> Arc<ActionTable> {
        self.actions.clone()
    }

    pub fn model_info(&self) -> ModelInfo {
        ModelInfo {
            version: self.version,
            trained_at: self.trained_at,
            trained_on: self.forest.as_ref().map_or(0, |f| f.trained_on),
            trees: self.config.forest.trees,
            sample_size: self.config.forest.sample_size,
            pending_sample: self.sample.len(),
        }
    }

    pub fn snapshot(&self) -> Option<Snapshot> {
        Some(Snapshot {
            version: self.version,
            trained_at: self.trained_at,
            forest: self.forest.clone()?,
        })
    }

    /// Restores a saved model and the actions that were in force (expired ones are dropped at the
    /// next tick, and recorded then).
    pub fn restore(
        &mut self,
        snapshot: Option<Snapshot>,
        actions: Vec<Action>,
    ) -> Result<(), String> {
        if let Some(s) = snapshot {
            s.forest.check()?;
            self.forest = Some(s.forest);
            self.version = s.version;
            self.trained_at = s.trained_at;
            self.last_train_attempt = s.trained_at;
        }
        self.actions = Arc::new(ActionTable::from_actions(actions));
        Ok(())
    }

    /// The risk of one client-minute: the forest's score, raised by the explicit heuristic, and
    /// which of the two set it.
    pub fn risk(&self, m: &ClientMinute, x: &Features) -> (f64, Signal) {
        let forest = self.forest.as_ref().map_or(0.0, |f| f.score(x));
        let tool_failing = x[10] >= 0.5 && m.outcomes >= self.config.policy.min_requests;
        if self.config.heuristics && tool_failing && self.config.heuristic_risk > forest {
            (self.config.heuristic_risk, Signal::Heuristic)
        } else {
            (forest, Signal::Forest)
        }
    }

    /// What the signals call for against one client, and the score recorded for it. In order:
    /// far beyond a site baseline (volume or failures; not for an established client's volume),
    /// the explicit heuristic, the forest past its calibrated threshold.
    fn call(
        &self,
        c: &ClientMinute,
        x: &Features,
        findings: &[Finding],
        established: bool,
        forest_threshold: f64,
    ) -> (f64, Option<Call>) {
        let (risk, signal) = self.risk(c, x);
        let failures = |f: &&Finding| matches!(f.measure, Measure::Errors | Measure::AuthFailures);
        let finding = findings
            .iter()
            .find(|f| failures(f) || !self.volume_excused(c, f));
        if let Some(f) = finding {
            let signal = if failures(&f) {
                Signal::Failures
            } else {
                Signal::Volume
            };
            // What a normal heavy client makes on the measure that fired, per person behind
            // the key; failing requests get the policy's small allowance.
            let allowance = match f.measure {
                Measure::Errors | Measure::AuthFailures => 0.0,
                measure => self.baselines.p99(measure).unwrap_or(f.p99),
            }
            .max(self.config.policy.throttle_per_minute as f64);
            let per_minute = (allowance * identities(c)).ceil() as u64;
            let call = Call {
                kind: ActionKind::Throttle { per_minute },
                evidence: f.requests,
                signal,
                why: f
                    .why(match f.measure {
                        Measure::Endpoint { endpoint, .. } => self.route_name(endpoint),
                        _ => None,
                    })
                    .into(),
            };
            return (risk.max(1.0 - 1.0 / (1.0 + f.excess())), Some(call));
        }
        if signal == Signal::Heuristic {
            let call = self.config.policy.kind_for_risk(risk).map(|kind| Call {
                kind,
                evidence: 0,
                signal,
                why: format!(
                    "a tool user agent with {} of {} requests failing",
                    c.errors, c.outcomes
                )
                .into(),
            });
            return (risk, call);
        }
        // A shared address (several people behind it) stands out by construction; it is judged
        // per person by the baselines, and its signed-in users under their own keys.
        let shared = identities(c) >= SHARED_IDENTITIES;
        let forest_call = (self.forest.is_some()
            && !established
            && !shared
            && risk >= forest_threshold)
            .then(|| self.config.policy.kind_for_risk(risk.max(self.config.policy.throttle_at)))
            .flatten()
            .map(|kind| Call {
                kind,
                evidence: 0,
                signal: Signal::Forest,
                why: format!(
                    "isolation-forest score {risk:.3}, at or above the site's threshold {forest_threshold:.3}"
                )
                .into(),
            });
        (risk, forest_call)
    }

    /// One minute: `minute` is when it started, `now` when it closed.
    pub fn tick(&mut self, minute: Nanos, data: MinuteData, now: Nanos) -> Tick {
        self.started.get_or_insert(minute);
        let minute_index = (minute / (60 * crate::time::NANOS_PER_SEC)) as i64;
        let measured: Vec<(ClientMinute, Features)> = data
            .clients
            .into_iter()
            .map(|c| {
                let x = features::extract(&c);
                (c, x)
            })
            .collect();
        let forest_threshold = self.forest_threshold();
        self.name_routes(&data.endpoints);
        let in_force = self.actions.clone();
        self.baselines.note_failing(
            measured
                .iter()
                .map(|(c, _)| c)
                .filter(|c| in_force.get(&c.client).is_none()),
        );
        let mut calls: Vec<(f64, Option<Call>)> = measured
            .iter()
            .map(|(c, x)| {
                let mut findings = self.baselines.assess(c);
                if findings.is_empty() {
                    findings = self.sustained_findings(c, minute_index);
                }
                if findings.is_empty() && !self.steady.was_seen(&c.client, minute_index - 1) {
                    // Arrived during this minute: judged on the rate of the time it was here.
                    let here = c.span_seconds();
                    if here > 0.0 && here < 50.0 {
                        findings = self.baselines.assess_newcomer(c, stretch_for(here));
                    }
                }
                let findings = self.or_window(findings, c, minute_index);
                let established = self.judged_established(c);
                self.call(c, x, &findings, established, forest_threshold)
            })
            .collect();
        self.spend_forest_budget(&measured, &mut calls);
        let lists = Lists::compile(&self.lists, now);
        let (table, mut adjustments) = self.apply_policy(
            now,
            measured
                .iter()
                .zip(&calls)
                .map(|((c, _), (r, call))| (c, *r, call)),
            &lists,
        );
        let mut by_client: FxHashMap<Arc<str>, Action> = table
            .iter()
            .map(|a| (a.client.clone(), a.clone()))
            .collect();
        adjustments.extend(self.block_denied(&lists, &mut by_client, now));
        let table = Arc::new(ActionTable::from_map(by_client));
        let scored = measured.len();
        let scores = kept_scores(
            measured
                .iter()
                .zip(&calls)
                .map(|((c, x), (score, _))| (c, x, *score)),
            &table,
            |(c, x, score)| ScoreRecord {
                minute,
                client: c.client.clone(),
                // Under an action, the score it carries when higher (a denylisted client's
                // is 1.0, as the API says, whatever the forest made of its minute).
                score: table.get(&c.client).map_or(score, |a| score.max(a.score)),
                features: *x,
                requests: c.requests,
                action: table.get(&c.client).map(|a| a.kind.name()),
                model_version: self.version,
            },
        );
        self.note_sustained(minute_index, &measured);
        self.failures
            .record(minute_index, measured.iter().map(|(c, _)| c));
        self.learn_baselines(minute_index, &measured, &calls, &table, &lists);
        self.remember(minute, &measured, &table);
        self.actions = table.clone();
        let trained = self.maybe_train(now, false);
        Tick {
            actions: table,
            scores,
            scored,
            adjustments,
            traffic: data.endpoints,
            overflow: data.overflow,
            trained,
        }
    }

    /// Whether a volume finding against `c` is excused: `c` is established and steady, or was
    /// here before the finding's measure could judge anyone and is given the time to show
    /// whether it is. Per measure, not per site: on a small site whose whole-site baseline
    /// took sixteen minutes to gather, a crowd of scrapers arriving in the sixteenth walked a
    /// route whose own baseline had judged for ten, and was taken for "here before the
    /// baselines" — then, steady for ten minutes, for established.
    fn volume_excused(&self, c: &ClientMinute, f: &Finding) -> bool {
        self.steady.is_established(&c.client, c.requests)
            || self
                .baselines
                .judging_since(f.measure)
                .is_some_and(|since| self.steady.is_pending(&c.client, since))
    }

    /// Whether `c` is judged as an established, steady client — or is one that was here before
    /// the baselines could judge and not yet known, given the time to show it.
    fn judged_established(&self, c: &ClientMinute) -> bool {
        let pending = self
            .baselines
            .ready_since()
            .is_some_and(|since| self.steady.is_pending(&c.client, since));
        pending || self.steady.is_established(&c.client, c.requests)
    }

    /// The policy over these clients' calls (client-minute, risk, call), with the operators'
    /// lists: the action table that follows from the one in force, and what changed.
    fn apply_policy<'c>(
        &self,
        now: Nanos,
        calls: impl Iterator<Item = (&'c ClientMinute, f64, &'c Option<Call>)>,
        lists: &Lists,
    ) -> (ActionTable, Vec<Adjustment>) {
        let assessments: Vec<Assessment<'_>> = calls
            .map(|(c, risk, call)| Assessment {
                client: &c.client,
                risk,
                requests: c.requests,
                prm: c.prm,
                call: call.clone(),
            })
            .collect();
        self.config.policy.step_with_lists(
            now,
            &assessments,
            &self.actions,
            true,
            self.version,
            lists,
        )
    }

    /// The findings of a client that has stayed above the sustained bar (`SUSTAINED_SCALE` of a
    /// threshold) for `SUSTAINED_MINUTES` minutes in a row, this one included.
    fn sustained_findings(&self, c: &ClientMinute, minute: i64) -> Vec<Finding> {
        let near = self.baselines.assess_at(c, SUSTAINED_SCALE);
        let streak = match self.sustained.get(&c.client) {
            Some(&(last, n)) if last == minute - 1 => n + 1,
            _ => 1,
        };
        if near.is_empty() || streak < SUSTAINED_MINUTES {
            return Vec::new();
        }
        near
    }

    /// `findings`, or the slow failure window's when it has some and this minute's evidence is
    /// nothing or too few requests for the policy to act on (a slow scanner makes few a minute).
    fn or_window(&self, findings: Vec<Finding>, c: &ClientMinute, minute: i64) -> Vec<Finding> {
        if findings.is_empty() || c.requests < self.config.policy.min_requests {
            let window = self.window_findings(c, minute);
            if !window.is_empty() {
                return window;
            }
        }
        findings
    }

    /// The slow failure signal: a client whose page requests mostly failed over the last
    /// minutes (this one included), more of them than [`failure_window::window_threshold`] of
    /// a minute's failure threshold (per person behind the key).
    fn window_findings(&self, c: &ClientMinute, minute: i64) -> Vec<Finding> {
        if c.page_errors() == 0 {
            return Vec::new();
        }
        let sum = self.failures.sum(c, minute);
        let Some((p99, per_minute, _)) = self.baselines.threshold_of(Measure::Errors) else {
            return Vec::new();
        };
        let threshold = failure_window::window_threshold(per_minute);
        let value = sum.failed as f64 / identities(c);
        if sum.minutes < 2 || value <= threshold || 2 * sum.failed < sum.outcomes {
            return Vec::new();
        }
        vec![Finding {
            measure: Measure::Errors,
            value,
            p99,
            threshold,
            minutes: sum.minutes,
            prior: false,
            requests: sum.outcomes,
        }]
    }

    /// Updates the streaks of clients above the sustained bar; forgets the others.
    fn note_sustained(&mut self, minute: i64, measured: &[(ClientMinute, Features)]) {
        for (c, _) in measured {
            if self.baselines.assess_at(c, SUSTAINED_SCALE).is_empty() {
                continue;
            }
            let streak = match self.sustained.get(&c.client) {
                Some(&(last, n)) if last == minute - 1 => n + 1,
                _ => 1,
            };
            self.sustained.insert(c.client.clone(), (minute, streak));
        }
        self.sustained.retain(|_, (last, _)| *last == minute);
    }

    /// Keeps at most `forest_budget` of the minute's active clients as new forest actions: the
    /// highest scores (clients already under an action keep theirs).
    fn spend_forest_budget(
        &self,
        measured: &[(ClientMinute, Features)],
        calls: &mut [(f64, Option<Call>)],
    ) {
        let min = self.config.policy.min_requests;
        let active = measured
            .iter()
            .filter(|(c, _)| c.kind == ClientKind::Network && c.requests >= min)
            .count();
        let budget = (active as f64 * self.config.forest_budget).ceil().max(1.0) as usize;
        let mut new: Vec<(f64, usize)> = calls
            .iter()
            .enumerate()
            .filter(|(i, (_, call))| {
                call.as_ref().is_some_and(|c| c.signal == Signal::Forest)
                    && self.actions.get(&measured[*i].0.client).is_none()
            })
            .map(|(i, (risk, _))| (*risk, i))
            .collect();
        if new.len() <= budget {
            return;
        }
        new.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in &new[budget..] {
            calls[i].1 = None;
        }
    }

    /// This minute's values go into the baselines (clients under no action and called for by
    /// nothing), the scores into the calibration histogram, every client into its history.
    fn learn_baselines(
        &mut self,
        minute: i64,
        measured: &[(ClientMinute, Features)],
        calls: &[(f64, Option<Call>)],
        table: &ActionTable,
        lists: &Lists,
    ) {
        // Learned from: clients under no action, called for by nothing, and not on a streak
        // above the sustained bar (a slow scraper must not raise the bar it stays under).
        let sustained = &self.sustained;
        // An allowlisted client (a false positive, say) is learned from whatever it does.
        // A client only other replicas saw is judged here but learned from there: each
        // replica's baselines are its own clients' values (fleet-wide where others shared them).
        let clean = |i: usize| {
            let c = &measured[i].0;
            !c.remote()
                && (lists.allows(&c.client)
                    || (calls[i].1.is_none()
                        && table.get(&c.client).is_none()
                        && sustained.get(&c.client).is_none_or(|&(_, n)| n < 2)))
        };
        self.baselines.learn(
            minute,
            (0..measured.len())
                .filter(|&i| clean(i))
                .map(|i| &measured[i].0),
        );
        let decay = self.config.baselines.decay;
        self.scores.iter_mut().for_each(|n| *n *= decay);
        if self.forest.is_some() {
            for i in (0..measured.len()).filter(|&i| clean(i)) {
                let c = &measured[i].0;
                if c.kind == ClientKind::Network && c.requests >= self.config.policy.min_requests {
                    let bin = ((calls[i].0 * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1);
                    self.scores[bin] += 1.0;
                }
            }
        }
        self.steady.record(
            minute,
            measured.iter().map(|(c, _)| (&*c.client, c.requests)),
            |client| table.get(client).is_some(),
        );
    }

    /// Adds this minute's clients that are under no action to the rolling sample, at most an even
    /// share of the cap per minute (chosen by a hash, so deterministically and without bias).
    /// Only client-minutes with at least `min_requests` requests are learnt from: the policy never
    /// acts on fewer, and their features (a rate from two requests) are mostly noise that would
    /// widen what the forest takes for normal.
    fn remember(
        &mut self,
        minute: Nanos,
        measured: &[(ClientMinute, Features)],
        table: &ActionTable,
    ) {
        let per_minute = (self.config.sample_cap / self.config.sample_minutes.max(1)).max(1);
        let mut fresh: Vec<(u64, &Features)> = measured
            .iter()
            .filter(|(c, _)| {
                // Network keys only: a signed-in user's minute is usually the same requests as
                // its address's, and learning both would count them twice.
                c.kind == ClientKind::Network
                    && !c.remote()
                    && c.requests >= self.config.policy.min_requests
                    && table.get(&c.client).is_none()
            })
            .map(|(c, x)| {
                (
                    xxhash_rust::xxh3::xxh3_64_with_seed(c.client.as_bytes(), minute),
                    x,
                )
            })
            .collect();
        if fresh.len() > per_minute {
            fresh.sort_unstable_by_key(|e| e.0);
            fresh.truncate(per_minute);
        }
        self.sample
            .extend(fresh.into_iter().map(|(_, x)| (minute, *x)));
        let window = self.config.sample_minutes as u64 * 60 * crate::time::NANOS_PER_SEC;
        while let Some(&(m, _)) = self.sample.front() {
            if minute.saturating_sub(m) >= window || self.sample.len() > self.config.sample_cap {
                self.sample.pop_front();
            } else {
                break;
            }
        }
    }

    /// Grows a new forest when one is due (or `force`d) and the sample is big enough.
    pub fn maybe_train(&mut self, now: Nanos, force: bool) -> Option<ModelInfo> {
        let every = self.config.retrain_every.as_nanos() as u64;
        let due = match (self.last_train_attempt, self.started) {
            (Some(t), _) => now.saturating_sub(t) >= every,
            (None, Some(start)) => {
                now.saturating_sub(start) >= self.config.cold_start.as_nanos() as u64
            }
            (None, None) => false,
        };
        if !(force || due) || self.sample.len() < self.config.min_train.max(2) {
            return None;
        }
        self.last_train_attempt = Some(now);
        let points: Vec<Features> = self.sample.iter().map(|(_, x)| *x).collect();
        let params = ForestParams {
            // A new seed per version: deterministic, and not the same trees every time.
            seed: self.config.forest.seed ^ (self.version + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ..self.config.forest
        };
        let forest = Forest::fit(&points, params)?;
        self.forest = Some(forest);
        self.version += 1;
        self.trained_at = Some(now);
        Some(self.model_info())
    }
}

const _: () = assert!(DIM == features::NAMES.len());

#[path = "learner_corrections.rs"]
mod corrections;
#[path = "learner_look.rs"]
mod look;
pub use corrections::{Correction, CorrectionKind, FALSE_POSITIVE_TTL, false_positive_reason};
pub use look::LookFloor;

/// The score records a tick keeps (`MAX_SCORE_RECORDS`): every scored client under an action,
/// then the highest scores; only those kept are built.
fn kept_scores<'a, X: 'a>(
    scored: impl Iterator<Item = (&'a ClientMinute, X, f64)>,
    table: &ActionTable,
    record: impl Fn((&'a ClientMinute, X, f64)) -> ScoreRecord,
) -> Vec<ScoreRecord> {
    let mut all: Vec<(bool, f64, (&'a ClientMinute, X, f64))> = scored
        .map(|item| (table.get(&item.0.client).is_some(), item.2, item))
        .collect();
    if all.len() > MAX_SCORE_RECORDS {
        // Acted on first, then by score; the order of what is kept is the minute's (by name).
        all.select_nth_unstable_by(MAX_SCORE_RECORDS - 1, |a, b| {
            b.0.cmp(&a.0).then(b.1.total_cmp(&a.1))
        });
        all.truncate(MAX_SCORE_RECORDS);
        all.sort_by(|a, b| a.2.0.client.cmp(&b.2.0.client));
    }
    all.into_iter().map(|(_, _, item)| record(item)).collect()
}

#[cfg(test)]
#[path = "learner_standing_tests.rs"]
mod standing_tests;
#[cfg(test)]
#[path = "learner_test_support.rs"]
pub(crate) mod test_support;
#[cfg(test)]
#[path = "learner_tests.rs"]
mod tests;
