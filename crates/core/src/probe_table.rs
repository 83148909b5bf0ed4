//! A linear-probing hash table from 128-bit bucket keys to slots, one cache line per entry.
//!
//! Why not `HashMap`: a SwissTable lookup touches its control bytes and then the entry — two
//! cache misses when a million keys are live. Here the key sits in the entry, so a hit usually
//! costs one. Keys are already uniform hashes, so probing by their low bits clusters no more than
//! random. Key 0 marks an empty entry (a real key is remapped, see `stored`).
//!
//! Not a general-purpose map: no iteration order, no growth below half load, and `retain`
//! rebuilds the table. Used only by `buckets::ShardedStore`, under its shard locks.

#[derive(Clone, Debug)]
#[repr(align(64))]
pub struct Entry<V> {
    key: u128,
    pub value: V,
}

pub struct ProbeTable<V> {
    entries: Vec<Entry<V>>,
    len: usize,
}

/// The empty marker is 0; the (2⁻¹²⁸-likely) real key 0 is stored as 1, sharing its entry.
#[inline]
fn stored(key: u128) -> u128 {
    key.max(1)
}

impl<V: Clone + Default> ProbeTable<V> {
    pub fn new() -> Self {
        ProbeTable {
            entries: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    #[inline]
    fn find(&self, key: u128) -> Result<usize, usize> {
        let mut i = key as usize & self.mask();
        loop {
            let k = self.entries[i].key;
            if k == key {
                return Ok(i);
            }
            if k == 0 {
                return Err(i);
            }
            i = (i + 1) & self.mask();
        }
    }

    pub fn get(&self, key: u128) -> Option<&V> {
        if self.entries.is_empty() {
            return None;
        }
        self.find(stored(key)).ok().map(|i| &self.entries[i].value)
    }

    /// The value for `key`, inserted with `make` if absent.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: u128, make: impl FnOnce() -> V) -> &mut V {
        let key = stored(key);
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        let i = match self.find(key) {
            Ok(i) => i,
            Err(i) => {
                self.entries[i] = Entry { key, value: make() };
                self.len += 1;
                i
            }
        };
        &mut self.entries[i].value
    }

    pub fn contains(&self, key: u128) -> bool {
        self.get(key).is_some()
    }

    /// Removes `key`, shifting later entries of its probe run back so lookups stay correct.
    pub fn remove(&mut self, key: u128) -> Option<V> {
        if self.entries.is_empty() {
            return None;
        }
        let mut hole = self.find(stored(key)).ok()?;
        let removed = std::mem::take(&mut self.entries[hole].value);
        self.entries[hole].key = 0;
        self.len -= 1;
        let mask = self.mask();
        let mut i = (hole + 1) & mask;
        while self.entries[i].key != 0 {
            let home = self.entries[i].key as usize & mask;
            // Move entry i into the hole if its home is not in (hole, i] (cyclically).
            let in_between = if hole <= i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !in_between {
                self.entries.swap(hole, i);
                hole = i;
            }
            i = (i + 1) & mask;
        }
        Some(removed)
    }

    /// Keeps the entries `keep` accepts; returns how many were dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) -> usize {
        let before = self.len;
        let old = std::mem::take(&mut self.entries);
        self.len = 0;
        let survivors: Vec<Entry<V>> = old
            .into_iter()
            .filter(|e| e.key != 0 && keep(&e.value))
            .collect();
        self.entries = vec![
            Entry {
                key: 0,
                value: V::default()
            };
            old_capacity_for(survivors.len())
        ];
        for e in survivors {
            let i = self.find(e.key).unwrap_err();
            self.entries[i] = e;
            self.len += 1;
        }
        before - self.len
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().filter(|e| e.key != 0).map(|e| &e.value)
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.entries);
        let capacity = (old.len() * 2).max(8);
        self.entries = vec![
            Entry {
                key: 0,
                value: V::default()
            };
            capacity
        ];
        for e in old.into_iter().filter(|e| e.key != 0) {
            let i = self.find(e.key).unwrap_err();
            self.entries[i] = e;
        }
    }
}

impl<V: Clone + Default> Default for ProbeTable<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// A power of two with room for `n` entries at no more than 3/4 load.
fn old_capacity_for(n: usize) -> usize {
    ((n * 4).div_ceil(3) + 1).next_power_of_two().max(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Debug)]
    enum Action {
        Insert(u128, u32),
        Remove(u128),
        RetainEven,
    }

    fn action() -> impl Strategy<Value = Action> {
        // Few distinct low bits, so probe runs collide and wrap around.
        let key = (0u128..64).prop_map(|k| k.wrapping_mul(1 << 70) | (k % 5));
        prop_oneof![
            4 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Action::Insert(k, v)),
            2 => key.prop_map(Action::Remove),
            1 => Just(Action::RetainEven),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_hashmap(actions in prop::collection::vec(action(), 1..400)) {
            let mut table: ProbeTable<u32> = ProbeTable::new();
            let mut model: HashMap<u128, u32> = HashMap::new();
            for a in actions {
                match a {
                    Action::Insert(k, v) => {
                        *table.get_or_insert_with(k, || v) = v;
                        model.insert(k.max(1), v);
                    }
                    Action::Remove(k) => {
                        prop_assert_eq!(table.remove(k), model.remove(&k.max(1)));
                    }
                    Action::RetainEven => {
                        table.retain(|v| v % 2 == 0);
                        model.retain(|_, v| *v % 2 == 0);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                for (k, v) in &model {
                    prop_assert_eq!(table.get(*k), Some(v));
                }
            }
        }
    }
}
