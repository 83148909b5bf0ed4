//! The learning loop's tables: history (scores, endpoint traffic, limit adjustments) and state
//! (models, actions in force). Plain row types in, SQL written once for both drivers (as in
//! `backend`). The writer that batches and buffers around these calls is `crate::service::history_writer`.

/// One scored client-minute.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreRow {
    pub minute_ms: i64,
    pub client: String,
    pub score: f64,
    pub requests: i64,
    /// JSON object, feature name → value.
    pub features: String,
    pub action: Option<&'static str>,
    pub model_version: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrafficRow {
    pub minute_ms: i64,
    pub endpoint: String,
    pub tier: &'static str,
    pub requests: i64,
    pub allowed: i64,
    pub denied: i64,
    /// Of `denied`: by an anomaly action, and by a limit cut under pressure (the rest: limits).
    pub denied_anomaly: i64,
    pub denied_cut: i64,
    pub errors: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdjustmentRow {
    pub at_ms: i64,
    pub client: String,
    pub from_action: Option<String>,
    pub to_action: Option<String>,
    pub score: f64,
    pub cause: &'static str,
    pub shadow: bool,
    pub expires_at_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelRow {
    pub version: i64,
    pub trained_at_ms: i64,
    pub trained_on: i64,
    pub body: String,
}

/// One series' minute: what happened and what was forecast from it.
#[derive(Clone, Debug, PartialEq)]
pub struct ForecastRow {
    /// The minute that closed.
    pub minute_ms: i64,
    pub series: String,
    pub actual: f64,
    /// The next minutes as served, JSON array.
    pub forecast: String,
    pub method_1: &'static str,
    pub method_15: &'static str,
}

/// Which history rows to read: newest first, at most `limit`.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryQuery {
    /// Only this client key.
    pub client: Option<String>,
    /// From (inclusive) and until (exclusive), ms since the epoch.
    pub since_ms: i64,
    pub until_ms: i64,
    pub limit: u32,
}

/// A stored limit adjustment, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredAdjustment {
    pub at_ms: i64,
    pub client: String,
    pub from_action: Option<String>,
    pub to_action: Option<String>,
    pub score: f64,
    pub cause: String,
    pub shadow: bool,
    pub expires_at_ms: Option<i64>,
}

/// A stored client-minute score, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredScore {
    pub minute_ms: i64,
    pub client: String,
    pub score: f64,
    pub requests: i64,
    /// JSON object, feature name → value.
    pub features: String,
    pub action: Option<String>,
    pub model_version: i64,
}

/// The anomaly actions one instance has in force at `at_ms`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActionSet {
    /// Which instance (`--instance-id`): its earlier rows are replaced, other instances' kept.
    pub instance: String,
    /// When written: any instance's rows expired by then are pruned.
    pub at_ms: i64,
    pub actions: Vec<ActionRow>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionRow {
    pub client: String,
    /// The action as JSON (`core::learn::actions::Action`).
    pub body: String,
    pub expires_at_ms: i64,
}

/// What one learning tick (or training) leaves behind; written in one transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryBatch {
    pub scores: Vec<ScoreRow>,
    pub traffic: Vec<TrafficRow>,
    pub adjustments: Vec<AdjustmentRow>,
    /// The actions one instance has in force: replaces that instance's rows when present.
    pub actions: Option<ActionSet>,
    pub model: Option<ModelRow>,
    /// Each series' forecasts beside its actual count, under `instance`.
    pub forecasts: Vec<ForecastRow>,
    pub instance: String,
}

impl HistoryBatch {
    pub fn rows(&self) -> usize {
        self.scores.len() + self.traffic.len() + self.adjustments.len() + self.forecasts.len()
    }
}

/// Rows per multi-row INSERT: well under both databases' bind-parameter limits.
const CHUNK: usize = 500;

macro_rules! history_backend {
    ($module:ident, $pool:ty) => {
        pub mod $module {
            use super::*;
            use crate::store::Result;
            use crate::store::backend::PoolDb;

            type Builder = sqlx::QueryBuilder<<$pool as PoolDb>::Db>;

            pub async fn write(pool: &$pool, batch: &HistoryBatch) -> Result<()> {
                let mut tx = pool.begin().await?;
                for chunk in batch.scores.chunks(CHUNK) {
                    let mut q = Builder::new(
                        "INSERT INTO anomaly_scores (minute_ms, client, score, requests, features, action, model_version) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.minute_ms)
                            .push_bind(r.client.as_str())
                            .push_bind(r.score)
                            .push_bind(r.requests)
                            .push_bind(r.features.as_str())
                            .push_bind(r.action)
                            .push_bind(r.model_version);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                for chunk in batch.forecasts.chunks(CHUNK) {
                    let mut q = Builder::new(
                        "INSERT INTO forecast_history (minute_ms, instance, series, actual, forecast, method_1, method_15) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.minute_ms)
                            .push_bind(batch.instance.as_str())
                            .push_bind(r.series.as_str())
                            .push_bind(r.actual)
                            .push_bind(r.forecast.as_str())
                            .push_bind(r.method_1)
                            .push_bind(r.method_15);
                    });
                    // A minute written twice (a retried batch) keeps the first.
                    q.push(" ON CONFLICT (series, minute_ms, instance) DO NOTHING");
                    q.build().execute(&mut *tx).await?;
                }
                for chunk in batch.traffic.chunks(CHUNK) {
                    let mut q = Builder::new(
                        "INSERT INTO endpoint_traffic (minute_ms, endpoint, tier, requests, allowed, denied, denied_anomaly, denied_cut, errors) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.minute_ms)
                            .push_bind(r.endpoint.as_str())
                            .push_bind(r.tier)
                            .push_bind(r.requests)
                            .push_bind(r.allowed)
                            .push_bind(r.denied)
                            .push_bind(r.denied_anomaly)
                            .push_bind(r.denied_cut)
                            .push_bind(r.errors);
                    });
                    // A minute written twice (a retried batch) adds up rather than failing.
                    q.push(
                        " ON CONFLICT (minute_ms, endpoint, tier) DO UPDATE SET \
                         requests = endpoint_traffic.requests + excluded.requests, \
                         allowed = endpoint_traffic.allowed + excluded.allowed, \
                         denied = endpoint_traffic.denied + excluded.denied, \
                         denied_anomaly = endpoint_traffic.denied_anomaly + excluded.denied_anomaly, \
                         denied_cut = endpoint_traffic.denied_cut + excluded.denied_cut, \
                         errors = endpoint_traffic.errors + excluded.errors",
                    );
                    q.build().execute(&mut *tx).await?;
                }
                for chunk in batch.adjustments.chunks(CHUNK) {
                    let mut q = Builder::new(
                        "INSERT INTO limit_adjustments (at_ms, client, from_action, to_action, score, cause, shadow, expires_at_ms) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.at_ms)
                            .push_bind(r.client.as_str())
                            .push_bind(r.from_action.as_deref())
                            .push_bind(r.to_action.as_deref())
                            .push_bind(r.score)
                            .push_bind(r.cause)
                            .push_bind(r.shadow)
                            .push_bind(r.expires_at_ms);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                if let Some(set) = &batch.actions {
                    sqlx::query(
                        "DELETE FROM anomaly_actions WHERE instance = $1 OR expires_at_ms <= $2",
                    )
                    .bind(set.instance.as_str())
                    .bind(set.at_ms)
                    .execute(&mut *tx)
                    .await?;
                    for chunk in set.actions.chunks(CHUNK) {
                        let mut q = Builder::new(
                            "INSERT INTO anomaly_actions (client, body, instance, expires_at_ms) ",
                        );
                        q.push_values(chunk, |mut b, r| {
                            b.push_bind(r.client.as_str())
                                .push_bind(r.body.as_str())
                                .push_bind(set.instance.as_str())
                                .push_bind(r.expires_at_ms);
                        });
                        // Two instances acting on one client: the latest write speaks for it.
                        q.push(
                            " ON CONFLICT (client) DO UPDATE SET body = excluded.body, \
                             instance = excluded.instance, expires_at_ms = excluded.expires_at_ms",
                        );
                        q.build().execute(&mut *tx).await?;
                    }
                }
                if let Some(m) = &batch.model {
                    sqlx::query(
                        "INSERT INTO learner_models (instance, version, trained_at_ms, trained_on, body) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (instance, version) DO UPDATE SET trained_at_ms = excluded.trained_at_ms, \
                         trained_on = excluded.trained_on, body = excluded.body",
                    )
                    .bind(batch.instance.as_str())
                    .bind(m.version)
                    .bind(m.trained_at_ms)
                    .bind(m.trained_on)
                    .bind(m.body.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            /// `instance`'s newest model's body (else the newest of any instance: a new replica
            /// starts from a peer's) and the actions in force, every instance's.
            pub async fn load(pool: &$pool, instance: &str) -> Result<(Option<String>, Vec<String>)> {
                let model: Option<String> = sqlx::query_scalar(
                    "SELECT body FROM learner_models \
                     ORDER BY CASE WHEN instance = $1 THEN 0 ELSE 1 END, version DESC, trained_at_ms DESC LIMIT 1",
                )
                .bind(instance)
                .fetch_optional(pool)
                .await?;
                let actions: Vec<String> =
                    sqlx::query_scalar("SELECT body FROM anomaly_actions ORDER BY client")
                        .fetch_all(pool)
                        .await?;
                Ok((model, actions))
            }

            /// `FROM table WHERE time column in range [AND client = …]`, newest first, limited.
            fn history_select(
                columns: &str,
                table: &str,
                time: &str,
                q: &HistoryQuery,
            ) -> Builder {
                let mut b = Builder::new(format!("SELECT {columns} FROM {table} WHERE {time} >= "));
                b.push_bind(q.since_ms).push(format!(" AND {time} < ")).push_bind(q.until_ms);
                if let Some(client) = &q.client {
                    b.push(" AND client = ").push_bind(client.as_str());
                }
                b.push(format!(" ORDER BY {time} DESC, client LIMIT "))
                    .push_bind(i64::from(q.limit));
                b
            }

            pub async fn adjustments(
                pool: &$pool,
                q: &HistoryQuery,
            ) -> Result<Vec<StoredAdjustment>> {
                type Row = (i64, String, Option<String>, Option<String>, f64, String, bool, Option<i64>);
                let rows: Vec<Row> = history_select(
                    "at_ms, client, from_action, to_action, score, cause, shadow, expires_at_ms",
                    "limit_adjustments",
                    "at_ms",
                    q,
                )
                .build_query_as()
                .fetch_all(pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(at_ms, client, from_action, to_action, score, cause, shadow, expires_at_ms)| {
                        StoredAdjustment { at_ms, client, from_action, to_action, score, cause, shadow, expires_at_ms }
                    })
                    .collect())
            }

            pub async fn scores(pool: &$pool, q: &HistoryQuery) -> Result<Vec<StoredScore>> {
                type Row = (i64, String, f64, i64, String, Option<String>, i64);
                let rows: Vec<Row> = history_select(
                    "minute_ms, client, score, requests, features, action, model_version",
                    "anomaly_scores",
                    "minute_ms",
                    q,
                )
                .build_query_as()
                .fetch_all(pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(minute_ms, client, score, requests, features, action, model_version)| {
                        StoredScore { minute_ms, client, score, requests, features, action, model_version }
                    })
                    .collect())
            }

            /// Per-minute traffic, every endpoint and tier, ordered by endpoint then minute.
            pub async fn traffic(pool: &$pool) -> Result<Vec<TrafficRow>> {
                let rows: Vec<(i64, String, String, i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT minute_ms, endpoint, tier, requests, allowed, denied, errors \
                     FROM endpoint_traffic ORDER BY endpoint, minute_ms",
                )
                .fetch_all(pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(minute_ms, endpoint, tier, requests, allowed, denied, errors)| {
                        TrafficRow {
                            minute_ms,
                            endpoint,
                            tier: if tier == "PRM" { "PRM" } else { "STD" },
                            requests,
                            allowed,
                            denied,
                            errors,
                            denied_anomaly: 0,
                            denied_cut: 0,
                        }
                    })
                    .collect())
            }

            /// Deletes history older than `before_ms` (and all but each instance's newest few models).
            pub async fn prune(pool: &$pool, before_ms: i64, keep_models: i64) -> Result<u64> {
                let mut deleted = 0;
                for sql in [
                    "DELETE FROM anomaly_scores WHERE minute_ms < $1",
                    "DELETE FROM endpoint_traffic WHERE minute_ms < $1",
                    "DELETE FROM limit_adjustments WHERE at_ms < $1",
                    "DELETE FROM forecast_history WHERE minute_ms < $1",
                ] {
                    deleted += sqlx::query(sql).bind(before_ms).execute(pool).await?.rows_affected();
                }
                deleted += sqlx::query(
                    "DELETE FROM learner_models WHERE version <= \
                     (SELECT MAX(newer.version) FROM learner_models AS newer \
                      WHERE newer.instance = learner_models.instance) - $1",
                )
                .bind(keep_models)
                .execute(pool)
                .await?
                .rows_affected();
                Ok(deleted)
            }
        }
    };
}

history_backend!(sqlite, sqlx::SqlitePool);
history_backend!(postgres, sqlx::PgPool);
