//! The database supervisor: connects to the database (retrying), applies the `--rules` file (at
//! start-up, then whenever it changes), loads the rules, then keeps them in step with the
//! database on an interval and, on PostgreSQL, at once when another replica announces a change. Reports SERVING once rules are loaded. Decisions never wait on it.

use std::sync::Arc;
use std::time::Duration;

use sluice_core::rules::RuleChange;
use sluice_core::validate::InputLimits;

use crate::service::clock::LiveClock;
use crate::service::database::Database;
use crate::service::readiness::Readiness;
use crate::service::rules_file_follower::{Change, RulesFileWatch};
use crate::service::rules_manager::{ManageError, RulesManager};
use crate::service::shutdown::Shutdown;
use crate::store::{Store, StoreError, StoreOptions, notify};
use tokio::sync::Notify;

/// What the supervisor needs of the configuration.
pub struct SupervisorConfig {
    pub store: StoreOptions,
    pub resync_interval: Duration,
    pub caps: InputLimits,
}

/// The `--rules` file: followed for changes, and the version waiting to be applied (the
/// database may be down when it changes).
pub struct RulesFiles {
    pub watch: Option<RulesFileWatch>,
    pub pending: Option<Change>,
}

impl RulesFiles {
    /// Looks for a new version unless one is still waiting. Reading and parsing the file run
    /// on the blocking pool: a large file must not stall the decisions sharing the runtime.
    async fn poll(&mut self, caps: &InputLimits) {
        if self.pending.is_some() {
            return;
        }
        let Some(watch) = self.watch.take() else {
            return;
        };
        let (watch, polled) = match watch.poll_off_runtime(*caps).await {
            Ok(done) => done,
            Err(e) => {
                // Parsing panicked (a bug): the file is no longer followed, which is said.
                tracing::error!(error = %e, "reading the rules file failed; it is no longer followed");
                return;
            }
        };
        let watch = self.watch.insert(watch);
        match polled {
            None => {}
            Some(Ok(change)) => {
                tracing::info!(origin = watch.origin(), "rules file changed; applying it");
                self.pending = Some(change);
            }
            Some(Err(e)) => tracing::error!(
                error = %e,
                "rules file changed but cannot be used; the rules in force stay"
            ),
        }
    }

    /// Applies the waiting version, if any; it stays waiting if the database refuses.
    async fn apply(&mut self, rules: &RulesManager, now_ms: i64) -> Result<(), ManageError> {
        let (Some(change), Some(watch)) = (self.pending.take(), self.watch.as_ref()) else {
            return Ok(());
        };
        let origin = watch.origin();
        let update = RuleChange {
            upserts: change.file.rules.clone(),
            deletes: Vec::new(),
            replace_domains: change.replace_domains.clone(),
        };
        let count = update.upserts.len();
        match rules
            .update(update, None, &format!("rules-file:{origin}"), now_ms)
            .await
        {
            Ok(revision) => {
                tracing::info!(origin, rules = count, revision, "applied rules file");
                Ok(())
            }
            // The database is down or busy: the same version is applied once it answers.
            Err(
                e @ (ManageError::NotConnected(_) | ManageError::Store(StoreError::Unavailable(_))),
            ) => {
                self.pending = Some(change);
                Err(e)
            }
            // Refused for good (invalid, or refused by the store): said once and dropped, so it
            // blocks neither the sync of other instances' changes nor a later version of the file.
            Err(e) => {
                tracing::error!(origin, error = %e, "rules file refused; the rules in force stay");
                Ok(())
            }
        }
    }
}

/// Runs until shutdown (a connect in progress is abandoned: shutdown does not wait for it).
pub async fn run(
    config: SupervisorConfig,
    database: Arc<Database>,
    rules: Arc<RulesManager>,
    readiness: Readiness,
    mut files: RulesFiles,
    clock: LiveClock,
    mut shutdown: Shutdown,
) {
    let (interval, caps) = (config.resync_interval, config.caps);
    let mut reported_down = false;
    // PostgreSQL announces rule changes: resync at once on one (see `store::notify`).
    let wake = Arc::new(Notify::new());
    let mut listener = Listener(None);
    loop {
        let step = async {
            if database.get().is_none() {
                let store = Store::connect(&config.store).await?;
                tracing::info!(backend = store.backend(), "connected to the rules database");
                database.set(store);
            }
            files.poll(&caps).await;
            files.apply(&rules, clock.now_millis()).await?;
            rules.sync().await
        };
        // A connect can take up to the acquire timeout; shutdown does not wait for it.
        let outcome = tokio::select! {
            outcome = step => outcome,
            _ = shutdown.recv() => return,
        };
        match outcome {
            Ok(_) => {
                if reported_down {
                    tracing::info!("rules database is reachable again; rules are in sync");
                    reported_down = false;
                }
                if rules.is_loaded() {
                    readiness.rules_loaded();
                }
            }
            Err(e) => {
                database.note_error(&e.to_string());
                if !reported_down {
                    tracing::warn!(error = %e, "rules database unavailable; decisions continue on the rules in memory");
                    reported_down = true;
                }
            }
        }
        if listener.0.is_none()
            && let Some(store) = database.get()
        {
            listener.0 = Some(tokio::spawn(notify::listen(store, wake.clone())));
        }
        tokio::select! {
            slept = shutdown.sleep(interval) => if !slept { return },
            _ = wake.notified() => {}
        }
    }
}

/// The rule-change listener, stopped when the supervisor returns.
struct Listener(Option<tokio::task::JoinHandle<()>>);

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}
