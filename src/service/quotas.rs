//! The RLQS quota board of the running service (`sluice_core::quota::QuotaBoard` behind a lock),
//! the stream numbers, and what the streams did, for `/metrics`. Every stream's reports and
//! assignments go through here; the gRPC edge (`grpc::rlqs`) only translates.
//!
//! Not here: dividing a quota (the core's board), the stream protocol (`grpc::rlqs`).

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use sluice_core::engine::Engine;
use sluice_core::quota::{Assignment, BucketKey, QuotaBoard, QuotaConfig, QuotaError, StreamId};
use sluice_core::time::Nanos;

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct QuotaStats {
    /// Streams open now, and opened in all.
    pub streams_open: AtomicU64,
    pub streams_opened: AtomicU64,
    /// Usage reports received (one per bucket per report message).
    pub reports: AtomicU64,
    /// Requests Envoys said they allowed and denied themselves.
    pub requests_allowed: AtomicU64,
    pub requests_denied: AtomicU64,
    /// Bucket reports refused (caps).
    pub refused: AtomicU64,
    /// Assignments sent, by reason.
    assignments: Mutex<FxHashMap<&'static str, u64>>,
}

impl QuotaStats {
    pub fn assigned(&self, reason: &'static str) {
        *self.assignments.lock().entry(reason).or_default() += 1;
    }

    /// (reason, assignments sent).
    pub fn assignments(&self) -> Vec<(&'static str, u64)> {
        let mut all: Vec<_> = self
            .assignments
            .lock()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        all.sort();
        all
    }
}

/// [`Quotas::snapshot`].
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct QuotaSnapshot {
    pub streams: u64,
    pub buckets: u64,
    pub reports: u64,
    pub requests_allowed: u64,
    pub requests_denied: u64,
    pub assignments: Vec<(&'static str, u64)>,
    pub refused: u64,
}

/// The service's quotas.
#[derive(Debug, Default)]
pub struct Quotas {
    board: Mutex<QuotaBoard>,
    next_stream: AtomicU64,
    pub stats: QuotaStats,
}

impl Quotas {
    pub fn new(config: QuotaConfig) -> Quotas {
        Quotas {
            board: Mutex::new(QuotaBoard::new(config)),
            next_stream: AtomicU64::new(0),
            stats: QuotaStats::default(),
        }
    }

    /// A new stream's number.
    pub fn open(&self) -> StreamId {
        self.stats.streams_open.fetch_add(1, Ordering::Relaxed);
        self.stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// A stream closed: its buckets take no share of anyone's quota any more.
    pub fn close(&self, stream: StreamId) {
        self.stats.streams_open.fetch_sub(1, Ordering::Relaxed);
        self.board.lock().forget_stream(stream);
    }

    /// One bucket's usage from `stream`.
    pub fn report(
        &self,
        stream: StreamId,
        key: &BucketKey,
        allowed: u64,
        denied: u64,
        elapsed: Nanos,
        now: Nanos,
    ) -> Result<(), QuotaError> {
        self.stats.reports.fetch_add(1, Ordering::Relaxed);
        let result =
            self.board
                .lock()
                .report(stream, key, allowed.saturating_add(denied), elapsed, now);
        match &result {
            Ok(()) => {
                self.stats
                    .requests_allowed
                    .fetch_add(allowed, Ordering::Relaxed);
                self.stats
                    .requests_denied
                    .fetch_add(denied, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// What `stream` is told for `key` now.
    pub fn assignment(
        &self,
        engine: &Engine,
        stream: StreamId,
        key: &BucketKey,
        now: Nanos,
    ) -> Assignment {
        let quota = engine.bucket_quota(&key.domain, &key.fields(), now);
        let assignment = self.board.lock().assign(key, stream, &quota, now);
        self.stats.assigned(assignment.reason());
        assignment
    }

    /// The buckets `stream` reports.
    pub fn buckets_of(&self, stream: StreamId) -> Vec<BucketKey> {
        self.board.lock().buckets_of(stream)
    }

    /// What RLQS did, as one snapshot for the operators' views (`GetStats`, the dashboard).
    pub fn snapshot(&self) -> QuotaSnapshot {
        let s = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QuotaSnapshot {
            streams: load(&s.streams_open),
            buckets: self.buckets() as u64,
            reports: load(&s.reports),
            requests_allowed: load(&s.requests_allowed),
            requests_denied: load(&s.requests_denied),
            assignments: s.assignments(),
            refused: load(&s.refused),
        }
    }

    /// Buckets held.
    pub fn buckets(&self) -> usize {
        self.board.lock().len()
    }

    /// The demand of this replica's Envoys per bucket, for the fleet (`fleet_sync`).
    pub fn local_demand(&self, now: Nanos) -> Vec<(BucketKey, Vec<f64>)> {
        self.board.lock().local_demand(now)
    }

    /// The other replicas' Envoys' demand: a bucket's quota is divided among all of them.
    pub fn set_remote(&self, remote: Vec<(BucketKey, Vec<f64>)>) {
        self.board.lock().set_remote(remote);
    }

    /// Drops Envoys silent too long.
    pub fn sweep(&self, now: Nanos) {
        self.board.lock().sweep(now);
    }
}
