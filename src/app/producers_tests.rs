//! Shutdown in order: a minute still running on the blocking pool when shutdown comes is
//! finished, submitted and written (or counted as dropped) — never lost uncounted.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::service::clock::LiveClock;
use crate::service::database::Database;
use crate::service::history_writer::History;
use crate::store::history::{HistoryBatch, TrafficRow};
use crate::store::{Store, StoreOptions};

const ROWS_PER_TICK: u64 = 7;

fn batch(tick: u64) -> HistoryBatch {
    HistoryBatch {
        traffic: (0..ROWS_PER_TICK)
            .map(|i| TrafficRow {
                minute_ms: (tick * 60_000) as i64,
                endpoint: format!("/e{i}"),
                tier: "STD",
                requests: 1,
                allowed: 1,
                denied: 0,
                denied_anomaly: 0,
                denied_cut: 0,
                errors: 0,
            })
            .collect(),
        ..HistoryBatch::default()
    }
}

/// A producer shaped like the minute loop: each "tick" works on the blocking pool for a while,
/// then submits; shutdown is only noticed between ticks.
async fn ticking(
    history: History,
    submitted: Arc<AtomicU64>,
    busy: Duration,
    mut shutdown: Shutdown,
) {
    let mut tick = 0;
    loop {
        let history = history.clone();
        let submitted = submitted.clone();
        let _ = tokio::task::spawn_blocking(move || {
            std::thread::sleep(busy);
            history.submit(batch(tick));
            submitted.fetch_add(ROWS_PER_TICK, Ordering::SeqCst);
        })
        .await;
        tick += 1;
        if !shutdown.sleep(Duration::from_millis(1)).await {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_racing_shutdown_is_written_or_counted() {
    // Shutdown lands at different points of a tick: before, during and right after its work.
    for (round, (busy_ms, stop_after_ms)) in [(30, 45), (30, 15), (5, 52), (50, 1)]
        .into_iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("history.db").display());
        let store = Store::connect(&StoreOptions::new(&url)).await.unwrap();
        let database = Arc::new(Database::default());
        database.set(store.clone());
        let (history, rx) = History::new();
        let stats = history.stats.clone();
        let submitted = Arc::new(AtomicU64::new(0));
        let stages = Stages::default();
        let producer = tokio::spawn(ticking(
            history,
            submitted.clone(),
            Duration::from_millis(busy_ms),
            stages.producers.subscribe(),
        ));
        let writer = tokio::spawn(history_writer::run_writer(
            rx,
            database,
            stats.clone(),
            HistoryConfig {
                buffer_rows: 1_000_000,
                retention: Duration::from_secs(86_400 * 365 * 100),
            },
            LiveClock::new(),
            stages.writers.subscribe(),
        ));
        tokio::time::sleep(Duration::from_millis(stop_after_ms)).await;
        stop_in_order(&stages, vec![("producer", producer)], writer).await;

        let submitted = submitted.load(Ordering::SeqCst);
        let written = stats.written_rows.load(Ordering::SeqCst);
        let dropped = stats.dropped_rows.load(Ordering::SeqCst);
        let stored = store.traffic_history().await.unwrap().len() as u64;
        assert!(submitted > 0, "round {round}: a tick ran");
        assert_eq!(
            written + dropped,
            submitted,
            "round {round}: every row written or counted"
        );
        // The database is healthy and the buffer large: nothing needed dropping. (Stopping the
        // writer with the producers instead loses the racing tick's rows, or drops them.)
        assert_eq!(
            dropped, 0,
            "round {round}: the racing tick's rows were written"
        );
        assert_eq!(
            stored, written,
            "round {round}: what is counted written is in the database"
        );
        store.close().await;
    }
}
