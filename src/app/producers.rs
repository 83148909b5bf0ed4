//! The background tasks, started once the service is built and stopped in order: the
//! producers (database supervisor, bucket sweeper, minute loop, the dashboard's timeline, the
//! shared counters' flush and fleet sync) are told and joined first, and only then the history
//! writer, which therefore drains every batch they submitted (`shutdown::Stages`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::service::background::Background;
use crate::service::db_supervisor::{self, RulesFiles, SupervisorConfig};
use crate::service::fleet;
use crate::service::fleet_sync;
use crate::service::handles::Handles;
use crate::service::history_writer::{self, HistoryConfig};
use crate::service::minute_loop;
use crate::service::readiness::Readiness;
use crate::service::shutdown::{Shutdown, Stages};
use crate::service::timeline;
use crate::store::history::HistoryBatch;

/// What the tasks are started with, besides the handle bundle.
pub struct ProducerParts {
    pub supervisor: SupervisorConfig,
    pub rules_files: RulesFiles,
    pub readiness: Readiness,
    pub background: Background,
    /// The minute loop's period (`--learn-tick-secs`).
    pub tick: Duration,
    pub history_rx: mpsc::Receiver<HistoryBatch>,
    pub history: HistoryConfig,
    /// Sample the dashboard's timeline (only with `--http-listen`).
    pub timeline: bool,
}

/// The tasks running, until [`Running::stop`].
pub struct Running {
    stages: Stages,
    producers: Vec<(&'static str, JoinHandle<()>)>,
    writer: JoinHandle<()>,
}

/// Starts every task `parts` asks for.
pub fn start(h: &Arc<Handles>, parts: ProducerParts) -> Running {
    let stages = Stages::default();
    let stop = || stages.producers.subscribe();
    let mut producers = vec![
        (
            "database supervisor",
            tokio::spawn(db_supervisor::run(
                parts.supervisor,
                h.database.clone(),
                h.rules.clone(),
                parts.readiness.clone(),
                parts.rules_files,
                h.clock,
                stop(),
            )),
        ),
        (
            "bucket sweeper",
            tokio::spawn(sweep_buckets(h.clone(), parts.background, stop())),
        ),
        (
            "minute loop",
            tokio::spawn(minute_loop::run(
                h.learning.clone(),
                h.clock,
                parts.tick,
                parts.readiness,
                h.exchange.clone(),
                stop(),
            )),
        ),
    ];
    if parts.timeline {
        producers.push((
            "timeline",
            tokio::spawn(timeline::run(
                h.timeline.clone(),
                h.engine.clone(),
                h.clock,
                stop(),
            )),
        ));
    }
    if let Some(fleet) = &h.fleet {
        producers.push((
            "counters flush",
            tokio::spawn(fleet::flush_loop(
                fleet.clone(),
                h.engine.clone(),
                h.clock,
                stop(),
            )),
        ));
        producers.push((
            "fleet sync",
            tokio::spawn(fleet_sync::run(
                fleet.clone(),
                h.engine.clone(),
                h.quotas.clone(),
                h.instance.clone(),
                h.clock,
                stop(),
            )),
        ));
    }
    let writer = tokio::spawn(history_writer::run_writer(
        parts.history_rx,
        h.database.clone(),
        h.history_stats.clone(),
        parts.history,
        h.clock,
        stages.writers.subscribe(),
    ));
    Running {
        stages,
        producers,
        writer,
    }
}

impl Running {
    /// Stops the producers, then the writer (see [`stop_in_order`]).
    pub async fn stop(self) {
        stop_in_order(&self.stages, self.producers, self.writer).await;
    }
}

/// Stops the producers and joins them, then stops the writer and joins it: everything a
/// producer submitted before it returned is in the writer's queue for its last drain.
pub async fn stop_in_order(
    stages: &Stages,
    producers: Vec<(&'static str, JoinHandle<()>)>,
    writer: JoinHandle<()>,
) {
    stages.producers.trigger();
    for (name, task) in producers {
        if let Err(e) = task.await {
            tracing::error!(error = %e, task = name, "background task panicked");
        }
    }
    stages.writers.trigger();
    if let Err(e) = writer.await {
        tracing::error!(error = %e, task = "history writer", "background task panicked");
    }
}

/// Drops idle bucket states every few seconds, off the async workers and below the decisions'
/// priority (a sweep walks every shard), and the quota board's silent Envoys.
async fn sweep_buckets(h: Arc<Handles>, background: Background, mut shutdown: Shutdown) {
    while shutdown.sleep(Duration::from_secs(5)).await {
        let (handles, now) = (h.clone(), h.clock.now());
        background
            .run(move || {
                handles.engine.sweep(now);
                handles.quotas.sweep(now);
            })
            .await;
    }
}

#[cfg(test)]
#[path = "producers_tests.rs"]
mod tests;
