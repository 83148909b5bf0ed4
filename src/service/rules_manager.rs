//! Rule management between the API and the store: validate a change completely, make it durable,
//! then swap the new rule set into the engine. Also keeps the engine in step with the database
//! (`sync`), which is how a restarted database or another instance's change is picked up.
//!
//! Not on the decision path: decisions read the engine's rule set and never wait for this. Not
//! the database handle either: it uses the shared [`Database`] like every other user of the store.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::service::database::{Database, NotConnected};
use crate::store::StoreError;
use sluice_core::engine::Engine;
use sluice_core::matcher::RuleSet;
use sluice_core::rules::{Rule, RuleChange};
use sluice_core::validate::{InputLimits, ValidationError, check_batch, check_domain};

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    NotConnected(#[from] NotConnected),
}

pub struct RulesManager {
    engine: Arc<Engine>,
    database: Arc<Database>,
    /// Serialises this instance's writes, so each swaps in a set built on the previous one.
    writes: Mutex<()>,
    caps: InputLimits,
    /// Rules have been loaded from the database at least once (health reports SERVING).
    loaded: std::sync::atomic::AtomicBool,
    /// Longest a change waits for the one before it (the database's statement timeout).
    write_wait: std::time::Duration,
}

impl RulesManager {
    pub fn new(engine: Arc<Engine>, database: Arc<Database>, caps: InputLimits) -> RulesManager {
        RulesManager {
            engine,
            database,
            writes: Mutex::new(()),
            caps,
            loaded: Default::default(),
            write_wait: std::time::Duration::from_secs(10),
        }
    }

    /// A change waits at most `wait` for the one in progress, then fails as unavailable.
    pub fn with_write_wait(mut self, wait: std::time::Duration) -> RulesManager {
        self.write_wait = wait;
        self
    }

    /// This instance's turn to write, or `Unavailable` if the change before it is stuck.
    async fn turn_to_write(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, ManageError> {
        tokio::time::timeout(self.write_wait, self.writes.lock())
            .await
            .map_err(|_| {
                ManageError::Store(StoreError::Unavailable(format!(
                    "another rule change has been in progress for over {} ms",
                    self.write_wait.as_millis()
                )))
            })
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Validates, stores and applies a change; returns the new revision.
    #[tracing::instrument(
        name = "update_rules",
        skip_all,
        fields(actor = %actor, upserts = change.upserts.len(), deletes = change.deletes.len())
    )]
    pub async fn update(
        &self,
        change: RuleChange,
        expected: Option<u64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<u64, ManageError> {
        check_batch(&change.upserts, &self.caps)?;
        for (i, domain) in change.replace_domains.iter().enumerate() {
            check_domain(&format!("replace_domains[{i}]"), domain, &self.caps)?;
        }
        for (i, id) in change.deletes.iter().enumerate() {
            if id.is_empty() {
                return Err(ValidationError::new(format!("ids[{i}]"), "must not be empty").into());
            }
        }
        let store = self.database.connected()?;
        let _write = self.turn_to_write().await?;
        let revision = store.apply(&change, expected, actor, now_ms).await?;
        // Prefer the database's view (it includes other instances' changes); if it cannot be read
        // right after the commit, apply our own change to what we have and let `sync` catch up.
        match store.load().await {
            Ok((rev, rules)) => {
                self.engine
                    .replace_rules(RuleSet::build_after(rev, rules, &self.engine.rules()))
            }
            Err(e) => {
                tracing::warn!(error = %e, "reloading rules after a change failed; applying it locally");
                let current = self.engine.rules();
                let next = apply_locally(current.to_rules(), &change);
                self.engine.replace_rules(RuleSet::build_after(
                    revision,
                    next,
                    &self.engine.rules(),
                ));
            }
        }
        Ok(revision)
    }

    /// Reloads the rules if the database holds a different revision. Returns whether it did.
    pub async fn sync(&self) -> Result<bool, ManageError> {
        let store = self.database.connected()?;
        let revision = store.revision().await?;
        if revision == self.engine.rules().revision() && self.is_loaded() {
            return Ok(false);
        }
        let _write = self.turn_to_write().await?;
        let (revision, rules) = store.load().await?;
        let changed = revision != self.engine.rules().revision() || !self.is_loaded();
        if changed {
            tracing::info!(revision, rules = rules.len(), "loaded rules");
            self.engine
                .replace_rules(RuleSet::build_after(revision, rules, &self.engine.rules()));
            self.loaded
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(changed)
    }
}

fn apply_locally(mut rules: Vec<Rule>, change: &RuleChange) -> Vec<Rule> {
    let upserted: std::collections::HashSet<String> = change.upserts.iter().map(Rule::id).collect();
    rules.retain(|r| {
        let id = r.id();
        !change.deletes.contains(&id)
            && !upserted.contains(&id)
            && !(change.replace_domains.contains(&r.domain))
    });
    rules.extend(change.upserts.iter().cloned());
    rules
}
