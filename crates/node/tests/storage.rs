//! Behavioural tests of the message store, written once over `Arc<dyn Store>`
//! and run for every backend (see the `backend_tests!` invocations at the end).

use std::path::Path;
use std::sync::Arc;

use fio_l2_node::storage::{
    open, Backend, IdState, NewMessage, Order, PutOutcome, Store, StoreError,
};

const NOW: u32 = 1_800_000_000;
const LATER: u32 = NOW + 86_400;

fn id(n: u32) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[31] = 0xa5;
    id
}

fn msg(n: u32, recipient: &str, created: u32, expires: u32) -> NewMessage {
    NewMessage {
        id: id(n),
        recipient: recipient.to_owned(),
        sender: "alice@wallet".to_owned(),
        created,
        expires,
        binary: format!("binary of message {n}").into_bytes(),
    }
}

fn put1(s: &dyn Store, m: NewMessage) -> PutOutcome {
    let out = s.put_batch(&[m]).expect("put");
    assert_eq!(out.len(), 1);
    out[0]
}

fn inserted(o: PutOutcome) -> u64 {
    match o {
        PutOutcome::Inserted { seq } => seq,
        other => panic!("expected Inserted, got {other:?}"),
    }
}

fn seqs(s: &dyn Store, r: &str, cursor: Option<u64>, limit: usize, order: Order) -> Vec<u64> {
    s.list_inbox(r, cursor, limit, order, NOW)
        .expect("list")
        .iter()
        .map(|e| e.seq)
        .collect()
}

/// Reads a whole inbox page by page, adding messages (to this inbox and
/// another) between pages: the pages must neither skip nor repeat.
fn page_through(s: &dyn Store, order: Order, next_n: &mut u32) -> Vec<u64> {
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let page = seqs(s, "bob@wallet", cursor, 3, order);
        if page.is_empty() {
            return seen;
        }
        cursor = page.last().copied();
        let full = page.len() == 3;
        seen.extend(page);
        if !full {
            // Caught up; stop the arrivals so the reader can finish.
            continue;
        }
        for r in ["bob@wallet", "carol@wallet"] {
            *next_n += 1;
            put1(s, msg(*next_n, r, NOW, LATER));
        }
        if seen.len() > 1000 {
            panic!("paging does not end");
        }
    }
}

pub fn idempotent_put(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let m = msg(1, "bob@wallet", NOW, LATER);
    let seq = inserted(put1(&*s, m.clone()));
    assert_eq!(put1(&*s, m.clone()), PutOutcome::Existing { seq });
    assert_eq!(s.count().unwrap(), 1);
    assert_eq!(s.lookup(&m.id).unwrap(), Some(IdState::Stored { seq }));
    assert_eq!(s.lookup(&id(99)).unwrap(), None);
    let got = s.get(&m.id).unwrap().expect("stored");
    assert_eq!(got.seq, seq);
    assert_eq!(got.id, m.id);
    assert_eq!(got.recipient, m.recipient);
    assert_eq!(got.sender, m.sender);
    assert_eq!((got.created, got.expires), (m.created, m.expires));
    assert_eq!(got.binary, m.binary);
    assert_eq!(s.get(&id(99)).unwrap(), None);
}

pub fn duplicates_within_a_batch(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let a = msg(1, "bob@wallet", NOW, LATER);
    let b = msg(2, "bob@wallet", NOW, LATER);
    let out = s.put_batch(&[a.clone(), b, a]).unwrap();
    let seq_a = inserted(out[0]);
    let seq_b = inserted(out[1]);
    assert!(seq_b > seq_a);
    assert_eq!(out[2], PutOutcome::Existing { seq: seq_a });
    assert_eq!(s.count().unwrap(), 2);
    assert_eq!(s.put_batch(&[]).unwrap(), vec![]);
}

pub fn tombstone_refuses_reput(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let m = msg(1, "bob@wallet", NOW, LATER);
    inserted(put1(&*s, m.clone()));
    assert_eq!(s.delete("bob@wallet", &[m.id]).unwrap(), vec![true]);
    assert_eq!(s.count().unwrap(), 0);
    assert_eq!(s.get(&m.id).unwrap(), None);
    assert_eq!(
        s.lookup(&m.id).unwrap(),
        Some(IdState::Deleted { expires: LATER })
    );
    assert_eq!(put1(&*s, m.clone()), PutOutcome::Deleted);
    // Also inside a batch with a new message, which is still stored.
    let out = s
        .put_batch(&[m.clone(), msg(2, "bob@wallet", NOW, LATER)])
        .unwrap();
    assert_eq!(out[0], PutOutcome::Deleted);
    inserted(out[1]);
    assert_eq!(s.count().unwrap(), 1);
    // Deleting again is a no-op.
    assert_eq!(s.delete("bob@wallet", &[m.id]).unwrap(), vec![false]);
}

pub fn delete_only_the_recipients_ids(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    put1(&*s, msg(1, "bob@wallet", NOW, LATER));
    put1(&*s, msg(2, "carol@wallet", NOW, LATER));
    let res = s.delete("bob@wallet", &[id(1), id(2), id(3)]).unwrap();
    assert_eq!(res, vec![true, false, false]);
    assert!(s.get(&id(2)).unwrap().is_some(), "carol's message stays");
    assert!(matches!(
        s.lookup(&id(2)).unwrap(),
        Some(IdState::Stored { .. })
    ));
    assert_eq!(
        s.lookup(&id(3)).unwrap(),
        None,
        "no tombstone for unknown ids"
    );
    assert_eq!(s.count().unwrap(), 1);
    assert_eq!(s.delete("carol@wallet", &[id(2)]).unwrap(), vec![true]);
    assert_eq!(s.count().unwrap(), 0);
}

pub fn paging_is_stable_while_messages_arrive(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut n = 0;
    let mut bob = Vec::new();
    for i in 0..10 {
        n += 1;
        let r = if i % 3 == 0 {
            "carol@wallet"
        } else {
            "bob@wallet"
        };
        let seq = inserted(put1(&*s, msg(n, r, NOW, LATER)));
        if r == "bob@wallet" {
            bob.push(seq);
        }
    }
    let before = bob.clone();

    // Oldest first: every message in order, and the new arrivals at the end.
    let seen = page_through(&*s, Order::OldestFirst, &mut n);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(&seen[..before.len()], &before[..]);
    // It ends only when the arrivals stop outpacing it: here pages of 3 vs 1
    // new bob message per page, so it catches up.
    let all_bob = seqs(&*s, "bob@wallet", None, 1000, Order::OldestFirst);
    assert_eq!(seen, all_bob);

    // Newest first from a snapshot of the top: exactly the older ones, once each.
    let top = seqs(&*s, "bob@wallet", None, 3, Order::NewestFirst);
    assert_eq!(top.len(), 3);
    let mut seen = top.clone();
    let rest_start = top.last().copied();
    let mut cursor = rest_start;
    loop {
        let page = seqs(&*s, "bob@wallet", cursor, 3, Order::NewestFirst);
        if page.is_empty() {
            break;
        }
        cursor = page.last().copied();
        seen.extend(page);
        n += 1;
        put1(&*s, msg(n, "bob@wallet", NOW, LATER));
    }
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
    let mut expect = all_bob.clone();
    expect.reverse();
    assert_eq!(seen, expect);

    // Limits and cursors at the edges.
    assert!(seqs(&*s, "bob@wallet", None, 0, Order::OldestFirst).is_empty());
    assert!(seqs(&*s, "bob@wallet", Some(0), 5, Order::NewestFirst).is_empty());
    assert!(seqs(&*s, "bob@wallet", Some(u64::MAX), 5, Order::OldestFirst).is_empty());
    assert!(seqs(&*s, "nobody@wallet", None, 5, Order::OldestFirst).is_empty());
    // A recipient whose name is a prefix of another's sees only its own.
    put1(&*s, msg(5000, "bob@wallet2", NOW, LATER));
    assert!(s
        .list_inbox("bob@wallet", None, 1000, Order::OldestFirst, NOW)
        .unwrap()
        .iter()
        .all(|e| e.recipient == "bob@wallet"));
}

pub fn expired_are_skipped_and_purged(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let soon = NOW + 10;
    put1(&*s, msg(1, "bob@wallet", NOW, soon));
    let keep = inserted(put1(&*s, msg(2, "bob@wallet", NOW, LATER)));
    put1(&*s, msg(3, "bob@wallet", NOW, soon));
    // A tombstone that expires soon, and one that lasts.
    put1(&*s, msg(4, "bob@wallet", NOW, soon));
    put1(&*s, msg(5, "bob@wallet", NOW, LATER));
    assert_eq!(
        s.delete("bob@wallet", &[id(4), id(5)]).unwrap(),
        vec![true, true]
    );

    assert_eq!(
        s.list_inbox("bob@wallet", None, 10, Order::OldestFirst, NOW)
            .unwrap()
            .len(),
        3
    );
    // At `soon`, the short-lived ones are expired (expires <= now) though stored.
    for order in [Order::OldestFirst, Order::NewestFirst] {
        let page = s.list_inbox("bob@wallet", None, 10, order, soon).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![keep]);
    }
    // The limit counts unexpired messages only.
    let page = s
        .list_inbox("bob@wallet", None, 1, Order::OldestFirst, soon)
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].seq, keep);
    assert_eq!(s.count().unwrap(), 3);

    assert_eq!(s.purge_expired(soon - 1).unwrap(), 0);
    // Two messages and one tombstone.
    assert_eq!(s.purge_expired(soon).unwrap(), 3);
    assert_eq!(s.count().unwrap(), 1);
    assert_eq!(s.get(&id(1)).unwrap(), None);
    assert_eq!(s.lookup(&id(3)).unwrap(), None);
    assert_eq!(s.lookup(&id(4)).unwrap(), None, "expired tombstone is gone");
    assert!(matches!(
        s.lookup(&id(5)).unwrap(),
        Some(IdState::Deleted { .. })
    ));
    assert_eq!(s.purge_expired(soon).unwrap(), 0);
    assert!(s.range(0, u32::MAX, 100).unwrap().len() == 2);
    // Once its tombstone is gone, an id may be stored again (admission refuses
    // expired messages anyway; this one is a fresh copy).
    inserted(put1(&*s, msg(4, "bob@wallet", soon, LATER)));
}

pub fn purge_many(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    // More than one redb purge chunk (10,000).
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let batch: Vec<NewMessage> = (0..12_500)
        .map(|n| msg(n, &format!("r{}@wallet", n % 17), NOW, NOW + 1 + n % 2))
        .collect();
    s.put_batch(&batch).unwrap();
    assert_eq!(s.count().unwrap(), 12_500);
    assert_eq!(s.purge_expired(NOW + 1).unwrap(), 6_250);
    assert_eq!(s.count().unwrap(), 6_250);
    assert_eq!(s.purge_expired(NOW + 2).unwrap(), 6_250);
    assert_eq!(s.count().unwrap(), 0);
    assert!(s.range(0, u32::MAX, 10).unwrap().is_empty());
}

pub fn count_and_range(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert_eq!(s.count().unwrap(), 0);
    // created values out of insertion order; ids out of order within a created.
    let spec = [(7, 200), (3, 100), (9, 100), (1, 300), (5, 150), (2, 100)];
    for (n, created) in spec {
        put1(&*s, msg(n, "bob@wallet", created, LATER));
    }
    assert_eq!(s.count().unwrap(), 6);
    s.delete("bob@wallet", &[id(9)]).unwrap();
    assert_eq!(s.count().unwrap(), 5);

    let all = s.range(0, u32::MAX, 100).unwrap();
    let expect = vec![
        (100, id(2), false),
        (100, id(3), false),
        (100, id(9), true),
        (150, id(5), false),
        (200, id(7), false),
        (300, id(1), false),
    ];
    assert_eq!(all, expect);
    // [from, to): 300 excluded, 100 included.
    assert_eq!(s.range(100, 300, 100).unwrap(), expect[..5].to_vec());
    assert_eq!(s.range(101, 300, 100).unwrap(), expect[3..5].to_vec());
    assert_eq!(s.range(0, u32::MAX, 2).unwrap(), expect[..2].to_vec());
    assert!(s.range(0, u32::MAX, 0).unwrap().is_empty());
    assert!(s.range(300, 300, 10).unwrap().is_empty());
    assert!(s.range(400, 100, 10).unwrap().is_empty());
}

pub fn reopen_keeps_everything(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let (last_seq, kept_seq);
    {
        let s = open(dir.path());
        kept_seq = inserted(put1(&*s, msg(1, "bob@wallet", 100, LATER)));
        put1(&*s, msg(2, "bob@wallet", 101, LATER));
        last_seq = inserted(put1(&*s, msg(3, "carol@wallet", 102, LATER)));
        // Delete the newest: its seq must still not be reused.
        s.delete("carol@wallet", &[id(3)]).unwrap();
        s.delete("bob@wallet", &[id(2)]).unwrap();
    }
    let s = open(dir.path());
    assert_eq!(s.count().unwrap(), 1);
    assert_eq!(s.get(&id(1)).unwrap().unwrap().seq, kept_seq);
    assert_eq!(
        put1(&*s, msg(2, "bob@wallet", 101, LATER)),
        PutOutcome::Deleted
    );
    assert_eq!(
        put1(&*s, msg(3, "carol@wallet", 102, LATER)),
        PutOutcome::Deleted
    );
    assert_eq!(
        put1(&*s, msg(1, "bob@wallet", 100, LATER)),
        PutOutcome::Existing { seq: kept_seq }
    );
    let new_seq = inserted(put1(&*s, msg(4, "bob@wallet", 103, LATER)));
    assert!(new_seq > last_seq, "{new_seq} > {last_seq}");
    assert_eq!(
        seqs(&*s, "bob@wallet", None, 10, Order::OldestFirst),
        vec![kept_seq, new_seq]
    );
    assert_eq!(s.range(0, u32::MAX, 10).unwrap().len(), 4);
    drop(s);
    // And once more, after only a purge of everything.
    let s = open(dir.path());
    assert_eq!(s.purge_expired(LATER).unwrap(), 4);
    // Purged ids are forgotten at once, tombstones too.
    for n in 1..=4 {
        assert_eq!(s.lookup(&id(n)).unwrap(), None, "id {n}");
    }
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.count().unwrap(), 0);
    assert!(inserted(put1(&*s, msg(5, "bob@wallet", 104, LATER))) > new_seq);
}

/// Peers' tombstones: for a stored message, and for ids never stored here
/// (which take seqs of their own in the redb backend). They refuse a re-put,
/// survive a reopen, never share a seq with a later message, show in `range`
/// and go with the purge.
pub fn peer_tombstones_persist_and_purge(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let s = open(dir.path());
        let first = inserted(put1(&*s, msg(1, "bob@wallet", 100, LATER)));
        let items = [
            (id(1), 100, LATER),
            (id(2), 100, LATER),
            (id(3), 90, NOW + 5),
        ];
        assert_eq!(
            s.put_tombstones("bob@wallet", &items).unwrap(),
            vec![true; 3]
        );
        first
    };
    let s = open(dir.path());
    assert_eq!(s.count().unwrap(), 0);
    for n in 1..=3 {
        assert_eq!(
            put1(&*s, msg(n, "bob@wallet", 100, LATER)),
            PutOutcome::Deleted,
            "id {n}"
        );
    }
    let later = inserted(put1(&*s, msg(4, "bob@wallet", 100, LATER)));
    assert!(later > first);
    assert_eq!(
        s.range(0, u32::MAX, 10).unwrap(),
        vec![
            (90, id(3), true),
            (100, id(1), true),
            (100, id(2), true),
            (100, id(4), false),
        ]
    );
    assert_eq!(s.purge_expired(NOW + 5).unwrap(), 1);
    assert_eq!(s.range(0, u32::MAX, 10).unwrap().len(), 3);
    assert_eq!(s.purge_expired(LATER).unwrap(), 3);
    assert!(s.range(0, u32::MAX, 10).unwrap().is_empty());
    assert!(s.lookup(&id(2)).unwrap().is_none());
}

pub fn concurrent_readers_and_writers(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    std::thread::scope(|sc| {
        for t in 0..4u32 {
            let s = s.clone();
            sc.spawn(move || {
                for i in 0..25u32 {
                    let n = t * 1000 + i;
                    inserted(put1(&*s, msg(n, "bob@wallet", NOW, LATER)));
                    let page = s
                        .list_inbox("bob@wallet", None, 5, Order::NewestFirst, NOW)
                        .unwrap();
                    assert!(!page.is_empty());
                    assert!(s.lookup(&id(n)).unwrap().is_some());
                }
            });
        }
    });
    assert_eq!(s.count().unwrap(), 100);
    let all = seqs(&*s, "bob@wallet", None, 1000, Order::OldestFirst);
    assert_eq!(all.len(), 100);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
}

pub fn rejects_oversized_addresses(open: &dyn Fn(&Path) -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut m = msg(1, "bob@wallet", NOW, LATER);
    m.sender = "x".repeat(300);
    assert!(matches!(s.put_batch(&[m]), Err(StoreError::Invalid(_))));
    assert_eq!(s.count().unwrap(), 0);
}

macro_rules! backend_tests {
    ($modname:ident, $backend:expr) => {
        mod $modname {
            use super::*;

            fn opener(dir: &Path) -> Arc<dyn Store> {
                open($backend, dir).expect("open store")
            }

            #[test]
            fn idempotent_put() {
                super::idempotent_put(&opener);
            }
            #[test]
            fn duplicates_within_a_batch() {
                super::duplicates_within_a_batch(&opener);
            }
            #[test]
            fn tombstone_refuses_reput() {
                super::tombstone_refuses_reput(&opener);
            }
            #[test]
            fn delete_only_the_recipients_ids() {
                super::delete_only_the_recipients_ids(&opener);
            }
            #[test]
            fn paging_is_stable_while_messages_arrive() {
                super::paging_is_stable_while_messages_arrive(&opener);
            }
            #[test]
            fn expired_are_skipped_and_purged() {
                super::expired_are_skipped_and_purged(&opener);
            }
            #[test]
            fn purge_many() {
                super::purge_many(&opener);
            }
            #[test]
            fn count_and_range() {
                super::count_and_range(&opener);
            }
            #[test]
            fn reopen_keeps_everything() {
                super::reopen_keeps_everything(&opener);
            }
            #[test]
            fn peer_tombstones_persist_and_purge() {
                super::peer_tombstones_persist_and_purge(&opener);
            }
            #[test]
            fn concurrent_readers_and_writers() {
                super::concurrent_readers_and_writers(&opener);
            }
            #[test]
            fn rejects_oversized_addresses() {
                super::rejects_oversized_addresses(&opener);
            }
        }
    };
}

backend_tests!(sqlite_backend, Backend::Sqlite);
backend_tests!(redb_backend, Backend::Redb);

#[test]
fn default_backend_opens() {
    let dir = tempfile::tempdir().unwrap();
    let s = fio_l2_node::storage::open_default(dir.path()).unwrap();
    assert_eq!(
        s.backend_name(),
        fio_l2_node::storage::DEFAULT_BACKEND.name()
    );
    assert_eq!(s.count().unwrap(), 0);
}

#[test]
fn backend_names_parse() {
    for b in Backend::ALL {
        assert_eq!(b.name().parse::<Backend>().unwrap(), b);
    }
    assert!("leveldb".parse::<Backend>().is_err());
}

/// Bad bytes on disk come back as `StoreError::Corrupt`, never a panic.
#[test]
fn sqlite_corrupt_rows_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(Backend::Sqlite, dir.path()).unwrap();
    put1(&*s, msg(1, "bob@wallet", NOW, LATER));
    drop(s);
    let conn = rusqlite::Connection::open(dir.path().join(Backend::Sqlite.file_name())).unwrap();
    conn.execute(
        "INSERT INTO messages (seq, id, recipient, sender, created, expires, body)
         VALUES (50, x'0102', 'bob@wallet', 'a@b', -5, ?1, x'00')",
        [i64::from(LATER)],
    )
    .unwrap();
    conn.execute("INSERT INTO tombstones VALUES (?1, 1, -1)", [&id(7)[..]])
        .unwrap();
    drop(conn);
    let s = open(Backend::Sqlite, dir.path()).unwrap();
    assert!(matches!(
        s.list_inbox("bob@wallet", None, 10, Order::OldestFirst, NOW),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(s.lookup(&id(7)), Err(StoreError::Corrupt(_))));
    assert!(s.get(&id(1)).unwrap().is_some(), "good rows still read");
}

#[test]
fn redb_corrupt_records_are_errors() {
    use redb::{Database, TableDefinition};
    let by_seq: TableDefinition<u64, &[u8]> = TableDefinition::new("id_by_seq");
    let inbox: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
    let dir = tempfile::tempdir().unwrap();
    let s = open(Backend::Redb, dir.path()).unwrap();
    put1(&*s, msg(1, "bob@wallet", NOW, LATER));
    drop(s);
    let db_file = dir.path().join(Backend::Redb.file_name());
    {
        // id 8: a well-formed id record whose inbox entry is garbage.
        let db = Database::create(&db_file).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut rec = id(8).to_vec();
            rec.push(0); // live
            rec.extend_from_slice(&NOW.to_le_bytes());
            rec.extend_from_slice(&LATER.to_le_bytes());
            rec.extend_from_slice(b"eve@wallet");
            tx.open_table(by_seq)
                .unwrap()
                .insert(1000u64, rec.as_slice())
                .unwrap();
            tx.open_table(inbox)
                .unwrap()
                .insert(("eve@wallet", 1000u64), &[1u8; 10][..])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let s = open(Backend::Redb, dir.path()).unwrap();
    assert!(matches!(s.get(&id(8)), Err(StoreError::Corrupt(_))));
    assert!(matches!(
        s.list_inbox("eve@wallet", None, 10, Order::OldestFirst, NOW),
        Err(StoreError::Corrupt(_))
    ));
    assert!(s.get(&id(1)).unwrap().is_some(), "good records still read");
    drop(s);
    {
        // An id record too short to name its id: the id index cannot be
        // built, and the store says so instead of opening without it.
        let db = Database::create(&db_file).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(by_seq)
            .unwrap()
            .insert(1001u64, &[0u8, 1, 2][..])
            .unwrap();
        tx.commit().unwrap();
    }
    assert!(matches!(
        open(Backend::Redb, dir.path()),
        Err(StoreError::Corrupt(_))
    ));
}
