//! Integration tests of sphr-ledger, on real sled databases in temporary directories.

// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod blockfiles;
mod commit;
mod entries;
mod reopen;
mod validation;

use sphr_crypto::hash::Hash32;
use sphr_ledger::test_utils::TestNetwork;
use sphr_ledger::{CommitOutcome, CommittedBlock, Ledger};
use sphr_types::{Transaction, ValidationCode};
use tempfile::TempDir;

/// A ledger for `net` in a fresh temporary directory (kept alive by the returned guard).
pub fn open(net: &TestNetwork) -> (TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = net.open_ledger(dir.path());
    (dir, ledger)
}

/// Commits `txs` as the next Raft entry and returns the block.
pub fn commit(net: &TestNetwork, ledger: &Ledger, txs: &[Transaction]) -> CommittedBlock {
    let index = ledger.applied_raft_index() + 1;
    match ledger.commit_batch(index, &net.batch(txs)).unwrap() {
        CommitOutcome::Committed(b) => b,
        other => panic!("expected a block, got {other:?}"),
    }
}

/// The codes of a committed block.
pub fn codes(b: &CommittedBlock) -> Vec<ValidationCode> {
    b.txs.iter().map(|t| t.code).collect()
}

/// The tx id of a transaction.
pub fn tx_id(t: &Transaction) -> Hash32 {
    t.signed_proposal.decode_proposal().unwrap().tx_id()
}
