//! The read side of the ledger as traits: what the endorser's simulator and the validator need.
//!
//! [`crate::Ledger`] implements both on sled; tests and benchmarks may implement them in memory.

use sphr_crypto::hash::Hash32;
use sphr_types::Version;

use crate::codec::TxLocation;
use crate::ledger::LedgerError;

/// Most entries one [`StateReader::range_state`] call returns, whatever limit is asked.
pub const MAX_RANGE_ENTRIES: usize = 10_000;

/// One world-state entry: namespaced key, version, value.
pub type StateEntry = (Vec<u8>, Version, Vec<u8>);

/// Committed world state with versions.
///
/// Correctness requirements for implementations:
/// - keys are full namespaced keys (`sphr_types::namespaced_key`); values come back exactly as
///   the committer wrote them, with the version `(block, position)` of the transaction that
///   wrote them;
/// - reads see committed state only: nothing of a block is visible before its validation is
///   done and its writes apply. Reads made while a commit runs may see the state
///   before or after that block, key by key (sled gives per-key atomicity), possibly a moment
///   before the ledger's tip reports that block; MVCC at commit catches any key that moved, so a
///   simulation never needs a lock;
/// - `range_state` returns keys in `[start, end)` in ascending byte order, at most
///   `min(limit, MAX_RANGE_ENTRIES)` of them, and nothing when `start >= end`;
/// - errors mean the store failed (not that a key is absent): the caller stops using the
///   result, it never treats an error as "absent".
pub trait StateReader {
    /// The value and version at `key`.
    fn get_state(&self, key: &[u8]) -> Result<Option<(Version, Vec<u8>)>, LedgerError>;

    /// Only the version at `key` (what MVCC compares); implementations may skip copying the
    /// value.
    fn version(&self, key: &[u8]) -> Result<Option<Version>, LedgerError> {
        Ok(self.get_state(key)?.map(|(v, _)| v))
    }

    /// Entries with keys in `[start, end)`, in key order, at most `limit`.
    fn range_state(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<StateEntry>, LedgerError>;
}

/// The committed tx index.
///
/// Correctness requirements: an id is present once a block holding it as an authenticated
/// transaction (creator signature verified) has committed, and from then on forever; the
/// location never changes.
pub trait TxIndexReader {
    /// Where `tx_id` was committed, and its code.
    fn tx_location(&self, tx_id: &Hash32) -> Result<Option<TxLocation>, LedgerError>;

    /// Whether `tx_id` is committed.
    fn contains_tx(&self, tx_id: &Hash32) -> Result<bool, LedgerError> {
        Ok(self.tx_location(tx_id)?.is_some())
    }
}
