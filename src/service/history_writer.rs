//! The history writer: learning batches go to the database in the background, batched, never on
//! the decision path, and survive a database outage.
//!
//! `History::submit` never blocks: it hands the batch to a bounded channel and counts it as
//! dropped if the channel is full. The writer task keeps batches in a queue capped at
//! `buffer_rows` rows while the database is unreachable, retries with backoff, and drops the oldest
//! (counted) past the cap — carrying any model or action set they held forward, so the state a
//! restart needs is never the part lost. It also prunes history past the retention period.
//!
//! At shutdown it is told to stop only after every producer has been joined (`app::run`), so
//! its last drain sees every batch they submitted: each row is written or counted as dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::service::clock::LiveClock;
use crate::service::database::Database;
use crate::service::shutdown::Shutdown;
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

/// Writes queued batches until `shutdown`, then makes one last attempt to flush.
pub async fn run_writer(
    mut rx: mpsc::Receiver<HistoryBatch>,
    database: Arc<Database>,
    stats: Arc<HistoryStats>,
    config: HistoryConfig,
    clock: LiveClock,
    mut shutdown: Shutdown,
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
            _ = shutdown.recv() => break,
        }
        while let Ok(b) = rx.try_recv() {
            pending.push_back(b);
        }
        trim(&mut pending, config.buffer_rows, &stats);
        match flush(&mut pending, &database, &stats).await {
            Ok(()) => {
                if down {
                    tracing::info!("history database reachable again; buffered history written");
                }
                down = false;
                backoff = Duration::from_millis(200);
                let now_ms = clock.now_millis();
                if last_prune.is_none_or(|t| now_ms - t > 3_600_000) {
                    last_prune = Some(now_ms);
                    prune(&database, now_ms - config.retention.as_millis() as i64).await;
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
    let last = tokio::time::timeout(
        Duration::from_secs(5),
        flush(&mut pending, &database, &stats),
    )
    .await;
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
    database: &Database,
    stats: &HistoryStats,
) -> Result<(), String> {
    while let Some(batch) = pending.front() {
        let store = database.connected().map_err(|e| e.to_string())?;
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

async fn prune(database: &Database, before_ms: i64) {
    let Some(store) = database.get() else { return };
    match store.prune_history(before_ms, 20).await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "pruned history past retention"),
        Err(e) => tracing::warn!(error = %e, "could not prune history"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::{ActionSet, ModelRow, TrafficRow};

    /// A batch of `rows` traffic rows, with a model of `model` version and an action set named
    /// `actions` when given.
    fn batch(rows: usize, model: Option<i64>, actions: Option<&str>) -> HistoryBatch {
        HistoryBatch {
            traffic: (0..rows)
                .map(|i| TrafficRow {
                    minute_ms: i as i64,
                    endpoint: "/x".into(),
                    tier: "STD",
                    requests: 1,
                    allowed: 1,
                    denied: 0,
                    denied_anomaly: 0,
                    denied_cut: 0,
                    errors: 0,
                })
                .collect(),
            model: model.map(|version| ModelRow {
                version,
                trained_at_ms: 0,
                trained_on: 0,
                body: String::new(),
            }),
            actions: actions.map(|name| ActionSet {
                instance: name.to_string(),
                ..ActionSet::default()
            }),
            ..HistoryBatch::default()
        }
    }

    /// What is left after trimming: (rows, model version, action set) per batch, and the rows
    /// counted as dropped.
    type Kept = Vec<(usize, Option<i64>, Option<String>)>;

    fn check(what: &str, batches: Vec<HistoryBatch>, cap: usize, kept: Kept, dropped: u64) {
        let stats = HistoryStats::default();
        let mut pending: VecDeque<HistoryBatch> = batches.into();
        trim(&mut pending, cap, &stats);
        let got: Kept = pending
            .iter()
            .map(|b| {
                (
                    b.rows(),
                    b.model.as_ref().map(|m| m.version),
                    b.actions.as_ref().map(|a| a.instance.clone()),
                )
            })
            .collect();
        assert_eq!(got, kept, "{what}: kept");
        assert_eq!(
            stats.dropped_rows.load(Ordering::Relaxed),
            dropped,
            "{what}: dropped"
        );
    }

    #[test]
    fn trim_drops_the_oldest_rows_but_never_the_state_a_restart_needs() {
        let s = |x: &str| Some(x.to_string());
        check(
            "under the cap: nothing dropped",
            vec![batch(3, Some(1), None), batch(3, None, None)],
            6,
            vec![(3, Some(1), None), (3, None, None)],
            0,
        );
        check(
            "the oldest batch goes, its model and actions move forward",
            vec![
                batch(4, Some(1), Some("a1")),
                batch(3, None, None),
                batch(3, None, None),
            ],
            6,
            vec![(3, Some(1), s("a1")), (3, None, None)],
            4,
        );
        check(
            "a newer model and action set win over the carried ones",
            vec![
                batch(4, Some(1), Some("a1")),
                batch(4, Some(2), Some("a2")),
                batch(2, None, None),
            ],
            6,
            vec![(4, Some(2), s("a2")), (2, None, None)],
            4,
        );
        check(
            "one batch bigger than the buffer keeps only its state",
            vec![batch(9, Some(3), Some("a3"))],
            5,
            vec![(0, Some(3), s("a3"))],
            9,
        );
        check(
            "several dropped down to one oversized batch",
            vec![
                batch(2, Some(1), None),
                batch(2, None, Some("a1")),
                batch(8, None, None),
            ],
            5,
            vec![(0, Some(1), s("a1"))],
            12,
        );
    }
}
