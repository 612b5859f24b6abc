//! One voter: it elects itself at once and orders what it is given.

use std::time::Duration;

use crate::harness::{Cluster, decode_block, tx, wait_until};

const T: Duration = Duration::from_secs(10);

#[test]
fn orders_txs_in_batches_by_count_and_timeout() {
    let mut c = Cluster::new(&[1], |cfg| {
        cfg.max_tx = 10;
        // Long enough that the 25 submits below never straddle it.
        cfg.batch_timeout = Duration::from_millis(300);
    });
    c.start(1);
    assert_eq!(c.wait_leader(T), 1);
    let h = c.handle(1);
    for i in 0..25 {
        h.submit(tx(i)).unwrap();
    }
    c.wait_txs(1, 25, T);
    let want: Vec<Vec<u8>> = (0..25).map(tx).collect();
    assert_eq!(c.ledger_txs(1), want, "every tx once, in submission order");
    let sizes: Vec<usize> = c
        .ledger(1)
        .iter()
        .map(|(_, b)| decode_block(b).unwrap().len())
        .collect();
    assert_eq!(
        sizes,
        vec![10, 10, 5],
        "two full batches, then the rest on timeout"
    );

    let applied = c.observed(1).applied.lock().unwrap().clone();
    let indexes: Vec<u64> = applied.iter().map(|(i, _)| *i).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    let st = c.status(1);
    assert!(st.is_leader && st.healthy);
    assert_eq!(st.proposals_total, 3);
    assert_eq!(st.entries_applied_total, 3);
    // The leader's no-op (index 1) is passed over, never handed to the applier.
    assert_eq!(indexes, vec![2, 3, 4]);
    assert_eq!(st.applied_index, 4);
    assert_eq!(st.pending_txs, 0);
}

#[test]
fn cuts_by_bytes() {
    let mut c = Cluster::new(&[1], |cfg| {
        cfg.max_tx = 100;
        cfg.max_bytes = 100;
        cfg.batch_timeout = Duration::from_millis(300);
    });
    c.start(1);
    c.wait_leader(T);
    let h = c.handle(1);
    let txs: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 30]).collect();
    h.submit_batch(txs.clone()).unwrap();
    wait_until(T, "7 txs", || c.ledger_txs(1).len() == 7);
    assert_eq!(c.ledger_txs(1), txs);
    let sizes: Vec<usize> = c
        .ledger(1)
        .iter()
        .map(|(_, b)| decode_block(b).unwrap().len())
        .collect();
    assert_eq!(sizes, vec![3, 3, 1]);
}

#[test]
fn refuses_oversized_tx() {
    let mut c = Cluster::new(&[1], |cfg| cfg.max_bytes = 16);
    c.start(1);
    let h = c.handle(1);
    assert_eq!(
        h.submit(vec![0; 17]),
        Err(sphr_orderer::SubmitError::TooLarge { len: 17, max: 16 })
    );
    assert_eq!(
        h.submit_batch(vec![vec![1], vec![0; 17]]),
        Err(sphr_orderer::SubmitError::TooLarge { len: 17, max: 16 })
    );
    assert_eq!(h.status().pending_txs, 0);
}
