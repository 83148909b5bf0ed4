//! Bucket math on an injected clock: a table of hand-worked cases, then properties over random
//! arrival schedules.

use super::*;
use crate::limit::Unit;
use crate::time::NANOS_PER_SEC as S;
use proptest::prelude::*;

fn quota(algorithm: Algorithm, limit: u64, unit: Unit, capacity: u64) -> Quota {
    Quota {
        limit,
        unit,
        multiplier: 1,
        capacity,
        algorithm,
        calendar: None,
    }
}

/// One step of a scenario: at `at` nanoseconds, do `op` with `hits`, expect `allowed` and
/// `remaining` afterwards.
struct Step {
    at: Nanos,
    hits: u64,
    op: Op,
    allowed: bool,
    remaining: u64,
}

fn step(at: Nanos, hits: u64, op: Op, allowed: bool, remaining: u64) -> Step {
    Step {
        at,
        hits,
        op,
        allowed,
        remaining,
    }
}

fn check(name: &str, q: Quota, steps: &[Step]) {
    let mut state = BucketState::default();
    for (i, s) in steps.iter().enumerate() {
        let out = state.apply(&q, s.at, s.hits, s.op);
        assert_eq!(
            (out.allowed, out.remaining),
            (s.allowed, s.remaining),
            "{name}: step {i} at {}ns",
            s.at
        );
    }
}

#[test]
fn token_bucket_cases() {
    use Op::*;
    let t0 = 1_700_000_000 * S;
    // 10 per second, capacity 10.
    let q = quota(Algorithm::TokenBucket, 10, Unit::Second, 10);
    check(
        "drain then refill",
        q,
        &[
            step(t0, 10, Consume, true, 0),
            step(t0, 1, Consume, false, 0),
            step(t0 + S / 10, 1, Consume, true, 0), // 100 ms refills one token
            step(t0 + S / 10, 1, Consume, false, 0),
            step(t0 + 10 * S, 0, Check, true, 10), // refill caps at capacity
        ],
    );
    check(
        "hits larger than capacity never fit",
        q,
        &[
            step(t0, 11, Consume, false, 10),
            step(t0, 10, Consume, true, 0),
        ],
    );
    check(
        "check consumes nothing",
        q,
        &[
            step(t0, 5, Check, true, 10),
            step(t0, 10, Consume, true, 0),
            step(t0, 0, Check, false, 0),
        ],
    );
    check(
        "refund gives back, capped at capacity",
        q,
        &[
            step(t0, 4, Consume, true, 6),
            step(t0, 3, Refund, true, 9),
            step(t0, 50, Refund, true, 10),
        ],
    );
    check(
        "time going backwards refills nothing",
        q,
        &[
            step(t0, 10, Consume, true, 0),
            step(t0 - S, 1, Consume, false, 0),
        ],
    );
    // Burst 3 on 60/minute: at most 3 at once, then one per second.
    let burst = quota(Algorithm::TokenBucket, 60, Unit::Minute, 3);
    check(
        "burst capacity",
        burst,
        &[
            step(t0, 3, Consume, true, 0),
            step(t0 + S / 2, 1, Consume, false, 0),
            step(t0 + S, 1, Consume, true, 0),
        ],
    );
}

#[test]
fn gcra_cases() {
    use Op::*;
    let t0 = 1_700_000_000 * S;
    // 10 per second, one at a time: a hit every 100 ms.
    let q = quota(Algorithm::Gcra, 10, Unit::Second, 1);
    check(
        "evenly spaced",
        q,
        &[
            step(t0, 1, Consume, true, 0),
            step(t0 + 50_000_000, 1, Consume, false, 0),
            step(t0 + 100_000_000, 1, Check, true, 1),
            step(t0 + 100_000_000, 1, Consume, true, 0),
            step(t0 + 100_000_000, 1, Refund, true, 1),
            step(t0 + 100_000_000, 2, Consume, false, 1),
        ],
    );
    // 60 per minute with a burst of 3: three at once, then one a second.
    let burst = quota(Algorithm::Gcra, 60, Unit::Minute, 3);
    check(
        "a burst of three",
        burst,
        &[
            step(t0, 3, Consume, true, 0),
            step(t0, 1, Consume, false, 0),
            step(t0 + S, 1, Consume, true, 0),
            step(t0 + 10 * S, 1, Check, true, 3),
            step(t0 + 10 * S, 4, Consume, false, 3),
        ],
    );
    // What a denial says: retry when the spacing is over; reset when the burst is whole again.
    let mut state = BucketState::default();
    state.apply(&burst, t0, 3, Consume);
    let denied = state.apply(&burst, t0 + S / 2, 1, Consume);
    assert_eq!(
        (denied.retry_after, denied.reset_after),
        (S / 2, 3 * S - S / 2)
    );
    // The state is one timestamp.
    assert_eq!(state, BucketState::Gcra { tat: t0 + 3 * S });
}

/// Hits added beyond the allowance (a reservation committed above its estimate) are a debt:
/// nothing more is admitted until it is repaid, by refill or by the window turning.
#[test]
fn added_hits_beyond_the_allowance_are_owed() {
    let t0 = 1_700_000_000 * S;
    let ms = 1_000_000;
    // (algorithm, admitted again at +600 ms: the refill repaid 5 of debt and 1 more)
    for (algorithm, again_at_600ms) in [
        (Algorithm::TokenBucket, true),
        (Algorithm::Gcra, true),
        (Algorithm::FixedWindow, false),
        (Algorithm::SlidingWindow, false),
    ] {
        let q = quota(algorithm, 10, Unit::Second, 10);
        let mut state = BucketState::default();
        assert!(state.apply(&q, t0, 10, Op::Consume).allowed);
        assert!(
            state.apply(&q, t0, 5, Op::Add).allowed,
            "{algorithm:?}: added"
        );
        for hits in [1, 0] {
            assert!(
                !state.apply(&q, t0 + 400 * ms, hits, Op::Consume).allowed,
                "{algorithm:?}: owes 5, refilled 4: {hits} hits refused"
            );
        }
        assert_eq!(
            state.apply(&q, t0 + 600 * ms, 1, Op::Consume).allowed,
            again_at_600ms,
            "{algorithm:?} at 600 ms"
        );
    }
}

/// A calendar month in Berlin: it turns at local midnight on the 1st (23:00 UTC in winter),
/// and a denial says when.
#[test]
fn a_calendar_month_turns_at_local_midnight() {
    let at = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap() as Nanos
    };
    let q = Quota {
        calendar: crate::calendar::parse_zone("Europe/Berlin"),
        ..quota(Algorithm::FixedWindow, 3, Unit::Month, 3)
    };
    let mut state = BucketState::default();
    assert!(
        state
            .apply(&q, at("2026-02-28T22:00:00Z"), 3, Op::Consume)
            .allowed
    );
    let denied = state.apply(&q, at("2026-02-28T22:30:00Z"), 1, Op::Consume);
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, 30 * 60 * S, "until midnight in Berlin");
    // March in Berlin, still February in UTC: a fresh month.
    let march = state.apply(&q, at("2026-02-28T23:00:00Z"), 3, Op::Consume);
    assert!(march.allowed);
    assert_eq!(
        march.reset_after,
        at("2026-03-31T22:00:00Z") - at("2026-02-28T23:00:00Z"),
        "April begins at 00:00 CEST"
    );
    assert_eq!(q.full_recovery(), crate::calendar::longest(Unit::Month));
}

#[test]
fn fixed_window_cases() {
    use Op::*;
    let t0 = 1_700_000_020 * S; // 40 s into a minute (1_699_999_980 is a minute boundary)
    let q = quota(Algorithm::FixedWindow, 5, Unit::Minute, 5);
    check(
        "window resets on the epoch-aligned boundary",
        q,
        &[
            step(t0, 5, Consume, true, 0),
            step(t0 + 19 * S, 1, Consume, false, 0),
            step(t0 + 20 * S, 1, Consume, true, 4),
            step(t0 + 20 * S, 3, Refund, true, 5),
        ],
    );
    let mut state = BucketState::default();
    let out = state.apply(&q, t0, 5, Consume);
    assert_eq!(out.reset_after, 20 * S);
    let out = state.apply(&q, t0, 1, Consume);
    assert_eq!(out.retry_after, 20 * S);
}

#[test]
fn sliding_window_cases() {
    use Op::*;
    let t0 = 1_699_999_980 * S; // a minute boundary
    let q = quota(Algorithm::SlidingWindow, 10, Unit::Minute, 10);
    check(
        "hits stay counted for a whole unit",
        q,
        &[
            step(t0, 10, Consume, true, 0),
            // A fixed window would reset at t0+60s; the sliding one keeps counting until the
            // sub-window holding the hits has left the window entirely.
            step(t0 + 60 * S, 1, Consume, false, 0),
            step(t0 + 66 * S, 1, Consume, true, 9),
        ],
    );
    let mut state = BucketState::default();
    state.apply(&q, t0, 10, Consume);
    let denied = state.apply(&q, t0 + 30 * S, 1, Consume);
    assert!(!denied.allowed);
    assert_eq!(
        denied.retry_after,
        36 * S,
        "slot 0 leaves the window at 66 s"
    );
}

/// Admitted (time, hits) pairs never exceed `allowance(interval_length)` in any interval.
fn assert_never_over(admitted: &[(Nanos, u64)], window: Nanos, allowance: impl Fn(Nanos) -> u128) {
    for (i, &(start, _)) in admitted.iter().enumerate() {
        let mut sum: u128 = 0;
        for &(t, h) in &admitted[i..] {
            if t >= start + window {
                break;
            }
            sum += h as u128;
            assert!(
                sum <= allowance(t - start),
                "admitted {sum} between {start} and {t}, more than allowed"
            );
        }
    }
}

fn schedule() -> impl Strategy<Value = Vec<(u64, u64)>> {
    // (gap in ms, hits) pairs: bursts (gap 0) and pauses.
    prop::collection::vec(
        (prop_oneof![Just(0u64), 0u64..50, 0u64..3_000], 1u64..4),
        1..300,
    )
}

fn any_algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

fn run(q: Quota, schedule: &[(u64, u64)]) -> Vec<(Nanos, u64)> {
    let mut state = BucketState::default();
    let mut now = 1_700_000_000 * S + 123;
    let mut admitted = Vec::new();
    for &(gap_ms, hits) in schedule {
        now += gap_ms * 1_000_000;
        if state.apply(&q, now, hits, Op::Consume).allowed {
            admitted.push((now, hits));
        }
    }
    admitted
}

proptest! {
    /// Any number of hits, up to u64::MAX, on any state of any algorithm: no panic, no wrap. A
    /// denial never says to retry sooner than a request of that size could fit: when it can never
    /// fit, not before the window (or the bucket) has fully recovered.
    #[test]
    fn extreme_hits_saturate(
        alg in any_algorithm(),
        limit in 1u64..1_000,
        used in 0u64..1_000,
        hits in prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), Just(u64::MAX / 2), 1_000u64..u64::MAX],
    ) {
        let q = quota(alg, limit, Unit::Second, limit);
        let now = 1_700_000_000 * S + 123_456_789;
        let mut state = BucketState::default();
        state.apply(&q, now, used.min(limit), Op::Consume);
        let denied = state.apply(&q, now, hits, Op::Consume);
        prop_assert!(!denied.allowed, "{hits} hits never fit a limit of {limit}");
        prop_assert!(denied.retry_after >= denied.reset_after || denied.reset_after == 0,
            "retry after {} before the reset at {}", denied.retry_after, denied.reset_after);
        let refunded = state.apply(&q, now, hits, Op::Refund);
        prop_assert!(refunded.remaining <= limit);
    }

    #[test]
    fn token_bucket_never_exceeds_capacity_plus_refill(
        limit in 1u64..20, capacity in 1u64..20, sched in schedule()
    ) {
        let q = quota(Algorithm::TokenBucket, limit, Unit::Second, capacity);
        let admitted = run(q, &sched);
        assert_never_over(&admitted, 10 * S, |elapsed| {
            capacity as u128 + (elapsed as u128 * limit as u128) / S as u128
        });
    }

    #[test]
    fn fixed_window_never_exceeds_limit_per_window(limit in 1u64..20, sched in schedule()) {
        let q = quota(Algorithm::FixedWindow, limit, Unit::Second, limit);
        let admitted = run(q, &sched);
        for (i, &(t, _)) in admitted.iter().enumerate() {
            let window = t / S;
            let in_window: u64 = admitted[i..].iter().take_while(|(u, _)| u / S == window).map(|(_, h)| h).sum();
            prop_assert!(in_window <= limit);
        }
    }

    #[test]
    fn sliding_window_never_exceeds_limit_in_any_unit(limit in 1u64..20, sched in schedule()) {
        let q = quota(Algorithm::SlidingWindow, limit, Unit::Second, limit);
        let admitted = run(q, &sched);
        assert_never_over(&admitted, S, |_| limit as u128);
    }

    /// Any period of `multiplier` units ("5 per 3 seconds"), every algorithm: never more than the
    /// limit in any interval of the period (the sliding window; the fixed window per aligned
    /// period), the token bucket never more than its capacity plus the refill.
    #[test]
    fn a_period_of_several_units_holds_for_every_algorithm(
        alg in any_algorithm(),
        limit in 1u64..20,
        multiplier in 1u32..5,
        sched in schedule(),
    ) {
        let q = Quota { multiplier, ..quota(alg, limit, Unit::Second, limit) };
        let period = u64::from(multiplier) * S;
        prop_assert_eq!(q.window_nanos(), period);
        let admitted = run(q, &sched);
        match alg {
            Algorithm::TokenBucket | Algorithm::Gcra => assert_never_over(&admitted, 10 * S, |elapsed| {
                limit as u128 + (elapsed as u128 * limit as u128) / period as u128
            }),
            Algorithm::SlidingWindow => assert_never_over(&admitted, period, |_| limit as u128),
            Algorithm::FixedWindow => {
                for (i, &(t, _)) in admitted.iter().enumerate() {
                    let window = t / period;
                    let in_window: u64 = admitted[i..]
                        .iter()
                        .take_while(|(u, _)| u / period == window)
                        .map(|(_, h)| h)
                        .sum();
                    prop_assert!(in_window <= limit);
                }
            }
        }
    }

    /// GCRA admits as a token bucket of capacity `burst` would: never more than the burst plus
    /// the rate over any interval.
    #[test]
    fn gcra_never_exceeds_burst_plus_rate(
        limit in 1u64..20, burst in 1u64..20, multiplier in 1u32..4, sched in schedule()
    ) {
        let q = Quota { multiplier, ..quota(Algorithm::Gcra, limit, Unit::Second, burst) };
        let period = q.window_nanos();
        let admitted = run(q, &sched);
        assert_never_over(&admitted, 10 * S, |elapsed| {
            burst as u128 + (elapsed as u128 * limit as u128) / period as u128
        });
    }

    /// With a burst of 1, GCRA spaces admitted hits at least period ÷ limit apart (a hit of
    /// `n` counts as `n` spacings), and a client that waits the spacing is always admitted.
    #[test]
    fn gcra_spaces_hits_evenly(limit in 1u64..50, sched in schedule()) {
        let q = quota(Algorithm::Gcra, limit, Unit::Second, 1);
        let spacing = S.div_ceil(limit);
        let mut state = BucketState::default();
        let mut now = 1_700_000_000 * S + 7;
        let mut last: Option<Nanos> = None;
        for &(gap_ms, _) in &sched {
            now += gap_ms * 1_000_000;
            let out = state.apply(&q, now, 1, Op::Consume);
            if out.allowed {
                if let Some(before) = last {
                    prop_assert!(now - before >= spacing, "{} ns apart, spacing {spacing}", now - before);
                }
                last = Some(now);
            } else {
                let before = last.expect("a first hit is always admitted");
                prop_assert!(now - before < spacing, "refused {} ns after the last, spacing {spacing}", now - before);
                prop_assert_eq!(out.retry_after, before + spacing - now, "retry when the spacing is over");
            }
        }
    }

    #[test]
    fn refund_after_consume_restores_remaining(
        alg in any_algorithm(),
        used in 0u64..10, hits in 1u64..5
    ) {
        let q = quota(alg, 20, Unit::Minute, 20);
        let now = 1_700_000_000 * S;
        let mut state = BucketState::default();
        state.apply(&q, now, used, Op::Consume);
        let before = state.peek(&q, now).remaining;
        let taken = state.apply(&q, now, hits, Op::Consume);
        prop_assert!(taken.allowed);
        let back = state.apply(&q, now, hits, Op::Refund);
        prop_assert_eq!(back.remaining, before);
    }
}
