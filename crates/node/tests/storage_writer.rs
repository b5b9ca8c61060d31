//! The group-commit writer over a real store.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use fio_l2_node::storage::{
    open, Backend, IdState, NewMessage, Order, PutOutcome, Store, StoreError, StoredEntry,
};
use fio_l2_node::writer::{GroupCommitWriter, PendingWrite, WriteError, WriterHandle};

const NOW: u32 = 1_800_000_000;

fn msg(n: u32) -> NewMessage {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    NewMessage {
        id,
        recipient: format!("r{}@wallet", n % 7),
        sender: "alice@wallet".into(),
        created: NOW,
        expires: NOW + 3600,
        binary: vec![n as u8; 300],
    }
}

/// Wraps a store; each `put_batch` first waits until the gate is open. Lets a
/// test hold the writer inside a commit, as a slow fsync would.
struct Gated {
    inner: Arc<dyn Store>,
    open: Mutex<bool>,
    cv: Condvar,
    fail: Mutex<bool>,
}

impl Gated {
    fn new(inner: Arc<dyn Store>, open: bool) -> Arc<Self> {
        Arc::new(Gated {
            inner,
            open: Mutex::new(open),
            cv: Condvar::new(),
            fail: Mutex::new(false),
        })
    }
    fn set_open(&self, v: bool) {
        *self.open.lock().unwrap() = v;
        self.cv.notify_all();
    }
}

impl Store for Gated {
    fn put_batch(&self, msgs: &[NewMessage]) -> Result<Vec<PutOutcome>, StoreError> {
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
        drop(g);
        if *self.fail.lock().unwrap() {
            return Err(StoreError::Backend("disk on fire".into()));
        }
        self.inner.put_batch(msgs)
    }
    fn lookup(&self, id: &[u8; 32]) -> Result<Option<IdState>, StoreError> {
        self.inner.lookup(id)
    }
    fn get(&self, id: &[u8; 32]) -> Result<Option<StoredEntry>, StoreError> {
        self.inner.get(id)
    }
    fn list_inbox(
        &self,
        r: &str,
        c: Option<u64>,
        l: usize,
        o: Order,
        now: u32,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.inner.list_inbox(r, c, l, o, now)
    }
    fn delete(&self, r: &str, ids: &[[u8; 32]]) -> Result<Vec<bool>, StoreError> {
        self.inner.delete(r, ids)
    }
    fn purge_expired(&self, now: u32) -> Result<u64, StoreError> {
        self.inner.purge_expired(now)
    }
    fn count(&self) -> Result<u64, StoreError> {
        self.inner.count()
    }
    fn range(&self, f: u32, t: u32, l: usize) -> Result<Vec<(u32, [u8; 32], bool)>, StoreError> {
        self.inner.range(f, t, l)
    }
    fn backend_name(&self) -> &'static str {
        "gated"
    }
}

async fn many_submitters(backend: Backend, dir: &Path) {
    let store = open(backend, dir).unwrap();
    // Closed until every submitter has queued: the first commit then holds
    // one message and the rest must come in few, large batches.
    let gated = Gated::new(store.clone(), false);
    let handle = GroupCommitWriter::spawn(gated.clone(), 256, 64).unwrap();
    let mut tasks = Vec::new();
    for n in 0..200u32 {
        let h = handle.clone();
        // Ids 0..190 plus 10 repeats: duplicates answer Existing.
        let m = msg(n % 190);
        tasks.push(tokio::spawn(async move { (n, h.submit(m).await) }));
    }
    // Wait until all 200 are either queued or being committed.
    for _ in 0..500 {
        if handle.queue_free() <= 256 - 199 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gated.set_open(true);
    let mut inserted = 0;
    let mut existing = 0;
    for t in tasks {
        let (n, r) = t.await.unwrap();
        match r {
            Ok(PutOutcome::Inserted { .. }) => inserted += 1,
            Ok(PutOutcome::Existing { .. }) => existing += 1,
            other => panic!("submitter {n}: {other:?}"),
        }
    }
    assert_eq!((inserted, existing), (190, 10));
    let st = handle.stats();
    assert_eq!(st.messages, 200);
    assert!(
        st.batches <= 6,
        "200 queued messages with max_batch 64 took {} commits",
        st.batches
    );
    assert!(st.largest_batch > 1 && st.largest_batch <= 64, "{st:?}");
    assert_eq!(st.failed_batches, 0);
    assert_eq!(store.count().unwrap(), 190);
    for n in 0..190 {
        assert!(store.get(&msg(n).id).unwrap().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_submitters_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    many_submitters(Backend::Sqlite, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_submitters_redb() {
    let dir = tempfile::tempdir().unwrap();
    many_submitters(Backend::Redb, dir.path()).await;
}

/// Without a gate, on a real fsync, concurrent submitters still share commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungated_concurrent_submitters_form_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(Backend::Sqlite, dir.path()).unwrap();
    let handle = GroupCommitWriter::spawn(store.clone(), 1024, 256).unwrap();
    let tasks: Vec<_> = (0..200u32)
        .map(|n| {
            let h = handle.clone();
            tokio::spawn(async move { h.submit(msg(n)).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Ok(PutOutcome::Inserted { .. })));
    }
    let st = handle.stats();
    assert_eq!(st.messages, 200);
    assert!(st.batches < 200, "no batch formed: {st:?}");
    assert_eq!(store.count().unwrap(), 200);
}

/// A redb store behind a closed gate, a writer with room for `queue`
/// messages, and message 0 already taken into the (blocked) first commit.
async fn writer_with_blocked_commit(
    dir: &Path,
    queue: usize,
    max_batch: usize,
) -> (Arc<dyn Store>, Arc<Gated>, WriterHandle, PendingWrite) {
    let store = open(Backend::Redb, dir).unwrap();
    let gated = Gated::new(store.clone(), false);
    let handle = GroupCommitWriter::spawn(gated.clone(), queue, max_batch).unwrap();
    let first = handle.try_submit(msg(0)).unwrap();
    for _ in 0..500 {
        if handle.queue_free() == queue {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (store, gated, handle, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_saturated_not_unbounded() {
    let dir = tempfile::tempdir().unwrap();
    // The first message is taken into a (blocked) commit; then 4 fill the queue.
    let (store, gated, handle, first) = writer_with_blocked_commit(dir.path(), 4, 8).await;
    let mut pending = vec![first];
    for n in 1..=4 {
        pending.push(handle.try_submit(msg(n)).unwrap());
    }
    assert_eq!(handle.queue_free(), 0);
    assert_eq!(
        handle.try_submit(msg(99)).err(),
        Some(WriteError::Saturated)
    );
    gated.set_open(true);
    for p in pending {
        assert!(matches!(p.await, Ok(PutOutcome::Inserted { .. })));
    }
    assert_eq!(store.count().unwrap(), 5);
    // Room again.
    assert!(matches!(
        handle.try_submit(msg(99)).unwrap().await,
        Ok(PutOutcome::Inserted { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failure_answers_every_submitter() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(Backend::Sqlite, dir.path()).unwrap();
    let gated = Gated::new(store.clone(), true);
    *gated.fail.lock().unwrap() = true;
    let handle = GroupCommitWriter::spawn(gated.clone(), 16, 16).unwrap();
    let a = handle.try_submit(msg(1)).unwrap();
    let b = handle.try_submit(msg(2)).unwrap();
    assert!(matches!(a.await, Err(WriteError::Store(_))));
    assert!(matches!(b.await, Err(WriteError::Store(_))));
    assert!(handle.stats().failed_batches >= 1);
    *gated.fail.lock().unwrap() = false;
    assert!(matches!(
        handle.submit(msg(3)).await,
        Ok(PutOutcome::Inserted { .. })
    ));
    assert_eq!(store.count().unwrap(), 1);
}

/// A submission of many messages is committed whole, in one batch, with
/// one outcome per message in order; it is refused whole when the queue
/// lacks room for all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_committed_whole_or_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    // A lone message goes into a (blocked) commit of its own.
    let (store, gated, handle, first) = writer_with_blocked_commit(dir.path(), 8, 64).await;
    // Then a group of 5 (one repeated: Existing) waits whole.
    let group: Vec<_> = [1, 2, 3, 1, 4].into_iter().map(msg).collect();
    let pending = handle.try_submit_many(group).unwrap();
    assert_eq!(handle.queue_free(), 3);
    // 4 more do not fit in the 3 places left: refused, nothing queued.
    let too_many: Vec<_> = (10..14).map(msg).collect();
    assert_eq!(
        handle.try_submit_many(too_many).err(),
        Some(WriteError::Saturated)
    );
    assert_eq!(handle.queue_free(), 3);
    gated.set_open(true);
    assert!(matches!(first.await, Ok(PutOutcome::Inserted { .. })));
    let outcomes = pending.await.unwrap();
    assert_eq!(outcomes.len(), 5);
    let inserted: Vec<bool> = outcomes
        .iter()
        .map(|o| matches!(o, PutOutcome::Inserted { .. }))
        .collect();
    assert_eq!(inserted, [true, true, true, false, true]);
    assert!(matches!(outcomes[3], PutOutcome::Existing { .. }));
    let st = handle.stats();
    assert_eq!((st.batches, st.messages, st.largest_batch), (2, 6, 5));
    assert_eq!(store.count().unwrap(), 5);
}
