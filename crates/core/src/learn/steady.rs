//! Established clients: who has been here, busy and steady, for a while without ever being acted
//! on — an integration polling its API, a monitoring probe. Such a client is not an anomaly because
//! it is busy: the volume signal and the forest leave it alone while it stays within twice its own
//! usual rate. (Failing requests and explicit heuristics still apply to it.)
//!
//! Bounded: clients unseen for a window are forgotten, and at most `max_clients` are kept, by
//! a 64-bit hash of their key (only identity matters here: no name is stored).

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Minutes of history kept per client.
pub const WINDOW: usize = 15;

#[derive(Clone, Debug, PartialEq)]
pub struct SteadyConfig {
    /// Minutes of the last `WINDOW` a client must have been seen in.
    pub min_minutes: usize,
    /// Clients remembered at most (past it, new clients are not tracked this minute).
    pub max_clients: usize,
}

impl Default for SteadyConfig {
    fn default() -> Self {
        SteadyConfig {
            min_minutes: 10,
            max_clients: 200_000,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Track {
    /// (minute index, requests), oldest first, within the window.
    minutes: VecDeque<(i64, u32)>,
    /// Acted on at some point in the window: not established.
    acted: Option<i64>,
    /// The first minute seen (while remembered).
    first_seen: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Steady {
    config: SteadyConfig,
    /// By `id(client key)`.
    clients: FxHashMap<u64, Track>,
}

/// A client key's identity here.
fn id(client: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(client.as_bytes())
}

impl Steady {
    pub fn new(config: SteadyConfig) -> Steady {
        Steady {
            config,
            clients: FxHashMap::default(),
        }
    }

    /// Whether `client`, making `requests` this minute, is established: seen in at least
    /// `min_minutes` of the last `WINDOW` (before this one), never acted on in them, and now
    /// within twice its median rate.
    pub fn is_established(&self, client: &str, requests: u32) -> bool {
        let Some(t) = self.clients.get(&id(client)) else {
            return false;
        };
        if t.acted.is_some() || t.minutes.len() < self.config.min_minutes {
            return false;
        }
        let mut counts: Vec<u32> = t.minutes.iter().map(|m| m.1).collect();
        counts.sort_unstable();
        let median = counts[counts.len() / 2] as f64;
        requests as f64 <= 2.0 * median.max(1.0)
    }

    /// Whether `client` was seen in `minute`.
    pub fn was_seen(&self, client: &str, minute: i64) -> bool {
        self.clients
            .get(&id(client))
            .is_some_and(|t| t.minutes.iter().any(|m| m.0 == minute))
    }

    /// Whether `client` was already here before `since` (when the baselines began to judge) and
    /// has not been seen long enough to tell whether it is established: it is given the time.
    pub fn is_pending(&self, client: &str, since: i64) -> bool {
        self.clients.get(&id(client)).is_some_and(|t| {
            t.first_seen < since && t.acted.is_none() && t.minutes.len() < self.config.min_minutes
        })
    }

    /// Records this minute: each client's requests, and who is under an action.
    pub fn record<'a>(
        &mut self,
        minute: i64,
        seen: impl Iterator<Item = (&'a str, u32)>,
        acted: impl Fn(&str) -> bool,
    ) {
        for (client, requests) in seen {
            let update = |t: &mut Track| {
                t.minutes.push_back((minute, requests));
                if acted(client) {
                    t.acted = Some(minute);
                }
            };
            // One lookup for a known client (this runs for every client every minute).
            let key = id(client);
            if let Some(t) = self.clients.get_mut(&key) {
                update(t);
                continue;
            }
            if self.clients.len() >= self.config.max_clients {
                continue;
            }
            let mut t = Track {
                first_seen: minute,
                ..Track::default()
            };
            update(&mut t);
            self.clients.insert(key, t);
        }
        let oldest = minute - WINDOW as i64 + 1;
        self.clients.retain(|_, t| {
            while t.minutes.front().is_some_and(|m| m.0 < oldest) {
                t.minutes.pop_front();
            }
            if t.acted.is_some_and(|m| m < oldest) {
                t.acted = None;
            }
            !t.minutes.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(history: &[(u32, bool)]) -> Steady {
        let mut s = Steady::new(SteadyConfig::default());
        for (m, &(requests, acted)) in history.iter().enumerate() {
            s.record(m as i64, [("svc", requests)].into_iter(), |_| acted);
        }
        s
    }

    #[test]
    fn busy_and_steady_for_ten_minutes_is_established() {
        // (what, history of (requests, acted on), requests now, established)
        let steady = vec![(600, false); 12];
        let short = vec![(600, false); 9];
        let mut once_acted = vec![(600, false); 12];
        once_acted[3].1 = true;
        let cases = [
            ("steady for 12 minutes", steady.clone(), 600, true),
            ("and then a little busier", steady.clone(), 1_100, true),
            ("and then five times as busy", steady, 3_000, false),
            ("only nine minutes", short, 600, false),
            ("acted on within the window", once_acted, 600, false),
        ];
        for (what, history, now, established) in cases {
            assert_eq!(
                run(&history).is_established("svc", now),
                established,
                "{what}"
            );
            assert!(
                !run(&history).is_established("other", now),
                "{what}: unknown client"
            );
        }
    }

    #[test]
    fn clients_here_before_the_baselines_judged_are_given_time() {
        let s = run(&[(600, false); 5]);
        // Seen since minute 0, baselines ready at minute 3: five minutes are not enough to tell.
        assert!(s.is_pending("svc", 3));
        // A client that came after the baselines were ready is judged at once.
        assert!(!s.is_pending("svc", 0));
        assert!(
            !run(&[(600, false); 12]).is_pending("svc", 3),
            "established by now"
        );
    }

    #[test]
    fn old_minutes_are_forgotten() {
        let mut history = vec![(100, true)];
        history.extend(vec![(100, false); 20]);
        // The action was 20 minutes ago, outside the window: established again.
        assert!(run(&history).is_established("svc", 100));
    }
}
