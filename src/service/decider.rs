//! The decider: the one place that knows where a decision's buckets live. Without
//! `--counters` the engine decides from its in-process buckets; with them the fleet settles
//! the buckets on the shared counters (and its failure policy when they are out of reach).
//! Handlers ask the decider and never choose; the engine's own rules, actions and cuts apply
//! the same either way.
//!
//! Not here: the counters' protocol and failure policy (`fleet`), the decision itself
//! (`sluice_core::engine`).

use std::sync::Arc;

use sluice_core::engine::{BucketOp, DescriptorInput, Engine, Subject, Verdict};
use sluice_core::reservation::Charge;
use sluice_core::time::Nanos;

use crate::service::fleet::Fleet;

/// Decides on the engine, through the fleet's shared counters when there are any.
#[derive(Clone)]
pub struct Decider {
    engine: Arc<Engine>,
    fleet: Option<Arc<Fleet>>,
}

impl Decider {
    pub fn new(engine: Arc<Engine>, fleet: Option<Arc<Fleet>>) -> Decider {
        Decider { engine, fleet }
    }

    /// Envoy's RLS question: the descriptors of one request.
    pub async fn check_descriptors(
        &self,
        domain: &str,
        inputs: &[DescriptorInput<'_>],
        now: Nanos,
    ) -> Verdict {
        match &self.fleet {
            None => self.engine.check_descriptors(domain, inputs, now),
            Some(fleet) => {
                fleet
                    .check_descriptors(&self.engine, domain, inputs, now)
                    .await
            }
        }
    }

    /// Resets `subject`'s buckets in `domain`: here, and on the shared counters (every replica's
    /// decisions then see fresh buckets). Returns the buckets that held a state; a shared
    /// counters' failure is returned after the local reset is done.
    pub async fn reset_client(
        &self,
        domain: &str,
        subject: &Subject<'_>,
    ) -> Result<usize, crate::adapters::redis_counters::CountersError> {
        let keys = self.engine.client_bucket_keys(domain, subject);
        self.reset_buckets(&keys).await
    }

    /// Resets these buckets here and on the shared counters; how many held a state (a shared
    /// counters' failure is returned after the local reset is done).
    pub async fn reset_buckets(
        &self,
        keys: &[u128],
    ) -> Result<usize, crate::adapters::redis_counters::CountersError> {
        let local = keys
            .iter()
            .filter(|&&k| self.engine.reset_bucket(k))
            .count();
        let shared = match &self.fleet {
            Some(fleet) => fleet.counters().delete(keys).await? as usize,
            None => 0,
        };
        Ok(local.max(shared))
    }

    /// A reservation: `subject`'s limits charged `costs` by limit name (1 where unnamed), as
    /// `ShouldAllow` decides. Returns the verdict and what was charged (nothing when denied).
    pub async fn reserve(
        &self,
        domain: &str,
        subject: &Subject<'_>,
        costs: &[(&str, u64)],
        now: Nanos,
    ) -> (Verdict, Vec<Charge>) {
        let prepared = self.engine.prepare_reserve(domain, subject, costs, now);
        let outcomes = match &self.fleet {
            None => self.engine.settle_in_process(&prepared, now),
            Some(fleet) => fleet.settle_prepared(&self.engine, &prepared, now).await,
        };
        let charges = prepared
            .charges()
            .zip(&outcomes)
            .filter(|((_, op), o)| o.allowed && op.hits > 0)
            .map(|((name, op), _)| Charge {
                name: name.to_string(),
                op,
            })
            .collect();
        let verdict = self.engine.conclude(subject, prepared, &outcomes, now);
        let charges = if verdict.over_limit {
            Vec::new()
        } else {
            charges
        };
        (verdict, charges)
    }

    /// Runs settlement operations (refunds, added hits) where the buckets live.
    pub async fn apply(
        &self,
        ops: &[BucketOp],
        now: Nanos,
    ) -> Result<(), crate::adapters::redis_counters::CountersError> {
        if ops.is_empty() {
            return Ok(());
        }
        match &self.fleet {
            None => {
                self.engine.run_ops(ops, now);
                Ok(())
            }
            Some(fleet) => fleet.counters().run(ops).await.map(|_| ()),
        }
    }

    /// `ShouldAllow`: one subject, `cost` hits.
    pub async fn should_allow(
        &self,
        domain: &str,
        subject: &Subject<'_>,
        cost: u64,
        now: Nanos,
    ) -> Verdict {
        match &self.fleet {
            None => self.engine.should_allow(domain, subject, cost, now),
            Some(fleet) => {
                fleet
                    .should_allow(&self.engine, domain, subject, cost, now)
                    .await
            }
        }
    }
}
