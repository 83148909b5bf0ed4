//! The in-process decision path: one rule (per client address), over 1 and 1,000,000 distinct
//! keys, for each bucket store. Run: `cargo bench --bench decision`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::core::bucket::Op;
use sluice::core::buckets::StoreKind;
use sluice::core::engine::{DescriptorInput, Engine};

mod common;

fn keys(n: usize) -> Vec<String> {
    // A fixed pseudo-random order, so consecutive decisions hit unrelated buckets.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % n as u64;
            format!("10.{}.{}.{}", k >> 16, (k >> 8) & 0xff, k & 0xff)
        })
        .collect()
}

fn decide(engine: &Engine, key: &str, now: u64) -> bool {
    let input = DescriptorInput {
        entries: [("remote_address", key)].into_iter().collect(),
        hits: 1,
        op: Op::Consume,
        limit_override: None,
    };
    engine
        .check_descriptors("edge", std::slice::from_ref(&input), now)
        .over_limit
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));
    for (store, n) in [
        (StoreKind::Moka, 1usize),
        (StoreKind::Moka, 1_000_000),
        (StoreKind::Sharded, 1),
        (StoreKind::Sharded, 1_000_000),
    ] {
        // Set up inside the closure, so a filtered-out case costs nothing.
        group.bench_function(format!("{store:?}/{n}_keys").to_lowercase(), |b| {
            let engine = common::engine(store, 1_000);
            let keys = keys(n);
            let mut now = 1_700_000_000_000_000_000u64;
            for k in &keys {
                decide(&engine, k, now);
            }
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % keys.len();
                now += 1_000;
                black_box(decide(&engine, &keys[i], now))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
