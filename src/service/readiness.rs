//! What the service is ready for, as its parts find out: the database supervisor says when the
//! rules are loaded, the minute loop whether the LSTM is forecasting, the fleet whether the
//! shared counters answer and whether the minute was learned with the other replicas. The gRPC edge reads it and
//! answers health checks from it (`grpc::server`); nothing here knows gRPC.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// The rules have been loaded from the database once: decisions are on the real rules.
    pub rules_loaded: bool,
    /// The LSTM forecasts (false: the statistical baseline stands in).
    pub lstm_loaded: bool,
    /// With `--counters`: whether decisions are on the shared counters (false: the failure
    /// policy answers while they are out of reach). `None` for a single instance.
    pub shared_counters: Option<bool>,
    /// With `--counters`: whether the last minute was learned on the fleet's whole minute
    /// (false: the exchange failed and this replica learned alone). `None` for a single
    /// instance.
    pub fleet_learning: Option<bool>,
}

/// The writing side, shared by the parts that learn something; cheap to clone.
#[derive(Clone, Debug)]
pub struct Readiness {
    tx: Arc<watch::Sender<Ready>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            tx: Arc::new(watch::channel(Ready::default()).0),
        }
    }
}

impl Readiness {
    pub fn rules_loaded(&self) {
        self.tx
            .send_if_modified(|r| !std::mem::replace(&mut r.rules_loaded, true));
    }

    pub fn lstm_loaded(&self, loaded: bool) {
        self.tx
            .send_if_modified(|r| std::mem::replace(&mut r.lstm_loaded, loaded) != loaded);
    }

    pub fn shared_counters(&self, shared: bool) {
        self.tx
            .send_if_modified(|r| r.shared_counters.replace(shared) != Some(shared));
    }

    pub fn fleet_learning(&self, together: bool) {
        self.tx
            .send_if_modified(|r| r.fleet_learning.replace(together) != Some(together));
    }

    pub fn subscribe(&self) -> watch::Receiver<Ready> {
        self.tx.subscribe()
    }
}
