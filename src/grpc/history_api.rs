//! `ListAdjustments`, `ListScores` and `ListForecasts`: the learning loop's history, read back from
//! the database (the only RPCs that read it; decisions never do), translated to protobuf.

use super::ApiError;
use super::requests::history_query;
use super::sluice_api::SluiceApi;
use crate::proto::sluice::v1 as pb;

use super::requests::MAX_ROWS;
use crate::store::forecast_history::{HORIZON_MS, predicted_for};
use crate::store::history::{HistoryQuery, StoredAdjustment, StoredScore};

impl SluiceApi {
    pub(super) async fn list_adjustments_of(
        &self,
        req: &pb::ListHistoryRequest,
    ) -> Result<pb::ListAdjustmentsResponse, ApiError> {
        let q = history_query(
            req,
            self.handles.caps.max_value_len,
            self.handles.clock.now_millis(),
        )?;
        let rows = self.handles.database.adjustments(&q).await?;
        Ok(pb::ListAdjustmentsResponse {
            adjustments: rows.into_iter().map(adjustment).collect(),
        })
    }

    pub(super) async fn list_scores_of(
        &self,
        req: &pb::ListHistoryRequest,
    ) -> Result<pb::ListScoresResponse, ApiError> {
        let q = history_query(
            req,
            self.handles.caps.max_value_len,
            self.handles.clock.now_millis(),
        )?;
        let rows = self.handles.database.scores(&q).await?;
        Ok(pb::ListScoresResponse {
            scores: rows.into_iter().map(score).collect(),
        })
    }
}

impl SluiceApi {
    pub(super) async fn list_forecasts_of(
        &self,
        req: &pb::ListForecastsRequest,
    ) -> Result<pb::ListForecastsResponse, ApiError> {
        let as_history = pb::ListHistoryRequest {
            client: req.series.clone(),
            since_ms: req.since_ms,
            until_ms: req.until_ms,
            limit: req.limit,
        };
        let q = history_query(
            &as_history,
            self.handles.caps.max_value_len,
            self.handles.clock.now_millis(),
        )
        .map_err(|mut e| {
            // The history query calls the key `client`; here it is the series.
            if e.field == "client" {
                e.field = "series".into();
            }
            e
        })?;
        let rows = self.handles.database.forecasts(&q).await?;
        // What was forecast for each minute comes from the rows up to 15 minutes before it: the
        // ones listed, and those just before the oldest listed.
        let before = match rows.iter().map(|r| r.minute_ms).min() {
            Some(oldest) => {
                let q = HistoryQuery {
                    since_ms: oldest - HORIZON_MS,
                    until_ms: oldest,
                    limit: MAX_ROWS,
                    ..q.clone()
                };
                self.handles.database.forecasts(&q).await?
            }
            None => Vec::new(),
        };
        let predicted = predicted_for(&rows, &before);
        Ok(pb::ListForecastsResponse {
            points: rows
                .iter()
                .zip(predicted)
                .map(|(r, (predicted_1, predicted_15))| pb::ForecastPoint {
                    minute_ms: r.minute_ms,
                    series: r.series.clone(),
                    instance: r.instance.clone(),
                    actual: r.actual,
                    predicted_1,
                    predicted_15,
                    forecast: r.forecast.clone(),
                    method_1: r.method_1.clone(),
                    method_15: r.method_15.clone(),
                })
                .collect(),
        })
    }
}

fn adjustment(r: StoredAdjustment) -> pb::Adjustment {
    pb::Adjustment {
        at_ms: r.at_ms,
        client: r.client,
        from_action: r.from_action.unwrap_or_default(),
        to_action: r.to_action.unwrap_or_default(),
        score: r.score,
        cause: r.cause,
        shadow: r.shadow,
        expires_at_ms: r.expires_at_ms.unwrap_or(0),
    }
}

fn score(r: StoredScore) -> pb::ClientScore {
    // Written by this service as a JSON object of numbers; a row that is not (edited by hand)
    // comes back without features rather than failing the whole listing.
    let features = serde_json::from_str(&r.features).unwrap_or_default();
    pb::ClientScore {
        minute_ms: r.minute_ms,
        client: r.client,
        score: r.score,
        requests: r.requests.max(0) as u64,
        features,
        action: r.action.unwrap_or_default(),
        model_version: r.model_version.max(0) as u64,
    }
}
