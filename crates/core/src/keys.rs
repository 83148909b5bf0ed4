//! How a request becomes identities: the caller read from Envoy descriptors, and the 128-bit keys
//! of buckets (per limit seed and matched values). Pure functions for `engine`.

use super::limit::Rate;
use super::matcher::CompiledLimit;
use super::rules::{Tier, subject_keys};
use super::verdict::{DescriptorInput, Subject};

/// Who is calling, read from Envoy descriptor entries: the first value of each subject key
/// (`remote_address`, `user_id`, `tier`, `endpoint` or `path`, `method`, `user_agent`).
pub(super) fn caller_from_descriptors<'a>(inputs: &[DescriptorInput<'a>]) -> Subject<'a> {
    let mut caller = Subject::default();
    for (key, value) in inputs.iter().flat_map(|d| d.entries.iter()) {
        let slot = match *key {
            subject_keys::REMOTE_ADDRESS => &mut caller.remote_address,
            subject_keys::USER_ID => &mut caller.user_id,
            subject_keys::ENDPOINT | "path" | ":path" => &mut caller.endpoint,
            subject_keys::METHOD => &mut caller.method,
            "user_agent" => &mut caller.user_agent,
            subject_keys::TIER => {
                caller.tier = Tier::parse(value).unwrap_or(caller.tier);
                continue;
            }
            _ => continue,
        };
        if slot.is_empty() {
            *slot = value;
        }
    }
    caller
}

pub(super) fn subject_key(limit: &CompiledLimit, fields: &[(&str, &str); 5], order: &[u8]) -> u128 {
    bucket_key(limit.seed, order.iter().map(|&i| fields[i as usize].1))
}

/// The bucket of one limit for one set of descriptor values: a 128-bit hash, so keys are
/// fixed-size and collisions are out of reach (about 2⁻⁸⁸ at 10⁹ keys). Short inputs (the usual
/// case) are hashed in one shot from a stack buffer; the streaming hasher's setup costs more than
/// hashing a few dozen bytes.
pub(super) fn bucket_key<'v>(seed: u64, values: impl Iterator<Item = &'v str> + Clone) -> u128 {
    const INLINE: usize = 256;
    let total: usize = values.clone().map(|v| v.len() + 4).sum();
    if total <= INLINE {
        let mut buf = [0u8; INLINE];
        let mut at = 0;
        for v in values {
            buf[at..at + 4].copy_from_slice(&(v.len() as u32).to_le_bytes());
            buf[at + 4..at + 4 + v.len()].copy_from_slice(v.as_bytes());
            at += 4 + v.len();
        }
        return xxhash_rust::xxh3::xxh3_128_with_seed(&buf[..at], seed);
    }
    let mut h = xxhash_rust::xxh3::Xxh3::with_seed(seed);
    for v in values {
        h.update(&(v.len() as u32).to_le_bytes());
        h.update(v.as_bytes());
    }
    h.digest128()
}

pub(super) fn synthetic_seed(
    kind: &str,
    domain: &str,
    entries: &[(&str, &str)],
    rate: Rate,
) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(kind.as_bytes());
    h.update(&[0xff]);
    h.update(domain.as_bytes());
    for (k, _) in entries {
        h.update(&[0xff]);
        h.update(k.as_bytes());
    }
    h.update(&rate.requests_per_unit.to_le_bytes());
    h.update(rate.unit.as_str().as_bytes());
    h.digest()
}
