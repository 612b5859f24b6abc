//! A peer with a valid libp2p key that is not in the allow-list is refused after the
//! handshake and counted; nothing it sends reaches the node.

use std::time::Duration;

use sphr_p2p::{Kind, P2p, Topic};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stranger_is_refused_and_counted() {
    init_tracing();
    // Node 0 allows node 1 only (not running). The stranger (node 9) allows node 0.
    let (a, mut a_inbound) = P2p::start(config(0, &[0, 1], "127.0.0.1:0", limits()))
        .await
        .unwrap();
    let (stranger, _s_inbound) = P2p::start(config(9, &[0], "127.0.0.1:0", limits()))
        .await
        .unwrap();
    stranger
        .set_peer_addr(key(0), &a.local_addr().to_string())
        .await
        .unwrap();

    wait_until("the stranger refused", || {
        a.stats().peers_refused_total >= 1
    })
    .await;

    // Whatever the stranger tries fails on its side...
    let t = Duration::from_secs(2);
    for kind in [Kind::Endorse, Kind::Raft, Kind::Blocks] {
        let r = bounded(
            "stranger request",
            stranger.request(key(0), kind, b"hi".to_vec(), t),
        )
        .await;
        assert!(r.is_err(), "{kind}: {r:?}");
    }
    let _ = stranger.send_raft(key(0), b"vote for me".to_vec());
    for topic in Topic::ALL {
        let r = stranger.publish(topic, b"forged".to_vec()).await;
        assert!(r.is_err(), "{topic}: {r:?}");
    }
    // ...and it keeps being refused when it redials.
    let refused = a.stats().peers_refused_total;
    wait_until("the stranger's redial refused too", || {
        a.stats().peers_refused_total > refused
    })
    .await;

    // Nothing reached node 0's node.
    assert!(a_inbound.try_recv().is_err());
    let s = a.stats();
    assert_eq!(s.messages_in_total, 0, "{s:?}");
    assert_eq!(s.peers_connected, 0, "{s:?}");
    assert!(a.connected_peers().is_empty());
    assert_eq!(s.bad_messages_total, 0, "{s:?}");

    stranger.shutdown().await;
    a.shutdown().await;
    assert!(a_inbound.try_recv().is_err());
}
