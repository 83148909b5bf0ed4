//! Shared set-up for the benches: an engine with one rule, a limit per client address.

use sluice::core::buckets::StoreKind;
use sluice::core::engine::{Engine, EngineConfig};
use sluice::core::limit::{LimitSpec, Unit};
use sluice::core::matcher::RuleSet;
use sluice::core::rules::Rule;

pub fn engine(store: StoreKind, requests_per_second: u64) -> Engine {
    let engine = Engine::new(EngineConfig {
        bucket_store: store,
        ..EngineConfig::default()
    });
    let rule = Rule::new(
        "edge",
        &[("remote_address", "")],
        vec![LimitSpec::per(requests_per_second, Unit::Second)],
    );
    engine.replace_rules(RuleSet::build(1, [rule]));
    engine
}
