//! Requests end in bounded time: a peer that never answers, a peer whose node is too slow,
//! and a node whose inbound queue is full (answered "busy").

use std::time::Duration;

use sphr_p2p::{Inbound, Kind, P2pError, P2pLimits};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_to_a_silent_peer_times_out() {
    init_tracing();
    let lim = P2pLimits {
        request_timeout_ms: 1_000,
        ..limits()
    };
    let mut nodes = start_net(2, lim).await;
    let (b_handle, mut b_inbound) = nodes.pop().unwrap();
    let (a, _a_inbound) = nodes.pop().unwrap();
    // Node 1 takes requests and never answers (holds the reply senders).
    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(msg) = b_inbound.recv().await {
            if let Inbound::Request { reply, .. } = msg {
                let _ = held_tx.send(reply).await;
            }
        }
    });

    // The caller's timeout.
    let err = bounded(
        "request with a short caller timeout",
        a.request(
            key(1),
            Kind::Endorse,
            b"hello?".to_vec(),
            Duration::from_millis(300),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err, P2pError::Timeout);

    // The configured timeout bounds a patient caller too (1 s here): the peer's p2p layer
    // answers that its node did not answer in time (after 0.9 s), or, on a loaded machine,
    // our side gives up first or the peer drops the stream.
    let err = bounded(
        "request with a long caller timeout",
        a.request(
            key(1),
            Kind::Endorse,
            b"hello??".to_vec(),
            Duration::from_secs(3600),
        ),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            P2pError::Timeout | P2pError::Remote(_) | P2pError::Failed(_)
        ),
        "{err}"
    );
    assert!(a.stats().requests_failed_total >= 2);
    assert!(
        held_rx.recv().await.is_some(),
        "the request did reach node 1"
    );

    // The connection is still good for Raft.
    a.send_raft(key(1), b"heartbeat".to_vec()).unwrap();
    b_handle.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_inbound_queue_answers_busy() {
    init_tracing();
    let lim = P2pLimits {
        inbound_queue: 1,
        ..limits()
    };
    let mut nodes = start_net(2, lim).await;
    // Node 1's node never reads its inbound channel: one request fills it.
    let (b, _b_inbound_never_read) = nodes.pop().unwrap();
    let (a, _a_inbound) = nodes.pop().unwrap();
    let t = Duration::from_secs(10);
    let first = {
        let a = a.clone();
        tokio::spawn(async move { a.request(key(1), Kind::Endorse, b"first".to_vec(), t).await })
    };
    wait_until("first request queued at node 1", || {
        b.stats().messages_in_total >= 1
    })
    .await;
    let err = bounded(
        "busy answer",
        a.request(key(1), Kind::Blocks, b"second".to_vec(), t),
    )
    .await
    .unwrap_err();
    assert_eq!(err, P2pError::Remote("busy".into()));
    // A Raft message that finds the queue full is dropped and counted where it arrived
    // (on the Raft stream no answer goes back per message).
    a.send_raft(key(1), b"append".to_vec()).unwrap();
    wait_until("raft message counted busy", || {
        b.stats().inbound_busy_total >= 2
    })
    .await;
    let s = b.stats();
    assert_eq!(
        s.messages_in_total, 3,
        "two requests and the raft message: {s:?}"
    );
    b.shutdown().await;
    // The first request ends when node 1 stops.
    let r = bounded("first request", first).await.unwrap();
    assert!(r.is_err(), "{r:?}");
    a.shutdown().await;
}
