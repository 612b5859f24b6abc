//! Applying runs on a thread of its own: the Raft thread orders and commits while a block is
//! being applied, blocks are applied in commit order exactly once, and an applier that fails
//! or panics stops the orderer with its reason.

use std::sync::Arc;
use std::time::Duration;

use sphr_orderer::{OrdererHandle, SubmitError};

use crate::harness::{Cluster, Gate, tx, wait_until};

const T: Duration = Duration::from_secs(10);

/// A one-voter cluster (a block per tx) whose applier waits for the returned gate.
fn single_node_with_held_applier() -> (Cluster, Arc<Gate>, OrdererHandle) {
    let mut c = Cluster::new(&[1], |cfg| {
        cfg.max_tx = 1;
        cfg.batch_timeout = Duration::from_millis(5);
    });
    let gate = Arc::new(Gate::default());
    let g = Arc::clone(&gate);
    c.start_with(1, move |a| a.gate = Some(g));
    c.wait_leader(T);
    let h = c.handle(1);
    (c, gate, h)
}

#[test]
fn ordering_goes_on_while_a_block_is_applied() {
    let (c, gate, h) = single_node_with_held_applier();
    h.submit(tx(0)).unwrap();
    wait_until(T, "the applier to block", || gate.has_waiter());
    let held_at = h.status().applied_index;
    for i in 1..=3 {
        h.submit(tx(i)).unwrap();
    }
    // The three are proposed and committed while the first block is still being applied.
    wait_until(T, "3 more blocks committed", || {
        h.status().commit_index >= held_at + 4
    });
    let st = h.status();
    assert_eq!(
        st.applied_index, held_at,
        "nothing applied past the held block"
    );
    assert!(st.healthy && st.running && st.is_leader, "{st:?}");
    assert_eq!(st.proposals_total, 4);

    gate.open();
    c.wait_txs(1, 4, T);
    assert_eq!(c.ledger_txs(1), (0..4).map(tx).collect::<Vec<_>>());
    let applied = c.observed(1).applied.lock().unwrap().clone();
    let indexes: Vec<u64> = applied.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes.len(), 4, "each block applied once: {indexes:?}");
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    let st = h.status();
    assert_eq!(st.applied_index, st.commit_index);
    assert_eq!(st.entries_applied_total, 4);
}

#[test]
fn shutdown_applies_what_was_committed() {
    let (_c, gate, h) = single_node_with_held_applier();
    for i in 0..3 {
        h.submit(tx(i)).unwrap();
    }
    wait_until(T, "the applier to block", || gate.has_waiter());
    wait_until(T, "all three committed", || {
        let st = h.status();
        st.commit_index >= st.applied_index + 3
    });
    let commit = h.status().commit_index;
    // Shutdown waits for the apply thread, which is held: open the gate from elsewhere.
    let opener = {
        let gate = Arc::clone(&gate);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            gate.open();
        })
    };
    h.shutdown();
    opener.join().unwrap();
    let st = h.status();
    assert!(!st.running && st.healthy, "{st:?}");
    assert_eq!(st.applied_index, commit, "everything committed was applied");
    assert_eq!(h.submit(tx(9)), Err(SubmitError::Stopped));
}

#[test]
fn a_panicking_applier_stops_the_orderer_with_its_message() {
    let mut c = Cluster::new(&[1], |cfg| cfg.max_tx = 1);
    c.start_with(1, |a| a.panic_from = Some(3));
    c.wait_leader(T);
    let h = c.handle(1);
    h.submit(tx(0)).unwrap(); // index 2: applied
    c.wait_txs(1, 1, T);
    h.submit(tx(1)).unwrap(); // index 3: panics
    wait_until(T, "the driver to stop", || !h.status().running);
    let st = h.status();
    assert!(!st.healthy);
    let reason = st.fatal.clone().unwrap();
    assert!(
        reason.contains("applier panicked: injected panic at 3"),
        "{reason}"
    );
    assert_eq!(st.applied_index, 2);
    assert_eq!(h.submit(tx(2)), Err(SubmitError::Stopped));
}
