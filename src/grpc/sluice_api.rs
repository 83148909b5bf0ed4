//! `sluice.v1.Sluice`: ShouldAllow, rule management and client inspection.

use tonic::{Request, Response, Status};

use std::sync::Arc;

use super::ApiError;
use super::auth::CheckAdmin;
use super::convert::{
    algorithm_to_proto, duration, rule_from_proto, rule_to_proto, subject_from_proto,
    unit_to_proto, verdict_reason,
};
use crate::proto::sluice::v1 as pb;
use crate::proto::sluice::v1::sluice_server::Sluice;
use crate::service::handles::Handles;
use crate::service::reservations::Settle;

use sluice_core::headers;
use sluice_core::headers::HeaderStyle;
use sluice_core::rules::RuleChange;
use sluice_core::validate::{ValidationError, check_domain};

/// Sluice's API: the service's handle bundle and the header style of `ShouldAllow` replies.
pub struct SluiceApi {
    pub handles: Arc<Handles>,
    pub headers: HeaderStyle,
}

impl SluiceApi {
    pub(super) fn domain<'a>(
        &'a self,
        requested: &'a str,
    ) -> std::result::Result<&'a str, ValidationError> {
        if requested.is_empty() {
            Ok(&self.handles.default_domain)
        } else {
            check_domain("domain", requested, &self.handles.caps)?;
            Ok(requested)
        }
    }

    /// Applies a rule change for an admin request and logs it.
    async fn change_rules<T>(
        &self,
        request: &Request<T>,
        change: RuleChange,
        expected: Option<u64>,
        actor: &str,
    ) -> std::result::Result<u64, ApiError> {
        let actor = Self::actor(request, actor);
        let (upserts, deletes) = (change.upserts.len(), change.deletes.clone());
        let revision = self
            .handles
            .rules
            .update(change, expected, &actor, self.handles.clock.now_millis())
            .await?;
        tracing::info!(revision, actor, upserts, ?deletes, "rules changed");
        Ok(revision)
    }

    /// Who the audit log records: the request's `actor`, else the caller's address.
    pub(super) fn actor<T>(request: &Request<T>, named: &str) -> String {
        if !named.is_empty() {
            return named.chars().take(200).collect();
        }
        crate::grpc::incoming::remote_addr(request)
            .map_or_else(|| "admin".to_string(), |a| format!("admin@{a}"))
    }
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl Sluice for SluiceApi {
    async fn should_allow(
        &self,
        request: Request<pb::ShouldAllowRequest>,
    ) -> RpcResult<pb::ShouldAllowResponse> {
        let _timer = self.handles.rpc.time("ShouldAllow");
        let req = request.get_ref();
        let subject = subject_from_proto("subject", req.subject.as_ref(), &self.handles.caps)
            .map_err(ApiError::from)?;
        let domain = self.domain(&req.domain).map_err(ApiError::from)?;
        let cost = if req.cost == 0 { 1 } else { req.cost as u64 };
        let now = self.handles.clock.now();
        let verdict = self
            .handles
            .decider
            .should_allow(domain, &subject, cost, now)
            .await;
        let deciding = verdict.deciding();
        let allowed = !verdict.over_limit;
        let headers = headers::render(self.headers, deciding, !allowed)
            .into_iter()
            .map(|(name, value)| pb::Header {
                name: name.to_string(),
                value,
            })
            .collect();
        let limit = deciding.and_then(|s| s.limit.as_ref());
        Ok(Response::new(pb::ShouldAllowResponse {
            allowed,
            limit: limit.map_or(0, |l| l.quota.limit),
            unit: limit.map_or(pb::Unit::Unspecified, |l| unit_to_proto(l.quota.unit)) as i32,
            remaining: deciding.map_or(0, |s| s.remaining),
            reset_after: deciding.map(|s| duration(s.reset_after)),
            retry_after: deciding
                .filter(|_| !allowed)
                .map(|s| duration(s.retry_after)),
            headers,
            rule_id: limit.map_or_else(String::new, |l| l.label.rule_id.clone()),
            limit_name: limit.map_or_else(String::new, |l| l.label.name.clone()),
            reason: verdict_reason(&verdict, allowed) as i32,
            shadow: verdict.shadow_over,
            anomaly_score: verdict.anomaly.map_or(0.0, |h| h.score),
        }))
    }

    async fn report(&self, request: Request<pb::ReportRequest>) -> RpcResult<pb::ReportResponse> {
        self.report_outcome(request.get_ref())?;
        Ok(Response::new(pb::ReportResponse {}))
    }

    async fn list_flagged(
        &self,
        request: Request<pb::ListFlaggedRequest>,
    ) -> RpcResult<pb::ListFlaggedResponse> {
        self.handles.admin.check(&request)?;
        Ok(Response::new(self.flagged(request.get_ref())))
    }

    async fn list_adjustments(
        &self,
        request: Request<pb::ListHistoryRequest>,
    ) -> RpcResult<pb::ListAdjustmentsResponse> {
        self.handles.admin.check(&request)?;
        Ok(Response::new(
            self.list_adjustments_of(request.get_ref()).await?,
        ))
    }

    async fn list_scores(
        &self,
        request: Request<pb::ListHistoryRequest>,
    ) -> RpcResult<pb::ListScoresResponse> {
        self.handles.admin.check(&request)?;
        Ok(Response::new(self.list_scores_of(request.get_ref()).await?))
    }

    async fn list_forecasts(
        &self,
        request: Request<pb::ListForecastsRequest>,
    ) -> RpcResult<pb::ListForecastsResponse> {
        self.handles.admin.check(&request)?;
        Ok(Response::new(
            self.list_forecasts_of(request.get_ref()).await?,
        ))
    }

    async fn get_stats(
        &self,
        request: Request<pb::GetStatsRequest>,
    ) -> RpcResult<pb::GetStatsResponse> {
        self.handles.admin.check(&request)?;
        Ok(Response::new(self.get_stats_of(request.get_ref()).await?))
    }

    async fn list_rule_audit(
        &self,
        request: Request<pb::ListRuleAuditRequest>,
    ) -> RpcResult<pb::ListRuleAuditResponse> {
        self.handles.admin.check(&request)?;
        Ok(Response::new(
            self.list_rule_audit_of(request.get_ref()).await?,
        ))
    }

    async fn get_model_info(
        &self,
        _request: Request<pb::GetModelInfoRequest>,
    ) -> RpcResult<pb::ModelInfo> {
        Ok(Response::new(self.model_info()))
    }

    async fn train_now(&self, request: Request<pb::TrainNowRequest>) -> RpcResult<pb::ModelInfo> {
        self.handles.admin.check(&request)?;
        let learning = self.handles.learning.clone();
        let now = self.handles.clock.now();
        // Growing a forest is CPU work: off the async workers.
        let trained = tokio::task::spawn_blocking(move || learning.train_now(now))
            .await
            .map_err(|e| ApiError::Internal(format!("training failed: {e}")))?;
        trained.map_err(ApiError::NotReady)?;
        tracing::info!("model retrained on request");
        Ok(Response::new(self.model_info()))
    }

    async fn report_load(
        &self,
        request: Request<pb::ReportLoadRequest>,
    ) -> RpcResult<pb::ReportLoadResponse> {
        self.handles.admin.check(&request)?;
        let reply = self.report_load_of(request.get_ref())?;
        Ok(Response::new(reply))
    }

    async fn reload_models(
        &self,
        request: Request<pb::ReloadModelsRequest>,
    ) -> RpcResult<pb::ModelInfo> {
        self.handles.admin.check(&request)?;
        let models = self.handles.models.clone();
        // Loading a model runs ONNX Runtime: off the async workers.
        let loaded = tokio::task::spawn_blocking(move || models.reload())
            .await
            .map_err(|e| ApiError::Internal(format!("reload failed: {e}")))?;
        loaded.map_err(ApiError::NotReady)?;
        Ok(Response::new(self.model_info()))
    }

    async fn update_rules(
        &self,
        request: Request<pb::UpdateRulesRequest>,
    ) -> RpcResult<pb::UpdateRulesResponse> {
        self.handles.admin.check(&request)?;
        let req = request.get_ref();
        if req.rules.is_empty() && req.replace_domains.is_empty() {
            let nothing = ValidationError::new(
                "rules",
                "must not be empty (or name replace_domains to clear)",
            );
            return Err(ApiError::from(nothing).into());
        }
        let upserts = req
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule_from_proto(&format!("rules[{i}]"), r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(ApiError::from)?;
        let rule_ids = upserts.iter().map(|r| r.id()).collect();
        let change = RuleChange {
            upserts,
            deletes: Vec::new(),
            replace_domains: req.replace_domains.clone(),
        };
        let revision = self
            .change_rules(&request, change, req.expected_revision, &req.actor)
            .await?;
        Ok(Response::new(pb::UpdateRulesResponse {
            revision,
            rule_ids,
        }))
    }

    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> RpcResult<pb::ListRulesResponse> {
        let domain = &request.get_ref().domain;
        let rules = self.handles.engine.rules();
        Ok(Response::new(pb::ListRulesResponse {
            revision: rules.revision(),
            rules: rules
                .rules()
                .filter(|r| domain.is_empty() || r.rule.domain == *domain)
                .map(|r| rule_to_proto(&r.rule))
                .collect(),
        }))
    }

    async fn get_rule(&self, request: Request<pb::GetRuleRequest>) -> RpcResult<pb::Rule> {
        let id = &request.get_ref().id;
        if id.is_empty() {
            return Err(ApiError::from(ValidationError::new("id", "must not be empty")).into());
        }
        check_rule_id("id", id, &self.handles.caps).map_err(ApiError::from)?;
        let rules = self.handles.engine.rules();
        let rule = rules
            .get(id)
            .ok_or_else(|| ApiError::NotFound(format!("no rule with id {id:?}")))?;
        Ok(Response::new(rule_to_proto(&rule.rule)))
    }

    async fn delete_rules(
        &self,
        request: Request<pb::DeleteRulesRequest>,
    ) -> RpcResult<pb::DeleteRulesResponse> {
        self.handles.admin.check(&request)?;
        let req = request.get_ref();
        if req.ids.is_empty() {
            return Err(
                ApiError::from(ValidationError::new("ids", "must name at least one rule")).into(),
            );
        }
        if req.ids.len() > self.handles.caps.max_rules_per_update {
            let message = format!(
                "{} ids, more than {} in one call",
                req.ids.len(),
                self.handles.caps.max_rules_per_update
            );
            return Err(ApiError::from(ValidationError::new("ids", message)).into());
        }
        for (i, id) in req.ids.iter().enumerate() {
            check_rule_id(&format!("ids[{i}]"), id, &self.handles.caps).map_err(ApiError::from)?;
        }
        let change = RuleChange {
            deletes: req.ids.clone(),
            ..RuleChange::default()
        };
        let revision = self
            .change_rules(&request, change, req.expected_revision, &req.actor)
            .await?;
        Ok(Response::new(pb::DeleteRulesResponse { revision }))
    }

    async fn get_client(
        &self,
        request: Request<pb::GetClientRequest>,
    ) -> RpcResult<pb::GetClientResponse> {
        let req = request.get_ref();
        let subject = subject_from_proto("subject", req.subject.as_ref(), &self.handles.caps)
            .map_err(ApiError::from)?;
        let domain = self.domain(&req.domain).map_err(ApiError::from)?;
        let limits = self
            .handles
            .engine
            .client_state(domain, &subject, self.handles.clock.now())
            .into_iter()
            .map(|s| pb::LimitState {
                rule_id: s.limit.label.rule_id.clone(),
                limit_name: s.limit.label.name.clone(),
                limit: s.limit.quota.limit,
                unit: unit_to_proto(s.limit.quota.unit) as i32,
                algorithm: algorithm_to_proto(s.limit.quota.algorithm) as i32,
                remaining: s.remaining,
                reset_after: Some(duration(s.reset_after)),
                shadow: s.shadow,
                tracked: s.tracked,
                cut: s.cut,
            })
            .collect();
        let (pressure_factor, pressure_cause) = self.pressure_in_force();
        Ok(Response::new(pb::GetClientResponse {
            revision: self.handles.engine.rules().revision(),
            limits,
            action: self.client_action(&subject),
            pressure_factor,
            pressure_cause,
        }))
    }

    async fn reset_client(
        &self,
        request: Request<pb::ResetClientRequest>,
    ) -> RpcResult<pb::ResetClientResponse> {
        self.handles.admin.check(&request)?;
        let req = request.get_ref();
        let subject = subject_from_proto("subject", req.subject.as_ref(), &self.handles.caps)
            .map_err(ApiError::from)?;
        let domain = self.domain(&req.domain).map_err(ApiError::from)?;
        let reset = self.handles.decider.reset_client(domain, &subject).await;
        let mut keys = Vec::new();
        if !subject.remote_address.is_empty() {
            keys.push(subject.remote_address.to_string());
        }
        if !subject.user_id.is_empty() {
            keys.push(sluice_core::learn::observe::user_key(subject.user_id));
        }
        let lifted = self.lift_subject(keys).await?;
        // The actions are lifted either way; a reset the shared counters missed is said.
        let reset = reset.map_err(|e| {
            ApiError::CountersUnavailable(format!(
                "this replica's buckets were reset and actions lifted; the shared counters were not: {e}"
            ))
        })?;
        tracing::info!(
            domain,
            user = subject.user_id,
            ip = subject.remote_address,
            reset,
            lifted,
            "client reset"
        );
        Ok(Response::new(pb::ResetClientResponse {
            buckets_reset: reset as u32,
            actions_lifted: lifted as u32,
        }))
    }

    async fn reset_key(
        &self,
        request: Request<pb::ResetKeyRequest>,
    ) -> RpcResult<pb::ResetKeyResponse> {
        self.handles.admin.check(&request)?;
        Ok(Response::new(self.reset_key_call(&request).await?))
    }

    async fn acquire_lease(
        &self,
        request: Request<pb::AcquireLeaseRequest>,
    ) -> RpcResult<pb::AcquireLeaseResponse> {
        Ok(Response::new(
            self.acquire_lease_call(request.get_ref()).await?,
        ))
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> RpcResult<pb::RenewLeaseResponse> {
        Ok(Response::new(
            self.renew_lease_call(request.get_ref()).await?,
        ))
    }

    async fn release_lease(
        &self,
        request: Request<pb::ReleaseLeaseRequest>,
    ) -> RpcResult<pb::ReleaseLeaseResponse> {
        Ok(Response::new(
            self.release_lease_call(request.get_ref()).await?,
        ))
    }

    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> RpcResult<pb::ReserveResponse> {
        Ok(Response::new(self.reserve_call(request.get_ref()).await?))
    }

    async fn commit_reservation(
        &self,
        request: Request<pb::CommitReservationRequest>,
    ) -> RpcResult<pb::SettleReservationResponse> {
        let req = request.get_ref();
        Ok(Response::new(
            self.settle_call(&req.reservation_id, Settle::Commit, &req.actual)
                .await?,
        ))
    }

    async fn cancel_reservation(
        &self,
        request: Request<pb::CancelReservationRequest>,
    ) -> RpcResult<pb::SettleReservationResponse> {
        let req = request.get_ref();
        Ok(Response::new(
            self.settle_call(&req.reservation_id, Settle::Cancel, &[])
                .await?,
        ))
    }

    async fn update_client_list(
        &self,
        request: Request<pb::UpdateClientListRequest>,
    ) -> RpcResult<pb::ClientListEntry> {
        self.handles.admin.check(&request)?;
        let actor = Self::actor(&request, &request.get_ref().actor);
        Ok(Response::new(
            self.update_list(request.get_ref(), actor).await?,
        ))
    }

    async fn remove_from_client_list(
        &self,
        request: Request<pb::RemoveFromClientListRequest>,
    ) -> RpcResult<pb::RemoveFromClientListResponse> {
        self.handles.admin.check(&request)?;
        let actor = Self::actor(&request, &request.get_ref().actor);
        Ok(Response::new(
            self.remove_from_list(request.get_ref(), actor).await?,
        ))
    }

    async fn list_client_lists(
        &self,
        request: Request<pb::ListClientListsRequest>,
    ) -> RpcResult<pb::ListClientListsResponse> {
        self.handles.admin.check(&request)?;
        Ok(Response::new(self.lists().await?))
    }

    async fn mark_false_positive(
        &self,
        request: Request<pb::MarkFalsePositiveRequest>,
    ) -> RpcResult<pb::MarkFalsePositiveResponse> {
        self.handles.admin.check(&request)?;
        let actor = Self::actor(&request, &request.get_ref().actor);
        Ok(Response::new(
            self.mark_false_positive_of(request.get_ref(), actor)
                .await?,
        ))
    }
}

/// A rule id no longer than a valid rule's can be: refused before any lookup or write.
fn check_rule_id(
    field: &str,
    id: &str,
    caps: &sluice_core::validate::InputLimits,
) -> Result<(), ValidationError> {
    let max = caps.max_rule_id_len();
    if id.len() > max {
        return Err(ValidationError::new(
            field,
            format!(
                "is {} bytes, longer than any rule id can be ({max})",
                id.len()
            ),
        ));
    }
    Ok(())
}
