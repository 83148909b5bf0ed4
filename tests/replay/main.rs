//! Replay-driven end-to-end tests: generated, labelled scenarios run through the real engine and
//! learning loop in virtual time, and the quality floors of the learning loop are asserted with
//! a margin. No network, no database: a replay needs neither.

mod corrections;
mod match_day;
mod minute_paths;

use sluice::adapters::moka_store::StoreKind;
use sluice::replay::report::Report;
use sluice::replay::scenario::{self, Params};
use sluice::replay::{ReplayOptions, run};
use sluice_core::engine::EngineConfig;
use sluice_core::learn::learner::LearnerConfig;
use sluice_core::validate::InputLimits;

fn trace(scenario: &str, seed: u64, scale: f64) -> Vec<u8> {
    let requests = scenario::generate(&Params {
        scenario: scenario.into(),
        seed,
        scale,
        minutes: None,
        start_ms: None,
        delay: 0,
    })
    .unwrap();
    let mut out = Vec::new();
    scenario::write_csv(&mut out, &requests).unwrap();
    out
}

fn options(shadow: bool) -> ReplayOptions<'static> {
    let rules = sluice::adapters::rules_file::load(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rules.yaml")),
        &InputLimits::default(),
    )
    .unwrap()
    .rules;
    let mut learner = LearnerConfig::default();
    learner.policy.shadow = shadow;
    ReplayOptions {
        rules,
        engine: EngineConfig::default(),
        bucket_store: StoreKind::Sharded,
        learner,
        ..ReplayOptions::default()
    }
}

fn replay(trace: &[u8], shadow: bool) -> Report {
    run(trace, options(shadow), None).unwrap()
}

fn flash_crowd_flagged(r: &Report) -> Vec<&str> {
    // The generator gives flash-crowd visitors addresses in 10.77.0.0/16.
    r.flagged
        .iter()
        .filter(|f| f.client.starts_with("10.77."))
        .map(|f| f.client.as_str())
        .collect()
}

/// The floors from the issue, asserted with a margin: precision and recall ≥ 0.97 (floor 0.95),
/// median detection delay ≤ 75 s (floor 90), benign denied ≤ 0.3% (floor 0.5%), and no
/// flash-crowd client flagged.
fn check_quality(what: &str, r: &Report) {
    let c = &r.clients;
    let (p, rc) = (c.precision.unwrap(), c.recall.unwrap());
    assert!(
        p >= 0.97,
        "{what}: precision {p} ({:?})",
        r.flagged
            .iter()
            .filter(|f| f.label == "benign")
            .collect::<Vec<_>>()
    );
    assert!(
        rc >= 0.97,
        "{what}: recall {rc}, {} attackers missed",
        c.false_negatives
    );
    let delay = c
        .detection_delay_seconds
        .as_ref()
        .expect("attacks detected")
        .p50;
    assert!(delay <= 75.0, "{what}: median detection delay {delay} s");
    let benign = r.benign_denied_ratio.unwrap();
    assert!(
        benign <= 0.003,
        "{what}: {benign} of benign requests denied"
    );
    assert_eq!(
        flash_crowd_flagged(r),
        Vec::<&str>::new(),
        "{what}: flash-crowd clients flagged"
    );
    // Signed-in users are scored too; no benign one may be acted on.
    let benign_users: Vec<_> = r
        .flagged
        .iter()
        .filter(|f| f.client.starts_with("user:") && f.label == "benign")
        .collect();
    assert!(
        benign_users.is_empty(),
        "{what}: benign users flagged {benign_users:?}"
    );
}

#[test]
fn mixed_scenario_meets_the_quality_floors() {
    let r = replay(&trace("mix", 11, 0.6), false);
    check_quality("mix", &r);
    assert!(r.denied_anomaly > 0, "attackers were actually limited");
    let ddos = &r.by_label["attack:ddos"];
    assert!(
        ddos.denied * 2 > ddos.requests,
        "most DDoS requests denied: {ddos:?}"
    );
}

/// Three replicas behind round robin, each with its own engine and learner, exchanging their
/// minutes as a live fleet does: the same floors as one instance on the same trace, and every
/// replica holds the actions (its own or the fleet's).
#[test]
fn a_fleet_of_three_meets_the_same_floors() {
    let trace = trace("mix", 11, 0.6);
    let r = run(
        trace.as_slice(),
        ReplayOptions {
            replicas: 3,
            ..options(false)
        },
        None,
    )
    .unwrap();
    check_quality("mix over 3 replicas", &r);
    let ddos = &r.by_label["attack:ddos"];
    assert!(
        ddos.denied * 2 > ddos.requests,
        "most DDoS requests denied on every replica: {ddos:?}"
    );
}

#[test]
fn each_attack_alone_is_caught_and_a_flash_crowd_is_left_alone() {
    for scenario in ["ddos", "credential-stuffing", "scraper"] {
        let r = replay(&trace(scenario, 12, 0.5), false);
        check_quality(scenario, &r);
    }
    for scenario in ["flash-crowd", "normal"] {
        let r = replay(&trace(scenario, 13, 0.5), false);
        assert_eq!(r.clients.flagged, 0, "{scenario}: {:?}", r.flagged);
        assert_eq!(
            r.denied, 0,
            "{scenario}: benign traffic under the static rules"
        );
    }
}

#[test]
fn an_account_spread_over_proxies_is_caught_by_its_user_key() {
    let r = replay(&trace("account-scraper", 17, 1.0), false);
    // No proxy address is busy enough to act on; each account is.
    assert_eq!(r.clients.flagged, 0, "{:?}", r.flagged);
    let u = &r.users;
    assert_eq!(
        (u.true_positives, u.false_negatives, u.false_positives),
        (3, 0, 0),
        "{:?}",
        r.flagged
    );
    assert!(u.detection_delay_seconds.as_ref().unwrap().p50 <= 75.0);
    let mut accounts: Vec<&str> = r.flagged.iter().map(|f| f.client.as_str()).collect();
    accounts.sort();
    assert_eq!(accounts, ["user:acct0", "user:acct1", "user:acct2"]);
    // The action follows the account from address to address.
    let attack = &r.by_label["attack:account_scraper"];
    assert!(
        attack.denied * 2 > attack.requests,
        "most of the accounts' requests denied: {attack:?}"
    );
    assert!(r.benign_denied_ratio.unwrap() <= 0.003);
}

#[test]
fn shadow_mode_denies_nothing_and_records_everything() {
    let t = trace("ddos", 14, 0.4);
    let enforced = replay(&t, false);
    let shadow = replay(&t, true);
    assert!(shadow.shadow && !enforced.shadow);
    assert_eq!(shadow.denied_anomaly, 0);
    assert!(enforced.denied_anomaly > 0);
    // The same clients are flagged (features exclude anomaly denials, so enforcement does not
    // change what is learnt about a client's own behaviour much); at least every attacker.
    assert_eq!(
        shadow.clients.true_positives,
        enforced.clients.true_positives
    );
    assert!(shadow.clients.recall.unwrap() >= 0.97);
}

#[test]
fn replays_are_deterministic() {
    let t = trace("mix", 15, 0.3);
    let a = replay(&t, false);
    let b = replay(&t, false);
    assert_eq!(a.flagged, b.flagged);
    assert_eq!((a.allowed, a.denied), (b.allowed, b.denied));
}

#[test]
fn decisions_file_has_a_row_per_request() {
    let t = trace("credential-stuffing", 16, 0.3);
    let mut out = Vec::new();
    let r = run(&t[..], options(false), Some(&mut out)).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("ts,client,endpoint,allowed,reason,score,rule,label,tier")
    );
    assert_eq!(lines.clone().count() as u64, r.requests);
    // Credential stuffers are throttled by the failures signal (a block needs the forest's
    // strongest scores or the denylist): their denials say so.
    assert!(
        lines.any(|l| l.contains(",0,throttled_anomaly,") || l.contains(",0,blocked_anomaly,")),
        "some request denied as an anomaly"
    );
}

#[test]
fn a_trace_out_of_order_is_rejected_naming_the_line() {
    let text = "ts,client,endpoint\n1767225700000,a,/x\n1767225600000,a,/x\n";
    let e = run(text.as_bytes(), options(false), None).unwrap_err();
    let message = e.to_string();
    assert!(
        message.starts_with("line 3:") && message.contains("time order"),
        "{message}"
    );
    // A few seconds of disorder are fine.
    let text = "ts,client,endpoint\n1767225700000,a,/x\n1767225695000,a,/x\n";
    assert_eq!(
        run(text.as_bytes(), options(false), None).unwrap().requests,
        2
    );
}

/// The shipped LSTM on the real ONNX Runtime (scripts/test.sh sets ORT_DYLIB_PATH).
fn lstm() -> Box<dyn sluice_core::forecast::Forecaster + Send> {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lstm.onnx");
    Box::new(
        sluice::adapters::onnx::OnnxForecaster::load(&model, None).expect(
            "the shipped model loads (ORT_DYLIB_PATH must name ONNX Runtime: run scripts/test.sh)",
        ),
    )
}

/// Decisions of a replay: (endpoint, tier, allowed, reason) per request.
fn decisions(
    trace: &[u8],
    options: ReplayOptions,
) -> (Report, Vec<(String, String, bool, String)>) {
    let mut out = Vec::new();
    let report = run(trace, options, Some(&mut out)).unwrap();
    let mut reader = csv::Reader::from_reader(&out[..]);
    let rows = reader
        .deserialize::<std::collections::HashMap<String, String>>()
        .map(|r| {
            let r = r.unwrap();
            (
                r["endpoint"].clone(),
                r["tier"].clone(),
                r["allowed"] == "1",
                r["reason"].clone(),
            )
        })
        .collect();
    (report, rows)
}

#[test]
fn a_payment_spike_cuts_std_browsing_before_the_peak_and_spares_prm_payments() {
    let t = trace("payment-spike", 21, 1.0);
    let spike_rules = || {
        sluice::adapters::rules_file::load(
            std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/payment-spike.yaml"
            )),
            &InputLimits::default(),
        )
        .unwrap()
        .rules
    };
    let with = |adaptive: bool| ReplayOptions {
        rules: spike_rules(),
        forecaster: Some(lstm()),
        adaptive,
        ..options(false)
    };
    let (adaptive, rows) = decisions(&t, with(true));
    let (fixed, fixed_rows) = decisions(&t, with(false));

    // The cut comes before the peak (minute 82 of the scenario) and is lifted after the sale.
    let minute = |ts: i64| (ts - scenario::START_MS) / 60_000;
    let tightened = adaptive
        .pressure
        .iter()
        .find(|p| p.what == "tightened")
        .expect("a cut");
    assert!(
        minute(tightened.ts) < 82,
        "cut at minute {}: {tightened:?}",
        minute(tightened.ts)
    );
    assert_eq!(tightened.factor, 0.5);
    // Lead time: when the served forecast and the measured payments first went over capacity
    // in the episode, and by how many minutes the forecast was ahead (here it is behind: the
    // selector serves `last` on this series, whose recent error is the lowest; see docs/learning.md).
    let lead = adaptive
        .lead_times
        .iter()
        .find(|l| l.series == "/api/payment")
        .unwrap_or_else(|| panic!("a lead time for payments: {:?}", adaptive.lead_times));
    let forecast_over = lead.forecast_over_ts.expect("the forecast crossed");
    let measured_over = lead.measured_over_ts.expect("the payments crossed");
    assert_eq!(lead.cut_ts, tightened.ts);
    assert!(
        lead.forecast_said_for_ts.unwrap() > forecast_over,
        "{lead:?}"
    );
    assert_eq!(
        lead.lead_minutes,
        Some((measured_over - forecast_over) as f64 / 60_000.0)
    );
    let restored = adaptive
        .pressure
        .iter()
        .find(|p| p.what == "restored")
        .expect("lifted");
    assert!(
        minute(restored.ts) >= 100,
        "lifted at minute {}",
        minute(restored.ts)
    );
    assert!(fixed.pressure.is_empty(), "static limits never change");

    // The cut fell on STD browsing only; PRM payments went through in both replays.
    for (what, rows) in [("adaptive", &rows), ("static", &fixed_rows)] {
        let prm_payments: Vec<_> = rows
            .iter()
            .filter(|r| r.0 == "/api/payment" && r.1 == "PRM")
            .collect();
        let allowed = prm_payments.iter().filter(|r| r.2).count();
        assert!(
            allowed as f64 >= 0.999 * prm_payments.len() as f64,
            "{what}: {allowed} of {} PRM payments allowed",
            prm_payments.len()
        );
    }
    let cut: Vec<_> = rows
        .iter()
        .filter(|r| r.3 == "throttled_forecast")
        .collect();
    assert!(!cut.is_empty(), "some STD browsing was cut");
    assert!(
        cut.iter().all(|r| r.0 == "/api/browse" && r.1 == "STD"),
        "{:?}",
        &cut[..3.min(cut.len())]
    );
    assert_eq!(adaptive.denied_forecast as usize, cut.len());
    assert!(fixed_rows.iter().all(|r| r.3 != "throttled_forecast"));

    // The forecaster scored itself on the total traffic once its hour of history was there.
    let f = adaptive.forecast.as_ref().expect("forecast block");
    assert_eq!(f.forecaster, "lstm");
    assert!(f.minutes >= 55, "{f:?}");
    assert!(f.smape < 0.15, "{f:?}");
    // Which candidate spoke for each watched series at the end, and why.
    let speaking: Vec<&str> = f.methods.iter().map(|m| m.series.as_str()).collect();
    assert!(
        speaking.contains(&"*") && speaking.contains(&"/api/payment"),
        "{speaking:?}"
    );
    let names = [
        "model", "last", "mean5", "smooth", "blend", "median30", "day", "week",
    ];
    for m in &f.methods {
        assert!(names.contains(&m.at_1) && names.contains(&m.at_15), "{m:?}");
        assert!(m.why.contains("recent sMAPE"), "{m:?}");
    }
}

/// What `sluice suggest-limits --trace PATH` prints (it must succeed).
fn suggest_limits(path: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["suggest-limits", "--trace"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `sluice suggest-limits` prints a rules file that the rules parser accepts, with a site-wide
/// per-client limit learned from the trace.
#[test]
fn suggested_limits_are_a_valid_rules_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.csv");
    let world = sluice::replay::worlds::generate(3, 300);
    let mut file = std::fs::File::create(&path).unwrap();
    scenario::write_csv(&mut file, &world.requests).unwrap();
    let text = suggest_limits(&path);
    let parsed = sluice::adapters::rules_file::parse("suggested", &text, &InputLimits::default())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let site = parsed
        .rules
        .iter()
        .find(|r| r.id() == "sluice|remote_address")
        .expect("a per-client limit for the whole site");
    assert!(site.limits[0].rate.unwrap().requests_per_unit >= 1);
}

/// An endpoint both tiers use is one descriptor in the suggested file (written once per tier,
/// `rules check` refused it: "the same descriptor is defined twice"), with the larger tier's
/// limit and both tiers' figures.
#[test]
fn an_endpoint_both_tiers_use_is_suggested_once() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.csv");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(
        file,
        "ts,client,user,tier,endpoint,method,user_agent,status,label"
    )
    .unwrap();
    // 60 clients a minute for 40 minutes, half STD and half PRM (PRM busier), all on /api/search.
    let start = 1_700_000_000i64;
    let mut rows = Vec::new();
    for minute in 0..40 {
        for c in 0..60 {
            let (tier, per_minute) = if c % 2 == 0 { ("STD", 3) } else { ("PRM", 6) };
            for r in 0..per_minute {
                let t = start + minute * 60 + (c * 7 + r * 9) % 60;
                rows.push((
                    t,
                    format!("{t}000,10.0.0.{c},u{c},{tier},/api/search,GET,Mozilla/5.0,200,benign"),
                ));
            }
        }
    }
    rows.sort();
    for (_, row) in rows {
        writeln!(file, "{row}").unwrap();
    }
    drop(file);
    let text = suggest_limits(&path);
    assert_eq!(text.matches("value: \"/api/search\"").count(), 1, "{text}");
    assert!(
        text.contains("STD: p99") && text.contains("PRM: p99"),
        "{text}"
    );
    sluice::adapters::rules_file::parse("suggested", &text, &InputLimits::default())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
}

/// `sluice eval-detection`'s arguments, parsed as the command line would.
fn eval_detection_args(flags: &[&str]) -> sluice::cli::eval_detection::EvalDetectionArgs {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: sluice::cli::eval_detection::EvalDetectionArgs,
    }
    <Cli as clap::Parser>::parse_from(
        std::iter::once("eval-detection").chain(flags.iter().copied()),
    )
    .args
}

/// Detection on a few held-out generated worlds (the first three held-out seeds, chosen before
/// any was looked at; populations capped for a test build), against the floors with a
/// margin: precision ≥ 0.97 and recall ≥ 0.93 (floors 0.95 and 0.90), no PRM client or
/// flash-crowd newcomer acted on, benign denied ≤ 0.3% (0.5%), median delay ≤ 60 s.
#[test]
fn held_out_worlds_meet_the_detection_floors() {
    use sluice::cli::eval_detection::{figures, replay_world, world_of};
    use sluice::replay::worlds;
    // The defaults, as `sluice eval-detection` runs them.
    let args = eval_detection_args(&[]);
    for seed in worlds::HELD_OUT_SEEDS.take(3) {
        let world = world_of("mixed", seed, 1_500);
        let report = replay_world(&world.requests, &args, Vec::new()).unwrap();
        let what = format!("world {seed} ({})", world.params);
        let f = figures(seed, world.attackers, world.attacks, &report);
        assert!(f.precision >= 0.97, "{what}: precision {}", f.precision);
        assert!(f.recall >= 0.93, "{what}: recall {}", f.recall);
        assert_eq!(f.prm_acted_on, 0, "{what}: PRM clients acted on");
        assert_eq!(f.flash_flagged, 0, "{what}: flash-crowd clients flagged");
        assert!(
            f.benign_denied_ratio <= 0.003,
            "{what}: benign denied {}",
            f.benign_denied_ratio
        );
        assert!(
            f.delay_p50 <= 60.0,
            "{what}: median delay {} s",
            f.delay_p50
        );
    }
}

/// Issue 27: sites where attackers are many of the clients that fail (10–80%), bursts from the
/// first minute, small sites among them. Three scanned worlds (seeds of the test set, never
/// the design seeds) against the floors: attacks acted on / attacks whose requests mostly fail
/// ≥ 0.90, precision ≥ 0.95, people acted on ≤ 5%, benign requests denied ≤ 0.5%, median delay
/// ≤ 60 s.
#[test]
fn scanned_worlds_meet_the_detection_floors() {
    use sluice::cli::eval_detection::{figures, replay_world, world_of};
    use sluice::replay::scanned;
    let args = eval_detection_args(&["--family", "scanned"]);
    for seed in scanned::TEST_SEEDS {
        let world = world_of("scanned", seed, 1_000);
        let report = replay_world(&world.requests, &args, Vec::new()).unwrap();
        let what = format!("scanned world {seed} ({})", world.params);
        let f = figures(seed, world.attackers, world.attacks, &report);
        assert!(
            report.clients.failing_attacks > 0,
            "{what}: no failing attack"
        );
        assert!(
            f.failing_recall >= 0.90,
            "{what}: failing recall {}",
            f.failing_recall
        );
        assert!(f.precision >= 0.95, "{what}: precision {}", f.precision);
        assert!(
            f.people_acted_on <= 0.05,
            "{what}: people acted on {}",
            f.people_acted_on
        );
        assert!(
            f.benign_denied_ratio <= 0.005,
            "{what}: benign denied {}",
            f.benign_denied_ratio
        );
        assert!(
            f.delay_p50 <= 60.0,
            "{what}: median delay {} s",
            f.delay_p50
        );
    }
}
