//! Resident memory for N active keys (default 1,000,000): fills the engine's buckets through the
//! decision path and reports the growth of RSS. Run: `cargo bench --bench memory [-- N] [moka|sharded]`.

use sluice::adapters::moka_store::StoreKind;
use sluice_core::bucket::Op;
use sluice_core::engine::DescriptorInput;

mod common;

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
    // Every bucket is used at the same instant, so none can expire during the fill.
    let engine = common::engine(store, 100);
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
