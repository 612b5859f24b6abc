//! Endorse requests on the long-lived `/sphr/endorse/2` stream: one stream per peer, answers
//! matched to their requests by id whatever their order; frames a peer writes are checked,
//! answered by id, and a bad one ends the stream; a peer that stops answering is cut off.

use std::time::Duration;

use libp2p::StreamProtocol;
use libp2p::futures::future::join_all;
use libp2p::futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use sphr_p2p::wire::{self, Envelope, Reply};
use sphr_p2p::{Inbound, Kind, P2pError, P2pLimits};

use crate::common::*;

const ENDORSE_STREAM: StreamProtocol = StreamProtocol::new("/sphr/endorse/2");

/// A request on the stream: its id, then a `/sphr/endorse/1` request frame.
fn request_frame(network_id: [u8; 32], id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend(
        wire::encode_frame(&Envelope {
            network_id,
            kind: Kind::Endorse.code(),
            body: body.to_vec(),
        })
        .unwrap(),
    );
    out
}

/// Reads one answer off the stream: its id and the reply.
async fn read_answer(stream: &mut libp2p::Stream) -> (u64, Reply) {
    let mut id = [0u8; 8];
    bounded("an answer's id", stream.read_exact(&mut id))
        .await
        .unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).await.unwrap();
    let reply = wire::decode_response(&frame, &NET, Kind::Endorse.code(), 1 << 20).unwrap();
    (u64::from_be_bytes(id), reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endorse_requests_share_one_stream_and_answers_find_their_requests() {
    init_tracing();
    let mut nodes = start_net(2, limits()).await;
    let (b, mut b_inbound) = nodes.pop().unwrap();
    let (a, _a_inbound) = nodes.pop().unwrap();
    // Node 1 answers in groups of three, last first: answers come back out of order.
    tokio::spawn(async move {
        let mut group = Vec::new();
        while let Some(msg) = b_inbound.recv().await {
            if let Inbound::Request {
                kind, body, reply, ..
            } = msg
            {
                group.push((echo(kind, &body), reply));
                if group.len() == 3 {
                    for (answer, reply) in group.drain(..).rev() {
                        let _ = reply.send(Ok(answer));
                    }
                }
            }
        }
    });

    let t = Duration::from_secs(10);
    let bodies: Vec<Vec<u8>> = (0..30)
        .map(|i| format!("proposal {i}").into_bytes())
        .collect();
    let answers = bounded(
        "30 requests at once",
        join_all(
            bodies
                .iter()
                .map(|body| a.request(key(1), Kind::Endorse, body.clone(), t)),
        ),
    )
    .await;
    for (body, answer) in bodies.iter().zip(answers) {
        assert_eq!(
            answer.unwrap(),
            echo(Kind::Endorse, body),
            "each answer is its own"
        );
    }
    let s = a.stats();
    assert_eq!(
        s.endorse_streams_opened_total, 1,
        "one stream for them all: {s:?}"
    );
    assert_eq!(s.messages_out_total, 30, "{s:?}");
    assert_eq!(s.messages_in_total, 30, "{s:?}");
    assert_eq!(s.requests_failed_total, 0, "{s:?}");
    let sb = b.stats();
    assert_eq!(
        (sb.messages_in_total, sb.messages_out_total),
        (30, 30),
        "{sb:?}"
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_on_an_inbound_endorse_stream_are_answered_by_id_and_bad_ones_end_it() {
    init_tracing();
    let (a, mut a_seen) = start_node0_echoing(limits()).await;
    let (mut control, a_id) = raw_stream_peer(&a).await;
    wait_until("connected", || a.is_connected(&key(1))).await;

    let mut stream = bounded(
        "open an endorse stream",
        control.open_stream(a_id, ENDORSE_STREAM),
    )
    .await
    .unwrap();
    // Ids are the requester's to choose; the answers carry them back.
    stream
        .write_all(&request_frame(NET, 7, b"one"))
        .await
        .unwrap();
    stream
        .write_all(&request_frame(NET, 3, b"two"))
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let mut got = vec![
        read_answer(&mut stream).await,
        read_answer(&mut stream).await,
    ];
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(
        got,
        vec![
            (3, Reply::Ok(echo(Kind::Endorse, b"two"))),
            (7, Reply::Ok(echo(Kind::Endorse, b"one"))),
        ]
    );
    for want in [&b"one"[..], b"two"] {
        assert_eq!(
            next_seen(&mut a_seen).await,
            Seen::Request {
                from: key(1),
                kind: Kind::Endorse,
                body: want.to_vec()
            }
        );
    }

    // Another network's request: counted, never reaches the node, and the stream ends; so
    // does a length over the limit on a new stream.
    let answered = refuse_bad_frames(
        &a,
        &mut control,
        stream,
        ENDORSE_STREAM,
        &request_frame([7; 32], 8, b"elsewhere"),
        &9u64.to_be_bytes(),
    )
    .await;
    assert!(answered.is_empty(), "no answer to a bad frame");

    assert!(
        a.is_connected(&key(1)),
        "a bad frame ends the stream, not the connection"
    );
    assert!(a_seen.try_recv().is_err(), "nothing bad reached the node");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_takes_endorse_requests_but_never_answers_is_disconnected() {
    init_tracing();
    let lim = P2pLimits {
        request_timeout_ms: 300,
        ..limits()
    };
    let (a, _a_seen, _control, mut incoming) =
        node0_and_raw_peer_accepting(lim, ENDORSE_STREAM).await;

    let t = Duration::from_millis(200);
    let first = tokio::spawn({
        let a = a.clone();
        async move {
            a.request(key(1), Kind::Endorse, b"endorse this".to_vec(), t)
                .await
        }
    });
    let (from, mut stream) = bounded("node 0 opens its endorse stream", incoming.next())
        .await
        .unwrap();
    assert_eq!(from, peer_id_of(&key(0)));
    let want = request_frame(NET, 0, b"endorse this");
    let mut got = vec![0u8; want.len()];
    bounded("the request", stream.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, want, "id 0, then a /sphr/endorse/1 request frame");
    assert_eq!(first.await.unwrap(), Err(P2pError::Timeout));

    // Never answered: a later request finds the stream overdue, and node 0 closes the link.
    bounded("the silent peer disconnected", async {
        while a.is_connected(&key(1)) {
            let _ = a.request(key(1), Kind::Endorse, b"again".to_vec(), t).await;
        }
    })
    .await;
    assert!(a.stats().requests_failed_total >= 2);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_left_unanswered_by_a_failed_stream_are_resent_on_new_ones() {
    init_tracing();
    let (a, _a_seen, _control, mut incoming) =
        node0_and_raw_peer_accepting(limits(), ENDORSE_STREAM).await;

    let t = Duration::from_secs(10);
    let ask = |body: &'static [u8]| {
        let a = a.clone();
        tokio::spawn(async move { a.request(key(1), Kind::Endorse, body.to_vec(), t).await })
    };
    // The peer reads the request, then drops the stream without answering: three times.
    let first = ask(b"endorse this");
    let want = request_frame(NET, 0, b"endorse this");
    let mut got = vec![0u8; want.len()];
    for _ in 0..3 {
        let (_, mut stream) = bounded("a stream", incoming.next()).await.unwrap();
        bounded("the request", stream.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(got, want, "the same request, id 0 on each new stream");
        drop(stream);
    }
    // Three streams failed under it: the caller is told, it does not wait for its timeout.
    let err = bounded("the first request fails", first).await.unwrap();
    assert!(matches!(err, Err(P2pError::Failed(_))), "{err:?}");

    // Dropped twice, then answered on the next stream: the caller gets the answer.
    let second = ask(b"and this");
    for _ in 0..2 {
        let (_, stream) = bounded("a stream", incoming.next()).await.unwrap();
        drop(stream);
    }
    let (_, mut stream) = bounded("another stream", incoming.next()).await.unwrap();
    let want = request_frame(NET, 0, b"and this");
    let mut got = vec![0u8; want.len()];
    bounded("the resent request", stream.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, want);
    let answer = wire::encode_response_frame(&wire::ResponseEnvelope {
        network_id: NET,
        kind: Kind::Endorse.code(),
        reply: Reply::Ok(b"endorsed".to_vec()),
    })
    .unwrap();
    stream.write_all(&0u64.to_be_bytes()).await.unwrap();
    stream.write_all(&answer).await.unwrap();
    stream.flush().await.unwrap();
    assert_eq!(
        bounded("the second request", second).await.unwrap(),
        Ok(b"endorsed".to_vec())
    );
    assert_eq!(a.stats().endorse_streams_opened_total, 6);
    a.shutdown().await;
}
