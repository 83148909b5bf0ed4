//! Reserve and commit: a caller that learns a cost only afterwards (an LLM call's output tokens)
//! reserves an estimate against its limits first — denied when it cannot fit, as a decision is
//! — then commits the actual cost or cancels. What a reservation charged is recorded here; a
//! commit turns estimate and actual into the refunds (spent less) and added hits (spent more:
//! owed even beyond the limit, a debt repaid before anything more is admitted) that settle it.
//! A reservation never settled expires with its estimate still counted: the work it was for most
//! likely ran.
//!
//! Plain data with time passed in. The service keeps this table when it decides alone; a fleet
//! keeps the same records in the shared counters (any replica may settle them), so this module
//! knows neither.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::bucket::Op;
use crate::engine::BucketOp;
use crate::time::Nanos;

/// The longest a reservation may stay unsettled (a day).
pub const MAX_RESERVATION_TTL: Nanos = 86_400 * crate::time::NANOS_PER_SEC;
/// Cost units one reservation may name.
pub const MAX_COSTS: usize = 8;

/// One limit a reservation charged: its name (the cost unit) and the operation that charged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    pub name: String,
    pub op: BucketOp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub charges: Vec<Charge>,
    pub expires_at: Nanos,
}

/// The operations that settle `charges` at `actual` costs (by limit name; a limit whose name is
/// not in `actual` keeps what it was charged): a refund where less was spent, added hits where
/// more was.
pub fn settlement(charges: &[Charge], actual: &[(&str, u64)]) -> Vec<BucketOp> {
    charges
        .iter()
        .filter_map(|c| {
            let spent = actual
                .iter()
                .find(|(name, _)| *name == c.name)
                .map_or(c.op.hits, |(_, n)| *n);
            let (op, hits) = if spent < c.op.hits {
                (Op::Refund, c.op.hits - spent)
            } else {
                (Op::Add, spent - c.op.hits)
            };
            (hits > 0).then_some(BucketOp {
                op,
                hits,
                enforced: false,
                ..c.op
            })
        })
        .collect()
}

/// The operations that give back everything `charges` took (a cancel).
pub fn cancellation(charges: &[Charge]) -> Vec<BucketOp> {
    settlement(
        charges,
        &charges
            .iter()
            .map(|c| (c.name.as_str(), 0))
            .collect::<Vec<_>>(),
    )
}

/// Why a reservation could not be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyReservations {
    pub max: usize,
}

/// Unsettled reservations by id, at most `max` (expired ones are dropped to make room).
#[derive(Debug)]
pub struct ReservationTable {
    by_id: FxHashMap<u128, Reservation>,
    max: usize,
}

impl ReservationTable {
    pub fn new(max: usize) -> ReservationTable {
        ReservationTable {
            by_id: FxHashMap::default(),
            max,
        }
    }

    pub fn insert(
        &mut self,
        id: u128,
        reservation: Reservation,
        now: Nanos,
    ) -> Result<(), TooManyReservations> {
        if self.by_id.len() >= self.max {
            self.sweep(now);
            if self.by_id.len() >= self.max {
                return Err(TooManyReservations { max: self.max });
            }
        }
        self.by_id.insert(id, reservation);
        Ok(())
    }

    /// Takes reservation `id` to settle it: `None` when unknown, settled already or expired.
    pub fn take(&mut self, id: u128, now: Nanos) -> Option<Reservation> {
        self.by_id.remove(&id).filter(|r| r.expires_at > now)
    }

    /// Puts back a reservation whose settlement could not be applied (the caller retries).
    pub fn put_back(&mut self, id: u128, reservation: Reservation) {
        self.by_id.insert(id, reservation);
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn sweep(&mut self, now: Nanos) {
        self.by_id.retain(|_, r| r.expires_at > now);
    }
}

/// A charge as the shared counters store it (any replica may settle it): the bucket operation
/// in plain numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCharge {
    pub name: String,
    pub key: String,
    pub limit: u64,
    pub unit: crate::limit::Unit,
    pub multiplier: u32,
    pub capacity: u64,
    pub algorithm: crate::limit::Algorithm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    pub keep_for: Nanos,
    pub hits: u64,
}

impl From<&Charge> for StoredCharge {
    fn from(c: &Charge) -> StoredCharge {
        StoredCharge {
            name: c.name.clone(),
            key: format!("{:032x}", c.op.key),
            limit: c.op.quota.limit,
            unit: c.op.quota.unit,
            multiplier: c.op.quota.multiplier,
            capacity: c.op.quota.capacity,
            algorithm: c.op.quota.algorithm,
            calendar: c.op.quota.calendar.map(|z| z.name().to_string()),
            keep_for: c.op.keep_for,
            hits: c.op.hits,
        }
    }
}

impl StoredCharge {
    /// `None` when the key or the zone is not one this module wrote.
    pub fn charge(&self) -> Option<Charge> {
        let calendar = match &self.calendar {
            Some(name) => Some(crate::calendar::parse_zone(name)?),
            None => None,
        };
        Some(Charge {
            name: self.name.clone(),
            op: BucketOp {
                key: u128::from_str_radix(&self.key, 16).ok()?,
                quota: crate::limit::Quota {
                    limit: self.limit,
                    unit: self.unit,
                    multiplier: self.multiplier,
                    capacity: self.capacity,
                    algorithm: self.algorithm,
                    calendar,
                },
                keep_for: self.keep_for,
                hits: self.hits,
                op: Op::Consume,
                enforced: true,
            },
        })
    }
}

#[cfg(test)]
#[path = "reservation_tests.rs"]
mod tests;
