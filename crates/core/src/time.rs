//! Time as the engine sees it: nanoseconds since the Unix epoch, passed in by the caller.
//!
//! The engine never reads a clock. Live code passes `sluice::service::clock::LiveClock`'s reading,
//! replays and tests pass virtual time, so both run the same code.

/// Nanoseconds since the Unix epoch.
pub type Nanos = u64;

pub const NANOS_PER_SEC: u64 = 1_000_000_000;
pub const NANOS_PER_MILLI: u64 = 1_000_000;

/// Whole seconds, rounded up: what `Retry-After` and reset headers carry.
pub fn ceil_secs(nanos: Nanos) -> u64 {
    nanos.div_ceil(NANOS_PER_SEC)
}
