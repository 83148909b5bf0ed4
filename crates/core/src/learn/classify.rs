//! What the learning loop counts as a sensitive endpoint or a tool-like user agent
//! (case-insensitive substrings, `Classifier`), and each observation shard's cache of those
//! classes by hash (`Classes`), so the substring search runs once per new agent or endpoint.
//! It decides nothing and keeps no per-client state.

use rustc_hash::FxHashMap;

use super::routes::{is_asset, route_hash};

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

/// Entries per shard in each class cache; past it the cache starts afresh (bounded memory
/// against a flood of made-up user agents).
pub(super) const CLASS_CACHE: usize = 4096;

/// The classifier with one shard's caches.
pub(super) struct Classes<'a> {
    pub classifier: &'a Classifier,
    pub agents: &'a mut FxHashMap<u64, bool>,
    pub endpoints: &'a mut FxHashMap<u64, EndpointClass>,
}

/// What is known of an endpoint, whoever calls it: sensitive, its route, a static asset.
#[derive(Clone, Copy, Debug)]
pub(super) struct EndpointClass {
    pub sensitive: bool,
    pub route: u64,
    pub asset: bool,
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

    pub fn tool(&mut self, hash: u64, user_agent: &str) -> bool {
        let classifier = self.classifier;
        Classes::cached(self.agents, hash, || classifier.is_tool(user_agent))
    }

    pub fn endpoint(&mut self, hash: u64, endpoint: &str) -> EndpointClass {
        let classifier = self.classifier;
        Classes::cached(self.endpoints, hash, || EndpointClass {
            sensitive: classifier.is_sensitive(endpoint),
            route: route_hash(endpoint),
            asset: is_asset(endpoint),
        })
    }
}
