//! Reading the forecast history back (`ListForecasts`): each minute's actual count beside what was
//! forecast, per series; written with the rest of a minute's history (`history::write`), pruned
//! with it. SQL written once for both drivers.

use super::history::HistoryQuery;

/// One stored minute of one series, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredForecast {
    pub minute_ms: i64,
    pub instance: String,
    pub series: String,
    pub actual: f64,
    /// The next minutes as served from this one (index 0: the minute after).
    pub forecast: Vec<f64>,
    pub method_1: String,
    pub method_15: String,
}

macro_rules! forecast_backend {
    ($module:ident, $pool:ty) => {
        pub mod $module {
            use super::*;
            use crate::store::Result;
            use crate::store::backend::PoolDb;

            type Builder = sqlx::QueryBuilder<<$pool as PoolDb>::Db>;

            /// Rows of `q.client` (the series; every series when `None`), newest first.
            pub async fn forecasts(pool: &$pool, q: &HistoryQuery) -> Result<Vec<StoredForecast>> {
                let mut b = Builder::new(
                    "SELECT minute_ms, instance, series, actual, forecast, method_1, method_15 \
                     FROM forecast_history WHERE minute_ms >= ",
                );
                b.push_bind(q.since_ms)
                    .push(" AND minute_ms < ")
                    .push_bind(q.until_ms);
                if let Some(series) = &q.client {
                    b.push(" AND series = ").push_bind(series.as_str());
                }
                b.push(" ORDER BY minute_ms DESC, series, instance LIMIT ")
                    .push_bind(i64::from(q.limit));
                type Row = (i64, String, String, f64, String, String, String);
                let rows: Vec<Row> = b.build_query_as().fetch_all(pool).await?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(minute_ms, instance, series, actual, forecast, method_1, method_15)| {
                            StoredForecast {
                                minute_ms,
                                instance,
                                series,
                                actual,
                                // Written by this service; a row edited by hand into something
                                // else comes back without its forecast rather than failing the list.
                                forecast: serde_json::from_str(&forecast).unwrap_or_default(),
                                method_1,
                                method_15,
                            }
                        },
                    )
                    .collect())
            }
        }
    };
}

forecast_backend!(sqlite, sqlx::SqlitePool);
forecast_backend!(postgres, sqlx::PgPool);

/// The longest horizon stored, in ms: what was forecast for a minute comes from the rows up to
/// this long before it.
pub const HORIZON_MS: i64 = 15 * 60_000;

/// For each of `rows`, what was forecast for its minute 1 and 15 minutes before (by the same
/// instance, for the same series), found among `rows` and `earlier` (the rows of the
/// `HORIZON_MS` before the oldest of `rows`).
pub fn predicted_for(
    rows: &[StoredForecast],
    earlier: &[StoredForecast],
) -> Vec<(Option<f64>, Option<f64>)> {
    use std::collections::HashMap;
    let by_minute: HashMap<(&str, &str, i64), &[f64]> = rows
        .iter()
        .chain(earlier)
        .map(|r| {
            (
                (r.series.as_str(), r.instance.as_str(), r.minute_ms),
                &r.forecast[..],
            )
        })
        .collect();
    let predicted = |r: &StoredForecast, h: usize| {
        by_minute
            .get(&(
                r.series.as_str(),
                r.instance.as_str(),
                r.minute_ms - 60_000 * h as i64,
            ))
            .and_then(|f| f.get(h - 1).copied())
    };
    rows.iter()
        .map(|r| (predicted(r, 1), predicted(r, 15)))
        .collect()
}
