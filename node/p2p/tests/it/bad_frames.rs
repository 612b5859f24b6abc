//! A raw libp2p client (not sphr-p2p) writes frames by hand: wrong network id, unknown kind,
//! garbage, oversized. Each is dropped and counted by reason; the node keeps serving.

use std::io;
use std::time::Duration;

use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, StreamProtocol, Swarm, gossipsub};
use sphr_p2p::wire::{self, Envelope, Reply, ResponseEnvelope};
use sphr_p2p::{BadMessages, Kind, P2p, P2pHandle, Topic};

use crate::common::*;

/// Writes the request bytes as they are; reads the response to the end.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        io.take(1 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        io.take(1 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.flush().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&res).await
    }
}

#[derive(NetworkBehaviour)]
struct Raw {
    endorse: request_response::Behaviour<RawCodec>,
    raft: request_response::Behaviour<RawCodec>,
    gossip: gossipsub::Behaviour,
}

struct RawClient {
    swarm: Swarm<Raw>,
    target: PeerId,
    /// Raft requests received and never answered.
    held: Vec<request_response::ResponseChannel<Vec<u8>>>,
}

impl RawClient {
    async fn connect(seed: [u8; 32], target: &P2pHandle) -> RawClient {
        let mut swarm = raw_swarm(seed, |key| {
            let gcfg = gossipsub::ConfigBuilder::default()
                .max_transmit_size(1 << 20)
                .build()
                .unwrap();
            Raw {
                endorse: request_response::Behaviour::new(
                    [(Kind::Endorse.protocol(), ProtocolSupport::Outbound)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(10)),
                ),
                raft: request_response::Behaviour::new(
                    [(Kind::Raft.protocol(), ProtocolSupport::Inbound)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(3600)),
                ),
                gossip: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gcfg,
                )
                .unwrap(),
            }
        });
        for topic in Topic::ALL {
            let t = gossipsub::IdentTopic::new(topic.name(&NET));
            swarm.behaviour_mut().gossip.subscribe(&t).unwrap();
        }
        let target_id = peer_id_of(&target.local_key());
        // Requests dial through this address, and are sent as soon as the connection is up.
        swarm.add_peer_address(target_id, dial_addr(target));
        RawClient {
            swarm,
            target: target_id,
            held: Vec::new(),
        }
    }

    /// Keeps Raft requests unanswered; gives back the outcome of an endorse request.
    fn on_event(
        &mut self,
        event: SwarmEvent<RawEvent>,
    ) -> Option<(OutboundRequestId, Result<Vec<u8>, String>)> {
        match event {
            SwarmEvent::Behaviour(RawEvent::Raft(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) => {
                self.held.push(channel);
                None
            }
            SwarmEvent::Behaviour(RawEvent::Endorse(e)) => match e {
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } => Some((request_id, Ok(response))),
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } => Some((request_id, Err(error.to_string()))),
                _ => None,
            },
            _ => None,
        }
    }

    /// Sends raw bytes on the endorse protocol; the response's raw bytes or the failure.
    async fn request(&mut self, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        let target = self.target;
        let id = self
            .swarm
            .behaviour_mut()
            .endorse
            .send_request(&target, bytes);
        bounded("raw request", async {
            loop {
                let event = self.swarm.select_next_some().await;
                if let Some((done, result)) = self.on_event(event)
                    && done == id
                {
                    return result;
                }
            }
        })
        .await
    }

    /// Drives the swarm until `cond` holds (polled every 20 ms), within [`SOON`].
    async fn drive_until(&mut self, what: &str, mut cond: impl FnMut(&mut Self) -> bool) {
        let deadline = tokio::time::Instant::now() + SOON;
        while !cond(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            if let Ok(event) =
                tokio::time::timeout(Duration::from_millis(20), self.swarm.select_next_some()).await
            {
                self.on_event(event);
            }
        }
    }

    /// Publishes raw gossip data once the target is subscribed to the topic.
    async fn publish(&mut self, topic: Topic, data: Vec<u8>) {
        let hash = gossipsub::IdentTopic::new(topic.name(&NET)).hash();
        let target = self.target;
        self.drive_until("the target subscribed", |c| {
            c.swarm
                .behaviour()
                .gossip
                .all_peers()
                .any(|(p, topics)| *p == target && topics.contains(&&hash))
        })
        .await;
        self.swarm
            .behaviour_mut()
            .gossip
            .publish(hash, data)
            .unwrap();
    }
}

fn frame(network_id: [u8; 32], kind: u8, body: Vec<u8>) -> Vec<u8> {
    wire::encode_frame(&Envelope {
        network_id,
        kind,
        body,
    })
    .unwrap()
}

fn gossip(network_id: [u8; 32], kind: u8, body: Vec<u8>) -> Vec<u8> {
    wire::encode_envelope(&Envelope {
        network_id,
        kind,
        body,
    })
    .unwrap()
}

fn raw_frame(declared_len: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = declared_len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_gossip_are_dropped_and_counted_while_serving() {
    init_tracing();
    // Node 0 allows nodes 1 and 2. The raw client uses node 1's key; node 2 is a real node.
    let (a, a_inbound) = P2p::start(config(0, &[1, 2], "127.0.0.1:0", limits()))
        .await
        .unwrap();
    let mut a_seen = spawn_echo(a_inbound);
    let (c, _c_inbound) = P2p::start(config(2, &[0], "127.0.0.1:0", limits()))
        .await
        .unwrap();
    c.set_peer_addr(key(0), &a.local_addr().to_string())
        .await
        .unwrap();
    let mut raw = RawClient::connect(seed(1), &a).await;
    let limit = 64 << 10; // endorse body limit in `limits()`

    let bad_requests = [
        (
            "wrong network id",
            frame([0; 32], Kind::Endorse.code(), b"x".to_vec()),
        ),
        ("unknown kind", frame(NET, 99, b"x".to_vec())),
        (
            "kind of another protocol",
            frame(NET, Kind::Blocks.code(), b"x".to_vec()),
        ),
        ("garbage", raw_frame(8, b"garbage!")),
        ("empty frame", raw_frame(0, b"")),
        ("truncated frame", raw_frame(100, b"only ten b")),
        (
            "length over the limit",
            raw_frame(u32::MAX, b"and a few bytes"),
        ),
        (
            "body over the limit",
            frame(NET, Kind::Endorse.code(), vec![1; limit + 10]),
        ),
    ];
    for (what, bytes) in bad_requests {
        let r = raw.request(bytes).await;
        // The stream is dropped: no response (an empty read at most).
        assert!(
            r.is_err() || matches!(&r, Ok(b) if b.is_empty()),
            "{what}: {r:?}"
        );
    }
    let expect = BadMessages {
        wrong_network: 1,
        unknown_kind: 2,
        undecodable: 3,
        oversized: 2,
        not_allowed: 0,
    };
    wait_until("bad requests counted", || a.stats().bad_messages == expect).await;

    // The same connection still serves a good request.
    let answer = raw
        .request(frame(NET, Kind::Endorse.code(), b"fine".to_vec()))
        .await
        .unwrap();
    let env: ResponseEnvelope = sphr_crypto::cbor::from_slice(&answer[4..], 1 << 20).unwrap();
    assert_eq!(env.network_id, NET);
    assert_eq!(env.reply, Reply::Ok(echo(Kind::Endorse, b"fine")));
    assert_eq!(
        next_seen(&mut a_seen).await,
        Seen::Request {
            from: key(1),
            kind: Kind::Endorse,
            body: b"fine".to_vec()
        }
    );

    // Bad gossip: rejected (not forwarded), counted, never handed to the node.
    let blocks_limit = 256 << 10;
    raw.publish(
        Topic::Blocks,
        gossip([1; 32], Topic::Blocks.code(), b"b".to_vec()),
    )
    .await;
    raw.publish(Topic::Blocks, gossip(NET, Topic::Txs.code(), b"b".to_vec()))
        .await;
    raw.publish(Topic::Txs, b"not cbor".to_vec()).await;
    raw.publish(
        Topic::Blocks,
        gossip(NET, Topic::Blocks.code(), vec![2; blocks_limit + 1]),
    )
    .await;
    let expect = BadMessages {
        wrong_network: 2,
        unknown_kind: 3,
        undecodable: 4,
        oversized: 3,
        not_allowed: 0,
    };
    raw.drive_until("bad gossip counted", |_| a.stats().bad_messages == expect)
        .await;
    assert_eq!(a.stats().bad_messages_total, 12);

    // Good gossip from the raw client still gets through.
    raw.publish(Topic::Txs, gossip(NET, Topic::Txs.code(), b"tx".to_vec()))
        .await;
    let mut got = None;
    raw.drive_until("good gossip delivered", |_| {
        if let Ok(s) = a_seen.try_recv() {
            got = Some(s);
        }
        got.is_some()
    })
    .await;
    assert_eq!(
        got,
        Some(Seen::Gossip {
            from: key(1),
            topic: Topic::Txs,
            body: b"tx".to_vec()
        })
    );

    // And a real node is served as usual.
    wait_until("node 2 connected", || c.is_connected(&key(0))).await;
    let t = Duration::from_secs(10);
    let answer = c
        .request(key(0), Kind::Blocks, b"range".to_vec(), t)
        .await
        .unwrap();
    assert_eq!(answer, echo(Kind::Blocks, b"range"));
    assert!(matches!(
        next_seen(&mut a_seen).await,
        Seen::Request {
            kind: Kind::Blocks,
            ..
        }
    ));
    assert!(a_seen.try_recv().is_err(), "nothing else reached the node");

    c.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_stranger_gets_nothing_through() {
    init_tracing();
    let (a, mut a_seen) = start_node0_echoing(limits()).await;
    // A valid key, not in the allow-list, sending a well-formed request at once.
    let mut stranger = RawClient::connect(seed(9), &a).await;
    let r = stranger
        .request(frame(NET, Kind::Endorse.code(), b"let me in".to_vec()))
        .await;
    assert!(r.is_err(), "{r:?}");
    stranger
        .drive_until("refused", |_| a.stats().peers_refused_total >= 1)
        .await;
    let hash = gossipsub::IdentTopic::new(Topic::Txs.name(&NET)).hash();
    let published = stranger
        .swarm
        .behaviour_mut()
        .gossip
        .publish(hash, gossip(NET, Topic::Txs.code(), b"forged".to_vec()));
    assert!(published.is_err(), "no subscribed peer: {published:?}");
    assert!(a_seen.try_recv().is_err());
    let s = a.stats();
    assert_eq!(s.messages_in_total, 0, "{s:?}");
    assert_eq!(s.bad_messages_total, 0, "{s:?}");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_never_acks_raft_is_disconnected() {
    init_tracing();
    let lim = sphr_p2p::P2pLimits {
        raft_timeout_ms: 300,
        ..limits()
    };
    let (a, _a_seen) = start_node0_echoing(lim).await;
    // Node 1's key, speaking the Raft protocol, never answering: a dead or stuck peer whose
    // TCP connection stays up.
    let mut raw = RawClient::connect(seed(1), &a).await;
    let r = raw
        .request(frame(NET, Kind::Endorse.code(), b"hello".to_vec()))
        .await;
    assert!(r.is_ok(), "{r:?}");
    raw.drive_until("connected", |_| a.is_connected(&key(1)))
        .await;
    a.send_raft(key(1), b"append entries".to_vec()).unwrap();
    raw.drive_until("the silent peer disconnected", |_| !a.is_connected(&key(1)))
        .await;
    assert_eq!(raw.held.len(), 1, "the raft message did arrive");
    assert!(a.stats().raft_dropped_total >= 1);
    a.shutdown().await;
}
