//! Observation: every decision and every reported outcome is folded into a per-minute aggregate
//! per client and per endpoint × tier. This is the only part of the learning loop on the decision
//! path, so it is built to be cheap and bounded:
//!
//! - 64 shards chosen by the client's hash, each behind its own short mutex (a decision touches one
//!   shard once: client and endpoint × tier counters live in the same shard and are merged when
//!   the minute is drained);
//! - strings are allocated once per client (and endpoint) per minute; repeat visits only hash;
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
//! learner (`learner`), which turns it into features.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::rules::Tier;

pub use super::routes::{endpoint_hash, is_asset, route_hash, route_template};
use crate::time::{NANOS_PER_SEC, Nanos};

const SHARDS: usize = 64;
/// Seed of user keys' hashes, so a user id equal to some address is still another client.
const USER_KEY_SEED: u64 = 0x05E2_1D5E_ED00_0001;
/// Distinct endpoints (and user agents, users) remembered exactly per client-minute; past this
/// every new one is still counted as distinct, so the count stays right and only the histogram's
/// tail is approximate.
const EXACT_DISTINCT: usize = 32;
/// An endpoint whose route is not tracked (past `EXACT_DISTINCT` routes).
const NO_ROUTE: u8 = u8::MAX;

/// Prefix of user client keys: `user:alice`. Network identities never start with it (an IPv6
/// address has no `u`), so the two kinds cannot collide.
pub const USER_KEY_PREFIX: &str = "user:";

/// The client key under which a user's requests are aggregated and acted on.
pub fn user_key(user_id: &str) -> String {
    format!("{USER_KEY_PREFIX}{user_id}")
}

/// The user id of a user client key, `None` for a network identity.
pub fn user_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(USER_KEY_PREFIX)
}

/// What a client key names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientKind {
    /// An IP address or session id (the trace's `client`, Envoy's `remote_address`).
    #[default]
    Network,
    /// An authenticated user id, across every address it came from.
    User,
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

/// Which endpoints and user agents count as sensitive or tool-like: case-insensitive substrings.
#[derive(Clone, Debug)]
pub struct Classifier {
    pub sensitive_endpoints: Vec<String>,
    pub tool_agents: Vec<String>,
}

impl Default for Classifier {
    fn default() -> Self {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        Classifier {
            sensitive_endpoints: list(&[
                "login", "signin", "sign-in", "auth", "password", "token", "payment", "checkout",
            ]),
            tool_agents: list(&[
                "curl",
                "wget",
                "python",
                "postman",
                "go-http-client",
                "java/",
                "okhttp",
                "libwww",
                "httpclient",
                "scrapy",
                "bot",
                "spider",
                "crawler",
                "headless",
                "node-fetch",
                "axios",
            ]),
        }
    }
}

impl Classifier {
    pub fn is_sensitive(&self, endpoint: &str) -> bool {
        self.sensitive_endpoints
            .iter()
            .any(|n| contains_ci(endpoint, n))
    }

    pub fn is_tool(&self, user_agent: &str) -> bool {
        self.tool_agents.iter().any(|n| contains_ci(user_agent, n))
    }
}

/// ASCII case-insensitive substring test without allocating (`needle` is lower-case).
fn contains_ci(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    !n.is_empty()
        && h.len() >= n.len()
        && h.windows(n.len())
            .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// Welford's running mean and variance.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Welford {
    pub n: u64,
    pub mean: f64,
    m2: f64,
}

impl Welford {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Population variance; 0 with fewer than two values.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.m2 / self.n as f64
        }
    }
}

/// A small exact set of hashes, each with a class bit, plus a count of the distinct ones past
/// `EXACT_DISTINCT` (their class is taken as "not flagged").
#[derive(Clone, Debug, Default)]
struct Distinct {
    seen: SmallVec<[(u64, bool); 2]>,
    beyond: u32,
}

impl Distinct {
    /// The class bit of `hash`, classifying it with `classify` on first sight.
    fn visit(&mut self, hash: u64, classify: impl FnOnce() -> bool) -> bool {
        if let Some(e) = self.seen.iter().find(|e| e.0 == hash) {
            return e.1;
        }
        if self.seen.len() < EXACT_DISTINCT {
            let class = classify();
            self.seen.push((hash, class));
            class
        } else {
            self.beyond += 1;
            false
        }
    }

    fn count(&self) -> u32 {
        self.seen.len() as u32 + self.beyond
    }
}

/// One client's minute.
///
/// `repr(C)`, fields in this order: what every observation updates comes first and together
/// (about 200 bytes), the rest after. With 100,000 clients a minute the table is far larger
/// than the caches, and the compiler's own order (by alignment) spread one update over the
/// whole ~350-byte entry: six cache lines instead of three or four.
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct ClientMinute {
    // Touched by every observation.
    /// Requests seen: decisions, or outcomes for a client the engine was not asked about.
    pub requests: u32,
    pub allowed: u32,
    /// Denied by static rules.
    pub denied: u32,
    /// Denied by an anomaly action; kept apart so an action does not feed its own evidence.
    pub denied_anomaly: u32,
    /// Requests to sensitive endpoints, and with a tool user agent.
    pub sensitive: u32,
    pub tool_agent: u32,
    last_seen: Nanos,
    pub inter_arrival: Welford,
    pub kind: ClientKind,
    pub prm: bool,
    /// The user agent of the latest request: a tool agent counts per request.
    last_agent_tool: bool,
    decided: bool,
    /// (endpoint hash, requests) for the first `EXACT_DISTINCT` endpoints.
    /// (endpoint hash, requests, sensitive, index of its route in `routes` or `NO_ROUTE`).
    endpoints: SmallVec<[(u64, u32, bool, u8); 4]>,
    /// (route hash, requests): endpoints with their ids templated (`/product/{id}`), so a scraper
    /// walking ten thousand product pages is ten thousand requests to one route.
    routes: SmallVec<[(u64, u32, bool); 4]>,

    // Touched when a client first appears, by outcomes, or with a user agent or user id.
    pub client: Box<str>,
    pub outcomes: u32,
    /// Outcomes with status ≥ 400.
    pub errors: u32,
    /// Outcomes 401 or 403.
    pub auth_failures: u32,
    endpoints_beyond: u32,
    agents: Distinct,
    /// The other kind of identity: users seen on a network key, addresses seen for a user key.
    partners: Distinct,
}

impl ClientMinute {
    /// Seconds from its first to its last request this minute (0 with one request).
    pub fn span_seconds(&self) -> f64 {
        self.inter_arrival.mean * self.inter_arrival.n as f64
    }

    pub fn distinct_endpoints(&self) -> u32 {
        self.endpoints.len() as u32 + self.endpoints_beyond
    }

    /// (route hash, requests, a static asset) of the routes tracked exactly (the first
    /// `EXACT_DISTINCT`); the hash is [`route_hash`] of the endpoint.
    pub fn route_counts(&self) -> impl Iterator<Item = (u64, u32, bool)> + '_ {
        self.routes.iter().copied()
    }

    /// Requests to the busiest endpoint.
    pub fn top_endpoint_requests(&self) -> u32 {
        self.endpoints.iter().map(|e| e.1).max().unwrap_or(0)
    }

    /// Shannon entropy (bits) of the endpoint histogram; each endpoint past the exact ones is
    /// taken to have been visited once.
    pub fn endpoint_entropy(&self) -> f64 {
        let total: u32 = self.endpoints.iter().map(|e| e.1).sum::<u32>() + self.endpoints_beyond;
        if total == 0 {
            return 0.0;
        }
        let t = total as f64;
        let mut h = 0.0;
        for &(_, c, _, _) in &self.endpoints {
            let p = c as f64 / t;
            h -= p * p.log2();
        }
        if self.endpoints_beyond > 0 {
            let p = 1.0 / t;
            h -= self.endpoints_beyond as f64 * p * p.log2();
        }
        h
    }

    pub fn distinct_agents(&self) -> u32 {
        self.agents.count()
    }

    /// Distinct users behind a network key, or distinct addresses a user key came from.
    pub fn distinct_partners(&self) -> u32 {
        self.partners.count()
    }

    /// Counts a request to the route of a newly seen endpoint (its hash and whether it is a
    /// static asset, from the shard's endpoint cache); returns the route's index
    /// (`NO_ROUTE` past the exact ones).
    fn count_route(&mut self, hash: u64, asset: bool) -> u8 {
        if let Some(i) = self.routes.iter().position(|r| r.0 == hash) {
            self.routes[i].1 += 1;
            return i as u8;
        }
        if self.routes.len() < EXACT_DISTINCT {
            self.routes.push((hash, 1, asset));
            return (self.routes.len() - 1) as u8;
        }
        NO_ROUTE
    }

    /// Folds one observation in. Decisions count requests; outcomes count errors, and count as
    /// requests only for a client no decision was seen for this minute (a gateway that reports
    /// without asking), so a request decided and reported is counted once.
    fn record(&mut self, o: &Observation<'_>, h: &Hashes, classes: &mut Classes<'_>) {
        if !o.user_agent.is_empty() {
            self.last_agent_tool = self
                .agents
                .visit(h.agent, || classes.tool(h.agent, o.user_agent));
        }
        match self.kind {
            ClientKind::Network if !o.user.is_empty() => {
                self.partners.visit(h.user, || false);
            }
            ClientKind::User => {
                self.partners.visit(h.client, || false);
            }
            ClientKind::Network => {}
        }
        if o.tier == Tier::Prm {
            self.prm = true;
        }
        let counts_as_request = match o.event {
            Event::Decision {
                allowed, anomaly, ..
            } => {
                self.decided = true;
                if allowed {
                    self.allowed += 1;
                } else if anomaly {
                    self.denied_anomaly += 1;
                } else {
                    self.denied += 1;
                }
                true
            }
            Event::Outcome { status } => {
                self.outcomes += 1;
                if status >= 400 {
                    self.errors += 1;
                }
                if status == 401 || status == 403 {
                    self.auth_failures += 1;
                }
                !self.decided
            }
        };
        if !counts_as_request {
            return;
        }
        self.requests += 1;
        if self.last_agent_tool && !o.user_agent.is_empty() {
            self.tool_agent += 1;
        }
        let sensitive = match self.endpoints.iter_mut().find(|e| e.0 == h.endpoint) {
            Some(e) => {
                e.1 += 1;
                // A known endpoint's route is known: no templating on the repeat visit.
                if let Some(r) = self.routes.get_mut(e.3 as usize) {
                    r.1 += 1;
                }
                e.2
            }
            None => {
                let class = classes.endpoint(h.endpoint, o.endpoint);
                let sensitive = class.sensitive;
                let route = self.count_route(class.route, class.asset);
                if self.endpoints.len() < EXACT_DISTINCT {
                    self.endpoints.push((h.endpoint, 1, sensitive, route));
                } else {
                    self.endpoints_beyond += 1;
                }
                sensitive
            }
        };
        if sensitive {
            self.sensitive += 1;
        }
        if self.requests > 1 {
            // Mild disorder (replays accept a few seconds) counts as a zero gap.
            let gap = o.now.saturating_sub(self.last_seen);
            self.inter_arrival.push(gap as f64 / NANOS_PER_SEC as f64);
        }
        self.last_seen = self.last_seen.max(o.now);
    }
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

struct Hashes {
    client: u64,
    endpoint: u64,
    agent: u64,
    user: u64,
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

/// Entries per shard in each class cache; past it the cache starts afresh (bounded memory
/// against a flood of made-up user agents).
const CLASS_CACHE: usize = 4096;

/// The classifier with one shard's caches.
struct Classes<'a> {
    classifier: &'a Classifier,
    agents: &'a mut FxHashMap<u64, bool>,
    endpoints: &'a mut FxHashMap<u64, EndpointClass>,
}

/// What is known of an endpoint, whoever calls it: sensitive, its route, a static asset.
#[derive(Clone, Copy, Debug)]
struct EndpointClass {
    sensitive: bool,
    route: u64,
    asset: bool,
}

impl Classes<'_> {
    fn cached<T: Copy>(
        cache: &mut FxHashMap<u64, T>,
        hash: u64,
        classify: impl FnOnce() -> T,
    ) -> T {
        if let Some(&class) = cache.get(&hash) {
            return class;
        }
        if cache.len() >= CLASS_CACHE {
            cache.clear();
        }
        let class = classify();
        cache.insert(hash, class);
        class
    }

    fn tool(&mut self, hash: u64, user_agent: &str) -> bool {
        let classifier = self.classifier;
        Classes::cached(self.agents, hash, || classifier.is_tool(user_agent))
    }

    fn endpoint(&mut self, hash: u64, endpoint: &str) -> EndpointClass {
        let classifier = self.classifier;
        Classes::cached(self.endpoints, hash, || EndpointClass {
            sensitive: classifier.is_sensitive(endpoint),
            route: route_hash(endpoint),
            asset: is_asset(endpoint),
        })
    }
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
                e.endpoint = o.endpoint.into();
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
                    ClientKind::Network => o.client.into(),
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
