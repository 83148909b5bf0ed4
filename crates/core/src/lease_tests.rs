//! Leases on an injected clock: a table of steps, then the bounds.

use super::*;
use crate::time::NANOS_PER_SEC as S;

const T0: Nanos = 1_700_000_000 * S;

#[derive(Debug)]
enum Step {
    Acquire(u128, u32, Nanos),
    Release(u128),
    Renew(u128, Nanos),
}

#[test]
fn leases_follow_their_holders_and_deadlines() {
    use Step::*;
    // (at seconds after T0, step, what it must say), on one key with a limit of 2.
    let cases: &[(u64, Step, &str)] = &[
        (0, Acquire(1, 2, 10 * S), "granted 1 until 10"),
        (0, Acquire(2, 2, 30 * S), "granted 2 until 30"),
        (1, Acquire(3, 2, 10 * S), "full 2 retry 9"),
        // A retried acquire by a holder renews it and takes no second slot.
        (2, Acquire(1, 2, 10 * S), "granted 2 until 12"),
        (3, Release(1), "released"),
        (3, Release(1), "not held"),
        (4, Acquire(3, 2, 10 * S), "granted 2 until 14"),
        (13, Acquire(4, 2, 10 * S), "full 2 retry 1"),
        (14, Acquire(4, 2, 10 * S), "granted 2 until 24"),
        (20, Renew(4, 20 * S), "renewed until 40"),
        (21, Renew(3, 20 * S), "not held"),
        // Holder 2 crashed: nothing released it, its deadline at 30 frees the slot.
        (29, Acquire(5, 2, 10 * S), "full 2 retry 1"),
        (30, Acquire(5, 2, 10 * S), "granted 2 until 40"),
        // A caller asking with a lower limit is refused while more hold the key.
        (31, Acquire(6, 1, 10 * S), "full 2 retry 9"),
    ];
    let mut table = LeaseTable::new(10);
    for (at, step, want) in cases {
        let now = T0 + at * S;
        let secs = |t: Nanos| (t - T0) / S;
        let got = match *step {
            Acquire(id, limit, ttl) => match table.acquire(7, id, limit, ttl, now) {
                Acquired::Granted {
                    expires_at,
                    holders,
                } => {
                    format!("granted {holders} until {}", secs(expires_at))
                }
                Acquired::Full {
                    holders,
                    retry_after,
                } => {
                    format!("full {holders} retry {}", retry_after.div_ceil(S))
                }
                Acquired::TooManyKeys => "too many keys".into(),
            },
            Release(id) => {
                if table.release(7, id, now) {
                    "released".into()
                } else {
                    "not held".into()
                }
            }
            Renew(id, ttl) => match table.renew(7, id, ttl, now) {
                Some(e) => format!("renewed until {}", secs(e)),
                None => "not held".into(),
            },
        };
        assert_eq!(&got, want, "at {at} s: {step:?}");
    }
}

#[test]
fn keys_are_bounded_and_freed() {
    let mut table = LeaseTable::new(3);
    for key in 0..3 {
        assert!(matches!(
            table.acquire(key, 1, 1, S, T0),
            Acquired::Granted { .. }
        ));
    }
    assert_eq!(table.acquire(9, 1, 1, S, T0), Acquired::TooManyKeys);
    // A released key frees its place at once; an expired one at the next sweep or touch.
    assert!(table.release(0, 1, T0));
    assert!(matches!(
        table.acquire(9, 1, 1, S, T0),
        Acquired::Granted { .. }
    ));
    assert!(matches!(
        table.acquire(10, 1, 1, S, T0 + 2 * S),
        Acquired::Granted { .. }
    ));
    assert_eq!(table.keys(), 1, "the expired keys were swept to make room");
    assert_eq!(table.holders(10, T0 + 4 * S), 0);
    assert_eq!(table.keys(), 0);
}

/// However acquires, releases and deadlines interleave, a key never has more live holders
/// than its limit.
#[test]
fn never_more_holders_than_the_limit() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(33);
    let mut table = LeaseTable::new(100);
    let mut now = T0;
    for _ in 0..20_000 {
        now += rng.random_range(0..S / 2);
        let key = rng.random_range(0..5u128);
        let id = rng.random_range(0..20u128);
        let limit = 1 + (key as u32);
        match rng.random_range(0..3) {
            0 | 1 => {
                table.acquire(key, id, limit, rng.random_range(1..5 * S), now);
            }
            _ => {
                table.release(key, id, now);
            }
        }
        assert!(table.holders(key, now) <= limit);
    }
}
