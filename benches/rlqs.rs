//! RLQS as Envoys live it: N Envoys enforce the assignments Sluice's quota board gives them
//! (each a token bucket of its share a minute, as Envoy enforces `requests_per_time_unit`)
//! against offered load, report every 5 s, and are answered at once. Printed per scenario
//! (steady, shifting, spiking demand): the most any minute admitted across the Envoys ÷ the
//! rule's quota (the first minute excluded: buckets start full, as RLS's token bucket does),
//! what they admitted ÷ what they could have (min(offered, quota) each minute), and the
//! server's CPU per request served (reports, not requests, cost CPU), median of 5 runs. Pure:
//! the board and the engine in virtual time, no network. Run: `cargo bench --bench rlqs`.

use std::time::Instant;

use sluice_core::engine::{Engine, EngineConfig};
use sluice_core::limit::{LimitSpec, Unit};
use sluice_core::matcher::RuleSet;
use sluice_core::quota::{Assignment, BucketKey, QuotaBoard, QuotaConfig};
use sluice_core::rules::Rule;
use sluice_core::time::NANOS_PER_SEC;

const QUOTA: u64 = 6_000; // a minute
const ENVOYS: usize = 5;
const MINUTES: u64 = 20;
const REPORT_EVERY: u64 = 5; // seconds

/// Requests a second offered to Envoy `e` at second `t`.
type Load = fn(e: usize, t: u64) -> f64;

const SCENARIOS: [(&str, Load); 3] = [
    // 30 a second each: 150 a second offered against a quota of 100.
    ("steady", |_, _| 30.0),
    // Demand moves from the first two Envoys to the last three at minute 10.
    ("shifting", |e, t| match (e < 2, t < 600) {
        (true, true) | (false, false) => 50.0,
        _ => 5.0,
    }),
    // Under the quota, then a spike on one Envoy from minute 8 to 12.
    ("spiking", |e, t| {
        if e == 0 && (480..720).contains(&t) {
            400.0
        } else {
            12.0
        }
    }),
];

/// Envoy's local enforcement: a token bucket of `rate` a minute, capacity `rate`.
struct LocalBucket {
    tokens: f64,
    rate: f64,
}

impl LocalBucket {
    fn admit(&mut self, n: f64) -> f64 {
        let admitted = n.min(self.tokens.floor().max(0.0));
        self.tokens -= admitted;
        admitted
    }

    fn refill(&mut self, seconds: f64) {
        self.tokens = (self.tokens + self.rate * seconds / 60.0).min(self.rate);
    }

    fn assign(&mut self, rate: f64) {
        self.rate = rate;
        self.tokens = self.tokens.min(rate);
    }
}

struct Outcome {
    worst_minute: f64,
    utilisation: f64,
    nanos_per_request: f64,
}

fn run(load: Load) -> Outcome {
    let engine = Engine::new(EngineConfig::default());
    engine.replace_rules(RuleSet::build(
        1,
        [Rule::new(
            "quota",
            &[("endpoint", "/api")],
            vec![LimitSpec::per(QUOTA, Unit::Minute)],
        )],
    ));
    let key = BucketKey::new("quota", [("endpoint".to_string(), "/api".to_string())]);
    let mut board = QuotaBoard::new(QuotaConfig::default());
    // No assignment yet: each Envoy lets traffic through (`no_assignment_behavior: ALLOW_ALL`)
    // until the first answer, which comes with the first report.
    let mut buckets: Vec<Option<LocalBucket>> = (0..ENVOYS).map(|_| None).collect();
    let mut since_report = [0.0f64; ENVOYS];
    let (mut server_nanos, mut served) = (0u128, 0f64);
    let (mut worst, mut admitted_all, mut possible_all) = (0f64, 0f64, 0f64);
    let mut minute_admitted = 0f64;
    let mut minute_offered = 0f64;
    for t in 0..MINUTES * 60 {
        let now = t * NANOS_PER_SEC;
        for e in 0..ENVOYS {
            let offered = load(e, t);
            let admitted = match &mut buckets[e] {
                None => offered,
                Some(b) => {
                    b.refill(1.0);
                    b.admit(offered)
                }
            };
            since_report[e] += offered;
            minute_admitted += admitted;
            minute_offered += offered;
            served += admitted;
        }
        if t % REPORT_EVERY == REPORT_EVERY - 1 {
            let started = Instant::now();
            for e in 0..ENVOYS {
                let requests = std::mem::take(&mut since_report[e]) as u64;
                board
                    .report(e as u64, &key, requests, REPORT_EVERY * NANOS_PER_SEC, now)
                    .expect("within the caps");
                let quota = engine.bucket_quota("quota", &key.fields(), now);
                if let Assignment::Quota { requests, .. } =
                    board.assign(&key, e as u64, &quota, now)
                {
                    match &mut buckets[e] {
                        Some(b) => b.assign(requests as f64),
                        None => {
                            buckets[e] = Some(LocalBucket {
                                tokens: requests as f64,
                                rate: requests as f64,
                            })
                        }
                    }
                }
            }
            server_nanos += started.elapsed().as_nanos();
        }
        if t % 60 == 59 {
            if t >= 60 {
                worst = worst.max(minute_admitted / QUOTA as f64);
                admitted_all += minute_admitted;
                possible_all += minute_offered.min(QUOTA as f64);
            }
            minute_admitted = 0.0;
            minute_offered = 0.0;
        }
    }
    Outcome {
        worst_minute: worst,
        utilisation: admitted_all / possible_all,
        nanos_per_request: server_nanos as f64 / served,
    }
}

fn main() {
    println!(
        "{ENVOYS} Envoys on one bucket, quota {QUOTA} a minute, reports every {REPORT_EVERY} s, {MINUTES} minutes"
    );
    println!(
        "scenario   most in a minute / quota   admitted / min(offered, quota)   server ns per request served"
    );
    for (name, load) in SCENARIOS {
        let mut runs: Vec<Outcome> = (0..5).map(|_| run(load)).collect();
        runs.sort_by(|a, b| a.nanos_per_request.total_cmp(&b.nanos_per_request));
        let o = &runs[2];
        println!(
            "{name:<10} {:>24.3}   {:>30.3}   {:>28.1}",
            o.worst_minute, o.utilisation, o.nanos_per_request
        );
    }
}
