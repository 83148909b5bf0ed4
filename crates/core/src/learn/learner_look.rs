//! The early look: a few times inside a minute, the clients already far beyond a site baseline
//! on what they did so far are acted on, instead of at the minute's close. A flood that starts
//! a second after a minute closed would otherwise run a whole minute (and a slow attacker that
//! arrives late in a minute, almost two) before anything judged it.
//!
//! What it is not: a second learner. It uses the baselines and signals of the last close and
//! learns nothing — no baselines, no forest, no steady-client history; the close at the end of
//! the minute judges everyone again on the whole minute and renews or lets go. Only the volume
//! and failures signals act early, and only on the evidence a newcomer is held to
//! ([`Baselines::assess_newcomer`]): a rate stretched from at least 20 seconds (not stretched
//! at all from under 5: a burst is not a rate), a third of the
//! threshold actually made, static assets not counted — a person's page with its assets is a
//! burst of a second, not a rate.

use std::sync::Arc;

use super::{Learner, MIN_SPAN_SECONDS, stretch_for};
use crate::learn::actions::Signal;
use crate::learn::features;
use crate::learn::fleet_minute::ShareFloor;
use crate::learn::lists::Lists;
use crate::learn::observe::ClientMinute;
use crate::learn::policy::Adjustment;
use crate::time::{NANOS_PER_SEC, Nanos};

impl Learner {
    /// The least a client must have done on one of `replicas` replicas to be shared with the
    /// others: a look's floor divided among them (a client at it, spread evenly, is shared by
    /// every replica), never above the policy's minimum; every client with a second request or
    /// a failed page while the baselines cannot judge yet.
    pub fn share_floor(&self, replicas: u32) -> ShareFloor {
        let replicas = replicas.max(1);
        let third = |failures: bool| {
            self.baselines
                .least_threshold(failures)
                .map(|t| (t / 3.0).floor() as u32)
        };
        let (Some(requests), Some(errors)) = (third(false), third(true)) else {
            return ShareFloor::ANY;
        };
        let requests = requests.min(self.config.policy.min_requests);
        ShareFloor {
            requests: (requests / replicas).max(ShareFloor::ANY.requests),
            errors: (errors / replicas).max(ShareFloor::ANY.errors),
        }
    }

    /// Which clients of the minute that started at `start` a look at `now` may act on;
    /// `None` when it would act on no one (the baselines still warming up, too early in the
    /// minute). The caller copies only those out of the open minute: with a hundred thousand
    /// ordinary clients, copying all of them three times a minute cost as much CPU as the
    /// minute's close.
    pub fn look_floor(&self, start: Nanos, now: Nanos) -> Option<LookFloor> {
        self.look_window(start, now)?;
        // A newcomer's evidence must pass a third of a threshold unstretched
        // (`Baselines::assess_newcomer`): a count of at most a third of the least cannot.
        let above_a_third = |failures: bool| {
            self.baselines
                .least_threshold(failures)
                .map_or(u32::MAX, |t| ((t / 3.0).floor() as u32).saturating_add(1))
        };
        let floor = LookFloor {
            min_requests: self.config.policy.min_requests,
            requests: above_a_third(false),
            errors: above_a_third(true),
            // A client the slow failure window remembers may pass it with one more failure.
            window: !self.failures.is_empty(),
        };
        (floor.requests < u32::MAX || floor.errors < u32::MAX).then_some(floor)
    }

    /// The minute's index and the seconds elapsed in it, when a look at `now` may judge
    /// anyone: the baselines judge this minute and at least `MIN_SPAN_SECONDS` have passed.
    fn look_window(&self, start: Nanos, now: Nanos) -> Option<(i64, f64)> {
        let ready = self.baselines.ready_since()?;
        let minute_index = (start / (60 * NANOS_PER_SEC)) as i64;
        let elapsed = now.saturating_sub(start) as f64 / NANOS_PER_SEC as f64;
        (elapsed >= MIN_SPAN_SECONDS && minute_index >= ready).then_some((minute_index, elapsed))
    }

    /// Judges the clients of the minute that started at `start`, as observed by `now`
    /// (`clients`: a peek at the open minute, not a drain). Returns the new actions as
    /// adjustments; the table in force is [`Learner::actions`].
    pub fn look(&mut self, start: Nanos, clients: &[ClientMinute], now: Nanos) -> Vec<Adjustment> {
        let Some((minute_index, elapsed)) = self.look_window(start, now) else {
            return Vec::new();
        };
        let min_requests = self.config.policy.min_requests;
        let calls: Vec<(&ClientMinute, f64, Option<_>)> = clients
            .iter()
            // A PRM client is only ever reported, and the close reports it.
            .filter(|c| !c.prm && self.actions.get(&c.client).is_none())
            .filter_map(|c| {
                // Here since before the minute: judged on the whole elapsed part; arrived
                // during it: on the span of its own requests.
                let here = if self.steady.was_seen(&c.client, minute_index - 1) {
                    elapsed
                } else {
                    c.span_seconds().min(elapsed)
                };
                let findings = if c.requests >= min_requests {
                    self.baselines.assess_newcomer(c, stretch_for(here))
                } else {
                    Vec::new()
                };
                // The slow failure window over the earlier minutes and this one so far.
                let findings = self.or_window(findings, c, minute_index);
                if findings.is_empty() {
                    return None;
                }
                let established = self.judged_established(c);
                let x = features::extract(c);
                // The forest waits for the close: its threshold is a share of a whole minute.
                let (risk, call) = self.call(c, &x, &findings, established, f64::INFINITY);
                let early = call
                    .as_ref()
                    .is_some_and(|c| matches!(c.signal, Signal::Volume | Signal::Failures));
                early.then_some((c, risk, call))
            })
            .collect();
        if calls.is_empty() {
            return Vec::new();
        }
        let lists = Lists::compile(&self.lists, now);
        let (table, adjustments) = self.apply_policy(
            now,
            calls.iter().map(|(c, risk, call)| (*c, *risk, call)),
            &lists,
        );
        self.actions = Arc::new(table);
        adjustments
    }
}

/// The least a client must have done for a look to act on it (see [`Learner::look_floor`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookFloor {
    /// The policy's minimum: fewer requests are never acted on.
    pub min_requests: u32,
    /// Requests that can be beyond a volume baseline, errors beyond a failure baseline.
    pub requests: u32,
    pub errors: u32,
    /// The slow failure window holds clients: any failing client may be beyond it.
    pub window: bool,
}

impl LookFloor {
    /// Whether a look may act on `c` (cheap: runs under the open minute's shard locks). A PRM
    /// client is only ever reported, at the close.
    pub fn admits(&self, c: &ClientMinute) -> bool {
        !c.prm
            && ((c.requests >= self.min_requests
                && (c.requests >= self.requests || c.errors >= self.errors))
                || (self.window && c.errors > c.asset_errors))
    }
}

#[cfg(test)]
#[path = "learner_look_tests.rs"]
mod tests;
