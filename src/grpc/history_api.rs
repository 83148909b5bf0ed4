//! `ListAdjustments` and `ListScores`: the learning loop's history, read back from the database
//! (the only RPCs that read it; decisions never do), translated to protobuf.

use super::ApiError;
use super::requests::history_query;
use super::sluice_api::SluiceApi;
use crate::proto::sluice::v1 as pb;
use crate::store::history::{StoredAdjustment, StoredScore};

impl SluiceApi {
    pub(super) async fn list_adjustments_of(
        &self,
        req: &pb::ListHistoryRequest,
    ) -> Result<pb::ListAdjustmentsResponse, ApiError> {
        let q = history_query(req, self.caps.max_value_len, self.clock.now_millis())?;
        let rows = self.database.adjustments(&q).await?;
        Ok(pb::ListAdjustmentsResponse {
            adjustments: rows.into_iter().map(adjustment).collect(),
        })
    }

    pub(super) async fn list_scores_of(
        &self,
        req: &pb::ListHistoryRequest,
    ) -> Result<pb::ListScoresResponse, ApiError> {
        let q = history_query(req, self.caps.max_value_len, self.clock.now_millis())?;
        let rows = self.database.scores(&q).await?;
        Ok(pb::ListScoresResponse {
            scores: rows.into_iter().map(score).collect(),
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
