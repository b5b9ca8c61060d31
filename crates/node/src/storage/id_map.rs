//! The redb backend's id index, kept in memory: each stored id (a live
//! message or a tombstone) to its seq, whose `id_by_seq` record holds the
//! rest. Rebuilt from that table when the store opens.
//!
//! Why in memory: ids are SHA-256 outputs, so a B-tree keyed by id takes
//! every insert on a different leaf, and redb copies a whole page for each
//! (and the checkpoint writes each again). That was half the writer's time
//! per message; keyed by seq, new records land on the tree's right edge. The
//! price is RAM: one map entry (24 bytes, 30-60 with the hash table's slack)
//! per stored message.
//!
//! The key is the id's first 16 bytes. Two ids sharing them would be taken
//! for one message (the second answered "already stored"); finding such a
//! pair takes about 2^64 SHA-256 evaluations, and finding one for a given id
//! about 2^128.

use std::collections::HashMap;
use std::sync::RwLock;

/// What the map says of an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Known {
    Live(u64),
    Tomb(u64),
}

/// Set on the stored value of a tombstone; seqs stay below it.
const TOMB: u64 = 1 << 63;

type Key = [u8; 16];

fn key(id: &[u8; 32]) -> Key {
    id[..16].try_into().expect("16 of 32 bytes")
}

#[derive(Default)]
pub(super) struct IdMap {
    map: RwLock<HashMap<Key, u64>>,
}

impl IdMap {
    pub(super) fn with_capacity(n: usize) -> Self {
        IdMap {
            map: RwLock::new(HashMap::with_capacity(n)),
        }
    }

    pub(super) fn get(&self, id: &[u8; 32]) -> Option<Known> {
        let map = self.map.read().expect("id map lock");
        map.get(&key(id)).map(|&v| decode(v))
    }

    /// Each of `ids`, under one lock.
    pub(super) fn get_many<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a [u8; 32]>,
    ) -> Vec<Option<Known>> {
        let map = self.map.read().expect("id map lock");
        ids.into_iter()
            .map(|id| map.get(&key(id)).map(|&v| decode(v)))
            .collect()
    }

    /// Records each id as its state, replacing what was there.
    pub(super) fn set_many<'a>(&self, items: impl IntoIterator<Item = (&'a [u8; 32], Known)>) {
        let mut map = self.map.write().expect("id map lock");
        for (id, state) in items {
            map.insert(key(id), encode(state));
        }
    }

    pub(super) fn remove_many<'a>(&self, ids: impl IntoIterator<Item = &'a [u8; 32]>) {
        let mut map = self.map.write().expect("id map lock");
        for id in ids {
            map.remove(&key(id));
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.read().expect("id map lock").len()
    }
}

fn encode(state: Known) -> u64 {
    match state {
        Known::Live(seq) => {
            assert!(seq < TOMB, "seq out of range");
            seq
        }
        Known::Tomb(seq) => {
            assert!(seq < TOMB, "seq out of range");
            seq | TOMB
        }
    }
}

fn decode(v: u64) -> Known {
    if v & TOMB == 0 {
        Known::Live(v)
    } else {
        Known::Tomb(v & !TOMB)
    }
}

#[cfg(test)]
mod tests {
    use super::{IdMap, Known};

    fn id(b: u8) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[0] = b;
        id[31] = b;
        id
    }

    #[test]
    fn remembers_live_ids_and_tombstones_until_removed() {
        let m = IdMap::default();
        assert_eq!(m.get(&id(1)), None);
        m.set_many([(&id(1), Known::Live(7)), (&id(2), Known::Live(8))]);
        assert_eq!(m.get(&id(1)), Some(Known::Live(7)));
        m.set_many([(&id(1), Known::Tomb(7))]);
        assert_eq!(
            m.get_many([&id(1), &id(2), &id(3)]),
            vec![Some(Known::Tomb(7)), Some(Known::Live(8)), None]
        );
        m.remove_many([&id(1)]);
        assert_eq!(m.get(&id(1)), None);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn the_largest_seq_keeps_its_state() {
        let m = IdMap::default();
        let top = (1u64 << 63) - 1;
        m.set_many([(&id(1), Known::Tomb(top)), (&id(2), Known::Live(top))]);
        assert_eq!(m.get(&id(1)), Some(Known::Tomb(top)));
        assert_eq!(m.get(&id(2)), Some(Known::Live(top)));
    }

    #[test]
    fn ids_are_told_apart_by_their_first_16_bytes() {
        let m = IdMap::default();
        let a = id(1);
        let mut b = a;
        b[15] ^= 1;
        m.set_many([(&a, Known::Live(1))]);
        assert_eq!(m.get(&b), None);
        // The last 16 bytes are not part of the key (see the module docs).
        let mut c = a;
        c[16] ^= 1;
        assert_eq!(m.get(&c), Some(Known::Live(1)));
    }
}
