//! A read-only shared memory mapping of one log segment, so that an inbox
//! page's hundred record reads are memory copies instead of a hundred
//! `pread` calls (about a fifth of the node's CPU per page in a profile;
//! docs/storage.md, "Reads").
//!
//! Why this is sound: bytes are handed out only below `readable`, a length
//! the file is known to have (its size when the log opened it, or what the
//! log has written and zero-filled in the active segment), and a segment
//! file never shrinks while the node runs: records are appended, and whole
//! files are deleted (a deleted file's pages stay mapped until the mapping
//! is dropped). The one thing that breaks it is another process truncating
//! a segment file under a running node: a read of the lost pages then
//! faults (SIGBUS) instead of returning an error. Every store that maps its
//! files (LMDB, for one) has that contract; docs/storage.md states it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Mapping {
    ptr: NonNull<u8>,
    /// Bytes of address space mapped; may exceed the file's size (the
    /// active segment is mapped once, at the most it can grow to).
    reserved: usize,
    /// Bytes the file is known to hold; only grows.
    readable: AtomicU64,
}

// SAFETY: the mapping is read-only and its bytes below `readable` do not
// change (see the module comment); sharing a pointer to them between threads
// is as safe as sharing a `&[u8]`.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `reserved` bytes of `file` from its start, of which the first
    /// `readable` are known to exist. `None` for an empty reservation or
    /// when the system refuses the mapping: the caller reads with `pread`.
    pub fn new(file: &File, reserved: u64, readable: u64) -> Option<Mapping> {
        let reserved = usize::try_from(reserved).ok().filter(|r| *r > 0)?;
        // SAFETY: a fresh read-only shared mapping of a file descriptor we
        // own; no existing memory is touched. The result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserved,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(Mapping {
            ptr: NonNull::new(ptr.cast())?,
            reserved,
            readable: AtomicU64::new(readable),
        })
    }

    /// The file now holds at least `len` bytes (written before this call).
    pub fn grow_to(&self, len: u64) {
        self.readable.fetch_max(len, Ordering::Release);
    }

    /// `len` bytes at `off`, or `None` when they are not all known to be in
    /// the file (or lie past the reservation): read those with `pread`.
    pub fn get(&self, off: u64, len: usize) -> Option<&[u8]> {
        let end = off.checked_add(len as u64)?;
        if end > self.readable.load(Ordering::Acquire) || end > self.reserved as u64 {
            return None;
        }
        // SAFETY: `off..end` lies inside the mapping and below a length the
        // file is known to have, which never shrinks (module comment).
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off as usize), len) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no slice handed out by
        // `get` outlives `&self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.reserved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mapping;
    use std::os::unix::fs::FileExt;

    #[test]
    fn hands_out_only_bytes_known_to_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // Reserved well past the (empty) file, as for an active segment.
        let map = Mapping::new(&file, 1 << 20, 0).unwrap();
        assert!(map.get(0, 1).is_none(), "nothing written yet");
        file.write_all_at(b"hello world", 0).unwrap();
        assert!(map.get(0, 5).is_none(), "written but not declared");
        map.grow_to(11);
        assert_eq!(map.get(0, 5), Some(&b"hello"[..]));
        assert_eq!(map.get(6, 5), Some(&b"world"[..]));
        assert!(map.get(6, 6).is_none(), "one byte past what is readable");
        map.grow_to(3);
        assert_eq!(map.get(6, 5), Some(&b"world"[..]), "readable never shrinks");
        // Later writes to the file show through the shared mapping.
        file.write_all_at(b"W", 6).unwrap();
        assert_eq!(map.get(6, 5), Some(&b"World"[..]));
        assert!(map.get(u64::MAX, 2).is_none(), "offset overflow");
    }

    #[test]
    fn never_reads_past_the_reservation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let map = Mapping::new(&file, 4096, 8192).unwrap();
        assert_eq!(map.get(4000, 96).map(|b| b.len()), Some(96));
        assert!(map.get(4000, 97).is_none());
        assert!(Mapping::new(&file, 0, 0).is_none(), "empty reservation");
    }
}
