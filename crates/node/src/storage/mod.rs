//! The node's embedded message store, behind a narrow, object-safe trait.
//!
//! The node holds an `Arc<dyn Store>`. Every method blocks (a durable commit
//! waits for fsync), so the node calls them from a dedicated thread (see
//! [`crate::writer`] for the group-commit writer) or from `spawn_blocking`.
//!
//! Two backends implement the trait and pass the same behavioural tests
//! (`crates/node/tests/storage.rs`): [`sqlite::SqliteStore`] and
//! [`redb_store::RedbStore`]. [`open_default`] opens the one the storage
//! benchmark ([`bench`]) picked; docs/storage.md has the figures.
//!
//! Data model, shared by both backends:
//! - a message is stored once, with a per-node arrival sequence `seq`
//!   (monotonic, persisted, never reused, also not after a delete or a restart);
//! - a per-recipient index on `(recipient, seq)` makes an inbox page a range scan;
//! - a recipient's delete leaves a tombstone `(id, created, expires)` so the same
//!   id is refused (not resurrected by a resend or a replication) until it expires;
//! - an index on `expires` makes the purge a range scan, and one on `(created, id)`
//!   serves replication's set reconciliation.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

pub mod bench;
mod body_log;
mod id_map;
mod mapped;
mod redb_checkpoint;
mod redb_index;
pub mod redb_store;
pub mod sqlite;

/// A message accepted by admission, ready to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// `sha256(packed)`, the message id.
    pub id: [u8; 32],
    /// Recipient FIO Address, canonical lowercase.
    pub recipient: String,
    /// Sender FIO Address, canonical lowercase.
    pub sender: String,
    /// Unix seconds.
    pub created: u32,
    /// Unix seconds; the store drops the message (and its tombstone) after this.
    pub expires: u32,
    /// The signed message as `crate::stored::encode` makes it (canonical JSON
    /// with id; decode with `crate::stored::decode`); the store never parses it.
    pub binary: Vec<u8>,
}

/// A stored message as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// The node's arrival sequence number: the inbox cursor.
    pub seq: u64,
    pub id: [u8; 32],
    pub recipient: String,
    pub sender: String,
    pub created: u32,
    pub expires: u32,
    pub binary: Vec<u8>,
}

/// What `put_batch` did with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored now, with this arrival sequence.
    Inserted { seq: u64 },
    /// Already stored (same id) with this sequence: nothing changed.
    Existing { seq: u64 },
    /// The recipient deleted this id earlier (a tombstone exists): refused.
    Deleted,
}

/// What the store knows about an id (`lookup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdState {
    /// Stored, with this arrival sequence.
    Stored { seq: u64 },
    /// Deleted by its recipient; the tombstone lives until `expires`.
    Deleted { expires: u32 },
}

/// Inbox page order, by arrival sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    OldestFirst,
    NewestFirst,
}

/// A storage failure. Bad data read back from disk is `Corrupt`, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backend (I/O, database engine) failed.
    Backend(String),
    /// What was read back from disk does not decode.
    Corrupt(String),
    /// The caller passed something the store cannot hold (e.g. a field too long).
    Invalid(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Backend(m) => write!(f, "storage backend error: {m}"),
            StoreError::Corrupt(m) => write!(f, "corrupt stored data: {m}"),
            StoreError::Invalid(m) => write!(f, "invalid value for storage: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// The node's message store. All methods block; see the module docs.
pub trait Store: Send + Sync {
    /// Stores the batch in one durable transaction (fsync'd before returning).
    /// Idempotent per id: a known id answers `Existing` (also for a duplicate
    /// within the batch), a tombstoned id `Deleted`. One outcome per input, in order.
    fn put_batch(&self, msgs: &[NewMessage]) -> Result<Vec<PutOutcome>, StoreError>;

    /// Deferred work a backend does off the acknowledgement path: the writer
    /// calls it after it has answered each batch (redb makes a due checkpoint
    /// here). A failure is logged; stored messages stay stored.
    fn after_batch(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Cheap known-id check for early admission.
    fn lookup(&self, id: &[u8; 32]) -> Result<Option<IdState>, StoreError>;

    /// `lookup` of each id, in order; a backend may share one read among them.
    fn lookup_many(&self, ids: &[[u8; 32]]) -> Result<Vec<Option<IdState>>, StoreError> {
        ids.iter().map(|id| self.lookup(id)).collect()
    }

    /// One stored message by id (not a tombstone).
    fn get(&self, id: &[u8; 32]) -> Result<Option<StoredEntry>, StoreError>;

    /// A page of one recipient's inbox by arrival sequence. `cursor` is the last
    /// seq seen (exclusive): with `OldestFirst` the page has seqs above it, with
    /// `NewestFirst` seqs below it. Skips expired messages (`expires <= now`).
    /// Messages arriving meanwhile never shift a page: a new message has a higher
    /// seq than all before it.
    fn list_inbox(
        &self,
        recipient: &str,
        cursor: Option<u64>,
        limit: usize,
        order: Order,
        now: u32,
    ) -> Result<Vec<StoredEntry>, StoreError>;

    /// The recipient deletes (acks) messages: only ids stored for this recipient
    /// are deleted, each leaving a tombstone until its `expires`. Returns per id
    /// whether it was deleted by this call. One durable transaction.
    fn delete(&self, recipient: &str, ids: &[[u8; 32]]) -> Result<Vec<bool>, StoreError>;

    /// Removes messages and tombstones with `expires <= now`; returns how many
    /// (messages plus tombstones).
    fn purge_expired(&self, now: u32) -> Result<u64, StoreError>;

    /// Number of stored messages (tombstones excluded).
    fn count(&self) -> Result<u64, StoreError>;

    /// For replication (set reconciliation over `(created, id)`): messages and
    /// tombstones (flag `true`) with `created` in `[from_created, to_created)`,
    /// ordered by `(created, id)`, at most `limit`.
    fn range(
        &self,
        from_created: u32,
        to_created: u32,
        limit: usize,
    ) -> Result<Vec<(u32, [u8; 32], bool)>, StoreError>;

    /// The backend's name, for logs and the benchmark report.
    fn backend_name(&self) -> &'static str;

    /// For replication: apply verified deletions of `recipient`'s messages.
    /// Per item `(id, created, expires)`: a message stored for `recipient` is
    /// deleted leaving a tombstone (its own `created`/`expires` kept); an id
    /// unknown here gets a tombstone with the given `created`/`expires`, so it
    /// is refused when it arrives later; an existing tombstone stays. Answers
    /// `false` for an id stored for another recipient (nothing changed), else
    /// `true`. One durable transaction.
    fn put_tombstones(
        &self,
        recipient: &str,
        items: &[([u8; 32], u32, u32)],
    ) -> Result<Vec<bool>, StoreError> {
        let _ = (recipient, items);
        Err(StoreError::Invalid(format!(
            "{} does not support put_tombstones",
            self.backend_name()
        )))
    }

    /// Messages stored for `recipient` (expired ones not yet purged
    /// included), for the inbox quota. The default pages through
    /// `list_inbox`; both backends answer from their index.
    fn inbox_count(&self, recipient: &str) -> Result<u64, StoreError> {
        let mut n = 0u64;
        let mut cursor = None;
        loop {
            let page = self.list_inbox(recipient, cursor, 1000, Order::OldestFirst, 0)?;
            n += page.len() as u64;
            match page.last() {
                Some(e) if page.len() == 1000 => cursor = Some(e.seq),
                _ => return Ok(n),
            }
        }
    }
}

/// The storage backends this node can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Redb,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Redb];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Redb => "redb",
        }
    }

    /// The database file name this backend uses inside the node's data dir.
    pub fn file_name(self) -> &'static str {
        match self {
            Backend::Sqlite => "messages.sqlite",
            Backend::Redb => "messages.redb",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "redb" => Ok(Backend::Redb),
            other => Err(StoreError::Invalid(format!(
                "unknown storage backend {other:?} (sqlite, redb)"
            ))),
        }
    }
}

/// The backend chosen by the storage benchmark (docs/storage.md): redb, for
/// faster id lookups and far lower page p99 while a writer commits. Since its
/// messages moved to the append-only log it also ingests faster than SQLite
/// did; SQLite uses about half the disk.
pub const DEFAULT_BACKEND: Backend = Backend::Redb;

/// Opens (creating if needed) the store of `backend` in directory `dir`.
pub fn open(backend: Backend, dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(backend.file_name());
    Ok(match backend {
        Backend::Sqlite => Arc::new(sqlite::SqliteStore::open(&path)?),
        Backend::Redb => Arc::new(redb_store::RedbStore::open(&path)?),
    })
}

/// Opens the default (measured winner) backend in `dir`.
pub fn open_default(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    open(DEFAULT_BACKEND, dir)
}

/// Longest recipient or sender the store accepts, in bytes. FIO Addresses are at
/// most 64 characters; the margin keeps the store independent of that rule while
/// still bounding what a length prefix on disk may claim.
pub const MAX_ADDRESS_LEN: usize = 255;

pub(crate) fn check_new(m: &NewMessage) -> Result<(), StoreError> {
    if m.recipient.len() > MAX_ADDRESS_LEN || m.sender.len() > MAX_ADDRESS_LEN {
        return Err(StoreError::Invalid("address longer than 255 bytes".into()));
    }
    Ok(())
}
