//! `/metrics`: the metric catalogue (`service::metric_catalogue`) in the Prometheus text
//! format, read at each scrape and encoded by the `prometheus` crate, with the decision-duration
//! histogram and the process' own metrics. What each metric is and reads is the catalogue's;
//! this module only encodes. Nothing here is on a decision's path.

use prometheus::Encoder;
use prometheus::core::Collector;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::service::handles::Handles;
use crate::service::latency;
use crate::service::metric_catalogue::{CATALOGUE, DECISION_DURATION, Kind};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels<'a> = &'a [(&'a str, &'a str)];

/// The families of one scrape, in the order they are added.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

fn labels(pairs: Labels<'_>) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

impl Families {
    fn family(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        f.set_metric(metrics);
        self.0.push(f);
    }

    /// A counter or gauge family, one metric per (labels, value).
    fn values<'l, L: AsRef<[(&'l str, &'l str)]>>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) {
        let metrics = samples
            .into_iter()
            .map(|(l, v)| {
                let mut m = Metric::from_label(labels(l.as_ref()));
                if kind == MetricType::COUNTER {
                    let mut c = Counter::default();
                    c.set_value(v);
                    m.set_counter(c);
                } else {
                    let mut g = Gauge::default();
                    g.set_value(v);
                    m.set_gauge(g);
                }
                m
            })
            .collect();
        self.family(name, help, kind, metrics);
    }
}

/// The text of one scrape: every metric of the catalogue, the decision-duration histogram and
/// the process' own metrics.
pub fn render(h: &Handles) -> Vec<u8> {
    let mut f = Families::default();
    for def in CATALOGUE {
        let kind = match def.kind {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
        };
        let samples = (def.read)(h);
        let owned: Vec<(Vec<(&str, &str)>, f64)> = samples
            .iter()
            .map(|s| {
                (
                    s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect(),
                    s.value,
                )
            })
            .collect();
        f.values(def.prometheus, def.help, kind, owned);
    }
    decision_duration(&mut f, h);
    // The encoder refuses a family without samples (no rules yet, no forecast yet): leave it out.
    let mut families: Vec<MetricFamily> =
        f.0.into_iter()
            .filter(|f| !f.get_metric().is_empty())
            .collect();
    families.extend(prometheus::process_collector::ProcessCollector::for_self().collect());
    let mut out = Vec::with_capacity(16 * 1024);
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
        // Only a family without samples or with a bad name fails; say so in the text.
        tracing::error!(error = %e, "cannot encode the metrics");
        out.extend_from_slice(format!("# encoding failed: {e}\n").as_bytes());
    }
    out
}

fn decision_duration(f: &mut Families, h: &Handles) {
    let mut metrics = Vec::new();
    for (method, histogram) in h.latency.methods() {
        let r = histogram.read();
        let mut m = Metric::from_label(labels(&[("method", method)]));
        let mut hist = Histogram::default();
        hist.set_sample_count(r.count);
        hist.set_sample_sum(r.sum_seconds);
        hist.set_bucket(
            latency::BOUNDS
                .iter()
                .zip(r.cumulative)
                .map(|(&bound, count)| {
                    let mut b = Bucket::default();
                    b.set_upper_bound(bound);
                    b.set_cumulative_count(count);
                    b
                })
                .collect(),
        );
        m.set_histogram(hist);
        metrics.push(m);
    }
    f.family(
        DECISION_DURATION.prometheus,
        DECISION_DURATION.help,
        MetricType::HISTOGRAM,
        metrics,
    );
}
