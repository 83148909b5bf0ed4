//! The early look: a few times inside a minute, the clients already far beyond a site baseline
//! on what they did so far are acted on, instead of at the minute's close. A flood that starts
//! a second after a minute closed would otherwise run a whole minute (and a slow attacker that
//! arrives late in a minute, almost two) before anything judged it.
//!
//! What it is not: a second learner. It uses the baselines and signals of the last close and
//! learns nothing — no baselines, no forest, no steady-client history; the close at the end of
//! the minute judges everyone again on the whole minute and renews or lets go. Only the volume
//! and failures signals act early, and only on the evidence a newcomer is held to
//! ([`Baselines::assess_newcomer`]): a rate stretched from at least 20 seconds, a third of the
//! threshold actually made, static assets not counted — a person's page with its assets is a
//! burst of a second, not a rate.

use std::sync::Arc;

use super::{Learner, MIN_SPAN_SECONDS};
use crate::learn::actions::Signal;
use crate::learn::features;
use crate::learn::lists::Lists;
use crate::learn::observe::ClientMinute;
use crate::learn::policy::Adjustment;
use crate::time::{NANOS_PER_SEC, Nanos};

impl Learner {
    /// Judges the clients of the minute that started at `start`, as observed by `now`
    /// (`clients`: a peek at the open minute, not a drain). Returns the new actions as
    /// adjustments; the table in force is [`Learner::actions`].
    pub fn look(&mut self, start: Nanos, clients: &[ClientMinute], now: Nanos) -> Vec<Adjustment> {
        let Some(ready) = self.baselines.ready_since() else {
            return Vec::new();
        };
        let minute_index = (start / (60 * NANOS_PER_SEC)) as i64;
        let elapsed = now.saturating_sub(start) as f64 / NANOS_PER_SEC as f64;
        if elapsed < MIN_SPAN_SECONDS || minute_index < ready {
            return Vec::new();
        }
        let min_requests = self.config.policy.min_requests;
        let calls: Vec<(&ClientMinute, f64, Option<_>)> = clients
            .iter()
            // A PRM client is only ever reported, and the close reports it.
            .filter(|c| {
                c.requests >= min_requests && !c.prm && self.actions.get(&c.client).is_none()
            })
            .filter_map(|c| {
                // Here since before the minute: judged on the whole elapsed part; arrived
                // during it: on the span of its own requests.
                let here = if self.steady.was_seen(&c.client, minute_index - 1) {
                    elapsed
                } else {
                    c.span_seconds().min(elapsed)
                };
                let findings = self
                    .baselines
                    .assess_newcomer(c, 60.0 / here.max(MIN_SPAN_SECONDS));
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

#[cfg(test)]
#[path = "learner_look_tests.rs"]
mod tests;
