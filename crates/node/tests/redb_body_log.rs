//! The redb backend keeps messages in an append-only log (`storage/body_log.rs`)
//! and commits its index durably only at checkpoints. These tests use tiny
//! segments so that rolling, reclaiming and compaction all happen, and check
//! that every message still reads back intact, also after a reopen and from a
//! crash image taken between checkpoints, and that damage is an error.

use std::path::{Path, PathBuf};

use fio_l2_node::storage::redb_store::RedbStore;
use fio_l2_node::storage::{NewMessage, Order, PutOutcome, Store, StoreError};

const NOW: u32 = 1_800_000_000;
const SEGMENT: u64 = 4096;

fn id(n: u32) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[31] = 0x5a;
    id
}

fn body(n: u32) -> Vec<u8> {
    // ~300 bytes, different per message, so a misplaced read shows.
    format!("body of message {n} ").repeat(15).into_bytes()
}

fn msg(n: u32, recipient: &str, expires: u32) -> NewMessage {
    NewMessage {
        id: id(n),
        recipient: recipient.to_owned(),
        sender: "alice@wallet".to_owned(),
        created: NOW - 10,
        expires,
        binary: body(n),
    }
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("messages.redb")
}

fn open(dir: &Path) -> RedbStore {
    RedbStore::open_with(&db_path(dir), SEGMENT, 10_000).expect("open")
}

fn segments(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("messages.bodies"))
        .expect("bodies dir")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Every message `ns` of `recipient` reads back with its own body.
fn assert_bodies(s: &RedbStore, recipient: &str, ns: &[u32]) {
    let page = s
        .list_inbox(recipient, None, 10_000, Order::OldestFirst, NOW)
        .expect("list");
    let got: Vec<(u32, Vec<u8>)> = page
        .iter()
        .map(|e| {
            (
                u32::from_be_bytes(e.id[..4].try_into().unwrap()),
                e.binary.clone(),
            )
        })
        .collect();
    let got_ns: Vec<u32> = got.iter().map(|(n, _)| *n).collect();
    assert_eq!(got_ns, ns, "which messages {recipient} has");
    for (n, b) in &got {
        assert!(*b == body(*n), "message {n} reads back another body");
    }
    for n in ns {
        assert_eq!(s.get(&id(*n)).unwrap().expect("get").binary, body(*n));
    }
}

#[test]
fn acked_and_expired_segments_are_reclaimed_and_sparse_ones_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // 200 messages of ~340-byte records: about 17 segments of 4 KiB.
    for chunk in (0..200u32).collect::<Vec<_>>().chunks(10) {
        let batch: Vec<NewMessage> = chunk
            .iter()
            .map(|n| {
                let expires = if n % 2 == 0 { NOW + 100 } else { NOW + 10_000 };
                msg(
                    *n,
                    if n % 10 == 0 {
                        "keep@wallet"
                    } else {
                        "bob@wallet"
                    },
                    expires,
                )
            })
            .collect();
        let out = s.put_batch(&batch).unwrap();
        assert!(out.iter().all(|o| matches!(o, PutOutcome::Inserted { .. })));
    }
    let before = segments(dir.path());
    assert!(before.len() > 10, "segments rolled: {before:?}");

    // bob acks every odd message he has; the even ones expire.
    let odd: Vec<[u8; 32]> = (0..200u32).filter(|n| n % 2 == 1).map(id).collect();
    assert!(s.delete("bob@wallet", &odd).unwrap().iter().all(|d| *d));
    let keep: Vec<u32> = (0..200).filter(|n| n % 10 == 0).collect();
    assert_bodies(&s, "keep@wallet", &keep);

    // Purge after the even messages (keep@wallet's included) expired: no
    // record is live, so every closed segment goes.
    s.purge_expired(NOW + 200).unwrap();
    assert_eq!(s.count().unwrap(), 0);
    let after = segments(dir.path());
    assert!(
        after.len() <= 1,
        "only the active segment may stay: {after:?}"
    );
}

#[test]
fn compaction_moves_live_bodies_and_they_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let live: Vec<u32> = (0..300).filter(|n| n % 7 == 0).collect();
    {
        let s = open(dir.path());
        for chunk in (0..300u32).collect::<Vec<_>>().chunks(25) {
            let batch: Vec<NewMessage> = chunk
                .iter()
                .map(|n| msg(*n, "bob@wallet", NOW + 10_000))
                .collect();
            s.put_batch(&batch).unwrap();
        }
        let dead: Vec<[u8; 32]> = (0..300u32).filter(|n| n % 7 != 0).map(id).collect();
        s.delete("bob@wallet", &dead).unwrap();
        let before = segments(dir.path());
        // Each closed segment is now 1/7 live: below the compaction threshold.
        // Several purges, as each compacts a bounded number of segments.
        for _ in 0..10 {
            s.purge_expired(NOW).unwrap();
        }
        let after = segments(dir.path());
        assert!(
            after.len() * 3 < before.len(),
            "compaction shrank {} segments only to {}",
            before.len(),
            after.len()
        );
        assert_bodies(&s, "bob@wallet", &live);
    }
    let s = open(dir.path());
    assert_bodies(&s, "bob@wallet", &live);
    // New writes after a reopen go to a new segment and read back too.
    s.put_batch(&[msg(1000, "bob@wallet", NOW + 10_000)])
        .unwrap();
    let mut all = live.clone();
    all.push(1000);
    assert_bodies(&s, "bob@wallet", &all);
}

#[test]
fn orphan_segments_are_deleted_and_missing_ones_refuse_to_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.put_batch(&[msg(1, "bob@wallet", NOW + 10_000)]).unwrap();
    }
    let bodies = dir.path().join("messages.bodies");
    // A segment no commit points at (a crash between append and commit).
    std::fs::write(bodies.join("00000777.log"), b"torn").unwrap();
    {
        let s = open(dir.path());
        assert_bodies(&s, "bob@wallet", &[1]);
    }
    assert!(!bodies.join("00000777.log").exists(), "orphan deleted");

    for name in segments(dir.path()) {
        std::fs::remove_file(bodies.join(name)).unwrap();
    }
    match RedbStore::open_with(&db_path(dir.path()), SEGMENT, 10_000) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("missing"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened with its bodies gone"),
    }
}

#[test]
fn a_damaged_body_is_corrupt_not_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.put_batch(&[
            msg(1, "bob@wallet", NOW + 10_000),
            msg(2, "eve@wallet", NOW + 10_000),
        ])
        .unwrap();
    }
    let seg = dir
        .path()
        .join("messages.bodies")
        .join(&segments(dir.path())[0]);
    let mut bytes = std::fs::read(&seg).unwrap();
    // Inside the first record's body (its header and addresses are ~80 bytes).
    bytes[150] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let s = open(dir.path());
    assert!(matches!(
        s.list_inbox("bob@wallet", None, 10, Order::OldestFirst, NOW),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(s.get(&id(1)), Err(StoreError::Corrupt(_))));
    assert_bodies(&s, "eve@wallet", &[2]);
}

#[test]
fn a_store_of_the_old_layout_is_refused_with_a_clear_error() {
    use redb::{Database, TableDefinition};
    let dir = tempfile::tempdir().unwrap();
    {
        // Format 1 kept bodies inside `inbox` and had no format marker.
        let db = Database::create(db_path(dir.path())).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let inbox: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
            let mut t = tx.open_table(inbox).unwrap();
            t.insert(("bob@wallet", 1u64), &[7u8; 80][..]).unwrap();
        }
        tx.commit().unwrap();
    }
    match RedbStore::open_with(&db_path(dir.path()), SEGMENT, 10_000) {
        Err(StoreError::Invalid(m)) => assert!(m.contains("format 1"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened an old-layout store"),
    }
    // Format 2 had the time tables keyed by (time, id), format 3 kept ids in
    // a table keyed by id: marked, also refused.
    for format in [2u64, 3] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            s.put_batch(&[msg(1, "bob@wallet", NOW + 10_000)]).unwrap();
        }
        {
            let db = Database::create(db_path(dir.path())).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let meta: TableDefinition<&str, u64> = TableDefinition::new("meta");
                tx.open_table(meta)
                    .unwrap()
                    .insert("format", format)
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        match RedbStore::open_with(&db_path(dir.path()), SEGMENT, 10_000) {
            Err(StoreError::Invalid(m)) => assert!(m.contains(&format!("format {format}")), "{m}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened a format {format} store"),
        }
    }
}

/// Copies the store's files while it is open: what a crash (kill -9, power
/// loss after the log's fdatasync) leaves on disk.
fn crash_image(from: &Path, to: &Path) {
    std::fs::copy(db_path(from), db_path(to)).unwrap();
    let bodies = to.join("messages.bodies");
    std::fs::create_dir_all(&bodies).unwrap();
    for name in segments(from) {
        std::fs::copy(from.join("messages.bodies").join(&name), bodies.join(&name)).unwrap();
    }
}

#[test]
fn messages_committed_between_checkpoints_are_replayed_from_the_log() {
    let live = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    // No checkpoint for a million messages: only the log is durable.
    let s = RedbStore::open_with(&db_path(live.path()), SEGMENT, 1_000_000).unwrap();
    let mut seqs = Vec::new();
    for chunk in (0..120u32).collect::<Vec<_>>().chunks(7) {
        let batch: Vec<NewMessage> = chunk
            .iter()
            .map(|n| msg(*n, "bob@wallet", NOW + 10_000))
            .collect();
        for o in s.put_batch(&batch).unwrap() {
            match o {
                PutOutcome::Inserted { seq } => seqs.push(seq),
                other => panic!("{other:?}"),
            }
        }
    }
    crash_image(live.path(), copy.path());
    drop(s);

    let r = open(copy.path());
    let all: Vec<u32> = (0..120).collect();
    assert_bodies(&r, "bob@wallet", &all);
    let page = r
        .list_inbox("bob@wallet", None, 1000, Order::OldestFirst, NOW)
        .unwrap();
    let got: Vec<u64> = page.iter().map(|e| e.seq).collect();
    assert_eq!(got, seqs, "replay keeps each message's seq");
    // The replayed index dedups and keeps counting seqs past the replayed ones.
    assert_eq!(
        r.put_batch(&[msg(5, "bob@wallet", NOW + 10_000)]).unwrap(),
        vec![PutOutcome::Existing { seq: seqs[5] }]
    );
    match r
        .put_batch(&[msg(500, "bob@wallet", NOW + 10_000)])
        .unwrap()[0]
    {
        PutOutcome::Inserted { seq } => assert!(seq > *seqs.last().unwrap()),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.count().unwrap(), 121);
    let range = r.range(0, u32::MAX, 1000).unwrap();
    assert_eq!(
        range.len(),
        121,
        "replication's (created, id) index is rebuilt too"
    );
}

/// With a checkpoint asked for after every batch, the checkpointer thread runs
/// while batches keep coming: batches answered during a checkpoint wait in
/// memory for their index entries. Nothing is lost or doubled, resends answer
/// Existing, and a crash image taken meanwhile replays to the same set.
#[test]
fn batches_during_background_checkpoints_are_indexed_and_replayable() {
    let live = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let s = RedbStore::open_with(&db_path(live.path()), 1 << 20, 1).unwrap();
    let mut seqs = std::collections::BTreeMap::new();
    let mut acked = Vec::new();
    let mut n = 0u32;
    // Until some batches were deferred (bounded: each checkpoint is an fsync
    // while each batch is another, so they overlap within a few rounds).
    while (s.deferred_batches() < 3 || n < 400) && n < 40_000 {
        let batch: Vec<NewMessage> = (n..n + 20)
            .map(|i| msg(i, "bob@wallet", NOW + 10_000))
            .collect();
        for (m, o) in batch.iter().zip(s.put_batch(&batch).unwrap()) {
            match o {
                PutOutcome::Inserted { seq } => {
                    seqs.insert(u32::from_be_bytes(m.id[..4].try_into().unwrap()), seq);
                }
                other => panic!("{other:?}"),
            }
        }
        // A resend of the previous batch's first message, deferred or not.
        if n > 0 {
            let again = s
                .put_batch(&[msg(n - 20, "bob@wallet", NOW + 10_000)])
                .unwrap();
            assert_eq!(
                again,
                vec![PutOutcome::Existing {
                    seq: seqs[&(n - 20)]
                }]
            );
        }
        s.after_batch().unwrap();
        // Every 10th batch, an ack of its last message right away (it may be
        // waiting for the checkpoint): it must be found, and stay deleted.
        if (n / 20) % 10 == 9 {
            assert_eq!(s.delete("bob@wallet", &[id(n + 19)]).unwrap(), vec![true]);
            seqs.remove(&(n + 19));
            acked.push(n + 19);
        }
        n += 20;
    }
    assert!(
        s.deferred_batches() >= 3,
        "no batch met a running checkpoint"
    );
    crash_image(live.path(), copy.path());
    drop(s);
    assert!(!acked.is_empty());
    let want: Vec<u64> = seqs.values().copied().collect();
    for dir in [live.path(), copy.path()] {
        let r = RedbStore::open_with(&db_path(dir), 1 << 20, 10_000).unwrap();
        let page = r
            .list_inbox("bob@wallet", None, 100_000, Order::OldestFirst, NOW)
            .unwrap();
        let got: Vec<u64> = page.iter().map(|e| e.seq).collect();
        assert_eq!(got, want, "every message once, with its seq");
        assert_eq!(r.count().unwrap(), seqs.len() as u64);
        for a in &acked {
            let again = r.put_batch(&[msg(*a, "bob@wallet", NOW + 10_000)]).unwrap();
            assert_eq!(again, vec![PutOutcome::Deleted], "acked {a} stays deleted");
        }
    }
}
