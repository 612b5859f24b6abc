//! [`SledRaftStorage`]: the Raft log, hard state, conf state and snapshot on two sled trees,
//! with the bodies of big entries (blocks) in append-only segment files.
//!
//! The node owns one sled `Db` and hands in two trees (for instance `raft_log` and
//! `raft_meta`) and a directory for the segment files. Layout:
//!
//! ```text
//!  raft_log:  index (u64 big-endian) ──> term (u64 big-endian) ++ protobuf(Entry)
//!                                    or  term (u64 big-endian) ++ location (25 or 29 bytes)
//!  raft_meta: "version"    ──> u64 BE (format version, 3)
//!             "hard_state" ──> protobuf(HardState)
//!             "conf_state" ──> protobuf(ConfState)
//!             "snapshot"   ──> protobuf(Snapshot)       (metadata and the applier's data)
//!             "truncated"  ──> index BE ++ term BE     (last entry discarded by compaction)
//! ```
//!
//! The term prefix lets [`raft::Storage::term`] answer without decoding an entry (raft asks
//! for terms far more often than for entries). `first_index = truncated.index + 1`, and the
//! term of `truncated.index` is kept, as the [`raft::Storage`] contract asks, so a follower
//! one entry behind the compaction point still matches.
//!
//! An entry whose protobuf body is over [`EntryFiles::inline_max`] bytes (4 KiB: every block;
//! not the empty entries of new leaders) is appended to the current segment file
//! ([`sphr_segments`]), LZ4-compressed when that makes it shorter (3.4 to 4.7 times for
//! blocks), and the tree keeps its location (segment, offset, length, CRC-32, and the length
//! as written for a compressed body: raft-rs's size limits count that one).
//! sled rewrites a whole leaf (up to 16 values) on each insert, which for 100 to 250 KB blocks
//! meant 2 to 3 MB per append; a segment writes each body once. The segment is synced before
//! the sled transaction that stores the location, so no location on disk points to bytes that
//! are not. Conflicting tails replaced by a new leader leave their bodies behind in the
//! segments, unreferenced. A segment is deleted once compaction (or a snapshot) has discarded
//! every entry it held, after that discard is flushed; a reopen deletes the segments no entry
//! points into. Format versions 1 (every entry inline) and 2 (bodies in segments, never
//! compressed) are read as they are and upgraded by writing the new version.
//!
//! Every write is one sled transaction over both trees, so a crash leaves either the old or
//! the new state. Writes are not flushed: the driver calls [`SledRaftStorage::flush`] once
//! per `Ready`, after all of its writes and before sending the messages that announce them.
//! The cached state (`hard_state`, indexes, ...) is read back and checked on
//! [`SledRaftStorage::open`].

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage};
use sled::transaction::{TransactionError, Transactional};
use sled::{IVec, Tree};
use sphr_segments::{DEFAULT_SEGMENT_BYTES, Location, SegmentError, SegmentStore};

use crate::codec::{self, CodecError};

/// On-disk format version of the two trees.
pub const FORMAT_VERSION: u64 = 3;

/// The directory name the node gives its entry segment files (inside the database
/// directory, beside sled's own files).
pub const RAFT_ENTRIES_DIR: &str = "raft-entries";

/// Older format versions opened and upgraded in place (version 1: every entry inline;
/// version 2: bodies in segments, none compressed). An older build refuses version 3, whose
/// compressed bodies it could not read.
const UPGRADABLE_VERSIONS: &[u64] = &[1, 2];

/// Where and how entry bodies go to segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFiles {
    /// Bodies (protobuf `Entry`) longer than this go to a segment file; shorter ones stay in
    /// the tree.
    pub inline_max: usize,
    /// Size at which a segment file is closed and the next started.
    pub segment_bytes: u64,
}

impl Default for EntryFiles {
    fn default() -> Self {
        EntryFiles {
            inline_max: 4096,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// Largest record this storage decodes from its own trees (an entry is one block; the node's
/// block limit is far below this). Protects against a corrupt length on disk.
pub const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

const KEY_VERSION: &[u8] = b"version";
const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_SNAPSHOT: &[u8] = b"snapshot";
const KEY_TRUNCATED: &[u8] = b"truncated";

/// A Raft storage operation failed.
///
/// What follows: every variant stops the orderer (the driver reports it through
/// `RaftStatus::fatal`); Raft cannot go on with a log it cannot read or write. The
/// `NonContiguous`, `OverwriteCompacted`, `Gap`, `CompactBeyondLog` and `SnapshotOutOfDate`
/// variants are caller bugs that `MemStorage` answers with a panic.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption detected by sled).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A segment file of entry bodies could not be written or read back (I/O, checksum).
    #[error("raft entry files: {0}")]
    Segments(#[from] SegmentError),
    /// A stored record does not decode.
    #[error("decode: {0}")]
    Codec(#[from] CodecError),
    /// The trees are inconsistent (a gap in the log, a key that does not match its entry...).
    #[error("corrupt raft storage: {0}")]
    Corrupt(String),
    /// The trees were written by another format version.
    #[error("raft storage format version {found}, this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion {
        /// Version found on disk.
        found: u64,
    },
    /// Entries handed to `append` do not have consecutive indexes.
    #[error("entries to append are not contiguous at position {position}")]
    NonContiguous {
        /// Position in the slice of the first entry out of sequence.
        position: usize,
    },
    /// `append` would overwrite compacted entries.
    #[error("append at {index} overwrites the compacted log (first index {first})")]
    OverwriteCompacted {
        /// First index to append.
        index: u64,
        /// First index available.
        first: u64,
    },
    /// `append` would leave a hole after the last entry.
    #[error("append at {index} leaves a gap after the last index {last}")]
    Gap {
        /// First index to append.
        index: u64,
        /// Last index stored.
        last: u64,
    },
    /// `compact` was asked to discard entries that are not there.
    #[error("compact to {index} is beyond the last index {last} + 1")]
    CompactBeyondLog {
        /// Requested compact index.
        index: u64,
        /// Last index stored.
        last: u64,
    },
    /// A snapshot older than what the log already holds.
    #[error("snapshot at {index} is out of date (first index {first})")]
    SnapshotOutOfDate {
        /// Snapshot index.
        index: u64,
        /// First index available.
        first: u64,
    },
    /// A local snapshot was asked at an index that is not committed or not in the log.
    #[error("cannot snapshot at {index}: must be within [{low}, {high}]")]
    SnapshotRange {
        /// Requested index.
        index: u64,
        /// Lowest acceptable index.
        low: u64,
        /// Highest acceptable index (the commit index, bounded by the last index).
        high: u64,
    },
    /// A reopened log names other voters than the configuration (another genesis?).
    #[error("stored voters {stored:?} differ from the configured voters {configured:?}")]
    VotersMismatch {
        /// Voters in the stored ConfState.
        stored: Vec<u64>,
        /// Voters in the configuration.
        configured: Vec<u64>,
    },
}

impl From<StoreError> for raft::Error {
    fn from(e: StoreError) -> Self {
        raft::Error::Store(raft::StorageError::Other(Box::new(e)))
    }
}

/// Raft storage over two sled trees. See the module documentation for the layout.
///
/// Reads go through [`raft::Storage`]; writes are `&mut self` methods called by the driver
/// only (single writer), and are durable after [`SledRaftStorage::flush`].
#[derive(Debug)]
pub struct SledRaftStorage {
    log: Tree,
    meta: Tree,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot_meta: SnapshotMetadata,
    /// Index and term of the last discarded entry (0, 0 for a log never compacted).
    truncated: (u64, u64),
    last_index: u64,
    /// Terms of the newest entries (raft-rs asks for terms at every Ready).
    recent: RecentTerms,
    /// Bodies of big entries.
    files: SegmentStore,
    inline_max: usize,
    /// For each segment, the highest index whose location was written into it.
    segment_last: BTreeMap<u64, u64>,
    /// Segments below this id may go once the discard of their entries is flushed.
    removable_before: Mutex<Option<u64>>,
}

/// Most entry terms [`RecentTerms`] holds.
const RECENT_TERMS: usize = 4096;

/// The terms of the newest log entries, up to the last one, so that raft-rs's `term` lookups
/// (several per Ready) do not read whole entries (blocks) back from sled. Holds at most
/// [`RECENT_TERMS`]; older indices are read from the log.
#[derive(Debug)]
struct RecentTerms {
    /// Index of the first term held (the last index + 1 when none is).
    start: u64,
    terms: VecDeque<u64>,
}

impl RecentTerms {
    /// Nothing held; the log ends at `last`.
    fn after(last: u64) -> RecentTerms {
        RecentTerms {
            start: last.saturating_add(1),
            terms: VecDeque::new(),
        }
    }

    fn get(&self, index: u64) -> Option<u64> {
        let offset = usize::try_from(index.checked_sub(self.start)?).ok()?;
        self.terms.get(offset).copied()
    }

    /// The entries from `first` on are now those of `terms` (written to the log).
    fn replace_from(&mut self, first: u64, terms: impl Iterator<Item = u64>) {
        let held_end = self.start.saturating_add(self.terms.len() as u64);
        if first < self.start || first > held_end {
            *self = RecentTerms::after(first.saturating_sub(1));
        } else {
            self.terms
                .truncate(usize::try_from(first - self.start).unwrap_or(usize::MAX));
        }
        self.terms.extend(terms);
        while self.terms.len() > RECENT_TERMS {
            self.terms.pop_front();
            self.start += 1;
        }
    }

    /// The entries before `index` were discarded.
    fn discard_before(&mut self, index: u64) {
        while self.start < index && self.terms.pop_front().is_some() {
            self.start += 1;
        }
        self.start = self.start.max(index);
    }
}

fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_u64(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: short record")))?;
    Ok(u64::from_be_bytes(arr))
}

/// The location in a log value, if its body is in a segment file.
fn value_location(v: &[u8]) -> Result<Option<Location>, StoreError> {
    match v.get(8..) {
        Some(rest) if Location::is_location(rest) => Ok(Some(Location::from_bytes(rest)?)),
        _ => Ok(None),
    }
}

/// The protobuf body's length of a log value (what raft-rs's size limits count).
fn body_len(v: &[u8]) -> Result<u64, StoreError> {
    Ok(match value_location(v)? {
        Some(loc) => u64::from(loc.record_len()),
        None => v.len().saturating_sub(8) as u64,
    })
}

fn decode_log_value(files: &SegmentStore, index: u64, v: &[u8]) -> Result<Entry, StoreError> {
    let term = read_u64(v, "raft entry")?;
    let e: Entry = match value_location(v)? {
        Some(loc) => {
            let body = files.read(&loc, MAX_RECORD_BYTES)?;
            codec::decode(&body, MAX_RECORD_BYTES, "raft entry")?
        }
        None => codec::decode(&v[8..], MAX_RECORD_BYTES, "raft entry")?,
    };
    if e.index != index || e.term != term {
        return Err(StoreError::Corrupt(format!(
            "entry under key {index} holds index {} term {} (prefix term {term})",
            e.index, e.term
        )));
    }
    Ok(e)
}

type LogOps = Vec<([u8; 8], Option<IVec>)>;
type MetaOps = Vec<(&'static [u8], IVec)>;

impl SledRaftStorage {
    /// Opens the storage on these trees, with big entry bodies in segment files in
    /// `entries_dir` ([`EntryFiles::default`]); see [`Self::open_with`].
    pub fn open(log: Tree, meta: Tree, entries_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(log, meta, entries_dir, EntryFiles::default())
    }

    /// Opens the storage on these trees (creating the format marker on empty trees), loads
    /// and checks the stored state, and deletes the segment files no entry points into.
    pub fn open_with(
        log: Tree,
        meta: Tree,
        entries_dir: impl AsRef<Path>,
        options: EntryFiles,
    ) -> Result<Self, StoreError> {
        match meta.get(KEY_VERSION)? {
            Some(v) => {
                let found = read_u64(&v, "version")?;
                if UPGRADABLE_VERSIONS.contains(&found) {
                    meta.insert(KEY_VERSION, &FORMAT_VERSION.to_be_bytes())?;
                    meta.flush()?;
                } else if found != FORMAT_VERSION {
                    return Err(StoreError::UnsupportedVersion { found });
                }
            }
            None => {
                if !log.is_empty() || !meta.is_empty() {
                    return Err(StoreError::Corrupt(
                        "raft trees hold data but no format version".into(),
                    ));
                }
                meta.insert(KEY_VERSION, &FORMAT_VERSION.to_be_bytes())?;
            }
        }
        let hard_state: HardState = match meta.get(KEY_HARD_STATE)? {
            Some(v) => codec::decode(&v, MAX_RECORD_BYTES, "hard state")?,
            None => HardState::default(),
        };
        let conf_state: ConfState = match meta.get(KEY_CONF_STATE)? {
            Some(v) => codec::decode(&v, MAX_RECORD_BYTES, "conf state")?,
            None => ConfState::default(),
        };
        let snapshot_meta = match meta.get(KEY_SNAPSHOT)? {
            Some(v) => {
                let mut s: Snapshot = codec::decode(&v, MAX_RECORD_BYTES, "snapshot")?;
                s.take_metadata()
            }
            None => SnapshotMetadata::default(),
        };
        let truncated = match meta.get(KEY_TRUNCATED)? {
            Some(v) => (
                read_u64(&v, "truncated")?,
                read_u64(v.get(8..).unwrap_or_default(), "truncated")?,
            ),
            None => (0, 0),
        };

        let files = SegmentStore::open(entries_dir, options.segment_bytes)?;
        let last_index = match log.last()? {
            Some((k, v)) => {
                let index = read_u64(&k, "log key")?;
                // Read the last entry back fully: checks the key, the prefix and the body.
                decode_log_value(&files, index, &v)?;
                index
            }
            None => truncated.0,
        };
        let mut segment_last = BTreeMap::new();
        for item in log.iter() {
            let (k, v) = item?;
            if let Some(loc) = value_location(&v)? {
                let index = read_u64(&k, "log key")?;
                let last = segment_last.entry(loc.segment).or_insert(index);
                *last = (*last).max(index);
            }
        }
        // Segments below the oldest one in use hold only discarded entries (a crash came
        // between a discard and the deletion, or a conflicting tail was all they held).
        files.remove_segments_before(segment_last.keys().next().copied().unwrap_or(u64::MAX))?;
        if let Some((k, _)) = log.first()? {
            let first = read_u64(&k, "log key")?;
            if first != truncated.0.saturating_add(1) {
                return Err(StoreError::Corrupt(format!(
                    "first log entry {first} does not follow the truncated index {}",
                    truncated.0
                )));
            }
        }
        let entries_stored = u64::try_from(log.len()).unwrap_or(u64::MAX);
        if last_index.saturating_sub(truncated.0) != entries_stored {
            return Err(StoreError::Corrupt(format!(
                "{entries_stored} entries stored between {} and {last_index}",
                truncated.0
            )));
        }
        if hard_state.commit > last_index {
            return Err(StoreError::Corrupt(format!(
                "commit {} is beyond the last index {last_index}",
                hard_state.commit
            )));
        }
        Ok(Self {
            log,
            meta,
            hard_state,
            conf_state,
            snapshot_meta,
            truncated,
            last_index,
            recent: RecentTerms::after(last_index),
            files,
            inline_max: options.inline_max,
            segment_last,
            removable_before: Mutex::new(None),
        })
    }

    /// The log value of `e`: its body inline, or appended to the current segment (the caller
    /// syncs the segments before writing the value to sled).
    fn log_value(&mut self, e: &Entry) -> Result<(IVec, bool), StoreError> {
        let body = codec::encode(e, "raft entry")?;
        let inline = body.len() <= self.inline_max;
        let stored = if inline {
            body.len()
        } else {
            Location::MAX_ENCODED_LEN
        };
        let mut v = Vec::with_capacity(8 + stored);
        v.extend_from_slice(&e.term.to_be_bytes());
        if inline {
            v.extend_from_slice(&body);
            return Ok((IVec::from(v), false));
        }
        let loc = self.files.append(&body)?;
        let last = self.segment_last.entry(loc.segment).or_insert(e.index);
        *last = (*last).max(e.index);
        v.extend_from_slice(&loc.to_bytes());
        Ok((IVec::from(v), true))
    }

    /// After a discard of every entry before `first_kept`: the segments that then hold none
    /// are deleted at the next flush.
    fn schedule_removal(&mut self, first_kept: u64) {
        let before = self
            .segment_last
            .iter()
            .find(|(_, last)| **last >= first_kept)
            .map_or(u64::MAX, |(segment, _)| *segment)
            // Entries appended before the next flush go to the open segment or later ones.
            .min(self.files.first_open_id());
        self.segment_last = self.segment_last.split_off(&before);
        let mut pending = self
            .removable_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *pending = Some(pending.map_or(before, |p| p.max(before)));
    }

    /// Segment files of entry bodies currently on disk (oldest first): for tests and
    /// diagnostics.
    pub fn entry_segments(&self) -> Vec<u64> {
        self.files.segments()
    }

    /// Whether a ConfState has been stored (by [`Self::bootstrap`] or a snapshot).
    pub fn is_initialized(&self) -> bool {
        self.conf_state != ConfState::default()
    }

    /// Static membership: on a fresh storage, stores a ConfState with these voters (flushed);
    /// on an initialized one, checks that it names the same voters.
    pub fn bootstrap(&mut self, voters: &[u64]) -> Result<(), StoreError> {
        let mut configured = voters.to_vec();
        configured.sort_unstable();
        configured.dedup();
        if self.is_initialized() {
            let mut stored = self.conf_state.voters.clone();
            stored.sort_unstable();
            if stored != configured || !self.conf_state.learners.is_empty() {
                return Err(StoreError::VotersMismatch { stored, configured });
            }
            return Ok(());
        }
        let cs = ConfState {
            voters: configured,
            ..ConfState::default()
        };
        let bytes = IVec::from(codec::encode(&cs, "conf state")?);
        self.write(Vec::new(), vec![(KEY_CONF_STATE, bytes)])?;
        self.flush()?;
        self.conf_state = cs;
        Ok(())
    }

    /// Appends entries (replacing any stored entries from the first one's index on) and,
    /// if given, stores the hard state: one atomic write. Not flushed.
    pub fn append_and_set_hard_state(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StoreError> {
        let mut log_ops: LogOps = Vec::new();
        let mut meta_ops: MetaOps = Vec::new();
        let mut new_last = self.last_index;
        if let Some(first) = entries.first() {
            for (i, e) in entries.iter().enumerate() {
                let want = first.index.checked_add(i as u64);
                if want != Some(e.index) {
                    return Err(StoreError::NonContiguous { position: i });
                }
            }
            let first_index = self.first_log_index();
            if first.index < first_index {
                return Err(StoreError::OverwriteCompacted {
                    index: first.index,
                    first: first_index,
                });
            }
            if first.index > self.last_index.saturating_add(1) {
                return Err(StoreError::Gap {
                    index: first.index,
                    last: self.last_index,
                });
            }
            new_last = first.index + (entries.len() as u64 - 1);
            // Drop the old suffix beyond the new last entry (a conflicting tail).
            for i in new_last.saturating_add(1)..=self.last_index {
                log_ops.push((log_key(i), None));
            }
            let mut in_files = false;
            for e in entries {
                let (value, in_file) = self.log_value(e)?;
                in_files |= in_file;
                log_ops.push((log_key(e.index), Some(value)));
            }
            if in_files {
                self.files.sync()?;
            }
        }
        if let Some(hs) = hard_state {
            meta_ops.push((KEY_HARD_STATE, IVec::from(codec::encode(hs, "hard state")?)));
        }
        if log_ops.is_empty() && meta_ops.is_empty() {
            return Ok(());
        }
        // Entries past the last stored one replace nothing: no transaction needed.
        if entries
            .first()
            .is_none_or(|first| first.index > self.last_index)
        {
            self.write_in_order(log_ops, meta_ops)?;
        } else {
            self.write(log_ops, meta_ops)?;
        }
        if let Some(first) = entries.first() {
            self.recent
                .replace_from(first.index, entries.iter().map(|e| e.term));
        }
        self.last_index = new_last;
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Appends entries; see [`Self::append_and_set_hard_state`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        self.append_and_set_hard_state(entries, None)
    }

    /// Stores the hard state. Not flushed.
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        self.append_and_set_hard_state(&[], Some(hs))
    }

    /// Raises the stored commit index (never lowers it). Not flushed.
    pub fn set_commit(&mut self, commit: u64) -> Result<(), StoreError> {
        if commit <= self.hard_state.commit {
            return Ok(());
        }
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Stores the ConfState. Not flushed. (Static membership: only tests use it.)
    pub fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), StoreError> {
        let bytes = IVec::from(codec::encode(cs, "conf state")?);
        self.write(Vec::new(), vec![(KEY_CONF_STATE, bytes)])?;
        self.conf_state = cs.clone();
        Ok(())
    }

    /// Replaces the log with a snapshot received from the leader: discards every entry,
    /// keeps the snapshot (with its data), raises the hard state's term and commit to it and
    /// adopts its ConfState. One atomic write, not flushed. Same rule as `MemStorage`: a
    /// snapshot below the first index is refused.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let meta = snapshot.get_metadata();
        let first = self.first_log_index();
        if first > meta.index {
            return Err(StoreError::SnapshotOutOfDate {
                index: meta.index,
                first,
            });
        }
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        let cs = meta.get_conf_state().clone();

        let log_ops: LogOps = (first..=self.last_index)
            .map(|i| (log_key(i), None))
            .collect();
        let mut truncated = Vec::with_capacity(16);
        truncated.extend_from_slice(&meta.index.to_be_bytes());
        truncated.extend_from_slice(&meta.term.to_be_bytes());
        let meta_ops: MetaOps = vec![
            (
                KEY_SNAPSHOT,
                IVec::from(codec::encode(snapshot, "snapshot")?),
            ),
            (KEY_TRUNCATED, IVec::from(truncated)),
            (
                KEY_HARD_STATE,
                IVec::from(codec::encode(&hs, "hard state")?),
            ),
            (
                KEY_CONF_STATE,
                IVec::from(codec::encode(&cs, "conf state")?),
            ),
        ];
        self.write(log_ops, meta_ops)?;
        self.schedule_removal(meta.index.saturating_add(1));
        self.snapshot_meta = meta.clone();
        self.truncated = (meta.index, meta.term);
        self.last_index = meta.index;
        self.recent = RecentTerms::after(meta.index);
        self.hard_state = hs;
        self.conf_state = cs;
        Ok(())
    }

    /// Stores a local snapshot at `index` (an applied, hence committed, index still in the
    /// log) with the applier's `data` and the current ConfState. Does not compact: call
    /// [`Self::compact`] after. Not flushed.
    pub fn create_snapshot(&mut self, index: u64, data: Vec<u8>) -> Result<(), StoreError> {
        let low = self.snapshot_meta.index.max(self.truncated.0);
        let high = self.hard_state.commit.min(self.last_index);
        if index < low || index > high {
            return Err(StoreError::SnapshotRange { index, low, high });
        }
        let term = self.term_of(index)?;
        let mut snap = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let m = snap.mut_metadata();
        m.index = index;
        m.term = term;
        m.set_conf_state(self.conf_state.clone());
        let bytes = IVec::from(codec::encode(&snap, "snapshot")?);
        self.write(Vec::new(), vec![(KEY_SNAPSHOT, bytes)])?;
        self.snapshot_meta = snap.take_metadata();
        Ok(())
    }

    /// Discards the entries before `compact_index` (same rule as `MemStorage::compact`: a
    /// no-op at or below the first index; refused beyond `last_index + 1`). The term of the
    /// entry at `compact_index - 1` is kept. The caller must not compact beyond its last
    /// snapshot, or a follower behind would find neither entries nor a snapshot to catch up.
    /// One atomic write, not flushed.
    pub fn compact(&mut self, compact_index: u64) -> Result<(), StoreError> {
        let first = self.first_log_index();
        if compact_index <= first {
            return Ok(());
        }
        if compact_index > self.last_index.saturating_add(1) {
            return Err(StoreError::CompactBeyondLog {
                index: compact_index,
                last: self.last_index,
            });
        }
        let new_truncated = compact_index - 1;
        let term = self.term_of(new_truncated)?;
        let log_ops: LogOps = (first..compact_index).map(|i| (log_key(i), None)).collect();
        let mut truncated = Vec::with_capacity(16);
        truncated.extend_from_slice(&new_truncated.to_be_bytes());
        truncated.extend_from_slice(&term.to_be_bytes());
        self.write(log_ops, vec![(KEY_TRUNCATED, IVec::from(truncated))])?;
        self.schedule_removal(compact_index);
        self.truncated = (new_truncated, term);
        self.recent.discard_before(compact_index);
        Ok(())
    }

    /// Makes every write so far durable (sled flush + fsync of the whole database), then
    /// deletes the segment files whose entries a compaction or snapshot discarded (now that
    /// the discard is on disk).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.meta.flush()?;
        let pending = self
            .removable_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(before) = pending {
            self.files.remove_segments_before(before)?;
        }
        Ok(())
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The stored ConfState.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Metadata of the stored snapshot (index 0 when there is none).
    pub fn snapshot_metadata(&self) -> &SnapshotMetadata {
        &self.snapshot_meta
    }

    /// The stored snapshot with its data, if any.
    pub fn stored_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        if self.snapshot_meta.index == 0 {
            return Ok(None);
        }
        match self.meta.get(KEY_SNAPSHOT)? {
            Some(v) => Ok(Some(codec::decode(&v, MAX_RECORD_BYTES, "snapshot")?)),
            None => Err(StoreError::Corrupt(
                "snapshot metadata without record".into(),
            )),
        }
    }

    /// First index available in the log (`truncated + 1`).
    pub fn first_log_index(&self) -> u64 {
        self.truncated.0.saturating_add(1)
    }

    /// Last index in the log (or the truncated/snapshot index when the log is empty).
    pub fn last_log_index(&self) -> u64 {
        self.last_index
    }

    fn term_of(&self, idx: u64) -> Result<u64, StoreError> {
        if idx == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        if let Some(term) = self.recent.get(idx) {
            return Ok(term);
        }
        match self.log.get(log_key(idx))? {
            Some(v) => read_u64(&v, "raft entry"),
            None => Err(StoreError::Corrupt(format!("entry {idx} missing"))),
        }
    }

    /// An append past the last stored entry (it replaces nothing, so `log_ops` holds no
    /// removals), without a sled transaction (which costs two log buffer writes, each a job
    /// for sled's I/O pool that wakes all of its threads): the entries in index order, then
    /// the hard state. sled recovers a contiguous prefix of its
    /// log, so a crash leaves the old state plus the first few new entries, with or without
    /// the new hard state after them. Each of those is a state Raft allows: a log with extra
    /// uncommitted entries that no one was told are stored (the flush comes before any
    /// message saying so), and a commit index that is never beyond the last stored entry
    /// (the hard state only lands after every entry it may point at). A term stored later
    /// than entries of that term only lets this node vote again in a term in which it cast
    /// no vote (a vote is a hard-state change written and flushed before it is sent).
    fn write_in_order(&self, log_ops: LogOps, meta_ops: MetaOps) -> Result<(), StoreError> {
        for (k, v) in log_ops {
            if let Some(v) = v {
                self.log.insert(k, v)?;
            }
        }
        for (k, v) in meta_ops {
            self.meta.insert(k, v)?;
        }
        Ok(())
    }

    fn write(&self, log_ops: LogOps, mut meta_ops: MetaOps) -> Result<(), StoreError> {
        // One key (a new commit index or hard state: once or twice per block) needs no
        // transaction: a sled insert is atomic on its own, and a transaction costs two more
        // log buffer writes (sled seals the buffer before and after its batch manifest).
        if log_ops.is_empty() && meta_ops.len() == 1 {
            if let Some((k, v)) = meta_ops.pop() {
                self.meta.insert(k, v)?;
            }
            return Ok(());
        }
        let res: Result<(), TransactionError<()>> =
            (&self.log, &self.meta).transaction(|(log, meta)| {
                for (k, v) in &log_ops {
                    match v {
                        Some(v) => log.insert(&k[..], v.clone())?,
                        None => log.remove(&k[..])?,
                    };
                }
                for (k, v) in &meta_ops {
                    meta.insert(*k, v.clone())?;
                }
                Ok(())
            });
        match res {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
            Err(TransactionError::Abort(())) => Err(StoreError::Corrupt(
                "raft storage transaction aborted".into(),
            )),
        }
    }
}

impl Storage for SledRaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if low < self.first_log_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_index.saturating_add(1) || low > high {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let mut out = Vec::with_capacity(usize::try_from(high - low).unwrap_or(0).min(1024));
        let mut size: u64 = 0;
        for (expect, item) in (low..).zip(self.log.range(log_key(low)..log_key(high))) {
            let (k, v) = item.map_err(StoreError::from)?;
            let index = read_u64(&k, "log key")?;
            if index != expect {
                return Err(StoreError::Corrupt(format!("entry {expect} missing")).into());
            }
            // The protobuf body length is the entry's `compute_size`: same rule as
            // `raft::util::limit_size` (the first entry always goes).
            size = size.saturating_add(body_len(&v)?);
            if let Some(max) = max_size
                && !out.is_empty()
                && max != raft::NO_LIMIT
                && size > max
            {
                break;
            }
            out.push(decode_log_value(&self.files, index, &v)?);
        }
        if out.is_empty() && low < high {
            return Err(StoreError::Corrupt(format!("entry {low} missing")).into());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_meta.index && idx != 0 {
            return Ok(self.snapshot_meta.term);
        }
        if idx < self.truncated.0 {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        Ok(self.term_of(idx)?)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_log_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<raft::eraftpb::Snapshot> {
        if self.snapshot_meta.index == 0 || self.snapshot_meta.index < request_index {
            // raft-rs retries later; the driver takes snapshots every `snapshot_interval`.
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        match self.stored_snapshot()? {
            Some(s) => Ok(s),
            None => Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 3].into(),
            ..Entry::default()
        }
    }

    /// Every non-empty entry body in a segment file, three entries or so per segment.
    const SMALL_FILES: EntryFiles = EntryFiles {
        inline_max: 0,
        segment_bytes: 64,
    };

    /// Opens the sled database in `dir`. A database dropped a moment ago in this process keeps
    /// its file lock until sled's background threads let go of it: wait for that (5 s at most).
    fn open_db(dir: &Path) -> sled::Db {
        let started = std::time::Instant::now();
        loop {
            match sled::open(dir) {
                Ok(db) => return db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && started.elapsed() < std::time::Duration::from_secs(5) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("opening {}: {e}", dir.display()),
            }
        }
    }

    fn try_open(db: &sled::Db, dir: &Path) -> Result<SledRaftStorage, StoreError> {
        SledRaftStorage::open_with(
            db.open_tree("raft_log").unwrap(),
            db.open_tree("raft_meta").unwrap(),
            dir.join("entries"),
            SMALL_FILES,
        )
    }

    fn open(db: &sled::Db, dir: &Path) -> SledRaftStorage {
        try_open(db, dir).unwrap()
    }

    #[test]
    fn an_append_cut_short_by_a_crash_reopens_on_a_prefix_with_the_old_hard_state() {
        let old_hs = HardState {
            term: 1,
            vote: 1,
            commit: 2,
            ..HardState::default()
        };
        let new_hs = HardState {
            term: 2,
            vote: 1,
            commit: 7,
            ..HardState::default()
        };
        let new: Vec<Entry> = (5..=7).map(|i| entry(i, 2)).collect();
        // What sled can give back after a crash in an append past the end: the entries in
        // index order, the hard state after them; any prefix of that.
        for cut in 0..=new.len() + 1 {
            let dir = tempfile::tempdir().unwrap();
            {
                let db = open_db(dir.path());
                let mut s = open(&db, dir.path());
                s.bootstrap(&[1, 2, 3]).unwrap();
                let ents: Vec<Entry> = (1..=4).map(|i| entry(i, 1)).collect();
                s.append_and_set_hard_state(&ents, Some(&old_hs)).unwrap();
                s.flush().unwrap();
                if cut > new.len() {
                    s.append_and_set_hard_state(&new, Some(&new_hs)).unwrap();
                } else {
                    for e in &new[..cut] {
                        let (value, _) = s.log_value(e).unwrap();
                        s.log.insert(log_key(e.index), value).unwrap();
                    }
                }
                s.flush().unwrap();
            }
            let db = open_db(dir.path());
            let s = open(&db, dir.path());
            let kept = cut.min(new.len()) as u64;
            assert_eq!(s.last_index().unwrap(), 4 + kept, "cut {cut}");
            let want_hs = if cut > new.len() { &new_hs } else { &old_hs };
            assert_eq!(&s.initial_state().unwrap().hard_state, want_hs, "cut {cut}");
            for i in 5..=4 + kept {
                assert_eq!(s.term(i).unwrap(), 2);
            }
        }
    }

    #[test]
    fn everything_reloads_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_db(dir.path());
            let mut s = open(&db, dir.path());
            s.bootstrap(&[3, 1, 2]).unwrap();
            let ents: Vec<Entry> = (1..=10).map(|i| entry(i, 1 + i / 4)).collect();
            let hs = HardState {
                term: 3,
                vote: 2,
                commit: 9,
                ..HardState::default()
            };
            s.append_and_set_hard_state(&ents, Some(&hs)).unwrap();
            s.create_snapshot(8, b"blocks up to 8".to_vec()).unwrap();
            s.compact(6).unwrap();
            // A write of one key (no transaction) lands like the others.
            s.set_commit(10).unwrap();
            s.flush().unwrap();
        }
        let db = open_db(dir.path());
        let mut s = open(&db, dir.path());
        assert!(s.is_initialized());
        s.bootstrap(&[1, 2, 3]).unwrap();
        let st = s.initial_state().unwrap();
        assert_eq!(st.hard_state.term, 3);
        assert_eq!(st.hard_state.vote, 2);
        assert_eq!(st.hard_state.commit, 10);
        assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(s.first_index().unwrap(), 6);
        assert_eq!(s.last_index().unwrap(), 10);
        // The term before the first index is retained.
        assert_eq!(s.term(5).unwrap(), 2);
        assert_eq!(
            s.term(4),
            Err(raft::Error::Store(raft::StorageError::Compacted))
        );
        let snap = s.snapshot(0, 2).unwrap();
        assert_eq!(snap.get_metadata().index, 8);
        assert_eq!(snap.get_metadata().term, 3);
        assert_eq!(&snap.data[..], b"blocks up to 8");
        assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
        let got = s
            .entries(6, 11, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            got,
            (6..=10).map(|i| entry(i, 1 + i / 4)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn voters_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let mut s = open(&db, dir.path());
        s.bootstrap(&[1, 2, 3]).unwrap();
        assert!(matches!(
            s.bootstrap(&[1, 2]),
            Err(StoreError::VotersMismatch { .. })
        ));
    }

    #[test]
    fn caller_bugs_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let mut s = open(&db, dir.path());
        s.bootstrap(&[1]).unwrap();
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
        assert!(matches!(
            s.append(&[entry(5, 1)]),
            Err(StoreError::Gap { index: 5, last: 3 })
        ));
        assert!(matches!(
            s.append(&[entry(4, 1), entry(6, 1)]),
            Err(StoreError::NonContiguous { position: 1 })
        ));
        assert!(matches!(
            s.compact(5),
            Err(StoreError::CompactBeyondLog { index: 5, last: 3 })
        ));
        // Not committed: no snapshot there.
        assert!(matches!(
            s.create_snapshot(2, vec![]),
            Err(StoreError::SnapshotRange { .. })
        ));
        s.set_commit(3).unwrap();
        s.create_snapshot(2, vec![]).unwrap();
        s.compact(3).unwrap();
        assert!(matches!(
            s.append(&[entry(2, 1)]),
            Err(StoreError::OverwriteCompacted { index: 2, first: 3 })
        ));
        assert_eq!(
            s.entries(3, 9, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(raft::StorageError::Unavailable))
        );
        // State unchanged by the refused calls.
        assert_eq!(s.last_log_index(), 3);
        assert_eq!(s.first_log_index(), 3);
    }

    #[test]
    fn snapshot_request_beyond_stored_is_temporarily_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let mut s = open(&db, dir.path());
        s.bootstrap(&[1]).unwrap();
        assert_eq!(
            s.snapshot(0, 2),
            Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable
            ))
        );
        s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        s.set_commit(2).unwrap();
        s.create_snapshot(1, vec![7]).unwrap();
        assert_eq!(s.snapshot(1, 2).unwrap().get_metadata().index, 1);
        assert_eq!(
            s.snapshot(2, 2),
            Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable
            ))
        );
    }

    #[test]
    fn refuses_other_format_version_and_unmarked_data() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let log = db.open_tree("l").unwrap();
        let meta = db.open_tree("m").unwrap();
        meta.insert(KEY_VERSION, &7u64.to_be_bytes()).unwrap();
        assert!(matches!(
            SledRaftStorage::open(log.clone(), meta.clone(), dir.path().join("entries")),
            Err(StoreError::UnsupportedVersion { found: 7 })
        ));
        meta.clear().unwrap();
        log.insert(log_key(1), &[0u8; 4][..]).unwrap();
        assert!(matches!(
            SledRaftStorage::open(log, meta, dir.path().join("entries")),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn terms_held_in_memory_agree_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let mut s = open(&db, dir.path());
        s.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        // A new leader's entries replace a conflicting tail (8..=10) and go on to 12.
        s.append(&(8..=12).map(|i| entry(i, 2)).collect::<Vec<_>>())
            .unwrap();
        // A shorter conflicting tail: 11 and 12 are gone.
        s.append(&[entry(10, 3)]).unwrap();
        let want = |i: u64| match i {
            1..=7 => 1,
            8 | 9 => 2,
            _ => 3,
        };
        for i in 1..=10 {
            assert_eq!(s.term(i).unwrap(), want(i), "entry {i}");
        }
        assert!(s.term(11).is_err());
        s.compact(5).unwrap();
        assert_eq!(s.term(4).unwrap(), 1);
        assert!(s.term(3).is_err());
        assert_eq!(s.term(5).unwrap(), 1);
        // What the log holds (read back after reopening, nothing in memory) is the same.
        drop(s);
        let s = open(&db, dir.path());
        for i in 4..=10 {
            assert_eq!(s.term(i).unwrap(), want(i), "entry {i} after reopen");
        }
    }

    /// An entry whose 40 data bytes LZ4 cannot shorten, so its body is stored as written.
    fn big(index: u64, term: u64) -> Entry {
        let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let data: Vec<u8> = (0..40)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Entry {
            index,
            term,
            data: data.into(),
            ..Entry::default()
        }
    }

    fn all_entries(s: &SledRaftStorage) -> Vec<Entry> {
        let (lo, hi) = (s.first_log_index(), s.last_log_index() + 1);
        s.entries(lo, hi, None, GetEntriesContext::empty(false))
            .unwrap()
    }

    #[test]
    fn entry_bodies_go_to_segments_which_compaction_deletes_once_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let mut s = open(&db, dir.path());
        let entries: Vec<Entry> = (1..=30).map(|i| big(i, 1)).collect();
        s.append(&entries).unwrap();
        s.flush().unwrap();
        // The tree holds term ++ location; the bodies read back from the files.
        let v = s.log.get(log_key(7)).unwrap().unwrap();
        assert_eq!(v.len(), 8 + Location::ENCODED_LEN);
        assert_eq!(all_entries(&s), entries);
        let before = s.entry_segments();
        assert!(before.len() >= 10, "{before:?}");

        s.create_snapshot(20, b"state".to_vec()).unwrap_err(); // not committed yet
        s.set_commit(30).unwrap();
        s.create_snapshot(20, b"state".to_vec()).unwrap();
        s.compact(21).unwrap();
        // Nothing is deleted before the discard is durable.
        assert_eq!(s.entry_segments(), before);
        s.flush().unwrap();
        let after = s.entry_segments();
        assert!(after.len() < before.len(), "{before:?} -> {after:?}");
        assert_eq!(all_entries(&s), entries[20..].to_vec());

        // Reopen: everything left reads back, and appends go on in a new segment.
        drop(s);
        let mut s = open(&db, dir.path());
        assert_eq!(s.entry_segments(), after);
        assert_eq!(all_entries(&s), entries[20..].to_vec());
        s.append(&[big(31, 2)]).unwrap();
        assert!(s.entry_segments().last() > after.last());
        assert_eq!(all_entries(&s).last(), Some(&big(31, 2)));
    }

    #[test]
    fn compressible_entries_are_stored_compressed_and_counted_at_their_full_size() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let mut s = open(&db, dir.path());
        // Block-like bodies: one certificate-sized run repeated, with a counter between.
        let run = big(99, 1).data.to_vec();
        let entries: Vec<Entry> = (1..=6u64)
            .map(|i| {
                let mut data = Vec::new();
                for j in 0..200u64 {
                    data.extend_from_slice(&(i * 1000 + j).to_be_bytes());
                    data.extend_from_slice(&run);
                }
                Entry {
                    index: i,
                    term: 1,
                    data: data.into(),
                    ..Entry::default()
                }
            })
            .collect();
        s.append(&entries).unwrap();
        s.flush().unwrap();
        let v = s.log.get(log_key(3)).unwrap().unwrap();
        assert_eq!(v.len(), 8 + Location::ENCODED_LZ4_LEN);
        let loc = value_location(&v).unwrap().unwrap();
        let size = codec::encode(&entries[2], "raft entry").unwrap().len() as u64;
        assert_eq!(u64::from(loc.record_len()), size);
        assert!(u64::from(loc.len) * 3 < size, "{} of {size} bytes", loc.len);
        assert_eq!(all_entries(&s), entries);
        // raft-rs's size limit counts the entries as written, not as stored: a limit of two
        // entries' bodies gives two entries, where the compressed sizes would allow all six.
        let two = s
            .entries(1, 7, Some(2 * size), GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(two, entries[..2]);
        drop(s);
        let s = open(&db, dir.path());
        assert_eq!(all_entries(&s), entries);
    }

    #[test]
    fn a_snapshot_discards_every_segment_but_entries_appended_before_the_flush_survive() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let mut s = open(&db, dir.path());
        s.append(&(1..=10).map(|i| big(i, 1)).collect::<Vec<_>>())
            .unwrap();
        s.flush().unwrap();
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 50;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().mut_conf_state().voters = vec![1];
        s.apply_snapshot(&snap).unwrap();
        // A leader's next entries arrive in the same Ready, before the flush.
        let next: Vec<Entry> = (51..=56).map(|i| big(i, 3)).collect();
        s.append(&next).unwrap();
        s.flush().unwrap();
        assert_eq!(all_entries(&s), next);
        drop(s);
        let s = open(&db, dir.path());
        assert_eq!(all_entries(&s), next);
    }

    #[test]
    fn a_format_1_log_with_entries_inline_opens_upgraded_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let log = db.open_tree("raft_log").unwrap();
        let meta = db.open_tree("raft_meta").unwrap();
        // What format 1 wrote: term ++ protobuf for every entry.
        meta.insert(KEY_VERSION, &1u64.to_be_bytes()).unwrap();
        for i in 1..=3 {
            let e = big(i, 1);
            let mut v = e.term.to_be_bytes().to_vec();
            v.extend_from_slice(&codec::encode(&e, "raft entry").unwrap());
            log.insert(log_key(i), v).unwrap();
        }
        let mut s = open(&db, dir.path());
        assert_eq!(
            read_u64(&meta.get(KEY_VERSION).unwrap().unwrap(), "v").unwrap(),
            FORMAT_VERSION
        );
        s.append(&[big(4, 1)]).unwrap();
        assert_eq!(
            all_entries(&s),
            (1..=4).map(|i| big(i, 1)).collect::<Vec<_>>()
        );
        assert!(
            value_location(&log.get(log_key(4)).unwrap().unwrap())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_format_2_log_with_uncompressed_bodies_opens_upgraded_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let mut s = open(&db, dir.path());
        // Bodies LZ4 cannot shorten are stored as format 2 stored every body: 25-byte
        // locations of records as written.
        let old: Vec<Entry> = (1..=3).map(|i| big(i, 1)).collect();
        s.append(&old).unwrap();
        s.flush().unwrap();
        drop(s);
        let meta = db.open_tree("raft_meta").unwrap();
        meta.insert(KEY_VERSION, &2u64.to_be_bytes()).unwrap();
        let mut s = open(&db, dir.path());
        let version = meta.get(KEY_VERSION).unwrap().unwrap();
        assert_eq!(read_u64(&version, "v").unwrap(), FORMAT_VERSION);
        assert_eq!(all_entries(&s), old);
        let mut newer = big(4, 1);
        newer.data = newer.data.repeat(100).into();
        s.append(std::slice::from_ref(&newer)).unwrap();
        let v = s.log.get(log_key(4)).unwrap().unwrap();
        assert_eq!(v.len(), 8 + Location::ENCODED_LZ4_LEN);
        assert_eq!(all_entries(&s).last(), Some(&newer));
    }

    #[test]
    fn a_damaged_entry_file_is_an_error_naming_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let mut s = open(&db, dir.path());
        s.append(&(1..=3).map(|i| big(i, 1)).collect::<Vec<_>>())
            .unwrap();
        s.flush().unwrap();
        let loc = value_location(&s.log.get(log_key(3)).unwrap().unwrap())
            .unwrap()
            .unwrap();
        let path = dir
            .path()
            .join("entries")
            .join(format!("{:020}.seg", loc.segment));
        let mut bytes = std::fs::read(&path).unwrap();
        let at = usize::try_from(loc.offset).unwrap() + 5;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = s
            .entries(3, 4, None, GetEntriesContext::empty(false))
            .unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        drop(s);
        let err = try_open(&db, dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Segments(_)), "{err}");
    }

    #[test]
    fn recent_terms_keep_to_their_bound_and_follow_the_log() {
        let mut r = RecentTerms::after(0);
        assert_eq!(r.get(1), None);
        let n = RECENT_TERMS as u64 + 100;
        r.replace_from(1, (1..=n).map(|i| i / 1000));
        assert_eq!(r.terms.len(), RECENT_TERMS);
        assert_eq!(r.get(100), None, "evicted: read from the log");
        assert_eq!(r.get(n), Some(n / 1000));
        assert_eq!(r.get(n + 1), None);
        // Compaction past the held range leaves nothing, and later appends continue.
        r.discard_before(n + 1);
        assert_eq!(r.get(n), None);
        r.replace_from(n + 1, [9].into_iter());
        assert_eq!(r.get(n + 1), Some(9));
        // Entries that do not follow what is held (a snapshot moved the log) start afresh.
        r.replace_from(n + 50, [11].into_iter());
        assert_eq!((r.get(n + 1), r.get(n + 50)), (None, Some(11)));
    }

    #[test]
    fn corrupt_entry_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let log = db.open_tree("l").unwrap();
        let meta = db.open_tree("m").unwrap();
        let mut s =
            SledRaftStorage::open(log.clone(), meta.clone(), dir.path().join("entries")).unwrap();
        s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        // Overwrite entry 1 with entry 2's bytes: key and content disagree.
        let v2 = log.get(log_key(2)).unwrap().unwrap();
        log.insert(log_key(1), v2).unwrap();
        assert!(
            s.entries(1, 3, None, GetEntriesContext::empty(false))
                .is_err()
        );
        // And garbage after the term prefix.
        log.insert(log_key(2), &[0, 0, 0, 0, 0, 0, 0, 1, 0xff][..])
            .unwrap();
        assert!(SledRaftStorage::open(log, meta, dir.path().join("entries")).is_err());
    }
}
