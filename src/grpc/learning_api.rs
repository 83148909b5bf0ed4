//! The learning loop's RPCs (`Report`, `ListFlagged`, `GetModelInfo`; `TrainNow` is in
//! `sluice_api`), translated between protobuf and the learner's types.

use super::convert::subject_from_proto;
use super::{ApiError, AppState};
use crate::core::learn::actions::ActionKind;
use crate::core::learn::features::NAMES;
use crate::core::time::NANOS_PER_MILLI;
use crate::core::validate::ValidationError;
use crate::proto::sluice::v1 as pb;

/// Most requests one `Report` may stand for.
pub const MAX_REPORT_COUNT: u32 = 10_000;

pub fn reason(kind: ActionKind) -> pb::Reason {
    match kind {
        ActionKind::Block => pb::Reason::BlockedAnomaly,
        ActionKind::Throttle { .. } => pb::Reason::ThrottledAnomaly,
    }
}

pub fn report(state: &AppState, req: &pb::ReportRequest) -> Result<(), ApiError> {
    let subject = subject_from_proto("subject", req.subject.as_ref(), &state.caps)?;
    if subject.remote_address.is_empty() {
        return Err(ValidationError::new(
            "subject.client_ip",
            "is required: outcomes are per client",
        )
        .into());
    }
    if !(100..=599).contains(&req.status) {
        return Err(ValidationError::new(
            "status",
            format!("{} is not an HTTP status (100-599)", req.status),
        )
        .into());
    }
    if req.count > MAX_REPORT_COUNT {
        return Err(ValidationError::new(
            "count",
            format!("{} is more than {MAX_REPORT_COUNT}", req.count),
        )
        .into());
    }
    let now = state.clock.now();
    for _ in 0..req.count.max(1) {
        state
            .engine
            .report_outcome(&subject, req.status as u16, now);
    }
    Ok(())
}

pub fn list_flagged(state: &AppState, req: &pb::ListFlaggedRequest) -> pb::ListFlaggedResponse {
    let mut all = state.learning.flagged();
    let total = all.len() as u32;
    all.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.client.cmp(&b.client))
    });
    let limit = if req.limit == 0 {
        1000
    } else {
        req.limit as usize
    };
    let ms = |n: u64| (n / NANOS_PER_MILLI) as i64;
    let clients = all
        .into_iter()
        .take(limit)
        .map(|a| pb::FlaggedClient {
            client: a.client.to_string(),
            reason: reason(a.kind) as i32,
            limit_per_minute: match a.kind {
                ActionKind::Throttle { per_minute } => per_minute,
                ActionKind::Block => 0,
            },
            score: a.score,
            since_ms: ms(a.since),
            expires_at_ms: ms(a.expires_at),
            shadow: a.shadow,
            model_version: a.model_version,
        })
        .collect();
    pb::ListFlaggedResponse { clients, total }
}

pub fn model_info(state: &AppState) -> pb::ModelInfo {
    let learning = &state.learning;
    let info = learning.model_info();
    let forecast = learning.forecasting.status();
    let config = learning.config();
    pb::ModelInfo {
        version: info.version,
        trained_at_ms: info.trained_at.map_or(0, |t| (t / NANOS_PER_MILLI) as i64),
        trained_on: info.trained_on as u64,
        trees: info.trees as u32,
        sample_size: info.sample_size as u32,
        pending_sample: info.pending_sample as u64,
        features: NAMES.iter().map(|n| n.to_string()).collect(),
        block_at: config.policy.block_at,
        throttle_at: config.policy.throttle_at,
        throttle_per_minute: config.policy.throttle_per_minute,
        retrain_every_secs: config.retrain_every.as_secs(),
        adaptive: learning.adaptive,
        shadow: config.policy.shadow,
        flagged: state.engine.actions().len() as u32,
        history_dropped: learning
            .history
            .stats
            .dropped_rows
            .load(std::sync::atomic::Ordering::Relaxed),
        observation_overflow: learning.observation_overflow(),
        forecaster: forecast.forecaster,
        forecast_model_path: forecast.model_path,
        forecast_model_version: forecast.model_version,
        forecast_problem: forecast.problem.unwrap_or_default(),
        pressure_factor: forecast.cut.as_ref().map_or(1.0, |c| c.factor),
        pressure_cause: forecast
            .cut
            .as_ref()
            .map_or_else(String::new, |c| c.cause.describe()),
        pressure_shadow: forecast.cut.as_ref().is_some_and(|c| c.shadow),
        forecasts: forecast
            .forecasts
            .into_iter()
            .map(|(endpoint, f)| pb::EndpointForecast {
                endpoint,
                requests: f.to_vec(),
            })
            .collect(),
    }
}

/// `ReportLoad`: validated, then remembered for the next minute's pressure step.
pub fn report_load(
    state: &AppState,
    req: &pb::ReportLoadRequest,
) -> Result<pb::ReportLoadResponse, ApiError> {
    if req.backend.is_empty() {
        return Err(ValidationError::new("backend", "is required").into());
    }
    crate::core::validate::check_len("backend", &req.backend, state.caps.max_value_len)?;
    if !(0.0..=1.0).contains(&req.utilisation) {
        return Err(ValidationError::new(
            "utilisation",
            format!("{} is not a share between 0 and 1", req.utilisation),
        )
        .into());
    }
    let forecasting = &state.learning.forecasting;
    forecasting.report_load(&req.backend, req.utilisation, state.clock.now());
    let cut = forecasting.status().cut;
    Ok(pb::ReportLoadResponse {
        factor: cut.as_ref().map_or(1.0, |c| c.factor),
        cause: cut.map_or_else(String::new, |c| c.cause.describe()),
    })
}
