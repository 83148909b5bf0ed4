//! The slow failure window: each failing client's failed page requests over the last few
//! minutes, so a scanner that spreads its probes over minutes (25 over 3 minutes is 8 a minute)
//! is caught inside its burst although no single minute of it passes a threshold. The fast
//! signals keep their one-minute evidence and their early looks; this one is read at each
//! minute's close.
//!
//! What it is not: a baseline. It learns nothing about the site; the learner compares its sums
//! with the failure baseline's per-minute threshold ([`window_threshold`]).
//!
//! Bounded: only clients that failed at least once are kept, for `MINUTES` minutes, and at most
//! `max_clients` of them (past it, new ones are not tracked that minute).

use rustc_hash::FxHashMap;

use super::observe::ClientMinute;

/// Minutes summed, the one being closed included.
pub const MINUTES: usize = 5;
/// A window's sum must pass at least this many failed page requests.
pub const WINDOW_MIN: f64 = 10.0;
/// ...and this multiple of one minute's threshold: a client in good standing fails under a
/// quarter of the threshold a minute, so five such minutes stay under twice it.
pub const WINDOW_FACTOR: f64 = 2.0;

/// The threshold of a window's sum, from the failure measure's per-minute threshold.
pub fn window_threshold(per_minute: f64) -> f64 {
    (WINDOW_FACTOR * per_minute).max(WINDOW_MIN)
}

/// One client's earlier minutes: (minute, failed page requests, page outcomes).
type Recent = [(i64, u32, u32); MINUTES - 1];

#[derive(Clone, Debug)]
pub struct FailureWindow {
    clients: FxHashMap<Box<str>, Recent>,
    max_clients: usize,
}

/// A client's failures over the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSum {
    pub failed: u32,
    pub outcomes: u32,
    /// Minutes with failures in the sum (this one included).
    pub minutes: u32,
}

impl FailureWindow {
    pub fn new(max_clients: usize) -> FailureWindow {
        FailureWindow {
            clients: FxHashMap::default(),
            max_clients,
        }
    }

    /// `c`'s failures over this minute (`minute`) and the earlier minutes of the window.
    pub fn sum(&self, c: &ClientMinute, minute: i64) -> WindowSum {
        let mut sum = WindowSum {
            failed: c.page_errors(),
            outcomes: c.page_outcomes(),
            minutes: 1,
        };
        if let Some(recent) = self.clients.get(&c.client) {
            for &(m, failed, outcomes) in recent {
                if failed > 0 && m < minute && minute - m < MINUTES as i64 {
                    sum.failed += failed;
                    sum.outcomes += outcomes;
                    sum.minutes += 1;
                }
            }
        }
        sum
    }

    /// Notes this minute's failing clients and forgets minutes that left the window.
    pub fn record<'a>(&mut self, minute: i64, clients: impl Iterator<Item = &'a ClientMinute>) {
        for c in clients {
            let failed = c.page_errors();
            if failed == 0 {
                continue;
            }
            let slot = (minute, failed, c.page_outcomes());
            if let Some(recent) = self.clients.get_mut(&c.client) {
                // The oldest slot gives way.
                if let Some(oldest) = recent.iter_mut().min_by_key(|s| s.0) {
                    *oldest = slot;
                }
            } else if self.clients.len() < self.max_clients {
                let mut recent = [(i64::MIN, 0, 0); MINUTES - 1];
                recent[0] = slot;
                self.clients.insert(c.client.clone(), recent);
            }
        }
        self.clients.retain(|_, recent| {
            recent
                .iter()
                .any(|&(m, ..)| minute.saturating_sub(m) < MINUTES as i64 - 1)
        });
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
#[path = "failure_window_tests.rs"]
mod tests;
