//! One client's minute: the counters, histograms and inter-arrival statistics an observation is
//! folded into (`ClientMinute::record`), and what the features read back. It is not the table of
//! clients (`observe::Aggregator`) nor the features themselves (`features`).

use smallvec::SmallVec;

#[path = "client_minute_merge.rs"]
mod merge;
pub use merge::ClientSummary;

use super::classify::Classes;
use super::observe::{Event, Observation};
use crate::rules::Tier;
use crate::time::{NANOS_PER_SEC, Nanos};

/// Distinct endpoints (and user agents, users) remembered exactly per client-minute; past this
/// every new one is still counted as distinct, so the count stays right and only the histogram's
/// tail is approximate.
const EXACT_DISTINCT: usize = 32;
/// An endpoint whose route is not tracked (past `EXACT_DISTINCT` routes).
const NO_ROUTE: u8 = u8::MAX;
/// A request to a route sooner than this after the client's previous request to the same route
/// is part of a burst: a browser fetching a page's images, not a person choosing the next page
/// of a kind (seconds of reading lie between those). Two seconds: a real page's sub-resources
/// arrive within one or two, and access logs stamp whole seconds (the next second is a gap of
/// 1). In tenths of a second, the resolution a route's last request is kept at.
pub const BURST_GAP_TENTHS: u16 = 20;
/// Requests up to this far out of order (tenths of a second) count as a zero gap, as replays
/// accept a few seconds of disorder.
const DISORDER_TENTHS: u16 = 50;

/// What a client key names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// An IP address or session id (the trace's `client`, Envoy's `remote_address`).
    #[default]
    Network,
    /// An authenticated user id, across every address it came from.
    User,
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

/// One tracked endpoint of a client-minute: (endpoint hash, requests, sensitive, index of its
/// route in `routes` or `NO_ROUTE`, a static asset).
type TrackedEndpoint = (u64, u32, bool, u8, bool);
/// One tracked route of a client-minute. 16 bytes: whether it is a static asset is a bit of
/// `ClientMinute::asset_routes`.
#[derive(Clone, Copy, Debug, Default)]
struct TrackedRoute {
    hash: u64,
    requests: u32,
    /// Requests in a burst (see [`BURST_GAP_TENTHS`]), saturating.
    bursts: u16,
    /// When its latest request came, in tenths of a second (wrapping: only gaps are read).
    last_tenths: u16,
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
    /// (endpoint hash, requests, sensitive, index of its route in `routes` or `NO_ROUTE`, a
    /// static asset) for the first `EXACT_DISTINCT` endpoints.
    endpoints: SmallVec<[TrackedEndpoint; 4]>,
    /// Requests to static assets (every one, also past the tracked endpoints and routes).
    asset_requests: u32,
    /// Endpoints with their ids templated (`/product/{id}`), so a scraper walking ten thousand
    /// product pages is ten thousand requests to one route.
    routes: SmallVec<[TrackedRoute; 4]>,
    /// Bit `i`: route `i` is a static asset.
    asset_routes: u32,

    // Touched when a client first appears, by outcomes, or with a user agent or user id.
    pub client: Box<str>,
    pub outcomes: u32,
    /// Outcomes with status ≥ 400.
    pub errors: u32,
    /// Outcomes 401 or 403.
    pub auth_failures: u32,
    /// Outcomes with status ≥ 400 for a static asset (`.png`, `.js`, ...): a page's missing
    /// icon or stylesheet fails for every visitor of that page and says nothing of the client
    /// (real phones ask for four `apple-touch-icon` variants that most sites do not have).
    pub asset_errors: u32,
    endpoints_beyond: u32,
    agents: Distinct,
    /// The other kind of identity: users seen on a network key, addresses seen for a user key.
    partners: Distinct,
    /// Seen only by other replicas of the fleet (`merge`).
    remote: bool,
}

impl ClientMinute {
    /// Seconds from its first to its last request this minute (0 with one request).
    pub fn span_seconds(&self) -> f64 {
        self.inter_arrival.mean * self.inter_arrival.n as f64
    }

    /// Failed requests to pages (everything but static assets): what the failure signals count.
    pub fn page_errors(&self) -> u32 {
        self.errors.saturating_sub(self.asset_errors)
    }

    /// Outcomes of page requests, estimated from the share of its requests that were pages
    /// (outcomes are not classified one by one: that would cost every outcome a lookup).
    pub fn page_outcomes(&self) -> u32 {
        let requests = self.requests.max(1) as u64;
        let pages = self.requests.saturating_sub(self.asset_requests) as u64;
        ((self.outcomes as u64 * pages).div_ceil(requests) as u32).max(self.page_errors())
    }

    /// Whether most of its page requests failed (and at least `at_least` of them did).
    pub fn mostly_failing_pages(&self, at_least: u32) -> bool {
        let failed = self.page_errors();
        failed >= at_least.max(1) && 2 * failed >= self.page_outcomes()
    }

    /// Requests to static assets this minute.
    pub fn asset_requests(&self) -> u32 {
        self.asset_requests
    }

    pub fn distinct_endpoints(&self) -> u32 {
        self.endpoints.len() as u32 + self.endpoints_beyond
    }

    /// (route hash, requests, a static asset) of the routes tracked exactly (the first
    /// `EXACT_DISTINCT`); the hash is [`route_hash`] of the endpoint.
    pub fn route_counts(&self) -> impl Iterator<Item = (u64, u32, bool)> + '_ {
        self.routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.hash, r.requests, self.asset_routes & (1 << i) != 0))
    }

    /// (route hash, requests, requests in a burst — see [`BURST_GAP_TENTHS`]) of the tracked
    /// routes that are not static assets: how the client fetched each.
    pub fn route_bursts(&self) -> impl Iterator<Item = (u64, u32, u32)> + '_ {
        self.routes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.asset_routes & (1 << i) == 0)
            .map(|(_, r)| (r.hash, r.requests, r.bursts as u32))
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
        for &(_, c, ..) in &self.endpoints {
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
        if let Some(i) = self.routes.iter().position(|r| r.hash == hash) {
            return i as u8;
        }
        if self.routes.len() < EXACT_DISTINCT {
            return self.push_route(
                TrackedRoute {
                    hash,
                    ..TrackedRoute::default()
                },
                asset,
            );
        }
        NO_ROUTE
    }

    /// Appends a tracked route with its asset bit (the caller keeps within `EXACT_DISTINCT`);
    /// returns its index.
    fn push_route(&mut self, route: TrackedRoute, asset: bool) -> u8 {
        self.asset_routes |= (asset as u32) << self.routes.len();
        self.routes.push(route);
        (self.routes.len() - 1) as u8
    }

    /// Counts a request to tracked route `i` at `now`, and whether it came in a burst.
    fn count_route_request(&mut self, i: u8, now: Nanos) {
        let Some(r) = self.routes.get_mut(i as usize) else {
            return;
        };
        let tenths = (now / (NANOS_PER_SEC / 10)) as u16;
        if r.requests > 0 {
            let gap = tenths.wrapping_sub(r.last_tenths);
            if !(BURST_GAP_TENTHS..=u16::MAX - DISORDER_TENTHS).contains(&gap) {
                r.bursts = r.bursts.saturating_add(1);
            }
        }
        r.requests += 1;
        r.last_tenths = tenths;
    }

    /// Folds one observation in. Decisions count requests; outcomes count errors, and count as
    /// requests only for a client no decision was seen for this minute (a gateway that reports
    /// without asking), so a request decided and reported is counted once.
    pub(super) fn record(&mut self, o: &Observation<'_>, h: &Hashes, classes: &mut Classes<'_>) {
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
                    // Only failures are classified (a cached lookup per shard): the common
                    // outcome costs nothing more.
                    if classes.endpoint(h.endpoint, o.endpoint).asset {
                        self.asset_errors += 1;
                    }
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
        let (sensitive, asset, route) = match self.endpoints.iter_mut().find(|e| e.0 == h.endpoint)
        {
            // A known endpoint's route is known: no templating on the repeat visit.
            Some(e) => {
                e.1 += 1;
                (e.2, e.4, e.3)
            }
            None => {
                let class = classes.endpoint(h.endpoint, o.endpoint);
                let route = self.count_route(class.route, class.asset);
                if self.endpoints.len() < EXACT_DISTINCT {
                    self.endpoints
                        .push((h.endpoint, 1, class.sensitive, route, class.asset));
                } else {
                    self.endpoints_beyond += 1;
                }
                (class.sensitive, class.asset, route)
            }
        };
        self.count_route_request(route, o.now);
        self.asset_requests += asset as u32;
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

/// The hashes of one observation's strings, computed once for both client keys it is folded into.
pub(super) struct Hashes {
    pub client: u64,
    pub endpoint: u64,
    pub agent: u64,
    pub user: u64,
}
