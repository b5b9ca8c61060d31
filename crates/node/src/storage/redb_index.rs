//! The redb backend's tables, the encoding of their values, and how new
//! messages become index entries (`IndexTables::index`). The store itself,
//! with its read and write paths, is `redb_store.rs`.
//!
//! Values are a small hand-written encoding; every decode checks lengths and
//! returns `StoreError::Corrupt` instead of panicking.

use std::collections::HashMap;

use redb::{Database, Durability, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::body_log::{BodyRef, LogPos, LogRecord, RecordMeta};
use super::StoreError;

pub(super) type Id<'a> = &'a [u8; 32];

pub(super) const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
/// seq -> (id, state) of every stored id, live or tombstone. Keyed by seq
/// so that new records land at the tree's right edge; which seq an id has
/// is kept in memory (id_map.rs).
pub(super) const BY_SEQ: TableDefinition<u64, &[u8]> = TableDefinition::new("id_by_seq");
/// (expires, seq) -> id: what the purge removes, soonest first.
pub(super) const EXPIRY: TableDefinition<(u32, u64), Id> = TableDefinition::new("expiry_by_seq");
/// (created, seq) -> (id, deleted): the replication set. Both time tables are
/// keyed by the local seq, not the id: new messages, created about now, then
/// land at the tree's right edge and a batch dirties a few pages, where random
/// ids dirtied (and the checkpoint wrote) about one page per message.
pub(super) const CREATED: TableDefinition<(u32, u64), (Id, bool)> =
    TableDefinition::new("created_by_seq");
pub(super) const SEGMENTS: TableDefinition<u32, (u64, u64)> = TableDefinition::new("segments");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(super) const NEXT_SEQ: &str = "next_seq";
/// The log position the durable index covers (see the module docs).
pub(super) const CKPT_SEG: &str = "ckpt_seg";
pub(super) const CKPT_OFF: &str = "ckpt_off";

pub(super) fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redb: {e}"))
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("redb: {what}"))
}

// ---- value encodings ---------------------------------------------------------

/// What `id_by_seq` says of a stored id.
pub(super) enum IdRec {
    Live {
        seq: u64,
        created: u32,
        expires: u32,
        recipient: String,
    },
    Tomb {
        seq: u64,
        created: u32,
        expires: u32,
    },
}

pub(super) const TAG_LIVE: u8 = 0;
pub(super) const TAG_TOMB: u8 = 1;

/// A live message's `id_by_seq` record: id(32) tag(1) created(4) expires(4)
/// recipient. Its seq is the key.
pub(super) fn enc_live(id: &[u8; 32], created: u32, expires: u32, recipient: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(ID_REC_FIXED + recipient.len());
    push_rec_head(&mut v, id, TAG_LIVE, created, expires);
    v.extend_from_slice(recipient.as_bytes());
    v
}

/// A tombstone keeps the seq of its time-table keys (the deleted message's,
/// or one of its own for a peer's tombstone of a message never stored here).
pub(super) fn enc_tomb(id: &[u8; 32], created: u32, expires: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(ID_REC_FIXED);
    push_rec_head(&mut v, id, TAG_TOMB, created, expires);
    v
}

const ID_REC_FIXED: usize = 32 + 9;

fn push_rec_head(v: &mut Vec<u8>, id: &[u8; 32], tag: u8, created: u32, expires: u32) {
    v.extend_from_slice(id);
    v.push(tag);
    v.extend_from_slice(&created.to_le_bytes());
    v.extend_from_slice(&expires.to_le_bytes());
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Result<u32, StoreError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| corrupt("short record"))
}

pub(super) fn u64_at(b: &[u8], at: usize) -> Result<u64, StoreError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| corrupt("short record"))
}

/// The `id_by_seq` record at key `seq`: the id, and what is stored of it.
pub(super) fn dec_id_rec(seq: u64, b: &[u8]) -> Result<([u8; 32], IdRec), StoreError> {
    let id: [u8; 32] = b
        .get(..32)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| corrupt("short id record"))?;
    let (created, expires) = (u32_at(b, 33)?, u32_at(b, 37)?);
    let rec = match b.get(32) {
        Some(&TAG_LIVE) => {
            let recipient = std::str::from_utf8(&b[ID_REC_FIXED..])
                .map_err(|_| corrupt("recipient not UTF-8"))?
                .to_owned();
            IdRec::Live {
                seq,
                created,
                expires,
                recipient,
            }
        }
        Some(&TAG_TOMB) if b.len() == ID_REC_FIXED => IdRec::Tomb {
            seq,
            created,
            expires,
        },
        _ => return Err(corrupt("bad id record")),
    };
    Ok((id, rec))
}

/// Inbox record: id(32) created(4) expires(4) seg(4) off(8) len(4)
/// sender_len(1) sender.
pub(super) fn enc_msg(m: &Fresh<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(REC_SENDER + m.sender.len());
    v.extend_from_slice(m.id);
    v.extend_from_slice(&m.created.to_le_bytes());
    v.extend_from_slice(&m.expires.to_le_bytes());
    push_ref(&mut v, &m.at);
    // check_new bounds the sender to 255 bytes, so the length fits one byte.
    v.push(m.sender.len() as u8);
    v.extend_from_slice(m.sender.as_bytes());
    v
}

/// A message to index: new in `put_batch`, or replayed from the log.
pub(super) struct Fresh<'a> {
    pub(super) id: &'a [u8; 32],
    pub(super) seq: u64,
    pub(super) created: u32,
    pub(super) expires: u32,
    pub(super) recipient: &'a str,
    pub(super) sender: &'a str,
    pub(super) at: BodyRef,
}

impl<'a> Fresh<'a> {
    /// The index entry of a log record written at `at`.
    pub(super) fn of(r: &LogRecord<'a>, at: BodyRef) -> Self {
        Fresh {
            id: r.id,
            seq: r.seq,
            created: r.created,
            expires: r.expires,
            recipient: r.recipient,
            sender: r.sender,
            at,
        }
    }
}

pub(super) const REC_REF: usize = 40;
pub(super) const REC_SENDER: usize = 57;

pub(super) fn push_ref(v: &mut Vec<u8>, r: &BodyRef) {
    v.extend_from_slice(&r.seg.to_le_bytes());
    v.extend_from_slice(&r.off.to_le_bytes());
    v.extend_from_slice(&r.len.to_le_bytes());
}

/// The same record with its body moved (compaction).
pub(super) fn with_ref(b: &[u8], r: &BodyRef) -> Vec<u8> {
    let mut v = Vec::with_capacity(b.len());
    v.extend_from_slice(&b[..REC_REF]);
    push_ref(&mut v, r);
    v.extend_from_slice(&b[REC_SENDER - 1..]);
    v
}

/// An inbox record decoded, body not yet read.
pub(super) struct InboxRec {
    pub(super) id: [u8; 32],
    pub(super) created: u32,
    pub(super) expires: u32,
    pub(super) body: BodyRef,
    pub(super) sender: String,
}

pub(super) fn msg_ref(b: &[u8]) -> Result<BodyRef, StoreError> {
    Ok(BodyRef {
        seg: u32_at(b, REC_REF)?,
        off: u64_at(b, REC_REF + 4)?,
        len: u32_at(b, REC_REF + 12)?,
    })
}

pub(super) fn dec_msg(b: &[u8]) -> Result<InboxRec, StoreError> {
    let id: [u8; 32] = b
        .get(..32)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| corrupt("short message record"))?;
    let slen = *b
        .get(REC_SENDER - 1)
        .ok_or_else(|| corrupt("short message record"))? as usize;
    let sender = b
        .get(REC_SENDER..REC_SENDER + slen)
        .filter(|_| b.len() == REC_SENDER + slen)
        .ok_or_else(|| corrupt("bad message record length"))?;
    let sender = std::str::from_utf8(sender)
        .map_err(|_| corrupt("sender not UTF-8"))?
        .to_owned();
    Ok(InboxRec {
        id,
        created: u32_at(b, 32)?,
        expires: u32_at(b, 36)?,
        body: msg_ref(b)?,
        sender,
    })
}

/// The expires field of an inbox record without decoding the rest (page filter).
pub(super) fn msg_expires(b: &[u8]) -> Result<u32, StoreError> {
    u32_at(b, 36)
}

/// Changes to the `segments` counters within one transaction.
#[derive(Default)]
pub(super) struct SegDeltas(HashMap<u32, (i64, i64)>);

impl SegDeltas {
    pub(super) fn add(&mut self, r: &BodyRef) {
        let d = self.0.entry(r.seg).or_default();
        d.0 += i64::from(r.len);
        d.1 += i64::from(r.len);
    }
    pub(super) fn kill(&mut self, r: &BodyRef) {
        self.0.entry(r.seg).or_default().0 -= i64::from(r.len);
    }
    pub(super) fn apply(self, t: &mut Table<u32, (u64, u64)>) -> Result<(), StoreError> {
        for (seg, (live, total)) in self.0 {
            let (l, tot) = t.get(seg).map_err(be)?.map(|g| g.value()).unwrap_or((0, 0));
            let l = l.saturating_add_signed(live);
            let tot = tot.saturating_add_signed(total);
            t.insert(seg, (l, tot)).map_err(be)?;
        }
        Ok(())
    }
}

/// One item of an inbox range scan.
pub(super) type InboxItem<'a> = Result<
    (
        redb::AccessGuard<'a, (&'static str, u64)>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

/// Records the log position a commit's index covers.
pub(super) fn set_ckpt(meta: &mut Table<&'static str, u64>, end: LogPos) -> Result<(), StoreError> {
    meta.insert(CKPT_SEG, u64::from(end.seg)).map_err(be)?;
    meta.insert(CKPT_OFF, end.off).map_err(be)?;
    Ok(())
}

/// The checkpointer's way to index what `put_batch` deferred (not durable).
pub(super) fn index_deferred(
    db: &Database,
    deferred: &[RecordMeta],
    end: LogPos,
) -> Result<(), StoreError> {
    let mut tx = db.begin_write().map_err(be)?;
    tx.set_durability(Durability::None).map_err(be)?;
    {
        let mut t = IndexTables::open(&tx)?;
        let next = deferred
            .iter()
            .map(|f| f.seq + 1)
            .max()
            .unwrap_or(1)
            .max(t.next_seq()?);
        let mut fresh: Vec<Fresh<'_>> = deferred
            .iter()
            .map(|r| Fresh::of(&r.with_body(&[]), r.at))
            .collect();
        t.index(&mut fresh, next, end)?;
    }
    tx.commit().map_err(be)
}

/// The tables a batch of new messages is indexed into.
pub(super) struct IndexTables<'t> {
    pub(super) meta: Table<'t, &'static str, u64>,
    pub(super) inbox: Table<'t, (&'static str, u64), &'static [u8]>,
    pub(super) by_seq: Table<'t, u64, &'static [u8]>,
    pub(super) expiry: Table<'t, (u32, u64), Id<'static>>,
    pub(super) created: Table<'t, (u32, u64), (Id<'static>, bool)>,
    pub(super) segs: Table<'t, u32, (u64, u64)>,
}

impl<'t> IndexTables<'t> {
    pub(super) fn open(tx: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(IndexTables {
            meta: tx.open_table(META).map_err(be)?,
            inbox: tx.open_table(INBOX).map_err(be)?,
            by_seq: tx.open_table(BY_SEQ).map_err(be)?,
            expiry: tx.open_table(EXPIRY).map_err(be)?,
            created: tx.open_table(CREATED).map_err(be)?,
            segs: tx.open_table(SEGMENTS).map_err(be)?,
        })
    }

    pub(super) fn next_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.meta.get(NEXT_SEQ).map_err(be)? {
            Some(g) => g.value(),
            None => 1,
        })
    }

    /// Inserts the index entries of `fresh` (each table in its own key order,
    /// which keeps each B-tree walk near the last one), the segment counters,
    /// `next_seq` and the log position this commit covers.
    pub(super) fn index(
        &mut self,
        fresh: &mut [Fresh<'_>],
        next: u64,
        end: LogPos,
    ) -> Result<(), StoreError> {
        let mut deltas = SegDeltas::default();
        fresh.sort_unstable_by(|a, b| (a.recipient, a.seq).cmp(&(b.recipient, b.seq)));
        for m in fresh.iter() {
            self.inbox
                .insert((m.recipient, m.seq), enc_msg(m).as_slice())
                .map_err(be)?;
            deltas.add(&m.at);
        }
        fresh.sort_unstable_by_key(|m| m.seq);
        for m in fresh.iter() {
            self.by_seq
                .insert(
                    m.seq,
                    enc_live(m.id, m.created, m.expires, m.recipient).as_slice(),
                )
                .map_err(be)?;
        }
        fresh.sort_unstable_by_key(|m| (m.expires, m.seq));
        for m in fresh.iter() {
            self.expiry.insert((m.expires, m.seq), m.id).map_err(be)?;
        }
        fresh.sort_unstable_by_key(|m| (m.created, m.seq));
        for m in fresh.iter() {
            self.created
                .insert((m.created, m.seq), (m.id, false))
                .map_err(be)?;
        }
        deltas.apply(&mut self.segs)?;
        self.meta.insert(NEXT_SEQ, next).map_err(be)?;
        set_ckpt(&mut self.meta, end)
    }
}
