//! Resident memory for N active keys (default 1,000,000): fills the engine's buckets through the
//! decision path and reports the growth of RSS. Run: `cargo bench --bench memory [-- N] [moka|sharded]`.

use sluice::core::bucket::Op;
use sluice::core::buckets::StoreKind;
use sluice::core::engine::{DescriptorInput, Engine, EngineConfig};
use sluice::core::limit::{LimitSpec, Rate, Unit};
use sluice::core::matcher::RuleSet;
use sluice::core::rules::{EntryMatch, Rule, ValueMatch};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let store: StoreKind = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or_default();
    let engine = Engine::new(EngineConfig {
        bucket_store: store,
        ..EngineConfig::default()
    });
    engine.replace_rules(RuleSet::build(
        1,
        [Rule {
            domain: "edge".into(),
            path: vec![EntryMatch {
                key: "remote_address".into(),
                value: ValueMatch::Any,
            }],
            limits: vec![LimitSpec {
                name: String::new(),
                rate: Some(Rate {
                    requests_per_unit: 100,
                    unit: Unit::Minute,
                }),
                algorithm: Default::default(),
                burst: None,
                floor: None,
                ceiling: None,
            }],
            shadow_mode: false,
            priority: Default::default(),
            replaces: vec![],
        }],
    ));
    let before = rss_bytes();
    let now = 1_700_000_000_000_000_000u64;
    let mut key = String::new();
    for k in 0..n {
        use std::fmt::Write;
        key.clear();
        write!(key, "10.{}.{}.{}", k >> 16, (k >> 8) & 0xff, k & 0xff).unwrap();
        let input = DescriptorInput {
            entries: [("remote_address", key.as_str())].into_iter().collect(),
            hits: 1,
            op: Op::Consume,
            limit_override: None,
        };
        engine.check_descriptors("edge", std::slice::from_ref(&input), now);
    }
    let tracked = engine.tracked_buckets();
    let after = rss_bytes();
    let grown = after.saturating_sub(before);
    println!(
        "{{\"store\": \"{store:?}\", \"keys\": {n}, \"tracked_buckets\": {tracked}, \"rss_before_mb\": {:.1}, \"rss_after_mb\": {:.1}, \"rss_growth_mb\": {:.1}, \"bytes_per_key\": {:.0}}}",
        before as f64 / 1e6,
        after as f64 / 1e6,
        grown as f64 / 1e6,
        grown as f64 / n as f64
    );
}
