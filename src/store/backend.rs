//! The SQL, written once and instantiated for each sqlx driver. Both SQLite and PostgreSQL accept
//! `$N` parameters, `RETURNING` and `ON CONFLICT … DO UPDATE`, so the text is shared verbatim.

macro_rules! backend {
    ($module:ident, $pool:ty) => {
        pub mod $module {
            use std::collections::HashSet;

            use sluice_core::rules::{Rule, RuleChange};
            use crate::store::{AuditEntry, Result, StoreError};

            pub async fn revision(pool: &$pool) -> Result<u64> {
                let rev: i64 = sqlx::query_scalar("SELECT revision FROM sluice_state WHERE id = 1")
                    .fetch_one(pool)
                    .await?;
                Ok(rev as u64)
            }

            pub async fn load(pool: &$pool) -> Result<(u64, Vec<Rule>)> {
                let mut tx = pool.begin().await?;
                let rev: i64 = sqlx::query_scalar("SELECT revision FROM sluice_state WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?;
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT rule_id, body FROM rules ORDER BY rule_id")
                        .fetch_all(&mut *tx)
                        .await?;
                tx.commit().await?;
                let rules = rows
                    .into_iter()
                    .map(|(rule_id, body)| {
                        serde_json::from_str::<Rule>(&body).map_err(|e| StoreError::Corrupt {
                            rule_id,
                            reason: e.to_string(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((rev as u64, rules))
            }

            pub async fn apply(
                pool: &$pool,
                change: &RuleChange,
                expected: Option<u64>,
                actor: &str,
                now_ms: i64,
            ) -> Result<u64> {
                let mut tx = pool.begin().await?;
                // The first statement writes, so the transaction takes the write lock at once
                // (SQLite) or locks the state row (PostgreSQL): concurrent changes serialise here.
                let bumped: Option<i64> = match expected {
                    Some(expected) => sqlx::query_scalar(
                        "UPDATE sluice_state SET revision = revision + 1 WHERE id = 1 AND revision = $1 RETURNING revision",
                    )
                    .bind(expected as i64)
                    .fetch_optional(&mut *tx)
                    .await?,
                    None => sqlx::query_scalar(
                        "UPDATE sluice_state SET revision = revision + 1 WHERE id = 1 RETURNING revision",
                    )
                    .fetch_optional(&mut *tx)
                    .await?,
                };
                let Some(revision) = bumped else {
                    let actual: i64 = sqlx::query_scalar("SELECT revision FROM sluice_state WHERE id = 1")
                        .fetch_one(&mut *tx)
                        .await?;
                    return Err(StoreError::Conflict {
                        expected: expected.unwrap_or_default(),
                        actual: actual as u64,
                    });
                };

                let upsert_ids: HashSet<String> = change.upserts.iter().map(Rule::id).collect();
                let mut doomed: Vec<String> = change.deletes.clone();
                for domain in &change.replace_domains {
                    let ids: Vec<String> = sqlx::query_scalar("SELECT rule_id FROM rules WHERE domain = $1")
                        .bind(domain)
                        .fetch_all(&mut *tx)
                        .await?;
                    doomed.extend(ids.into_iter().filter(|id| !upsert_ids.contains(id) && !change.deletes.contains(id)));
                }
                for id in &doomed {
                    let before: Option<String> = sqlx::query_scalar("DELETE FROM rules WHERE rule_id = $1 RETURNING body")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(before) = before else {
                        // Dropping the transaction rolls everything back.
                        return Err(StoreError::NotFound(id.clone()));
                    };
                    audit(&mut tx, revision, now_ms, actor, "delete", id, Some(&before), None).await?;
                }
                for rule in &change.upserts {
                    let id = rule.id();
                    let body = serde_json::to_string(rule).map_err(|e| StoreError::Internal(e.to_string()))?;
                    let before: Option<String> = sqlx::query_scalar("SELECT body FROM rules WHERE rule_id = $1")
                        .bind(&id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO rules (rule_id, domain, body, revision, updated_at_ms) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (rule_id) DO UPDATE SET domain = excluded.domain, body = excluded.body, \
                         revision = excluded.revision, updated_at_ms = excluded.updated_at_ms",
                    )
                    .bind(&id)
                    .bind(&rule.domain)
                    .bind(&body)
                    .bind(revision)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    let action = if before.is_some() { "update" } else { "create" };
                    audit(&mut tx, revision, now_ms, actor, action, &id, before.as_deref(), Some(&body)).await?;
                }
                tx.commit().await?;
                Ok(revision as u64)
            }

            #[allow(clippy::too_many_arguments)]
            async fn audit(
                tx: &mut sqlx::Transaction<'static, <$pool as PoolDb>::Db>,
                revision: i64,
                now_ms: i64,
                actor: &str,
                action: &str,
                rule_id: &str,
                before: Option<&str>,
                after: Option<&str>,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO rule_audit (revision, at_ms, actor, action, rule_id, before_body, after_body) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(revision)
                .bind(now_ms)
                .bind(actor)
                .bind(action)
                .bind(rule_id)
                .bind(before)
                .bind(after)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// An audit row that is not a rule change (an admin's `reset` of a key's counters),
            /// at the rules' current revision.
            pub async fn audit_event(
                pool: &$pool,
                now_ms: i64,
                actor: &str,
                action: &str,
                rule_id: &str,
                body: &str,
            ) -> Result<()> {
                let mut tx = pool.begin().await?;
                let (revision,): (i64,) =
                    sqlx::query_as("SELECT COALESCE(MAX(revision), 0) FROM rule_audit")
                        .fetch_one(&mut *tx)
                        .await?;
                audit(&mut tx, revision, now_ms, actor, action, rule_id, None, Some(body)).await?;
                tx.commit().await?;
                Ok(())
            }

            /// The newest `limit` changes, of `rule_id` only when it is not empty.
            pub async fn audit_log(
                pool: &$pool,
                rule_id: &str,
                limit: u32,
            ) -> Result<Vec<AuditEntry>> {
                type Row = (i64, i64, String, String, String, Option<String>, Option<String>);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT revision, at_ms, actor, action, rule_id, before_body, after_body \
                     FROM rule_audit WHERE ($1 = '' OR rule_id = $1) ORDER BY id DESC LIMIT $2",
                )
                .bind(rule_id)
                .bind(limit as i64)
                .fetch_all(pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(revision, at_ms, actor, action, rule_id, before, after)| AuditEntry {
                        revision: revision as u64,
                        at_ms,
                        actor,
                        action,
                        rule_id,
                        before,
                        after,
                    })
                    .collect())
            }

            use super::PoolDb;
        }
    };
}

/// Names the database type behind a pool type, for the transaction type in the macro.
pub trait PoolDb {
    type Db: sqlx::Database;
}

impl PoolDb for sqlx::SqlitePool {
    type Db = sqlx::Sqlite;
}

impl PoolDb for sqlx::PgPool {
    type Db = sqlx::Postgres;
}

backend!(sqlite, sqlx::SqlitePool);
backend!(postgres, sqlx::PgPool);
