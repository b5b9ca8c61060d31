//! Append-only segment files that hold message bodies for the redb backend.
//!
//! Why: a 1 KB body inside a copy-on-write B-tree costs more to write than the
//! four index entries together (redb copies, checksums and rewrites its pages),
//! and the group-commit writer is the node's serial stage. Appending the bodies
//! to a plain file is a `write` and an `fdatasync`; redb keeps only the small
//! index entries, each pointing at `(segment, offset, length)`.
//!
//! Layout: `<dir>/<segment:08>.log`, numbered upwards. A record is
//! `len u32 LE | crc32 u32 LE of (id, body) | id 32 bytes | body`. The id lets
//! compaction find a record's index entry; the CRC turns a damaged record into
//! `StoreError::Corrupt` instead of wrong bytes.
//!
//! Rules that keep it crash-safe (the caller, `redb_store`, follows them):
//! - bodies are appended and synced *before* the redb transaction that points
//!   at them commits, so a committed pointer always finds synced bytes;
//! - a segment the index does not know (no row in redb's `segments` table) is
//!   an orphan of a crash before that commit and is deleted at open;
//! - each open starts a new segment, so no run appends after a torn tail;
//! - a segment file is deleted only after the commit that drops its last
//!   pointer; a reader that still held an old pointer finds the segment
//!   missing and re-reads the index.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::StoreError;

/// Record header: length, CRC, id.
pub const HEADER: u64 = 4 + 4 + 32;

/// Largest body the log holds. Far above any message the node accepts; it
/// bounds what a damaged length field can make a reader allocate.
pub const MAX_BODY: u32 = 16 << 20;

/// Where a body lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyRef {
    pub seg: u32,
    /// Offset of the record (its header) in the segment.
    pub off: u64,
    /// Body length (without the header).
    pub len: u32,
}

impl BodyRef {
    /// Bytes the record takes in its segment.
    pub fn record_len(&self) -> u64 {
        HEADER + u64::from(self.len)
    }
}

struct Active {
    seg: u32,
    file: Option<Arc<File>>,
    len: u64,
}

pub struct BodyLog {
    dir: PathBuf,
    /// Open read handles, one per live segment (the active one included).
    files: RwLock<HashMap<u32, Arc<File>>>,
    active: Mutex<Active>,
    /// A segment is closed once it reaches this size.
    target: u64,
}

/// Files written by an `append`, to be synced before the index commit.
pub struct Pending {
    files: Vec<Arc<File>>,
    new_segment: bool,
    dir: PathBuf,
}

impl Pending {
    /// `fdatasync` every touched segment, and the directory when a segment
    /// was created (so the new file's name is durable too).
    pub fn sync(self) -> Result<(), StoreError> {
        for f in &self.files {
            f.sync_data()?;
        }
        if self.new_segment {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn seg_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join(format!("{seg:08}.log"))
}

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(format!("body log: {what}"))
}

fn crc(id: &[u8; 32], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(id);
    h.update(body);
    h.finalize()
}

impl BodyLog {
    /// Opens the log in `dir`, keeping exactly the segments in `known` (the
    /// index's list) and deleting any other `*.log` file as a crash orphan.
    /// A known segment whose file is missing is an error: its bodies are lost.
    pub fn open(dir: &Path, known: &HashSet<u32>, target: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let mut files = HashMap::new();
        let mut highest = known.iter().copied().max().unwrap_or(0);
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(seg) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            highest = highest.max(seg);
            if known.contains(&seg) {
                files.insert(seg, Arc::new(File::open(entry.path())?));
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
        if let Some(lost) = known.iter().find(|s| !files.contains_key(s)) {
            return Err(corrupt(format!(
                "segment {} is in the index but {} is missing",
                lost,
                seg_path(dir, *lost).display()
            )));
        }
        let next = highest
            .checked_add(1)
            .ok_or_else(|| corrupt("segment numbers exhausted".into()))?;
        Ok(BodyLog {
            dir: dir.to_path_buf(),
            files: RwLock::new(files),
            active: Mutex::new(Active {
                seg: next,
                file: None,
                len: 0,
            }),
            target,
        })
    }

    /// The segment new records go to (no file yet if nothing was appended).
    pub fn active_segment(&self) -> u32 {
        self.active.lock().expect("body log lock").seg
    }

    /// Appends the records in order and returns where each went; nothing is
    /// durable until the returned `Pending` is synced. Rolls to a new segment
    /// when the active one reaches the target size.
    pub fn append(&self, records: &[(&[u8; 32], &[u8])]) -> Result<(Vec<BodyRef>, Pending), StoreError> {
        let mut active = self.active.lock().expect("body log lock");
        let mut refs = Vec::with_capacity(records.len());
        let mut pending = Pending {
            files: Vec::new(),
            new_segment: false,
            dir: self.dir.clone(),
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut i = 0;
        while i < records.len() {
            if active.file.is_some() && active.len >= self.target {
                active.seg = active
                    .seg
                    .checked_add(1)
                    .ok_or_else(|| corrupt("segment numbers exhausted".into()))?;
                active.file = None;
                active.len = 0;
            }
            if active.file.is_none() {
                let path = seg_path(&self.dir, active.seg);
                let f = Arc::new(
                    OpenOptions::new()
                        .create_new(true)
                        .read(true)
                        .append(true)
                        .open(&path)?,
                );
                self.files
                    .write()
                    .expect("body log lock")
                    .insert(active.seg, f.clone());
                active.file = Some(f);
                pending.new_segment = true;
            }
            buf.clear();
            let start = active.len;
            while i < records.len() && (buf.is_empty() || start + (buf.len() as u64) < self.target)
            {
                let (id, body) = records[i];
                let len = u32::try_from(body.len())
                    .ok()
                    .filter(|l| *l <= MAX_BODY)
                    .ok_or_else(|| StoreError::Invalid("body longer than 16 MiB".into()))?;
                refs.push(BodyRef {
                    seg: active.seg,
                    off: start + buf.len() as u64,
                    len,
                });
                buf.extend_from_slice(&len.to_le_bytes());
                buf.extend_from_slice(&crc(id, body).to_le_bytes());
                buf.extend_from_slice(id);
                buf.extend_from_slice(body);
                i += 1;
            }
            let file = active.file.clone().expect("opened above");
            // A failed write leaves the tail unknown: start a fresh segment next time.
            if let Err(e) = (&*file).write_all(&buf) {
                active.file = None;
                active.seg = active.seg.saturating_add(1);
                active.len = 0;
                return Err(e.into());
            }
            active.len += buf.len() as u64;
            pending.files.push(file);
        }
        Ok((refs, pending))
    }

    /// Reads one body and checks it. `Ok(None)`: the segment is gone (deleted
    /// after the caller's index snapshot was taken); re-read the index.
    pub fn read(&self, r: &BodyRef, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(file) = self.files.read().expect("body log lock").get(&r.seg).cloned() else {
            return Ok(None);
        };
        if r.len > MAX_BODY {
            return Err(corrupt(format!("index claims a body of {} bytes", r.len)));
        }
        let mut rec = vec![0u8; r.record_len() as usize];
        file.read_exact_at(&mut rec, r.off).map_err(|e| {
            corrupt(format!("segment {} offset {}: {e}", r.seg, r.off))
        })?;
        let body = check_record(&rec, r.len, id)
            .map_err(|what| corrupt(format!("segment {} offset {}: {what}", r.seg, r.off)))?;
        rec.drain(..HEADER as usize);
        debug_assert_eq!(body, rec.len());
        Ok(Some(rec))
    }

    /// Every record of a closed segment, in order: `(ref, id)`. Stops at the
    /// first record that does not check (a torn tail after a crash). Reads the
    /// segment once, holding one body at a time.
    pub fn scan(&self, seg: u32) -> Result<Vec<(BodyRef, [u8; 32])>, StoreError> {
        let mut r = BufReader::new(File::open(seg_path(&self.dir, seg))?);
        let mut out = Vec::new();
        let mut off = 0u64;
        let mut body = Vec::new();
        loop {
            let mut head = [0u8; HEADER as usize];
            if r.read_exact(&mut head).is_err() {
                break;
            }
            let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
            let want = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
            let id: [u8; 32] = head[8..].try_into().expect("32 bytes");
            if len > MAX_BODY {
                break;
            }
            body.resize(len as usize, 0);
            if r.read_exact(&mut body).is_err() || crc(&id, &body) != want {
                break;
            }
            let rf = BodyRef { seg, off, len };
            off += rf.record_len();
            out.push((rf, id));
        }
        Ok(out)
    }

    /// Deletes a segment the index no longer points into.
    pub fn remove(&self, seg: u32) -> Result<(), StoreError> {
        self.files.write().expect("body log lock").remove(&seg);
        match std::fs::remove_file(seg_path(&self.dir, seg)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Checks a whole record read at a ref; returns the body length.
fn check_record(rec: &[u8], len: u32, id: &[u8; 32]) -> Result<usize, String> {
    let h = HEADER as usize;
    let got_len = u32::from_le_bytes(rec[..4].try_into().expect("4 bytes"));
    if got_len != len {
        return Err(format!("length {got_len}, index says {len}"));
    }
    if &rec[8..h] != id {
        return Err("record holds another id".into());
    }
    let want = u32::from_le_bytes(rec[4..8].try_into().expect("4 bytes"));
    if crc(id, &rec[h..]) != want {
        return Err("checksum mismatch".into());
    }
    Ok(rec.len() - h)
}
