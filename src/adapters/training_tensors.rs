//! `sluice export-features`: the training tensors, from the same encoding the service forecasts
//! with (`core::forecast::features`). The Python trainer (`models/train.py`) only fits and exports.
//!
//! Writes into a directory: `x.npy` (N × WINDOW × DIM, float32), `y.npy` (N × HORIZON request
//! counts, float32), `scale.npy` (N, float32: each window's scale) and `meta.json` (feature
//! names and order, window, horizon, sources, sample count).

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use sluice_core::forecast::features::{self, DIM, NAMES};
use sluice_core::forecast::{HORIZON, MinutePoint, WINDOW};

/// Training samples drawn from series.
#[derive(Debug, Default)]
pub struct Samples {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub scale: Vec<f32>,
    pub sources: Vec<SourceInfo>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SourceInfo {
    pub series: String,
    pub minutes: usize,
    pub samples: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct Selection {
    /// Only windows whose forecast minutes all lie in `[from, to)` (minutes, as in the series).
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// One window every `stride` minutes.
    pub stride: usize,
    /// Series whose mean is below this many requests a minute are skipped (mostly zeros teach
    /// nothing but noise).
    pub min_mean: f64,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            from: None,
            to: None,
            stride: 1,
            min_mean: 0.5,
        }
    }
}

impl Samples {
    pub fn len(&self) -> usize {
        self.scale.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    /// Adds every window of `series` the selection allows.
    pub fn add_series(&mut self, name: &str, series: &[MinutePoint], sel: &Selection) {
        let known: Vec<f64> = series
            .iter()
            .filter(|p| p.is_known())
            .map(|p| p.requests)
            .collect();
        let mean = known.iter().sum::<f64>() / known.len().max(1) as f64;
        let before = self.len();
        if mean >= sel.min_mean && series.len() >= WINDOW + HORIZON {
            let mut o = WINDOW - 1;
            while o + HORIZON < series.len() {
                let first_target = series[o + 1].minute;
                let last_target = series[o + HORIZON].minute;
                let inside = sel.from.is_none_or(|f| first_target >= f)
                    && sel.to.is_none_or(|t| last_target < t);
                let known = series[o + 1 - WINDOW..=o + HORIZON]
                    .iter()
                    .all(MinutePoint::is_known);
                if inside && known {
                    let window = &series[o + 1 - WINDOW..=o];
                    let scale = features::encode_into(window, &mut self.x);
                    self.scale.push(scale as f32);
                    self.y.extend(
                        series[o + 1..=o + HORIZON]
                            .iter()
                            .map(|p| p.requests as f32),
                    );
                }
                o += sel.stride.max(1);
            }
        }
        self.sources.push(SourceInfo {
            series: name.to_string(),
            minutes: series.len(),
            samples: self.len() - before,
        });
    }

    pub fn write(&self, dir: &Path, what: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let n = self.len();
        write_npy(&dir.join("x.npy"), &[n, WINDOW, DIM], &self.x)?;
        write_npy(&dir.join("y.npy"), &[n, HORIZON], &self.y)?;
        write_npy(&dir.join("scale.npy"), &[n], &self.scale)?;
        let meta = serde_json::json!({
            "features": NAMES,
            "window": WINDOW,
            "horizon": HORIZON,
            "normalisation": "scale = max(1, mean requests over the window); log_requests_rel = ln(1+requests) - ln(1+scale); outputs are ln(1+requests) - ln(1+scale) for the next `horizon` minutes",
            "source": what,
            "samples": n,
            "series": self.sources,
        });
        std::fs::write(
            dir.join("meta.json"),
            serde_json::to_string_pretty(&meta)? + "\n",
        )
    }
}

/// Writes a little-endian float32 array in NumPy's `.npy` format (version 1.0).
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape matches data"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of
    // 64 bytes and ended by a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for v in data {
        out.write_all(&v.to_le_bytes())?;
    }
    out.flush()
}
