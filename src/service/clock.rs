//! The live clock: wall-clock nanoseconds that never run backwards, from tokio's clock so tests
//! can pause and advance time. The engine never reads it itself; adapters pass its reading in.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use sluice_core::time::Nanos;

#[derive(Clone, Copy, Debug)]
pub struct LiveClock {
    epoch_at_start: Nanos,
    start: Instant,
}

impl LiveClock {
    pub fn new() -> LiveClock {
        let epoch_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as Nanos)
            .unwrap_or(0);
        LiveClock {
            epoch_at_start,
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> Nanos {
        self.epoch_at_start + self.start.elapsed().as_nanos() as Nanos
    }

    pub fn now_millis(&self) -> i64 {
        (self.now() / sluice_core::time::NANOS_PER_MILLI) as i64
    }
}

impl Default for LiveClock {
    fn default() -> Self {
        LiveClock::new()
    }
}
