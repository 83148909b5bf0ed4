//! The operators' client lists: entries with their expiry, and an audit row per change, written
//! in one transaction. SQL written once for both drivers (as in `backend`).

use sluice_core::learn::lists::{ListEntry, ListKind};
use sluice_core::time::NANOS_PER_MILLI;

/// A row as stored.
type Row = (String, String, String, String, i64, Option<i64>);

fn kind(text: &str) -> Option<ListKind> {
    match text {
        "allow" => Some(ListKind::Allow),
        "deny" => Some(ListKind::Deny),
        _ => None,
    }
}

fn entry(row: Row) -> Option<ListEntry> {
    let (list, client, reason, actor, created_at_ms, expires_at_ms) = row;
    let ns = |ms: i64| ms.max(0) as u64 * NANOS_PER_MILLI;
    Some(ListEntry {
        list: kind(&list)?,
        client,
        reason,
        actor,
        created_at: ns(created_at_ms),
        expires_at: expires_at_ms.map(ns),
    })
}

macro_rules! lists_backend {
    ($module:ident, $pool:ty) => {
        pub mod $module {
            use super::*;
            use crate::store::Result;

            /// Entries unexpired at `now_ms`; expired ones are deleted first.
            pub async fn load(pool: &$pool, now_ms: i64) -> Result<Vec<ListEntry>> {
                sqlx::query("DELETE FROM client_lists WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= $1")
                    .bind(now_ms)
                    .execute(pool)
                    .await?;
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT list, client, reason, actor, created_at_ms, expires_at_ms FROM client_lists ORDER BY list, client",
                )
                .fetch_all(pool)
                .await?;
                Ok(rows.into_iter().filter_map(entry).collect())
            }

            /// Adds or replaces an entry, with its audit row.
            pub async fn put(pool: &$pool, e: &ListEntry) -> Result<()> {
                let ms = |n: u64| (n / NANOS_PER_MILLI) as i64;
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO client_lists (list, client, reason, actor, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (list, client) DO UPDATE SET reason = excluded.reason, actor = excluded.actor, created_at_ms = excluded.created_at_ms, expires_at_ms = excluded.expires_at_ms",
                )
                .bind(e.list.name())
                .bind(&e.client)
                .bind(&e.reason)
                .bind(&e.actor)
                .bind(ms(e.created_at))
                .bind(e.expires_at.map(ms))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO client_list_audit (at_ms, actor, action, list, client, reason, expires_at_ms) VALUES ($1, $2, 'put', $3, $4, $5, $6)",
                )
                .bind(ms(e.created_at))
                .bind(&e.actor)
                .bind(e.list.name())
                .bind(&e.client)
                .bind(&e.reason)
                .bind(e.expires_at.map(ms))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            /// Removes an entry (with an audit row); false when there was none.
            pub async fn remove(
                pool: &$pool,
                list: ListKind,
                client: &str,
                actor: &str,
                now_ms: i64,
            ) -> Result<bool> {
                let mut tx = pool.begin().await?;
                let removed = sqlx::query("DELETE FROM client_lists WHERE list = $1 AND client = $2")
                    .bind(list.name())
                    .bind(client)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
                if removed {
                    sqlx::query(
                        "INSERT INTO client_list_audit (at_ms, actor, action, list, client, reason, expires_at_ms) VALUES ($1, $2, 'remove', $3, $4, '', NULL)",
                    )
                    .bind(now_ms)
                    .bind(actor)
                    .bind(list.name())
                    .bind(client)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(removed)
            }

            /// The audit rows, newest first: (at_ms, actor, action, list, client).
            pub async fn audit(pool: &$pool, limit: i64) -> Result<Vec<(i64, String, String, String, String)>> {
                Ok(sqlx::query_as(
                    "SELECT at_ms, actor, action, list, client FROM client_list_audit ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(pool)
                .await?)
            }
        }
    };
}

lists_backend!(sqlite, sqlx::SqlitePool);
lists_backend!(postgres, sqlx::PgPool);
