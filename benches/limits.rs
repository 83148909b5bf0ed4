//! What issue 33's calls cost in memory, beside a plain decision: a lease acquired and released
//! (`LeaseTable`, the in-process store of `AcquireLease`/`ReleaseLease`), and a reservation
//! reserved and committed through the engine (`prepare_reserve`, `settle_in_process`,
//! `conclude`, then the settlement's refund and added hits) against `should_allow` on the same
//! rule. CPU per operation, no gRPC; on Redis each call is one script's round trip instead.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::engine::{Engine, EngineConfig, Subject};
use sluice_core::lease::LeaseTable;
use sluice_core::limit::{LimitSpec, Unit};
use sluice_core::matcher::RuleSet;
use sluice_core::reservation::{Charge, settlement};
use sluice_core::rules::Rule;

const T0: u64 = 1_700_000_000_000_000_000;

fn leases(c: &mut Criterion) {
    let mut group = c.benchmark_group("lease");
    group.throughput(Throughput::Elements(1));
    for keys in [1u128, 100_000] {
        group.bench_function(format!("acquire_release/{keys}_keys"), |b| {
            let mut table = LeaseTable::new(200_000);
            for k in 0..keys {
                table.acquire(k, 1, 4, 60_000_000_000, T0);
            }
            let (mut i, mut now) = (0u128, T0);
            b.iter(|| {
                i = (i + 7_919) % keys;
                now += 1_000;
                black_box(table.acquire(i, 2, 4, 60_000_000_000, now));
                black_box(table.release(i, 2, now))
            })
        });
    }
    group.finish();
}

fn engine() -> Engine {
    let engine = Engine::new(EngineConfig::default());
    let limit = |name: &str, n: u64| LimitSpec {
        name: name.into(),
        ..LimitSpec::per(n, Unit::Minute)
    };
    let rule = Rule::new(
        "llm",
        &[("user_id", "")],
        vec![
            limit("requests", 1_000_000),
            limit("input_tokens", u64::MAX / 4),
            limit("output_tokens", u64::MAX / 4),
        ],
    );
    engine.replace_rules(RuleSet::build(1, [rule]));
    engine
}

fn reservations(c: &mut Criterion) {
    let mut group = c.benchmark_group("reservation");
    group.throughput(Throughput::Elements(1));
    let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    fn subject(user: &str) -> Subject<'_> {
        Subject {
            user_id: user,
            ..Subject::default()
        }
    }
    group.bench_function("should_allow/3_limits", |b| {
        let engine = engine();
        let (mut i, mut now) = (0usize, T0);
        b.iter(|| {
            i = (i + 1) % users.len();
            now += 1_000;
            black_box(
                engine
                    .should_allow("llm", &subject(&users[i]), 1, now)
                    .over_limit,
            )
        })
    });
    group.bench_function("reserve_commit/3_limits", |b| {
        let engine = engine();
        let estimate = [("input_tokens", 1_200u64), ("output_tokens", 800)];
        let actual = [("input_tokens", 1_100u64), ("output_tokens", 950)];
        let (mut i, mut now) = (0usize, T0);
        b.iter(|| {
            i = (i + 1) % users.len();
            now += 1_000;
            let who = subject(&users[i]);
            let prepared = engine.prepare_reserve("llm", &who, &estimate, now);
            let outcomes = engine.settle_in_process(&prepared, now);
            let charges: Vec<Charge> = prepared
                .charges()
                .map(|(name, op)| Charge {
                    name: name.to_string(),
                    op,
                })
                .collect();
            black_box(engine.conclude(&who, prepared, &outcomes, now).over_limit);
            black_box(engine.run_ops(&settlement(&charges, &actual), now))
        })
    });
    group.finish();
}

criterion_group!(benches, leases, reservations);
criterion_main!(benches);
