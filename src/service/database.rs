//! The database handle the service shares: the store once connected (the supervisor connects it,
//! retrying), and why it is not while it is not. Rule management, the history writer, restoring
//! the learning state and history reads each get this handle, not each other.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use sluice_core::learn::lists::{ListEntry, ListKind};

use crate::store::forecast_history::StoredForecast;
use crate::store::history::{HistoryQuery, StoredAdjustment, StoredScore};
use crate::store::{Store, StoreError};

/// The database is not connected (yet, or it could not be reached at start-up).
#[derive(Clone, Debug, thiserror::Error)]
#[error("the database is not connected yet: {0}")]
pub struct NotConnected(pub String);

pub struct Database {
    store: ArcSwapOption<Store>,
    /// Why the store is not connected, while it is not.
    last_error: parking_lot::Mutex<String>,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            store: ArcSwapOption::empty(),
            last_error: parking_lot::Mutex::new("connecting".into()),
        }
    }
}

impl Database {
    pub fn set(&self, store: Store) {
        self.store.store(Some(Arc::new(store)));
    }

    /// The store, if connected.
    pub fn get(&self) -> Option<Arc<Store>> {
        self.store.load_full()
    }

    /// The store, or why it is not there.
    pub fn connected(&self) -> Result<Arc<Store>, NotConnected> {
        self.get()
            .ok_or_else(|| NotConnected(self.last_error.lock().clone()))
    }

    pub fn note_error(&self, error: &str) {
        *self.last_error.lock() = error.to_string();
    }

    /// Closes the pool at shutdown, if one was opened.
    pub async fn close(&self) {
        if let Some(store) = self.get() {
            store.close().await;
        }
    }
}

/// Why a read or write of the learning loop's data (history, client lists) failed.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error(transparent)]
    NotConnected(#[from] NotConnected),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Database {
    /// Limit adjustments, newest first (`ListAdjustments`).
    pub async fn adjustments(
        &self,
        query: &HistoryQuery,
    ) -> Result<Vec<StoredAdjustment>, DatabaseError> {
        Ok(self.connected()?.adjustments(query).await?)
    }

    /// Forecasts beside actual counts, newest first (`ListForecasts`; `query.client`: the series).
    /// Traffic over a window (`GetStats`).
    pub async fn window_stats(
        &self,
        since_ms: i64,
        until_ms: i64,
        limit: u32,
    ) -> Result<crate::store::traffic_stats::WindowStats, DatabaseError> {
        Ok(self
            .connected()?
            .window_stats(since_ms, until_ms, limit)
            .await?)
    }

    /// The newest rule changes, newest first (the rule audit log); of one rule when `rule_id`
    /// is not empty.
    pub async fn audit_log(
        &self,
        rule_id: &str,
        limit: u32,
    ) -> Result<Vec<crate::store::AuditEntry>, DatabaseError> {
        Ok(self.connected()?.rule_audit(rule_id, limit).await?)
    }

    /// Writes an admin action that is not a rule change to the rule audit log.
    pub async fn audit_event(
        &self,
        now_ms: i64,
        actor: &str,
        action: &str,
        rule_id: &str,
        body: &str,
    ) -> Result<(), DatabaseError> {
        Ok(self
            .connected()?
            .audit_event(now_ms, actor, action, rule_id, body)
            .await?)
    }

    pub async fn forecasts(
        &self,
        query: &HistoryQuery,
    ) -> Result<Vec<StoredForecast>, DatabaseError> {
        Ok(self.connected()?.forecasts(query).await?)
    }

    /// Client-minute scores, newest first (`ListScores`).
    pub async fn scores(&self, query: &HistoryQuery) -> Result<Vec<StoredScore>, DatabaseError> {
        Ok(self.connected()?.scores(query).await?)
    }
}

impl Database {
    /// The operators' list entries in force at `now_ms`.
    pub async fn list_entries(&self, now_ms: i64) -> Result<Vec<ListEntry>, DatabaseError> {
        Ok(self.connected()?.list_entries(now_ms).await?)
    }

    /// Adds or replaces a list entry (audited) and returns the entries now in force.
    pub async fn put_list_entry(
        &self,
        entry: &ListEntry,
        now_ms: i64,
    ) -> Result<Vec<ListEntry>, DatabaseError> {
        let store = self.connected()?;
        store.put_list_entry(entry).await?;
        Ok(store.list_entries(now_ms).await?)
    }

    /// Removes a list entry (audited); whether there was one, and the entries now in force.
    pub async fn remove_list_entry(
        &self,
        list: ListKind,
        client: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<(bool, Vec<ListEntry>), DatabaseError> {
        let store = self.connected()?;
        let removed = store.remove_list_entry(list, client, actor, now_ms).await?;
        Ok((removed, store.list_entries(now_ms).await?))
    }
}
