//! Three voters in one process over the in-memory network.

use std::time::{Duration, Instant};

use crate::harness::{Cluster, tx, wait_until};

const T: Duration = Duration::from_secs(15);

fn assert_same_ledgers(c: &Cluster, ids: &[u64]) {
    let first = c.ledger(ids[0]);
    for &id in &ids[1..] {
        assert_eq!(
            c.ledger(id),
            first,
            "ledger of node {id} differs from node {}",
            ids[0]
        );
    }
}

#[test]
fn three_nodes_forward_commit_fail_over_and_catch_up() {
    let mut c = Cluster::new(&[1, 2, 3], |cfg| {
        // 20 ms ticks: elections after 200..400 ms.
        cfg.tick = Duration::from_millis(20);
        cfg.max_tx = 10;
    });
    for id in [1, 2, 3] {
        c.start(id);
    }
    let leader = c.wait_leader(T);
    let follower = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();

    // Submitted at a follower: forwarded to the leader, committed everywhere, same order.
    for i in 0..50 {
        c.handle(follower).submit(tx(i)).unwrap();
    }
    for id in [1, 2, 3] {
        c.wait_txs(id, 50, T);
    }
    assert_eq!(c.ledger_txs(leader), (0..50).map(tx).collect::<Vec<_>>());
    assert_same_ledgers(&c, &[1, 2, 3]);
    let max_inflight = c.config(leader).max_inflight_proposals as u64;
    assert!(c.status(leader).inflight_proposals <= max_inflight);

    // Stop the leader: the other two elect a new one within two (longest) election timeouts.
    let old = leader;
    let changes_before = c.status(follower).leader_changes;
    c.stop(old);
    let stopped_at = Instant::now();
    let bound = c.config(follower).max_election_timeout() * 2;
    let mut new_leader = 0;
    wait_until(bound + Duration::from_secs(5), "a new leader", || {
        let ids = c.running();
        let st: Vec<_> = ids.iter().map(|&i| c.status(i)).collect();
        let l = st[0].leader_id;
        if l != 0 && l != old && st.iter().all(|s| s.leader_id == l) {
            new_leader = l;
            true
        } else {
            false
        }
    });
    let took = stopped_at.elapsed();
    assert!(
        took <= bound,
        "new leader after {took:?}, more than two election timeouts ({bound:?})"
    );
    assert!(c.status(follower).leader_changes > changes_before);

    // Transactions keep committing, submitted at either survivor.
    let survivors = c.running();
    for i in 50..80 {
        c.handle(survivors[i % 2]).submit(tx(i)).unwrap();
    }
    for &id in &survivors {
        c.wait_txs(id, 80, T);
    }
    assert_same_ledgers(&c, &survivors);
    let mut got = c.ledger_txs(new_leader);
    got.sort();
    let mut want: Vec<Vec<u8>> = (0..80).map(tx).collect();
    want.sort();
    assert_eq!(got, want, "every tx committed once");

    // The old leader restarts and catches up from the log.
    c.start(old);
    c.wait_txs(old, 80, T);
    assert_same_ledgers(&c, &[1, 2, 3]);
    let st = c.status(old);
    assert!(!st.is_leader && st.healthy);
    assert_eq!(
        st.snapshots_restored_total, 0,
        "caught up from the log, not a snapshot"
    );
}

/// A follower cut off from the others buffers what it is given, bounded, and forwards it
/// when the links come back.
#[test]
fn isolated_follower_buffers_and_forwards_when_healed() {
    let mut c = Cluster::new(&[1, 2, 3], |cfg| {
        cfg.forward_buffer_txs = 8;
        cfg.batch_timeout = Duration::from_millis(20);
    });
    for id in [1, 2, 3] {
        c.start(id);
    }
    let leader = c.wait_leader(T);
    let f = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    c.isolate(f);
    // Without heartbeats the follower forgets the leader (pre-vote keeps the term).
    wait_until(T, "the isolated follower to lose its leader", || {
        c.status(f).leader_id == 0
    });
    for i in 0..20 {
        c.handle(f).submit(tx(i)).unwrap();
    }
    wait_until(T, "12 dropped", || c.status(f).txs_dropped_total == 12);
    assert_eq!(c.status(f).pending_txs, 8);
    c.heal(f);
    for id in [1, 2, 3] {
        c.wait_txs(id, 8, T);
    }
    assert_eq!(c.ledger_txs(leader), (0..8).map(tx).collect::<Vec<_>>());
    assert_same_ledgers(&c, &[1, 2, 3]);
}
