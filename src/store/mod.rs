//! Durable rules: the SQL adapter. SQLite (an embedded file, the default) or PostgreSQL
//! (`postgres://…`), chosen by the URL, with the same schema and the same SQL text.
//!
//! Holds rules as JSON of the core `Rule` type, a single revision counter bumped by every change,
//! and an audit row per rule changed. This module knows sqlx; nothing outside it does, and no sqlx
//! type appears in its API. It is never called on the decision path.

mod backend;
pub mod forecast_history;
pub mod history;
pub mod history_rows;
pub mod lists;
pub mod notify;
pub mod sqlite_threads;
pub mod traffic_stats;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use sluice_core::rules::{Rule, RuleChange};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy; retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(
        "revision conflict: expected revision {expected}, but the rules are at revision {actual}"
    )]
    Conflict { expected: u64, actual: u64 },
    #[error("no rule with id {0:?}")]
    NotFound(String),
    #[error("invalid database URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A stored row that does not decode: someone wrote the tables by hand, or a bug.
    #[error("stored rule {rule_id:?} is unreadable: {reason}")]
    Corrupt { rule_id: String, reason: String },
    #[error("database error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Io(_)
            | E::PoolTimedOut
            | E::PoolClosed
            | E::Tls(_)
            | E::Protocol(_)
            | E::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                // SQLite: 5 BUSY, 6 LOCKED (and their extended codes). PostgreSQL: class 08
                // (connection), 57P0x (shutdown / cannot connect now), class 53 (resources),
                // 40001/40P01 (serialization / deadlock: retry).
                let transient = matches!(
                    code.as_ref(),
                    "5" | "6" | "40001" | "40P01" | "57P01" | "57P02" | "57P03"
                ) || code.starts_with("08")
                    || code.starts_with("53")
                    || code
                        .parse::<u32>()
                        .is_ok_and(|c| c & 0xff == 5 || c & 0xff == 6);
                if transient {
                    StoreError::Unavailable(db.message().to_string())
                } else {
                    StoreError::Internal(e.to_string())
                }
            }
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

/// One row of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub revision: u64,
    pub at_ms: i64,
    pub actor: String,
    /// `create`, `update` or `delete`; `reset` for a key's counters reset (`after`: what).
    pub action: String,
    pub rule_id: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub url: String,
    /// How long SQLite waits for a lock before the write fails as unavailable.
    pub busy_timeout: Duration,
    /// How long to wait for a pooled connection (PostgreSQL: includes connecting).
    pub acquire_timeout: Duration,
    /// Longest any one call (a query, a transaction) may take before it fails as unavailable.
    pub statement_timeout: Duration,
    /// SQLite only: niceness of the connections' worker threads below the connecting thread's
    /// (`sqlite_threads`); 0 runs them at its priority.
    pub worker_nice: i32,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(10),
            worker_nice: 0,
        }
    }
}

/// The rules and history database. Every call is bounded by `StoreOptions::statement_timeout`:
/// a database that stops answering (a hung server, a partition that drops packets) fails the
/// call as `Unavailable` instead of holding it, and whatever waits behind it, for minutes.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: Pool,
    statement_timeout: Duration,
}

#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Connects and applies migrations.
    pub async fn connect(options: &StoreOptions) -> Result<Store> {
        let url = options.url.as_str();
        let bad = |reason: String| StoreError::BadUrl {
            url: redact(url),
            reason,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect: PgConnectOptions =
                url.parse().map_err(|e: sqlx::Error| bad(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            sqlx::migrate!("migrations/postgres")
                .run(&pool)
                .await
                .map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")))?;
            Ok(Store {
                pool: Pool::Postgres(pool),
                statement_timeout: options.statement_timeout,
            })
        } else if url.starts_with("sqlite:") {
            let connect: SqliteConnectOptions =
                url.parse().map_err(|e: sqlx::Error| bad(e.to_string()))?;
            let connect = connect
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(options.busy_timeout)
                .thread_name(sqlite_threads::thread_name);
            let nice = options.worker_nice;
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(options.acquire_timeout)
                // The new connection's thread exists by now: set it (and any other) below the
                // decision workers. Idempotent, so threads set before are only set again.
                .after_connect(move |_, _| {
                    Box::pin(async move {
                        sqlite_threads::lower_priority(nice);
                        Ok(())
                    })
                })
                .connect_with(connect)
                .await?;
            sqlx::migrate!("migrations/sqlite")
                .run(&pool)
                .await
                .map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")))?;
            Ok(Store {
                pool: Pool::Sqlite(pool),
                statement_timeout: options.statement_timeout,
            })
        } else {
            Err(bad("expected sqlite:PATH or postgres://…".into()))
        }
    }

    /// Runs one call within the statement timeout; a late call is abandoned (sqlx closes its
    /// connection rather than returning it mid-transaction) and fails as `Unavailable`.
    async fn within<T>(&self, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.statement_timeout, call).await {
            Ok(done) => done,
            Err(_) => Err(StoreError::Unavailable(format!(
                "the database did not answer within {} ms",
                self.statement_timeout.as_millis()
            ))),
        }
    }

    pub fn backend(&self) -> &'static str {
        match &self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    pub async fn revision(&self) -> Result<u64> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => backend::sqlite::revision(p).await,
                Pool::Postgres(p) => backend::postgres::revision(p).await,
            }
        })
        .await
    }

    /// Every rule and the revision they are at, read in one transaction.
    pub async fn load(&self) -> Result<(u64, Vec<Rule>)> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => backend::sqlite::load(p).await,
                Pool::Postgres(p) => backend::postgres::load(p).await,
            }
        })
        .await
    }

    /// Applies `change` in one transaction and returns the new revision. With `expected`, fails
    /// with `Conflict` (changing nothing) unless the rules are at that revision.
    pub async fn apply(
        &self,
        change: &RuleChange,
        expected: Option<u64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<u64> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => backend::sqlite::apply(p, change, expected, actor, now_ms).await,
                Pool::Postgres(p) => {
                    let revision = backend::postgres::apply(p, change, expected, actor, now_ms).await?;
                    // Committed: a failed announcement costs the others only the wait for their poll.
                    if let Err(e) = notify::announce(self, revision).await {
                        tracing::warn!(error = %e, "could not announce the rule change; replicas will poll");
                    }
                    Ok(revision)
                }
            }
        })
        .await
    }

    /// The newest audit rows, newest first.
    /// The newest `limit` changes of one rule.
    pub async fn rule_audit(&self, rule_id: &str, limit: u32) -> Result<Vec<AuditEntry>> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => backend::sqlite::audit_log(p, rule_id, limit).await,
                Pool::Postgres(p) => backend::postgres::audit_log(p, rule_id, limit).await,
            }
        })
        .await
    }

    /// Records an admin action that is not a rule change (`reset`) in the rule audit log.
    pub async fn audit_event(
        &self,
        now_ms: i64,
        actor: &str,
        action: &str,
        rule_id: &str,
        body: &str,
    ) -> Result<()> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => {
                    backend::sqlite::audit_event(p, now_ms, actor, action, rule_id, body).await
                }
                Pool::Postgres(p) => {
                    backend::postgres::audit_event(p, now_ms, actor, action, rule_id, body).await
                }
            }
        })
        .await
    }

    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => backend::sqlite::audit_log(p, "", limit).await,
                Pool::Postgres(p) => backend::postgres::audit_log(p, "", limit).await,
            }
        })
        .await
    }

    /// Writes one learning batch in one transaction.
    pub async fn write_history(&self, batch: &history::HistoryBatch) -> Result<()> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => history::sqlite::write(p, batch).await,
                Pool::Postgres(p) => history::postgres::write(p, batch).await,
            }
        })
        .await
    }

    /// `instance`'s newest saved model (JSON; else any instance's newest) and the anomaly
    /// actions that were in force (JSON each).
    pub async fn load_learning(&self, instance: &str) -> Result<(Option<String>, Vec<String>)> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => history::sqlite::load(p, instance).await,
                Pool::Postgres(p) => history::postgres::load(p, instance).await,
            }
        })
        .await
    }

    /// Stored limit adjustments, newest first.
    pub async fn adjustments(
        &self,
        q: &history::HistoryQuery,
    ) -> Result<Vec<history::StoredAdjustment>> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => history::sqlite::adjustments(p, q).await,
                Pool::Postgres(p) => history::postgres::adjustments(p, q).await,
            }
        })
        .await
    }

    /// Stored forecasts beside actual counts, newest first (`q.client`: the series).
    pub async fn forecasts(
        &self,
        q: &history::HistoryQuery,
    ) -> Result<Vec<forecast_history::StoredForecast>> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => forecast_history::sqlite::forecasts(p, q).await,
                Pool::Postgres(p) => forecast_history::postgres::forecasts(p, q).await,
            }
        })
        .await
    }

    /// Stored client-minute scores, newest first.
    pub async fn scores(&self, q: &history::HistoryQuery) -> Result<Vec<history::StoredScore>> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => history::sqlite::scores(p, q).await,
                Pool::Postgres(p) => history::postgres::scores(p, q).await,
            }
        })
        .await
    }

    /// Traffic over [since_ms, until_ms): totals, distinct clients, the busiest endpoint rows.
    pub async fn window_stats(
        &self,
        since_ms: i64,
        until_ms: i64,
        limit: u32,
    ) -> Result<traffic_stats::WindowStats> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => {
                    traffic_stats::sqlite::window(p, since_ms, until_ms, limit).await
                }
                Pool::Postgres(p) => {
                    traffic_stats::postgres::window(p, since_ms, until_ms, limit).await
                }
            }
        })
        .await
    }

    /// The stored per-minute endpoint × tier traffic (what the forecaster trains on).
    pub async fn traffic_history(&self) -> Result<Vec<history::TrafficRow>> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => history::sqlite::traffic(p).await,
                Pool::Postgres(p) => history::postgres::traffic(p).await,
            }
        })
        .await
    }

    /// Deletes history older than `before_ms`, keeping the newest `keep_models` models.
    pub async fn prune_history(&self, before_ms: i64, keep_models: i64) -> Result<u64> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => history::sqlite::prune(p, before_ms, keep_models).await,
                Pool::Postgres(p) => history::postgres::prune(p, before_ms, keep_models).await,
            }
        })
        .await
    }

    /// The operators' list entries in force at `now_ms` (expired ones are deleted).
    pub async fn list_entries(
        &self,
        now_ms: i64,
    ) -> Result<Vec<sluice_core::learn::lists::ListEntry>> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => lists::sqlite::load(p, now_ms).await,
                Pool::Postgres(p) => lists::postgres::load(p, now_ms).await,
            }
        })
        .await
    }

    /// Adds or replaces a list entry, audited.
    pub async fn put_list_entry(&self, e: &sluice_core::learn::lists::ListEntry) -> Result<()> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => lists::sqlite::put(p, e).await,
                Pool::Postgres(p) => lists::postgres::put(p, e).await,
            }
        })
        .await
    }

    /// Removes a list entry, audited; false when there was none.
    pub async fn remove_list_entry(
        &self,
        list: sluice_core::learn::lists::ListKind,
        client: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<bool> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => lists::sqlite::remove(p, list, client, actor, now_ms).await,
                Pool::Postgres(p) => lists::postgres::remove(p, list, client, actor, now_ms).await,
            }
        })
        .await
    }

    /// The list audit, newest first: (at_ms, actor, action, list, client).
    pub async fn list_audit(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String, String, String, String)>> {
        self.within(async {
            match &self.pool {
                Pool::Sqlite(p) => lists::sqlite::audit(p, limit).await,
                Pool::Postgres(p) => lists::postgres::audit(p, limit).await,
            }
        })
        .await
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
