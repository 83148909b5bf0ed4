//! Exact mode: a decision's script that outlived its budget, awaited to its end so that the
//! shared counters agree with what was answered. The decision was refused (or, under the
//! `allow` policy, admitted) at the budget; when the script lands, hits it counted for a
//! refused decision are given back, and hits admitted that it did not count are owed (added at
//! the next reconciliation flush). A script that never lands is taken not to have counted.
//!
//! Not here: the decision itself (`Fleet::settle`) or the flush that pays what is owed.

use std::future::Future;
use std::pin::Pin;

use sluice_core::engine::give_backs;

use super::*;

/// A decision's script on its way to the counters.
pub(super) type Call = Pin<Box<dyn Future<Output = Result<Vec<Outcome>, CountersError>> + Send>>;

/// Late scripts awaited at once, at most. Past it one is let go unawaited: hits it counts for a
/// refused decision stay counted (fewer admitted, never more), admitted ones are owed.
const MAX_IN_FLIGHT: usize = 10_000;

/// A script with no answer this long after its budget counts against the breaker: Redis may be
/// hung, not slow. A slow Redis or a busy node lands scripts late and never opens it.
const HUNG_AFTER: Duration = ANSWER_TIMEOUT;

impl Fleet {
    /// Awaits `call` (the script of a decision answered without it) in a task of its own, then
    /// reconciles: `answered` is what the decision answered.
    pub(super) fn reconcile_later(
        self: &Arc<Self>,
        call: Call,
        ops: Vec<BucketOp>,
        answered: Vec<Outcome>,
    ) {
        if self.late_in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.late_in_flight.fetch_sub(1, Ordering::AcqRel);
            self.owe(&ops, &answered);
            return;
        }
        let fleet = self.clone();
        tokio::spawn(async move {
            fleet.await_late(call, &ops, &answered).await;
            fleet.late_in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    async fn await_late(&self, mut call: Call, ops: &[BucketOp], answered: &[Outcome]) {
        let landed = match tokio::time::timeout(HUNG_AFTER, call.as_mut()).await {
            Ok(result) => Some(result),
            Err(_) => {
                self.note_failure("a decision's script had no answer long after its budget");
                tokio::time::timeout(FLUSH_WAIT, call).await.ok()
            }
        };
        match landed {
            Some(Ok(counted)) => {
                self.answered();
                self.stats.late.fetch_add(1, Ordering::Relaxed);
                match (refuses(ops, answered), refuses(ops, &counted)) {
                    // Refused here, counted there: give the hits back.
                    (true, false) => self.give_back(ops, &counted).await,
                    // Admitted here, refused there (nothing kept): the admitted hits are owed.
                    (false, true) => {
                        self.owe(ops, answered);
                    }
                    _ => {}
                }
            }
            Some(Err(error)) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.note_failure(&error.to_string());
                self.owe(ops, answered);
            }
            None => {
                self.owe(ops, answered);
            }
        }
    }

    /// Gives back the hits the counters kept for a decision that was refused. A give-back that
    /// fails leaves them counted: fewer admitted, never more.
    async fn give_back(&self, ops: &[BucketOp], counted: &[Outcome]) {
        let refunds = give_backs(ops, counted);
        let hits: u64 = refunds.iter().map(|op| op.hits).sum();
        if let Ok(Ok(_)) = tokio::time::timeout(FLUSH_WAIT, self.counters.run(&refunds)).await {
            self.stats.refunded_hits.fetch_add(hits, Ordering::Relaxed);
        }
    }
}
