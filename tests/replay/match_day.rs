//! A real spike: the World Cup 1998 semi-final's per-minute ramp (`replay::worldcup`) on a
//! live-scores endpoint with a capacity. The forecast must see the crossing before the traffic
//! does, the cut must fall on STD browsing only, and PRM fans must never be denied.

use sluice::replay::ReplayOptions;
use sluice_core::validate::InputLimits;

use super::{decisions, lstm, options, trace};

#[test]
fn the_world_cup_ramp_is_forecast_over_capacity_before_it_gets_there() {
    let t = trace("worldcup-spike", 4, 0.5);
    let rules = sluice::adapters::rules_file::load(
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/worldcup-spike.yaml"
        )),
        &InputLimits::default(),
    )
    .unwrap()
    .rules;
    let (report, rows) = decisions(
        &t,
        ReplayOptions {
            rules,
            forecaster: Some(lstm()),
            ..options(false)
        },
    );
    let tightened = report
        .pressure
        .iter()
        .find(|p| p.what == "tightened")
        .expect("a cut");
    let lead = report
        .lead_times
        .iter()
        .find(|l| l.series == "/api/scores")
        .unwrap_or_else(|| panic!("a lead time for scores: {:?}", report.lead_times));
    assert_eq!(lead.cut_ts, tightened.ts);
    let forecast_over = lead.forecast_over_ts.expect("the forecast crossed");
    let measured_over = lead.measured_over_ts.expect("the scores crossed");
    assert!(
        forecast_over < measured_over,
        "the forecast was not ahead: {lead:?}"
    );
    assert!(lead.lead_minutes.unwrap() >= 1.0, "{lead:?}");
    // The cut fell on STD browsing; PRM fans and scores were never denied by it.
    let denied = |endpoint: &str, tier: &str| {
        rows.iter()
            .filter(|r| r.0 == endpoint && r.1 == tier && !r.2)
            .count()
    };
    assert_eq!(
        denied("/api/scores", "PRM") + denied("/api/browse", "PRM"),
        0
    );
    assert_eq!(denied("/api/scores", "STD"), 0);
    assert!(denied("/api/browse", "STD") > 0, "the cut slowed nobody");
}
