//! Rate baselines learned from the site's own traffic: for each measure — requests per endpoint
//! and tier, requests to the whole site, failed page requests, authentication failures — the
//! distribution of per-client values per minute, as an exponentially decayed log-scale histogram.
//! A client is *beyond* a baseline when its value exceeds `factor ×` the measure's p99 (and an
//! absolute minimum), however many clients do the same: values beyond the threshold are never
//! learned, so a botnet of any size cannot teach the baseline that it is normal (the masking an
//! isolation forest suffers from).
//!
//! Learned only from clients in good standing: never from a client under an action, nor from one
//! whose page requests mostly fail. On a small site being scanned nearly every client that fails
//! is a scanner; learning the failure measures from them taught the site that scanning is normal
//! (a real log's threshold rose to 431 errors a minute). And one prior no site can talk away: a
//! client failing at least [`FAILURE_PRIOR`] page requests a minute, most of them, is beyond the
//! failure baselines wherever the typical client rarely fails ([`Baselines::site_rarely_fails`]).
//!
//! Failures count pages, not static assets: a page's missing icon fails for every visitor of
//! that page (real phones ask for four `apple-touch-icon` variants most sites lack).
//!
//! Values are per identity: a network key behind which several people are seen (distinct user
//! agents or users, as at a NAT gateway) has its counts divided by that number, so a shared
//! address is compared with one person, not with the crowd behind it.
//!
//! Pure and deterministic: time comes in as the minute, nothing is random. The same baselines
//! print suggested static limits per endpoint (`suggestions`).

use rustc_hash::FxHashMap;

use super::observe::{ClientKind, ClientMinute};
use crate::rules::Tier;

/// Log-histogram bins: quarter octaves from 1 to 2^24.
const BINS: usize = 97;
const BINS_PER_OCTAVE: f64 = 4.0;

fn bin_of(value: f64) -> usize {
    if value <= 1.0 {
        0
    } else {
        ((value.log2() * BINS_PER_OCTAVE).ceil() as usize).min(BINS - 1)
    }
}

/// The upper edge of a bin: a quantile read from the histogram is rounded up to it.
fn edge(bin: usize) -> f64 {
    (bin as f64 / BINS_PER_OCTAVE).exp2()
}

/// Values above this multiple of a measure's p99 are not learned.
const LEARN_BOUND: f64 = 2.0;
/// A measure's minute with more than this share of its values above the p99 (and at least
/// `CROWD_MIN` values) learns nothing above the p99 (see `Baselines::learn`).
const CROWD_SHARE: f64 = 0.05;
const CROWD_MIN: u32 = 20;

/// Failed page requests a minute beyond which a client whose page requests mostly fail is never
/// normal, on a site whose typical client rarely fails — whatever the learned p99 says. A person
/// who mistypes, follows dead links or retries a login fails a few times a minute, not twenty.
pub const FAILURE_PRIOR: f64 = 20.0;
/// A site "rarely fails" while fewer than this share of its clients' minutes (clients in good
/// standing or not, but under no action) have most of their page requests failing: the median
/// client does not fail. Half, not less: where scanners are a third of the clients, the
/// typical client still does not fail, and the prior must hold there most of all.
const RARELY_FAILS_SHARE: f64 = 0.5;
/// Client-minutes with outcomes seen before the site's failure share is trusted.
const FAILURE_SHARE_MIN: f64 = 20.0;
/// Failed page requests from which a mostly failing client is no longer in good standing (a
/// visitor whose one request was a dead link still is).
const GOOD_STANDING_FAILURES: u32 = 2;

/// A client-minute says how a route is fetched once it asked for it this many times, with
/// something else (see `SubResources`).
const SUB_RESOURCE_MIN_REQUESTS: u32 = 3;
/// ...and fetched it *in bursts* when at least this share of those requests came within
/// [`BURST_GAP`](super::client_minute::BURST_GAP) of its previous request.
const SUB_RESOURCE_BURST_SHARE: f64 = 0.5;
/// A route is a page's sub-resource when at least this share of the client-minutes that say
/// fetched it in bursts: the median client. (On a real shop its image routes were 0.64–1.00 and
/// their family 0.62 — a product page's few images are each of a different size, so of a
/// different route, and none repeats —; its product pages 0.08, and a generated site's pages
/// at most 0.12.)
const SUB_RESOURCE_SHARE: f64 = 0.5;

/// What a baseline measures per client-minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    /// Requests to one route (an endpoint with its ids templated, by hash) in one tier; `asset`:
    /// a static file (`.js`, `.png`, ...).
    Endpoint {
        endpoint: u64,
        prm: bool,
        asset: bool,
    },
    /// Requests to the whole site.
    Site,
    /// Responses with status ≥ 400 to pages (not static assets).
    Errors,
    /// 401 and 403 responses.
    AuthFailures,
}

impl Measure {
    pub fn name(self) -> &'static str {
        match self {
            Measure::Endpoint { .. } => "requests to one route",
            Measure::Site => "requests",
            Measure::Errors => "failed page requests",
            Measure::AuthFailures => "authentication failures",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BaselineConfig {
    /// A client is beyond a measure at `factor ×` its p99.
    pub factor: f64,
    /// ...and at least this many per minute (requests; errors and failures use a fifth of it).
    /// 20, not the 30 it was: a person reading pages does not fetch one every three seconds, and
    /// at 30 scrapers walking small sites' catalogues at 23–35 pages a minute stayed under it on
    /// held-out worlds; the design worlds and the real logs acted on no one more at 20.
    pub min_per_minute: f64,
    /// Weight of the past: each minute the histograms are multiplied by this (≈ 60-minute memory).
    pub decay: f64,
    /// Client-minutes a site-wide measure needs (decayed count) before it judges anyone.
    pub min_samples: f64,
    /// ...and a route's measure, and the failures measures. Lower: with an hour's memory a route that a person a minute
    /// visits never holds 200, and a small site's routes would never be judged on their own (a
    /// flood of its search page went unseen under the site-wide tail its integrations set).
    /// From 20 values the "p99" is the largest value seen and may underestimate the tail; the
    /// threshold (`factor ×` it, at least `min_per_minute`) leaves the room. A route with fewer
    /// is judged against the whole site's. The failures measures too: mostly zeros, they held
    /// 200 values minutes after the site-wide measure on a small site, and a credential stuffer
    /// failing 36 times a minute went unjudged for four minutes (their floor, a fifth of
    /// `min_per_minute`, leaves the room).
    pub min_route_samples: f64,
    /// Endpoint × tier measures kept at most (the least used are dropped).
    pub max_endpoints: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            factor: 4.0,
            min_per_minute: 20.0,
            decay: 0.983,
            min_samples: 200.0,
            min_route_samples: 20.0,
            max_endpoints: 1_000,
        }
    }
}

#[derive(Clone, Debug)]
struct Histogram {
    bins: [f64; BINS],
    total: f64,
    last_minute: i64,
    /// The first minute this measure had enough history to judge (see `Baselines::judging_since`).
    ready_since: Option<i64>,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            bins: [0.0; BINS],
            total: 0.0,
            last_minute: i64::MIN,
            ready_since: None,
        }
    }

    fn quantile(&self, q: f64) -> f64 {
        let target = self.total * q;
        let mut seen = 0.0;
        for (i, n) in self.bins.iter().enumerate() {
            seen += n;
            if seen >= target {
                return edge(i);
            }
        }
        edge(BINS - 1)
    }

    fn decay_to(&mut self, minute: i64, decay: f64) {
        if self.last_minute == i64::MIN {
            self.last_minute = minute;
            return;
        }
        let steps = (minute - self.last_minute).clamp(0, 10_000) as i32;
        if steps > 0 {
            let f = decay.powi(steps);
            self.bins.iter_mut().for_each(|b| *b *= f);
            self.total *= f;
            self.last_minute = minute;
        }
    }
}

/// One client beyond a baseline, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub measure: Measure,
    /// The client's value (per identity), the measure's p99 and the threshold it crossed.
    pub value: f64,
    pub p99: f64,
    pub threshold: f64,
    /// Minutes the value was counted over: 1, or more for the slow failure window.
    pub minutes: u32,
    /// The threshold is the site-independent failure prior, not the learned one.
    pub prior: bool,
    /// Requests the evidence spans when it reaches over earlier minutes (the window), else 0.
    pub requests: u32,
}

impl Finding {
    /// How far beyond: value / threshold (≥ 1).
    pub fn excess(&self) -> f64 {
        self.value / self.threshold.max(1.0)
    }

    /// What the finding saw, in words; `route` names the route of an endpoint measure.
    pub fn why(&self, route: Option<&str>) -> String {
        let what = match (self.measure, route) {
            (Measure::Endpoint { prm, .. }, Some(route)) => {
                format!("requests to {route} ({})", if prm { "PRM" } else { "STD" })
            }
            (measure, _) => measure.name().to_string(),
        };
        let failing = matches!(self.measure, Measure::Errors | Measure::AuthFailures);
        let most = if failing {
            ", most of its page requests failing"
        } else {
            ""
        };
        let over = if self.minutes > 1 {
            format!(" in the last {} minutes", self.minutes)
        } else {
            "/min".to_string()
        };
        let bar = if self.prior {
            format!(
                "people here rarely fail, and {:.0} a minute is never normal (the p99 of clients in good standing is {:.0})",
                self.threshold, self.p99
            )
        } else if self.minutes > 1 {
            format!(
                "threshold {:.0} over the window (twice a minute's, at least 10; the p99 of clients in good standing is {:.0})",
                self.threshold, self.p99
            )
        } else if failing {
            format!(
                "the p99 of clients in good standing is {:.0} (threshold {:.0})",
                self.p99, self.threshold
            )
        } else {
            format!(
                "the site's p99 is {:.0} (threshold {:.0})",
                self.p99, self.threshold
            )
        };
        format!("{:.0} {what}{over}{most}; {bar}", self.value)
    }
}

/// A measure's learned distribution, for status and suggestions.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineView {
    pub measure: Measure,
    pub samples: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

/// How a newcomer's counts are extrapolated to a minute, volume and failures apart: a page
/// with its images in a second is a burst, not a rate, while fifteen failed pages in two
/// seconds are evidence however short the time (see the learner's `stretch_for`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stretch {
    pub volume: f64,
    pub failures: f64,
}

impl Stretch {
    /// Counts as they are.
    pub const NONE: Stretch = Stretch {
        volume: 1.0,
        failures: 1.0,
    };

    /// The same factor for both.
    pub const fn uniform(factor: f64) -> Stretch {
        Stretch {
            volume: factor,
            failures: factor,
        }
    }
}

/// Which of a client's requests a judgement counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requests {
    All,
    /// All but static assets.
    Pages,
}

#[derive(Clone, Debug, Default)]
pub struct Baselines {
    config: BaselineConfig,
    measures: FxHashMap<Measure, Histogram>,
    /// The minute the site-wide measure first had enough history to judge.
    ready_since: Option<i64>,
    /// Decayed client-minutes with outcomes under no action, and those whose page requests
    /// mostly failed: how often the site's typical client fails.
    with_outcomes: f64,
    mostly_failing: f64,
    /// The most endpoint measures held at once, ever (the bound the learning keeps).
    most_endpoint_measures: usize,
    /// Per route hash: decayed (client-minutes that said how they fetch it, those that fetched
    /// it in bursts). See [`Baselines::is_sub_resource`].
    sub_resources: FxHashMap<u64, (f64, f64)>,
    /// Route hash → its family's hash (`note_family`).
    families: FxHashMap<u64, u64>,
}

/// People seen behind a client key: distinct user agents or users on a network key, at least 1.
pub fn identities(c: &ClientMinute) -> f64 {
    match c.kind {
        ClientKind::Network => c.distinct_agents().max(c.distinct_partners()).max(1) as f64,
        ClientKind::User => 1.0,
    }
}

impl Baselines {
    pub fn new(config: BaselineConfig) -> Baselines {
        Baselines {
            config,
            measures: FxHashMap::default(),
            ready_since: None,
            with_outcomes: 0.0,
            mostly_failing: 0.0,
            most_endpoint_measures: 0,
            sub_resources: FxHashMap::default(),
            families: FxHashMap::default(),
        }
    }

    /// The client's values per measure this minute (per identity). The site-wide value leaves
    /// out the requests to routes the site's people fetch as a page's sub-resources.
    pub fn values(&self, c: &ClientMinute) -> Vec<(Measure, f64)> {
        let people = identities(c);
        let prm = c.prm;
        let mut out: Vec<(Measure, f64)> = c
            .route_counts()
            .map(|(endpoint, n, asset)| {
                (
                    Measure::Endpoint {
                        endpoint,
                        prm,
                        asset,
                    },
                    n as f64 / people,
                )
            })
            .collect();
        let site = c.requests.saturating_sub(self.sub_resource_requests(c));
        out.push((Measure::Site, site as f64 / people));
        if c.outcomes > 0 {
            out.push((Measure::Errors, c.page_errors() as f64 / people));
            out.push((Measure::AuthFailures, c.auth_failures as f64 / people));
        }
        out
    }

    /// Whether the site's own people fetch `route` as part of a page — most of their requests
    /// to it within two seconds of the one before, along with other routes (an image service
    /// with no file extension, `/image/{id}/brand`; a page's fragments) — rather than one at a
    /// time as they read. Learned from clients in good standing, by the typical one: a real
    /// browser loading a category page fetches forty product images in two seconds, and counted
    /// as pages they made it four times the site's tail. Such a route is judged on its own
    /// baseline, not counted in the site-wide total. A route too rarely visited to say borrows
    /// its family's word (`route_family_hash`: a small shop's thirty image sizes are one
    /// family). Abusers who are most of a route's clients could make it count as a
    /// sub-resource; its own baseline still judges them.
    pub fn is_sub_resource(&self, route: u64) -> bool {
        let verdict = |key: &u64| {
            self.sub_resources
                .get(key)
                .filter(|v| v.0 >= self.config.min_route_samples)
                .map(|&(said, bursty)| bursty >= SUB_RESOURCE_SHARE * said)
        };
        verdict(&route)
            .or_else(|| self.families.get(&route).and_then(verdict))
            .unwrap_or(false)
    }

    /// Names the family of a route (see `is_sub_resource`); bounded like the endpoint measures.
    pub fn note_family(&mut self, route: u64, family: u64) {
        if self.families.len() >= 10 * self.config.max_endpoints {
            self.families.clear();
        }
        self.families.insert(route, family);
    }

    /// The client's requests to routes that are a page's sub-resources (tracked routes only).
    fn sub_resource_requests(&self, c: &ClientMinute) -> u32 {
        if self.sub_resources.is_empty() {
            return 0;
        }
        c.route_bursts()
            .filter(|&(route, ..)| self.is_sub_resource(route))
            .map(|(_, n, _)| n)
            .sum()
    }

    /// Counts how the minute's clients in good standing fetched each route and each family
    /// (see `is_sub_resource`), within twice the endpoint measures' bound.
    fn learn_sub_resources(&mut self, good: &[&ClientMinute]) {
        let decay = self.config.decay;
        for v in self.sub_resources.values_mut() {
            v.0 *= decay;
            v.1 *= decay;
        }
        let room = 4 * self.config.max_endpoints;
        let mut said: Vec<(u64, u32, u32)> = Vec::new();
        for c in good {
            // A client beyond a route's threshold says nothing of how people fetch it: a flood
            // of one page, request upon request, is not that page's images.
            let people = identities(c);
            let beyond = c.route_counts().any(|(endpoint, n, asset)| {
                let measure = Measure::Endpoint {
                    endpoint,
                    prm: c.prm,
                    asset,
                };
                self.learned_threshold(measure)
                    .is_some_and(|(_, threshold)| n as f64 / people > threshold)
            });
            if beyond {
                continue;
            }
            said.clear();
            for (route, n, bursts) in c.route_bursts() {
                said.push((route, n, bursts));
                if let Some(&family) = self.families.get(&route) {
                    match said.iter_mut().find(|s| s.0 == family) {
                        Some(s) => {
                            s.1 += n;
                            s.2 += bursts;
                        }
                        None => said.push((family, n, bursts)),
                    }
                }
            }
            for &(key, n, bursts) in &said {
                // A client that fetched only this says nothing of it being part of a page.
                if n < SUB_RESOURCE_MIN_REQUESTS || n >= c.requests {
                    continue;
                }
                if self.sub_resources.len() >= room && !self.sub_resources.contains_key(&key) {
                    continue;
                }
                let v = self.sub_resources.entry(key).or_insert((0.0, 0.0));
                v.0 += 1.0;
                v.1 += (bursts as f64 >= SUB_RESOURCE_BURST_SHARE * n as f64) as u8 as f64;
            }
        }
        if self.sub_resources.len() > 2 * self.config.max_endpoints {
            let mut said: Vec<(f64, u64)> =
                self.sub_resources.iter().map(|(r, v)| (v.0, *r)).collect();
            said.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let drop = said.len() - 2 * self.config.max_endpoints;
            for (_, key) in said.into_iter().take(drop) {
                self.sub_resources.remove(&key);
            }
        }
    }

    pub fn config(&self) -> &BaselineConfig {
        &self.config
    }

    fn min_for(&self, measure: Measure) -> f64 {
        match measure {
            Measure::Endpoint { .. } | Measure::Site => self.config.min_per_minute,
            Measure::Errors | Measure::AuthFailures => self.config.min_per_minute / 5.0,
        }
    }

    /// Counts how often the minute's clients (under no action) fail, before they are judged: a
    /// median-like statistic the minute's own scanners cannot move unless they are most of the
    /// clients, so the failure prior holds from a site's first busy minute. Once a minute.
    pub fn note_failing<'a>(&mut self, clients: impl Iterator<Item = &'a ClientMinute>) {
        self.with_outcomes *= self.config.decay;
        self.mostly_failing *= self.config.decay;
        for c in clients.filter(|c| c.kind == ClientKind::Network && c.outcomes > 0) {
            self.with_outcomes += 1.0;
            self.mostly_failing += c.mostly_failing_pages(1) as u8 as f64;
        }
    }

    /// Whether the site's typical client rarely fails (`None`: too few outcomes seen to say):
    /// fewer than half of the minutes of clients under no action had most of their page
    /// requests failing. Counted over every such client, scanners included: the prior it
    /// switches on needs only the typical client, and scanners are rarely most of the clients.
    pub fn site_rarely_fails(&self) -> Option<bool> {
        (self.with_outcomes >= FAILURE_SHARE_MIN)
            .then_some(self.mostly_failing < RARELY_FAILS_SHARE * self.with_outcomes)
    }

    /// The threshold of a measure, once it has seen enough client-minutes, and whether it is
    /// the failure prior's (`FAILURE_PRIOR`, lower than the learned one, or the only one yet).
    pub fn threshold_of(&self, measure: Measure) -> Option<(f64, f64, bool)> {
        let learned = self.learned_threshold(measure);
        let failures = matches!(measure, Measure::Errors | Measure::AuthFailures);
        if failures && self.site_rarely_fails() == Some(true) {
            return match learned {
                Some((p99, t)) if t <= FAILURE_PRIOR => Some((p99, t, false)),
                Some((p99, _)) => Some((p99, FAILURE_PRIOR, true)),
                None => Some((0.0, FAILURE_PRIOR, true)),
            };
        }
        learned.map(|(p99, t)| (p99, t, false))
    }

    /// The threshold learned from the site's traffic alone, once the measure has seen enough
    /// client-minutes: (p99, `factor ×` p99 but at least the measure's minimum).
    fn learned_threshold(&self, measure: Measure) -> Option<(f64, f64)> {
        let h = self.measures.get(&measure)?;
        let needed = match measure {
            Measure::Site => self.config.min_samples,
            _ => self.config.min_route_samples,
        };
        (h.total >= needed).then(|| {
            let p99 = h.quantile(0.99);
            (p99, (self.config.factor * p99).max(self.min_for(measure)))
        })
    }

    /// The threshold of a measure (its p99 and the value beyond which a client is beyond it).
    pub fn threshold(&self, measure: Measure) -> Option<(f64, f64)> {
        self.threshold_of(measure).map(|(p99, t, _)| (p99, t))
    }

    /// The measures on which `c` is beyond the site's baseline, most excessive first. An
    /// endpoint without enough history is judged against the whole site's.
    pub fn assess(&self, c: &ClientMinute) -> Vec<Finding> {
        self.assess_at(c, 1.0)
    }

    /// As [`Baselines::assess`], with every threshold scaled by `scale` (a lower bar for a
    /// client that stays above it minute after minute).
    pub fn assess_at(&self, c: &ClientMinute, scale: f64) -> Vec<Finding> {
        self.assess_with(c, scale, Stretch::NONE, Requests::All)
    }

    /// The findings of a client that arrived during the minute, its request counts extrapolated
    /// to a whole minute (`stretch`: about 60 s / the seconds it was there). It must also have made
    /// a third of the threshold in the time it had. Static assets do not count, on their
    /// routes nor in its site-wide total: a person's page arrives with its assets in a burst of a
    /// second or two, and a burst stretched to a minute is not a rate. (A flood of assets is
    /// judged on its first whole minute, like everyone.)
    pub fn assess_newcomer(&self, c: &ClientMinute, stretch: Stretch) -> Vec<Finding> {
        // Failures must also be at least the measure's minimum in number, unstretched: three
        // mistyped passwords in twenty seconds are not a rate of nine a minute.
        let raw: Vec<Finding> = self
            .assess_with(c, 1.0 / 3.0, Stretch::NONE, Requests::Pages)
            .into_iter()
            .filter(|f| match f.measure {
                Measure::Errors | Measure::AuthFailures => f.value >= self.min_for(f.measure),
                _ => true,
            })
            .collect();
        self.assess_with(c, 1.0, stretch, Requests::Pages)
            .into_iter()
            .filter(|f| raw.iter().any(|r| r.measure == f.measure))
            .collect()
    }

    fn assess_with(
        &self,
        c: &ClientMinute,
        scale: f64,
        stretch: Stretch,
        counted: Requests,
    ) -> Vec<Finding> {
        // Failures count only for a client whose page requests mostly fail: a busy integration
        // with one error in a hundred fails more often than a person, and is not an attacker.
        let page_outcomes = c.page_outcomes().max(1);
        let mostly_failing = |failures: u32| 2 * failures >= page_outcomes;
        let mut measured = self.values(c);
        if counted == Requests::Pages {
            let pages = c
                .requests
                .saturating_sub(c.asset_requests())
                .saturating_sub(self.sub_resource_requests(c)) as f64
                / identities(c);
            measured.retain(|(m, _)| match m {
                Measure::Endpoint {
                    asset, endpoint, ..
                } => !asset && !self.is_sub_resource(*endpoint),
                _ => true,
            });
            for (m, value) in measured.iter_mut() {
                if *m == Measure::Site {
                    *value = pages;
                }
            }
        }
        let mut found: Vec<Finding> = measured
            .into_iter()
            .filter(|(measure, _)| match measure {
                Measure::Errors => mostly_failing(c.page_errors()),
                Measure::AuthFailures => mostly_failing(c.auth_failures),
                _ => true,
            })
            .filter_map(|(measure, value)| {
                let (p99, threshold, prior) =
                    self.threshold_of(measure).or_else(|| match measure {
                        Measure::Endpoint { .. } => self.threshold_of(Measure::Site),
                        _ => None,
                    })?;
                let threshold = threshold * scale;
                let value = value
                    * match measure {
                        Measure::Errors | Measure::AuthFailures => stretch.failures,
                        _ => stretch.volume,
                    };
                (value > threshold).then_some(Finding {
                    measure,
                    value,
                    p99,
                    threshold,
                    minutes: 1,
                    prior,
                    requests: 0,
                })
            })
            .collect();
        found.sort_by(|a, b| b.excess().total_cmp(&a.excess()));
        found
    }

    /// Learns this minute's client-minutes that are under no action and in good standing (their
    /// page requests do not mostly fail): each value up to twice its measure's p99 (and below
    /// its threshold) (all values while a measure is still warming up, except those beyond
    /// eight times its median: a botnet present from the start does not become the baseline).
    pub fn learn<'a>(&mut self, minute: i64, clients: impl Iterator<Item = &'a ClientMinute>) {
        let decay = self.config.decay;
        for h in self.measures.values_mut() {
            h.decay_to(minute, decay);
        }
        let good: Vec<&ClientMinute> = clients
            .filter(|c| c.kind == ClientKind::Network)
            .filter(|c| !c.mostly_failing_pages(GOOD_STANDING_FAILURES))
            .collect();
        let mut add: Vec<(Measure, f64)> = Vec::new();
        // Per measure: its p99, this minute's values and how many of them are above the p99.
        let mut above: FxHashMap<Measure, (f64, u32, u32)> = FxHashMap::default();
        for c in &good {
            for (measure, value) in self.values(c) {
                let keep = match self.learned_threshold(measure) {
                    // Learned up to twice the p99 (or the threshold, if lower): attackers a little
                    // under the threshold do not creep the baseline up either.
                    Some((p99, threshold)) => {
                        let n = above.entry(measure).or_insert((p99, 0, 0));
                        n.1 += 1;
                        n.2 += (value > p99) as u32;
                        value <= threshold.min(LEARN_BOUND * p99)
                    }
                    None => self
                        .measures
                        .get(&measure)
                        .is_none_or(|h| h.total < 20.0 || value <= 8.0 * h.quantile(0.5).max(1.0)),
                };
                if keep {
                    add.push((measure, value));
                }
            }
        }
        // By definition about 1% of a minute's values are above the p99. When many more are, a
        // crowd moved in above the tail (many scrapers, each a little over a person's rate): its
        // values are not learned this minute, or they would ratchet the p99 — and the threshold
        // — up under themselves. A site whose people all grow busier still moves its median, and
        // the tail follows it.
        add.retain(|(m, value)| match above.get(m) {
            Some(&(p99, n, high)) if n >= CROWD_MIN && high as f64 > CROWD_SHARE * n as f64 => {
                *value <= p99
            }
            _ => true,
        });
        // New endpoint measures are taken up to twice the cap, then trimmed to it: a flood of
        // made-up endpoints (a new route each request) must not make a histogram each first.
        let room = 2 * self.config.max_endpoints;
        let mut endpoints = self
            .measures
            .keys()
            .filter(|m| matches!(m, Measure::Endpoint { .. }))
            .count();
        for (measure, value) in add {
            if matches!(measure, Measure::Endpoint { .. }) && !self.measures.contains_key(&measure)
            {
                if endpoints >= room {
                    continue;
                }
                endpoints += 1;
                self.most_endpoint_measures = self.most_endpoint_measures.max(endpoints);
            }
            let h = self.measures.entry(measure).or_insert_with(|| {
                let mut h = Histogram::new();
                h.last_minute = minute;
                h
            });
            h.bins[bin_of(value)] += 1.0;
            h.total += 1.0;
        }
        self.forget_rare_endpoints();
        self.learn_sub_resources(&good);
        let (site, route) = (self.config.min_samples, self.config.min_route_samples);
        for (measure, h) in self.measures.iter_mut() {
            let needed = if *measure == Measure::Site {
                site
            } else {
                route
            };
            if h.ready_since.is_none() && h.total >= needed {
                h.ready_since = Some(minute + 1);
            }
        }
        if self.ready_since.is_none() && self.learned_threshold(Measure::Site).is_some() {
            self.ready_since = Some(minute + 1);
        }
    }

    /// The first minute a client's value on `measure` was judged against some threshold: the
    /// measure's own, or for a route the whole site's it falls back to, whichever came first
    /// (`None`: neither has judged yet). A client here before that could not be told from the
    /// site's normal and is given time (`Steady::is_pending`); one that arrived after it was
    /// judged from its first minute, and is not.
    pub fn judging_since(&self, measure: Measure) -> Option<i64> {
        let own = self.measures.get(&measure).and_then(|h| h.ready_since);
        match measure {
            Measure::Endpoint { .. } => own.into_iter().chain(self.ready_since).min(),
            _ => own,
        }
    }

    /// The first minute the baselines judged in (`None`: still warming up).
    pub fn ready_since(&self) -> Option<i64> {
        self.ready_since
    }

    /// The lowest threshold of the volume measures (the site, endpoints) or, with `failures`,
    /// of the failure measures (`None`: none has one yet). A volume value never exceeds the
    /// client's requests, a failure value its errors (an auth failure is an error too), so a
    /// client below a `scale` of this on both cannot be beyond any baseline at that scale.
    pub fn least_threshold(&self, failures: bool) -> Option<f64> {
        self.measures
            .keys()
            .filter(|m| matches!(m, Measure::Errors | Measure::AuthFailures) == failures)
            .filter_map(|&m| self.threshold(m).map(|t| t.1))
            .min_by(f64::total_cmp)
    }

    fn forget_rare_endpoints(&mut self) {
        let endpoints = self
            .measures
            .keys()
            .filter(|m| matches!(m, Measure::Endpoint { .. }))
            .count();
        if endpoints <= self.config.max_endpoints {
            return;
        }
        let mut weights: Vec<(f64, Measure)> = self
            .measures
            .iter()
            .filter(|(m, _)| matches!(m, Measure::Endpoint { .. }))
            .map(|(m, h)| (h.total, *m))
            .collect();
        weights.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, m) in weights
            .into_iter()
            .take(endpoints - self.config.max_endpoints)
        {
            self.measures.remove(&m);
        }
    }

    /// Every measure with enough history, with its quantiles (most used first).
    pub fn views(&self) -> Vec<BaselineView> {
        let mut out: Vec<BaselineView> = self
            .measures
            .iter()
            .filter(|(_, h)| h.total >= self.config.min_samples)
            .map(|(m, h)| BaselineView {
                measure: *m,
                samples: h.total,
                p50: h.quantile(0.5),
                p99: h.quantile(0.99),
                p999: h.quantile(0.999),
            })
            .collect();
        out.sort_by(|a, b| {
            b.samples
                .total_cmp(&a.samples)
                .then(a.measure.cmp(&b.measure))
        });
        out
    }

    /// Per-client requests a minute for one endpoint and tier (`None`: the whole site), p99.
    pub fn p99(&self, measure: Measure) -> Option<f64> {
        self.threshold(measure).map(|(p99, _)| p99)
    }
}

/// A suggested static limit: per client and minute, for an endpoint hash and tier (or the site).
#[derive(Clone, Debug, PartialEq)]
pub struct Suggestion {
    pub endpoint: Option<u64>,
    pub tier: Option<Tier>,
    pub p99: f64,
    pub p999: f64,
    /// `factor × p99.9`, rounded up to a whole number: what almost no client ever needs.
    pub per_minute: u64,
}

/// Static limits the baselines suggest: a little above what almost every client uses.
pub fn suggestions(baselines: &Baselines) -> Vec<Suggestion> {
    let factor = baselines.config.factor.max(1.0) / 2.0;
    baselines
        .views()
        .into_iter()
        .filter_map(|v| {
            let (endpoint, tier) = match v.measure {
                Measure::Endpoint { endpoint, prm, .. } => (
                    Some(endpoint),
                    Some(if prm { Tier::Prm } else { Tier::Std }),
                ),
                Measure::Site => (None, None),
                _ => return None,
            };
            Some(Suggestion {
                endpoint,
                tier,
                p99: v.p99,
                p999: v.p999,
                per_minute: (v.p999 * factor).ceil().max(1.0) as u64,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "baselines_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "baselines_sub_resources_tests.rs"]
mod sub_resources_tests;
