//! sphr-ledger: the ledger of a node on sled: block store, versioned world state, tx index, and
//! the committer that validates blocks and applies them atomically.
//!
//! ```text
//!  Raft entry (raft_index, SignedBatch)                 block from a peer (BlockRecord, sync)
//!     │ commit_batch                                       │ append_block
//!     │  index <= applied? ──> AlreadyApplied              │  link to tip, data hash
//!     │  decode, proposer = genesis consenter,             │  proposer + signature, time
//!     │  proposer signature, max_tx                        │
//!     │     └─ fails ──> Skipped (applied index recorded,  │
//!     │                  no block)                         │
//!     v                                                    v
//!  Block::next(tip, batch, batch time)               the peer's block
//!     └──────────────────────┬─────────────────────────────┘
//!                            v
//!  validate::Received ─> SignaturesChecked ─> PolicyChecked ─> MvccChecked
//!   (decode, network)    (certs: cache + one  (endorsing orgs   (read versions vs state
//!                         verify_many batch;   vs policy)        + earlier valid writes)
//!                         creator and endorser
//!                         signatures batched;
//!                         dup ids, namespaces,
//!                         contract, endorsers)
//!                            │ codes (must equal the peer's for append_block)
//!                            v
//!  BlockRecord { block, codes, raft_index } appended to a block segment file, synced
//!  meta: redo record (every write below, one insert), then the writes one by one:
//!    blocks[n] = location of the record (segment, offset, length, CRC-32)
//!    state_hashes[n] = H(state_hashes[n-1], n, writes)  (running world-state hash)
//!    state[k]  = version (n, position) ++ value      (writes of VALID txs only)
//!    txindex[id] = (n, position, code)               (txs whose creator signature verified)
//!    meta: applied raft index, then the tip header (last: a tip means the rest is there)
//!  then flush ──> CommittedBlock { per tx: id, position, code, contract, function, events }
//! ```
//!
//! Invalid transactions stay in the block with their code and change no state. The trees
//! live in one sled database that the node shares for its Raft log ([`Ledger::db`]); their
//! encodings are in [`codec`]. Reads ([`StateReader`], [`TxIndexReader`]) take `&self` and
//! never wait for a commit.
//!
//! Logs go to target `sphr::ledger` and never hold keys, values or arguments: only numbers,
//! ids, codes and hashes.

pub mod cert_cache;
pub mod codec;
pub mod ledger;
pub mod store;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod validate;

pub use codec::{CodecError, TxLocation};
pub use ledger::{
    BLOCK_SEGMENTS_DIR, CommitOutcome, CommittedBlock, Ledger, LedgerError, SkipReason,
    genesis_state_hash, is_lock_error, state_hash_after,
};
pub use store::{MAX_RANGE_ENTRIES, StateEntry, StateReader, TxIndexReader};
pub use validate::{TxOutcome, Validator};
