//! The replay report (format in `docs/trace-format.md`): totals, per label, per client, the
//! flagged clients and detection quality against the trace's labels, for network identities and
//! for signed-in users apart.
//!
//! Built incrementally while the replay runs: one small record per client, nothing per request.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::lead::LeadTime;
use sluice_core::forecast::eval::ErrorSum;
use sluice_core::forecast::live::SeriesMethods;
use sluice_core::forecast::pressure::PressureChange;
use sluice_core::learn::actions::{ActionKind, ActionTable};
use sluice_core::learn::learner::{Correction, CorrectionKind};
use sluice_core::learn::observe::{user_key, user_of_key};
use sluice_core::learn::policy::Adjustment;
use sluice_core::time::NANOS_PER_MILLI;

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub allowed: u64,
    pub denied: u64,
}

impl Counts {
    fn add(&mut self, allowed: bool) {
        self.requests += 1;
        if allowed {
            self.allowed += 1;
        } else {
            self.denied += 1;
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Flagged {
    pub client: String,
    pub first_flagged_ts: i64,
    pub max_score: f64,
    /// The strongest action taken: `block` or `throttle`.
    pub action: &'static str,
    pub label: String,
    pub requests: u64,
    /// The signal of the first action taken, and why.
    pub signal: &'static str,
    pub why: String,
    /// When an operator marked it a false positive (a corrections file), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marked_false_positive_ts: Option<i64>,
}

/// An operator's correction the replay applied (or, past the trace's end, did not reach).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CorrectionEvent {
    pub ts: i64,
    /// `false_positive`, `allow`, `deny` or `reset`.
    pub action: &'static str,
    pub client: String,
    pub reason: String,
    /// Clients whose action it lifted, and those it blocked (a denylist entry).
    pub lifted: Vec<String>,
    pub blocked: Vec<String>,
    /// `false`: its time is after the trace's last row.
    pub applied: bool,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Delays {
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ClientSummary {
    pub total: u64,
    pub flagged: u64,
    pub labelled: BTreeMap<&'static str, u64>,
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub detection_delay_seconds: Option<Delays>,
    /// Attack clients with at least `FAILING_ATTACK_MIN` requests, most of them failing in the
    /// trace (status ≥ 400): attacks any site can tell from people by what a gateway sees
    /// (scanners, exploit bursts, credential stuffing). Of those, how many were acted on:
    /// `failing_attacks_acted_on / failing_attacks` checks the failure signals on your logs.
    pub failing_attacks: u64,
    pub failing_attacks_acted_on: u64,
    pub failing_attacks_recall: Option<f64>,
    /// The failing attacks not acted on (the first `MISSED_LISTED` by name): what escaped.
    pub failing_attacks_missed: Vec<Missed>,
}

/// A failing attack that was never acted on.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Missed {
    pub client: String,
    pub label: String,
    pub requests: u64,
    pub failed: u64,
    /// Seconds from its first to its last request.
    pub seconds: f64,
}

/// Missed failing attacks listed at most.
const MISSED_LISTED: usize = 100;

/// Requests from which an attack client whose requests mostly fail counts in `failing_attacks`.
pub const FAILING_ATTACK_MIN: u64 = 20;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Report {
    pub requests: u64,
    pub allowed: u64,
    pub denied: u64,
    /// Denied by an anomaly action (the rest by static rules).
    pub denied_anomaly: u64,
    pub by_label: BTreeMap<String, Counts>,
    /// Network identities (the trace's `client`).
    pub clients: ClientSummary,
    /// Signed-in users (the trace's `user`), acted on as `user:<id>` across addresses; a user's
    /// label is the label of most of its requests.
    pub users: ClientSummary,
    /// Flagged network identities and users (`user:<id>`).
    pub flagged: Vec<Flagged>,
    /// Actions were recorded, not enforced.
    pub shadow: bool,
    /// The forecaster's one-step-ahead error on the trace's total requests per minute, after its
    /// warm-up (a 60-minute window).
    pub forecast: Option<ForecastSummary>,
    /// Operators' corrections (`--corrections`), in order.
    pub corrections: Vec<CorrectionEvent>,
    /// Cuts of STD limits on low-priority endpoints, and their lifting, in order.
    pub pressure: Vec<PressureEvent>,
    /// Per pressure episode and watched endpoint: when the forecast and the measured traffic
    /// first went over its capacity, and the forecast's lead in minutes.
    pub lead_times: Vec<LeadTime>,
    /// Requests denied by a limit cut under pressure (included in `denied`).
    pub denied_forecast: u64,
    /// Benign requests denied, as a share of benign requests.
    pub benign_denied_ratio: Option<f64>,
    pub minutes: u64,
    pub model_versions: u64,
    /// Observations dropped at the per-minute client cap.
    pub observation_overflow: u64,
    pub replay_seconds: f64,
    pub requests_per_second: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ForecastSummary {
    pub forecaster: String,
    pub minutes: u64,
    pub mae: f64,
    pub smape: f64,
    /// At the end of the trace, which candidate spoke for each series at 1 and 15 minutes
    /// (`model`, `last`, `mean5`, `smooth`, `blend`, `median30`, `day`, `week`) and why.
    pub methods: Vec<ForecastMethod>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ForecastMethod {
    pub series: String,
    pub at_1: &'static str,
    pub at_15: &'static str,
    pub why: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PressureEvent {
    pub ts: i64,
    /// `tightened` or `restored`.
    pub what: &'static str,
    pub factor: f64,
    pub cause: String,
    pub shadow: bool,
}

#[derive(Default)]
struct ClientTrack {
    labels: SmallLabels,
    first_attack_ms: Option<i64>,
    last_ms: i64,
    first_flagged_ms: Option<i64>,
    max_score: f64,
    blocked: bool,
    requests: u64,
    /// Requests whose status in the trace was ≥ 400.
    failed: u64,
    signal: Option<(&'static str, String)>,
    marked_false_positive_ms: Option<i64>,
}

/// Label counts per client: almost always one label.
#[derive(Default)]
struct SmallLabels(smallvec::SmallVec<[(Box<str>, u64); 1]>);

impl SmallLabels {
    fn add(&mut self, label: &str) {
        match self.0.iter_mut().find(|(l, _)| &**l == label) {
            Some(e) => e.1 += 1,
            None => self.0.push((label.into(), 1)),
        }
    }

    /// The label of most of the client's requests (ties: the first seen).
    fn majority(&self) -> &str {
        let mut best: Option<&(Box<str>, u64)> = None;
        for e in &self.0 {
            if best.is_none_or(|b| e.1 > b.1) {
                best = Some(e);
            }
        }
        best.map_or("", |b| &b.0)
    }
}

fn is_attack(label: &str) -> bool {
    label == "attack" || label.starts_with("attack:")
}

#[derive(Default)]
pub struct ReportBuilder {
    report: Report,
    clients: Tracks,
    /// By user id (without the `user:` prefix).
    users: Tracks,
}

#[derive(Default)]
struct Tracks(FxHashMap<Box<str>, ClientTrack>);

impl Tracks {
    fn get(&mut self, key: &str) -> &mut ClientTrack {
        // Look up before inserting: the key is only allocated once per client.
        if !self.0.contains_key(key) {
            self.0.insert(key.into(), ClientTrack::default());
        }
        self.0.get_mut(key).expect("inserted above")
    }

    fn request(&mut self, key: &str, label: &str, ts_ms: i64, failed: bool) {
        let track = self.get(key);
        track.requests += 1;
        track.failed += failed as u64;
        track.last_ms = track.last_ms.max(ts_ms);
        if !label.is_empty() {
            track.labels.add(label);
        }
        if is_attack(label) && track.first_attack_ms.is_none() {
            track.first_attack_ms = Some(ts_ms);
        }
    }

    /// Totals, confusion counts and delays of these tracks; flagged ones are added to `flagged`
    /// under `name(key)`.
    fn summarize(self, name: impl Fn(&str) -> String, flagged: &mut Vec<Flagged>) -> ClientSummary {
        let mut s = ClientSummary::default();
        let mut delays = Vec::new();
        let mut tracks: Vec<_> = self.0.into_iter().collect();
        tracks.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, t) in tracks {
            if t.requests == 0 {
                continue; // Flagged from a restored action but silent in this trace.
            }
            s.total += 1;
            let label = t.labels.majority().to_string();
            let attack = is_attack(&label);
            if !label.is_empty() {
                *s.labelled
                    .entry(if attack { "attack" } else { "benign" })
                    .or_default() += 1;
            }
            match (t.first_flagged_ms, attack) {
                (Some(_), true) => s.true_positives += 1,
                (Some(_), false) if !label.is_empty() => s.false_positives += 1,
                (None, true) => s.false_negatives += 1,
                _ => {}
            }
            if attack && t.requests >= FAILING_ATTACK_MIN && 2 * t.failed >= t.requests {
                s.failing_attacks += 1;
                s.failing_attacks_acted_on += t.first_flagged_ms.is_some() as u64;
                if t.first_flagged_ms.is_none() && s.failing_attacks_missed.len() < MISSED_LISTED {
                    s.failing_attacks_missed.push(Missed {
                        client: name(&key),
                        label: label.clone(),
                        requests: t.requests,
                        failed: t.failed,
                        seconds: (t.last_ms - t.first_attack_ms.unwrap_or(t.last_ms)) as f64
                            / 1000.0,
                    });
                }
            }
            if let (Some(f), true, Some(a)) = (t.first_flagged_ms, attack, t.first_attack_ms) {
                delays.push(((f - a).max(0)) as f64 / 1000.0);
            }
            if let Some(first) = t.first_flagged_ms {
                s.flagged += 1;
                flagged.push(Flagged {
                    client: name(&key),
                    first_flagged_ts: first,
                    max_score: (t.max_score * 1000.0).round() / 1000.0,
                    action: if t.blocked { "block" } else { "throttle" },
                    label,
                    requests: t.requests,
                    signal: t.signal.as_ref().map_or("", |s| s.0),
                    why: t.signal.map(|s| s.1).unwrap_or_default(),
                    marked_false_positive_ts: t.marked_false_positive_ms,
                });
            }
        }
        if s.labelled.values().sum::<u64>() > 0 {
            let tp = s.true_positives as f64;
            let flagged_labelled = tp + s.false_positives as f64;
            let attackers = tp + s.false_negatives as f64;
            s.precision = Some(if flagged_labelled > 0.0 {
                tp / flagged_labelled
            } else {
                1.0
            });
            s.recall = Some(if attackers > 0.0 { tp / attackers } else { 1.0 });
            s.failing_attacks_recall = (s.failing_attacks > 0)
                .then(|| s.failing_attacks_acted_on as f64 / s.failing_attacks as f64);
        }
        if !delays.is_empty() {
            delays.sort_by(f64::total_cmp);
            let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
            s.detection_delay_seconds = Some(Delays {
                p50: at(0.5),
                p90: at(0.9),
                max: at(1.0),
            });
        }
        s
    }
}

impl ReportBuilder {
    /// One request of the replay, as the report counts it (one flat call on the replay's hot
    /// loop: a struct built per request would cost more than it says).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        client: &str,
        user: &str,
        label: &str,
        ts_ms: i64,
        allowed: bool,
        by_anomaly: bool,
        failed: bool,
    ) {
        self.report.requests += 1;
        if allowed {
            self.report.allowed += 1;
        } else {
            self.report.denied += 1;
            if by_anomaly {
                self.report.denied_anomaly += 1;
            }
        }
        if !label.is_empty() {
            match self.report.by_label.get_mut(label) {
                Some(c) => c.add(allowed),
                None => self
                    .report
                    .by_label
                    .entry(label.to_string())
                    .or_default()
                    .add(allowed),
            }
        }
        self.clients.request(client, label, ts_ms, failed);
        if !user.is_empty() {
            self.users.request(user, label, ts_ms, failed);
        }
    }

    pub fn pressure(&mut self, c: &PressureChange) {
        self.report.pressure.push(PressureEvent {
            ts: (c.at / NANOS_PER_MILLI) as i64,
            what: c.what,
            factor: c.factor,
            cause: c.cause.clone(),
            shadow: c.shadow,
        });
    }

    /// A correction at `ts_ms` with what it changed; `None`: the trace never reached its time.
    pub fn correction(&mut self, ts_ms: i64, c: &Correction, changes: Option<&[Adjustment]>) {
        let applied = changes.is_some();
        let changes = changes.unwrap_or_default();
        if applied && c.kind == CorrectionKind::FalsePositive {
            let mut keys: Vec<&str> = changes.iter().map(|a| a.client.as_str()).collect();
            keys.push(&c.client);
            for key in keys {
                let track = match user_of_key(key) {
                    Some(user) => self.users.0.get_mut(user),
                    None => self.clients.0.get_mut(key),
                };
                if let Some(track) = track {
                    track.marked_false_positive_ms.get_or_insert(ts_ms);
                }
            }
        }
        let clients = |blocked: bool| {
            changes
                .iter()
                .filter(|a| a.to.is_some() == blocked)
                .map(|a| a.client.clone())
                .collect()
        };
        self.report.corrections.push(CorrectionEvent {
            ts: ts_ms,
            action: c.kind.name(),
            client: c.client.clone(),
            reason: c.reason.clone(),
            lifted: clients(false),
            blocked: clients(true),
            applied,
        });
    }

    pub fn lead_times(&mut self, leads: Vec<LeadTime>) {
        self.report.lead_times = leads;
    }

    pub fn forecast_cut(&mut self) {
        self.report.denied_forecast += 1;
    }

    pub fn forecast(&mut self, forecaster: &str, errors: &ErrorSum, methods: &[SeriesMethods]) {
        if errors.n == 0 {
            return;
        }
        let s = errors.score();
        self.report.forecast = Some(ForecastSummary {
            forecaster: forecaster.to_string(),
            minutes: errors.n,
            mae: (s.mae * 1000.0).round() / 1000.0,
            smape: (s.smape * 10_000.0).round() / 10_000.0,
            methods: methods
                .iter()
                .map(|m| ForecastMethod {
                    series: m.series.clone(),
                    at_1: m.at_1.name(),
                    at_15: m.at_horizon.name(),
                    why: m.why.clone(),
                })
                .collect(),
        });
    }

    /// After each learning tick: every client under an action counts as flagged from then.
    pub fn actions(&mut self, table: &ActionTable, at_ms: i64) {
        for action in table.iter() {
            if action.shadow {
                self.report.shadow = true;
            }
            let track = match user_of_key(&action.client) {
                Some(user) => self.users.get(user),
                None => self.clients.get(&action.client),
            };
            let since_ms = (action.since / NANOS_PER_MILLI) as i64;
            track.first_flagged_ms.get_or_insert(since_ms.min(at_ms));
            track.max_score = track.max_score.max(action.score);
            track.blocked |= action.kind == ActionKind::Block;
            if track.signal.is_none() {
                track.signal = Some((action.signal.name(), action.why.to_string()));
            }
        }
    }

    pub fn finish(
        mut self,
        minutes: u64,
        model_versions: u64,
        overflow: u64,
        seconds: f64,
    ) -> Report {
        let r = &mut self.report;
        r.minutes = minutes;
        r.model_versions = model_versions;
        r.observation_overflow = overflow;
        r.replay_seconds = seconds;
        r.requests_per_second = if seconds > 0.0 {
            r.requests as f64 / seconds
        } else {
            0.0
        };
        // Every benign label counts (`benign`, `benign:nat`, `benign:flash`, ...).
        let (requests, denied) = r
            .by_label
            .iter()
            .filter(|(label, _)| !label.is_empty() && !is_attack(label))
            .fold((0, 0), |(n, d), (_, c)| (n + c.requests, d + c.denied));
        r.benign_denied_ratio = (requests > 0).then(|| denied as f64 / requests as f64);
        r.clients = self.clients.summarize(|k| k.to_string(), &mut r.flagged);
        r.users = self.users.summarize(user_key, &mut r.flagged);
        r.flagged
            .sort_by(|a, b| (a.first_flagged_ts, &a.client).cmp(&(b.first_flagged_ts, &b.client)));
        self.report
    }
}
