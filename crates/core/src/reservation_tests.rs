//! Settling reservations: the operations a commit or cancel makes, and the table's bounds.

use super::*;
use crate::limit::{Algorithm, Quota, Unit};
use crate::time::NANOS_PER_SEC as S;

fn charge(name: &str, key: u128, hits: u64) -> Charge {
    Charge {
        name: name.into(),
        op: BucketOp {
            key,
            quota: Quota {
                limit: 1_000,
                unit: Unit::Minute,
                multiplier: 1,
                capacity: 1_000,
                algorithm: Algorithm::TokenBucket,
                calendar: None,
            },
            keep_for: 60 * S,
            hits,
            op: Op::Consume,
            enforced: true,
        },
    }
}

#[test]
fn a_commit_refunds_what_was_not_spent_and_adds_what_was_spent_beyond() {
    let charges = [
        charge("#0", 1, 1),
        charge("input_tokens", 2, 500),
        charge("output_tokens", 3, 200),
    ];
    // (actual costs, the operations: (key, op, hits))
    let cases: &[(&[(&str, u64)], &[(u128, Op, u64)])] = &[
        // Exactly as estimated: nothing to do.
        (&[("input_tokens", 500), ("output_tokens", 200)], &[]),
        // Fewer input tokens, more output tokens (an over-commit is added, never refused).
        (
            &[("input_tokens", 420), ("output_tokens", 380)],
            &[(2, Op::Refund, 80), (3, Op::Add, 180)],
        ),
        // A unit not named keeps its estimate; the call itself stays counted.
        (&[("output_tokens", 0)], &[(3, Op::Refund, 200)]),
    ];
    for (actual, want) in cases {
        let got: Vec<(u128, Op, u64)> = settlement(&charges, actual)
            .iter()
            .map(|o| (o.key, o.op, o.hits))
            .collect();
        assert_eq!(&got, want, "{actual:?}");
        assert!(settlement(&charges, actual).iter().all(|o| !o.enforced));
    }
    let cancel: Vec<(u128, Op, u64)> = cancellation(&charges)
        .iter()
        .map(|o| (o.key, o.op, o.hits))
        .collect();
    assert_eq!(
        cancel,
        [
            (1, Op::Refund, 1),
            (2, Op::Refund, 500),
            (3, Op::Refund, 200)
        ]
    );
}

#[test]
fn reservations_settle_once_expire_and_are_bounded() {
    let t0 = 1_700_000_000 * S;
    let r = |until: Nanos| Reservation {
        charges: vec![charge("#0", 1, 1)],
        expires_at: until,
    };
    let mut table = ReservationTable::new(2);
    table.insert(1, r(t0 + 10 * S), t0).unwrap();
    table.insert(2, r(t0 + 5 * S), t0).unwrap();
    assert_eq!(
        table.insert(3, r(t0 + 10 * S), t0),
        Err(TooManyReservations { max: 2 })
    );
    assert!(table.take(1, t0).is_some(), "settled once");
    assert!(table.take(1, t0).is_none(), "not twice");
    assert!(
        table.take(2, t0 + 5 * S).is_none(),
        "expired at its deadline"
    );
    // Room is made by dropping expired ones.
    table.insert(4, r(t0 + 5 * S), t0).unwrap();
    table.insert(5, r(t0 + 20 * S), t0).unwrap();
    table.insert(6, r(t0 + 20 * S), t0 + 6 * S).unwrap();
    assert_eq!(table.len(), 2);
}

#[test]
fn a_stored_charge_reads_back_as_it_was() {
    let c = charge("output_tokens", u128::MAX - 5, 77);
    let stored = StoredCharge::from(&c);
    let json = serde_json::to_string(&stored).unwrap();
    let back: StoredCharge = serde_json::from_str(&json).unwrap();
    assert_eq!(back.charge(), Some(c));
    let bad = StoredCharge {
        key: "not hex".into(),
        ..stored
    };
    assert_eq!(bad.charge(), None);
}
