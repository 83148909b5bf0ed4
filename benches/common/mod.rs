//! Shared set-up for the benches: an engine with one rule, a limit per client address.

use sluice::adapters::moka_store::{self, StoreKind};
use sluice_core::bucket::Op;
use sluice_core::engine::{DescriptorInput, Engine, EngineConfig};
use sluice_core::limit::{LimitSpec, Unit};
use sluice_core::matcher::RuleSet;
use sluice_core::rules::Rule;

// Each bench compiles this module on its own and uses a part of it.
#[allow(dead_code)]
pub fn engine(store: StoreKind, requests_per_second: u64) -> Engine {
    engine_with(store, requests_per_second, EngineConfig::default())
}

pub fn engine_with(store: StoreKind, requests_per_second: u64, config: EngineConfig) -> Engine {
    let engine = moka_store::engine(config, store);
    let rule = Rule::new(
        "edge",
        &[("remote_address", "")],
        vec![LimitSpec::per(requests_per_second, Unit::Second)],
    );
    engine.replace_rules(RuleSet::build(1, [rule]));
    engine
}

/// One decision for client address `key` under the rule above; whether it was over the limit.
#[allow(dead_code)]
pub fn decide(engine: &Engine, key: &str, now: u64) -> bool {
    let input = DescriptorInput {
        entries: [("remote_address", key)].into_iter().collect(),
        hits: 1,
        op: Op::Consume,
        limit_override: None,
    };
    engine
        .check_descriptors("edge", std::slice::from_ref(&input), now)
        .over_limit
}
