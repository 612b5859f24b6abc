//! Stop and restart on the same sled database: nothing applied twice, nothing lost.

use std::time::Duration;

use raft::Storage;

use crate::harness::{Cluster, tx};

const T: Duration = Duration::from_secs(10);

/// A running one-node cluster (blocks of at most `max_tx`) that committed `tx(0..n)`.
fn one_node_with_txs(max_tx: usize, n: usize) -> Cluster {
    let mut c = Cluster::new(&[1], move |cfg| cfg.max_tx = max_tx);
    c.start(1);
    c.wait_leader(T);
    for i in 0..n {
        c.handle(1).submit(tx(i)).unwrap();
    }
    c.wait_txs(1, n, T);
    c
}

/// Each index was handed to node 1's applier once, in order, across its runs.
fn assert_applied_once_in_order(c: &Cluster) {
    let indexes: Vec<u64> = c
        .observed(1)
        .applied
        .lock()
        .unwrap()
        .iter()
        .map(|(i, _)| *i)
        .collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
}

#[test]
fn restart_keeps_log_hard_state_and_applied_index() {
    let mut c = one_node_with_txs(7, 30);
    let before = c.status(1);
    c.stop(1);

    // What was persisted.
    let (db, storage) = c.open_storage(1);
    let st = storage.initial_state().unwrap();
    assert_eq!(st.hard_state.term, before.term);
    assert_eq!(st.hard_state.vote, 1);
    assert!(st.hard_state.commit >= before.applied_index);
    assert_eq!(storage.last_log_index(), before.last_index);
    drop(storage);
    drop(db);

    c.start(1);
    c.wait_leader(T);
    let after = c.status(1);
    assert!(
        after.term > before.term,
        "the stored term was loaded: {after:?}"
    );
    for i in 30..40 {
        c.handle(1).submit(tx(i)).unwrap();
    }
    c.wait_txs(1, 40, T);
    assert_eq!(c.ledger_txs(1), (0..40).map(tx).collect::<Vec<_>>());
    // Each index handed to the applier once, across both runs.
    assert_applied_once_in_order(&c);
    let applied = c.observed(1).applied.lock().unwrap().clone();
    let txs: Vec<Vec<u8>> = applied.into_iter().flat_map(|(_, t)| t).collect();
    assert_eq!(txs, (0..40).map(tx).collect::<Vec<_>>());
    assert!(c.status(1).healthy);
}

/// The commit index is stored without a flush of its own (the ledger's flush in the same
/// database carries it), so a crash can leave a stored commit index below what the applier
/// applied: the node starts all the same, raises it, and goes on without applying anything
/// twice.
#[test]
fn a_stored_commit_index_behind_the_applied_one_is_raised_at_start() {
    let mut c = one_node_with_txs(4, 12);
    let applied = c.status(1).applied_index;
    c.stop(1);

    let (db, mut storage) = c.open_storage(1);
    let mut hs = storage.hard_state().clone();
    assert!(hs.commit >= applied);
    hs.commit = storage.first_log_index();
    assert!(hs.commit < applied, "{} < {applied}", hs.commit);
    storage.set_hard_state(&hs).unwrap();
    storage.flush().unwrap();
    drop(storage);
    drop(db);

    c.start(1);
    c.wait_leader(T);
    for i in 12..16 {
        c.handle(1).submit(tx(i)).unwrap();
    }
    c.wait_txs(1, 16, T);
    assert_eq!(c.ledger_txs(1), (0..16).map(tx).collect::<Vec<_>>());
    assert_applied_once_in_order(&c);
    c.stop(1);
    let (_db, storage) = c.open_storage(1);
    assert!(storage.hard_state().commit >= applied);
}

/// The applier fails after Raft committed entries: the driver stops (no panic, reported in
/// the status); after a restart with a working applier the committed entries are applied,
/// once, and nothing is lost.
#[test]
fn apply_failure_stops_the_driver_and_restart_resumes() {
    let mut c = Cluster::new(&[1], |cfg| {
        cfg.max_tx = 5;
        cfg.batch_timeout = Duration::from_millis(300);
    });
    c.start(1);
    c.wait_leader(T);
    c.handle(1).submit_batch((0..5).map(tx).collect()).unwrap();
    c.wait_txs(1, 5, T);
    let next = c.ledger(1).last().unwrap().0 + 1;
    c.stop(1);

    // Fail on the first block of the next run (after its leader no-op).
    c.start_with(1, |a| a.fail_from = Some(next));
    c.wait_leader(T);
    let h = c.handle(1);
    h.submit_batch((5..10).map(tx).collect()).unwrap();
    crate::harness::wait_until(T, "the driver to stop", || !h.status().running);
    let st = h.status();
    assert!(!st.healthy);
    let reason = st.fatal.clone().unwrap();
    assert!(reason.contains("injected failure"), "{reason}");
    assert_eq!(h.submit(tx(99)), Err(sphr_orderer::SubmitError::Stopped));
    assert_eq!(c.ledger_txs(1).len(), 5);
    c.stop(1);

    c.start(1);
    c.wait_txs(1, 10, T);
    assert_eq!(c.ledger_txs(1), (0..10).map(tx).collect::<Vec<_>>());
    assert_applied_once_in_order(&c);
}
