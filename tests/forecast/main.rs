//! The forecaster end to end: the shipped ONNX model on the real ONNX Runtime (the library
//! `scripts/test.sh` fetches into `ORT_DYLIB_PATH`), its metadata against the feature encoder,
//! the fallback when the runtime or the model is missing or broken, `sluice eval-forecast` and
//! `sluice export-features` as a user runs them. Test series are generated here.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice::adapters::onnx::{ModelMeta, OnnxForecaster, TEST_VECTOR_TOLERANCE, meta_path};
use sluice_core::forecast::features::{self, DIM, NAMES};
use sluice_core::forecast::{Forecaster, HORIZON, MinutePoint, WINDOW};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lstm.onnx")
}

fn runtime() -> PathBuf {
    PathBuf::from(std::env::var_os("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH must name libonnxruntime.so.1.31.1: run scripts/test.sh, or export ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)",
    ))
}

fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// A week and a bit of a daily cycle with deterministic noise, as `minute,requests` CSV.
fn series_csv(days: usize, scale: f64) -> String {
    let mut out = String::from("minute,requests\n");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for m in 0..days * 1440 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let day = (std::f64::consts::TAU * (m % 1440) as f64 / 1440.0).sin();
        let noise = (x % 1000) as f64 / 1000.0 - 0.5;
        let level = scale * (1.0 + 0.6 * day + 0.3 * noise);
        out.push_str(&format!("{m},{}\n", level.max(0.0).round()));
    }
    out
}

fn write_temp(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_shipped_model_reproduces_the_outputs_recorded_at_export() {
    let meta = ModelMeta::load(&meta_path(&model())).unwrap();
    assert!(meta.test_vectors.len() >= 3);
    let mut f = OnnxForecaster::load(&model(), Some(&runtime())).unwrap();
    for v in &meta.test_vectors {
        let got = f.run_raw(&v.input, 1).unwrap();
        for (a, b) in got.iter().zip(&v.output) {
            assert!(
                (a - b).abs() <= TEST_VECTOR_TOLERANCE,
                "{got:?} vs {:?}",
                v.output
            );
        }
    }
    // A batch gives the same answers as one at a time.
    let input: Vec<f32> = meta
        .test_vectors
        .iter()
        .flat_map(|v| v.input.clone())
        .collect();
    let batch = f.run_raw(&input, meta.test_vectors.len()).unwrap();
    for (i, v) in meta.test_vectors.iter().enumerate() {
        let one = f.run_raw(&v.input, 1).unwrap();
        for (a, b) in one.iter().zip(&batch[i * HORIZON..(i + 1) * HORIZON]) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}

#[test]
fn forecasts_follow_the_level_of_any_scale() {
    let mut f = OnnxForecaster::load(&model(), Some(&runtime())).unwrap();
    for level in [3.0, 40.0, 5_000.0] {
        let window: Vec<MinutePoint> = (0..WINDOW as i64)
            .map(|m| MinutePoint::requests_only(12 * 60 + m, level))
            .collect();
        let forecast = f.forecast(&[&window]).unwrap()[0];
        for y in forecast {
            assert!(
                y > level * 0.5 && y < level * 1.5,
                "a flat series at {level} forecast as {forecast:?}"
            );
        }
    }
    // A series that stopped is forecast to stay stopped.
    let stopped: Vec<MinutePoint> = (0..WINDOW as i64)
        .map(|m| MinutePoint::requests_only(m, if m < 40 { 50.0 } else { 0.0 }))
        .collect();
    assert_eq!(f.forecast(&[&stopped]).unwrap()[0], [0.0; HORIZON]);
}

#[test]
fn metadata_feature_order_is_what_export_features_writes() {
    let meta = ModelMeta::load(&meta_path(&model())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let series = write_temp(&dir, "s.csv", &series_csv(1, 20.0));
    let out = dir.path().join("tensors");
    let status = sluice()
        .args(["export-features", "--series"])
        .arg(&series)
        .arg("--out")
        .arg(&out)
        .args(["--stride", "7"])
        .status()
        .unwrap();
    assert!(status.success());
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    let names: Vec<String> = serde_json::from_value(exported["features"].clone()).unwrap();
    assert_eq!(names, meta.features);
    assert_eq!(names, NAMES);
    assert_eq!(exported["window"], WINDOW);
    assert_eq!(exported["horizon"], HORIZON);
    // The tensors are NumPy float32 arrays of the advertised shapes.
    let n = exported["samples"].as_u64().unwrap() as usize;
    assert_eq!(n, (1440 - WINDOW - HORIZON) / 7 + 1);
    for (file, shape) in [
        ("x.npy", format!("({n}, {WINDOW}, {DIM})")),
        ("y.npy", format!("({n}, {HORIZON})")),
        ("scale.npy", format!("({n},)")),
    ] {
        let bytes = std::fs::read(out.join(file)).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + len) % 64, 0, "{file}: header aligned");
        let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
        assert!(
            header.contains("'descr': '<f4'") && header.contains(&shape),
            "{header}"
        );
        let elements: usize = match file {
            "x.npy" => n * WINDOW * DIM,
            "y.npy" => n * HORIZON,
            _ => n,
        };
        assert_eq!(bytes.len(), 10 + len + 4 * elements, "{file}");
    }
    // The first window in x.npy is exactly the encoder's output for the first hour.
    let points = sluice::adapters::series_file::read(series_csv(1, 20.0).as_bytes()).unwrap();
    let expected = features::encode(&points[..WINDOW]).input;
    let bytes = std::fs::read(out.join("x.npy")).unwrap();
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let first: Vec<f32> = bytes[10 + len..10 + len + 4 * WINDOW * DIM]
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(first, expected);
}

#[test]
fn eval_forecast_reports_every_method_at_every_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let series = write_temp(&dir, "s.csv", &series_csv(9, 30.0));
    let run_on = |series: &std::path::Path, from: Option<&str>| -> serde_json::Value {
        let mut c = sluice();
        c.args(["eval-forecast", "--json", "--series"]).arg(series);
        if let Some(f) = from {
            c.args(["--from", f]);
        }
        let out = c.env("ORT_DYLIB_PATH", runtime()).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let run = |from: Option<&str>| run_on(&series, from);
    let all = run(None);
    assert_eq!(all["forecaster"], "lstm");
    // Minutes after a week of warm-up (the `week` baseline), all known.
    assert_eq!(all["minutes_evaluated"], 2 * 1440);
    for h in ["1", "5", "15"] {
        for method in ["selected", "model", "last", "mean5", "day", "week"] {
            let s = &all["horizons"][h][method];
            assert!(s["mae"].as_f64().unwrap() >= 0.0, "{h} {method}: {s}");
            let smape = s["smape"].as_f64().unwrap();
            assert!((0.0..=2.0).contains(&smape), "{h} {method}: {s}");
        }
    }
    // On a smooth daily cycle the model beats yesterday's value one minute ahead.
    let model = all["horizons"]["1"]["model"]["smape"].as_f64().unwrap();
    let last = all["horizons"]["1"]["last"]["smape"].as_f64().unwrap();
    assert!(model < last, "model {model} vs last {last}");
    // What is served is never much worse than the best baseline, and says what it chose.
    for h in ["1", "15"] {
        let m = &all["horizons"][h];
        let best = ["last", "mean5", "day", "week"]
            .iter()
            .map(|b| m[b]["smape"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        let served = m["selected"]["smape"].as_f64().unwrap();
        assert!(
            served <= best * 1.02,
            "{h}: selected {served} vs best baseline {best}"
        );
        let shares = all["selected_methods"][h].as_object().unwrap();
        let total: f64 = shares.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 0.01, "{h}: {shares:?}");
    }
    // A series of a few hours (a trace's) is scored against the baselines it is long enough for.
    let short: String = std::iter::once("minute,requests\n".to_string())
        .chain((0..200).map(|m| format!("{m},{}\n", 100 + (m * 7) % 13)))
        .collect();
    let short = run_on(&write_temp(&dir, "short.csv", &short), None);
    assert_eq!(short["minutes_evaluated"], 200 - 74);
    let methods: Vec<&str> = short["horizons"]["1"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(methods, ["last", "mean5", "model", "selected"]);
    let later = run(Some("11520"));
    assert_eq!(later["minutes_evaluated"], 1440);
}

#[test]
fn without_the_runtime_or_a_sound_model_forecasting_falls_back_to_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let series = write_temp(&dir, "s.csv", &series_csv(8, 30.0));
    // A broken model: the shipped metadata beside a file that is not the model.
    let broken = dir.path().join("broken.onnx");
    std::fs::write(&broken, b"not an onnx model").unwrap();
    std::fs::copy(meta_path(&model()), meta_path(&broken)).unwrap();
    // A model whose metadata disagrees with the encoder's features.
    let reordered = dir.path().join("reordered.onnx");
    std::fs::copy(model(), &reordered).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(meta_path(&model())).unwrap()).unwrap();
    meta["features"].as_array_mut().unwrap().swap(0, 1);
    std::fs::write(meta_path(&reordered), meta.to_string()).unwrap();
    let missing_runtime = dir.path().join("libonnxruntime.so.missing");
    // (what, runtime library, model, the reason given)
    let cases: [(&str, &Path, &Path, &str); 4] = [
        (
            "no runtime library",
            &missing_runtime,
            &model(),
            "cannot be loaded: no such file",
        ),
        (
            "no model file",
            &runtime(),
            &dir.path().join("none.onnx"),
            "none.json",
        ),
        (
            "a file that is no model",
            &runtime(),
            &broken,
            "broken.onnx",
        ),
        (
            "features in another order",
            &runtime(),
            &reordered,
            "differ from the encoder",
        ),
    ];
    for (what, dylib, model_path, reason) in cases {
        let out = sluice()
            .args(["eval-forecast", "--json", "--series"])
            .arg(&series)
            .arg("--forecast-model")
            .arg(model_path)
            .env("ORT_DYLIB_PATH", dylib)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {stderr}");
        assert!(
            stderr.contains("falls back") || stderr.contains("fallback"),
            "{what}: {stderr}"
        );
        assert!(stderr.contains(reason), "{what}: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["forecaster"], "baseline:mean5", "{what}");
        // The fallback is the mean5 baseline, so it scores exactly as mean5 does.
        assert_eq!(
            report["horizons"]["1"]["model"], report["horizons"]["1"]["mean5"],
            "{what}"
        );
    }
}

/// Run from any directory, `eval-forecast` finds the shipped model as `serve` and `replay` do
/// (beside the binary), instead of scoring the fallback.
#[test]
fn eval_forecast_finds_the_model_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let series = write_temp(&dir, "s.csv", &series_csv(9, 30.0));
    let elsewhere = tempfile::tempdir().unwrap();
    let out = sluice()
        .args(["eval-forecast", "--json", "--series"])
        .arg(&series)
        .current_dir(elsewhere.path())
        .env("ORT_DYLIB_PATH", runtime())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["forecaster"],
        "lstm",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_series_is_refused_naming_the_line() {
    // (what, file text, expected start of the message)
    let cases = [
        (
            "no minute column",
            "time,requests\n1,2\n",
            "line 1: the header has no `minute`",
        ),
        (
            "bad minute",
            "minute,requests\n0,1\nyesterday,2\n",
            "line 3: minute \"yesterday\"",
        ),
        (
            "negative count",
            "minute,requests\n0,1\n1,-4\n",
            "line 3: requests \"-4\"",
        ),
        (
            "not a number",
            "minute,requests\n0,many\n",
            "line 2: requests \"many\"",
        ),
        (
            "out of order",
            "minute,requests\n5,1\n4,1\n",
            "line 3: minute 4 is not after",
        ),
        ("empty", "minute,requests\n", "the series has no rows"),
        (
            "a gap of years",
            "minute,requests\n0,1\n99999999,1\n",
            "line 3:",
        ),
        (
            "bad share",
            "minute,requests,error_rate\n0,1,1.5\n",
            "line 2: error_rate \"1.5\"",
        ),
    ];
    for (what, text, expected) in cases {
        let e = sluice::adapters::series_file::read(text.as_bytes()).unwrap_err();
        assert!(e.starts_with(expected), "{what}: {e}");
    }
    // Dates and gaps: a missing minute is unknown, not zero.
    let s = sluice::adapters::series_file::read(
        "minute,requests,in_outage\n1995-08-01 00:00:00,5,False\n1995-08-01T00:03:00Z,7,False\n"
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s[0].minute, 807_235_200 / 60);
    assert!(!s[1].is_known() && !s[2].is_known() && s[3].requests == 7.0);
}

#[tokio::test]
async fn export_features_reads_the_services_stored_traffic() {
    use sluice::store::history::{HistoryBatch, TrafficRow};
    use sluice::store::{Store, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("sluice.db").display());
    let store = Store::connect(&StoreOptions::new(&url)).await.unwrap();
    // 90 minutes of /api/payment: 30 STD and 10 PRM requests a minute, 4 errors, 2 denied;
    // and a quiet endpoint the export skips (mean below --min-mean).
    let start_ms = 1_767_225_600_000i64;
    let mut traffic = Vec::new();
    for m in 0..90i64 {
        let minute_ms = start_ms + m * 60_000;
        for (tier, requests, denied, errors) in [("STD", 30, 2, 4), ("PRM", 10, 0, 0)] {
            traffic.push(TrafficRow {
                minute_ms,
                endpoint: "/api/payment".into(),
                tier,
                requests,
                allowed: requests - denied,
                denied,
                denied_anomaly: 0,
                denied_cut: 0,
                errors,
            });
        }
        if m % 30 == 0 {
            traffic.push(TrafficRow {
                minute_ms,
                endpoint: "/rare".into(),
                tier: "STD",
                requests: 1,
                allowed: 1,
                denied: 0,
                denied_anomaly: 0,
                denied_cut: 0,
                errors: 0,
            });
        }
    }
    store
        .write_history(&HistoryBatch {
            traffic,
            ..HistoryBatch::default()
        })
        .await
        .unwrap();
    store.close().await;
    let out = dir.path().join("tensors");
    let status = sluice()
        .args(["export-features", "--database", &url, "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["samples"], 90 - WINDOW as u64 - HORIZON as u64 + 1);
    let series: Vec<(&str, u64)> = meta["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["series"].as_str().unwrap(),
                s["samples"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        series,
        [("database#/api/payment", 16), ("database#/rare", 0)]
    );
    // The first minute's features: flat traffic (relative 0), shares from the two tiers.
    let bytes = std::fs::read(out.join("x.npy")).unwrap();
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let first: Vec<f32> = bytes[10 + len..10 + len + 4 * DIM]
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let at = |name: &str| first[NAMES.iter().position(|n| *n == name).unwrap()];
    assert!(at("log_requests_rel").abs() < 1e-6);
    assert!((at("prm_share") - 0.25).abs() < 1e-6);
    assert!((at("error_rate") - 0.1).abs() < 1e-6);
    assert!((at("denied_share") - 0.05).abs() < 1e-6);
}
