//! The learning loop's RPCs (`Report`, `ListFlagged`, `GetModelInfo`, `ReportLoad`; `TrainNow`
//! and `ReloadModels` are in `sluice_api`), translated between protobuf and the learner's types.
//! Status comes from what the minute loop and the model slot publish: these never wait for a
//! running minute or inference.

use super::ApiError;
use super::convert::action_reason;
use super::requests;
use super::sluice_api::SluiceApi;
use crate::proto::sluice::v1 as pb;
use sluice_core::learn::actions::ActionKind;
use sluice_core::learn::baselines::Measure;
use sluice_core::learn::features::NAMES;
use sluice_core::time::NANOS_PER_MILLI;

impl SluiceApi {
    pub(super) fn report_outcome(&self, req: &pb::ReportRequest) -> Result<(), ApiError> {
        let (subject, status, count) = requests::report(req, &self.handles.caps)?;
        let now = self.handles.clock.now();
        for _ in 0..count {
            self.handles.engine.report_outcome(&subject, status, now);
        }
        Ok(())
    }

    pub(super) fn flagged(&self, req: &pb::ListFlaggedRequest) -> pb::ListFlaggedResponse {
        let mut all = self.handles.engine.actions().sorted();
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
                reason: action_reason(a.kind) as i32,
                limit_per_minute: match a.kind {
                    ActionKind::Throttle { per_minute } => per_minute,
                    ActionKind::Block => 0,
                },
                score: a.score,
                since_ms: ms(a.since),
                expires_at_ms: ms(a.expires_at),
                shadow: a.shadow,
                model_version: a.model_version,
                signal: a.signal.name().to_string(),
                why: a.why.to_string(),
            })
            .collect();
        pb::ListFlaggedResponse { clients, total }
    }

    pub(super) fn model_info(&self) -> pb::ModelInfo {
        let learning = self.handles.learning.status();
        let info = &learning.model;
        let forecast = self.handles.models.status();
        let config = self.handles.learning.config();
        let cut = learning.cut.as_ref();
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
            adaptive: self.handles.learning.adaptive(),
            shadow: config.policy.shadow,
            flagged: self.handles.engine.actions().len() as u32,
            history_dropped: self
                .handles
                .history_stats
                .dropped_rows
                .load(std::sync::atomic::Ordering::Relaxed),
            observation_overflow: self.handles.engine.observer().overflow_total(),
            forecaster: forecast.forecaster.clone(),
            forecast_model_path: forecast.model_path.clone(),
            forecast_model_version: forecast.model_version,
            forecast_problem: forecast.problem.clone().unwrap_or_default(),
            pressure_factor: cut.map_or(1.0, |c| c.factor),
            pressure_cause: cut.map_or_else(String::new, |c| c.cause.describe()),
            pressure_shadow: cut.is_some_and(|c| c.shadow),
            forecasts: learning
                .forecasts
                .iter()
                .map(|(endpoint, f)| {
                    let methods = learning.methods.iter().find(|m| &m.series == endpoint);
                    pb::EndpointForecast {
                        endpoint: endpoint.clone(),
                        requests: f.to_vec(),
                        method_1: methods.map_or("", |m| m.at_1.name()).into(),
                        method_15: methods.map_or("", |m| m.at_horizon.name()).into(),
                        why: methods.map(|m| m.why.clone()).unwrap_or_default(),
                    }
                })
                .collect(),
            baselines: learning
                .baselines
                .iter()
                .map(|(v, threshold, route)| {
                    let (measure, tier) = match v.measure {
                        Measure::Site => ("requests", ""),
                        Measure::Endpoint { prm, .. } => ("route", if prm { "PRM" } else { "STD" }),
                        Measure::Errors => ("errors", ""),
                        Measure::AuthFailures => ("auth_failures", ""),
                    };
                    pb::Baseline {
                        measure: measure.into(),
                        route: route.clone().unwrap_or_default(),
                        tier: tier.into(),
                        samples: v.samples.round(),
                        p50: v.p50,
                        p99: v.p99,
                        p999: v.p999,
                        threshold: *threshold,
                    }
                })
                .collect(),
        }
    }

    /// `ReportLoad`: validated, then remembered for the next minute's pressure step.
    pub(super) fn report_load_of(
        &self,
        req: &pb::ReportLoadRequest,
    ) -> Result<pb::ReportLoadResponse, ApiError> {
        let (backend, utilisation) = requests::report_load(req, &self.handles.caps)?;
        self.handles
            .loads
            .report(backend, utilisation, self.handles.clock.now());
        let cut = self.handles.learning.status().cut.clone();
        let threshold = self.handles.learning.pressure().load_threshold;
        let pending = cut.is_none() && self.handles.learning.adaptive() && utilisation >= threshold;
        Ok(pb::ReportLoadResponse {
            factor: cut.as_ref().map_or(1.0, |c| c.factor),
            cause: match &cut {
                Some(c) => c.cause.describe(),
                None if pending => format!(
                    "pending: {backend} at {:.0}% is at or over the {:.0}% threshold; the cut applies at the next minute",
                    utilisation * 100.0,
                    threshold * 100.0
                ),
                None => String::new(),
            },
            pending,
        })
    }
}
