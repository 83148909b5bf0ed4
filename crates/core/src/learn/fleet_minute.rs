//! A fleet's minute: which of a replica's clients it shares with the other replicas
//! (`to_share`), and their minutes merged into its own before it learns (`merge_shared`), so a
//! client spread over replicas by a load balancer is judged on all its traffic. Pure: the
//! exchange itself (Redis, or a replay's replicas in memory) is the caller's.
//!
//! Not shared: clients too small to matter anywhere. A client is shared when its requests here
//! reach the floor a look uses divided by the replicas (so a client at the floor spread evenly
//! over them is shared by each), busiest first up to a cap.

use rustc_hash::FxHashMap;

use super::client_minute::{ClientKind, ClientMinute, ClientSummary};
use super::observe::MinuteData;

/// Most clients one replica shares a minute: bounds the exchange's bytes and every replica's
/// merge, whatever the traffic.
pub const SHARE_CAP: usize = 10_000;

/// The least a client must have done on this replica to be shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareFloor {
    pub requests: u32,
    /// Failed page requests.
    pub errors: u32,
}

impl ShareFloor {
    /// Every client with a second request or a failed page (before the baselines judge).
    pub const ANY: ShareFloor = ShareFloor {
        requests: 2,
        errors: 1,
    };

    pub fn admits(&self, c: &ClientMinute) -> bool {
        c.requests >= self.requests || c.page_errors() >= self.errors
    }
}

/// The clients of `clients` worth sharing, busiest first, at most `cap`.
pub fn to_share(clients: &[ClientMinute], floor: ShareFloor, cap: usize) -> Vec<ClientSummary> {
    let mut chosen: Vec<&ClientMinute> = clients
        .iter()
        .filter(|c| !c.remote() && floor.admits(c))
        .collect();
    if chosen.len() > cap {
        chosen.select_nth_unstable_by(cap, |a, b| weight(b).cmp(&weight(a)));
        chosen.truncate(cap);
    }
    chosen.into_iter().map(ClientMinute::summary).collect()
}

fn weight(c: &ClientMinute) -> u64 {
    c.requests as u64 + c.page_errors() as u64
}

/// The other replicas' minutes merged into `data`: a client seen here gains their requests,
/// one seen only elsewhere is added (marked remote). Clients stay in their order, added ones
/// after, sorted by key (every replica merges the same set in the same order).
pub fn merge_shared(data: &mut MinuteData, shared: Vec<ClientSummary>) {
    let mut index: FxHashMap<(Box<str>, ClientKind), usize> = data
        .clients
        .iter()
        .enumerate()
        .map(|(i, c)| ((c.client.clone(), c.kind), i))
        .collect();
    let mut added: Vec<ClientMinute> = Vec::new();
    let mut added_index: FxHashMap<(Box<str>, ClientKind), usize> = FxHashMap::default();
    for summary in shared {
        let other = ClientMinute::from_summary(summary);
        let key = (other.client.clone(), other.kind);
        if let Some(&i) = index.get(&key) {
            data.clients[i].merge(&other);
        } else if let Some(&i) = added_index.get(&key) {
            added[i].merge(&other);
        } else {
            added_index.insert(key, added.len());
            added.push(other);
        }
    }
    index.clear();
    added.sort_by(|a, b| (&a.client, a.kind as u8).cmp(&(&b.client, b.kind as u8)));
    data.clients.extend(added);
}

#[cfg(test)]
#[path = "fleet_minute_tests.rs"]
mod tests;
