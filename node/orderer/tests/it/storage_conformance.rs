//! One conformance suite for `raft::Storage`, run against raft-rs's own `MemStorage` (the
//! reference) and against `SledRaftStorage`.
//!
//! Only what both must agree on is asserted here. Where they knowingly differ, the sled
//! behaviour is tested in `storage.rs`'s unit tests: sled keeps the term of the entry just
//! before `first_index` after a compaction (as the `Storage::term` contract asks; `MemStorage`
//! answers `Compacted`), returns errors where `MemStorage` panics (gaps, compacting beyond
//! the log), and serves the snapshot it stored rather than one made up at the commit index.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, NO_LIMIT, Storage, StorageError};
use sphr_orderer::{EntryFiles, SledRaftStorage};

/// Every non-empty entry body in a segment file, a few entries per segment: the conformance
/// runs through the files, their rotation and their deletion after compaction.
const SMALL_FILES: EntryFiles = EntryFiles {
    inline_max: 0,
    segment_bytes: 256,
};

/// The write side each backend offers, under one name.
trait Backend: Storage {
    fn append(&mut self, ents: &[Entry]);
    fn set_hard_state(&mut self, hs: &HardState);
    /// `false` when refused as out of date.
    fn apply_snapshot(&mut self, s: &Snapshot) -> bool;
    fn compact(&mut self, index: u64);
    /// Closes and reopens (sled: from the trees, with the in-memory state rebuilt).
    fn reopen(&mut self);
}

struct Mem(MemStorage);

impl Storage for Mem {
    fn initial_state(&self) -> raft::Result<raft::RaftState> {
        self.0.initial_state()
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max: impl Into<Option<u64>>,
        ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.0.entries(low, high, max, ctx)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.0.term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.0.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.0.last_index()
    }
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.0.snapshot(request_index, to)
    }
}

impl Backend for Mem {
    fn append(&mut self, ents: &[Entry]) {
        self.0.wl().append(ents).unwrap();
    }
    fn set_hard_state(&mut self, hs: &HardState) {
        self.0.wl().set_hardstate(hs.clone());
    }
    fn apply_snapshot(&mut self, s: &Snapshot) -> bool {
        match self.0.wl().apply_snapshot(s.clone()) {
            Ok(()) => true,
            Err(raft::Error::Store(StorageError::SnapshotOutOfDate)) => false,
            Err(e) => panic!("{e}"),
        }
    }
    fn compact(&mut self, index: u64) {
        self.0.wl().compact(index).unwrap();
    }
    fn reopen(&mut self) {}
}

struct Sled {
    dir: tempfile::TempDir,
    db: sled::Db,
    s: SledRaftStorage,
}

impl Storage for Sled {
    fn initial_state(&self) -> raft::Result<raft::RaftState> {
        self.s.initial_state()
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max: impl Into<Option<u64>>,
        ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.s.entries(low, high, max, ctx)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.s.term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.s.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.s.last_index()
    }
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.s.snapshot(request_index, to)
    }
}

impl Backend for Sled {
    fn append(&mut self, ents: &[Entry]) {
        self.s.append(ents).unwrap();
    }
    fn set_hard_state(&mut self, hs: &HardState) {
        self.s.set_hard_state(hs).unwrap();
    }
    fn apply_snapshot(&mut self, snap: &Snapshot) -> bool {
        match self.s.apply_snapshot(snap) {
            Ok(()) => true,
            Err(sphr_orderer::StoreError::SnapshotOutOfDate { .. }) => false,
            Err(e) => panic!("{e}"),
        }
    }
    fn compact(&mut self, index: u64) {
        self.s.compact(index).unwrap();
    }
    fn reopen(&mut self) {
        self.s.flush().unwrap();
        self.s = SledRaftStorage::open_with(
            self.db.open_tree("raft_log").unwrap(),
            self.db.open_tree("raft_meta").unwrap(),
            self.dir.path().join("entries"),
            SMALL_FILES,
        )
        .unwrap();
    }
}

fn mem(voters: &[u64]) -> Mem {
    Mem(MemStorage::new_with_conf_state((voters.to_vec(), vec![])))
}

fn sled_backend(voters: &[u64]) -> Sled {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let mut s = SledRaftStorage::open_with(
        db.open_tree("raft_log").unwrap(),
        db.open_tree("raft_meta").unwrap(),
        dir.path().join("entries"),
        SMALL_FILES,
    )
    .unwrap();
    s.bootstrap(voters).unwrap();
    Sled { dir, db, s }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("entry {index}").into_bytes().into(),
        ..Entry::default()
    }
}

fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = voters.to_vec();
    s
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn compacted<T: std::fmt::Debug>(r: raft::Result<T>) -> bool {
    matches!(r, Err(raft::Error::Store(StorageError::Compacted)))
}

fn unavailable<T: std::fmt::Debug>(r: raft::Result<T>) -> bool {
    matches!(r, Err(raft::Error::Store(StorageError::Unavailable)))
}

fn size(e: &Entry) -> u64 {
    u64::from(protobuf::Message::compute_size(e))
}

/// A log whose entries 3, 4, 5 (terms 3, 4, 5) follow a snapshot at (2, 2): the shape of
/// raft-rs's own storage tests.
fn base<B: Backend>(new: fn(&[u64]) -> B) -> B {
    let mut b = new(&[1, 2, 3]);
    assert!(b.apply_snapshot(&snapshot(2, 2, &[1, 2, 3])));
    b.append(&[entry(3, 3), entry(4, 4), entry(5, 5)]);
    b
}

// ---------------------------------------------------------------------------------------
// The cases, generic over the backend.

fn fresh_storage<B: Backend>(new: fn(&[u64]) -> B) {
    let mut b = new(&[1, 2, 3]);
    for _ in 0..2 {
        let st = b.initial_state().unwrap();
        assert!(st.initialized());
        assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(st.hard_state, HardState::default());
        assert_eq!(b.first_index().unwrap(), 1);
        assert_eq!(b.last_index().unwrap(), 0);
        assert_eq!(b.term(0).unwrap(), 0);
        assert!(unavailable(b.term(1)));
        b.reopen();
    }
}

fn append_from_empty<B: Backend>(new: fn(&[u64]) -> B) {
    let mut b = new(&[1]);
    let ents: Vec<Entry> = (1..=5).map(|i| entry(i, 1 + i / 3)).collect();
    b.append(&ents);
    b.reopen();
    assert_eq!(b.first_index().unwrap(), 1);
    assert_eq!(b.last_index().unwrap(), 5);
    assert_eq!(b.entries(1, 6, None, ctx()).unwrap(), ents);
    for e in &ents {
        assert_eq!(b.term(e.index).unwrap(), e.term);
    }
    assert!(unavailable(b.term(6)));
}

fn term_and_indexes<B: Backend>(new: fn(&[u64]) -> B) {
    let mut b = base(new);
    for _ in 0..2 {
        assert_eq!(b.first_index().unwrap(), 3);
        assert_eq!(b.last_index().unwrap(), 5);
        assert!(compacted(b.term(1)));
        assert_eq!(b.term(2).unwrap(), 2, "the snapshot's term");
        assert_eq!(b.term(3).unwrap(), 3);
        assert_eq!(b.term(4).unwrap(), 4);
        assert_eq!(b.term(5).unwrap(), 5);
        assert!(unavailable(b.term(6)));
        b.reopen();
    }
}

fn entries_ranges_and_size_limits<B: Backend>(new: fn(&[u64]) -> B) {
    let mut b = base(new);
    b.append(&[entry(6, 6)]);
    b.reopen();
    let (e3, e4, e5, e6) = (entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 6));
    assert!(compacted(b.entries(2, 6, None, ctx())));
    assert_eq!(b.entries(3, 4, None, ctx()).unwrap(), vec![e3.clone()]);
    assert_eq!(b.entries(4, 5, None, ctx()).unwrap(), vec![e4.clone()]);
    assert_eq!(
        b.entries(4, 6, None, ctx()).unwrap(),
        vec![e4.clone(), e5.clone()]
    );
    let all = vec![e4.clone(), e5.clone(), e6.clone()];
    assert_eq!(b.entries(4, 7, None, ctx()).unwrap(), all);
    assert_eq!(b.entries(4, 7, NO_LIMIT, ctx()).unwrap(), all);
    // The first entry is always returned, even over the limit.
    assert_eq!(b.entries(4, 7, 0, ctx()).unwrap(), vec![e4.clone()]);
    let two = size(&e4) + size(&e5);
    assert_eq!(
        b.entries(4, 7, two, ctx()).unwrap(),
        vec![e4.clone(), e5.clone()]
    );
    assert_eq!(
        b.entries(4, 7, two + size(&e6) / 2, ctx()).unwrap(),
        vec![e4.clone(), e5.clone()]
    );
    assert_eq!(b.entries(4, 7, two + size(&e6), ctx()).unwrap(), all);
    assert_eq!(b.entries(4, 7, two - 1, ctx()).unwrap(), vec![e4]);
}

fn append_replaces_conflicting_suffix<B: Backend>(new: fn(&[u64]) -> B) {
    // Same entries: no change.
    let mut b = base(new);
    b.append(&[entry(3, 3), entry(4, 4), entry(5, 5)]);
    assert_eq!(
        b.entries(3, 6, None, ctx()).unwrap(),
        vec![entry(3, 3), entry(4, 4), entry(5, 5)]
    );
    // A conflicting tail replaces the old one.
    b.append(&[entry(3, 3), entry(4, 6), entry(5, 6)]);
    b.reopen();
    assert_eq!(
        b.entries(3, 6, None, ctx()).unwrap(),
        vec![entry(3, 3), entry(4, 6), entry(5, 6)]
    );
    // Extending.
    b.append(&[entry(6, 6)]);
    assert_eq!(b.last_index().unwrap(), 6);
    // A shorter conflicting append truncates what follows it.
    b.append(&[entry(4, 7)]);
    b.reopen();
    assert_eq!(b.last_index().unwrap(), 4);
    assert_eq!(
        b.entries(3, 5, None, ctx()).unwrap(),
        vec![entry(3, 3), entry(4, 7)]
    );
    assert!(unavailable(b.term(5)));
    // Appending right at the end.
    b.append(&[entry(5, 7), entry(6, 8)]);
    assert_eq!(b.last_index().unwrap(), 6);
    assert_eq!(b.term(6).unwrap(), 8);
}

fn compact_discards_prefix<B: Backend>(new: fn(&[u64]) -> B) {
    let mut b = base(new);
    // At or below the first index: no-op.
    b.compact(2);
    b.compact(3);
    assert_eq!(b.first_index().unwrap(), 3);
    b.compact(4);
    b.reopen();
    assert_eq!(b.first_index().unwrap(), 4);
    assert_eq!(b.last_index().unwrap(), 5);
    assert!(compacted(b.entries(3, 6, None, ctx())));
    assert_eq!(
        b.entries(4, 6, None, ctx()).unwrap(),
        vec![entry(4, 4), entry(5, 5)]
    );
    assert_eq!(b.term(4).unwrap(), 4);
    assert_eq!(b.term(5).unwrap(), 5);
    assert_eq!(b.term(2).unwrap(), 2, "the snapshot's term is kept");
    assert!(compacted(b.term(1)));
    // Down to the last entry; the log goes on after it. (Compacting every entry is left
    // out: `MemStorage` then reports its first index from the old snapshot.)
    b.compact(5);
    b.reopen();
    assert_eq!(b.first_index().unwrap(), 5);
    assert_eq!(b.last_index().unwrap(), 5);
    assert!(compacted(b.entries(4, 6, None, ctx())));
    b.append(&[entry(6, 6)]);
    assert_eq!(
        b.entries(5, 7, None, ctx()).unwrap(),
        vec![entry(5, 5), entry(6, 6)]
    );
}

fn snapshot_replaces_the_log<B: Backend>(new: fn(&[u64]) -> B) {
    let mut b = new(&[1, 2, 3]);
    b.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>());
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 5,
        ..HardState::default()
    };
    b.set_hard_state(&hs);
    assert!(b.apply_snapshot(&snapshot(7, 3, &[1, 2, 3])));
    b.reopen();
    assert_eq!(b.first_index().unwrap(), 8);
    assert_eq!(b.last_index().unwrap(), 7);
    assert_eq!(b.term(7).unwrap(), 3);
    assert!(compacted(b.term(6)));
    assert!(compacted(b.entries(5, 6, None, ctx())));
    let st = b.initial_state().unwrap();
    assert_eq!(st.hard_state.commit, 7);
    assert_eq!(st.hard_state.term, 3);
    assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
    let snap = b.snapshot(0, 2).unwrap();
    assert_eq!(snap.get_metadata().index, 7);
    assert_eq!(snap.get_metadata().term, 3);
    assert_eq!(
        snap.get_metadata().get_conf_state(),
        &ConfState::from((vec![1, 2, 3], vec![]))
    );
    // An older snapshot is refused and changes nothing.
    assert!(!b.apply_snapshot(&snapshot(5, 2, &[1, 2, 3])));
    assert_eq!(b.first_index().unwrap(), 8);
    // The log goes on after the snapshot.
    b.append(&[entry(8, 3)]);
    b.reopen();
    assert_eq!(b.entries(8, 9, None, ctx()).unwrap(), vec![entry(8, 3)]);
}

fn hard_state_round_trips<B: Backend>(new: fn(&[u64]) -> B) {
    let mut b = new(&[1, 2]);
    b.append(&[entry(1, 4), entry(2, 4)]);
    let hs = HardState {
        term: 4,
        vote: 2,
        commit: 2,
        ..HardState::default()
    };
    b.set_hard_state(&hs);
    b.reopen();
    let st = b.initial_state().unwrap();
    assert_eq!(st.hard_state, hs);
    assert_eq!(st.conf_state.voters, vec![1, 2]);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod mem_storage {
            $( #[test] fn $case() { super::$case(super::mem) } )*
        }
        mod sled_raft_storage {
            $( #[test] fn $case() { super::$case(super::sled_backend) } )*
        }
    };
}

conformance!(
    fresh_storage,
    append_from_empty,
    term_and_indexes,
    entries_ranges_and_size_limits,
    append_replaces_conflicting_suffix,
    compact_discards_prefix,
    snapshot_replaces_the_log,
    hard_state_round_trips,
);
