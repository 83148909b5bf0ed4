//! One minute, two drivers: the same recorded traffic through the live service's minute loop
//! (`service::minute_loop::MinuteLoop::tick`, as the server calls it) and through a replay
//! (`replay::run`) closes the same minutes with the same actions, the same cuts and the same
//! history rows.

use std::sync::Arc;

use sluice::adapters::moka_store::{self, StoreKind};
use sluice::adapters::trace_file::{self, TraceError};
use sluice::replay::{ReplayOptions, run};
use sluice::service::backend_loads::BackendLoads;
use sluice::service::database::Database;
use sluice::service::history_writer::History;
use sluice::service::minute_loop::{MinuteLoop, MinuteLoopParts};
use sluice::service::model_slot::ModelArgs;
use sluice::service::model_slot::ModelSlot;
use sluice::store::history::HistoryBatch;
use sluice::store::history_rows::minute_batch;
use sluice_core::engine::EngineConfig;
use sluice_core::forecast::pressure::PressureConfig;
use sluice_core::learn::learner::LearnerConfig;
use sluice_core::matcher::RuleSet;
use sluice_core::minute::next_look;
use sluice_core::rules::Rule;
use sluice_core::time::{NANOS_PER_MILLI, NANOS_PER_SEC, Nanos};

const MINUTE: Nanos = 60 * NANOS_PER_SEC;
const INSTANCE: &str = "equivalence-test";

/// What one closed minute left: its history rows, the actions in force (client, kind) and the
/// cut factor the engine enforces afterwards.
#[derive(Debug, PartialEq)]
struct Minute {
    batch: HistoryBatch,
    actions: Vec<(String, &'static str)>,
    factor: f64,
}

fn rules(file: &str) -> Vec<Rule> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    sluice::adapters::rules_file::load(&path, &Default::default())
        .unwrap()
        .rules
}

fn learner() -> LearnerConfig {
    LearnerConfig::default()
}

/// The live path: an engine and the service's minute loop, fed the trace's requests at the
/// trace's times, the minute closed at each boundary and looked into at each `next_look` as the
/// server's loop does. Also returns the history batches the looks submitted.
fn live(trace: &[u8], rules: Vec<Rule>) -> (Vec<Minute>, Vec<HistoryBatch>) {
    let engine = Arc::new(moka_store::engine(
        EngineConfig::default(),
        StoreKind::Sharded,
    ));
    engine.replace_rules(RuleSet::build(0, rules));
    let (history, mut submitted) = History::new();
    let models = Arc::new(ModelSlot::new(ModelArgs {
        // No model: the statistical baseline forecasts, as in the replay below.
        forecast_model: "/nonexistent/lstm.onnx".into(),
        ort_dylib: None,
    }));
    let minute_loop = MinuteLoop::new(MinuteLoopParts {
        engine: engine.clone(),
        learner: learner(),
        pressure: PressureConfig::default(),
        adaptive: true,
        models,
        loads: Arc::new(BackendLoads::default()),
        history,
        database: Arc::new(Database::default()),
        instance: INSTANCE.into(),
        background: sluice::service::background::Background::start(),
    });
    let mut minutes = Vec::new();
    let mut looked = Vec::new();
    let mut close = |start: Nanos, looked: &mut Vec<HistoryBatch>| {
        looked.extend(std::iter::from_fn(|| submitted.try_recv().ok()));
        let closed = minute_loop.tick(start, start + MINUTE);
        let batch = submitted
            .try_recv()
            .expect("the minute's history was submitted");
        assert_eq!(
            engine.pressure(),
            closed.factor,
            "the cut the minute installed"
        );
        minutes.push(Minute {
            batch,
            actions: actions(&closed),
            factor: closed.factor,
        });
    };
    let mut start: Option<Nanos> = None;
    let mut looks = 0;
    trace_file::read::<_, TraceError>(trace, |row| {
        let now = row.ts_ms as Nanos * NANOS_PER_MILLI;
        let s = start.get_or_insert(now - now % MINUTE);
        while now >= *s + MINUTE {
            close(*s, &mut looked);
            *s += MINUTE;
            looks = 0;
        }
        while let Some(due) = next_look(*s, looks)
            && now >= due
        {
            looks += 1;
            minute_loop.look(*s, due);
        }
        let subject = row.subject();
        let verdict = engine.should_allow("sluice", &subject, 1, now);
        if !verdict.over_limit
            && let Some(status) = row.status
        {
            engine.report_outcome(&subject, status, now);
        }
        Ok(())
    })
    .unwrap();
    close(start.expect("a trace with rows"), &mut looked);
    (minutes, looked)
}

fn actions(closed: &sluice_core::minute::ClosedMinute) -> Vec<(String, &'static str)> {
    closed
        .tick
        .actions
        .sorted()
        .iter()
        .map(|a| (a.client.to_string(), a.kind.name()))
        .collect()
}

/// The replay path: `sluice replay`'s own driver, each closed minute turned into history rows
/// by the same conversion the live loop uses.
fn replayed(trace: &[u8], rules: Vec<Rule>) -> Vec<Minute> {
    let mut minutes = Vec::new();
    let mut on_minute = |closed: &sluice_core::minute::ClosedMinute| {
        minutes.push(Minute {
            batch: minute_batch(closed, INSTANCE),
            actions: actions(closed),
            factor: closed.factor,
        });
    };
    run(
        trace,
        ReplayOptions {
            rules,
            learner: learner(),
            bucket_store: StoreKind::Sharded,
            on_minute: Some(&mut on_minute),
            ..ReplayOptions::default()
        },
        None,
    )
    .unwrap();
    minutes
}

#[test]
fn the_live_minute_loop_and_a_replay_close_the_same_minutes() {
    // (scenario, seed, scale, rules file): attacks for actions, a payment spike for a cut.
    let cases = [
        ("mix", 5, 0.5, "deploy/rules.yaml"),
        ("payment-spike", 21, 1.0, "deploy/payment-spike.yaml"),
    ];
    for (scenario, seed, scale, rules_file) in cases {
        let trace = super::trace(scenario, seed, scale);
        let (live, looked) = live(&trace, rules(rules_file));
        let replayed = replayed(&trace, rules(rules_file));
        assert_eq!(live.len(), replayed.len(), "{scenario}: minutes closed");
        for (i, (l, r)) in live.iter().zip(&replayed).enumerate() {
            assert_eq!(l, r, "{scenario}: minute {i}");
        }
        let acted = live.iter().any(|m| !m.actions.is_empty());
        let cut = live.iter().any(|m| m.factor < 1.0);
        let rows: usize = live.iter().map(|m| m.batch.rows()).sum();
        let early = looked.iter().any(|b| !b.adjustments.is_empty());
        match scenario {
            "mix" => {
                assert!(acted, "{scenario}: some client was acted on");
                assert!(
                    early,
                    "{scenario}: some client was acted on by an early look"
                );
            }
            _ => assert!(cut, "{scenario}: a cut was enforced"),
        }
        assert!(rows > 0, "{scenario}: history rows were produced");
    }
}
