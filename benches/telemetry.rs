//! What timing a decision RPC costs (`sluice.rpc.duration`): with export off (the default) and
//! on. Run: `cargo bench --bench telemetry`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use sluice::service::latency::RpcMetrics;
use sluice::service::telemetry::rpc_metrics;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rpc_timer");
    let off = RpcMetrics::default();
    group.bench_function("off", |b| {
        b.iter(|| drop(black_box(off.time("ShouldAllow"))))
    });
    // A real SDK pipeline whose export (hourly, in memory) never runs during the bench: only
    // recording is timed.
    let reader = PeriodicReader::builder(InMemoryMetricExporter::default())
        .with_interval(std::time::Duration::from_secs(3600))
        .build();
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    let on = rpc_metrics(&provider.meter("bench"));
    group.bench_function("on", |b| b.iter(|| drop(black_box(on.time("ShouldAllow")))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
