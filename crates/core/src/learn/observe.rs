//! Observation: every decision and every reported outcome is folded into a per-minute aggregate
//! per client and per endpoint × tier. This is the only part of the learning loop on the decision
//! path, so it is built to be cheap and bounded:
//!
//! - 64 shards chosen by the client's hash, each behind its own short mutex (a decision touches one
//!   shard once: client and endpoint × tier counters live in the same shard and are merged when
//!   the minute is drained);
//! - strings are allocated once per client (and endpoint) per minute; repeat visits only hash;
//!   each is at most `MAX_STORED_KEY` bytes (longer ones are kept as a prefix and a hash,
//!   [`bounded_key`]), so a minute's memory is bounded in bytes, not only in entries;
//! - at most `max_clients` clients and `max_endpoints` (shard, endpoint × tier) entries are
//!   tracked per minute; observations beyond the cap are counted in `overflow`, never stored.
//!
//! Two kinds of client key are aggregated: the network identity (IP address or session id, as
//! given) and, for requests that carry an authenticated user id, the user as `user:<id>`
//! ([`user_key`]). A request with a user is folded into both, each in its own shard; so an
//! account spread over many proxies is seen whole under its user key, and an address trying many
//! accounts under its network key. Endpoint × tier traffic is counted once per request.
//!
//! It does not decide anything and does not know the forest: `drain` hands the closed minute to the
//! learner (`learner`), which turns it into features. One client's minute and how an observation
//! is folded into it are `client_minute`; what counts as sensitive or tool-like is `classify`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::rules::Tier;
use crate::time::Nanos;

pub use super::classify::Classifier;
use super::classify::{Classes, EndpointClass};
use super::client_minute::Hashes;
pub use super::client_minute::{ClientKind, ClientMinute, ClientSummary, Welford};
pub use super::routes::{endpoint_hash, is_asset, route_family_hash, route_hash, route_template};

const SHARDS: usize = 64;
/// Seed of user keys' hashes, so a user id equal to some address is still another client.
const USER_KEY_SEED: u64 = 0x05E2_1D5E_ED00_0001;
/// Prefix of user client keys: `user:alice`. Network identities never start with it (an IPv6
/// address has no `u`), so the two kinds cannot collide.
pub const USER_KEY_PREFIX: &str = "user:";

/// The longest client identity (address, session or user id) the learning loop keeps as given.
pub const MAX_STORED_KEY: usize = 128;
/// Of a longer one, the bytes kept before its hash.
const KEPT_PREFIX: usize = 96;

/// A client identity as the learning loop stores and compares it: as given up to
/// `MAX_STORED_KEY` bytes; longer, its first `KEPT_PREFIX` bytes, `…` and a 64-bit hash of the
/// whole (still one identity each, at most 115 bytes; of a user key `user:<id>`, the id so).
/// Callers choose these strings: a flood of kilobyte ids must not make every stored copy (the
/// minute, the history, the actions) a kilobyte. Idempotent, so any side of a comparison may
/// apply it again.
pub fn bounded_key(raw: &str) -> std::borrow::Cow<'_, str> {
    match raw.strip_prefix(USER_KEY_PREFIX) {
        Some(id) if id.len() > MAX_STORED_KEY => {
            std::borrow::Cow::Owned(format!("{USER_KEY_PREFIX}{}", bounded_id(id)))
        }
        Some(_) => std::borrow::Cow::Borrowed(raw),
        None => bounded_id(raw),
    }
}

/// An id or address bounded as `bounded_key` says (no user prefix considered).
fn bounded_id(raw: &str) -> std::borrow::Cow<'_, str> {
    if raw.len() <= MAX_STORED_KEY {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut cut = KEPT_PREFIX;
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}…{:016x}",
        &raw[..cut],
        xxhash_rust::xxh3::xxh3_64(raw.as_bytes())
    ))
}

/// The client key under which a user's requests are aggregated and acted on (the id bounded
/// as `bounded_key` does).
pub fn user_key(user_id: &str) -> String {
    format!("{USER_KEY_PREFIX}{}", bounded_id(user_id))
}

/// The user id of a user client key, `None` for a network identity.
pub fn user_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(USER_KEY_PREFIX)
}

/// What happened to one request, as far as the learning loop cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The engine decided. `anomaly` is set when an anomaly action (not a static rule) denied it,
    /// `cut` when a limit cut under pressure did.
    Decision {
        allowed: bool,
        anomaly: bool,
        cut: bool,
    },
    /// The gateway reported the upstream's HTTP status (access log or `Report`).
    Outcome { status: u16 },
}

/// One observation, borrowed from the request.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    pub now: Nanos,
    /// Network identity (IP address or session id). Empty: not observed.
    pub client: &'a str,
    pub user: &'a str,
    pub tier: Tier,
    pub endpoint: &'a str,
    pub user_agent: &'a str,
    pub event: Event,
}

/// Traffic of one endpoint for one tier in one minute (the forecaster's training data).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointMinute {
    pub endpoint: Box<str>,
    pub tier: Tier,
    pub requests: u64,
    pub allowed: u64,
    pub denied: u64,
    /// Of `denied`: by an anomaly action, and by a limit cut under pressure (the rest: limits).
    pub denied_anomaly: u64,
    pub denied_cut: u64,
    pub errors: u64,
}

#[derive(Default)]
struct Shard {
    clients: FxHashMap<u64, ClientMinute>,
    endpoints: FxHashMap<u64, EndpointMinute>,
    /// Classes of user agents and endpoints by hash, kept across minutes: classifying is a
    /// substring search over every pattern, far dearer than the rest of an observation, and the
    /// same few hundred agents and routes come back every minute.
    agent_class: FxHashMap<u64, bool>,
    endpoint_class: FxHashMap<u64, EndpointClass>,
}

/// Bounds and classes for the aggregator.
#[derive(Clone, Debug)]
pub struct ObserveConfig {
    pub max_clients: usize,
    pub max_endpoints: usize,
    pub classifier: Classifier,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        ObserveConfig {
            max_clients: 200_000,
            max_endpoints: 10_000,
            classifier: Classifier::default(),
        }
    }
}

/// A closed minute, as handed to the learner.
#[derive(Debug, Default)]
pub struct MinuteData {
    pub clients: Vec<ClientMinute>,
    pub endpoints: Vec<EndpointMinute>,
    /// Observations not stored because a cap was reached.
    pub overflow: u64,
}

/// The sharded per-minute aggregate. Cheap to call from any thread.
pub struct Aggregator {
    shards: Box<[Mutex<Shard>]>,
    config: ObserveConfig,
    clients: AtomicUsize,
    endpoints: AtomicUsize,
    overflow: AtomicU64,
    overflow_total: AtomicU64,
}

impl Aggregator {
    pub fn new(config: ObserveConfig) -> Aggregator {
        Aggregator {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            config,
            clients: AtomicUsize::new(0),
            endpoints: AtomicUsize::new(0),
            overflow: AtomicU64::new(0),
            overflow_total: AtomicU64::new(0),
        }
    }

    /// Observations dropped at the caps since start.
    pub fn overflow_total(&self) -> u64 {
        self.overflow_total.load(Ordering::Relaxed)
    }

    pub fn record(&self, o: &Observation<'_>) {
        if o.client.is_empty() {
            return;
        }
        let hash = endpoint_hash;
        let h = Hashes {
            client: hash(o.client),
            endpoint: hash(o.endpoint),
            agent: hash(o.user_agent),
            user: hash(o.user),
        };
        if !o.user.is_empty() {
            // The user's own key, in the shard of its (seeded, so distinct) hash; only the
            // per-client part is recorded there, so endpoint traffic counts each request once.
            let key = xxhash_rust::xxh3::xxh3_64_with_seed(o.user.as_bytes(), USER_KEY_SEED);
            let mut shard = self.shards[(key as usize) % SHARDS].lock();
            self.record_client(&mut shard, key, ClientKind::User, o, &h);
        }
        let endpoint_key = h.endpoint ^ (o.tier as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut shard = self.shards[(h.client as usize) % SHARDS].lock();
        let shard = &mut *shard;
        self.record_client(shard, h.client, ClientKind::Network, o, &h);
        let endpoint = match shard.endpoints.get_mut(&endpoint_key) {
            Some(e) => Some(e),
            None if self.reserve(&self.endpoints, self.config.max_endpoints) => {
                let e = shard.endpoints.entry(endpoint_key).or_default();
                e.endpoint = bounded_key(o.endpoint).into();
                e.tier = o.tier;
                Some(e)
            }
            None => None,
        };
        match (endpoint, o.event) {
            (
                Some(e),
                Event::Decision {
                    allowed,
                    anomaly,
                    cut,
                },
            ) => {
                e.requests += 1;
                if allowed {
                    e.allowed += 1;
                } else {
                    e.denied += 1;
                    e.denied_anomaly += u64::from(anomaly);
                    e.denied_cut += u64::from(cut && !anomaly);
                }
            }
            (Some(e), Event::Outcome { status }) if status >= 400 => e.errors += 1,
            (Some(_), Event::Outcome { .. }) => {}
            (None, _) => self.overflowed(),
        }
    }

    /// Folds `o` into the client `key` of `shard`, creating it if the cap allows.
    fn record_client(
        &self,
        shard: &mut Shard,
        key: u64,
        kind: ClientKind,
        o: &Observation<'_>,
        h: &Hashes,
    ) {
        let client = match shard.clients.get_mut(&key) {
            Some(c) => Some(c),
            None if self.reserve(&self.clients, self.config.max_clients) => {
                let c = shard.clients.entry(key).or_default();
                c.kind = kind;
                c.client = match kind {
                    ClientKind::Network => bounded_key(o.client).into(),
                    ClientKind::User => user_key(o.user).into(),
                };
                Some(c)
            }
            None => None,
        };
        match client {
            Some(c) => c.record(
                o,
                h,
                &mut Classes {
                    classifier: &self.config.classifier,
                    agents: &mut shard.agent_class,
                    endpoints: &mut shard.endpoint_class,
                },
            ),
            None => self.overflowed(),
        }
    }

    fn reserve(&self, counter: &AtomicUsize, cap: usize) -> bool {
        counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    fn overflowed(&self) {
        self.overflow.fetch_add(1, Ordering::Relaxed);
        self.overflow_total.fetch_add(1, Ordering::Relaxed);
    }

    /// The open minute's clients that `keep` keeps, copied (sorted by name), for an early look;
    /// nothing is taken. `keep` runs under a shard's lock: it must be cheap.
    pub fn peek_where(&self, keep: impl Fn(&ClientMinute) -> bool) -> Vec<ClientMinute> {
        let mut out: Vec<ClientMinute> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            out.extend(shard.clients.values().filter(|c| keep(c)).cloned());
        }
        sort_by_name(&mut out);
        out
    }

    /// The open minute's `n` busiest clients of each tier (`[STD, PRM]`, most requests first,
    /// ties by name), copied; nothing is taken. Only the winners are copied, so a dashboard
    /// asking every few seconds costs a scan, not a copy of every client.
    pub fn busiest(&self, n: usize) -> [Vec<ClientMinute>; 2] {
        let mut top: [Vec<ClientMinute>; 2] = [Vec::new(), Vec::new()];
        fn rank(c: &ClientMinute) -> (std::cmp::Reverse<u32>, &str) {
            (std::cmp::Reverse(c.requests), &c.client)
        }
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for c in shard.clients.values() {
                let tier = &mut top[usize::from(c.prm)];
                if tier.len() == n && tier.last().is_some_and(|last| rank(c) >= rank(last)) {
                    continue;
                }
                let at = tier.partition_point(|t| rank(t) < rank(c));
                tier.insert(at, c.clone());
                tier.truncate(n);
            }
        }
        top
    }

    /// Closes the minute: takes everything aggregated so far and starts afresh. Clients are
    /// returned sorted by name so whatever consumes them is deterministic.
    pub fn drain(&self) -> MinuteData {
        let mut out = MinuteData::default();
        // The same endpoint is counted in every shard its clients hash to: merge.
        let mut endpoints: FxHashMap<u64, EndpointMinute> = FxHashMap::default();
        let mut taken_clients = Vec::with_capacity(SHARDS);
        for shard in self.shards.iter() {
            let (clients, taken_endpoints) = {
                let mut shard = shard.lock();
                // The class caches stay: they are not about this minute.
                // Next minute likely sees as many clients: size for them now, so the decision
                // path does not pay for growing the table again.
                let clients =
                    FxHashMap::with_capacity_and_hasher(shard.clients.len(), Default::default());
                (
                    std::mem::replace(&mut shard.clients, clients),
                    std::mem::take(&mut shard.endpoints),
                )
            };
            taken_clients.push(clients);
            for (key, e) in taken_endpoints {
                let merged = endpoints.entry(key).or_insert_with(|| EndpointMinute {
                    endpoint: e.endpoint.clone(),
                    tier: e.tier,
                    ..EndpointMinute::default()
                });
                merged.requests += e.requests;
                merged.allowed += e.allowed;
                merged.denied += e.denied;
                merged.denied_anomaly += e.denied_anomaly;
                merged.denied_cut += e.denied_cut;
                merged.errors += e.errors;
            }
        }
        // One allocation and one move per client: extending shard by shard regrew (and copied)
        // a vector of ~100,000 entries of ~360 bytes several times a minute, most of the close.
        out.clients
            .reserve_exact(taken_clients.iter().map(|c| c.len()).sum());
        for clients in taken_clients {
            out.clients.extend(clients.into_values());
        }
        out.endpoints = endpoints.into_values().collect();
        self.clients.store(0, Ordering::Relaxed);
        self.endpoints.store(0, Ordering::Relaxed);
        out.overflow = self.overflow.swap(0, Ordering::Relaxed);
        sort_by_name(&mut out.clients);
        out.endpoints
            .sort_unstable_by(|a, b| (&a.endpoint, a.tier as u8).cmp(&(&b.endpoint, b.tier as u8)));
        out
    }
}

/// Sorts clients by name, moving each entry once: sorting the entries themselves moves them
/// at every swap (log₂ n times each), and they are large.
fn sort_by_name(clients: &mut [ClientMinute]) {
    let mut order: Vec<usize> = (0..clients.len()).collect();
    order.sort_unstable_by(|&a, &b| clients[a].client.cmp(&clients[b].client));
    // Position i takes the entry now at order[i]: follow each cycle of the permutation.
    for start in 0..order.len() {
        let mut i = start;
        while order[i] != start {
            let j = order[i];
            clients.swap(i, j);
            order[i] = i;
            i = j;
        }
        order[i] = i;
    }
}

#[cfg(test)]
#[path = "observe_tests.rs"]
mod tests;
