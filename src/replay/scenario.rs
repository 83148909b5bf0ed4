//! Synthetic, labelled traffic for tests, demos and training (`sluice gen-trace`).
//!
//! A scenario is a population of benign clients — browsers of STD and PRM users, anonymous
//! visitors and a few legitimate API scripts — plus, depending on the scenario, a volumetric
//! DDoS from a botnet, credential stuffing on login, a scraper walking product pages, or a
//! legitimate flash crowd. Every request carries its ground-truth label. Generation is seeded:
//! the same scenario, seed and scale give the same file.
//!
//! This is a generator of test data, not a model of any particular site; the numbers below are
//! chosen to be plausible and are documented in `docs/trace-format.md`.

use std::io::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use sluice_core::rules::Tier;

pub const SCENARIOS: [&str; 9] = [
    "normal",
    "ddos",
    "credential-stuffing",
    "scraper",
    "account-scraper",
    "flash-crowd",
    "mix",
    "payment-spike",
    "worldcup-spike",
];

/// 2026-01-01T00:00:00Z.
pub const START_MS: i64 = 1_767_225_600_000;

pub(crate) const BROWSERS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
];
const TOOLS: [&str; 4] = [
    "python-requests/2.32.3",
    "curl/8.5.0",
    "PostmanRuntime/7.43.0",
    "Go-http-client/1.1",
];

/// One generated request.
#[derive(Clone, Debug)]
pub struct Request {
    pub ts_ms: i64,
    pub client: String,
    pub user: String,
    pub tier: Tier,
    pub endpoint: String,
    pub method: &'static str,
    pub user_agent: &'static str,
    pub status: u16,
    pub label: &'static str,
}

#[derive(Clone, Debug)]
pub struct Params {
    pub scenario: String,
    pub seed: u64,
    /// Multiplies population sizes (1.0: the documented sizes).
    pub scale: f64,
    /// Length in minutes; `None`: the scenario's own.
    pub minutes: Option<u32>,
    /// When the trace starts (epoch ms); `None`: [`START_MS`].
    pub start_ms: Option<i64>,
    /// Minutes every event (attack, crowd, sale) is moved later by; the trace grows as much.
    pub delay: u32,
}

/// What happens when, in minutes from the start.
struct Plan {
    minutes: u32,
    ddos: Option<(u32, u32)>,
    stuffing: Option<(u32, u32)>,
    scraper: Option<(u32, u32)>,
    account_scraper: Option<(u32, u32)>,
    flash: Option<(u32, u32)>,
    /// A sale: payment traffic ramps to twice its usual rate and back (start, peak, end).
    payment_spike: Option<(u32, u32, u32)>,
    /// Browsing population per 30 minutes of trace (1.0: the documented 900).
    population: f64,
    /// The World Cup 1998 semi-final's real ramp on a live-scores endpoint, from this minute
    /// (`replay::worldcup`).
    match_day: Option<u32>,
}

fn plan(scenario: &str, minutes: Option<u32>) -> Result<Plan, String> {
    let none = Plan {
        minutes: 30,
        ddos: None,
        stuffing: None,
        scraper: None,
        account_scraper: None,
        flash: None,
        payment_spike: None,
        population: 1.0,
        match_day: None,
    };
    let p = match scenario {
        "normal" => none,
        "ddos" => Plan {
            ddos: Some((15, 25)),
            ..none
        },
        "credential-stuffing" => Plan {
            stuffing: Some((15, 28)),
            ..none
        },
        "scraper" => Plan {
            scraper: Some((15, 28)),
            ..none
        },
        "payment-spike" => Plan {
            // Two hours, so the forecaster has its hour of history before the sale.
            minutes: 120,
            payment_spike: Some((70, 82, 100)),
            population: 4.0,
            ..none
        },
        "worldcup-spike" => Plan {
            minutes: super::worldcup::minutes(),
            match_day: Some(0),
            population: 4.0,
            ..none
        },
        "account-scraper" => Plan {
            account_scraper: Some((15, 28)),
            ..none
        },
        "flash-crowd" => Plan {
            flash: Some((15, 22)),
            ..none
        },
        "mix" => Plan {
            minutes: 60,
            flash: Some((14, 20)),
            ddos: Some((22, 32)),
            stuffing: Some((30, 45)),
            scraper: Some((40, 55)),
            // Not here: its proxies are attack-labelled network clients that only the account's
            // key can catch, which would count as misses in the network-identity figures.
            account_scraper: None,
            ..none
        },
        other => {
            return Err(format!(
                "unknown scenario {other:?}; expected one of {}",
                SCENARIOS.join(", ")
            ));
        }
    };
    Ok(Plan {
        minutes: minutes.unwrap_or(p.minutes),
        ..p
    })
}

impl Plan {
    fn delayed(self, d: u32) -> Plan {
        let two = |w: Option<(u32, u32)>| w.map(|(a, b)| (a + d, b + d));
        Plan {
            minutes: self.minutes + d,
            ddos: two(self.ddos),
            stuffing: two(self.stuffing),
            scraper: two(self.scraper),
            account_scraper: two(self.account_scraper),
            flash: two(self.flash),
            payment_spike: self.payment_spike.map(|(a, p, b)| (a + d, p + d, b + d)),
            population: self.population,
            match_day: self.match_day.map(|m| m + d),
        }
    }
}

pub(crate) struct Gen {
    pub(crate) rng: StdRng,
    out: Vec<Request>,
    end_ms: i64,
}

pub(crate) const MINUTE_MS: i64 = 60_000;

impl Gen {
    fn exp(&mut self, mean: f64) -> f64 {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        -mean * u.ln()
    }

    fn product(&mut self) -> String {
        // Skewed popularity: a few products get most views.
        let x: f64 = self.rng.random_range(0.0f64..1.0);
        format!("/api/products/{}", (x.powi(3) * 5000.0) as u32 + 1)
    }

    pub(crate) fn push(&mut self, r: Request) {
        if r.ts_ms < self.end_ms {
            self.out.push(r);
        }
    }

    /// A human browsing: sessions of page views separated by think time.
    fn browser(
        &mut self,
        client: String,
        user: String,
        tier: Tier,
        from: i64,
        to: i64,
        focus: Option<&str>,
    ) {
        let ua = BROWSERS[self.rng.random_range(0..BROWSERS.len())];
        let mut t = from + self.exp(30_000.0) as i64;
        while t < to {
            let views = self.rng.random_range(3..25);
            if !user.is_empty() && self.rng.random_bool(0.3) {
                let status = if self.rng.random_bool(0.05) { 401 } else { 200 };
                self.push(req(
                    t,
                    &client,
                    &user,
                    tier,
                    "/api/login".into(),
                    "POST",
                    ua,
                    status,
                    "benign",
                ));
                t += self.exp(4_000.0) as i64 + 300;
            }
            for _ in 0..views {
                let endpoint = match (focus, self.rng.random_range(0..100)) {
                    (Some(f), 0..=59) => f.to_string(),
                    (_, 0..=14) => "/".into(),
                    (_, 15..=34) => "/api/browse".into(),
                    (_, 35..=69) => self.product(),
                    (_, 70..=81) => "/api/search".into(),
                    (_, 82..=93) => "/api/cart".into(),
                    _ if user.is_empty() => "/api/browse".into(),
                    _ => "/api/payment".into(),
                };
                let method = if endpoint == "/api/cart" || endpoint == "/api/payment" {
                    "POST"
                } else {
                    "GET"
                };
                let status = match self.rng.random_range(0..1000) {
                    0..=11 => 404,
                    12..=13 => 500,
                    _ => 200,
                };
                self.push(req(
                    t, &client, &user, tier, endpoint, method, ua, status, "benign",
                ));
                // Page loads come in quick pairs (page + XHR), then think time.
                t += if self.rng.random_bool(0.35) {
                    self.rng.random_range(100..900)
                } else {
                    self.exp(7_000.0) as i64 + 500
                };
            }
            t += self.exp(240_000.0) as i64;
        }
    }

    /// A legitimate script polling an API on a timer.
    fn api_script(&mut self, client: String, user: String, from: i64, to: i64) {
        let ua = TOOLS[self.rng.random_range(0..TOOLS.len())];
        let period = self.rng.random_range(3_000..20_000) as f64;
        let mut t = from + self.rng.random_range(0..period as i64);
        while t < to {
            let endpoint = if self.rng.random_bool(0.5) {
                "/api/browse".to_string()
            } else {
                self.product()
            };
            let status = if self.rng.random_bool(0.01) { 404 } else { 200 };
            self.push(req(
                t,
                &client,
                &user,
                Tier::Std,
                endpoint,
                "GET",
                ua,
                status,
                "benign",
            ));
            t += (period * self.rng.random_range(0.8..1.2)) as i64;
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn req(
    ts_ms: i64,
    client: &str,
    user: &str,
    tier: Tier,
    endpoint: String,
    method: &'static str,
    ua: &'static str,
    status: u16,
    label: &'static str,
) -> Request {
    Request {
        ts_ms,
        client: client.into(),
        user: user.into(),
        tier,
        endpoint,
        method,
        user_agent: ua,
        status,
        label,
    }
}

fn ip(prefix: &str, n: usize) -> String {
    format!("{prefix}.{}.{}", (n / 250) % 250 + 1, n % 250 + 1)
}

/// Generates a scenario's requests, in time order.
pub fn generate(p: &Params) -> Result<Vec<Request>, String> {
    if !(p.scale > 0.0 && p.scale <= 100.0) {
        return Err(format!("scale {} must be in (0, 100]", p.scale));
    }
    let plan = plan(&p.scenario, p.minutes)?.delayed(p.delay);
    let start = p.start_ms.unwrap_or(START_MS);
    let at = |m: u32| start + m as i64 * MINUTE_MS;
    let end = at(plan.minutes);
    let mut g = Gen {
        rng: StdRng::seed_from_u64(p.seed),
        out: Vec::new(),
        end_ms: end,
    };
    let n = |base: f64| ((base * p.scale).round() as usize).max(1);

    // Benign population: users arrive over the whole trace and browse for a while.
    for i in 0..n(900.0 * plan.population) {
        let (user, tier) = match g.rng.random_range(0..100) {
            0..=39 => (String::new(), Tier::Std),
            40..=84 => (format!("u{i}"), Tier::Std),
            _ => (format!("p{i}"), Tier::Prm),
        };
        let from = g.rng.random_range(start - 10 * MINUTE_MS..end);
        let stay = g.exp(25.0 * MINUTE_MS as f64) as i64 + 2 * MINUTE_MS;
        g.browser(
            ip("10.1", i),
            user,
            tier,
            from.max(start),
            (from + stay).min(end),
            None,
        );
    }
    for i in 0..n(12.0) {
        let from = start + g.rng.random_range(0..10 * MINUTE_MS);
        g.api_script(ip("10.9", i), format!("svc{i}"), from, end);
    }
    if let Some((a, b)) = plan.flash {
        // A launch: many new visitors within minutes, mostly on the launch page.
        for i in 0..n(500.0) {
            let from = at(a) + g.rng.random_range(0..3 * MINUTE_MS);
            let to = from
                + g.rng
                    .random_range(3 * MINUTE_MS..(at(b) - at(a)).max(4 * MINUTE_MS));
            let user = if g.rng.random_bool(0.5) {
                format!("f{i}")
            } else {
                String::new()
            };
            g.browser(
                ip("10.77", i),
                user,
                Tier::Std,
                from - 30_000,
                to,
                Some("/api/products/launch"),
            );
        }
    }
    if let Some((a, b)) = plan.ddos {
        // A botnet floods the home page and search with spoofed browser agents.
        for i in 0..n(250.0) {
            let client = ip("203.0", i);
            let ua = BROWSERS[g.rng.random_range(0..BROWSERS.len())];
            let mut t = at(a) + g.rng.random_range(0..20_000);
            let gap = g.rng.random_range(150.0..400.0);
            while t < at(b) {
                let endpoint = if g.rng.random_bool(0.7) {
                    "/"
                } else {
                    "/api/search"
                };
                let status = if g.rng.random_bool(0.2) { 503 } else { 200 };
                g.push(req(
                    t,
                    &client,
                    "",
                    Tier::Std,
                    endpoint.into(),
                    "GET",
                    ua,
                    status,
                    "attack:ddos",
                ));
                t += g.exp(gap) as i64 + 1;
            }
        }
    }
    if let Some((a, b)) = plan.stuffing {
        // Leaked credentials replayed against login from a few dozen proxies.
        for i in 0..n(40.0) {
            let client = ip("198.51", i);
            let ua = TOOLS[i % TOOLS.len()];
            let mut t = at(a) + g.rng.random_range(0..40_000);
            let gap = g.rng.random_range(900.0..2_500.0);
            while t < at(b) {
                let status = if g.rng.random_bool(0.03) { 200 } else { 401 };
                g.push(req(
                    t,
                    &client,
                    "",
                    Tier::Std,
                    "/api/login".into(),
                    "POST",
                    ua,
                    status,
                    "attack:credential_stuffing",
                ));
                t += g.exp(gap) as i64 + 1;
            }
        }
    }
    if let Some((a, b)) = plan.scraper {
        // Scrapers walk the catalogue in order, on a steady clock.
        for i in 0..n(8.0) {
            let client = ip("192.0", i);
            let ua = if i % 2 == 0 {
                BROWSERS[0]
            } else {
                "Mozilla/5.0 (compatible; DataHarvester/2.1)"
            };
            let mut t = at(a) + g.rng.random_range(0..30_000);
            let mut product = g.rng.random_range(1..500);
            while t < at(b) {
                let status = if g.rng.random_bool(0.04) { 404 } else { 200 };
                g.push(req(
                    t,
                    &client,
                    "",
                    Tier::Std,
                    format!("/api/products/{product}"),
                    "GET",
                    ua,
                    status,
                    "attack:scraper",
                ));
                product += 1;
                t += g.rng.random_range(900..1_300);
            }
        }
    }
    if let Some((a, b)) = plan.account_scraper {
        // Signed-in scrapers behind rotating residential proxies: each account walks the
        // catalogue at ~2 requests a second, every request from a random address of its pool of
        // 40, so no single address is busy enough to stand out; only the account is.
        for i in 0..n(3.0) {
            let user = format!("acct{i}");
            let pool: Vec<String> = (0..40).map(|j| ip("100.64", i * 40 + j)).collect();
            let ua = BROWSERS[i % BROWSERS.len()];
            let mut t = at(a) + g.rng.random_range(0..30_000);
            let mut product = g.rng.random_range(1..500);
            while t < at(b) {
                let client = &pool[g.rng.random_range(0..pool.len())];
                let status = if g.rng.random_bool(0.04) { 404 } else { 200 };
                g.push(req(
                    t,
                    client,
                    &user,
                    Tier::Std,
                    format!("/api/products/{product}"),
                    "GET",
                    ua,
                    status,
                    "attack:account_scraper",
                ));
                product += 1;
                t += g.rng.random_range(350..650);
            }
        }
    }
    if let Some((a, peak, b)) = plan.payment_spike {
        // A sale: extra shoppers pay (40% PRM) and browse (STD ones feel the cut). Extra payments
        // ramp linearly from 0 at `a` to `PEAK_EXTRA` a minute at `peak`, hold 6 minutes, and
        // fall back to 0 at `b`: on top of the population's own ~70 a minute, twice the usual.
        const PEAK_EXTRA: f64 = 70.0;
        let shoppers = 400;
        for m in a..b {
            let level = if m < peak {
                (m - a) as f64 / (peak - a) as f64
            } else if m < peak + 6 {
                1.0
            } else {
                1.0 - (m - peak - 6) as f64 / (b - peak - 6).max(1) as f64
            };
            let count = (PEAK_EXTRA * p.scale * level).round() as usize;
            for _ in 0..count {
                let k = g.rng.random_range(0..shoppers);
                let (user, tier) = if k % 5 < 2 {
                    (format!("sale-p{k}"), Tier::Prm)
                } else {
                    (format!("sale-s{k}"), Tier::Std)
                };
                let client = ip("10.88", k);
                let ua = BROWSERS[k % BROWSERS.len()];
                let t = at(m) + g.rng.random_range(0..MINUTE_MS);
                g.push(req(
                    t,
                    &client,
                    &user,
                    tier,
                    "/api/payment".into(),
                    "POST",
                    ua,
                    200,
                    "benign",
                ));
                for j in 1..=2 {
                    g.push(req(
                        t - j * 4_000,
                        &client,
                        &user,
                        tier,
                        "/api/browse".into(),
                        "GET",
                        ua,
                        200,
                        "benign",
                    ));
                }
            }
        }
    }
    if let Some(from) = plan.match_day {
        super::worldcup::fans(&mut g, at, from, p.scale);
    }
    let mut out = g.out;
    out.sort_by(|a, b| (a.ts_ms, &a.client).cmp(&(b.ts_ms, &b.client)));
    Ok(out)
}

/// Writes requests as a trace CSV (the format `sluice replay` reads).
pub fn write_csv(out: impl Write, requests: &[Request]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "ts",
        "client",
        "user",
        "tier",
        "endpoint",
        "method",
        "user_agent",
        "status",
        "label",
    ])?;
    for r in requests {
        w.write_record([
            r.ts_ms.to_string().as_str(),
            &r.client,
            &r.user,
            r.tier.as_str(),
            &r.endpoint,
            r.method,
            r.user_agent,
            r.status.to_string().as_str(),
            r.label,
        ])?;
    }
    w.flush()
}
