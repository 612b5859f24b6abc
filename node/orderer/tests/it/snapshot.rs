//! Fabric-style snapshots: "blocks up to height h"; the log is compacted behind them, and a
//! member that starts empty gets the snapshot, fetches the blocks, then follows the log.

use std::time::Duration;

use crate::harness::{Cluster, tx, wait_until};

const T: Duration = Duration::from_secs(15);

#[test]
fn log_is_compacted_and_an_empty_member_catches_up_by_snapshot() {
    let mut c = Cluster::new(&[1, 2, 3], |cfg| {
        cfg.max_tx = 5;
        cfg.snapshot_interval = 10;
        cfg.snapshot_catchup_entries = 2;
    });
    // Two of three voters are a quorum; node 3 stays off for now.
    c.start(1);
    c.start(2);
    let leader = c.wait_leader(T);
    for chunk in 0..12 {
        let txs = (chunk * 5..chunk * 5 + 5).map(tx).collect();
        c.handle(leader).submit_batch(txs).unwrap();
    }
    for id in [1, 2] {
        c.wait_txs(id, 60, T);
        wait_until(T, "a snapshot and a compacted log", || {
            let st = c.status(id);
            st.snapshot_index >= 10 && st.first_index > 1
        });
        let st = c.status(id);
        assert!(st.snapshots_taken_total >= 1);
        assert_eq!(
            st.first_index,
            st.snapshot_index - 1,
            "2 entries kept: {st:?}"
        );
    }

    // Node 3 starts with an empty log: the entries it needs are compacted, so it gets the
    // leader's snapshot, restores it (fetching blocks), then applies what follows.
    c.start(3);
    c.wait_txs(3, 60, T);
    let observed = c.observed(3);
    // The applier stores the fetched blocks before it records the call: wait for both.
    wait_until(T, "restore_snapshot to be called", || {
        !observed.restores.lock().unwrap().is_empty()
    });
    let restores = observed.restores.lock().unwrap().clone();
    let (index, term, data) = restores[0].clone();
    assert!(index >= 10 && term >= 1);
    let (height, last_block): (u64, u64) = ciborium::from_reader(&data[..]).unwrap();
    assert!(height >= 1 && last_block <= index);
    assert!(c.status(3).snapshots_restored_total >= 1);

    for i in 60..80 {
        c.handle(3).submit(tx(i)).unwrap();
    }
    for id in [1, 2, 3] {
        c.wait_txs(id, 80, T);
    }
    // After the restore node 3 applied entries from the log, above the snapshot.
    let applied = c.observed(3).applied.lock().unwrap().clone();
    assert!(!applied.is_empty() && applied.iter().all(|(i, _)| *i > index));
    let ledger = c.ledger(1);
    assert_eq!(c.ledger(2), ledger);
    assert_eq!(c.ledger(3), ledger);
    let mut txs = c.ledger_txs(3);
    txs.sort();
    let mut want: Vec<Vec<u8>> = (0..80).map(tx).collect();
    want.sort();
    assert_eq!(txs, want);
}
