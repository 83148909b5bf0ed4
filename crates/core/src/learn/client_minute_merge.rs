//! One client's minute as replicas exchange it (`ClientSummary`, plain data with serde) and two
//! of them merged into one (`ClientMinute::merge`): a client spread over a fleet's replicas is
//! judged on its whole minute. Counts add, the gaps between requests are those of the
//! interleaved sequence, histograms merge by hash within the same exact bounds a single replica
//! keeps.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::{ClientKind, ClientMinute, Distinct, EXACT_DISTINCT, NO_ROUTE, TrackedRoute, Welford};
use crate::time::NANOS_PER_SEC;

/// A client-minute on the wire: every field of [`ClientMinute`], in plain vectors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientSummary {
    client: String,
    user: bool,
    requests: u32,
    allowed: u32,
    denied: u32,
    denied_anomaly: u32,
    sensitive: u32,
    tool_agent: u32,
    last_seen: u64,
    gaps: (u64, f64, f64),
    prm: bool,
    last_agent_tool: bool,
    decided: bool,
    endpoints: Vec<(u64, u32, bool, u8, bool)>,
    asset_requests: u32,
    routes: Vec<(u64, u32, bool)>,
    /// Per route, in `routes`' order, its requests in a burst. Apart, and defaulted, so a
    /// replica of the version before (which sends none) still merges: its routes count none.
    #[serde(default)]
    route_bursts: Vec<u16>,
    outcomes: u32,
    errors: u32,
    auth_failures: u32,
    asset_errors: u32,
    endpoints_beyond: u32,
    agents: (Vec<(u64, bool)>, u32),
    partners: (Vec<(u64, bool)>, u32),
}

impl Distinct {
    fn merge(&mut self, other: &Distinct) {
        self.beyond += other.beyond;
        for &(hash, class) in &other.seen {
            if self.seen.iter().any(|e| e.0 == hash) {
                continue;
            }
            if self.seen.len() < EXACT_DISTINCT {
                self.seen.push((hash, class));
            } else {
                self.beyond += 1;
            }
        }
    }

    fn to_wire(&self) -> (Vec<(u64, bool)>, u32) {
        (self.seen.to_vec(), self.beyond)
    }

    fn from_wire((seen, beyond): (Vec<(u64, bool)>, u32)) -> Distinct {
        let mut d = Distinct {
            seen: SmallVec::new(),
            beyond,
        };
        for e in seen {
            if d.seen.len() < EXACT_DISTINCT && !d.seen.iter().any(|s| s.0 == e.0) {
                d.seen.push(e);
            } else {
                d.beyond += 1;
            }
        }
        d
    }
}

impl ClientMinute {
    /// Its wire form.
    pub fn summary(&self) -> ClientSummary {
        ClientSummary {
            client: self.client.to_string(),
            user: self.kind == ClientKind::User,
            requests: self.requests,
            allowed: self.allowed,
            denied: self.denied,
            denied_anomaly: self.denied_anomaly,
            sensitive: self.sensitive,
            tool_agent: self.tool_agent,
            last_seen: self.last_seen,
            gaps: (
                self.inter_arrival.n,
                self.inter_arrival.mean,
                self.inter_arrival.m2,
            ),
            prm: self.prm,
            last_agent_tool: self.last_agent_tool,
            decided: self.decided,
            endpoints: self.endpoints.to_vec(),
            asset_requests: self.asset_requests,
            routes: self.route_counts().collect(),
            route_bursts: self.routes.iter().map(|r| r.bursts).collect(),
            outcomes: self.outcomes,
            errors: self.errors,
            auth_failures: self.auth_failures,
            asset_errors: self.asset_errors,
            endpoints_beyond: self.endpoints_beyond,
            agents: self.agents.to_wire(),
            partners: self.partners.to_wire(),
        }
    }

    /// A minute another replica saw, from its wire form (marked [`ClientMinute::remote`]).
    /// Whatever it holds is taken within this replica's bounds: a summary past them (a
    /// damaged or hostile one) cannot grow a client past what observation keeps.
    pub fn from_summary(s: ClientSummary) -> ClientMinute {
        let mut c = ClientMinute {
            client: s.client.into_boxed_str(),
            kind: if s.user {
                ClientKind::User
            } else {
                ClientKind::Network
            },
            remote: true,
            ..ClientMinute::default()
        };
        let other = ClientMinute {
            requests: s.requests,
            allowed: s.allowed,
            denied: s.denied,
            denied_anomaly: s.denied_anomaly,
            sensitive: s.sensitive,
            tool_agent: s.tool_agent,
            last_seen: s.last_seen,
            inter_arrival: Welford {
                n: s.gaps.0,
                mean: if s.gaps.1.is_finite() { s.gaps.1 } else { 0.0 },
                m2: if s.gaps.2.is_finite() {
                    s.gaps.2.max(0.0)
                } else {
                    0.0
                },
            },
            prm: s.prm,
            last_agent_tool: s.last_agent_tool,
            decided: s.decided,
            endpoints: s.endpoints.into_iter().take(EXACT_DISTINCT).collect(),
            asset_requests: s.asset_requests,
            routes: SmallVec::new(),
            outcomes: s.outcomes,
            errors: s.errors,
            auth_failures: s.auth_failures,
            asset_errors: s.asset_errors,
            endpoints_beyond: s.endpoints_beyond,
            agents: Distinct::from_wire(s.agents),
            partners: Distinct::from_wire(s.partners),
            ..c.clone()
        };
        // In the summary's order: its endpoints name their routes by index.
        let mut other = other;
        let bursts = s.route_bursts.into_iter().chain(std::iter::repeat(0));
        for ((hash, n, asset), bursts) in s.routes.into_iter().zip(bursts).take(EXACT_DISTINCT) {
            let route = TrackedRoute {
                hash,
                requests: n,
                // Never more bursts than requests, whatever a summary says.
                bursts: bursts.min(n.min(u16::MAX as u32) as u16),
                last_tenths: 0,
            };
            other.push_route(route, asset);
        }
        c.merge(&other);
        c
    }

    /// Seen by another replica only: judged here, never learned from (this replica's baselines
    /// learn from the clients it saw itself, at their whole fleet's values).
    pub fn remote(&self) -> bool {
        self.remote
    }

    /// The gaps between the requests of both minutes taken as one sequence: a load balancer
    /// interleaves them, so each replica saw gaps a few times longer than the client's. The
    /// span runs from the earlier first request to the later last one; the mean gap is that
    /// span over the gaps; the spread (the coefficient of variation, which interleaving keeps)
    /// is both sides', weighted by their gaps.
    fn merge_gaps(&mut self, other: &ClientMinute) {
        if other.requests == 0 {
            return;
        }
        if self.requests == 0 {
            self.inter_arrival = other.inter_arrival;
            self.last_seen = other.last_seen;
            return;
        }
        let first = |c: &ClientMinute| {
            c.last_seen
                .saturating_sub((c.span_seconds() * NANOS_PER_SEC as f64) as u64)
        };
        let first_seen = first(self).min(first(other));
        let last_seen = self.last_seen.max(other.last_seen);
        let (a, b) = (self.inter_arrival, other.inter_arrival);
        let cv = |w: &Welford| {
            if w.n < 2 || w.mean <= 0.0 {
                0.0
            } else {
                w.variance().sqrt() / w.mean
            }
        };
        let gaps = (self.requests as u64 + other.requests as u64).saturating_sub(1);
        let weight = (a.n + b.n).max(1) as f64;
        let spread = (cv(&a) * a.n as f64 + cv(&b) * b.n as f64) / weight;
        let mean = last_seen.saturating_sub(first_seen) as f64 / NANOS_PER_SEC as f64 / gaps as f64;
        let sd = spread * mean;
        self.inter_arrival = Welford {
            n: gaps,
            mean,
            m2: sd * sd * gaps as f64,
        };
        self.last_seen = last_seen;
    }

    /// Adds `other`, the same client's minute on another replica.
    pub fn merge(&mut self, other: &ClientMinute) {
        self.merge_gaps(other);
        self.requests = self.requests.saturating_add(other.requests);
        self.allowed = self.allowed.saturating_add(other.allowed);
        self.denied = self.denied.saturating_add(other.denied);
        self.denied_anomaly = self.denied_anomaly.saturating_add(other.denied_anomaly);
        self.sensitive = self.sensitive.saturating_add(other.sensitive);
        self.tool_agent = self.tool_agent.saturating_add(other.tool_agent);
        self.prm |= other.prm;
        self.last_agent_tool |= other.last_agent_tool;
        self.decided |= other.decided;
        self.asset_requests = self.asset_requests.saturating_add(other.asset_requests);
        self.outcomes = self.outcomes.saturating_add(other.outcomes);
        self.errors = self.errors.saturating_add(other.errors);
        self.auth_failures = self.auth_failures.saturating_add(other.auth_failures);
        self.asset_errors = self.asset_errors.saturating_add(other.asset_errors);
        self.agents.merge(&other.agents);
        self.partners.merge(&other.partners);
        // Routes first: the endpoints point into them by index.
        let mut route_of = [NO_ROUTE; EXACT_DISTINCT];
        for (i, (hash, n, asset)) in other.route_counts().enumerate().take(EXACT_DISTINCT) {
            let bursts = other.routes[i].bursts;
            if let Some(j) = self.routes.iter().position(|r| r.hash == hash) {
                let r = &mut self.routes[j];
                r.requests = r.requests.saturating_add(n);
                // Each replica's bursts are of its own sequence: an approximation of the
                // interleaved one's (which no replica saw), never more than the requests.
                r.bursts = r.bursts.saturating_add(bursts);
                route_of[i] = j as u8;
            } else if self.routes.len() < EXACT_DISTINCT {
                let route = TrackedRoute {
                    hash,
                    requests: n,
                    bursts,
                    last_tenths: other.routes[i].last_tenths,
                };
                route_of[i] = self.push_route(route, asset);
            }
        }
        self.endpoints_beyond = self.endpoints_beyond.saturating_add(other.endpoints_beyond);
        for &(hash, n, sensitive, route, asset) in &other.endpoints {
            if let Some(e) = self.endpoints.iter_mut().find(|e| e.0 == hash) {
                e.1 = e.1.saturating_add(n);
            } else if self.endpoints.len() < EXACT_DISTINCT {
                let route = route_of.get(route as usize).copied().unwrap_or(NO_ROUTE);
                self.endpoints.push((hash, n, sensitive, route, asset));
            } else {
                self.endpoints_beyond = self.endpoints_beyond.saturating_add(1);
            }
        }
    }
}
