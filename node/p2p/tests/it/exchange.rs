//! Three nodes: requests of each kind between every pair, gossip on both topics.

use std::time::Duration;

use sphr_p2p::{Kind, Topic};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_exchange_requests_raft_and_gossip() {
    init_tracing();
    let nodes = start_net(3, limits()).await;
    let mut handles = Vec::new();
    let mut seen = Vec::new();
    for (h, inbound) in nodes {
        handles.push(h);
        seen.push(spawn_echo(inbound));
    }
    let t = Duration::from_secs(10);

    for i in 0..3u8 {
        for j in 0..3u8 {
            if i == j {
                continue;
            }
            let (from, to) = (&handles[i as usize], key(j));
            for kind in [Kind::Endorse, Kind::Blocks] {
                let body = format!("{kind} {i}->{j}").into_bytes();
                let answer = from.request(to, kind, body.clone(), t).await.unwrap();
                assert_eq!(answer, echo(kind, &body));
                assert_eq!(
                    next_seen(&mut seen[j as usize]).await,
                    Seen::Request {
                        from: key(i),
                        kind,
                        body
                    }
                );
            }
            // Raft, fire-and-forget.
            let body = format!("raft {i}->{j}").into_bytes();
            from.send_raft(to, body.clone()).unwrap();
            assert_eq!(
                next_seen(&mut seen[j as usize]).await,
                Seen::Raft { from: key(i), body }
            );
            // Raft as a request: the p2p layer acks it with an empty body.
            let body = format!("raft req {i}->{j}").into_bytes();
            assert_eq!(
                from.request(to, Kind::Raft, body.clone(), t).await.unwrap(),
                Vec::<u8>::new()
            );
            assert_eq!(
                next_seen(&mut seen[j as usize]).await,
                Seen::Raft { from: key(i), body }
            );
        }
    }

    // A large block range, near the blocks limit, both ways.
    let big = vec![0x5A; (256 << 10) - 16];
    let answer = handles[0]
        .request(key(1), Kind::Blocks, big.clone(), t)
        .await
        .unwrap();
    assert_eq!(answer, echo(Kind::Blocks, &big));
    assert!(matches!(
        next_seen(&mut seen[1]).await,
        Seen::Request {
            kind: Kind::Blocks,
            ..
        }
    ));

    // Gossip on both topics reaches both other nodes, with the author's key.
    for (author, topic) in [(0u8, Topic::Blocks), (1, Topic::Txs), (2, Topic::Blocks)] {
        let body = format!("{topic} from {author}").into_bytes();
        handles[author as usize]
            .publish(topic, body.clone())
            .await
            .unwrap();
        for other in (0..3u8).filter(|&o| o != author) {
            assert_eq!(
                next_seen(&mut seen[other as usize]).await,
                Seen::Gossip {
                    from: key(author),
                    topic,
                    body: body.clone()
                }
            );
        }
    }

    for (i, h) in handles.iter().enumerate() {
        let s = h.stats();
        assert_eq!(s.bad_messages_total, 0, "node {i}: {s:?}");
        assert_eq!(s.peers_refused_total, 0, "node {i}: {s:?}");
        assert_eq!(s.requests_failed_total, 0, "node {i}: {s:?}");
        assert!(
            s.messages_in_total > 0 && s.messages_out_total > 0,
            "node {i}: {s:?}"
        );
        let mut expect: Vec<[u8; 32]> = (0..3u8).filter(|&o| o as usize != i).map(key).collect();
        expect.sort();
        assert_eq!(h.connected_peers(), expect);
    }
    for h in &handles {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_get_clear_errors_before_anything_is_sent() {
    init_tracing();
    let nodes = start_net(2, limits()).await;
    let (a, _keep) = &nodes[0];
    let t = Duration::from_secs(5);
    // Not in the allow-list.
    let err = a
        .request(key(7), Kind::Endorse, vec![1], t)
        .await
        .unwrap_err();
    assert!(matches!(err, sphr_p2p::P2pError::UnknownPeer(_)), "{err}");
    assert!(matches!(
        a.send_raft(key(7), vec![1]),
        Err(sphr_p2p::P2pError::UnknownPeer(_))
    ));
    // Over the kind's limit.
    let err = a
        .request(key(1), Kind::Endorse, vec![0; (64 << 10) + 1], t)
        .await
        .unwrap_err();
    assert!(matches!(err, sphr_p2p::P2pError::TooLarge { .. }), "{err}");
    let err = a
        .publish(Topic::Txs, vec![0; (64 << 10) + 1])
        .await
        .unwrap_err();
    assert!(matches!(err, sphr_p2p::P2pError::TooLarge { .. }), "{err}");
    // A refused configuration names its key.
    let mut bad = config(5, &[0], "127.0.0.1:0", limits());
    bad.limits.inbound_queue = 0;
    let err = sphr_p2p::P2p::start(bad).await.unwrap_err();
    assert!(err.to_string().contains("inbound_queue"), "{err}");
    for (h, _) in &nodes {
        h.shutdown().await;
    }
}
