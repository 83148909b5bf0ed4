//! Bucket arithmetic: the state one key keeps for one limit, and how hits change it.
//!
//! Pure functions of (state, quota, now, hits). Integer math only, so the guarantees below are
//! exact and property-tested rather than approximately true:
//! - token bucket: over any interval of length T, admitted hits ≤ capacity + rate·T;
//! - fixed window: admitted hits in one epoch-aligned window ≤ limit;
//! - sliding window: admitted hits in any interval of one unit ≤ limit (ten sub-windows; it may
//!   under-admit by up to one sub-window's worth, never over-admit);
//! - GCRA: over any interval of length T, admitted hits ≤ burst + rate·T, and with a burst of 1
//!   two admitted hits are at least period ÷ limit apart (spacings rounded up to a nanosecond:
//!   it may under-admit by that, never over-admit).
//!
//! Concurrency lives one level up (`engine` keeps each state behind a mutex); this module does not
//! know about keys, caches or rules.

use super::limit::{Algorithm, Quota};
use super::time::Nanos;

/// Sub-windows per sliding window; one more slot than this is kept (see `SlidingRing`).
pub const SLIDING_SLOTS: u64 = 10;

/// What a caller wants done with `hits`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Op {
    /// Admit `hits` if they fit, and consume them.
    #[default]
    Consume,
    /// Report whether one more hit would be admitted; consume nothing.
    Check,
    /// Give `hits` back (Envoy's `is_negative_hits`, or undoing a consume whose request was denied
    /// by another limit).
    Refund,
    /// Count `hits` that were spent already, whether or not they fit (a reservation committed at
    /// more than it reserved): beyond the allowance they are a debt, repaid before anything
    /// more is admitted, of at most a full allowance (as the shared counters' `a`).
    Add,
}

/// The result of one operation on one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Whole hits still available after this operation.
    pub remaining: u64,
    /// Time until the bucket is back at its full allowance.
    pub reset_after: Nanos,
    /// When denied: time until the denied hits could be admitted. Zero when allowed.
    pub retry_after: Nanos,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BucketState {
    /// Never used: behaves as a full bucket / empty window.
    #[default]
    Fresh,
    /// Credit is counted in token·nanos-per-unit so refill is exact integer math:
    /// one token = `window_nanos` credit, refill adds `limit` credit per elapsed nanosecond.
    Token {
        credit: u128,
        last: Nanos,
    },
    Fixed {
        window_start: Nanos,
        count: u64,
    },
    Sliding(Box<SlidingRing>),
    /// GCRA's theoretical arrival time: when the key is back at its full burst.
    Gcra {
        tat: Nanos,
    },
}

/// Counts for the current sub-window and the `SLIDING_SLOTS` before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlidingRing {
    /// Absolute index (`now / slot_nanos`) of the newest slot written.
    newest: u64,
    counts: [u64; SLIDING_SLOTS as usize + 1],
}

impl SlidingRing {
    /// A ring whose newest written slot is `newest` (an absolute index, `now / slot length`)
    /// with `counts[newest % (SLIDING_SLOTS + 1)]` its count: a state read from elsewhere (the
    /// shared counters' copy of a bucket).
    pub fn from_parts(newest: u64, counts: [u64; SLIDING_SLOTS as usize + 1]) -> SlidingRing {
        SlidingRing { newest, counts }
    }
}

impl BucketState {
    pub fn apply(&mut self, quota: &Quota, now: Nanos, hits: u64, op: Op) -> Outcome {
        match quota.algorithm {
            Algorithm::TokenBucket => self.token(quota, now, hits, op),
            Algorithm::FixedWindow => self.fixed(quota, now, hits, op),
            Algorithm::SlidingWindow => self.sliding(quota, now, hits, op),
            Algorithm::Gcra => self.gcra(quota, now, hits, op),
        }
    }

    /// The outcome a zero-hit check would report, without changing the state.
    pub fn peek(&self, quota: &Quota, now: Nanos) -> Outcome {
        self.clone().apply(quota, now, 0, Op::Check)
    }

    fn token(&mut self, quota: &Quota, now: Nanos, hits: u64, op: Op) -> Outcome {
        let per_token = quota.window_nanos() as u128;
        let rate = quota.limit as u128; // credit per nanosecond
        let full = quota.capacity as u128 * per_token;
        let (mut credit, last) = match *self {
            BucketState::Token { credit, last } => (credit, last),
            // A fresh bucket, or one left by a different algorithm after a rule change.
            _ => (full, now),
        };
        // Time never runs backwards for a bucket: mildly disordered replays refill nothing.
        let mut last = if now > last {
            credit = credit
                .saturating_add(((now - last) as u128).saturating_mul(rate))
                .min(full);
            now
        } else {
            last
        };
        let needed = hits as u128 * per_token;
        // Repaying a debt (`Op::Add`): not even a request of no hits is admitted meanwhile.
        let in_debt = last > now;
        let allowed = match op {
            Op::Consume => {
                let ok = credit >= needed && !in_debt;
                if ok {
                    credit -= needed;
                }
                ok
            }
            Op::Check => credit >= per_token,
            Op::Refund => {
                credit = (credit + needed).min(full);
                true
            }
            Op::Add => {
                // A debt beyond the credit: no refill counts until it is repaid (the refill
                // instant moves ahead by the time the refill takes to repay it).
                let debt = needed.saturating_sub(credit).min(full);
                credit = credit.saturating_sub(needed);
                last =
                    last.saturating_add(
                        div_ceil_u128(debt, rate.max(1)).min(u64::MAX as u128) as Nanos
                    );
                true
            }
        };
        *self = BucketState::Token { credit, last };
        let wait = |target: u128| -> Nanos {
            if credit >= target {
                0
            } else {
                div_ceil_u128(target - credit, rate).min(u64::MAX as u128) as Nanos
            }
        };
        let retry_after = if allowed {
            0
        } else if needed > full {
            // Can never fit; the honest hint is "once the bucket is full", after which it is
            // still refused. Callers see the same answer as for a window that is too small.
            wait(full)
        } else {
            wait(needed.max(per_token))
        };
        Outcome {
            allowed,
            remaining: div_u128(credit, per_token) as u64,
            reset_after: wait(full),
            retry_after,
        }
    }

    fn fixed(&mut self, quota: &Quota, now: Nanos, hits: u64, op: Op) -> Outcome {
        let (current, window_end) = match quota.calendar {
            Some(zone) => crate::calendar::window(zone, quota.unit, now),
            None => {
                let window = quota.window_nanos();
                let start = now - now % window;
                (start, start + window)
            }
        };
        let mut count = match *self {
            BucketState::Fixed {
                window_start,
                count,
            } if window_start >= current => count,
            _ => 0,
        };
        // A late (disordered) hit counts against the newest window seen.
        let window_start = match *self {
            BucketState::Fixed { window_start, .. } if window_start > current => window_start,
            _ => current,
        };
        let allowed = match op {
            Op::Consume => {
                let ok = count.saturating_add(hits) <= quota.limit;
                if ok {
                    count += hits;
                }
                ok
            }
            Op::Check => count < quota.limit,
            Op::Refund => {
                count = count.saturating_sub(hits);
                true
            }
            Op::Add => {
                count = count.saturating_add(hits);
                true
            }
        };
        *self = BucketState::Fixed {
            window_start,
            count,
        };
        // A late hit's newer window ends a whole window after it starts.
        let reset_after = (window_start + (window_end - current)).saturating_sub(now);
        Outcome {
            allowed,
            remaining: quota.limit.saturating_sub(count),
            reset_after,
            retry_after: if allowed { 0 } else { reset_after },
        }
    }

    fn sliding(&mut self, quota: &Quota, now: Nanos, hits: u64, op: Op) -> Outcome {
        let slot_nanos = quota.window_nanos() / SLIDING_SLOTS;
        let ring_len = SLIDING_SLOTS + 1;
        let slot = now / slot_nanos;
        if !matches!(self, BucketState::Sliding(_)) {
            *self = BucketState::Sliding(Box::new(SlidingRing {
                newest: slot,
                counts: [0; SLIDING_SLOTS as usize + 1],
            }));
        }
        let BucketState::Sliding(ring) = self else {
            unreachable!("set just above")
        };
        // Clear the slots that fell out of the window since the last write.
        if slot > ring.newest {
            let stale = (slot - ring.newest).min(ring_len);
            for i in 1..=stale {
                ring.counts[((ring.newest + i) % ring_len) as usize] = 0;
            }
            ring.newest = slot;
        }
        // A late hit is counted in the newest slot: conservative, never over-admits.
        let slot = ring.newest;
        let used: u64 = ring.counts.iter().sum();
        let allowed = match op {
            Op::Consume => {
                let ok = used.saturating_add(hits) <= quota.limit;
                if ok {
                    ring.counts[(slot % ring_len) as usize] += hits;
                }
                ok
            }
            Op::Check => used < quota.limit,
            Op::Add => {
                let c = &mut ring.counts[(slot % ring_len) as usize];
                *c = c.saturating_add(hits);
                true
            }
            Op::Refund => {
                // Give back from the newest slots first: they were the ones just consumed.
                let mut left = hits;
                for back in 0..ring_len {
                    if left == 0 || back > slot {
                        break;
                    }
                    let c = &mut ring.counts[((slot - back) % ring_len) as usize];
                    let taken = (*c).min(left);
                    *c -= taken;
                    left -= taken;
                }
                true
            }
        };
        let used: u64 = ring.counts.iter().sum();
        // Slot k stops counting once `now` passes the end of slot k + SLIDING_SLOTS.
        let leaves_at = |k: u64| (k + ring_len) * slot_nanos;
        let oldest = slot.saturating_sub(SLIDING_SLOTS);
        let reset_after = (oldest..=slot)
            .rev()
            .find(|k| ring.counts[(k % ring_len) as usize] > 0)
            .map_or(0, |newest_used| leaves_at(newest_used).saturating_sub(now));
        let retry_after = if allowed {
            0
        } else {
            let need = if op == Op::Check { 1 } else { hits };
            let mut freed: u64 = 0;
            let mut at = reset_after;
            for k in oldest..=slot {
                freed = freed.saturating_add(ring.counts[(k % ring_len) as usize]);
                // Saturating: `need` may be anything up to u64::MAX (Envoy's hits_addend); a
                // request that can never fit waits for the whole window, as a fixed window says.
                if used.saturating_sub(freed).saturating_add(need) <= quota.limit {
                    at = leaves_at(k).saturating_sub(now);
                    break;
                }
            }
            at
        };
        Outcome {
            allowed,
            remaining: quota.limit.saturating_sub(used),
            reset_after,
            retry_after,
        }
    }
}

impl BucketState {
    /// GCRA: each hit moves the theoretical arrival time (`tat`) one spacing (period ÷ limit,
    /// rounded up to a nanosecond) past `max(tat, now)`; hits are admitted while the new `tat`
    /// is at most the tolerance (`capacity` spacings) ahead of now. Every move is a whole number
    /// of spacings, so the bound is exact: `n` hits need `n` spacings of time beyond the burst.
    fn gcra(&mut self, quota: &Quota, now: Nanos, hits: u64, op: Op) -> Outcome {
        let window = quota.window_nanos() as u128;
        let limit = quota.limit.max(1) as u128;
        let one = div_ceil_u128(window, limit);
        let spacing = |n: u128| n.saturating_mul(one);
        let tolerance = spacing(quota.capacity as u128);
        let tat = match *self {
            BucketState::Gcra { tat } => tat.max(now),
            // A fresh key, or one left by a different algorithm after a rule change.
            _ => now,
        } as u128;
        let now128 = now as u128;
        let next = tat.saturating_add(spacing(hits as u128));
        let fits = |next: u128| next - now128 <= tolerance;
        let (allowed, tat) = match op {
            Op::Consume if fits(next) => (true, next),
            Op::Consume => (false, tat),
            Op::Check => (fits(tat.saturating_add(spacing(1))), tat),
            Op::Refund => (true, tat.saturating_sub(spacing(hits as u128)).max(now128)),
            // Owed beyond the burst, at most a burst's worth more (as the token bucket's debt).
            Op::Add => (
                true,
                next.min(now128.saturating_add(tolerance.saturating_mul(2))),
            ),
        };
        let tat = tat.min(u64::MAX as u128);
        *self = BucketState::Gcra { tat: tat as Nanos };
        let backlog = tat - now128;
        let remaining = div_u128(tolerance - backlog.min(tolerance), one);
        let retry_after = if allowed {
            0
        } else {
            let need = if op == Op::Check {
                spacing(1)
            } else {
                spacing(hits as u128)
            };
            if need > tolerance {
                // Can never fit: the honest hint is "once the key is back at its full burst".
                backlog
            } else {
                (tat + need - tolerance).saturating_sub(now128)
            }
        };
        Outcome {
            allowed,
            remaining: remaining.min(u64::MAX as u128) as u64,
            reset_after: backlog.min(u64::MAX as u128) as Nanos,
            retry_after: retry_after.min(u64::MAX as u128) as Nanos,
        }
    }
}

/// u128 division costs tens of nanoseconds; nearly every operand here fits in 64 bits.
#[inline]
fn div_u128(a: u128, b: u128) -> u128 {
    if a <= u64::MAX as u128 && b <= u64::MAX as u128 {
        ((a as u64) / (b as u64)) as u128
    } else {
        a / b
    }
}

#[inline]
fn div_ceil_u128(a: u128, b: u128) -> u128 {
    if a <= u64::MAX as u128 && b <= u64::MAX as u128 {
        (a as u64).div_ceil(b as u64) as u128
    } else {
        a.div_ceil(b)
    }
}

#[cfg(test)]
#[path = "bucket_tests.rs"]
mod tests;
