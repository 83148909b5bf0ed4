//! Rule changes announced to every replica at once: on PostgreSQL, a committed change sends
//! `NOTIFY sluice_rules` (payload: the new revision) and each replica `LISTEN`s, waking its
//! database supervisor to resync now instead of at its next poll. The poll stays, for SQLite, for
//! a listener that is reconnecting, and for a notification lost with a connection.
//!
//! Not here: reading the rules (the supervisor's `sync`).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use super::{Pool, Result, Store};

pub const RULES_CHANNEL: &str = "sluice_rules";

/// Tells the other replicas the rules changed (PostgreSQL only; SQLite has no other replicas).
pub async fn announce(store: &Store, revision: u64) -> Result<()> {
    if let Pool::Postgres(pool) = &store.pool {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(RULES_CHANNEL)
            .bind(revision.to_string())
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Listens for rule changes and wakes `wake` on each one, until the task is dropped. Returns at
/// once for SQLite. A lost connection is retried every second (the poll covers the gap).
pub async fn listen(store: Arc<Store>, wake: Arc<Notify>) {
    let Pool::Postgres(pool) = &store.pool else {
        return;
    };
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(RULES_CHANNEL).await?;
            tracing::debug!("listening for rule changes");
            loop {
                listener.recv().await?;
                wake.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        if let Err(e) = listening.await {
            tracing::debug!(error = %e, "rule-change listener lost; retrying");
        }
        // Whatever was announced while not listening is caught by the next resync.
        wake.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
