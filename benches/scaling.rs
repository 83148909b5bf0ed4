//! What the decision path shares between threads: the same in-process decisions (one rule per
//! client address, observation on, as in `decision`) made by 1 and 2 threads at once, each
//! timing its own decisions. With nothing shared, a decision takes as long on two threads as on
//! one; what it takes longer is contention (cache lines moving between cores, shard locks).
//! Two cases: every thread on its own 100,000 keys (`spread`: only the engine's shared
//! counters and tables are shared), and every thread on one key (`one_key`: one bucket and one
//! client entry, the worst case). Run: `cargo bench --bench scaling`; the figure is per decision
//! per thread (criterion's time per iteration; each thread makes `iters` decisions).

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::adapters::moka_store::StoreKind;
use sluice_core::engine::{Engine, EngineConfig};

mod common;
use common::decide;

/// Thread `t`'s keys: its own 100,000 addresses, or the one all threads share.
fn keys_of(t: usize, spread: bool) -> Vec<String> {
    if !spread {
        return vec!["10.0.0.1".to_string()];
    }
    (0..100_000usize)
        .map(|i| format!("10.{t}.{}.{}", i >> 8, i & 0xff))
        .collect()
}

/// `threads` threads, each making `iters` decisions on its keys; the longest thread's time.
fn run(engine: &Engine, keys: &[Vec<String>], iters: u64) -> Duration {
    let start = Barrier::new(keys.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .iter()
            .map(|mine| {
                let start = &start;
                s.spawn(move || {
                    let mut now = 1_700_000_000_000_000_000u64;
                    start.wait();
                    let began = Instant::now();
                    for i in 0..iters as usize {
                        now += 1_000;
                        black_box(decide(engine, &mine[i % mine.len()], now));
                    }
                    began.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("scaling");
    for spread in [true, false] {
        for threads in [1usize, 2] {
            let name = format!(
                "{}/{threads}_threads",
                if spread { "spread" } else { "one_key" }
            );
            group.bench_function(name, |b| {
                // The limit never denies: every thread does the same work throughout.
                let engine =
                    common::engine_with(StoreKind::Sharded, 1_000_000_000, EngineConfig::default());
                let keys: Vec<Vec<String>> = (0..threads).map(|t| keys_of(t, spread)).collect();
                // Warm: every key has its bucket and its client entry.
                run(&engine, &keys, 100_000);
                b.iter_custom(|iters| run(&engine, &keys, iters));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
