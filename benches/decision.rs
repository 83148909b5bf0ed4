//! The in-process decision path: one rule (per client address), over 1 and 1,000,000 distinct
//! keys, for each bucket store; and observation alone (`observe/*`), the learning loop's cost per
//! decision; and the memory floor under the 1M-key case (`floor/*`). Run: `cargo bench --bench
//! decision`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::adapters::moka_store::StoreKind;
use sluice_core::engine::EngineConfig;
use sluice_core::learn::observe::ObserveConfig;

mod common;

/// The binary's allocator (src/main.rs), so the tables sit where they would in the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use common::decide;

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

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));
    // Observation "off": caps of 0, so each decision's observation is a hash, a shard lock and a
    // miss in an empty table (what is left of it). The 1M-key cost is mostly memory: the
    // difference between the two says what the observation table's misses cost.
    let no_observation = EngineConfig {
        observe: ObserveConfig {
            max_clients: 0,
            max_endpoints: 0,
            ..ObserveConfig::default()
        },
        ..EngineConfig::default()
    };
    for (store, n, observed) in [
        (StoreKind::Moka, 1usize, true),
        (StoreKind::Moka, 1_000_000, true),
        (StoreKind::Sharded, 1, true),
        (StoreKind::Sharded, 1_000_000, true),
        (StoreKind::Sharded, 1_000_000, false),
    ] {
        let name = format!(
            "{store:?}/{n}_keys{}",
            if observed { "" } else { "/observation_off" }
        );
        let config = if observed {
            EngineConfig::default()
        } else {
            no_observation.clone()
        };
        // Set up inside the closure, so a filtered-out case costs nothing.
        group.bench_function(name.to_lowercase(), |b| {
            let engine = common::engine_with(store, 1_000, config.clone());
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

/// What observation (the learning loop's only part on the decision path) costs per decision: a
/// request by address only, and one that also carries a user id (folded into two keys).
fn observe(c: &mut Criterion) {
    use sluice_core::learn::observe::{Aggregator, Event, Observation, ObserveConfig};
    use sluice_core::rules::Tier;
    let mut group = c.benchmark_group("observe");
    group.throughput(Throughput::Elements(1));
    // (name, distinct clients per minute, with a user id): "first" has every observation be a
    // client's first in its minute (the dearest case), "repeat" cycles over 100 clients.
    let cases = [
        ("address/first", 10_000, false),
        ("address_and_user/first", 10_000, true),
        ("address/repeat", 100, false),
        ("address_and_user/repeat", 100, true),
    ];
    for (name, n, with_user) in cases {
        group.bench_function(name, |b| {
            let clients: Vec<String> = (0..n)
                .map(|k| format!("10.{}.{}.{}", k >> 16, (k >> 8) & 0xff, k & 0xff))
                .collect();
            let users: Vec<String> = (0..n).map(|i| format!("user-{i}")).collect();
            let agg = Aggregator::new(ObserveConfig::default());
            let mut i = 0usize;
            let mut seen = 0usize;
            let mut now = 1_700_000_000_000_000_000u64;
            // Timed: the observations only; closing the minute happens off the decision path.
            b.iter_custom(|iters| {
                let mut draining = std::time::Duration::ZERO;
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    i = (i + 1) % clients.len();
                    seen += 1;
                    now += 1_000;
                    agg.record(black_box(&Observation {
                        now,
                        client: &clients[i],
                        user: if with_user { &users[i] } else { "" },
                        tier: Tier::Std,
                        endpoint: "/api/products/17",
                        user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Firefox/133.0",
                        event: Event::Decision {
                            allowed: true,
                            anomaly: false,
                            cut: false,
                        },
                    }));
                    // Close the minute as the server does: every client seen once (`first`),
                    // or after 10,000 observations (`repeat`).
                    if seen == n.max(10_000) {
                        seen = 0;
                        let t = std::time::Instant::now();
                        black_box(agg.drain());
                        draining += t.elapsed();
                    }
                }
                start.elapsed() - draining
            })
        });
    }
    group.finish();
}

/// The floor under any decision at a million keys: one read from memory at a place the caches
/// cannot guess, each read's address coming from the one before (a random cycle through 256 MB,
/// larger than any cache; on the binary's allocator, which lets the kernel back it with huge
/// pages). A 1M-key decision reads at least one such place (its bucket), so it cannot cost less
/// than this plus the part of the path the miss does not overlap.
fn memory_floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("floor");
    group.throughput(Throughput::Elements(1));
    group.bench_function("dependent_random_read_256mb", |b| {
        const SLOTS: usize = 32 << 20;
        // Sattolo's shuffle: one cycle through every slot, so the walk never settles in a
        // short loop the caches could hold.
        let mut next: Vec<u64> = (0..SLOTS as u64).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in (1..SLOTS).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let j = (x % i as u64) as usize;
            next.swap(i, j);
        }
        let mut at = 0usize;
        b.iter(|| {
            at = next[at] as usize;
            black_box(at)
        })
    });
    group.finish();
}

criterion_group!(benches, bench, observe, memory_floor);
criterion_main!(benches);
