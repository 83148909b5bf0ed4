use super::*;

const S: Nanos = NANOS_PER_SEC;

fn key(client: &str) -> BucketKey {
    BucketKey::new(
        "edge",
        [
            ("remote_address".to_string(), client.to_string()),
            ("endpoint".to_string(), "/api".to_string()),
        ],
    )
}

fn limit(n: u64) -> BucketQuota {
    BucketQuota::Limit {
        rule: "r".into(),
        limit: n,
        unit: Unit::Minute,
        cut: false,
        throttle: None,
    }
}

/// Each stream's requests over a 5 s report, all at `now`.
fn board_with(demands: &[u64], now: Nanos) -> QuotaBoard {
    let mut board = QuotaBoard::new(QuotaConfig::default());
    for (stream, &n) in demands.iter().enumerate() {
        board
            .report(stream as u64, &key("a"), n, 5 * S, now)
            .unwrap();
    }
    board
}

#[test]
fn shares_add_up_to_at_most_the_quota_and_follow_demand() {
    // (each stream's requests in a report, quota, expected shares)
    let table: [(&[u64], u64, &[u64]); 5] = [
        (&[50], 100, &[100]),
        (&[50, 50], 100, &[50, 50]),
        (&[90, 10], 100, &[82, 18]),
        (&[0, 0, 0], 100, &[33, 33, 33]),
        (&[100, 100, 100, 100, 0], 1_000, &[240, 240, 240, 240, 40]),
    ];
    for (demands, quota, expected) in table {
        let board = board_with(demands, 10 * S);
        let shares: Vec<u64> = (0..demands.len() as u64)
            .map(|s| board.share(&key("a"), s, quota, 10 * S))
            .collect();
        assert_eq!(shares, expected, "{demands:?} of {quota}");
        assert!(shares.iter().sum::<u64>() <= quota, "{demands:?}");
    }
}

#[test]
fn shares_follow_a_shift_in_demand_within_a_few_reports() {
    let mut board = board_with(&[90, 10], 0);
    for i in 1..=4u64 {
        board.report(0, &key("a"), 10, 5 * S, i * 5 * S).unwrap();
        board.report(1, &key("a"), 90, 5 * S, i * 5 * S).unwrap();
    }
    let (a, b) = (
        board.share(&key("a"), 0, 100, 20 * S),
        board.share(&key("a"), 1, 100, 20 * S),
    );
    assert!(
        b > a * 3,
        "the busier Envoy now has the larger share: {a} {b}"
    );
    assert!(a + b <= 100);
}

#[test]
fn silent_and_closed_envoys_stop_taking_a_share() {
    let mut board = board_with(&[50, 50], 0);
    // Stream 1 goes silent: after `stale`, stream 0 has it all.
    board.report(0, &key("a"), 50, 5 * S, 40 * S).unwrap();
    assert_eq!(board.share(&key("a"), 0, 100, 40 * S), 100);
    board.sweep(40 * S);
    assert_eq!(board.buckets_of(1), Vec::<BucketKey>::new());
    board.forget_stream(0);
    assert!(board.is_empty(), "a bucket nobody reports is dropped");
}

#[test]
fn past_the_caps_a_report_is_refused_and_changes_nothing() {
    let mut board = QuotaBoard::new(QuotaConfig {
        max_buckets: 3,
        max_reporters: 2,
        ..QuotaConfig::default()
    });
    for c in ["a", "b", "c"] {
        board.report(1, &key(c), 1, S, 0).unwrap();
    }
    assert_eq!(
        board.report(1, &key("d"), 1, S, 0),
        Err(QuotaError::TooManyBuckets { max: 3 })
    );
    assert_eq!(board.len(), 3);
    board.report(2, &key("a"), 1, S, 0).unwrap();
    assert_eq!(
        board.report(3, &key("a"), 1, S, 0),
        Err(QuotaError::TooManyReporters { max: 2 })
    );
    assert_eq!(
        board.share(&key("a"), 1, 100, 0),
        50,
        "still two Envoys on it"
    );
}

#[test]
fn what_is_given_out_never_adds_up_to_more_than_the_quota() {
    let mut board = board_with(&[10], 0);
    let k = key("a");
    let given = |b: &mut QuotaBoard, s| match b.assign(&k, s, &limit(100), 0) {
        Assignment::Quota { requests, .. } => requests,
        other => panic!("{other:?}"),
    };
    assert_eq!(given(&mut board, 0), 100, "alone: all of it");
    board.report(1, &k, 10, 5 * S, 0).unwrap();
    // The newcomer gets what the first leaves until the first's share shrinks.
    assert_eq!(given(&mut board, 1), 0);
    assert_eq!(given(&mut board, 0), 50);
    assert_eq!(given(&mut board, 1), 50);
    // A new total (a cut): shares of it, whatever was given of the old one.
    let cut = BucketQuota::Limit {
        rule: "r".into(),
        limit: 40,
        unit: Unit::Minute,
        cut: true,
        throttle: None,
    };
    assert!(matches!(
        board.assign(&k, 0, &cut, 0),
        Assignment::Quota { requests: 20, .. }
    ));
}

#[test]
fn assignments_say_what_governs_the_bucket() {
    let mut board = board_with(&[10, 10], 0);
    let k = key("a");
    // (the engine's word, expected assignment for stream 0)
    let table = [
        (BucketQuota::Uncovered, Assignment::Abandon),
        (
            BucketQuota::Blocked { client: "a".into() },
            Assignment::DenyAll,
        ),
        (
            limit(100),
            Assignment::Quota {
                requests: 50,
                unit: Unit::Minute,
                reason: "share",
            },
        ),
        (
            BucketQuota::Limit {
                rule: "r".into(),
                limit: 40,
                unit: Unit::Minute,
                cut: true,
                throttle: None,
            },
            Assignment::Quota {
                requests: 20,
                unit: Unit::Minute,
                reason: "cut",
            },
        ),
        (
            BucketQuota::Limit {
                rule: "r".into(),
                limit: 100,
                unit: Unit::Second,
                cut: false,
                throttle: Some(6),
            },
            Assignment::Quota {
                requests: 3,
                unit: Unit::Minute,
                reason: "throttled",
            },
        ),
        (
            BucketQuota::Limit {
                rule: "r".into(),
                limit: 10,
                unit: Unit::Hour,
                cut: false,
                throttle: Some(60),
            },
            Assignment::Quota {
                requests: 5,
                unit: Unit::Hour,
                reason: "share",
            },
        ),
    ];
    for (quota, expected) in table {
        assert_eq!(board.assign(&k, 0, &quota, 0), expected, "{quota:?}");
    }
}

#[test]
fn a_fleet_divides_a_bucket_among_every_replicas_envoys() {
    // Two replicas, each with Envoys on the bucket: here two at 10 a second, there three.
    let mut here = board_with(&[50, 50], 10 * S);
    here.set_remote([(key("a"), vec![10.0, 10.0, 10.0])]);
    let k = key("a");
    let given: Vec<u64> = (0..2)
        .map(|s| match here.assign(&k, s, &limit(100), 10 * S) {
            Assignment::Quota { requests, .. } => requests,
            other => panic!("{other:?}"),
        })
        .collect();
    // Five Envoys alike: a fifth each, here and (by the same division) there.
    assert_eq!(given, vec![20, 20]);
    // What the other replica shares is bounded and only kept for buckets reported here.
    here.set_remote([
        (key("a"), vec![1.0; 500]),
        (key("unknown"), vec![1.0]),
        (key("a"), vec![f64::NAN]),
    ]);
    // 2 Envoys here and 64 there (the cap): a floor of 20 each, the rest (5,280) by demand,
    // 10 of 84 to this one.
    assert_eq!(here.share(&k, 0, 6_600, 10 * S), 20 + 628);
    let shared = here.local_demand(10 * S);
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].1, vec![10.0, 10.0]);
}

#[test]
fn an_envoy_reporting_slowly_keeps_its_share_between_reports() {
    let mut board = QuotaBoard::new(QuotaConfig::default());
    // One Envoy reports every 60 s, the other every 5 s.
    board.report(0, &key("a"), 600, 60 * S, 60 * S).unwrap();
    board.report(1, &key("a"), 50, 5 * S, 100 * S).unwrap();
    // 50 s after its report the slow one is not stale: three of its intervals is 180 s.
    assert_eq!(board.share(&key("a"), 1, 100, 110 * S), 50);
    // Past that, it is.
    board.report(1, &key("a"), 50, 5 * S, 250 * S).unwrap();
    assert_eq!(board.share(&key("a"), 1, 100, 250 * S), 100);
}
