//! Backend utilisations reported with `ReportLoad`, kept for the next minute's pressure step:
//! bounded in number (the oldest report is forgotten past it), never waited on for long.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use sluice_core::minute::BackendLoad;
use sluice_core::time::Nanos;

/// Backends tracked at most (the oldest report is forgotten past it).
pub const MAX_BACKENDS: usize = 256;

#[derive(Default)]
pub struct BackendLoads {
    loads: Mutex<BTreeMap<String, (f64, Nanos)>>,
}

impl BackendLoads {
    /// A backend's utilisation (0..1), reported at `now`.
    pub fn report(&self, backend: &str, utilisation: f64, now: Nanos) {
        let mut loads = self.loads.lock();
        if !loads.contains_key(backend) && loads.len() >= MAX_BACKENDS {
            let oldest = loads
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                loads.remove(&k);
            }
        }
        loads.insert(backend.to_string(), (utilisation, now));
    }

    /// Every report in force, for the minute.
    pub fn snapshot(&self) -> Vec<BackendLoad> {
        self.loads
            .lock()
            .iter()
            .map(|(b, (u, at))| (b.clone(), *u, *at))
            .collect()
    }
}
