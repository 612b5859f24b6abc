//! The ledger on sled: blocks, versioned world state, tx index and metadata in one database.
//!
//! A block's writes go to sled after a redo record that holds them all (one insert), the tip
//! last, then a flush; sled recovers a contiguous prefix of its log, so a node killed at any
//! moment reopens on the last block it reported committed or finishes the one it was writing
//! from the redo record, with the state, index, tip and applied Raft index of exactly that
//! block. Other changes are one sled transaction over the trees they touch, then a flush.
//!
//! Block records themselves (100 to 250 KB under load) are appended to segment files in the
//! `block-segments` directory inside the database directory ([`sphr_segments`]), synced, and
//! only then is their 25-byte location written in the `blocks` tree with the rest of the
//! block's writes. A crash between the two leaves bytes nobody points to; a location on
//! disk always points to synced bytes. Ledgers of layout version 1 kept records inline in the
//! tree; those are still read as they are, and blocks committed after go to the files.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sphr_crypto::hash::Hash32;
use sphr_segments::{DEFAULT_SEGMENT_BYTES, Location, SegmentError, SegmentStore};
use sphr_types::{
    Batch, Block, BlockData, BlockHeader, BlockRecord, GenesisConfig, GenesisError, NodeRef,
    SignedBatch, TxError, Version,
};
use tracing::{debug, info, warn};

use crate::codec::{
    self, CodecError, META_APPLIED_RAFT_INDEX, META_GENESIS_HASH, META_REDO, META_SCHEMA, META_TIP,
    RedoTree, RedoWrite, SCHEMA_VERSION, TxLocation,
};
use crate::store::{MAX_RANGE_ENTRIES, StateEntry, StateReader, TxIndexReader};
use crate::validate::{MvccChecked, TxOutcome, Validator};

/// Log target of this crate.
const TARGET: &str = "sphr::ledger";

/// Tree of block records, by number.
pub const TREE_BLOCKS: &str = "blocks";
/// Tree of world-state values, by namespaced key.
pub const TREE_STATE: &str = "state";
/// Tree of tx locations, by tx id.
pub const TREE_TXINDEX: &str = "txindex";
/// Tree of ledger metadata.
pub const TREE_META: &str = "meta";
/// Tree of world-state hashes, by block number (see [`state_hash_after`]).
pub const TREE_STATE_HASHES: &str = "state_hashes";
/// Directory (inside the database directory) of the block segment files.
pub const BLOCK_SEGMENTS_DIR: &str = "block-segments";
/// Largest block record read back from a segment file (a location saying more is corrupt).
pub const MAX_BLOCK_RECORD_BYTES: usize = 256 << 20;
/// Layout versions this build opens: 1 (block records inline in sled) and 2 (in segment
/// files, uncompressed) are upgraded in place to [`SCHEMA_VERSION`] by writing the new
/// version (their records stay readable as they are).
const UPGRADABLE_SCHEMAS: &[u32] = &[1, 2];

/// Why a ledger operation failed. Each variant says what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database could not be opened (in use by another process, permissions, disk):
    /// stop the node and tell the operator.
    #[error("cannot open the ledger database at {path}: {source}")]
    Open {
        /// The data dir.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// The database was made from another genesis block: stop the node; the operator points
    /// it at the data dir of this network or at an empty one.
    #[error(
        "the ledger at {path} was created for network {found}, but this node was given the \
         genesis of network {expected}; use the data dir of network {expected} or an empty one"
    )]
    WrongGenesis {
        /// The data dir.
        path: PathBuf,
        /// Network id of the genesis block given.
        expected: Hash32,
        /// Network id stored in the database.
        found: Hash32,
    },
    /// The database has a layout this version cannot read: stop the node (upgrade or migrate).
    #[error(
        "the ledger at {path} has layout version {found}; this build reads version {supported}"
    )]
    Schema {
        /// The data dir.
        path: PathBuf,
        /// Layout version found.
        found: u32,
        /// Layout version this build reads.
        supported: u32,
    },
    /// The genesis block given does not hold a valid configuration: stop the node.
    #[error("invalid genesis block: {0}")]
    Genesis(#[from] GenesisError),
    /// sled failed to read or write: stop the node (the disk or the database needs an
    /// operator). Nothing half-written is visible: commits are atomic.
    #[error("ledger storage error: {0}")]
    Storage(#[from] sled::Error),
    /// A block segment file could not be written or read back (I/O, checksum): stop the
    /// node. As with sled errors, nothing half-written is visible.
    #[error("ledger block files: {0}")]
    BlockFiles(#[from] SegmentError),
    /// Bytes read from the database do not decode, or the trees disagree: stop the node.
    #[error("the ledger database is corrupt: {0}")]
    Corrupt(String),
    /// A block from a peer does not fit this ledger or does not check out: drop it and
    /// penalise the peer that sent it.
    #[error("block {number} refused: {reason}")]
    BlockRejected {
        /// The block's number as it claims.
        number: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The chain reached `u64::MAX` blocks: stop the node.
    #[error("block height overflow after block {0}")]
    HeightOverflow(u64),
    /// A record could not be encoded (a bug): stop the node.
    #[error("ledger encoding: {0}")]
    Encode(#[from] TxError),
}

impl From<CodecError> for LedgerError {
    fn from(e: CodecError) -> Self {
        LedgerError::Corrupt(e.to_string())
    }
}

/// Why a Raft entry gives no block. Every node decides the same for the same entry, and records
/// the entry as applied so that none of them looks at it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// The entry is not a batch.
    #[error("the entry does not decode as a batch: {0}")]
    Undecodable(String),
    /// The proposer is not a node in genesis.
    #[error("proposer {0} is not a node of the network")]
    UnknownProposer(NodeRef),
    /// The proposer is a node but not a consenter.
    #[error("proposer {0} is not a consenter")]
    NotConsenter(NodeRef),
    /// The proposer's signature over the batch does not verify.
    #[error("the signature of proposer {0} over the batch does not verify")]
    BadProposerSignature(NodeRef),
    /// More transactions than genesis lets a block hold.
    #[error("{count} transactions, genesis allows at most {max}")]
    TooManyTxs {
        /// Transactions in the batch.
        count: usize,
        /// `block.max_tx` from genesis.
        max: u32,
    },
}

/// A block that was committed, with what the node tells clients and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBlock {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: Hash32,
    /// Raft index of the entry it came from.
    pub raft_index: u64,
    /// The proposer's clock (Unix milliseconds).
    pub timestamp_ms: u64,
    /// One per transaction, in block order.
    pub txs: Vec<TxOutcome>,
    /// Time spent checking the block: decoding, signatures, endorsement policies, MVCC.
    pub validation_duration: Duration,
    /// Time spent writing the block, its writes and index (redo record, then the writes) and
    /// flushing them to disk.
    pub commit_duration: Duration,
}

impl CommittedBlock {
    /// Number of VALID transactions.
    pub fn valid_count(&self) -> usize {
        self.txs.iter().filter(|t| t.code.is_valid()).count()
    }
}

/// What [`Ledger::commit_batch`] did with a Raft entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// A block was made and committed.
    Committed(CommittedBlock),
    /// The entry is unusable: no block; the applied Raft index moved to it.
    Skipped {
        /// The entry's Raft index.
        raft_index: u64,
        /// Why.
        reason: SkipReason,
    },
    /// The entry was applied before (a replay after restart): nothing changed.
    AlreadyApplied {
        /// The entry's Raft index.
        raft_index: u64,
        /// The applied Raft index of the ledger.
        applied: u64,
    },
}

impl CommitOutcome {
    /// The committed block, if the entry made one.
    pub fn block(&self) -> Option<&CommittedBlock> {
        match self {
            CommitOutcome::Committed(b) => Some(b),
            _ => None,
        }
    }
}

/// Tip and applied Raft index, as on disk after the last commit.
#[derive(Debug, Clone)]
struct Head {
    tip: BlockHeader,
    applied_raft_index: u64,
    /// The world-state hash after the tip (see [`state_hash_after`]).
    state_hash: Hash32,
}

/// The world-state hash of a new ledger (after block 0): bound to the network.
pub fn genesis_state_hash(network_id: &Hash32) -> Hash32 {
    sphr_crypto::hash::sha256_parts(&[b"sphr-state-v1-genesis", network_id.as_bytes()])
}

/// The world-state hash after block `number`, from the hash after the block before and the
/// block's state writes (namespaced key, stored value or `None` for a delete) in the order
/// they are applied.
///
/// A running hash: two nodes with the same hash at the same height applied the same writes
/// in the same order since genesis, so their world states are equal. It costs one SHA-256
/// per write at commit, is stored with each block (tree `state_hashes`) and is the same on
/// every node, whether the block came from Raft or from a peer (sync).
pub fn state_hash_after(prev: &Hash32, number: u64, writes: &[(&[u8], Option<Vec<u8>>)]) -> Hash32 {
    let mut digests = Vec::with_capacity(writes.len().saturating_mul(32));
    for (key, value) in writes {
        let d = match value {
            Some(v) => sphr_crypto::hash::sha256_parts(&[b"w", key, v]),
            None => sphr_crypto::hash::sha256_parts(&[b"d", key]),
        };
        digests.extend_from_slice(d.as_bytes());
    }
    sphr_crypto::hash::sha256_parts(&[
        b"sphr-state-v1",
        prev.as_bytes(),
        &number.to_be_bytes(),
        &digests,
    ])
}

/// The ledger of one node: a sled database holding blocks, world state, tx index and metadata.
///
/// `Ledger` is `Send + Sync`: reads take `&self` and run concurrently with a commit (see
/// [`StateReader`] for what they may observe); commits are serialised inside.
pub struct Ledger {
    path: PathBuf,
    db: sled::Db,
    blocks: sled::Tree,
    state: sled::Tree,
    txindex: sled::Tree,
    meta: sled::Tree,
    state_hashes: sled::Tree,
    /// Block records, addressed from the `blocks` tree.
    block_files: SegmentStore,
    genesis: GenesisConfig,
    network_id: Hash32,
    head: RwLock<Head>,
    /// Held for a whole commit: one commit at a time, with the certificate cache.
    committer: Mutex<Validator>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("network_id", &self.network_id)
            .field("tip", &self.tip().number)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens the ledger at `path`, creating it with block 0 = `genesis` if it is empty.
    ///
    /// Refuses ([`LedgerError::WrongGenesis`]) a database made from another genesis, and a
    /// database whose trees disagree about the tip ([`LedgerError::Corrupt`]).
    pub fn open(path: impl AsRef<Path>, genesis: &Block) -> Result<Ledger, LedgerError> {
        let path = path.as_ref().to_path_buf();
        let config = GenesisConfig::from_block(genesis)?;
        let network_id = genesis.hash();
        let db = open_db(&path)?;
        let blocks = db.open_tree(TREE_BLOCKS)?;
        let state = db.open_tree(TREE_STATE)?;
        let txindex = db.open_tree(TREE_TXINDEX)?;
        let meta = db.open_tree(TREE_META)?;
        let state_hashes = db.open_tree(TREE_STATE_HASHES)?;

        match meta.get(META_GENESIS_HASH)? {
            None => {
                if !blocks.is_empty() || !state.is_empty() || !txindex.is_empty() {
                    return Err(LedgerError::Corrupt(format!(
                        "{}: blocks or state present but no genesis hash",
                        path.display()
                    )));
                }
                init(&db, &blocks, &meta, &state_hashes, genesis, network_id)?;
                info!(target: TARGET, path = %path.display(), network_id = %network_id,
                      "created ledger with genesis block");
            }
            Some(stored) => {
                let found = codec::decode_hash("genesis hash", &stored)?;
                if found != network_id {
                    return Err(LedgerError::WrongGenesis {
                        path,
                        expected: network_id,
                        found,
                    });
                }
            }
        }
        let schema = meta
            .get(META_SCHEMA)?
            .ok_or_else(|| LedgerError::Corrupt("no layout version".into()))?;
        let schema = codec::decode_u32("layout version", &schema)?;
        if UPGRADABLE_SCHEMAS.contains(&schema) {
            meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()[..])?;
            meta.flush()?;
            info!(target: TARGET, path = %path.display(), from = schema, to = SCHEMA_VERSION,
                  "upgraded the ledger layout (new blocks go to segment files, compressed)");
        } else if schema != SCHEMA_VERSION {
            return Err(LedgerError::Schema {
                path,
                found: schema,
                supported: SCHEMA_VERSION,
            });
        }
        let block_files = SegmentStore::open(path.join(BLOCK_SEGMENTS_DIR), DEFAULT_SEGMENT_BYTES)?;
        let trees = Trees {
            blocks: &blocks,
            state_hashes: &state_hashes,
            state: &state,
            txindex: &txindex,
            meta: &meta,
        };
        if let Some(number) = trees.finish_interrupted_write(&db)? {
            warn!(target: TARGET, path = %path.display(), block = number,
                  "finished writing block {number}, which a crash had interrupted");
        }
        let head = load_head(
            &blocks,
            &block_files,
            &meta,
            &state_hashes,
            &state,
            network_id,
        )?;
        info!(target: TARGET, path = %path.display(), tip = head.tip.number,
              applied_raft_index = head.applied_raft_index, state_hash = %head.state_hash,
              "opened ledger");
        let committer = Mutex::new(Validator::new(&config, network_id));
        Ok(Ledger {
            path,
            db,
            blocks,
            state,
            txindex,
            meta,
            state_hashes,
            block_files,
            genesis: config,
            network_id,
            head: RwLock::new(head),
            committer,
        })
    }

    /// The sled database (the node keeps its Raft log and other trees in it too).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The data dir.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The genesis configuration.
    pub fn genesis(&self) -> &GenesisConfig {
        &self.genesis
    }

    /// The network id: the hash of block 0.
    pub fn network_id(&self) -> Hash32 {
        self.network_id
    }

    /// Lets the committer skip signatures this process already verified (see
    /// [`Validator::set_verified_signatures`]); verdicts do not change.
    pub fn set_verified_signatures(
        &self,
        sigs: std::sync::Arc<sphr_crypto::sigcache::VerifiedSigs>,
    ) {
        self.lock_committer().set_verified_signatures(sigs);
    }

    /// The number of the last block (0 when only genesis is there), as the node's API and
    /// metrics call height. The number of blocks is `height() + 1`.
    pub fn height(&self) -> u64 {
        self.read_head().tip.number
    }

    /// The header of the last block whose commit returned (written and flushed).
    ///
    /// While block `n` is being committed, its state writes become visible to reads a moment
    /// before `tip()` says `n`: state may be one block ahead of the tip, never behind it.
    pub fn tip(&self) -> BlockHeader {
        self.read_head().tip.clone()
    }

    /// The tip header and the world-state hash after it, read together (see
    /// [`state_hash_after`]).
    pub fn tip_and_state_hash(&self) -> (BlockHeader, Hash32) {
        let head = self.read_head();
        (head.tip.clone(), head.state_hash)
    }

    /// The genesis nodes whose node certificate appeared in a block committed since the
    /// ledger was opened, with the latest expiry seen (`(name@org, not_after)`, Unix seconds).
    /// Waits for a commit in progress.
    pub fn node_cert_expiry(&self) -> Vec<(String, u64)> {
        self.lock_committer().node_cert_expiry()
    }

    /// The world-state hash after block `number`, if the ledger has that block.
    pub fn state_hash_at(&self, number: u64) -> Result<Option<Hash32>, LedgerError> {
        match self.state_hashes.get(codec::encode_u64(number))? {
            None => Ok(None),
            Some(raw) => Ok(Some(codec::decode_hash("state hash", &raw)?)),
        }
    }

    /// The last Raft index applied (a block made or an entry skipped); 0 before any.
    pub fn applied_raft_index(&self) -> u64 {
        self.read_head().applied_raft_index
    }

    /// The committed value and version at namespaced `key`.
    pub fn get_state(&self, key: &[u8]) -> Result<Option<(Version, Vec<u8>)>, LedgerError> {
        match self.state.get(key)? {
            None => Ok(None),
            Some(raw) => {
                let (v, value) = codec::decode_state_value(&raw)?;
                Ok(Some((v, value.to_vec())))
            }
        }
    }

    /// Committed entries with keys in `[start, end)`, in key order, at most
    /// `min(limit, MAX_RANGE_ENTRIES)`.
    pub fn range_state(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<StateEntry>, LedgerError> {
        let limit = limit.min(MAX_RANGE_ENTRIES);
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.state.range(start..end).take(limit) {
            let (k, raw) = item?;
            let (v, value) = codec::decode_state_value(&raw)?;
            out.push((k.to_vec(), v, value.to_vec()));
        }
        Ok(out)
    }

    /// Block `number` with its codes, if the ledger has it.
    pub fn block(&self, number: u64) -> Result<Option<BlockRecord>, LedgerError> {
        match self.blocks.get(codec::encode_u64(number))? {
            None => Ok(None),
            Some(raw) => read_block_value(&self.block_files, number, &raw).map(Some),
        }
    }

    /// Where transaction `tx_id` was committed and its code. Only transactions whose creator
    /// signature verified are indexed (see [`MvccChecked::index_entries`]).
    pub fn tx_location(&self, tx_id: &Hash32) -> Result<Option<TxLocation>, LedgerError> {
        match self.txindex.get(tx_id.as_bytes())? {
            None => Ok(None),
            Some(raw) => Ok(Some(TxLocation::from_bytes(&raw)?)),
        }
    }

    /// Applies Raft entry `raft_index` holding `batch`: makes the next block, validates its
    /// transactions and commits block, valid writes, tx index, tip and applied index (all or
    /// nothing across a crash), then flushes.
    ///
    /// - `raft_index <= applied_raft_index()`: nothing happens ([`CommitOutcome::AlreadyApplied`]),
    ///   so replaying the log after a restart is harmless;
    /// - an unusable entry (not a batch, proposer not a genesis consenter, bad proposer
    ///   signature, too many txs) makes no block, but its index is recorded as applied
    ///   ([`CommitOutcome::Skipped`]), the same on every node.
    ///
    /// Errors are store failures only: stop the node (a block half-written when the error
    /// came is finished from its redo record when the ledger opens again).
    pub fn commit_batch(
        &self,
        raft_index: u64,
        batch: &SignedBatch,
    ) -> Result<CommitOutcome, LedgerError> {
        self.commit_owned(raft_index, batch.clone())
    }

    /// [`Ledger::commit_batch`] taking the batch (its 100 to 250 KB become the block's data
    /// without a copy).
    fn commit_owned(
        &self,
        raft_index: u64,
        batch: SignedBatch,
    ) -> Result<CommitOutcome, LedgerError> {
        let mut validator = self.lock_committer();
        let head = self.read_head().clone();
        if raft_index <= head.applied_raft_index {
            debug!(target: TARGET, raft_index, applied = head.applied_raft_index,
                   "raft entry already applied");
            return Ok(CommitOutcome::AlreadyApplied {
                raft_index,
                applied: head.applied_raft_index,
            });
        }
        let started = Instant::now();
        let decoded = match self.check_entry(&batch) {
            Ok(b) => b,
            Err(reason) => return self.skip_locked(raft_index, reason),
        };
        if head.tip.number.checked_add(1).is_none() {
            return Err(LedgerError::HeightOverflow(head.tip.number));
        }
        let (decoded, data_hash) = decoded;
        let block = Block::next_hashed(&head.tip, batch, decoded.timestamp_ms, data_hash);
        let checked = validator.validate(&block.header, &decoded.txs, self)?;
        let record = BlockRecord {
            block,
            codes: checked.codes().to_vec(),
            raft_index,
        };
        let committed = self.write_block(record, checked, started)?;
        Ok(CommitOutcome::Committed(committed))
    }

    /// [`Ledger::commit_batch`] for a Raft entry as bytes: an entry that does not decode as a
    /// signed batch is skipped ([`SkipReason::Undecodable`]) like any unusable entry.
    pub fn commit_entry(
        &self,
        raft_index: u64,
        entry: &[u8],
    ) -> Result<CommitOutcome, LedgerError> {
        match SignedBatch::from_bytes(entry) {
            Ok(batch) => self.commit_owned(raft_index, batch),
            Err(e) => self.skip_entry(raft_index, SkipReason::Undecodable(e.to_string())),
        }
    }

    /// Records an unusable entry as applied (unless it was applied before).
    fn skip_entry(
        &self,
        raft_index: u64,
        reason: SkipReason,
    ) -> Result<CommitOutcome, LedgerError> {
        let _commit = self.lock_committer();
        let applied = self.applied_raft_index();
        if raft_index <= applied {
            return Ok(CommitOutcome::AlreadyApplied {
                raft_index,
                applied,
            });
        }
        self.skip_locked(raft_index, reason)
    }

    /// Records an unusable entry after `applied_raft_index()` as applied. Caller holds the
    /// commit lock.
    fn skip_locked(
        &self,
        raft_index: u64,
        reason: SkipReason,
    ) -> Result<CommitOutcome, LedgerError> {
        self.write_applied(raft_index)?;
        self.write_head().applied_raft_index = raft_index;
        warn!(target: TARGET, raft_index, %reason, "raft entry gives no block");
        Ok(CommitOutcome::Skipped { raft_index, reason })
    }

    /// Checks that the database answers and agrees with the head in memory: reads the tip
    /// and applied index back from disk. For `/healthz`; waits for a running commit.
    pub fn check_health(&self) -> Result<(), LedgerError> {
        let _commit = self.lock_committer();
        let head = self.read_head().clone();
        let on_disk = read_meta_head(&self.meta)?;
        let last = match self.blocks.last()? {
            Some((k, _)) => Some(codec::decode_u64("block key", &k)?),
            None => None,
        };
        if on_disk.tip != head.tip
            || on_disk.applied_raft_index != head.applied_raft_index
            || last != Some(head.tip.number)
        {
            return Err(LedgerError::Corrupt(format!(
                "the tip on disk is block {} (raft index {}), in memory block {} (raft index {})",
                on_disk.tip.number,
                on_disk.applied_raft_index,
                head.tip.number,
                head.applied_raft_index
            )));
        }
        Ok(())
    }

    /// Records Raft entry `raft_index`, which carries no batch (an empty entry of a new
    /// leader, a configuration change), as applied. Returns false when it was applied before.
    pub fn mark_applied(&self, raft_index: u64) -> Result<bool, LedgerError> {
        let _commit = self.lock_committer();
        if raft_index <= self.applied_raft_index() {
            return Ok(false);
        }
        self.write_applied(raft_index)?;
        self.write_head().applied_raft_index = raft_index;
        Ok(true)
    }

    /// Appends a block fetched from a peer (sync): checks that it follows the tip, that its
    /// proposer is a genesis consenter who signed the batch, that its time is the batch's,
    /// re-validates its transactions and checks the codes equal the ones it carries, then
    /// commits it exactly as [`Ledger::commit_batch`] would have.
    ///
    /// The record's `raft_index` is not signed by anyone: it must be after the applied index
    /// here, and the sync layer must check it against the Raft snapshot it is catching up to
    /// (a peer that lies about it could make this node skip entries). When catching up to a
    /// snapshot, append its blocks first, then [`Ledger::mark_applied`] the snapshot's index.
    ///
    /// [`LedgerError::BlockRejected`]: drop the block and penalise the peer.
    pub fn append_block(&self, record: &BlockRecord) -> Result<CommittedBlock, LedgerError> {
        let mut validator = self.lock_committer();
        let head = self.read_head().clone();
        let number = record.block.header.number;
        let reject = |reason: String| LedgerError::BlockRejected { number, reason };
        record
            .block
            .check_link(&head.tip)
            .map_err(|e| reject(e.to_string()))?;
        let BlockData::Batch(batch) = &record.block.data else {
            return Err(reject("holds a genesis configuration".into()));
        };
        let (decoded, _) = self.check_entry(batch).map_err(|r| reject(r.to_string()))?;
        if record.block.header.timestamp_ms != decoded.timestamp_ms {
            return Err(reject("header time differs from the batch time".into()));
        }
        if record.raft_index <= head.applied_raft_index {
            return Err(reject(format!(
                "raft index {} is not after the applied index {}",
                record.raft_index, head.applied_raft_index
            )));
        }
        let started = Instant::now();
        let checked = validator.validate(&record.block.header, &decoded.txs, self)?;
        if checked.codes() != record.codes.as_slice() {
            let at = checked
                .codes()
                .iter()
                .zip(&record.codes)
                .position(|(a, b)| a != b);
            return Err(reject(match at {
                Some(i) => format!(
                    "tx {i}: the block says {}, validation here gives {}",
                    record.codes.get(i).map_or("none", |c| c.as_str()),
                    checked.codes().get(i).map_or("none", |c| c.as_str()),
                ),
                None => format!(
                    "{} codes for {} transactions",
                    record.codes.len(),
                    checked.len()
                ),
            }));
        }
        self.write_block(record.clone(), checked, started)
    }

    /// Decodes a batch and checks its proposer; the batch and its SHA-256 (the block's data
    /// hash), or the reason for skipping.
    fn check_entry(&self, batch: &SignedBatch) -> Result<(Batch, Hash32), SkipReason> {
        let b = batch
            .decode_batch()
            .map_err(|e| SkipReason::Undecodable(e.to_string()))?;
        let node = self
            .genesis
            .node(&b.proposer.org, &b.proposer.name)
            .ok_or_else(|| SkipReason::UnknownProposer(b.proposer.clone()))?;
        if !node.consenter {
            return Err(SkipReason::NotConsenter(b.proposer.clone()));
        }
        let data_hash = batch
            .verify(&node.public_key)
            .map_err(|_| SkipReason::BadProposerSignature(b.proposer.clone()))?;
        if b.txs.len() > self.genesis.block.max_tx as usize {
            return Err(SkipReason::TooManyTxs {
                count: b.txs.len(),
                max: self.genesis.block.max_tx,
            });
        }
        Ok((b, data_hash))
    }

    /// Writes a validated block, its valid writes, index entries, tip and applied index (all
    /// or nothing across a crash: a redo record first, see the comment inside), flushes, then
    /// moves the in-memory head. Caller holds the commit lock. Readers may see some of the
    /// block's state writes before the others; a simulation that reads across that moment
    /// holds a version that is stale by the time it commits, and fails the MVCC check.
    fn write_block(
        &self,
        record: BlockRecord,
        checked: MvccChecked,
        started: Instant,
    ) -> Result<CommittedBlock, LedgerError> {
        let validation_duration = started.elapsed();
        let write_started = Instant::now();
        let header = record.block.header.clone();
        let number = header.number;
        // Assert before writing: the block follows the tip, one code per transaction.
        {
            let head = self.read_head();
            if Some(number) != head.tip.number.checked_add(1) || record.codes.len() != checked.len()
            {
                return Err(LedgerError::Corrupt(format!(
                    "refusing to write block {number} after tip {} with {} codes for {} txs",
                    head.tip.number,
                    record.codes.len(),
                    checked.len()
                )));
            }
        }
        let key = codec::encode_u64(number);
        // The record goes to the segment file first and is synced: the location written in
        // the transaction below must never reach disk before the bytes it points to.
        let location = self.block_files.append(&record.to_bytes()?)?;
        self.block_files.sync()?;
        let location = location.to_bytes();
        let writes = checked.state_writes();
        let index: Vec<([u8; 32], [u8; codec::TX_LOCATION_LEN])> = checked
            .index_entries()
            .into_iter()
            .map(|(id, loc)| (id.0, loc.to_bytes()))
            .collect();
        let tip = codec::encode_header(&header);
        let applied = codec::encode_u64(record.raft_index);
        let prev_state_hash = self.read_head().state_hash;
        let state_hash = state_hash_after(&prev_state_hash, number, &writes);

        // The redo record (one insert, so all or nothing), then the writes in order, the tip
        // last: sled recovers a contiguous prefix of its log, so after a crash either the
        // tip is this block, or the record is there to finish what the crash cut
        // (`finish_interrupted_write` on open). A sled transaction would do the same at the
        // cost of two more log-buffer writes per block (each a job that wakes every thread
        // of sled's I/O pool) and a process-wide lock that stops every reader meanwhile.
        let mut ops: Vec<RedoWrite<'_>> = Vec::with_capacity(writes.len() + index.len() + 4);
        ops.push((RedoTree::Blocks, &key[..], Some(&location[..])));
        ops.push((RedoTree::StateHashes, &key[..], Some(&state_hash.0[..])));
        for (k, v) in &writes {
            ops.push((RedoTree::State, k, v.as_deref()));
        }
        for (id, loc) in &index {
            ops.push((RedoTree::TxIndex, &id[..], Some(&loc[..])));
        }
        ops.push((RedoTree::Meta, META_APPLIED_RAFT_INDEX, Some(&applied[..])));
        // Last: a recorded tip means every write before it is there.
        ops.push((RedoTree::Meta, META_TIP, Some(&tip[..])));
        self.meta
            .insert(META_REDO, codec::encode_redo(number, &ops))?;
        self.trees().apply(&ops)?;
        drop(ops);
        self.db.flush()?;
        let commit_duration = write_started.elapsed();
        drop(writes);

        let hash = header.hash();
        let raft_index = record.raft_index;
        {
            let mut head = self.write_head();
            head.tip = header.clone();
            head.applied_raft_index = raft_index;
            head.state_hash = state_hash;
        }
        let txs = checked.into_outcomes();
        let valid = txs.iter().filter(|t| t.code.is_valid()).count();
        for t in txs.iter().filter(|t| !t.code.is_valid()) {
            debug!(target: TARGET, block = number, position = t.position, code = %t.code,
                   "transaction invalid");
        }
        // Since the leader sealed the batch, by this node's clock (the nodes' clocks differ
        // by their skew): ordering and replication time plus the queue before this block.
        let age_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .saturating_sub(header.timestamp_ms);
        info!(target: TARGET, block = number, txs = txs.len(), valid, raft_index,
              elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
              age_ms, "committed block");
        Ok(CommittedBlock {
            number,
            hash,
            raft_index,
            timestamp_ms: header.timestamp_ms,
            txs,
            validation_duration,
            commit_duration,
        })
    }

    /// Records the applied Raft index alone (an entry without a block). Caller holds the
    /// commit lock.
    fn write_applied(&self, raft_index: u64) -> Result<(), LedgerError> {
        self.meta
            .insert(META_APPLIED_RAFT_INDEX, &codec::encode_u64(raft_index)[..])?;
        self.meta.flush()?;
        Ok(())
    }

    fn trees(&self) -> Trees<'_> {
        Trees {
            blocks: &self.blocks,
            state_hashes: &self.state_hashes,
            state: &self.state,
            txindex: &self.txindex,
            meta: &self.meta,
        }
    }

    fn read_head(&self) -> std::sync::RwLockReadGuard<'_, Head> {
        // A panic while holding the lock cannot leave `Head` half-updated (plain assignments
        // after the disk write), so a poisoned lock is still good data.
        self.head.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_head(&self) -> std::sync::RwLockWriteGuard<'_, Head> {
        self.head.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_committer(&self) -> MutexGuard<'_, Validator> {
        self.committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl StateReader for Ledger {
    fn get_state(&self, key: &[u8]) -> Result<Option<(Version, Vec<u8>)>, LedgerError> {
        Ledger::get_state(self, key)
    }

    fn version(&self, key: &[u8]) -> Result<Option<Version>, LedgerError> {
        match self.state.get(key)? {
            None => Ok(None),
            Some(raw) => Ok(Some(codec::decode_state_version(&raw)?)),
        }
    }

    fn range_state(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<StateEntry>, LedgerError> {
        Ledger::range_state(self, start, end, limit)
    }
}

impl TxIndexReader for Ledger {
    fn tx_location(&self, tx_id: &Hash32) -> Result<Option<TxLocation>, LedgerError> {
        Ledger::tx_location(self, tx_id)
    }

    fn contains_tx(&self, tx_id: &Hash32) -> Result<bool, LedgerError> {
        Ok(self.txindex.contains_key(tx_id.as_bytes())?)
    }
}

/// How long [`Ledger::open`] waits for sled's lock on the database file. A ledger dropped a
/// moment ago in this process releases it within milliseconds, once sled's background threads
/// let go of the file; another process holding it is an error after this wait.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens the sled database at `path`, retrying while its lock is held (see [`LOCK_WAIT`]).
fn open_db(path: &Path) -> Result<sled::Db, LedgerError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_error(&e) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(source) => {
                return Err(LedgerError::Open {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Whether sled refused to open because another handle holds the database file's lock (the
/// node's vault database uses it too).
pub fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Writes block 0 and the metadata of a new ledger.
fn init(
    db: &sled::Db,
    blocks: &sled::Tree,
    meta: &sled::Tree,
    state_hashes: &sled::Tree,
    genesis: &Block,
    network_id: Hash32,
) -> Result<(), LedgerError> {
    let record = BlockRecord {
        block: genesis.clone(),
        codes: Vec::new(),
        raft_index: 0,
    }
    .to_bytes()?;
    let tip = codec::encode_header(&genesis.header);
    let state_hash = genesis_state_hash(&network_id);
    (blocks, meta, state_hashes)
        .transaction(|(blocks, meta, state_hashes)| {
            blocks.insert(&codec::encode_u64(0)[..], record.as_slice())?;
            state_hashes.insert(&codec::encode_u64(0)[..], &state_hash.0[..])?;
            meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()[..])?;
            meta.insert(META_GENESIS_HASH, &network_id.0[..])?;
            meta.insert(META_TIP, &tip[..])?;
            meta.insert(META_APPLIED_RAFT_INDEX, &codec::encode_u64(0)[..])?;
            Ok::<(), ConflictableTransactionError<std::convert::Infallible>>(())
        })
        .map_err(tx_error)?;
    db.flush()?;
    Ok(())
}

/// The trees a block's writes go to.
struct Trees<'a> {
    blocks: &'a sled::Tree,
    state_hashes: &'a sled::Tree,
    state: &'a sled::Tree,
    txindex: &'a sled::Tree,
    meta: &'a sled::Tree,
}

impl Trees<'_> {
    /// Applies writes in order (each one alone; not flushed).
    fn apply(&self, ops: &[RedoWrite<'_>]) -> Result<(), LedgerError> {
        for (tree, key, value) in ops {
            let tree = match tree {
                RedoTree::Blocks => self.blocks,
                RedoTree::StateHashes => self.state_hashes,
                RedoTree::State => self.state,
                RedoTree::TxIndex => self.txindex,
                RedoTree::Meta => self.meta,
            };
            match value {
                Some(v) => tree.insert(key, *v)?,
                None => tree.remove(key)?,
            };
        }
        Ok(())
    }

    /// Finishes a block write that a crash cut short: when the redo record is for the block
    /// after the recorded tip, applies all of its writes again (each sets a key to the value
    /// it had in that block, so writing twice is writing once) and flushes. Returns the
    /// number of the block finished.
    fn finish_interrupted_write(&self, db: &sled::Db) -> Result<Option<u64>, LedgerError> {
        let Some(raw) = self.meta.get(META_REDO)? else {
            return Ok(None);
        };
        let (number, ops) = codec::decode_redo(&raw)?;
        let tip = read_meta_head(self.meta)?.tip.number;
        if number <= tip {
            return Ok(None);
        }
        if Some(number) != tip.checked_add(1) {
            return Err(LedgerError::Corrupt(format!(
                "the redo record is for block {number} but the recorded tip is block {tip}"
            )));
        }
        self.apply(&ops)?;
        db.flush()?;
        Ok(Some(number))
    }
}

/// Reads tip and applied index from `meta` and checks them against the blocks tree: the last
/// block stored must be the tip (a block's writes end with the tip; an interrupted write is
/// finished before this runs). Reads the state hash
/// of the tip; a ledger written before state hashes existed gets one made from its whole
/// state at the tip (logged: nodes upgraded at different heights will show different hashes).
fn load_head(
    blocks: &sled::Tree,
    block_files: &SegmentStore,
    meta: &sled::Tree,
    state_hashes: &sled::Tree,
    state: &sled::Tree,
    network_id: Hash32,
) -> Result<Head, LedgerError> {
    let mut head = read_meta_head(meta)?;
    let (tip, applied_raft_index) = (&head.tip, head.applied_raft_index);
    let (last_key, last_raw) = blocks
        .last()?
        .ok_or_else(|| LedgerError::Corrupt("no blocks stored".into()))?;
    let last = codec::decode_u64("block key", &last_key)?;
    let record = read_block_value(block_files, last, &last_raw)?;
    if last != tip.number || record.block.header != *tip {
        return Err(LedgerError::Corrupt(format!(
            "the recorded tip is block {} but the last block stored is {last}",
            tip.number
        )));
    }
    if record.raft_index > applied_raft_index {
        return Err(LedgerError::Corrupt(format!(
            "block {last} came from raft index {} but the applied index is {applied_raft_index}",
            record.raft_index
        )));
    }
    head.state_hash = match state_hashes.get(codec::encode_u64(last))? {
        Some(raw) => codec::decode_hash("state hash", &raw)?,
        None => {
            let h = legacy_state_hash(state, &network_id, last)?;
            state_hashes.insert(&codec::encode_u64(last)[..], &h.0[..])?;
            state_hashes.flush()?;
            warn!(target: TARGET, tip = last, state_hash = %h,
                  "this ledger had no state hash: made one from its whole state at the tip");
            h
        }
    };
    Ok(head)
}

/// A state hash for a ledger written before state hashes existed: the genesis hash (empty
/// state) at block 0, otherwise a hash over every state entry in key order at `tip`.
fn legacy_state_hash(
    state: &sled::Tree,
    network_id: &Hash32,
    tip: u64,
) -> Result<Hash32, LedgerError> {
    if tip == 0 && state.is_empty() {
        return Ok(genesis_state_hash(network_id));
    }
    let mut digests = Vec::new();
    for item in state.iter() {
        let (k, v) = item?;
        digests.extend_from_slice(sphr_crypto::hash::sha256_parts(&[b"w", &k, &v]).as_bytes());
    }
    Ok(sphr_crypto::hash::sha256_parts(&[
        b"sphr-state-v1-legacy",
        network_id.as_bytes(),
        &tip.to_be_bytes(),
        &sphr_crypto::hash::sha256(&digests).0,
    ]))
}

/// A `blocks` tree value: the location of the record in a segment file, or (genesis, and
/// ledgers of layout version 1) the record itself.
fn read_block_value(
    block_files: &SegmentStore,
    number: u64,
    raw: &[u8],
) -> Result<BlockRecord, LedgerError> {
    let bytes;
    let record = if Location::is_location(raw) {
        let location = Location::from_bytes(raw)?;
        bytes = block_files.read(&location, MAX_BLOCK_RECORD_BYTES)?;
        &bytes[..]
    } else {
        raw
    };
    BlockRecord::from_bytes(record)
        .map_err(|e| LedgerError::Corrupt(format!("block {number} does not decode: {e}")))
}

/// Tip and applied index as recorded in `meta`.
fn read_meta_head(meta: &sled::Tree) -> Result<Head, LedgerError> {
    let tip_raw = meta
        .get(META_TIP)?
        .ok_or_else(|| LedgerError::Corrupt("no tip recorded".into()))?;
    let tip = codec::decode_header(&tip_raw)?;
    let applied_raw = meta
        .get(META_APPLIED_RAFT_INDEX)?
        .ok_or_else(|| LedgerError::Corrupt("no applied raft index recorded".into()))?;
    let applied_raft_index = codec::decode_u64("applied raft index", &applied_raw)?;
    Ok(Head {
        tip,
        applied_raft_index,
        // Filled in by `load_head`; `check_health` compares tip and index only.
        state_hash: Hash32([0; 32]),
    })
}

fn tx_error(e: TransactionError<std::convert::Infallible>) -> LedgerError {
    match e {
        TransactionError::Abort(never) => match never {},
        TransactionError::Storage(e) => LedgerError::Storage(e),
    }
}
