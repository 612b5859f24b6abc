//! A node that stops and comes back on the same address is redialed by the others.

use std::time::Duration;

use sphr_p2p::{Kind, P2p, P2pError};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_is_redialed_and_reconnects() {
    init_tracing();
    let nodes = start_net(3, limits()).await;
    let mut handles = Vec::new();
    let mut seen = Vec::new();
    for (h, inbound) in nodes {
        handles.push(h);
        seen.push(spawn_echo(inbound));
    }
    let t = Duration::from_secs(10);
    assert_eq!(
        handles[0]
            .request(key(2), Kind::Endorse, b"before".to_vec(), t)
            .await
            .unwrap(),
        echo(Kind::Endorse, b"before")
    );

    // Node 2 goes away.
    let addr2 = handles[2].local_addr();
    handles[2].shutdown().await;
    assert_eq!(handles[2].stats().peers_connected, 0);
    wait_until("nodes 0 and 1 see node 2 gone", || {
        !handles[0].is_connected(&key(2)) && !handles[1].is_connected(&key(2))
    })
    .await;
    // A dead peer fails at once, not after a timeout.
    let err = bounded(
        "request to a dead peer",
        handles[0].request(key(2), Kind::Endorse, b"anyone?".to_vec(), t),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, P2pError::NotConnected(_)), "{err}");
    assert!(matches!(
        handles[1].send_raft(key(2), b"x".to_vec()),
        Err(P2pError::NotConnected(_))
    ));
    // Its handle says it is shut down.
    let err = handles[2]
        .request(key(0), Kind::Endorse, b"x".to_vec(), t)
        .await
        .unwrap_err();
    assert_eq!(err, P2pError::Shutdown);

    // Let the survivors fail a few redials (their backoff grows) before node 2 comes back.
    let dials = handles[0].stats().dials_total;
    wait_until("node 0 redials", || {
        handles[0].stats().dials_total >= dials + 2
    })
    .await;

    // Node 2 restarts on the same address, knowing no addresses: only the others' redials
    // can bring it back.
    let (h2, inbound2) = P2p::start(config(2, &[0, 1, 2], &addr2.to_string(), limits()))
        .await
        .unwrap();
    assert_eq!(h2.local_addr(), addr2);
    seen[2] = spawn_echo(inbound2);
    handles[2] = h2;
    wait_until("node 2 reconnected to both", || {
        handles[2].stats().peers_connected == 2
            && handles[0].is_connected(&key(2))
            && handles[1].is_connected(&key(2))
    })
    .await;
    for i in [0u8, 1] {
        let body = format!("after {i}").into_bytes();
        let answer = handles[i as usize]
            .request(key(2), Kind::Endorse, body.clone(), t)
            .await
            .unwrap();
        assert_eq!(answer, echo(Kind::Endorse, &body));
        assert_eq!(
            next_seen(&mut seen[2]).await,
            Seen::Request {
                from: key(i),
                kind: Kind::Endorse,
                body
            }
        );
    }
    let answer = handles[2]
        .request(key(1), Kind::Blocks, b"catch up".to_vec(), t)
        .await
        .unwrap();
    assert_eq!(answer, echo(Kind::Blocks, b"catch up"));
    for h in &handles {
        h.shutdown().await;
    }
}

/// The fault switch cuts a node off from every peer, both ways, without counting the peers'
/// redials as strangers; healing reconnects it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_node_is_cut_off_both_ways_and_heals() {
    init_tracing();
    let nodes = start_net(3, limits()).await;
    let mut handles = Vec::new();
    let mut seen = Vec::new();
    for (h, inbound) in nodes {
        handles.push(h);
        seen.push(spawn_echo(inbound));
    }
    let t = Duration::from_secs(10);
    assert!(!handles[2].is_isolated());
    bounded("isolate", handles[2].set_isolated(true))
        .await
        .unwrap();
    assert!(handles[2].is_isolated());
    wait_until("node 2 cut off from both, both from node 2", || {
        handles[2].stats().peers_connected == 0
            && !handles[0].is_connected(&key(2))
            && !handles[1].is_connected(&key(2))
    })
    .await;
    // The others keep talking to each other.
    assert_eq!(
        handles[0]
            .request(key(1), Kind::Endorse, b"still here".to_vec(), t)
            .await
            .unwrap(),
        echo(Kind::Endorse, b"still here")
    );
    // Their redials are refused while it lasts, and not counted as strangers.
    let dials = handles[0].stats().dials_total;
    wait_until("node 0 redials node 2", || {
        handles[0].stats().dials_total >= dials + 2
    })
    .await;
    assert!(!handles[0].is_connected(&key(2)));
    assert_eq!(handles[2].stats().peers_refused_total, 0);
    assert!(matches!(
        handles[2]
            .request(key(0), Kind::Endorse, b"x".to_vec(), t)
            .await,
        Err(P2pError::NotConnected(_))
    ));

    bounded("heal", handles[2].set_isolated(false))
        .await
        .unwrap();
    assert!(!handles[2].is_isolated());
    wait_until("node 2 reconnected to both", || {
        handles[2].stats().peers_connected == 2
            && handles[0].is_connected(&key(2))
            && handles[1].is_connected(&key(2))
    })
    .await;
    assert_eq!(
        handles[2]
            .request(key(0), Kind::Endorse, b"back".to_vec(), t)
            .await
            .unwrap(),
        echo(Kind::Endorse, b"back")
    );
    for h in &handles {
        h.shutdown().await;
    }
}
