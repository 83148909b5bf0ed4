//! The history writer: learning batches go to the database in the background, batched, never on
//! the decision path, and survive a database outage.
//!
//! `History::submit` never blocks: it hands the batch to a bounded channel and counts it as
//! dropped if the channel is full. The writer task keeps batches in a queue capped at
//! `buffer_rows` rows while the database is unreachable, retries with backoff, and drops the oldest
//! (counted) past the cap — carrying any model or action set they held forward, so the state a
//! restart needs is never the part lost. It also prunes history past the retention period.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::clock::LiveClock;
use crate::rules_service::RulesService;
use crate::store::history::HistoryBatch;

#[derive(Debug, Default)]
pub struct HistoryStats {
    pub written_rows: AtomicU64,
    pub dropped_rows: AtomicU64,
    pub buffered_rows: AtomicU64,
    pub failed_writes: AtomicU64,
}

#[derive(Clone)]
pub struct History {
    tx: mpsc::Sender<HistoryBatch>,
    pub stats: Arc<HistoryStats>,
}

pub struct HistoryConfig {
    pub buffer_rows: usize,
    pub retention: Duration,
}

impl History {
    /// The handle and the receiving end for `run_writer`.
    pub fn new() -> (History, mpsc::Receiver<HistoryBatch>) {
        let (tx, rx) = mpsc::channel(64);
        (
            History {
                tx,
                stats: Arc::new(HistoryStats::default()),
            },
            rx,
        )
    }

    /// Queues a batch; never waits. A full queue drops the batch (counted).
    pub fn submit(&self, batch: HistoryBatch) {
        let rows = batch.rows() as u64;
        if self.tx.try_send(batch).is_err() {
            self.stats.dropped_rows.fetch_add(rows, Ordering::Relaxed);
        }
    }
}

/// Writes queued batches until `stop`, then makes one last attempt to flush.
pub async fn run_writer(
    mut rx: mpsc::Receiver<HistoryBatch>,
    rules: Arc<RulesService>,
    stats: Arc<HistoryStats>,
    config: HistoryConfig,
    clock: LiveClock,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending: VecDeque<HistoryBatch> = VecDeque::new();
    let mut backoff = Duration::from_millis(200);
    let mut down = false;
    let mut last_prune: Option<i64> = None;
    loop {
        let wait = if pending.is_empty() {
            Duration::from_secs(3600)
        } else {
            backoff
        };
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(b) => pending.push_back(b),
                None => break,
            },
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
        while let Ok(b) = rx.try_recv() {
            pending.push_back(b);
        }
        trim(&mut pending, config.buffer_rows, &stats);
        match flush(&mut pending, &rules, &stats).await {
            Ok(()) => {
                if down {
                    tracing::info!("history database reachable again; buffered history written");
                }
                down = false;
                backoff = Duration::from_millis(200);
                let now_ms = clock.now_millis();
                if last_prune.is_none_or(|t| now_ms - t > 3_600_000) {
                    last_prune = Some(now_ms);
                    prune(&rules, now_ms - config.retention.as_millis() as i64).await;
                }
            }
            Err(e) => {
                stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                if !down {
                    tracing::warn!(error = %e, "history database unavailable; buffering history");
                }
                down = true;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        stats.buffered_rows.store(
            pending.iter().map(|b| b.rows() as u64).sum(),
            Ordering::Relaxed,
        );
    }
    // Shutting down: one bounded attempt to write what is queued.
    while let Ok(b) = rx.try_recv() {
        pending.push_back(b);
    }
    let last =
        tokio::time::timeout(Duration::from_secs(5), flush(&mut pending, &rules, &stats)).await;
    if !matches!(last, Ok(Ok(()))) && !pending.is_empty() {
        let rows: usize = pending.iter().map(HistoryBatch::rows).sum();
        stats.dropped_rows.fetch_add(rows as u64, Ordering::Relaxed);
        tracing::warn!(
            rows,
            "history not written at shutdown: database unavailable"
        );
    }
}

/// Drops the oldest batches past `cap` rows, carrying their model and actions forward.
fn trim(pending: &mut VecDeque<HistoryBatch>, cap: usize, stats: &HistoryStats) {
    let mut rows: usize = pending.iter().map(HistoryBatch::rows).sum();
    while rows > cap && pending.len() > 1 {
        let old = pending.pop_front().expect("more than one");
        rows -= old.rows();
        stats
            .dropped_rows
            .fetch_add(old.rows() as u64, Ordering::Relaxed);
        let next = pending.front_mut().expect("more than one");
        if next.model.is_none() {
            next.model = old.model;
        }
        if next.actions.is_none() {
            next.actions = old.actions;
        }
    }
    if rows > cap
        && let Some(only) = pending.front_mut()
    {
        // One batch bigger than the whole buffer: keep its state, drop its history rows.
        stats
            .dropped_rows
            .fetch_add(only.rows() as u64, Ordering::Relaxed);
        only.scores.clear();
        only.traffic.clear();
        only.adjustments.clear();
    }
}

async fn flush(
    pending: &mut VecDeque<HistoryBatch>,
    rules: &RulesService,
    stats: &HistoryStats,
) -> Result<(), String> {
    while let Some(batch) = pending.front() {
        let store = rules.store().ok_or("database not connected yet")?;
        store
            .write_history(batch)
            .await
            .map_err(|e| e.to_string())?;
        stats
            .written_rows
            .fetch_add(batch.rows() as u64, Ordering::Relaxed);
        pending.pop_front();
    }
    Ok(())
}

async fn prune(rules: &RulesService, before_ms: i64) {
    let Some(store) = rules.store() else { return };
    match store.prune_history(before_ms, 20).await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "pruned history past retention"),
        Err(e) => tracing::warn!(error = %e, "could not prune history"),
    }
}
