//! The shared counters' state strings read as the core's bucket states, on this replica's clock.

use super::*;

#[test]
fn state_strings_become_bucket_states() {
    let local_now: Nanos = 1_700_000_000_000_000_000;
    let redis_now_ms: i64 = 1_700_000_000_500;
    let ring = {
        let mut counts = [0u64; SLIDING_SLOTS as usize + 1];
        counts[3] = 7;
        BucketState::Sliding(Box::new(SlidingRing::from_parts(42, counts)))
    };
    // (text, expected)
    let cases: Vec<(&str, Option<BucketState>)> = vec![
        // Credit in token x window_ms units -> token x window_ns; refilled 200 ms before Redis's
        // now -> 200 ms before ours.
        (
            "t 5000 1700000000300",
            Some(BucketState::Token {
                credit: 5_000_000_000,
                last: local_now - 200_000_000,
            }),
        ),
        (
            "f 1699999980000 4",
            Some(BucketState::Fixed {
                window_start: 1_699_999_980_000_000_000,
                count: 4,
            }),
        ),
        // A debt of 2,000 token x ms at 10 per ms: no credit, and no refill for 200 ms more.
        (
            "t -2000 1700000000500",
            Some(BucketState::Token {
                credit: 0,
                last: local_now + 200_000_000,
            }),
        ),
        ("s 42 0 0 0 7 0 0 0 0 0 0 0", Some(ring)),
        // GCRA: 1.5 s ahead of Redis's now is 1.5 s ahead of ours; a time passed is now.
        (
            "g 1700000002000000",
            Some(BucketState::Gcra {
                tat: local_now + 1_500_000_000,
            }),
        ),
        (
            "g 1600000000000000",
            Some(BucketState::Gcra { tat: local_now }),
        ),
        ("g 1 2", None),
        ("g x", None),
        // Anything else is not adopted.
        ("s 42 0 0 7", None),
        ("t 5000", None),
        ("x 1 2", None),
        ("f -1 2", None),
        ("", None),
    ];
    for (text, expected) in cases {
        assert_eq!(
            shared_state(text, redis_now_ms, local_now, 10),
            expected,
            "{text:?}"
        );
    }
}

#[test]
fn counters_urls_are_checked() {
    for (url, ok) in [
        ("redis://127.0.0.1:6379/", true),
        ("redis://cache.internal:6380/2", true),
        // Not built in: said, not failed on at the first connection.
        ("rediss://cache.internal:6380/0", false),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7000", true),
        ("redis+cluster://", false),
        ("http://127.0.0.1:6379", false),
        ("127.0.0.1:6379", false),
    ] {
        assert_eq!(url.parse::<CountersUrl>().is_ok(), ok, "{url}");
    }
}
