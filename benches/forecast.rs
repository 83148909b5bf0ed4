//! The forecaster's cost: one window and a batch of 64 through the shipped LSTM on ONNX Runtime
//! (encode, run, decode), and the baseline for comparison. Needs ORT_DYLIB_PATH (run
//! `export ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)` first).
//! Run: `cargo bench --bench forecast`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::adapters::onnx::OnnxForecaster;
use sluice_core::forecast::baseline::Fallback;
use sluice_core::forecast::{Forecaster, MinutePoint, WINDOW};

fn windows(n: usize) -> Vec<Vec<MinutePoint>> {
    (0..n)
        .map(|w| {
            (0..WINDOW)
                .map(|m| {
                    let minute = (w * 7 + m) as i64;
                    MinutePoint::requests_only(minute, 30.0 + ((minute * 13) % 17) as f64)
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lstm.onnx");
    let mut lstm = OnnxForecaster::load(&model, None)
        .expect("the shipped model loads (set ORT_DYLIB_PATH to libonnxruntime.so.1.31.1)");
    let mut group = c.benchmark_group("forecast");
    for n in [1usize, 64] {
        let data = windows(n);
        let refs: Vec<&[MinutePoint]> = data.iter().map(|w| w.as_slice()).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("lstm/{n}_windows"), |b| {
            b.iter(|| black_box(lstm.forecast(black_box(&refs)).unwrap()))
        });
        group.bench_function(format!("baseline/{n}_windows"), |b| {
            b.iter(|| black_box(Fallback.forecast(black_box(&refs)).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
