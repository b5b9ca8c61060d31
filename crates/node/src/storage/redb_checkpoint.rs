//! Background checkpoints for the redb backend (see `redb_store`'s module docs).
//!
//! A checkpoint is a durable redb commit. It writes and fsyncs every index page
//! dirtied since the last one, which takes tens to hundreds of milliseconds.
//! On the writer's path that stall reached every message queued behind it, and
//! it was the legitimate senders' p99 in the spam benchmark. So a checkpointer
//! thread makes it, and `put_batch` does not wait for it:
//! - the checkpointer sets `checkpointing`, takes the `gate` (so no index
//!   commit of `put_batch` is half done), commits durably, then indexes what
//!   was deferred meanwhile, clears the flag and lets go of the gate;
//! - meanwhile `put_batch` still dedups, appends to the log, syncs and
//!   answers, but keeps its index entries in `deferred` instead of committing
//!   them. Reads do not see those messages until the checkpoint is over
//!   (`lookup` does, for dedup: the id map has them).
//!
//! Lock order: `put_batch` takes `state` then `gate`, and only when
//! `checkpointing` is false. The checkpointer takes `state` while it holds the
//! `gate` only while `checkpointing` is true, so the two cannot wait on each
//! other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use redb::{Database, Durability};

use super::body_log::{LogPos, RecordMeta};
use super::StoreError;

#[derive(Default)]
pub(super) struct IndexState {
    pub checkpointing: bool,
    /// Index entries waiting for the checkpoint to end (their ids are in the
    /// store's id map already, for dedup).
    pub deferred: Vec<RecordMeta>,
    /// The log end after the last deferred append.
    pub end: LogPos,
}

#[derive(Default)]
pub(super) struct Shared {
    /// Messages committed since the last durable commit.
    pub pending: AtomicUsize,
    pub state: Mutex<IndexState>,
    /// Held by an index commit of `put_batch` and by a running checkpoint.
    pub gate: Mutex<()>,
    /// Batches `put_batch` deferred, for tests and diagnostics.
    pub deferred_batches: AtomicUsize,
}

/// Indexes deferred entries in a write transaction (not durable).
pub(super) type IndexDeferred = fn(&Database, &[RecordMeta], LogPos) -> Result<(), StoreError>;

pub(super) struct Checkpointer {
    wake: Option<mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(
        db: Arc<Database>,
        shared: Arc<Shared>,
        index: IndexDeferred,
    ) -> std::io::Result<Self> {
        // One wake-up may wait; more would be the same checkpoint.
        let (wake, rx) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("fio-l2-checkpoint".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    if let Err(e) = checkpoint(&db, &shared, index) {
                        tracing::warn!(
                            "store checkpoint failed (the log still holds every message): {e}"
                        );
                    }
                }
            })?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint; returns at once.
    pub fn request(&self) {
        if let Some(w) = &self.wake {
            let _ = w.try_send(());
        }
    }

    /// Waits for a running checkpoint and stops the thread.
    pub fn stop(&mut self) {
        self.wake.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn checkpoint(db: &Database, shared: &Shared, index: IndexDeferred) -> Result<(), StoreError> {
    let be = |e: redb::Error| StoreError::Backend(format!("redb: {e}"));
    shared.state.lock().expect("index state lock").checkpointing = true;
    let _gate = shared.gate.lock().expect("gate lock");
    let pending = shared.pending.load(Ordering::Relaxed);
    // Durable: persists every index commit so far. It records no log position
    // of its own: `meta.ckpt_*` already says what the committed index covers,
    // and the deferred records after it must be replayed if this crashes.
    let result = (|| {
        let mut tx = db.begin_write().map_err(|e| be(e.into()))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| be(e.into()))?;
        tx.commit().map_err(|e| be(e.into()))
    })();
    if result.is_ok() {
        // A delete's durable commit may have reset the count meanwhile.
        let _ = shared
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(pending))
            });
    }
    let mut st = shared.state.lock().expect("index state lock");
    let indexed = if st.deferred.is_empty() {
        Ok(())
    } else {
        let end = st.end;
        index(db, &st.deferred, end)
    };
    if indexed.is_ok() && !st.deferred.is_empty() {
        st.deferred.clear();
    }
    // On failure the entries stay deferred and the next checkpoint retries;
    // put_batch keeps deferring until then.
    st.checkpointing = !st.deferred.is_empty();
    result.and(indexed)
}
