//! The `worldcup-spike` scenario's match-day traffic: the real per-minute request counts of the
//! 1998 World Cup web site on 8 July 1998, 16:00–21:00 UTC (the ITA WorldCup98 logs; an hour
//! flat at ~18k a minute, then the semi-final's crowd ramps to ~200k within two hours), scaled
//! onto a live-scores endpoint with a capacity. The shape is real; the fans polling it are
//! generated. A user's clone carries these 300 minutes in `data/`, so the scenario needs nothing
//! beside the repository.

use rand::Rng;

use super::scenario::{BROWSERS, Gen, MINUTE_MS, req};
use sluice_core::rules::Tier;

const SERIES: &str = include_str!("data/worldcup98-1998-07-08.csv");

/// Scores requests a minute during the flat first hour, at scale 1.
pub const BASE_PER_MINUTE: f64 = 25.0;

/// Minutes of the series.
pub fn minutes() -> u32 {
    levels().len() as u32
}

/// Each minute's requests relative to the first hour's mean.
pub fn levels() -> Vec<f64> {
    let counts: Vec<f64> = SERIES
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(',')?.1.trim().parse().ok())
        .collect();
    let first_hour = counts.iter().take(60).sum::<f64>() / 60.0_f64.min(counts.len() as f64);
    counts.iter().map(|c| c / first_hour.max(1.0)).collect()
}

/// The fans from minute `from` on: each scores request is a fan polling `/api/scores`
/// (a fifth PRM users, half STD users, the rest anonymous); signed-in STD fans also browse
/// (`/api/browse`), which is what a cut of low-priority STD limits slows.
pub(crate) fn fans(g: &mut Gen, at: impl Fn(u32) -> i64, from: u32, scale: f64) {
    const FANS: usize = 3_000;
    for (m, level) in levels().into_iter().enumerate() {
        let count = (BASE_PER_MINUTE * scale * level).round() as usize;
        let minute = at(from + m as u32);
        for _ in 0..count {
            let k = g.rng.random_range(0..FANS);
            let (user, tier) = match k % 10 {
                0 | 1 => (format!("fan-p{k}"), Tier::Prm),
                2..=6 => (format!("fan-s{k}"), Tier::Std),
                _ => (String::new(), Tier::Std),
            };
            let client = format!("10.98.{}.{}", (k / 250) % 250 + 1, k % 250 + 1);
            let ua = BROWSERS[k % BROWSERS.len()];
            let t = minute + g.rng.random_range(0..MINUTE_MS);
            g.push(req(
                t,
                &client,
                &user,
                tier,
                "/api/scores".into(),
                "GET",
                ua,
                200,
                "benign",
            ));
            if tier == Tier::Std && !user.is_empty() {
                g.push(req(
                    t + 2_000,
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
