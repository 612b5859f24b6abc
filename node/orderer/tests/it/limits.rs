//! Bounds, refusals and stopping: back-pressure instead of memory, errors instead of panics.

use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{Message, MessageType};
use sphr_orderer::SubmitError;

use crate::harness::{Cluster, Gate, tx, wait_until};

const T: Duration = Duration::from_secs(10);

fn msg(t: MessageType, from: u64, to: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(t);
    m.from = from;
    m.to = to;
    m.term = 1;
    m
}

#[test]
fn submit_is_refused_when_pending_txs_reach_the_bound() {
    let mut c = Cluster::new(&[1], |cfg| {
        cfg.max_pending_txs = 3;
        cfg.max_tx = 1;
    });
    let gate = Arc::new(Gate::default());
    c.start_sealer_gated(1, Arc::clone(&gate));
    c.wait_leader(T);
    let h = c.handle(1);
    h.submit(tx(0)).unwrap();
    // The Raft thread is now held inside `seal`: nothing more is taken from the queue, and
    // tx 0 counts as pending until it is proposed.
    wait_until(T, "the sealer to block", || gate.has_waiter());
    for i in 1..=2 {
        h.submit(tx(i)).unwrap();
    }
    assert_eq!(h.submit(tx(3)), Err(SubmitError::Full));
    assert_eq!(h.submit_batch(vec![tx(3)]), Err(SubmitError::Full));
    assert_eq!(h.status().pending_txs, 3);
    gate.open();
    c.wait_txs(1, 3, T);
    assert_eq!(c.ledger_txs(1), (0..3).map(tx).collect::<Vec<_>>());
    wait_until(T, "pending to drain", || h.status().pending_txs == 0);
    h.submit(tx(3)).unwrap();
    c.wait_txs(1, 4, T);
}

#[test]
fn input_queue_is_bounded() {
    let mut c = Cluster::new(&[1], |cfg| cfg.input_capacity = 2);
    let gate = Arc::new(Gate::default());
    c.start_sealer_gated(1, Arc::clone(&gate));
    c.wait_leader(T);
    let h = c.handle(1);
    h.submit(tx(0)).unwrap();
    wait_until(T, "the sealer to block", || gate.has_waiter());
    // Messages from an unknown member: queued, then refused by the driver.
    h.step(msg(MessageType::MsgHeartbeat, 9, 1)).unwrap();
    h.step(msg(MessageType::MsgHeartbeat, 9, 1)).unwrap();
    assert_eq!(
        h.step(msg(MessageType::MsgHeartbeat, 9, 1)),
        Err(SubmitError::Full)
    );
    assert_eq!(h.submit(tx(1)), Err(SubmitError::Full));
    gate.open();
    wait_until(T, "both refused", || h.status().msgs_rejected_total == 2);
}

#[test]
fn refuses_messages_peers_may_not_send() {
    // Only node 1 of three runs: no leader, nothing else happening.
    let mut c = Cluster::new(&[1, 2, 3], |_| {});
    c.start(1);
    let h = c.handle(1);
    h.step(msg(MessageType::MsgHeartbeat, 2, 7)).unwrap(); // not for me
    h.step(msg(MessageType::MsgHeartbeat, 7, 1)).unwrap(); // not a voter
    h.step(msg(MessageType::MsgHeartbeat, 1, 1)).unwrap(); // from myself
    h.step(msg(MessageType::MsgPropose, 2, 1)).unwrap(); // entry injection
    h.step(msg(MessageType::MsgHup, 2, 1)).unwrap(); // local message type
    wait_until(T, "5 refusals", || h.status().msgs_rejected_total == 5);
    let st = h.status();
    assert!(st.healthy && st.running);
    assert_eq!(st.last_index, 0, "nothing was appended");
}

#[test]
fn shutdown_is_idempotent_and_final() {
    let mut c = Cluster::new(&[1], |_| {});
    c.start(1);
    c.wait_leader(T);
    let h = c.handle(1);
    let h2 = h.clone();
    h.shutdown();
    h.shutdown();
    h2.shutdown();
    assert_eq!(h.submit(tx(0)), Err(SubmitError::Stopped));
    assert_eq!(h2.step(Message::default()), Err(SubmitError::Stopped));
    let st = h.status();
    assert!(!st.running);
    assert!(
        st.healthy,
        "a requested stop is not a failure: {:?}",
        st.fatal
    );
    assert_eq!(st.fatal, None);
}

/// A leader that cannot commit (followers cut off) proposes at most
/// `max_inflight_proposals` entries; the rest wait, counted as pending, and go through once
/// the links are back.
#[test]
fn inflight_proposals_are_bounded() {
    let mut c = Cluster::new(&[1, 2, 3], |cfg| {
        cfg.max_tx = 1;
        cfg.max_inflight_proposals = 2;
        cfg.batch_timeout = Duration::from_millis(5);
        // A longer lease (0.5 s): the leader keeps its role while cut off during the test.
        cfg.election_ticks = 50;
        cfg.heartbeat_ticks = 5;
    });
    for id in [1, 2, 3] {
        c.start(id);
    }
    let leader = c.wait_leader(T);
    // Let the leader's no-op commit so that nothing is in flight.
    wait_until(T, "no-op committed", || {
        c.status(leader).inflight_proposals == 0
    });
    let proposed_before = c.status(leader).proposals_total;
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != leader).collect();
    for &o in &others {
        c.isolate(o);
    }
    let h = c.handle(leader);
    h.submit_batch((0..10).map(tx).collect()).unwrap();
    wait_until(T, "2 in flight, 8 waiting", || {
        let st = h.status();
        assert!(st.inflight_proposals <= 2, "{st:?}");
        st.inflight_proposals == 2 && st.pending_txs == 8
    });
    assert_eq!(h.status().proposals_total, proposed_before + 2);
    for &o in &others {
        c.heal(o);
    }
    for id in [1, 2, 3] {
        c.wait_txs(id, 10, T);
    }
    assert_eq!(c.ledger_txs(leader), (0..10).map(tx).collect::<Vec<_>>());
}
