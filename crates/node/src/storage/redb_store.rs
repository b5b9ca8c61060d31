//! redb backend (pure-Rust copy-on-write B-trees).
//!
//! Durability: every write transaction commits with `Durability::Immediate`
//! (redb fsyncs the data and then the new root before `commit` returns).
//!
//! Tables:
//! - `inbox`: `(recipient, seq) -> record` holds the message itself, so an inbox
//!   page is one range scan with no second lookup (the hot read path);
//! - `ids`: `id -> state`: where a live message is (seq, recipient) or its
//!   tombstone; one point read answers `lookup`, `get` and the dedup check;
//! - `expiry`: `(expires, id) -> ()` for the purge;
//! - `created`: `(created, id) -> tombstone?` for replication ranges;
//! - `meta`: `next_seq`.
//!
//! Values are a small hand-written encoding; every decode checks lengths and
//! returns `StoreError::Corrupt` instead of panicking.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use redb::{TableDefinition, WriteTransaction};
use std::collections::HashMap;

use super::{check_new, IdState, NewMessage, Order, PutOutcome, Store, StoreError, StoredEntry};

type Id<'a> = &'a [u8; 32];

const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
const IDS: TableDefinition<Id, &[u8]> = TableDefinition::new("ids");
const EXPIRY: TableDefinition<(u32, Id), ()> = TableDefinition::new("expiry");
const CREATED: TableDefinition<(u32, Id), bool> = TableDefinition::new("created");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const NEXT_SEQ: &str = "next_seq";

/// Purge removes at most this many ids per transaction, so a purge after a long
/// downtime does not build one huge transaction in memory.
const PURGE_CHUNK: usize = 10_000;

pub struct RedbStore {
    db: Database,
}

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redb: {e}"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("redb: {what}"))
}

// ---- value encodings ---------------------------------------------------------

/// What `ids` says about an id.
enum IdRec {
    Live {
        seq: u64,
        created: u32,
        expires: u32,
        recipient: String,
    },
    Tomb {
        created: u32,
        expires: u32,
    },
}

const TAG_LIVE: u8 = 0;
const TAG_TOMB: u8 = 1;

fn enc_live(seq: u64, created: u32, expires: u32, recipient: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(17 + recipient.len());
    v.push(TAG_LIVE);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&created.to_le_bytes());
    v.extend_from_slice(&expires.to_le_bytes());
    v.extend_from_slice(recipient.as_bytes());
    v
}

fn enc_tomb(created: u32, expires: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    v.push(TAG_TOMB);
    v.extend_from_slice(&created.to_le_bytes());
    v.extend_from_slice(&expires.to_le_bytes());
    v
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, StoreError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| corrupt("short record"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, StoreError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| corrupt("short record"))
}

fn dec_id_rec(b: &[u8]) -> Result<IdRec, StoreError> {
    match b.first() {
        Some(&TAG_LIVE) => {
            let recipient = std::str::from_utf8(b.get(17..).ok_or_else(|| corrupt("short id"))?)
                .map_err(|_| corrupt("recipient not UTF-8"))?
                .to_owned();
            Ok(IdRec::Live {
                seq: u64_at(b, 1)?,
                created: u32_at(b, 9)?,
                expires: u32_at(b, 13)?,
                recipient,
            })
        }
        Some(&TAG_TOMB) if b.len() == 9 => Ok(IdRec::Tomb {
            created: u32_at(b, 1)?,
            expires: u32_at(b, 5)?,
        }),
        _ => Err(corrupt("bad id record")),
    }
}

/// Inbox record: id(32) created(4) expires(4) sender_len(1) sender binary.
fn enc_msg(m: &NewMessage) -> Vec<u8> {
    let mut v = Vec::with_capacity(41 + m.sender.len() + m.binary.len());
    v.extend_from_slice(&m.id);
    v.extend_from_slice(&m.created.to_le_bytes());
    v.extend_from_slice(&m.expires.to_le_bytes());
    // check_new bounds the sender to 255 bytes, so the length fits one byte.
    v.push(m.sender.len() as u8);
    v.extend_from_slice(m.sender.as_bytes());
    v.extend_from_slice(&m.binary);
    v
}

fn dec_msg(recipient: &str, seq: u64, b: &[u8]) -> Result<StoredEntry, StoreError> {
    let id: [u8; 32] = b
        .get(..32)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| corrupt("short message record"))?;
    let created = u32_at(b, 32)?;
    let expires = u32_at(b, 36)?;
    let slen = *b.get(40).ok_or_else(|| corrupt("short message record"))? as usize;
    let sender = b
        .get(41..41 + slen)
        .ok_or_else(|| corrupt("short message record"))?;
    let sender = std::str::from_utf8(sender)
        .map_err(|_| corrupt("sender not UTF-8"))?
        .to_owned();
    Ok(StoredEntry {
        seq,
        id,
        recipient: recipient.to_owned(),
        sender,
        created,
        expires,
        binary: b[41 + slen..].to_vec(),
    })
}

/// The expires field of an inbox record without decoding the rest (page filter).
fn msg_expires(b: &[u8]) -> Result<u32, StoreError> {
    u32_at(b, 36)
}

/// One item of an inbox range scan.
type InboxItem<'a> = Result<
    (
        redb::AccessGuard<'a, (&'static str, u64)>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

// ---- the store ---------------------------------------------------------------

impl RedbStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(be)?;
        // Create every table once so read transactions never meet a missing one.
        let tx = db.begin_write().map_err(be)?;
        {
            tx.open_table(INBOX).map_err(be)?;
            tx.open_table(IDS).map_err(be)?;
            tx.open_table(EXPIRY).map_err(be)?;
            tx.open_table(CREATED).map_err(be)?;
            tx.open_table(META).map_err(be)?;
        }
        tx.commit().map_err(be)?;
        Ok(RedbStore { db })
    }

    fn begin_durable(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write().map_err(be)?;
        // Immediate is redb's default; set it anyway: the API promises fsync.
        tx.set_durability(Durability::Immediate).map_err(be)?;
        Ok(tx)
    }

    fn read_id(&self, id: &[u8; 32]) -> Result<Option<IdRec>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let ids = tx.open_table(IDS).map_err(be)?;
        let got = ids.get(id).map_err(be)?;
        got.map(|g| dec_id_rec(g.value())).transpose()
    }
}

impl Store for RedbStore {
    fn put_batch(&self, msgs: &[NewMessage]) -> Result<Vec<PutOutcome>, StoreError> {
        for m in msgs {
            check_new(m)?;
        }
        let tx = self.begin_durable()?;
        let mut out = Vec::with_capacity(msgs.len());
        {
            let mut meta = tx.open_table(META).map_err(be)?;
            let mut next = match meta.get(NEXT_SEQ).map_err(be)? {
                Some(g) => g.value(),
                None => 1,
            };
            let mut inbox = tx.open_table(INBOX).map_err(be)?;
            let mut ids = tx.open_table(IDS).map_err(be)?;
            let mut expiry = tx.open_table(EXPIRY).map_err(be)?;
            let mut created = tx.open_table(CREATED).map_err(be)?;
            // Outcomes and seqs in input order; the index inserts afterwards
            // in key order, which keeps each B-tree walk near the last one.
            let mut fresh: Vec<(&NewMessage, u64)> = Vec::with_capacity(msgs.len());
            let mut in_batch: HashMap<[u8; 32], u64> = HashMap::with_capacity(msgs.len());
            // What the store knows of each id, looked up in id order too.
            let mut order: Vec<usize> = (0..msgs.len()).collect();
            order.sort_unstable_by_key(|&i| msgs[i].id);
            let mut known: Vec<Option<IdRec>> = (0..msgs.len()).map(|_| None).collect();
            for &i in &order {
                if let Some(g) = ids.get(&msgs[i].id).map_err(be)? {
                    known[i] = Some(dec_id_rec(g.value())?);
                }
            }
            for (m, known) in msgs.iter().zip(known) {
                // A duplicate within the batch answers Existing like one
                // from an earlier batch.
                if let Some(seq) = in_batch.get(&m.id) {
                    out.push(PutOutcome::Existing { seq: *seq });
                    continue;
                }
                match known {
                    Some(IdRec::Live { seq, .. }) => out.push(PutOutcome::Existing { seq }),
                    Some(IdRec::Tomb { .. }) => out.push(PutOutcome::Deleted),
                    None => {
                        let seq = next;
                        next += 1;
                        in_batch.insert(m.id, seq);
                        fresh.push((m, seq));
                        out.push(PutOutcome::Inserted { seq });
                    }
                }
            }
            fresh.sort_unstable_by(|a, b| (&a.0.recipient, a.1).cmp(&(&b.0.recipient, b.1)));
            for (m, seq) in &fresh {
                inbox
                    .insert((m.recipient.as_str(), *seq), enc_msg(m).as_slice())
                    .map_err(be)?;
            }
            fresh.sort_unstable_by_key(|(m, _)| m.id);
            for (m, seq) in &fresh {
                ids.insert(
                    &m.id,
                    enc_live(*seq, m.created, m.expires, &m.recipient).as_slice(),
                )
                .map_err(be)?;
            }
            fresh.sort_unstable_by_key(|(m, _)| (m.expires, m.id));
            for (m, _) in &fresh {
                expiry.insert((m.expires, &m.id), ()).map_err(be)?;
            }
            fresh.sort_unstable_by_key(|(m, _)| (m.created, m.id));
            for (m, _) in &fresh {
                created.insert((m.created, &m.id), false).map_err(be)?;
            }
            meta.insert(NEXT_SEQ, next).map_err(be)?;
        }
        tx.commit().map_err(be)?;
        Ok(out)
    }

    fn lookup(&self, id: &[u8; 32]) -> Result<Option<IdState>, StoreError> {
        Ok(self.read_id(id)?.map(|r| match r {
            IdRec::Live { seq, .. } => IdState::Stored { seq },
            IdRec::Tomb { expires, .. } => IdState::Deleted { expires },
        }))
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<StoredEntry>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let ids = tx.open_table(IDS).map_err(be)?;
        let rec = match ids.get(id).map_err(be)? {
            Some(g) => dec_id_rec(g.value())?,
            None => return Ok(None),
        };
        let (seq, recipient) = match rec {
            IdRec::Live { seq, recipient, .. } => (seq, recipient),
            IdRec::Tomb { .. } => return Ok(None),
        };
        let inbox = tx.open_table(INBOX).map_err(be)?;
        let g = inbox
            .get((recipient.as_str(), seq))
            .map_err(be)?
            .ok_or_else(|| corrupt("id index points at a missing message"))?;
        dec_msg(&recipient, seq, g.value()).map(Some)
    }

    fn list_inbox(
        &self,
        recipient: &str,
        cursor: Option<u64>,
        limit: usize,
        order: Order,
        now: u32,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let (lo, hi) = match (order, cursor) {
            (Order::OldestFirst, Some(c)) => match c.checked_add(1) {
                Some(lo) => (lo, u64::MAX),
                None => return Ok(out),
            },
            (Order::NewestFirst, Some(c)) => match c.checked_sub(1) {
                Some(hi) => (0, hi),
                None => return Ok(out),
            },
            (_, None) => (0, u64::MAX),
        };
        let tx = self.db.begin_read().map_err(be)?;
        let inbox = tx.open_table(INBOX).map_err(be)?;
        let range = inbox.range((recipient, lo)..=(recipient, hi)).map_err(be)?;
        let mut push = |item: InboxItem<'_>| -> Result<bool, StoreError> {
            let (k, v) = item.map_err(be)?;
            let (_, seq) = k.value();
            let b = v.value();
            if msg_expires(b)? > now {
                out.push(dec_msg(recipient, seq, b)?);
            }
            Ok(out.len() < limit)
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
        Ok(out)
    }

    fn delete(&self, recipient: &str, ids_in: &[[u8; 32]]) -> Result<Vec<bool>, StoreError> {
        let tx = self.begin_durable()?;
        let mut out = Vec::with_capacity(ids_in.len());
        {
            let mut inbox = tx.open_table(INBOX).map_err(be)?;
            let mut ids = tx.open_table(IDS).map_err(be)?;
            let mut created_t = tx.open_table(CREATED).map_err(be)?;
            for id in ids_in {
                let rec = match ids.get(id).map_err(be)? {
                    Some(g) => dec_id_rec(g.value())?,
                    None => {
                        out.push(false);
                        continue;
                    }
                };
                match rec {
                    IdRec::Live {
                        seq,
                        created,
                        expires,
                        recipient: r,
                    } if r == recipient => {
                        inbox.remove((recipient, seq)).map_err(be)?;
                        ids.insert(id, enc_tomb(created, expires).as_slice())
                            .map_err(be)?;
                        // expiry entry stays: it now expires the tombstone.
                        created_t.insert((created, id), true).map_err(be)?;
                        out.push(true);
                    }
                    _ => out.push(false),
                }
            }
        }
        tx.commit().map_err(be)?;
        Ok(out)
    }

    fn purge_expired(&self, now: u32) -> Result<u64, StoreError> {
        let mut total = 0u64;
        loop {
            let tx = self.begin_durable()?;
            let n;
            {
                let mut expiry = tx.open_table(EXPIRY).map_err(be)?;
                let mut due: Vec<(u32, [u8; 32])> = Vec::new();
                for item in expiry.range(..=(now, &[0xffu8; 32])).map_err(be)? {
                    let (k, _) = item.map_err(be)?;
                    let (e, id) = k.value();
                    due.push((e, *id));
                    if due.len() >= PURGE_CHUNK {
                        break;
                    }
                }
                n = due.len();
                let mut inbox = tx.open_table(INBOX).map_err(be)?;
                let mut ids = tx.open_table(IDS).map_err(be)?;
                let mut created_t = tx.open_table(CREATED).map_err(be)?;
                for (e, id) in &due {
                    expiry.remove((*e, id)).map_err(be)?;
                    let rec = match ids.remove(id).map_err(be)? {
                        Some(g) => dec_id_rec(g.value())?,
                        // An expiry entry without its id: drop it, nothing else to do.
                        None => continue,
                    };
                    let created = match rec {
                        IdRec::Live {
                            seq,
                            created,
                            recipient,
                            ..
                        } => {
                            inbox.remove((recipient.as_str(), seq)).map_err(be)?;
                            created
                        }
                        IdRec::Tomb { created, .. } => created,
                    };
                    created_t.remove((created, id)).map_err(be)?;
                }
            }
            if n == 0 {
                // Nothing changed: no need to pay for a durable commit.
                tx.abort().map_err(be)?;
                break;
            }
            tx.commit().map_err(be)?;
            total += n as u64;
            if n < PURGE_CHUNK {
                break;
            }
        }
        Ok(total)
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
            .range((from_created, &[0u8; 32])..(to_created, &[0u8; 32]))
            .map_err(be)?
        {
            let (k, v) = item.map_err(be)?;
            let (c, id) = k.value();
            out.push((c, *id, v.value()));
            if out.len() >= limit {
                break;
            }
        }
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
        let tx = self.begin_durable()?;
        let mut out = Vec::with_capacity(items.len());
        {
            let mut inbox = tx.open_table(INBOX).map_err(be)?;
            let mut ids = tx.open_table(IDS).map_err(be)?;
            let mut expiry = tx.open_table(EXPIRY).map_err(be)?;
            let mut created_t = tx.open_table(CREATED).map_err(be)?;
            for (id, created, expires) in items {
                let rec = match ids.get(id).map_err(be)? {
                    Some(g) => Some(dec_id_rec(g.value())?),
                    None => None,
                };
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
                        inbox.remove((recipient, seq)).map_err(be)?;
                        ids.insert(id, enc_tomb(c, e).as_slice()).map_err(be)?;
                        created_t.insert((c, id), true).map_err(be)?;
                        out.push(true);
                    }
                    Some(IdRec::Tomb { .. }) => out.push(true),
                    None => {
                        ids.insert(id, enc_tomb(*created, *expires).as_slice())
                            .map_err(be)?;
                        expiry.insert((*expires, id), ()).map_err(be)?;
                        created_t.insert((*created, id), true).map_err(be)?;
                        out.push(true);
                    }
                }
            }
        }
        tx.commit().map_err(be)?;
        Ok(out)
    }
}
