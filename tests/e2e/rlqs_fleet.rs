//! RLQS across a fleet: three `sluice serve` replicas on a real Redis, five clients playing
//! Envoy's part (Envoy's own protos, envoy-types) spread over them, all reporting one bucket.
//! Each replica divides the bucket's quota among the fleet's five Envoys, not its own: the
//! shares settle at a fifth each and add up to at most the rule's quota.

use std::time::Duration;

use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_response::bucket_action::BucketAction as Action;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_service_client::RateLimitQuotaServiceClient;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_usage_reports::BucketQuotaUsage;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::{
    BucketId, RateLimitQuotaResponse, RateLimitQuotaUsageReports,
};
use envoy_types::pb::envoy::r#type::v3::rate_limit_strategy::Strategy;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::fleet_harness::*;
use crate::harness::fresh_pg_database;

const QUOTA: u64 = 100;
const RULES: &str = "domain: quota
descriptors:
  - key: endpoint
    value: /api
    rate_limit: {unit: minute, requests_per_unit: 100}
";

/// One Envoy's stream: reports in, the latest share of the bucket out.
struct Envoy {
    reports: mpsc::Sender<RateLimitQuotaUsageReports>,
    responses: tonic::Streaming<RateLimitQuotaResponse>,
    share: Option<u64>,
}

impl Envoy {
    async fn connect(replica: &Replica) -> Envoy {
        let (reports, rx) = mpsc::channel(4);
        let mut client = RateLimitQuotaServiceClient::new(replica.channel().await);
        let responses = client
            .stream_rate_limit_quotas(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Envoy {
            reports,
            responses,
            share: None,
        }
    }

    async fn report(&self, requests: u64) {
        let usage = BucketQuotaUsage {
            bucket_id: Some(BucketId {
                bucket: [("endpoint".to_string(), "/api".to_string())].into(),
            }),
            time_elapsed: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: 1,
                nanos: 0,
            }),
            num_requests_allowed: requests,
            num_requests_denied: 0,
        };
        self.reports
            .send(RateLimitQuotaUsageReports {
                domain: "quota".into(),
                bucket_quota_usages: vec![usage],
            })
            .await
            .unwrap();
    }

    /// Reads what arrived within `wait`.
    async fn read(&mut self, wait: Duration) {
        while let Ok(Ok(Some(response))) =
            tokio::time::timeout(wait, self.responses.message()).await
        {
            for action in response.bucket_action {
                if let Some(Action::QuotaAssignmentAction(a)) = action.bucket_action
                    && let Some(Strategy::RequestsPerTimeUnit(r)) =
                        a.rate_limit_strategy.and_then(|s| s.strategy)
                {
                    self.share = Some(r.requests_per_time_unit);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_is_divided_among_the_whole_fleets_envoys() {
    let base = std::env::var("SLUICE_TEST_PG_URL")
        .expect("fleet tests need SLUICE_TEST_PG_URL: run ./scripts/test.sh");
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(dir.path(), RULES);
    let redis = Redis::start();
    let url = redis.url();
    let db = fresh_pg_database(&base).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&db, &rules, &["--counters", &url]).await);
    }
    // Two Envoys on the first replica, one on the second, two on the third.
    let mut envoys = Vec::new();
    for r in [0, 0, 1, 2, 2] {
        envoys.push(Envoy::connect(&replicas[r]).await);
    }
    let mut last: Vec<Option<u64>> = Vec::new();
    let mut steady_since = tokio::time::Instant::now();
    for _ in 0..60 {
        for e in &envoys {
            e.report(10).await;
        }
        for e in &mut envoys {
            e.read(Duration::from_millis(60)).await;
        }
        let shares: Vec<Option<u64>> = envoys.iter().map(|e| e.share).collect();
        if shares != last {
            last = shares;
            steady_since = tokio::time::Instant::now();
        }
        let settled = steady_since.elapsed() >= Duration::from_millis(2_500);
        if settled && last.iter().all(|s| s.is_some_and(|s| s <= QUOTA / 5)) {
            let total: u64 = last.iter().flatten().sum();
            assert!(
                total <= QUOTA,
                "the fleet gives out {total} of {QUOTA}: {last:?}"
            );
            assert!(total >= QUOTA * 9 / 10, "and most of it: {last:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the shares never settled at a fifth each: {last:?}");
}
