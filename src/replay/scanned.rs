//! Generated *scanned sites* for evaluating detection where abusers are many: a site of people
//! who rarely fail, and bursts of scanners, exploit probes and credential stuffers that are 10 to
//! 80% of the clients that fail — the world a real small site lives in (issue 27: on such a site
//! the failure baseline learned its tail from the scanners themselves).
//!
//! Every parameter is drawn from the seed: the site's size (half the worlds small, 50–300 people;
//! the others up to 5,000), how people browse, how often they hit a dead link or mistype a
//! password, how many phones ask for the `apple-touch-icon` files the site lacks, the share of
//! failing clients that are attackers, and each burst's size (20–300 requests), duration (5 s to
//! 5 minutes, so some are slow: 25 probes over 3 minutes), failing share (60–100%) and agent.
//! Bursts arrive through the whole trace, from its first minute: the baselines never see a
//! clean site first.
//!
//! Labels: `benign` and `attack:scanner`, `attack:exploit`, `attack:credential-stuffing`.
//! A model of no particular site; the mixed family (`worlds`) covers floods and scrapers.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use sluice_core::rules::Tier;

use super::scenario::{Request, START_MS};
use super::worlds::Gen;

const MINUTE_MS: i64 = 60_000;

/// Seeds the design (thresholds, signals) was decided on.
pub const DESIGN_SEEDS: std::ops::RangeInclusive<u64> = 1..=40;
/// Seeds the test suite replays (small, fast worlds; not looked at while designing).
pub const TEST_SEEDS: [u64; 3] = [501, 502, 503];
/// Seeds reported on, never looked at while designing.
pub const HELD_OUT_SEEDS: std::ops::RangeInclusive<u64> = 9001..=9040;

const BROWSERS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36",
];
const PHONE: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
const PHONE_ICONS: &str = "MobileSafari/604.1 CFNetwork/1494 Darwin/23.2.0";
const ATTACK_AGENTS: [&str; 6] = [
    "Mozilla/5.0 zgrab/0.x",
    "curl/7.68.0",
    "python-requests/2.31.0",
    "Custom-AsyncHttpClient",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/81.0.4044.129 Safari/537.36",
    "",
];
/// Path stems scanners try (with prefixes and suffixes drawn per request, so a burst's paths are
/// mostly distinct).
const PROBES: [&str; 16] = [
    "/.env",
    "/.git/config",
    "/wp-login.php",
    "/wp-admin/setup-config.php",
    "/xmlrpc.php",
    "/phpmyadmin/index.php",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/admin/config.php",
    "/cgi-bin/luci/;stok=/locale",
    "/owa/auth/logon.aspx",
    "/actuator/env",
    "/server-status",
    "/config.json",
    "/backup.sql",
    "/.aws/credentials",
    "/solr/admin/info/system",
];
const PREFIXES: [&str; 8] = [
    "", "/wp", "/blog", "/old", "/new", "/test", "/backup", "/laravel",
];

/// What was drawn for one scanned world.
#[derive(Clone, Debug, Serialize)]
pub struct ScannedParams {
    pub seed: u64,
    pub minutes: u32,
    pub people: usize,
    /// A person's chance of a dead link per page and of a mistyped password per login.
    pub dead_link: f64,
    pub typo: f64,
    /// Share of people on phones that ask for missing `apple-touch-icon` files.
    pub phones: f64,
    /// Attackers as a share of the clients that fail (drawn 0.1–0.8; the generated figure).
    pub attacker_share_drawn: f64,
    pub attacker_share_of_failing: f64,
    pub attackers: usize,
    pub kinds: Vec<&'static str>,
}

pub struct ScannedWorld {
    pub params: ScannedParams,
    pub requests: Vec<Request>,
}

/// One person's visit; returns whether any of its page requests failed.
fn person(
    g: &mut Gen,
    client: &str,
    from: i64,
    to: i64,
    assets: f64,
    think: f64,
    p: &ScannedParams,
) -> bool {
    let phone = g.rng.random_bool(p.phones);
    let agent = if phone {
        PHONE
    } else {
        BROWSERS[g.rng.random_range(0..BROWSERS.len())]
    };
    let mut failed = false;
    let mut t = from;
    let mut first = true;
    while t < to {
        let page = match g.rng.random_range(0..12) {
            0 => "/".to_string(),
            1 => "/search".to_string(),
            2 => "/cart".to_string(),
            3 => "/login".to_string(),
            _ => format!("/product/{}", g.rng.random_range(1..5_000)),
        };
        let (method, status) = if page == "/login" {
            let typo = g.rng.random_bool(p.typo);
            ("POST", if typo { 401 } else { 200 })
        } else if g.rng.random_bool(p.dead_link) {
            ("GET", 404)
        } else {
            ("GET", 200)
        };
        failed |= status >= 400;
        g.push(
            t,
            client,
            "",
            Tier::Std,
            page,
            method,
            agent,
            status,
            "benign",
        );
        let mut a = t;
        for i in 0..g.exp(assets).round() as u32 {
            a += g.rng.random_range(5..120);
            let asset = format!(
                "/static/{}.{}",
                i % 12,
                ["js", "css", "png"][i as usize % 3]
            );
            g.push(a, client, "", Tier::Std, asset, "GET", agent, 200, "benign");
        }
        if phone && first {
            // Safari's home-screen icons: four variants, twice, none of them on this site.
            for _ in 0..2 {
                for icon in ["-120x120-precomposed", "-120x120", "-precomposed", ""] {
                    a += g.rng.random_range(5..400);
                    let icon = format!("/apple-touch-icon{icon}.png");
                    g.push(
                        a,
                        client,
                        "",
                        Tier::Std,
                        icon,
                        "GET",
                        PHONE_ICONS,
                        404,
                        "benign",
                    );
                }
            }
        }
        first = false;
        t += (g.exp(think) * 1000.0) as i64 + 300;
    }
    failed
}

/// One attack burst of `kind` from `client`, starting at `from`.
fn burst(g: &mut Gen, kind: &'static str, client: &str, from: i64) {
    let requests = g.log_uniform(20.0, 300.0).round() as u32;
    let seconds = g.log_uniform(5.0, 300.0);
    let fail_share = g.rng.random_range(0.6..1.0);
    let agent = ATTACK_AGENTS[g.rng.random_range(0..ATTACK_AGENTS.len())];
    let label = match kind {
        "scanner" => "attack:scanner",
        "exploit" => "attack:exploit",
        _ => "attack:credential-stuffing",
    };
    let gap = seconds * 1000.0 / requests as f64;
    let mut t = from;
    for i in 0..requests {
        let fails = g.rng.random_bool(fail_share);
        let (endpoint, method, status) = match kind {
            "stuffing" => ("/login".to_string(), "POST", if fails { 401 } else { 200 }),
            _ if !fails => (
                ["/", "/robots.txt", "/search"][g.rng.random_range(0..3)].to_string(),
                "GET",
                200,
            ),
            "exploit" => {
                let probe = PROBES[g.rng.random_range(0..PROBES.len())];
                let status = [404, 405, 414, 400][g.rng.random_range(0..4)];
                (format!("{probe}?x={i}"), "POST", status)
            }
            _ => {
                let prefix = PREFIXES[g.rng.random_range(0..PREFIXES.len())];
                let probe = PROBES[g.rng.random_range(0..PROBES.len())];
                let status = if g.rng.random_bool(0.9) { 404 } else { 403 };
                (format!("{prefix}{probe}"), "GET", status)
            }
        };
        g.push(
            t,
            client,
            "",
            Tier::Std,
            endpoint,
            method,
            agent,
            status,
            label,
        );
        t += (gap * g.rng.random_range(0.2..1.8)).max(1.0) as i64;
    }
}

/// Generates scanned world `seed`; `max_people` caps its drawn population.
pub fn generate(seed: u64, max_people: usize) -> ScannedWorld {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed ^ 0x5CA7_7ED5_17E5),
        out: Vec::new(),
        end_ms: 0,
    };
    let minutes: u32 = g.rng.random_range(40..90);
    g.end_ms = START_MS + minutes as i64 * MINUTE_MS;
    let people = if g.rng.random_bool(0.5) {
        g.rng.random_range(50..=300)
    } else {
        g.log_uniform(300.0, 5_000.0) as usize
    }
    .min(max_people.max(50));
    let mut kinds: Vec<&'static str> = ["scanner", "exploit", "stuffing"]
        .into_iter()
        .filter(|_| g.rng.random_bool(0.6))
        .collect();
    if kinds.is_empty() {
        kinds.push("scanner");
    }
    let mut params = ScannedParams {
        seed,
        minutes,
        people,
        dead_link: g.rng.random_range(0.0..0.03),
        typo: g.rng.random_range(0.0..0.15),
        phones: g.rng.random_range(0.0..0.3),
        attacker_share_drawn: g.rng.random_range(0.1..0.8),
        attacker_share_of_failing: 0.0,
        attackers: 0,
        kinds,
    };
    let assets = g.rng.random_range(0.0..15.0);
    let think = g.rng.random_range(8.0..60.0);
    let end = g.end_ms;
    let mut failing_people = 0usize;
    for i in 0..people {
        let client = format!("10.{}.{}.{}", i / 62_500, (i / 250) % 250, i % 250 + 1);
        // A site in its steady state: a third are there when the trace starts.
        let from = if g.rng.random_bool(0.33) {
            START_MS
        } else {
            START_MS + g.rng.random_range(0..end - START_MS)
        };
        let stay = (g.exp(12.0 * MINUTE_MS as f64) as i64).max(MINUTE_MS);
        failing_people += person(
            &mut g,
            &client,
            from,
            (from + stay).min(end),
            assets,
            think,
            &params,
        ) as usize;
    }
    // Attackers so that they are the drawn share of the clients that fail (at least one).
    let share = params.attacker_share_drawn;
    let attackers =
        ((failing_people.max(1) as f64 * share / (1.0 - share)).round() as usize).clamp(1, 3_000);
    for i in 0..attackers {
        let kind = params.kinds[i % params.kinds.len()];
        let client = format!("203.{}.{}.{}", i / 62_500, (i / 250) % 250, i % 250 + 1);
        let from = START_MS + g.rng.random_range(0..(end - START_MS - MINUTE_MS).max(1));
        burst(&mut g, kind, &client, from);
    }
    params.attackers = attackers;
    params.attacker_share_of_failing = attackers as f64 / (attackers + failing_people) as f64;
    g.out.sort_by_key(|r| r.ts_ms);
    ScannedWorld {
        params,
        requests: g.out,
    }
}
