//! The operators' corrections: client lists (`UpdateClientList`, `RemoveFromClientList`,
//! `ListClientLists`) and `MarkFalsePositive`. Each change is written (audited) before it is
//! applied, then installed in the learner at once; other instances pick it up within a minute.

use std::sync::Arc;

use sluice_core::learn::learner::{FALSE_POSITIVE_TTL, false_positive_reason};
use sluice_core::learn::lists::{ListEntry, ListKind};
use sluice_core::time::{NANOS_PER_MILLI, NANOS_PER_SEC, Nanos};

use super::ApiError;
use super::requests;
use super::sluice_api::SluiceApi;
use crate::proto::sluice::v1 as pb;

pub fn entry_to_proto(e: &ListEntry) -> pb::ClientListEntry {
    let ms = |n: Nanos| (n / NANOS_PER_MILLI) as i64;
    pb::ClientListEntry {
        list: match e.list {
            ListKind::Allow => pb::ClientList::Allow,
            ListKind::Deny => pb::ClientList::Deny,
        } as i32,
        client: e.client.clone(),
        reason: e.reason.clone(),
        actor: e.actor.clone(),
        created_at_ms: ms(e.created_at),
        expires_at_ms: e.expires_at.map_or(0, ms),
    }
}

impl SluiceApi {
    /// Runs a learner correction off the async workers (it may wait for a running minute).
    async fn on_learner<R: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::service::minute_loop::MinuteLoop) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let learning = Arc::clone(&self.handles.learning);
        tokio::task::spawn_blocking(move || f(&learning))
            .await
            .map_err(|e| ApiError::Internal(format!("applying the change failed: {e}")))
    }

    fn new_entry(
        &self,
        list: ListKind,
        client: &str,
        reason: &str,
        ttl_secs: u64,
        actor: String,
    ) -> ListEntry {
        let now = self.handles.clock.now();
        ListEntry {
            list,
            client: client.to_string(),
            reason: reason.to_string(),
            actor,
            created_at: now,
            expires_at: (ttl_secs > 0).then(|| now + ttl_secs * NANOS_PER_SEC),
        }
    }

    pub(super) async fn update_list(
        &self,
        req: &pb::UpdateClientListRequest,
        actor: String,
    ) -> Result<pb::ClientListEntry, ApiError> {
        let list = requests::list_kind("list", req.list)?;
        let (client, reason, ttl) =
            requests::list_entry_parts(&req.client, &req.reason, req.ttl_secs, &self.handles.caps)?;
        let entry = self.new_entry(list, client, reason, ttl, actor);
        let now = self.handles.clock.now();
        let entries = self
            .handles
            .database
            .put_list_entry(&entry, (now / NANOS_PER_MILLI) as i64)
            .await?;
        self.on_learner(move |l| l.set_lists(entries, now)).await?;
        tracing::info!(list = list.name(), client, actor = %entry.actor, "client list changed");
        Ok(entry_to_proto(&entry))
    }

    pub(super) async fn remove_from_list(
        &self,
        req: &pb::RemoveFromClientListRequest,
        actor: String,
    ) -> Result<pb::RemoveFromClientListResponse, ApiError> {
        let list = requests::list_kind("list", req.list)?;
        sluice_core::validate::check_len("client", &req.client, self.handles.caps.max_value_len)?;
        let now = self.handles.clock.now();
        let (removed, entries) = self
            .handles
            .database
            .remove_list_entry(list, &req.client, &actor, (now / NANOS_PER_MILLI) as i64)
            .await?;
        self.on_learner(move |l| l.set_lists(entries, now)).await?;
        Ok(pb::RemoveFromClientListResponse { removed })
    }

    pub(super) async fn lists(&self) -> Result<pb::ListClientListsResponse, ApiError> {
        let now_ms = self.handles.clock.now_millis();
        let entries = self.handles.database.list_entries(now_ms).await?;
        Ok(pb::ListClientListsResponse {
            entries: entries.iter().map(entry_to_proto).collect(),
        })
    }

    pub(super) async fn mark_false_positive_of(
        &self,
        req: &pb::MarkFalsePositiveRequest,
        actor: String,
    ) -> Result<pb::MarkFalsePositiveResponse, ApiError> {
        let ttl = if req.ttl_secs == 0 {
            FALSE_POSITIVE_TTL.as_secs()
        } else {
            req.ttl_secs
        };
        let (client, reason, ttl) =
            requests::list_entry_parts(&req.client, &req.reason, ttl, &self.handles.caps)?;
        let entry = self.new_entry(
            ListKind::Allow,
            client,
            &false_positive_reason(reason),
            ttl,
            actor,
        );
        let now = self.handles.clock.now();
        let entries = self
            .handles
            .database
            .put_list_entry(&entry, (now / NANOS_PER_MILLI) as i64)
            .await?;
        let key = client.to_string();
        let lifted = self
            .on_learner(move |l| l.mark_false_positive(key, entries, now))
            .await?;
        tracing::info!(client, actor = %entry.actor, lifted, "marked a false positive");
        Ok(pb::MarkFalsePositiveResponse {
            actions_lifted: lifted as u32,
            allowlisted: Some(entry_to_proto(&entry)),
        })
    }

    /// The client keys of a subject: its address and its user's key.
    pub(super) async fn lift_subject(&self, keys: Vec<String>) -> Result<usize, ApiError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let now = self.handles.clock.now();
        self.on_learner(move |l| l.lift(keys, now, "reset")).await
    }
}
