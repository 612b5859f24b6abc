//! Raft messages on the long-lived `/sphr/raft/2` stream: one stream per peer, in order,
//! kept alive by acks; a peer that stops acking is disconnected; bad frames on the stream
//! are counted and end it; a peer gets at most four streams at once.

use std::time::Duration;

use libp2p::StreamProtocol;
use libp2p::futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use sphr_p2p::wire::{self, Envelope};
use sphr_p2p::{Kind, P2pLimits};

use crate::common::*;

const RAFT_STREAM: StreamProtocol = StreamProtocol::new("/sphr/raft/2");

fn raft_frame(network_id: [u8; 32], body: &[u8]) -> Vec<u8> {
    wire::encode_frame(&Envelope {
        network_id,
        kind: Kind::Raft.code(),
        body: body.to_vec(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_messages_ride_one_stream_in_order_kept_up_by_acks() {
    init_tracing();
    // A short ack timeout: without acks the link would be closed within the run.
    let lim = P2pLimits {
        raft_timeout_ms: 1_500,
        ..limits()
    };
    let mut nodes = start_net(2, lim).await;
    let (b, b_inbound) = nodes.pop().unwrap();
    let (a, _a_inbound) = nodes.pop().unwrap();
    let mut b_seen = spawn_echo(b_inbound);

    // 4 s of messages, one every 20 ms, in bursts of 5 now and then.
    let mut sent = 0u32;
    for round in 0..200u32 {
        let burst = if round % 20 == 0 { 5 } else { 1 };
        for _ in 0..burst {
            a.send_raft(key(1), format!("m{sent}").into_bytes())
                .unwrap();
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..sent {
        match next_seen(&mut b_seen).await {
            Seen::Raft { from, body } => {
                assert_eq!(from, key(0));
                assert_eq!(body, format!("m{i}").into_bytes(), "in order");
            }
            other => panic!("expected raft message {i}, got {other:?}"),
        }
    }
    let s = a.stats();
    assert_eq!(
        s.raft_streams_opened_total, 1,
        "one stream for them all: {s:?}"
    );
    assert_eq!(s.raft_dropped_total, 0, "{s:?}");
    assert_eq!(s.messages_out_total, u64::from(sent), "{s:?}");
    assert!(a.is_connected(&key(1)), "acks kept the link up");
    assert_eq!(b.stats().messages_in_total, u64::from(sent));

    // And the other way, on a stream of its own.
    b.send_raft(key(0), b"reply".to_vec()).unwrap();
    wait_until("b opened its stream", || {
        b.stats().raft_streams_opened_total == 1
    })
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_reads_raft_frames_but_never_acks_is_disconnected() {
    init_tracing();
    let lim = P2pLimits {
        raft_timeout_ms: 300,
        ..limits()
    };
    let (a, _a_seen, _control, mut incoming) = node0_and_raw_peer_accepting(lim, RAFT_STREAM).await;

    a.send_raft(key(1), b"append entries".to_vec()).unwrap();
    let (from, mut stream) = bounded("node 0 opens its raft stream", incoming.next())
        .await
        .unwrap();
    assert_eq!(from, peer_id_of(&key(0)));
    // The frame is a /sphr/raft/1 request frame.
    let want = raft_frame(NET, b"append entries");
    let mut got = vec![0u8; want.len()];
    bounded("the frame", stream.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, want);

    // Never acked: the next messages find the link overdue, and node 0 closes it.
    bounded("the silent peer disconnected", async {
        while a.is_connected(&key(1)) {
            let _ = a.send_raft(key(1), b"heartbeat".to_vec());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(a.stats().raft_dropped_total >= 1);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_on_an_inbound_raft_stream_are_checked_acked_and_bad_ones_end_it() {
    init_tracing();
    let (a, mut a_seen) = start_node0_echoing(limits()).await;
    let (mut control, a_id) = raw_stream_peer(&a).await;
    wait_until("connected", || a.is_connected(&key(1))).await;

    let mut stream = bounded("open a raft stream", control.open_stream(a_id, RAFT_STREAM))
        .await
        .unwrap();
    stream.write_all(&raft_frame(NET, b"one")).await.unwrap();
    stream.write_all(&raft_frame(NET, b"two")).await.unwrap();
    stream.flush().await.unwrap();
    for want in [&b"one"[..], b"two"] {
        match next_seen(&mut a_seen).await {
            Seen::Raft { from, body } => {
                assert_eq!(from, key(1));
                assert_eq!(body, want);
            }
            other => panic!("expected a raft message, got {other:?}"),
        }
    }
    // Acks carry the count of frames read, and only grow: 1 or 2, then 2.
    let mut ack = [0u8; 8];
    loop {
        bounded("an ack", stream.read_exact(&mut ack))
            .await
            .unwrap();
        let n = u64::from_be_bytes(ack);
        assert!((1..=2).contains(&n), "ack {n}");
        if n == 2 {
            break;
        }
    }

    // Another network's frame: counted, and the stream ends; so does a length over the
    // limit on a new stream.
    refuse_bad_frames(
        &a,
        &mut control,
        stream,
        RAFT_STREAM,
        &raft_frame([7; 32], b"elsewhere"),
        &[],
    )
    .await;

    // At most 4 streams at once from a peer: a fifth is dropped unread.
    let mut held = Vec::new();
    for i in 0..4u8 {
        let mut s = bounded("open a stream", control.open_stream(a_id, RAFT_STREAM))
            .await
            .unwrap();
        s.write_all(&raft_frame(NET, &[i])).await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(
            next_seen(&mut a_seen).await,
            Seen::Raft {
                from: key(1),
                body: vec![i]
            }
        );
        held.push(s);
    }
    let mut fifth = bounded("open a fifth", control.open_stream(a_id, RAFT_STREAM))
        .await
        .unwrap();
    let _ = fifth.write_all(&raft_frame(NET, b"fifth")).await;
    let _ = fifth.flush().await;
    let _ = bounded("the fifth ends", fifth.read_to_end(&mut Vec::new())).await;
    held[0]
        .write_all(&raft_frame(NET, b"still open"))
        .await
        .unwrap();
    held[0].flush().await.unwrap();
    assert_eq!(
        next_seen(&mut a_seen).await,
        Seen::Raft {
            from: key(1),
            body: b"still open".to_vec()
        },
        "the fifth message never reached the node"
    );

    let s = a.stats();
    assert_eq!(s.messages_in_total, 7, "{s:?}");
    assert!(
        a.is_connected(&key(1)),
        "a bad frame ends the stream, not the connection"
    );
    assert!(a_seen.try_recv().is_err(), "nothing bad reached the node");
    a.shutdown().await;
}
