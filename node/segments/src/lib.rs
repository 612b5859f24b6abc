//! Append-only segment files for records too big to live well in sled: block bodies and Raft
//! entries (100 to 250 KB each under load).
//!
//! sled 0.34 splits a leaf only above 16 items, so a tree of values of a few hundred KB has
//! leaves of 2 to 3 MB, and every insert into the newest leaf rewrites all of it as a new blob
//! file (measured in session 6: a third of a follower's Raft thread in `write_blob`, a quarter
//! in creating those files). Here a record is written once, at the end of a segment file, and
//! sled keeps only its [`Location`] (25 bytes), as Fabric's block store and etcd's WAL keep
//! their bulk in files and an index beside.
//!
//! # Files
//!
//! A store is a directory of segments named `{id:020}.seg`, ids counting up from 1. Records
//! are written back to back, unframed: the location in sled says where a record starts, how
//! long it is and the CRC-32 (IEEE, as `crc32fast` computes it) of its bytes.
//!
//! A record is stored as an LZ4 block (`lz4_flex`) when that makes it shorter, and its
//! location then also says how long it is once decompressed (29 bytes with the tag 0xFE
//! instead of 25 with 0xFF). Blocks and Raft entries repeat the same certificates and keys in
//! every transaction: measured on the segments of a 4-org testnet under load, 3.4 times
//! shorter for 30 KB records and 4.7 times for 150 KB, at 1.2 to 2.7 GB/s to compress and
//! about 10 GB/s to decompress. Fewer bytes to write, to copy into the page cache and to sync.
//! Records written before (25-byte locations) read as they are. A process writes
//! only to segments it created: the first append after [`SegmentStore::open`] starts a new
//! segment, so a tail torn by a crash (bytes written, never referenced) is never appended to
//! and is simply unreferenced. A segment is closed and a new one started when the next record
//! would take it over the size limit.
//!
//! # Durability
//!
//! [`SegmentStore::append`] writes without syncing. Before the caller stores a location in
//! sled it calls [`SegmentStore::sync`] (`fdatasync` of the segment written since the last
//! sync; a segment closed by rotation is synced when closed, and a new segment's directory
//! entry is synced when it is created). So no location ever reaches sled's disk before the
//! bytes it points to, whatever sled flushes in the background.
//!
//! # Deletion
//!
//! The store does not know which records are live. A caller whose records die in order (the
//! Raft log after compaction) removes whole segments with
//! [`SegmentStore::remove_segments_before`] once the removal of their locations is durable in
//! sled; the segment being written is never removed.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Default size at which a segment is closed and the next one started: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Most segment files kept open for reading at once (reads of older segments reopen them).
const MAX_OPEN_READERS: usize = 32;

const SUFFIX: &str = ".seg";

/// A segment store failed.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A file operation failed.
    #[error("segment store: {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error from the operating system.
        source: io::Error,
    },
    /// A location names a segment that is not in the store (removed, or never written here).
    #[error("segment {segment} is missing from {}", dir.display())]
    Missing {
        /// The segment id.
        segment: u64,
        /// The store's directory.
        dir: PathBuf,
    },
    /// A record's bytes are not what its location says (short file, wrong checksum).
    #[error("segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment id.
        segment: u64,
        /// The record's offset.
        offset: u64,
        /// What did not match.
        reason: String,
    },
    /// A record is longer than the caller's limit or than a location can say (4 GiB).
    #[error("record of {len} bytes is over the limit of {max}")]
    TooLong {
        /// The record's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Bytes that should encode a [`Location`] do not.
    #[error("not a segment location: {0}")]
    BadLocation(String),
}

/// Where a record is: segment, offset, stored length and the CRC-32 of its stored bytes, and
/// whether it is stored compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// The segment id.
    pub segment: u64,
    /// Offset of the record's first byte in the segment.
    pub offset: u64,
    /// The record's length in bytes in the segment (compressed, if it is).
    pub len: u32,
    /// CRC-32 (IEEE) of the record's bytes in the segment.
    pub crc: u32,
    /// `Some(n)`: the record is stored as an LZ4 block that decompresses to `n` bytes;
    /// `None`: stored as written.
    pub raw_len: Option<u32>,
}

impl Location {
    /// Bytes of an encoded location of a record stored as written.
    pub const ENCODED_LEN: usize = 25;
    /// Bytes of an encoded location of a compressed record (one more `u32`: its length).
    pub const ENCODED_LZ4_LEN: usize = 29;
    /// The longest encoded location.
    pub const MAX_ENCODED_LEN: usize = Self::ENCODED_LZ4_LEN;
    /// First byte of an encoded location. It can start neither a CBOR item (0xFF is the
    /// "break" code) nor a protobuf message (wire type 7 does not exist), so a stored value
    /// is told apart from a record kept inline by sled without any other marker.
    pub const TAG: u8 = 0xFF;
    /// First byte of an encoded location of a compressed record. No CBOR item starts with it
    /// (additional information 30 is reserved) and no protobuf message does (wire type 6 does
    /// not exist either).
    pub const TAG_LZ4: u8 = 0xFE;

    /// The record's length as it was written (and as [`SegmentStore::read`] returns it).
    pub fn record_len(&self) -> u32 {
        self.raw_len.unwrap_or(self.len)
    }

    /// `TAG || segment || offset || len || crc`, or `TAG_LZ4 || segment || offset || len ||
    /// crc || raw_len` for a compressed record; integers big-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::MAX_ENCODED_LEN);
        out.push(if self.raw_len.is_some() {
            Self::TAG_LZ4
        } else {
            Self::TAG
        });
        out.extend_from_slice(&self.segment.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.crc.to_be_bytes());
        if let Some(raw) = self.raw_len {
            out.extend_from_slice(&raw.to_be_bytes());
        }
        out
    }

    /// Whether `bytes` is an encoded location (length and tag).
    pub fn is_location(bytes: &[u8]) -> bool {
        match bytes.first() {
            Some(&Self::TAG) => bytes.len() == Self::ENCODED_LEN,
            Some(&Self::TAG_LZ4) => bytes.len() == Self::ENCODED_LZ4_LEN,
            _ => false,
        }
    }

    /// Decodes [`Location::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Location, SegmentError> {
        if !Self::is_location(bytes) {
            return Err(SegmentError::BadLocation(format!(
                "{} bytes, first {:?}",
                bytes.len(),
                bytes.first()
            )));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[i..i + 4]);
            u32::from_be_bytes(b)
        };
        Ok(Location {
            segment: u64_at(1),
            offset: u64_at(9),
            len: u32_at(17),
            crc: u32_at(21),
            raw_len: (bytes[0] == Self::TAG_LZ4).then(|| u32_at(25)),
        })
    }
}

/// The segment being written.
#[derive(Debug)]
struct Active {
    id: u64,
    file: File,
    len: u64,
    /// Written since the last sync.
    dirty: bool,
}

#[derive(Debug)]
struct Writer {
    active: Option<Active>,
    /// Every segment in the directory (the active one included).
    segments: BTreeSet<u64>,
    next_id: u64,
}

/// A directory of append-only segments. Appends are serialised by an internal lock; reads
/// run concurrently with appends and with each other (positional reads).
#[derive(Debug)]
pub struct SegmentStore {
    dir: PathBuf,
    max_segment_bytes: u64,
    writer: Mutex<Writer>,
    readers: Mutex<HashMap<u64, Arc<File>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything can panic, so a
    // poisoned lock still holds good data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SegmentError + 'a {
    move |source| SegmentError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn segment_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl SegmentStore {
    /// Opens (creating it if needed) the store in `dir`. Segments close at
    /// `max_segment_bytes` (a record bigger than that gets a segment of its own).
    pub fn open(dir: impl AsRef<Path>, max_segment_bytes: u64) -> Result<Self, SegmentError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let mut segments = BTreeSet::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(segment_id) {
                segments.insert(id);
            }
        }
        let next_id = segments.last().map_or(1, |last| last.saturating_add(1));
        Ok(SegmentStore {
            dir,
            max_segment_bytes: max_segment_bytes.max(1),
            writer: Mutex::new(Writer {
                active: None,
                segments,
                next_id,
            }),
            readers: Mutex::new(HashMap::new()),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of segment `id`.
    pub fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}{SUFFIX}"))
    }

    /// The segments in the directory, oldest first.
    pub fn segments(&self) -> Vec<u64> {
        lock(&self.writer).segments.iter().copied().collect()
    }

    /// The segment being written, if this process has written any.
    pub fn active_segment(&self) -> Option<u64> {
        lock(&self.writer).active.as_ref().map(|a| a.id)
    }

    /// The lowest segment id that may still receive appends: the active segment, or the one
    /// the next append will create. Segments below it are closed for good.
    pub fn first_open_id(&self) -> u64 {
        let w = lock(&self.writer);
        w.active.as_ref().map_or(w.next_id, |a| a.id)
    }

    /// Writes `data` at the end of the active segment (starting a new one first when needed),
    /// LZ4-compressed when that makes it shorter. Not durable until [`Self::sync`]; store the
    /// location only after that.
    pub fn append(&self, data: &[u8]) -> Result<Location, SegmentError> {
        let raw_len = u32::try_from(data.len()).map_err(|_| SegmentError::TooLong {
            len: data.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        let packed = lz4_flex::block::compress(data);
        let (stored, raw_len): (&[u8], Option<u32>) = if packed.len() < data.len() {
            (&packed, Some(raw_len))
        } else {
            (data, None)
        };
        // No longer than `data`, whose length fits in a u32.
        let len = stored.len() as u32;
        let mut w = lock(&self.writer);
        let full = match &w.active {
            None => true,
            Some(a) => a.len > 0 && a.len.saturating_add(u64::from(len)) > self.max_segment_bytes,
        };
        if full {
            self.rotate(&mut w)?;
        }
        let Some(active) = w.active.as_mut() else {
            return Err(SegmentError::Corrupt {
                segment: 0,
                offset: 0,
                reason: "no active segment after rotation".into(),
            });
        };
        let offset = active.len;
        let path = self.segment_path(active.id);
        active
            .file
            .write_all_at(stored, offset)
            .map_err(io_err("write", &path))?;
        active.len = offset + u64::from(len);
        active.dirty = true;
        Ok(Location {
            segment: active.id,
            offset,
            len,
            crc: crc32fast::hash(stored),
            raw_len,
        })
    }

    /// Makes every append so far durable (`fdatasync` of the active segment if written).
    pub fn sync(&self) -> Result<(), SegmentError> {
        let mut w = lock(&self.writer);
        if let Some(a) = w.active.as_mut().filter(|a| a.dirty) {
            let path = self.segment_path(a.id);
            a.file.sync_data().map_err(io_err("sync", &path))?;
            a.dirty = false;
        }
        Ok(())
    }

    /// Closes the active segment (synced) and creates the next one, with its directory entry
    /// made durable.
    fn rotate(&self, w: &mut Writer) -> Result<(), SegmentError> {
        if let Some(old) = w.active.take()
            && old.dirty
        {
            let path = self.segment_path(old.id);
            old.file.sync_data().map_err(io_err("sync", &path))?;
        }
        let id = w.next_id;
        let path = self.segment_path(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync directory", &self.dir))?;
        w.next_id = id.saturating_add(1);
        w.segments.insert(id);
        w.active = Some(Active {
            id,
            file,
            len: 0,
            dirty: false,
        });
        Ok(())
    }

    /// Reads the record at `loc` (decompressed, as it was written), refusing one longer than
    /// `max_len` before reading it, and checking its CRC.
    pub fn read(&self, loc: &Location, max_len: usize) -> Result<Vec<u8>, SegmentError> {
        let corrupt = |reason: String| SegmentError::Corrupt {
            segment: loc.segment,
            offset: loc.offset,
            reason,
        };
        if loc.record_len() as usize > max_len {
            return Err(SegmentError::TooLong {
                len: u64::from(loc.record_len()),
                max: max_len as u64,
            });
        }
        if loc.raw_len.is_some_and(|raw| loc.len >= raw) {
            // `append` compresses only what gets shorter.
            return Err(corrupt(format!(
                "compressed {} bytes into {}",
                loc.record_len(),
                loc.len
            )));
        }
        let file = self.reader(loc.segment)?;
        let mut buf = filled(loc.len as usize);
        file.read_exact_at(&mut buf, loc.offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                corrupt(format!(
                    "the segment ends before the record's {} bytes",
                    loc.len
                ))
            } else {
                SegmentError::Io {
                    op: "read",
                    path: self.segment_path(loc.segment),
                    source: e,
                }
            }
        })?;
        let crc = crc32fast::hash(&buf);
        if crc != loc.crc {
            return Err(corrupt(format!(
                "checksum {crc:08x}, location says {:08x}",
                loc.crc
            )));
        }
        let Some(raw_len) = loc.raw_len else {
            return Ok(buf);
        };
        let mut out = filled(raw_len as usize);
        match lz4_flex::block::decompress_into(&buf, &mut out) {
            Ok(n) if n == out.len() => Ok(out),
            Ok(n) => Err(corrupt(format!(
                "decompressed to {n} bytes, location says {raw_len}"
            ))),
            Err(e) => Err(corrupt(format!("LZ4 block: {e}"))),
        }
    }

    fn reader(&self, id: u64) -> Result<Arc<File>, SegmentError> {
        if let Some(f) = lock(&self.readers).get(&id) {
            return Ok(Arc::clone(f));
        }
        let path = self.segment_path(id);
        let file = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SegmentError::Missing {
                    segment: id,
                    dir: self.dir.clone(),
                });
            }
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let mut readers = lock(&self.readers);
        if readers.len() >= MAX_OPEN_READERS {
            readers.clear();
        }
        readers.insert(id, Arc::clone(&file));
        Ok(file)
    }

    /// Deletes every segment with an id below `id`, except the one being written. Returns
    /// how many were deleted. Call only once no durable location points into them.
    pub fn remove_segments_before(&self, id: u64) -> Result<usize, SegmentError> {
        let mut w = lock(&self.writer);
        let active = w.active.as_ref().map(|a| a.id);
        let doomed: Vec<u64> = w
            .segments
            .range(..id)
            .copied()
            .filter(|s| Some(*s) != active)
            .collect();
        for s in &doomed {
            let path = self.segment_path(*s);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path)(e)),
            }
            w.segments.remove(s);
            lock(&self.readers).remove(s);
        }
        Ok(doomed.len())
    }
}

/// A buffer of `len` zero bytes to read or decompress into, filled by `memset` rather than
/// allocated zeroed: records are 30 to 500 KB, and a zeroed allocation of that size makes
/// jemalloc hand back purged pages (an `madvise` and a page fault per 4 KiB on first touch)
/// where an ordinary one reuses pages still mapped. The Raft thread, which reads every
/// committed entry back once, uses about 10 % less CPU this way.
#[allow(clippy::slow_vector_initialization)] // `vec![0; len]` is the zeroed allocation
fn filled(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.resize(len, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_read_back_across_rotation_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path(), 100).unwrap();
        let records: Vec<Vec<u8>> = (0u8..10)
            .map(|i| noise(40 + usize::from(i), u64::from(i) + 1))
            .collect();
        let locs: Vec<Location> = records.iter().map(|r| store.append(r).unwrap()).collect();
        store.sync().unwrap();
        // 40..49-byte records, 100-byte segments: two records per segment.
        assert_eq!(store.segments().len(), 5);
        for (r, l) in records.iter().zip(&locs) {
            assert_eq!(&store.read(l, 1 << 20).unwrap(), r);
        }
        drop(store);
        let store = SegmentStore::open(dir.path(), 100).unwrap();
        for (r, l) in records.iter().zip(&locs) {
            assert_eq!(&store.read(l, 1 << 20).unwrap(), r);
        }
        // A reopened store never appends to an old segment.
        let l = store.append(b"after reopen").unwrap();
        assert_eq!(l.segment, 6);
        assert_eq!(l.offset, 0);
    }

    #[test]
    fn a_record_over_the_segment_size_gets_a_segment_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path(), 10).unwrap();
        let big = noise(50, 1);
        let a = store.append(&big).unwrap();
        let b = store.append(&[2; 5]).unwrap();
        assert_ne!(a.segment, b.segment);
        assert_eq!(store.read(&a, 50).unwrap(), big);
    }

    #[test]
    fn corruption_and_missing_segments_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path(), 1 << 20).unwrap();
        let loc = store.append(b"patient record bytes").unwrap();
        store.sync().unwrap();

        let mut flipped = fs::read(store.segment_path(loc.segment)).unwrap();
        flipped[3] ^= 1;
        fs::write(store.segment_path(loc.segment), &flipped).unwrap();
        let err = store.read(&loc, 1 << 20).unwrap_err();
        assert!(matches!(err, SegmentError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");

        let beyond = Location {
            offset: 1_000,
            ..loc
        };
        let err = store.read(&beyond, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("segment ends"), "{err}");

        let err = store.read(&loc, 4).unwrap_err();
        assert!(
            matches!(err, SegmentError::TooLong { len: 20, max: 4 }),
            "{err}"
        );

        let other = Location { segment: 77, ..loc };
        let err = store.read(&other, 1 << 20).unwrap_err();
        assert!(
            matches!(err, SegmentError::Missing { segment: 77, .. }),
            "{err}"
        );
    }

    #[test]
    fn removal_keeps_the_active_segment_and_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path(), 10).unwrap();
        let locs: Vec<Location> = (0u8..4).map(|i| store.append(&[i; 10]).unwrap()).collect();
        assert_eq!(store.segments(), vec![1, 2, 3, 4]);
        assert_eq!(store.remove_segments_before(3).unwrap(), 2);
        assert_eq!(store.segments(), vec![3, 4]);
        assert!(matches!(
            store.read(&locs[0], 10),
            Err(SegmentError::Missing { segment: 1, .. })
        ));
        assert_eq!(store.read(&locs[2], 10).unwrap(), vec![2; 10]);
        // The active segment (4) stays even when asked to go.
        assert_eq!(store.remove_segments_before(100).unwrap(), 1);
        assert_eq!(store.segments(), vec![4]);
        assert_eq!(store.read(&locs[3], 10).unwrap(), vec![3; 10]);
        // Files not named like segments are left alone.
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        drop(store);
        let store = SegmentStore::open(dir.path(), 10).unwrap();
        assert_eq!(store.segments(), vec![4]);
    }

    #[test]
    fn a_torn_tail_left_by_a_crash_does_not_disturb_what_was_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path(), 1 << 20).unwrap();
        let kept = store.append(b"synced").unwrap();
        store.sync().unwrap();
        let path = store.segment_path(kept.segment);
        drop(store);
        // A crash mid-write leaves half a record after the synced one.
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(b"half a rec");
        fs::write(&path, &bytes).unwrap();
        let store = SegmentStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.read(&kept, 100).unwrap(), b"synced");
        let next = store.append(b"next").unwrap();
        assert_ne!(next.segment, kept.segment);
    }

    #[test]
    fn location_bytes_are_refused_when_malformed() {
        assert!(Location::from_bytes(&[0xFF; 24]).is_err());
        let mut b = [0u8; Location::ENCODED_LEN];
        assert!(Location::from_bytes(&b).is_err());
        b[0] = Location::TAG;
        assert!(Location::from_bytes(&b).is_ok());
        // The compressed form's tag with the plain form's length, and the other way round.
        b[0] = Location::TAG_LZ4;
        assert!(Location::from_bytes(&b).is_err());
        let mut c = [0u8; Location::ENCODED_LZ4_LEN];
        c[0] = Location::TAG;
        assert!(Location::from_bytes(&c).is_err());
        c[0] = Location::TAG_LZ4;
        assert_eq!(Location::from_bytes(&c).unwrap().raw_len, Some(0));
    }

    /// Bytes LZ4 cannot shorten (xorshift).
    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A block-like record: the same certificate-sized run repeated, with a counter between.
    fn repetitive(n: usize) -> Vec<u8> {
        let cert = noise(300, 7);
        let mut out = Vec::with_capacity(n);
        let mut i = 0u32;
        while out.len() < n {
            out.extend_from_slice(&i.to_be_bytes());
            out.extend_from_slice(&cert);
            i += 1;
        }
        out.truncate(n);
        out
    }

    #[test]
    fn compressible_records_are_stored_compressed_and_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path(), 1 << 20).unwrap();
        let data = repetitive(60_000);
        let loc = store.append(&data).unwrap();
        store.sync().unwrap();
        assert_eq!(loc.raw_len, Some(60_000));
        assert_eq!(loc.record_len(), 60_000);
        assert!(loc.len < 6_000, "stored {} bytes", loc.len);
        let file_len = fs::metadata(store.segment_path(loc.segment)).unwrap().len();
        assert_eq!(file_len, u64::from(loc.len));
        assert_eq!(store.read(&loc, 60_000).unwrap(), data);
        // The limit applies to the record as written, not to its compressed size.
        let err = store.read(&loc, 59_999).unwrap_err();
        assert!(
            matches!(
                err,
                SegmentError::TooLong {
                    len: 60_000,
                    max: 59_999
                }
            ),
            "{err}"
        );
        // Through its encoded location, as sled keeps it, after a reopen.
        let bytes = loc.to_bytes();
        drop(store);
        let store = SegmentStore::open(dir.path(), 1 << 20).unwrap();
        let back = Location::from_bytes(&bytes).unwrap();
        assert_eq!(store.read(&back, 1 << 20).unwrap(), data);
    }

    #[test]
    fn incompressible_records_are_stored_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path(), 1 << 20).unwrap();
        let data = noise(5_000, 99);
        let loc = store.append(&data).unwrap();
        assert_eq!(loc.raw_len, None);
        assert_eq!(loc.len, 5_000);
        assert_eq!(loc.to_bytes().len(), Location::ENCODED_LEN);
        assert_eq!(store.read(&loc, 5_000).unwrap(), data);
    }

    #[test]
    fn a_bad_compressed_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path(), 1 << 20).unwrap();
        let loc = store.append(&repetitive(20_000)).unwrap();
        store.sync().unwrap();
        let path = store.segment_path(loc.segment);
        let good = fs::read(&path).unwrap();

        // A wrong decompressed length in the location.
        for raw_len in [19_999, 20_001] {
            let wrong = Location {
                raw_len: Some(raw_len),
                ..loc
            };
            let err = store.read(&wrong, 1 << 20).unwrap_err();
            assert!(matches!(err, SegmentError::Corrupt { .. }), "{err}");
        }
        // A location that says a record grew when compressed.
        let grew = Location {
            raw_len: Some(loc.len),
            ..loc
        };
        assert!(matches!(
            store.read(&grew, 1 << 20),
            Err(SegmentError::Corrupt { .. })
        ));
        // Damaged LZ4 bytes under a matching checksum (as if the CRC had been rewritten too):
        // every single-byte change is refused or decodes to the right length, never panics.
        for i in 0..good.len().min(400) {
            let mut bad = good.clone();
            bad[i] ^= 0x5A;
            fs::write(&path, &bad).unwrap();
            let forged = Location {
                crc: crc32fast::hash(&bad),
                ..loc
            };
            if let Ok(out) = store.read(&forged, 1 << 20) {
                assert_eq!(out.len(), 20_000);
            }
        }
    }

    proptest! {
        #[test]
        fn location_round_trips(segment: u64, offset: u64, len: u32, crc: u32, raw_len: Option<u32>) {
            let l = Location { segment, offset, len, crc, raw_len };
            let bytes = l.to_bytes();
            prop_assert_eq!(bytes.len(), if raw_len.is_some() {
                Location::ENCODED_LZ4_LEN
            } else {
                Location::ENCODED_LEN
            });
            prop_assert!(Location::is_location(&bytes));
            prop_assert_eq!(Location::from_bytes(&bytes).unwrap(), l);
        }
    }
}
