//! redb backend: an append-only message log ([`BodyLog`](super::body_log))
//! that is the durability point, and redb (pure-Rust copy-on-write B-trees) as
//! the index over it.
//!
//! Durability: `put_batch` appends every new message (metadata and body) to
//! the log and `fdatasync`s it (on a second thread, while this one builds the
//! index entries), then commits the index with `Durability::None`: no fsync,
//! and redb rewrites the touched index pages once per checkpoint instead of
//! once per batch. A checkpoint is a `Durability::Immediate` commit; it records
//! the log position the durable index covers (`meta.ckpt_seg`/`ckpt_off`). It
//! happens after every [`CHECKPOINT_MESSAGES`] messages (in
//! [`Store::after_batch`], once the writer has answered the batch), at every
//! delete, purge that removed something, and compaction (those commit durably
//! anyway), and when the store is dropped. A checkpoint writes
//! and fsyncs every index page dirtied since the last one (tens to hundreds of
//! milliseconds), so it is kept off the acknowledgement path and rare.
//! Opening replays the log after the checkpoint into the index, so a message
//! `put_batch` answered for survives a crash.
//!
//! Tables:
//! - `inbox`: `(recipient, seq) -> record`: the message's metadata and where its
//!   body is in the log, so an inbox page is one range scan plus one `pread` per
//!   message (the hot read path);
//! - `id_by_seq`: `seq -> (id, state)`: where a live message is (seq,
//!   recipient) or its tombstone. Which seq an id has is kept in memory
//!   ([`IdMap`], rebuilt from this table at open), so `lookup` and the dedup
//!   check read no table, and new records are appended at the tree's right
//!   edge instead of on a random leaf;
//! - `expiry`: `(expires, seq) -> id` for the purge;
//! - `created`: `(created, seq) -> (id, tombstone?)` for replication ranges;
//! - `segments`: `segment -> (live bytes, total bytes)` of each log segment; a
//!   segment with no live bytes is deleted by the purge, and one mostly dead is
//!   compacted (its live records copied to the active segment);
//! - `meta`: `next_seq`, `format`, the checkpoint position.
//!
//! The tables, their value encodings and the indexing of new messages are in
//! `redb_index.rs`; background checkpoints in `redb_checkpoint.rs`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use redb::{Table, WriteTransaction};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::body_log::{BodyLog, LogPos, LogRecord, Pending, RecordMeta};
use super::id_map::{IdMap, Known};
use super::redb_checkpoint::{Checkpointer, Shared};
use super::redb_index::*;
use super::{check_new, IdState, NewMessage, Order, PutOutcome, Store, StoreError, StoredEntry};

/// Layout version. 4: `id_by_seq` instead of `ids` (id -> state); 3: the
/// time tables keyed by seq; 2: bodies in the log (1, never marked, kept
/// them in `inbox`).
const FORMAT: &str = "format";
const FORMAT_VERSION: u64 = 4;

/// A checkpoint after this many messages committed without one: bounds the
/// replay after a crash (well under a second), and the index pages a durable
/// commit (a checkpoint, an ack, a purge) must write and fsync.
pub const CHECKPOINT_MESSAGES: usize = 10_000;

/// A log segment is closed at this size.
pub const SEGMENT_TARGET: u64 = 128 << 20;
/// The purge compacts a closed segment whose live bytes fall below 1/this.
const COMPACT_BELOW: u64 = 4;
/// At most this many segments are compacted per purge call.
const COMPACT_PER_PURGE: usize = 4;
/// A read that finds its body's segment gone (compacted or purged after the
/// index snapshot was taken) re-reads the index this many times.
const READ_RETRIES: usize = 3;

/// At most this many index entries wait in memory for a checkpoint to end;
/// past it `put_batch` waits for the checkpoint.
const MAX_DEFERRED: usize = 100_000;

/// Batches from this size on sync the log on a second thread while their
/// index entries are built; smaller ones sync first, on the writer.
const SYNC_ALONGSIDE_FROM: usize = 32;

/// Purge removes at most this many ids per transaction, so a purge after a long
/// downtime does not build one huge transaction in memory.
const PURGE_CHUNK: usize = 10_000;

pub struct RedbStore {
    db: Arc<Database>,
    log: BodyLog,
    /// Pending count, deferred index entries, the gate (redb_checkpoint.rs).
    shared: Arc<Shared>,
    checkpointer: Checkpointer,
    checkpoint_messages: usize,
    /// The next arrival seq (`meta.next_seq` trails it between commits).
    next_seq: AtomicU64,
    /// One `put_batch` at a time: its dedup reads and seq assignment happen
    /// outside a write transaction.
    put_lock: Mutex<()>,
    /// Every id in `id_by_seq` or deferred, to its seq. Changed after the
    /// commit that changes the table, always under `put_lock`.
    ids: IdMap,
}

// ---- the store ---------------------------------------------------------------

impl RedbStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, SEGMENT_TARGET, CHECKPOINT_MESSAGES)
    }

    /// `segment_target`: log segment size; `checkpoint_messages`: see
    /// [`CHECKPOINT_MESSAGES`] (both small in tests). The log lives in
    /// `<path with extension "bodies">/`.
    pub fn open_with(
        path: &Path,
        segment_target: u64,
        checkpoint_messages: usize,
    ) -> Result<Self, StoreError> {
        let db = Arc::new(Database::create(path).map_err(be)?);
        // Create every table once so read transactions never meet a missing one.
        let tx = db.begin_write().map_err(be)?;
        let known: HashSet<u32>;
        let ckpt: LogPos;
        {
            let inbox = tx.open_table(INBOX).map_err(be)?;
            let mut meta = tx.open_table(META).map_err(be)?;
            let format = meta.get(FORMAT).map_err(be)?.map(|g| g.value());
            match format {
                Some(FORMAT_VERSION) => {}
                None if inbox.is_empty().map_err(be)? => {
                    meta.insert(FORMAT, FORMAT_VERSION).map_err(be)?;
                }
                other => {
                    return Err(StoreError::Invalid(format!(
                        "{} has store format {}, this build reads format {FORMAT_VERSION}; \
                         start the node with a new --data directory (peers refill it)",
                        path.display(),
                        other.unwrap_or(1)
                    )))
                }
            }
            tx.open_table(BY_SEQ).map_err(be)?;
            tx.open_table(EXPIRY).map_err(be)?;
            tx.open_table(CREATED).map_err(be)?;
            let segs = tx.open_table(SEGMENTS).map_err(be)?;
            let get = |k: &str| -> Result<u64, StoreError> {
                Ok(meta.get(k).map_err(be)?.map(|g| g.value()).unwrap_or(0))
            };
            ckpt = LogPos {
                seg: u32::try_from(get(CKPT_SEG)?).map_err(|_| corrupt("bad checkpoint"))?,
                off: get(CKPT_OFF)?,
            };
            known = segs
                .iter()
                .map_err(be)?
                .map(|r| r.map(|(k, _)| k.value()).map_err(be))
                .collect::<Result<_, _>>()?;
        }
        tx.commit().map_err(be)?;
        let log = BodyLog::open(
            &path.with_extension("bodies"),
            &known,
            ckpt.seg,
            segment_target,
        )?;
        let ids = load_ids(&db)?;
        let shared = Arc::new(Shared::default());
        let checkpointer = Checkpointer::start(db.clone(), shared.clone(), index_deferred)
            .map_err(|e| StoreError::Backend(format!("starting the checkpoint thread: {e}")))?;
        let store = RedbStore {
            db,
            log,
            shared,
            checkpointer,
            checkpoint_messages,
            next_seq: AtomicU64::new(0),
            put_lock: Mutex::new(()),
            ids,
        };
        store.replay(ckpt)?;
        let next = {
            let tx = store.db.begin_read().map_err(be)?;
            let meta = tx.open_table(META).map_err(be)?;
            let got = meta.get(NEXT_SEQ).map_err(be)?.map(|g| g.value());
            got.unwrap_or(1)
        };
        store.next_seq.store(next, Ordering::Relaxed);
        Ok(store)
    }

    /// Indexes the log records after `from` (the durable checkpoint) that the
    /// index does not have, then checkpoints.
    fn replay(&self, from: LogPos) -> Result<(), StoreError> {
        for seg in self.log.segments() {
            if seg < from.seg {
                continue;
            }
            let start = if seg == from.seg { from.off } else { 0 };
            let records = self.log.scan(seg, start)?;
            for chunk in records.chunks(PURGE_CHUNK) {
                let replayed: Vec<([u8; 32], u64)>;
                // Not durable: the checkpoint below is.
                let mut tx = self.db.begin_write().map_err(be)?;
                tx.set_durability(Durability::None).map_err(be)?;
                {
                    let mut t = IndexTables::open(&tx)?;
                    let mut fresh = Vec::with_capacity(chunk.len());
                    let mut next = t.next_seq()?;
                    let mut seen = HashSet::new();
                    for r in chunk {
                        // A copy made by a compaction that did not commit, or a
                        // record the index already made durable: skip.
                        if self.ids.get(&r.id).is_some() || !seen.insert(r.id) {
                            continue;
                        }
                        next = next.max(r.seq + 1);
                        fresh.push(Fresh::of(&r.with_body(&[]), r.at));
                    }
                    t.index(&mut fresh, next, self.log.end())?;
                    replayed = fresh.iter().map(|f| (*f.id, f.seq)).collect();
                }
                tx.commit().map_err(be)?;
                self.ids
                    .set_many(replayed.iter().map(|(id, seq)| (id, Known::Live(*seq))));
            }
        }
        self.checkpoint_now()?;
        // Segments of the replay range that no index entry points into (an
        // append whose batch never committed, a torn tail): gone for good.
        let keep: HashSet<u32> = {
            let tx = self.db.begin_read().map_err(be)?;
            let segs = tx.open_table(SEGMENTS).map_err(be)?;
            let keys = segs
                .iter()
                .map_err(be)?
                .map(|r| r.map(|(k, _)| k.value()).map_err(be))
                .collect::<Result<_, _>>()?;
            keys
        };
        for seg in self.log.segments() {
            if seg >= from.seg && !keep.contains(&seg) {
                self.log.remove(seg)?;
            }
        }
        Ok(())
    }

    /// A durable commit of everything committed so far, recording the log end
    /// it covers.
    fn checkpoint_now(&self) -> Result<(), StoreError> {
        // Entries a failed background checkpoint left deferred come first:
        // the position recorded below must not pass records not indexed.
        self.flush_deferred()?;
        let tx = self.begin_durable()?;
        {
            let mut meta = tx.open_table(META).map_err(be)?;
            set_ckpt(&mut meta, self.log.end())?;
        }
        self.commit_durable(tx)
    }

    /// For deletes and tombstones: no `put_batch` between its id lookups and
    /// its commit, and no index entry waiting in memory, so a deletion sees
    /// every accepted message and a later index commit cannot overwrite its
    /// tombstone. Waits for a running checkpoint.
    fn quiesce(&self) -> Result<(MutexGuard<'_, ()>, MutexGuard<'_, ()>), StoreError> {
        let one = self.put_lock.lock().expect("put lock");
        let gate = self.shared.gate.lock().expect("gate lock");
        self.flush_deferred()?;
        Ok((one, gate))
    }

    /// Indexes entries still deferred (left by a failed background
    /// checkpoint) and ends the deferral.
    fn flush_deferred(&self) -> Result<(), StoreError> {
        let mut st = self.shared.state.lock().expect("index state lock");
        if !st.deferred.is_empty() {
            let end = st.end;
            index_deferred(&self.db, &st.deferred, end)?;
            st.deferred.clear();
            // Otherwise a set flag belongs to a checkpoint about to start.
            st.checkpointing = false;
        }
        Ok(())
    }

    /// Commits `tx` (begun with `begin_durable`); nothing is pending after it.
    fn commit_durable(&self, tx: WriteTransaction) -> Result<(), StoreError> {
        tx.commit().map_err(be)?;
        self.durable_done();
        Ok(())
    }

    /// What `id_by_seq` holds for `id`: `None` for an id not stored, or not
    /// indexed yet (deferred), or whose record names another id (the map's
    /// key is a prefix).
    fn find(
        &self,
        by_seq: &impl ReadableTable<u64, &'static [u8]>,
        id: &[u8; 32],
    ) -> Result<Option<IdRec>, StoreError> {
        match self.ids.get(id) {
            Some(Known::Live(seq) | Known::Tomb(seq)) => Self::record_at(by_seq, seq, id),
            None => Ok(None),
        }
    }

    /// The `id_by_seq` record at `seq`, if it is `id`'s.
    fn record_at(
        by_seq: &impl ReadableTable<u64, &'static [u8]>,
        seq: u64,
        id: &[u8; 32],
    ) -> Result<Option<IdRec>, StoreError> {
        Ok(match by_seq.get(seq).map_err(be)? {
            Some(g) => match dec_id_rec(seq, g.value())? {
                (stored, rec) if &stored == id => Some(rec),
                _ => None,
            },
            None => None,
        })
    }

    /// Batches `put_batch` answered while a checkpoint ran, their index
    /// entries waiting for it to end.
    pub fn deferred_batches(&self) -> usize {
        self.shared.deferred_batches.load(Ordering::Relaxed)
    }

    /// Called after every durable commit: nothing is pending any more.
    fn durable_done(&self) {
        self.shared.pending.store(0, Ordering::Relaxed);
    }

    /// Commits `fresh` to the index (not durable), while holding the gate;
    /// `sync`, if the log is not synced yet, runs meanwhile on a second thread.
    fn index_now(
        &self,
        fresh: &mut [Fresh<'_>],
        end: LogPos,
        sync: Option<Pending>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(be)?;
        {
            let mut t = IndexTables::open(&tx)?;
            let next = self.next_seq.load(Ordering::Relaxed);
            match sync {
                // A small batch: a second thread would cost more to start
                // (and, on a busy machine, to be scheduled) than it saves.
                Some(p) if fresh.len() < SYNC_ALONGSIDE_FROM => {
                    p.sync()?;
                    t.index(fresh, next, end)?;
                }
                sync => std::thread::scope(|scope| -> Result<(), StoreError> {
                    let synced = sync.map(|p| scope.spawn(|| p.sync()));
                    let indexed = t.index(fresh, next, end);
                    let synced = match synced {
                        Some(h) => h.join().unwrap_or_else(|_| {
                            Err(StoreError::Backend("log sync panicked".into()))
                        }),
                        None => Ok(()),
                    };
                    indexed.and(synced)
                })?,
            }
        }
        // The log is synced: the messages are durable. The index becomes
        // durable at the next checkpoint.
        tx.set_durability(Durability::None).map_err(be)?;
        tx.commit().map_err(be)
    }

    /// Indexes a batch appended to the log (syncing the log meanwhile), or,
    /// while a checkpoint runs, syncs and leaves its index entries for the
    /// checkpointer (redb_checkpoint.rs).
    fn index_or_defer(
        &self,
        fresh: &mut [Fresh<'_>],
        sync: Pending,
        end: LogPos,
    ) -> Result<(), StoreError> {
        let st = self.shared.state.lock().expect("index state lock");
        if !st.checkpointing {
            let _gate = self.shared.gate.lock().expect("gate lock");
            drop(st);
            self.index_now(fresh, end, Some(sync))?;
            return Ok(());
        }
        // A checkpoint is running.
        drop(st);
        sync.sync()?;
        let mut st = self.shared.state.lock().expect("index state lock");
        if !st.checkpointing {
            // It ended while the log synced.
            let _gate = self.shared.gate.lock().expect("gate lock");
            drop(st);
            self.index_now(fresh, end, None)?;
            return Ok(());
        }
        if st.deferred.len() >= MAX_DEFERRED {
            // A checkpoint this slow must not grow memory without bound: wait
            // for it (the gate is free once it has indexed what waits).
            drop(st);
            let _gate = self.shared.gate.lock().expect("gate lock");
            // Normally the checkpoint has indexed them; after a failed one,
            // older entries go first.
            self.flush_deferred()?;
            self.index_now(fresh, end, None)?;
            return Ok(());
        }
        for f in fresh.iter() {
            st.deferred.push(RecordMeta {
                id: *f.id,
                seq: f.seq,
                created: f.created,
                expires: f.expires,
                recipient: f.recipient.to_owned(),
                sender: f.sender.to_owned(),
                at: f.at,
            });
        }
        st.end = end;
        self.shared.deferred_batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn begin_durable(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write().map_err(be)?;
        // Immediate is redb's default; set it anyway: the API promises fsync.
        tx.set_durability(Durability::Immediate).map_err(be)?;
        Ok(tx)
    }

    /// Reads the bodies of decoded inbox records. `None`: a segment vanished
    /// (compacted or purged since the index was read); the caller re-reads.
    fn with_bodies(
        &self,
        recipient: &str,
        recs: Vec<(u64, InboxRec)>,
    ) -> Result<Option<Vec<StoredEntry>>, StoreError> {
        let Some(bodies) = self
            .log
            .read_many(recs.iter().map(|(_, r)| (&r.body, &r.id)))?
        else {
            return Ok(None);
        };
        let out = recs
            .into_iter()
            .zip(bodies)
            .map(|((seq, r), binary)| StoredEntry {
                seq,
                id: r.id,
                recipient: recipient.to_owned(),
                sender: r.sender,
                created: r.created,
                expires: r.expires,
                binary,
            })
            .collect();
        Ok(Some(out))
    }

    /// `read` until its bodies are all found (see [`READ_RETRIES`]).
    fn retry_read<T>(
        &self,
        mut read: impl FnMut() -> Result<Option<T>, StoreError>,
    ) -> Result<T, StoreError> {
        for _ in 0..READ_RETRIES {
            if let Some(v) = read()? {
                return Ok(v);
            }
        }
        Err(corrupt("index points into a missing body segment"))
    }

    /// One inbox page, or `None` when a body segment vanished meanwhile.
    fn list_once(
        &self,
        recipient: &str,
        lo: u64,
        hi: u64,
        limit: usize,
        order: Order,
        now: u32,
    ) -> Result<Option<Vec<StoredEntry>>, StoreError> {
        let mut recs = Vec::new();
        let tx = self.db.begin_read().map_err(be)?;
        let inbox = tx.open_table(INBOX).map_err(be)?;
        let range = inbox.range((recipient, lo)..=(recipient, hi)).map_err(be)?;
        let mut push = |item: InboxItem<'_>| -> Result<bool, StoreError> {
            let (k, v) = item.map_err(be)?;
            let (_, seq) = k.value();
            let b = v.value();
            if msg_expires(b)? > now {
                recs.push((seq, dec_msg(b)?));
            }
            Ok(recs.len() < limit)
        };
        match order {
            Order::OldestFirst => {
                for item in range {
                    if !push(item)? {
                        break;
                    }
                }
            }
            Order::NewestFirst => {
                for item in range.rev() {
                    if !push(item)? {
                        break;
                    }
                }
            }
        }
        self.with_bodies(recipient, recs)
    }

    fn get_once(&self, id: &[u8; 32]) -> Result<Option<Option<StoredEntry>>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let by_seq = tx.open_table(BY_SEQ).map_err(be)?;
        let Some(rec) = self.find(&by_seq, id)? else {
            return Ok(Some(None));
        };
        let (seq, recipient) = match rec {
            IdRec::Live { seq, recipient, .. } => (seq, recipient),
            IdRec::Tomb { .. } => return Ok(Some(None)),
        };
        let inbox = tx.open_table(INBOX).map_err(be)?;
        let g = inbox
            .get((recipient.as_str(), seq))
            .map_err(be)?
            .ok_or_else(|| corrupt("id index points at a missing message"))?;
        let rec = dec_msg(g.value())?;
        Ok(self
            .with_bodies(&recipient, vec![(seq, rec)])?
            .map(|mut v| v.pop()))
    }

    /// Removes a live message's inbox entry, counting its body as dead.
    fn remove_live(
        inbox: &mut Table<(&'static str, u64), &'static [u8]>,
        recipient: &str,
        seq: u64,
        segs: &mut SegDeltas,
    ) -> Result<(), StoreError> {
        if let Some(old) = inbox.remove((recipient, seq)).map_err(be)? {
            segs.kill(&msg_ref(old.value())?);
        }
        Ok(())
    }

    /// Deletes segments with no live bytes left, then compacts a few mostly
    /// dead ones. Never touches the active segment.
    fn reclaim_segments(&self) -> Result<(), StoreError> {
        let active = self.log.active_segment();
        let (empty, sparse) = {
            let tx = self.db.begin_read().map_err(be)?;
            let segs = tx.open_table(SEGMENTS).map_err(be)?;
            let (mut empty, mut sparse) = (vec![], vec![]);
            for item in segs.iter().map_err(be)? {
                let (k, v) = item.map_err(be)?;
                let (seg, (live, total)) = (k.value(), v.value());
                if seg >= active {
                    continue;
                }
                if live == 0 {
                    empty.push(seg);
                } else if live.saturating_mul(COMPACT_BELOW) < total {
                    sparse.push((live, seg));
                }
            }
            sparse.sort_unstable();
            (empty, sparse)
        };
        if !empty.is_empty() {
            let tx = self.begin_durable()?;
            {
                let mut segs = tx.open_table(SEGMENTS).map_err(be)?;
                for seg in &empty {
                    segs.remove(*seg).map_err(be)?;
                }
            }
            self.commit_durable(tx)?;
            for seg in empty {
                self.log.remove(seg)?;
            }
        }
        for (_, seg) in sparse.into_iter().take(COMPACT_PER_PURGE) {
            self.compact(seg)?;
        }
        Ok(())
    }

    /// Copies the live records of closed segment `seg` to the active one,
    /// repoints their inbox entries, and deletes `seg`.
    fn compact(&self, seg: u32) -> Result<(), StoreError> {
        let records = self.log.scan(seg, 0)?;
        let tx = self.begin_durable()?;
        {
            let by_seq = tx.open_table(BY_SEQ).map_err(be)?;
            let mut inbox = tx.open_table(INBOX).map_err(be)?;
            // The records an inbox entry still points at.
            let mut live = Vec::new();
            for r in records {
                let Some(IdRec::Live { seq, recipient, .. }) = self.find(&by_seq, &r.id)? else {
                    continue;
                };
                let points_here = match inbox.get((recipient.as_str(), seq)).map_err(be)? {
                    Some(g) => msg_ref(g.value())? == r.at,
                    None => false,
                };
                if points_here {
                    live.push(r);
                }
            }
            let bodies = self
                .log
                .read_many(live.iter().map(|r| (&r.at, &r.id)))?
                .ok_or_else(|| corrupt("segment vanished while compacting"))?;
            let records: Vec<LogRecord<'_>> = live
                .iter()
                .zip(&bodies)
                .map(|(r, b)| r.with_body(b))
                .collect();
            let (refs, pending, end) = self.log.append(&records)?;
            let mut deltas = SegDeltas::default();
            for (r, new) in live.iter().zip(&refs) {
                let key = (r.recipient.as_str(), r.seq);
                let moved = {
                    let g = inbox
                        .get(key)
                        .map_err(be)?
                        .ok_or_else(|| corrupt("inbox entry vanished while compacting"))?;
                    with_ref(g.value(), new)
                };
                inbox.insert(key, moved.as_slice()).map_err(be)?;
                deltas.add(new);
            }
            pending.sync()?;
            let mut segs = tx.open_table(SEGMENTS).map_err(be)?;
            deltas.apply(&mut segs)?;
            segs.remove(seg).map_err(be)?;
            // No checkpoint position here: the copies are after it, and a replay
            // skips them (their ids are indexed). Deferred records may lie
            // between, and must stay replayable.
            let _ = end;
        }
        self.commit_durable(tx)?;
        self.log.remove(seg)
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.checkpointer.stop();
        // A clean shutdown leaves nothing to replay.
        if self.shared.pending.load(Ordering::Relaxed) > 0 {
            if let Err(e) = self.checkpoint_now() {
                tracing::warn!("store checkpoint at shutdown failed: {e}");
            }
        }
    }
}

impl Store for RedbStore {
    fn put_batch(&self, msgs: &[NewMessage]) -> Result<Vec<PutOutcome>, StoreError> {
        for m in msgs {
            check_new(m)?;
        }
        let _one = self.put_lock.lock().expect("put lock");
        let mut out = Vec::with_capacity(msgs.len());
        // Outcomes and seqs in input order. The map holds every id stored or
        // deferred; a duplicate within the batch answers like a stored one.
        let mut fresh: Vec<(&NewMessage, u64)> = Vec::with_capacity(msgs.len());
        let mut in_batch: HashMap<[u8; 32], u64> = HashMap::with_capacity(msgs.len());
        let known = self.ids.get_many(msgs.iter().map(|m| &m.id));
        for (m, known) in msgs.iter().zip(known) {
            if let Some(seq) = in_batch.get(&m.id) {
                out.push(PutOutcome::Existing { seq: *seq });
                continue;
            }
            match known {
                Some(Known::Live(seq)) => out.push(PutOutcome::Existing { seq }),
                Some(Known::Tomb(_)) => out.push(PutOutcome::Deleted),
                None => {
                    let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                    in_batch.insert(m.id, seq);
                    fresh.push((m, seq));
                    out.push(PutOutcome::Inserted { seq });
                }
            }
        }
        if fresh.is_empty() {
            // Nothing to write: no fsync either.
            return Ok(out);
        }
        let records: Vec<LogRecord<'_>> = fresh
            .iter()
            .map(|(m, seq)| LogRecord {
                id: &m.id,
                seq: *seq,
                created: m.created,
                expires: m.expires,
                recipient: &m.recipient,
                sender: &m.sender,
                body: &m.binary,
            })
            .collect();
        let (refs, sync, end) = self.log.append(&records)?;
        let mut fresh: Vec<Fresh<'_>> = records
            .iter()
            .zip(refs)
            .map(|(r, at)| Fresh::of(r, at))
            .collect();
        self.shared
            .pending
            .fetch_add(fresh.len(), Ordering::Relaxed);
        self.index_or_defer(&mut fresh, sync, end)?;
        self.ids
            .set_many(fresh.iter().map(|f| (f.id, Known::Live(f.seq))));
        Ok(out)
    }

    fn lookup(&self, id: &[u8; 32]) -> Result<Option<IdState>, StoreError> {
        Ok(self.lookup_many(std::slice::from_ref(id))?.pop().flatten())
    }

    fn lookup_many(&self, ids: &[[u8; 32]]) -> Result<Vec<Option<IdState>>, StoreError> {
        let known = self.ids.get_many(ids);
        let mut out = Vec::with_capacity(ids.len());
        let mut tombs = None;
        for (id, k) in ids.iter().zip(known) {
            out.push(match k {
                None => None,
                // Stored, or deferred (as good as stored: the log has it).
                Some(Known::Live(seq)) => Some(IdState::Stored { seq }),
                // Rare (a deleted message sent again): its expiry is in the table.
                Some(Known::Tomb(seq)) => {
                    if tombs.is_none() {
                        let tx = self.db.begin_read().map_err(be)?;
                        tombs = Some(tx.open_table(BY_SEQ).map_err(be)?);
                    }
                    let t = tombs.as_ref().expect("opened above");
                    match Self::record_at(t, seq, id)? {
                        Some(IdRec::Tomb { expires, .. }) => Some(IdState::Deleted { expires }),
                        Some(IdRec::Live { seq, .. }) => Some(IdState::Stored { seq }),
                        None => None,
                    }
                }
            });
        }
        Ok(out)
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<StoredEntry>, StoreError> {
        self.retry_read(|| self.get_once(id))
    }

    fn list_inbox(
        &self,
        recipient: &str,
        cursor: Option<u64>,
        limit: usize,
        order: Order,
        now: u32,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (lo, hi) = match (order, cursor) {
            (Order::OldestFirst, Some(c)) => match c.checked_add(1) {
                Some(lo) => (lo, u64::MAX),
                None => return Ok(Vec::new()),
            },
            (Order::NewestFirst, Some(c)) => match c.checked_sub(1) {
                Some(hi) => (0, hi),
                None => return Ok(Vec::new()),
            },
            (_, None) => (0, u64::MAX),
        };
        self.retry_read(|| self.list_once(recipient, lo, hi, limit, order, now))
    }

    fn delete(&self, recipient: &str, ids_in: &[[u8; 32]]) -> Result<Vec<bool>, StoreError> {
        let _quiet = self.quiesce()?;
        let tx = self.begin_durable()?;
        let mut out = Vec::with_capacity(ids_in.len());
        let mut tombs = Vec::new();
        {
            let mut inbox = tx.open_table(INBOX).map_err(be)?;
            let mut by_seq = tx.open_table(BY_SEQ).map_err(be)?;
            let mut created_t = tx.open_table(CREATED).map_err(be)?;
            let mut deltas = SegDeltas::default();
            for id in ids_in {
                let Some(rec) = self.find(&by_seq, id)? else {
                    out.push(false);
                    continue;
                };
                match rec {
                    IdRec::Live {
                        seq,
                        created,
                        expires,
                        recipient: r,
                    } if r == recipient => {
                        Self::remove_live(&mut inbox, recipient, seq, &mut deltas)?;
                        by_seq
                            .insert(seq, enc_tomb(id, created, expires).as_slice())
                            .map_err(be)?;
                        // expiry entry stays: it now expires the tombstone.
                        created_t.insert((created, seq), (id, true)).map_err(be)?;
                        tombs.push((id, seq));
                        out.push(true);
                    }
                    _ => out.push(false),
                }
            }
            deltas.apply(&mut tx.open_table(SEGMENTS).map_err(be)?)?;
        }
        self.commit_durable(tx)?;
        self.ids
            .set_many(tombs.iter().map(|(id, seq)| (*id, Known::Tomb(*seq))));
        Ok(out)
    }

    fn purge_expired(&self, now: u32) -> Result<u64, StoreError> {
        let mut total = 0u64;
        loop {
            let tx = self.begin_durable()?;
            let n;
            let gone: Vec<[u8; 32]>;
            {
                let mut expiry = tx.open_table(EXPIRY).map_err(be)?;
                let mut due: Vec<((u32, u64), [u8; 32])> = Vec::new();
                for item in expiry.range(..=(now, u64::MAX)).map_err(be)? {
                    let (k, v) = item.map_err(be)?;
                    due.push((k.value(), *v.value()));
                    if due.len() >= PURGE_CHUNK {
                        break;
                    }
                }
                n = due.len();
                gone = due.iter().map(|(_, id)| *id).collect();
                let mut inbox = tx.open_table(INBOX).map_err(be)?;
                let mut by_seq = tx.open_table(BY_SEQ).map_err(be)?;
                let mut created_t = tx.open_table(CREATED).map_err(be)?;
                let mut deltas = SegDeltas::default();
                for (key, id) in &due {
                    expiry.remove(*key).map_err(be)?;
                    // The expiry key's seq is the record's.
                    let rec = match by_seq.remove(key.1).map_err(be)? {
                        Some(g) => match dec_id_rec(key.1, g.value())? {
                            (stored, rec) if &stored == id => rec,
                            _ => return Err(corrupt("expiry entry names another id")),
                        },
                        // An expiry entry without its record: drop it, nothing else to do.
                        None => continue,
                    };
                    let (created, seq) = match rec {
                        IdRec::Live {
                            seq,
                            created,
                            recipient,
                            ..
                        } => {
                            Self::remove_live(&mut inbox, &recipient, seq, &mut deltas)?;
                            (created, seq)
                        }
                        IdRec::Tomb { seq, created, .. } => (created, seq),
                    };
                    created_t.remove((created, seq)).map_err(be)?;
                }
                deltas.apply(&mut tx.open_table(SEGMENTS).map_err(be)?)?;
            }
            if n == 0 {
                // Nothing changed: no need to pay for a durable commit.
                tx.abort().map_err(be)?;
                break;
            }
            self.commit_durable(tx)?;
            {
                // After a delete's own map update, never before it: a delete
                // holds `put_lock` from its lookups to its map update, and
                // may have made one of these ids a tombstone just before.
                let _one = self.put_lock.lock().expect("put lock");
                self.ids.remove_many(gone.iter());
            }
            total += n as u64;
            if n < PURGE_CHUNK {
                break;
            }
        }
        self.reclaim_segments()?;
        Ok(total)
    }

    fn after_batch(&self) -> Result<(), StoreError> {
        if self.shared.pending.load(Ordering::Relaxed) >= self.checkpoint_messages {
            self.checkpointer.request();
        }
        Ok(())
    }

    fn inbox_count(&self, recipient: &str) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let inbox = tx.open_table(INBOX).map_err(be)?;
        let mut n = 0u64;
        for item in inbox
            .range((recipient, 0u64)..=(recipient, u64::MAX))
            .map_err(be)?
        {
            item.map_err(be)?;
            n += 1;
        }
        Ok(n)
    }

    fn count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let inbox = tx.open_table(INBOX).map_err(be)?;
        inbox.len().map_err(be)
    }

    fn range(
        &self,
        from_created: u32,
        to_created: u32,
        limit: usize,
    ) -> Result<Vec<(u32, [u8; 32], bool)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 || from_created >= to_created {
            return Ok(out);
        }
        let tx = self.db.begin_read().map_err(be)?;
        let created = tx.open_table(CREATED).map_err(be)?;
        for item in created
            .range((from_created, 0)..(to_created, 0))
            .map_err(be)?
        {
            let (k, v) = item.map_err(be)?;
            let created = k.value().0;
            // Keyed by (created, seq), ids within a second come in arrival
            // order: read the last second whole, sort, then cut.
            if out.len() >= limit && out.last().map(|r| r.0) != Some(created) {
                break;
            }
            let (id, deleted) = v.value();
            out.push((created, *id, deleted));
        }
        out.sort_unstable();
        out.truncate(limit);
        Ok(out)
    }

    fn backend_name(&self) -> &'static str {
        "redb"
    }

    fn put_tombstones(
        &self,
        recipient: &str,
        items: &[([u8; 32], u32, u32)],
    ) -> Result<Vec<bool>, StoreError> {
        let _quiet = self.quiesce()?;
        let tx = self.begin_durable()?;
        let mut out = Vec::with_capacity(items.len());
        let mut tombs = Vec::new();
        let mut new_seqs = false;
        {
            let mut inbox = tx.open_table(INBOX).map_err(be)?;
            let mut by_seq = tx.open_table(BY_SEQ).map_err(be)?;
            let mut expiry = tx.open_table(EXPIRY).map_err(be)?;
            let mut created_t = tx.open_table(CREATED).map_err(be)?;
            let mut deltas = SegDeltas::default();
            for (id, created, expires) in items {
                let rec = self.find(&by_seq, id)?;
                match rec {
                    Some(IdRec::Live {
                        seq,
                        created: c,
                        expires: e,
                        recipient: r,
                    }) => {
                        if r != recipient {
                            out.push(false);
                            continue;
                        }
                        Self::remove_live(&mut inbox, recipient, seq, &mut deltas)?;
                        by_seq
                            .insert(seq, enc_tomb(id, c, e).as_slice())
                            .map_err(be)?;
                        created_t.insert((c, seq), (id, true)).map_err(be)?;
                        tombs.push((id, seq));
                        out.push(true);
                    }
                    Some(IdRec::Tomb { .. }) => out.push(true),
                    None => {
                        // A seq of its own for the time tables' keys.
                        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                        by_seq
                            .insert(seq, enc_tomb(id, *created, *expires).as_slice())
                            .map_err(be)?;
                        tombs.push((id, seq));
                        expiry.insert((*expires, seq), id).map_err(be)?;
                        created_t.insert((*created, seq), (id, true)).map_err(be)?;
                        new_seqs = true;
                        out.push(true);
                    }
                }
            }
            deltas.apply(&mut tx.open_table(SEGMENTS).map_err(be)?)?;
            if new_seqs {
                // quiesce() holds put_batch off: no seq is being handed out.
                let next = self.next_seq.load(Ordering::Relaxed);
                tx.open_table(META)
                    .map_err(be)?
                    .insert(NEXT_SEQ, next)
                    .map_err(be)?;
            }
        }
        self.commit_durable(tx)?;
        self.ids
            .set_many(tombs.iter().map(|(id, seq)| (*id, Known::Tomb(*seq))));
        Ok(out)
    }
}

/// The id map of every record in `id_by_seq`.
fn load_ids(db: &Database) -> Result<IdMap, StoreError> {
    let tx = db.begin_read().map_err(be)?;
    let by_seq = tx.open_table(BY_SEQ).map_err(be)?;
    let map = IdMap::with_capacity(by_seq.len().map_err(be)? as usize);
    let mut batch = Vec::with_capacity(4096);
    for item in by_seq.iter().map_err(be)? {
        let (k, v) = item.map_err(be)?;
        let (id, rec) = dec_id_rec(k.value(), v.value())?;
        batch.push(match rec {
            IdRec::Live { seq, .. } => (id, Known::Live(seq)),
            IdRec::Tomb { seq, .. } => (id, Known::Tomb(seq)),
        });
        if batch.len() == batch.capacity() {
            map.set_many(batch.iter().map(|(id, k)| (id, *k)));
            batch.clear();
        }
    }
    map.set_many(batch.iter().map(|(id, k)| (id, *k)));
    Ok(map)
}
