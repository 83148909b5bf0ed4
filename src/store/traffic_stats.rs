//! Traffic over a window (`GetStats`): the per-minute `endpoint_traffic` rows summed per endpoint
//! and tier and in total, and the distinct clients scored in the window. SQL written once for
//! both drivers.

/// Requests of one endpoint and tier (or of everything) over a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficSums {
    pub endpoint: String,
    pub tier: String,
    pub requests: i64,
    pub allowed: i64,
    pub denied: i64,
    pub denied_anomaly: i64,
    pub denied_cut: i64,
    pub errors: i64,
}

/// What `GetStats` reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    pub total: TrafficSums,
    pub unique_clients: i64,
    /// Busiest first, at most the limit asked.
    pub endpoints: Vec<TrafficSums>,
    /// More endpoint rows existed.
    pub truncated: bool,
}

/// The sums, cast so both databases return BIGINT (PostgreSQL's SUM of a BIGINT is NUMERIC).
const SUMS: &str = "CAST(COALESCE(SUM(requests), 0) AS BIGINT), CAST(COALESCE(SUM(allowed), 0) AS BIGINT), \
    CAST(COALESCE(SUM(denied), 0) AS BIGINT), CAST(COALESCE(SUM(denied_anomaly), 0) AS BIGINT), \
    CAST(COALESCE(SUM(denied_cut), 0) AS BIGINT), CAST(COALESCE(SUM(errors), 0) AS BIGINT)";

type Sums = (i64, i64, i64, i64, i64, i64);

fn sums(endpoint: String, tier: String, s: Sums) -> TrafficSums {
    TrafficSums {
        endpoint,
        tier,
        requests: s.0,
        allowed: s.1,
        denied: s.2,
        denied_anomaly: s.3,
        denied_cut: s.4,
        errors: s.5,
    }
}

macro_rules! stats_backend {
    ($module:ident, $pool:ty) => {
        pub mod $module {
            use super::*;
            use crate::store::Result;

            /// [since_ms, until_ms); at most `limit` endpoint rows.
            pub async fn window(
                pool: &$pool,
                since_ms: i64,
                until_ms: i64,
                limit: u32,
            ) -> Result<WindowStats> {
                let total: Sums = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {SUMS} FROM endpoint_traffic WHERE minute_ms >= $1 AND minute_ms < $2"
                )))
                .bind(since_ms)
                .bind(until_ms)
                .fetch_one(pool)
                .await?;
                type Row = (String, String, i64, i64, i64, i64, i64, i64);
                let mut rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT endpoint, tier, {SUMS} FROM endpoint_traffic \
                     WHERE minute_ms >= $1 AND minute_ms < $2 GROUP BY endpoint, tier \
                     ORDER BY 3 DESC, endpoint, tier LIMIT $3"
                )))
                .bind(since_ms)
                .bind(until_ms)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?;
                let truncated = rows.len() > limit as usize;
                rows.truncate(limit as usize);
                let (unique_clients,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(DISTINCT client) FROM anomaly_scores \
                     WHERE minute_ms >= $1 AND minute_ms < $2",
                )
                .bind(since_ms)
                .bind(until_ms)
                .fetch_one(pool)
                .await?;
                Ok(WindowStats {
                    total: sums(String::new(), String::new(), total),
                    unique_clients,
                    endpoints: rows
                        .into_iter()
                        .map(|(e, t, a, b, c, d, f, g)| sums(e, t, (a, b, c, d, f, g)))
                        .collect(),
                    truncated,
                })
            }
        }
    };
}

stats_backend!(sqlite, sqlx::SqlitePool);
stats_backend!(postgres, sqlx::PgPool);
