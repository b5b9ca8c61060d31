//! SQLite backend (bundled SQLite through rusqlite).
//!
//! Durability: WAL journal with `synchronous=FULL`, so every commit fsyncs the
//! WAL before `COMMIT` returns. (WAL with `synchronous=NORMAL` only fsyncs at
//! checkpoints: a commit can be lost on power loss, which breaks the promise
//! `put_batch` makes to a sender.)
//!
//! Concurrency: one writer connection behind a mutex (SQLite has one writer
//! anyway) and a small pool of reader connections, so inbox reads proceed from
//! the WAL snapshot while a commit waits for its fsync.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{check_new, IdState, NewMessage, Order, PutOutcome, Store, StoreError, StoredEntry};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_inbox ON messages (recipient, seq);
CREATE INDEX IF NOT EXISTS messages_expires ON messages (expires);
CREATE INDEX IF NOT EXISTS messages_created ON messages (created, id);
CREATE TABLE IF NOT EXISTS tombstones (
    id BLOB PRIMARY KEY,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tombstones_expires ON tombstones (expires);
CREATE INDEX IF NOT EXISTS tombstones_created ON tombstones (created, id);
";

/// Page cache per connection, KiB.
const CACHE_KIB: i64 = 64 * 1024;
/// Largest memory map of the database file per connection (address space only).
const MMAP_BYTES: i64 = 4 << 30;

/// Readers kept open for reuse; more are opened on demand under load.
const READER_POOL: usize = 4;

pub struct SqliteStore {
    path: std::path::PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
}

struct Writer {
    conn: Connection,
    /// Next seq to assign. Kept in memory (under the writer lock) and persisted
    /// in `meta` in the same transaction as the inserts, so a seq is never reused,
    /// even when the newest message was deleted or purged.
    next_seq: u64,
}

fn be(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(be)?;
    // Another connection of ours may hold the write lock during a checkpoint.
    conn.busy_timeout(Duration::from_secs(10)).map_err(be)?;
    // SQLite's default page cache is 2 MiB per connection, far below a node's
    // working set: pages would come back through read() syscalls each time.
    // Memory-mapped reads share the OS page cache across connections instead.
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(be)?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(be)?;
    Ok(conn)
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_conn(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(be)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "sqlite: could not enable WAL (journal_mode={mode})"
            )));
        }
        // FULL: fsync the WAL at every commit (see the module docs).
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(be)?;
        conn.execute_batch(SCHEMA).map_err(be)?;
        let stored: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'next_seq'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(be)?;
        let next_seq = match stored {
            None => 1,
            Some(v) if v >= 1 => v as u64,
            Some(v) => return Err(StoreError::Corrupt(format!("next_seq {v}"))),
        };
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: Mutex::new(Writer { conn, next_seq }),
            readers: Mutex::new(Vec::new()),
        })
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.lock_readers()?.pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_conn(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
        };
        let out = f(&conn);
        let mut pool = self.lock_readers()?;
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        out
    }

    fn lock_readers(&self) -> Result<std::sync::MutexGuard<'_, Vec<Connection>>, StoreError> {
        self.readers
            .lock()
            .map_err(|_| StoreError::Backend("sqlite reader pool lock poisoned".into()))
    }

    fn lock_writer(&self) -> Result<std::sync::MutexGuard<'_, Writer>, StoreError> {
        self.writer
            .lock()
            .map_err(|_| StoreError::Backend("sqlite writer lock poisoned".into()))
    }
}

fn to_id(v: Vec<u8>) -> Result<[u8; 32], StoreError> {
    let len = v.len();
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("id of {len} bytes")))
}

fn to_u32(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v}")))
}

fn to_seq(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("seq {v}")))
}

type RawRow = (i64, Vec<u8>, String, String, i64, i64, Vec<u8>);

const ENTRY_COLS: &str = "seq, id, recipient, sender, created, expires, body";

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn entry(raw: RawRow) -> Result<StoredEntry, StoreError> {
    let (seq, id, recipient, sender, created, expires, binary) = raw;
    Ok(StoredEntry {
        seq: to_seq(seq)?,
        id: to_id(id)?,
        recipient,
        sender,
        created: to_u32(created, "created")?,
        expires: to_u32(expires, "expires")?,
        binary,
    })
}

/// The id's state as seen by `conn` (inside a write transaction it sees that
/// transaction's own inserts, which is how duplicates within a batch are found).
fn id_state(conn: &Connection, id: &[u8; 32]) -> Result<Option<IdState>, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM messages WHERE id = ?1")
        .map_err(be)?
        .query_row([&id[..]], |r| r.get(0))
        .optional()
        .map_err(be)?;
    if let Some(seq) = seq {
        return Ok(Some(IdState::Stored { seq: to_seq(seq)? }));
    }
    let expires: Option<i64> = conn
        .prepare_cached("SELECT expires FROM tombstones WHERE id = ?1")
        .map_err(be)?
        .query_row([&id[..]], |r| r.get(0))
        .optional()
        .map_err(be)?;
    match expires {
        Some(e) => Ok(Some(IdState::Deleted {
            expires: to_u32(e, "tombstone expires")?,
        })),
        None => Ok(None),
    }
}

impl Store for SqliteStore {
    fn put_batch(&self, msgs: &[NewMessage]) -> Result<Vec<PutOutcome>, StoreError> {
        for m in msgs {
            check_new(m)?;
        }
        let mut w = self.lock_writer()?;
        let mut next = w.next_seq;
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(be)?;
        let mut out = Vec::with_capacity(msgs.len());
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO messages (seq, id, recipient, sender, created, expires, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(be)?;
            for m in msgs {
                match id_state(&tx, &m.id)? {
                    Some(IdState::Stored { seq }) => out.push(PutOutcome::Existing { seq }),
                    Some(IdState::Deleted { .. }) => out.push(PutOutcome::Deleted),
                    None => {
                        let seq = next;
                        next += 1;
                        ins.execute(params![
                            seq as i64,
                            &m.id[..],
                            m.recipient,
                            m.sender,
                            m.created,
                            m.expires,
                            m.binary
                        ])
                        .map_err(be)?;
                        out.push(PutOutcome::Inserted { seq });
                    }
                }
            }
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('next_seq', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [next as i64],
        )
        .map_err(be)?;
        tx.commit().map_err(be)?;
        // Only after a successful commit: a failed one leaves the counter where
        // the database has it.
        w.next_seq = next;
        Ok(out)
    }

    fn lookup(&self, id: &[u8; 32]) -> Result<Option<IdState>, StoreError> {
        self.with_reader(|c| id_state(c, id))
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<StoredEntry>, StoreError> {
        self.with_reader(|c| {
            let raw = c
                .prepare_cached(&format!("SELECT {ENTRY_COLS} FROM messages WHERE id = ?1"))
                .map_err(be)?
                .query_row([&id[..]], raw_row)
                .optional()
                .map_err(be)?;
            raw.map(entry).transpose()
        })
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
        let sql = match order {
            Order::OldestFirst => format!(
                "SELECT {ENTRY_COLS} FROM messages INDEXED BY messages_inbox
                 WHERE recipient = ?1 AND seq > ?2 AND expires > ?3 ORDER BY seq ASC LIMIT ?4"
            ),
            Order::NewestFirst => format!(
                "SELECT {ENTRY_COLS} FROM messages INDEXED BY messages_inbox
                 WHERE recipient = ?1 AND seq < ?2 AND expires > ?3 ORDER BY seq DESC LIMIT ?4"
            ),
        };
        let bound: i64 = match (order, cursor) {
            (_, Some(c)) => i64::try_from(c).unwrap_or(i64::MAX),
            (Order::OldestFirst, None) => 0,
            (Order::NewestFirst, None) => i64::MAX,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_reader(|c| {
            let mut st = c.prepare_cached(&sql).map_err(be)?;
            let rows = st
                .query_map(params![recipient, bound, now, limit], raw_row)
                .map_err(be)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(entry(r.map_err(be)?)?);
            }
            Ok(out)
        })
    }

    fn delete(&self, recipient: &str, ids: &[[u8; 32]]) -> Result<Vec<bool>, StoreError> {
        let mut w = self.lock_writer()?;
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(be)?;
        let out = ids
            .iter()
            .map(|id| tombstone(&tx, recipient, id, None))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().map_err(be)?;
        Ok(out)
    }

    fn purge_expired(&self, now: u32) -> Result<u64, StoreError> {
        let mut w = self.lock_writer()?;
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(be)?;
        let a = tx
            .execute("DELETE FROM messages WHERE expires <= ?1", [now])
            .map_err(be)?;
        let b = tx
            .execute("DELETE FROM tombstones WHERE expires <= ?1", [now])
            .map_err(be)?;
        tx.commit().map_err(be)?;
        Ok((a + b) as u64)
    }

    fn inbox_count(&self, recipient: &str) -> Result<u64, StoreError> {
        self.with_reader(|c| {
            let n: i64 = c
                .query_row(
                    "SELECT count(*) FROM messages WHERE recipient = ?1",
                    [recipient],
                    |r| r.get(0),
                )
                .map_err(be)?;
            to_seq(n)
        })
    }

    fn count(&self) -> Result<u64, StoreError> {
        self.with_reader(|c| {
            let n: i64 = c
                .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
                .map_err(be)?;
            to_seq(n)
        })
    }

    fn range(
        &self,
        from_created: u32,
        to_created: u32,
        limit: usize,
    ) -> Result<Vec<(u32, [u8; 32], bool)>, StoreError> {
        if limit == 0 || from_created >= to_created {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_reader(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT created, id, 0 FROM messages WHERE created >= ?1 AND created < ?2
                     UNION ALL
                     SELECT created, id, 1 FROM tombstones WHERE created >= ?1 AND created < ?2
                     ORDER BY 1, 2 LIMIT ?3",
                )
                .map_err(be)?;
            let rows = st
                .query_map(params![from_created, to_created, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(be)?;
            let mut out = Vec::new();
            for r in rows {
                let (created, id, tomb) = r.map_err(be)?;
                out.push((to_u32(created, "created")?, to_id(id)?, tomb != 0));
            }
            Ok(out)
        })
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    fn put_tombstones(
        &self,
        recipient: &str,
        items: &[([u8; 32], u32, u32)],
    ) -> Result<Vec<bool>, StoreError> {
        let mut w = self.lock_writer()?;
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(be)?;
        let out = items
            .iter()
            .map(|(id, created, expires)| tombstone(&tx, recipient, id, Some((*created, *expires))))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().map_err(be)?;
        Ok(out)
    }
}

/// Replaces `recipient`'s stored message `id` by a tombstone (its own times).
/// When the message is not stored, `if_absent` gives the times of a tombstone
/// to add (a verified remote deletion); an existing tombstone is kept.
/// False when the id belongs to another recipient, or is absent and
/// `if_absent` is None.
fn tombstone(
    tx: &rusqlite::Transaction<'_>,
    recipient: &str,
    id: &[u8; 32],
    if_absent: Option<(u32, u32)>,
) -> Result<bool, StoreError> {
    let found: Option<(i64, String, i64, i64)> = tx
        .prepare_cached("SELECT seq, recipient, created, expires FROM messages WHERE id = ?1")
        .map_err(be)?
        .query_row([&id[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(be)?;
    let insert = |created: i64, expires: i64| {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO tombstones (id, created, expires) VALUES (?1, ?2, ?3)",
        )
        .map_err(be)?
        .execute(params![&id[..], created, expires])
        .map_err(be)
    };
    match (found, if_absent) {
        (Some((_, r, _, _)), _) if r != recipient => Ok(false),
        (Some((seq, _, created, expires)), _) => {
            tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")
                .map_err(be)?
                .execute([seq])
                .map_err(be)?;
            insert(created, expires)?;
            Ok(true)
        }
        (None, None) => Ok(false),
        (None, Some((created, expires))) => {
            let known = tx
                .prepare_cached("SELECT 1 FROM tombstones WHERE id = ?1")
                .map_err(be)?
                .query_row([&id[..]], |_| Ok(()))
                .optional()
                .map_err(be)?
                .is_some();
            if !known {
                insert(i64::from(created), i64::from(expires))?;
            }
            Ok(true)
        }
    }
}
