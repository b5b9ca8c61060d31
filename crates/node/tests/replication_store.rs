//! `Store::put_tombstones` (replicated deletions) on both backends.

use fio_l2_node::storage::{self, Backend, IdState, NewMessage, PutOutcome, Store};
use std::sync::Arc;

fn id(n: u32) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b[31] = 7;
    b
}

fn msg(n: u32, recipient: &str) -> NewMessage {
    NewMessage {
        id: id(n),
        recipient: recipient.into(),
        sender: "alice@dev".into(),
        created: 1000 + n,
        expires: 5000 + n,
        binary: vec![n as u8; 10],
    }
}

fn check(s: Arc<dyn Store>) {
    assert!(matches!(
        s.put_batch(&[msg(1, "bob@dev"), msg(2, "carol@dev")])
            .unwrap()[..],
        [PutOutcome::Inserted { .. }, PutOutcome::Inserted { .. }]
    ));
    // 1: stored for bob -> deleted; 2: carol's -> refused; 3: unknown -> tombstone.
    let out = s
        .put_tombstones(
            "bob@dev",
            &[(id(1), 1, 2), (id(2), 1, 2), (id(3), 1003, 9003)],
        )
        .unwrap();
    assert_eq!(out, vec![true, false, true]);
    assert_eq!(
        s.lookup(&id(1)).unwrap(),
        Some(IdState::Deleted { expires: 5001 })
    );
    assert!(matches!(
        s.lookup(&id(2)).unwrap(),
        Some(IdState::Stored { .. })
    ));
    assert_eq!(
        s.lookup(&id(3)).unwrap(),
        Some(IdState::Deleted { expires: 9003 })
    );
    assert_eq!(s.count().unwrap(), 1);
    // The stored created is kept for 1, the given one used for 3.
    let r = s.range(0, u32::MAX, 10).unwrap();
    assert!(r.contains(&(1001, id(1), true)), "{r:?}");
    assert!(r.contains(&(1002, id(2), false)), "{r:?}");
    assert!(r.contains(&(1003, id(3), true)), "{r:?}");
    // Re-applying is idempotent; a tombstoned id is refused on put.
    assert_eq!(
        s.put_tombstones("bob@dev", &[(id(3), 1, 2)]).unwrap(),
        vec![true]
    );
    assert_eq!(
        s.put_batch(&[msg(3, "bob@dev")]).unwrap(),
        vec![PutOutcome::Deleted]
    );
    // Tombstones expire with the purge.
    assert_eq!(s.purge_expired(6000).unwrap(), 2);
    assert_eq!(s.lookup(&id(1)).unwrap(), None);
    assert_eq!(s.purge_expired(9003).unwrap(), 1);
    assert_eq!(s.lookup(&id(3)).unwrap(), None);
    assert!(s.range(0, u32::MAX, 10).unwrap().is_empty());
}

#[test]
fn put_tombstones_sqlite() {
    let d = tempfile::tempdir().unwrap();
    check(storage::open(Backend::Sqlite, d.path()).unwrap());
}

#[test]
fn put_tombstones_redb() {
    let d = tempfile::tempdir().unwrap();
    check(storage::open(Backend::Redb, d.path()).unwrap());
}
