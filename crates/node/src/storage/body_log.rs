//! The message log of the redb backend: append-only segment files that hold
//! every stored message, body and metadata, and are the store's durability
//! point (a write-ahead log).
//!
//! Why: a 1 KB body inside a copy-on-write B-tree costs more to write than the
//! four index entries together (redb copies, checksums and rewrites its pages),
//! and a durable redb commit rewrites every index page a batch touched. The
//! group-commit writer is the node's serial stage, so `put_batch` appends to the
//! log and `fdatasync`s it, then commits the index without an fsync; the index
//! is made durable every so often (a checkpoint) and rebuilt from the log after
//! a crash (see `redb_store`).
//!
//! Layout: `<dir>/<segment:08>.log`, numbered upwards. A record is
//! `len u32 | crc32 u32 | id 32 | seq u64 | created u32 | expires u32 |
//! recipient_len u8 | sender_len u8 | recipient | sender | body` (integers little
//! endian; `len` is the whole record, the CRC covers everything after itself).
//! The CRC turns a damaged record into `StoreError::Corrupt` instead of wrong
//! bytes, and marks where a torn tail begins.
//!
//! Space ahead of the end is written with zeros and synced before records go
//! there (`PREPARE_CHUNK` at a time). An `fdatasync` of records then changes no
//! file size, so it needs no journal commit: it is a data flush alone. Under a
//! loaded CPU that halved the sync's tail here (docs/storage.md). A scan stops
//! at the zeros: a length of 0 is no record.
//!
//! Rules that keep it crash-safe (the caller, `redb_store`, follows them):
//! - records are appended and synced *before* the redb transaction that points
//!   at them commits, so an index entry always finds synced bytes;
//! - each open starts a new segment, so no run appends after a torn tail;
//! - a segment file is deleted only after a durable commit dropped its last
//!   pointer; a reader that still held an old pointer finds the segment
//!   missing and re-reads the index.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::mapped::Mapping;
use super::StoreError;

/// Fixed part of a record: len, crc, id, seq, created, expires, two lengths.
const FIXED: usize = 4 + 4 + 32 + 8 + 4 + 4 + 1 + 1;

/// One message as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord<'a> {
    pub id: &'a [u8; 32],
    pub seq: u64,
    pub created: u32,
    pub expires: u32,
    pub recipient: &'a str,
    pub sender: &'a str,
    pub body: &'a [u8],
}

/// A record's fields without its body, and where it is: what
/// [`BodyLog::scan`] reads back, and what an index entry is made of.
#[derive(Clone, Debug)]
pub struct RecordMeta {
    pub at: BodyRef,
    pub id: [u8; 32],
    pub seq: u64,
    pub created: u32,
    pub expires: u32,
    pub recipient: String,
    pub sender: String,
}

impl RecordMeta {
    /// The record again, with `body`, for appending elsewhere (compaction).
    pub fn with_body<'a>(&'a self, body: &'a [u8]) -> LogRecord<'a> {
        LogRecord {
            id: &self.id,
            seq: self.seq,
            created: self.created,
            expires: self.expires,
            recipient: &self.recipient,
            sender: &self.sender,
            body,
        }
    }
}

/// A position in the log: everything before `(seg, off)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPos {
    pub seg: u32,
    pub off: u64,
}

/// Zeroed space written ahead of the log's end at a time (at most the
/// segment target).
const PREPARE_CHUNK: u64 = 1 << 20;

/// Largest record the log holds. Far above any message the node accepts; it
/// bounds what a damaged length field can make a reader allocate.
const MAX_RECORD: u32 = 16 << 20;

/// Where a record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyRef {
    pub seg: u32,
    /// Offset of the record in the segment.
    pub off: u64,
    /// Length of the whole record.
    pub len: u32,
}

/// A segment file, and its mapping for reads when the system gave one.
struct Segment {
    file: Arc<File>,
    map: Option<Mapping>,
}

impl Segment {
    /// Maps `reserved` bytes, of which the file holds `readable`.
    fn new(file: File, reserved: u64, readable: u64) -> Arc<Segment> {
        let map = Mapping::new(&file, reserved, readable);
        Arc::new(Segment {
            file: Arc::new(file),
            map,
        })
    }
}

struct Active {
    seg: u32,
    segment: Option<Arc<Segment>>,
    len: u64,
    /// The file's zeroed length: records up to here overwrite zeros.
    prepared: u64,
}

pub struct BodyLog {
    dir: PathBuf,
    /// Open read handles, one per live segment (the active one included).
    files: RwLock<HashMap<u32, Arc<Segment>>>,
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

fn encode(r: &LogRecord<'_>, buf: &mut Vec<u8>) -> Result<u32, StoreError> {
    let len = FIXED + r.recipient.len() + r.sender.len() + r.body.len();
    let len = u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_RECORD)
        .ok_or_else(|| StoreError::Invalid("message record longer than 16 MiB".into()))?;
    let short = |s: &str| {
        u8::try_from(s.len())
            .map_err(|_| StoreError::Invalid("address longer than 255 bytes".into()))
    };
    let start = buf.len();
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(r.id);
    buf.extend_from_slice(&r.seq.to_le_bytes());
    buf.extend_from_slice(&r.created.to_le_bytes());
    buf.extend_from_slice(&r.expires.to_le_bytes());
    buf.push(short(r.recipient)?);
    buf.push(short(r.sender)?);
    buf.extend_from_slice(r.recipient.as_bytes());
    buf.extend_from_slice(r.sender.as_bytes());
    buf.extend_from_slice(r.body);
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(len)
}

/// Checks a whole record (length, checksum, address lengths) and returns
/// where its body starts.
fn check(rec: &[u8]) -> Result<usize, String> {
    if rec.len() < FIXED {
        return Err("record shorter than its header".into());
    }
    let len = u32::from_le_bytes(rec[0..4].try_into().expect("4 bytes"));
    if len as usize != rec.len() {
        return Err(format!("length {len}, expected {}", rec.len()));
    }
    if crc32fast::hash(&rec[8..]).to_le_bytes() != rec[4..8] {
        return Err("checksum mismatch".into());
    }
    let body = FIXED + rec[56] as usize + rec[57] as usize;
    if body > rec.len() {
        return Err("address lengths overrun the record".into());
    }
    Ok(body)
}

/// A whole record checked and split: (fields, body offset within `rec`).
fn decode(rec: &[u8], at: BodyRef) -> Result<(RecordMeta, usize), String> {
    let body = check(rec)?;
    let u32_at = |i: usize| u32::from_le_bytes(rec[i..i + 4].try_into().expect("4 bytes"));
    let text = |r: std::ops::Range<usize>| {
        std::str::from_utf8(&rec[r])
            .map(str::to_owned)
            .map_err(|_| "address not UTF-8".to_string())
    };
    let rlen = rec[56] as usize;
    Ok((
        RecordMeta {
            at,
            id: rec[8..40].try_into().expect("32 bytes"),
            seq: u64::from_le_bytes(rec[40..48].try_into().expect("8 bytes")),
            created: u32_at(48),
            expires: u32_at(52),
            recipient: text(FIXED..FIXED + rlen)?,
            sender: text(FIXED + rlen..body)?,
        },
        body,
    ))
}

/// A whole record read for `id`: `check`, and the id, without building the
/// fields a read does not use. Returns where its body starts.
fn check_record(rec: &[u8], id: &[u8; 32]) -> Result<usize, String> {
    let body = check(rec)?;
    if &rec[8..40] != id {
        return Err("record holds another id".into());
    }
    Ok(body)
}

/// One record's body out of `segment`, the record checked against `id`.
fn read_in(segment: &Segment, r: &BodyRef, id: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
    let at = |what: String| corrupt(format!("segment {} offset {}: {what}", r.seg, r.off));
    if r.len > MAX_RECORD {
        return Err(at(format!("index claims a record of {} bytes", r.len)));
    }
    let mapped = segment
        .map
        .as_ref()
        .and_then(|m| m.get(r.off, r.len as usize));
    if let Some(rec) = mapped {
        let body = check_record(rec, id).map_err(at)?;
        return Ok(rec[body..].to_vec());
    }
    // Not mapped, or not known to be in the file (a damaged index pointing
    // past its end gets the read's error, not a fault).
    let mut rec = vec![0u8; r.len as usize];
    segment
        .file
        .read_exact_at(&mut rec, r.off)
        .map_err(|e| at(e.to_string()))?;
    let body = check_record(&rec, id).map_err(at)?;
    rec.drain(..body);
    Ok(rec)
}

impl BodyLog {
    /// Opens the log in `dir`. Keeps the segments in `known` (the durable
    /// index's list) and every segment from `replay_from` on (records the
    /// index may not have made durable yet); deletes any other `*.log` file,
    /// whose last pointer a durable commit dropped. A known segment whose file
    /// is missing is an error: its messages are lost.
    pub fn open(
        dir: &Path,
        known: &HashSet<u32>,
        replay_from: u32,
        target: u64,
    ) -> Result<Self, StoreError> {
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
            if known.contains(&seg) || seg >= replay_from {
                // Every segment on disk at open is sealed: this run appends
                // to a new one.
                let file = File::open(entry.path())?;
                let len = file.metadata()?.len();
                files.insert(seg, Segment::new(file, len, len));
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
                segment: None,
                len: 0,
                prepared: 0,
            }),
            target,
        })
    }

    /// The segment new records go to (no file yet if nothing was appended).
    pub fn active_segment(&self) -> u32 {
        self.active.lock().expect("body log lock").seg
    }

    /// The end of the log: where the next record goes.
    pub fn end(&self) -> LogPos {
        let a = self.active.lock().expect("body log lock");
        LogPos {
            seg: a.seg,
            off: a.len,
        }
    }

    /// Segments on disk, in order.
    pub fn segments(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .files
            .read()
            .expect("body log lock")
            .keys()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Appends the records in order and returns where each went and the log's
    /// new end; nothing is durable until the returned `Pending` is synced.
    /// Rolls to a new segment when the active one reaches the target size.
    pub fn append(
        &self,
        records: &[LogRecord<'_>],
    ) -> Result<(Vec<BodyRef>, Pending, LogPos), StoreError> {
        let mut active = self.active.lock().expect("body log lock");
        let mut refs = Vec::with_capacity(records.len());
        let mut pending = Pending {
            files: Vec::new(),
            new_segment: false,
            dir: self.dir.clone(),
        };
        let mut buf: Vec<u8> = Vec::with_capacity(
            records
                .iter()
                .map(|r| FIXED + r.recipient.len() + r.sender.len() + r.body.len())
                .sum(),
        );
        let mut i = 0;
        while i < records.len() {
            if active.segment.is_some() && active.len >= self.target {
                active.seg = active
                    .seg
                    .checked_add(1)
                    .ok_or_else(|| corrupt("segment numbers exhausted".into()))?;
                active.segment = None;
                active.len = 0;
            }
            if active.segment.is_none() {
                let path = seg_path(&self.dir, active.seg);
                let f = OpenOptions::new()
                    .create_new(true)
                    .read(true)
                    .write(true)
                    .open(&path)?;
                // Mapped once at the most it can grow to: the target, one
                // record that crosses it, and the zeros ahead of the end.
                let most = self.target + u64::from(MAX_RECORD) + PREPARE_CHUNK;
                let segment = Segment::new(f, most, 0);
                active.prepared = 0;
                self.files
                    .write()
                    .expect("body log lock")
                    .insert(active.seg, segment.clone());
                active.segment = Some(segment);
                pending.new_segment = true;
            }
            buf.clear();
            let start = active.len;
            while i < records.len() && (buf.is_empty() || start + (buf.len() as u64) < self.target)
            {
                let off = start + buf.len() as u64;
                let len = encode(&records[i], &mut buf)?;
                refs.push(BodyRef {
                    seg: active.seg,
                    off,
                    len,
                });
                i += 1;
            }
            let segment = active.segment.clone().expect("opened above");
            let end = start + buf.len() as u64;
            let written = segment
                .file
                .write_all_at(&buf, start)
                .and_then(|()| self.prepare(&segment, &mut active, end));
            // A failed write leaves the tail unknown: start a fresh segment next time.
            if let Err(e) = written {
                active.segment = None;
                active.seg = active.seg.saturating_add(1);
                active.len = 0;
                return Err(e.into());
            }
            active.len = end;
            pending.files.push(segment.file.clone());
        }
        let end = LogPos {
            seg: active.seg,
            off: active.len,
        };
        Ok((refs, pending, end))
    }

    /// Keeps at least half a chunk of zeroed space after `end`, writing
    /// another chunk of zeros when less is left. The caller's sync makes
    /// them durable together with the records, so the next syncs need no
    /// size change.
    fn prepare(&self, segment: &Segment, active: &mut Active, end: u64) -> std::io::Result<()> {
        let chunk = PREPARE_CHUNK.min(self.target).max(4096);
        if active.prepared >= end + chunk / 2 {
            return Ok(());
        }
        // Zeros from a static block: a fresh zeroed megabyte per chunk cost
        // the writer page faults (the kernel zeroing new pages) every time.
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut at = active.prepared.max(end);
        let to = end + chunk;
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64);
            segment.file.write_all_at(&ZEROS[..n as usize], at)?;
            at += n;
        }
        active.prepared = to;
        // Readers may now map everything up to here (records before `end`
        // among it): the file holds these bytes.
        if let Some(map) = &segment.map {
            map.grow_to(to);
        }
        Ok(())
    }

    /// One record: `read_many` of one (the tests' form).
    #[cfg(test)]
    fn read(&self, r: &BodyRef, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.segment(r.seg) {
            Some(segment) => read_in(&segment, r, id).map(Some),
            None => Ok(None),
        }
    }

    /// Reads each record's body and checks the record, looking a segment up
    /// once for a run of records in it (an inbox page's usually share one).
    /// `Ok(None)`: a segment is gone (deleted after the caller's index
    /// snapshot was taken); re-read the index.
    pub fn read_many<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a BodyRef, &'a [u8; 32])>,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let records = records.into_iter();
        let mut out = Vec::with_capacity(records.size_hint().0);
        let mut last: Option<(u32, Arc<Segment>)> = None;
        for (r, id) in records {
            let segment = match &last {
                Some((seg, s)) if *seg == r.seg => s.clone(),
                _ => match self.segment(r.seg) {
                    Some(s) => {
                        last = Some((r.seg, s.clone()));
                        s
                    }
                    None => return Ok(None),
                },
            };
            out.push(read_in(&segment, r, id)?);
        }
        Ok(Some(out))
    }

    fn segment(&self, seg: u32) -> Option<Arc<Segment>> {
        self.files.read().expect("body log lock").get(&seg).cloned()
    }

    /// The records of segment `seg` from offset `from`, in order, without
    /// bodies. Stops at the first record that does not check: a torn tail
    /// after a crash (only the last segment a run wrote can have one).
    pub fn scan(&self, seg: u32, from: u64) -> Result<Vec<RecordMeta>, StoreError> {
        let mut f = File::open(seg_path(&self.dir, seg))?;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(from))?;
        let mut r = BufReader::new(f);
        let mut out = Vec::new();
        let mut off = from;
        let mut rec = Vec::new();
        loop {
            let mut len = [0u8; 4];
            if r.read_exact(&mut len).is_err() {
                break;
            }
            let len = u32::from_le_bytes(len);
            if (len as usize) < FIXED || len > MAX_RECORD {
                break;
            }
            rec.clear();
            rec.extend_from_slice(&len.to_le_bytes());
            rec.resize(len as usize, 0);
            if r.read_exact(&mut rec[4..]).is_err() {
                break;
            }
            let at = BodyRef { seg, off, len };
            let Ok((fields, _)) = decode(&rec, at) else {
                break;
            };
            off += u64::from(len);
            out.push(fields);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(id: &'a [u8; 32], body: &'a [u8]) -> LogRecord<'a> {
        LogRecord {
            id,
            seq: u64::from(id[0]),
            created: 1,
            expires: 2,
            recipient: "bob@wallet",
            sender: "alice@wallet",
            body,
        }
    }

    #[test]
    fn mapped_reads_stay_in_bounds_and_outlive_a_deleted_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (id1, id2) = ([1u8; 32], [2u8; 32]);
        let log = BodyLog::open(dir.path(), &HashSet::new(), 0, 1 << 20).unwrap();
        let (refs, pending, _) = log
            .append(&[record(&id1, b"first body"), record(&id2, b"second")])
            .unwrap();
        pending.sync().unwrap();
        let seg = refs[0].seg;
        let mapped = |log: &BodyLog, r: &BodyRef| {
            let s = log.files.read().unwrap()[&r.seg].clone();
            let m = s.map.as_ref().expect("segment mapped");
            m.get(r.off, r.len as usize).is_some()
        };
        // The active segment: served from its mapping.
        assert!(mapped(&log, &refs[0]) && mapped(&log, &refs[1]));
        assert_eq!(log.read(&refs[0], &id1).unwrap().unwrap(), b"first body");
        assert_eq!(log.read(&refs[1], &id2).unwrap().unwrap(), b"second");
        // Inside the reservation but past what the file holds: `pread`'s
        // error, reported as corruption (a fault would kill the node).
        let past = BodyRef {
            off: 10 << 20,
            ..refs[0]
        };
        assert!(!mapped(&log, &past));
        assert!(matches!(log.read(&past, &id1), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            log.read(&refs[1], &id1),
            Err(StoreError::Corrupt(_))
        ));
        drop(log);
        // Reopened, the segment is sealed and mapped at its size.
        let log = BodyLog::open(dir.path(), &HashSet::from([seg]), seg + 1, 1 << 20).unwrap();
        assert!(mapped(&log, &refs[1]));
        assert_eq!(log.read(&refs[1], &id2).unwrap().unwrap(), b"second");
        assert!(matches!(log.read(&past, &id1), Err(StoreError::Corrupt(_))));
        // A reader that took the segment before it was deleted still reads
        // it: the unlinked file's pages stay mapped while the reader holds it.
        let held = log.files.read().unwrap()[&seg].clone();
        log.remove(seg).unwrap();
        assert!(!dir.path().join(format!("{seg:08}.log")).exists());
        assert_eq!(log.read(&refs[0], &id1).unwrap(), None, "segment gone");
        let m = held.map.as_ref().expect("mapped");
        let rec = m
            .get(refs[0].off, refs[0].len as usize)
            .expect("still mapped");
        let body = check_record(rec, &id1).unwrap();
        assert_eq!(&rec[body..], b"first body");
    }
}
