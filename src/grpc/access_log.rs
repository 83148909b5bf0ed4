//! Envoy's gRPC access-log service (`envoy.service.accesslog.v3.AccessLogService`): Envoy streams
//! every request's outcome, and each HTTP entry becomes an outcome observation (client address,
//! path, user agent, status) for the learning loop's error features. TCP entries carry no HTTP
//! status and are ignored. Envoy expects no reply until it closes the stream.

use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::AccessLogService;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use tonic::{Request, Response, Status, Streaming};

use std::sync::Arc;

use crate::service::handles::Handles;
use sluice_core::engine::Subject;

/// Envoy's access-log service: outcomes go to the engine's observation (a client, path or user
/// agent longer than the input caps' `max_value_len` is cut).
pub struct AccessLogs {
    pub handles: Arc<Handles>,
}

/// One entry as an outcome: `None` when it has no client address or no status.
fn outcome(entry: &HttpAccessLogEntry, max_len: usize) -> Option<(String, String, String, u16)> {
    let common = entry.common_properties.as_ref()?;
    let client = match common
        .downstream_remote_address
        .as_ref()?
        .address
        .as_ref()?
    {
        address::Address::SocketAddress(s) => s.address.clone(),
        address::Address::Pipe(p) => p.path.clone(),
        _ => return None,
    };
    let status = entry.response.as_ref()?.response_code.as_ref()?.value;
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (100..=599).contains(s))?;
    let request = entry.request.as_ref();
    let path = request.map_or("", |r| r.path.as_str());
    let endpoint = path.split(['?', '#']).next().unwrap_or("");
    let agent = request.map_or("", |r| r.user_agent.as_str());
    let cut = |s: &str| s.chars().take(max_len).collect::<String>();
    Some((cut(&client), cut(endpoint), cut(agent), status))
}

#[tonic::async_trait]
impl AccessLogService for AccessLogs {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut stream = request.into_inner();
        let max_len = self.handles.caps.max_value_len;
        while let Some(message) = stream.message().await? {
            let Some(LogEntries::HttpLogs(logs)) = message.log_entries else {
                continue;
            };
            let now = self.handles.clock.now();
            for entry in &logs.log_entry {
                let Some((client, endpoint, agent, status)) = outcome(entry, max_len) else {
                    continue;
                };
                let subject = Subject {
                    remote_address: &client,
                    endpoint: &endpoint,
                    user_agent: &agent,
                    ..Subject::default()
                };
                self.handles.engine.report_outcome(&subject, status, now);
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}
