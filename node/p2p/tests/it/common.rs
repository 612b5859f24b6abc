//! The harness: deterministic keys, nodes on loopback with port 0, an echoing node, and
//! waiting until a condition holds (never a fixed sleep).

use std::future::Future;
use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identity};
use sphr_crypto::keys::SecretKey;
use sphr_p2p::{Inbound, Kind, P2p, P2pConfig, P2pHandle, P2pLimits, PeerInfo, Topic};
use tokio::sync::mpsc;

/// The network id of the tests.
pub const NET: [u8; 32] = [0x42; 32];

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn seed(i: u8) -> [u8; 32] {
    [i.wrapping_add(1); 32]
}

pub fn key(i: u8) -> [u8; 32] {
    SecretKey::from_bytes(&seed(i)).public_key().0
}

/// The libp2p id of node `i`'s key.
pub fn peer_id_of(key: &[u8; 32]) -> PeerId {
    let pk = identity::ed25519::PublicKey::try_from_bytes(key).unwrap();
    identity::PublicKey::from(pk).to_peer_id()
}

/// Where to dial a running node.
pub fn dial_addr(target: &P2pHandle) -> Multiaddr {
    let a = target.local_addr();
    format!("/ip4/{}/tcp/{}", a.ip(), a.port()).parse().unwrap()
}

/// A bare libp2p swarm (TCP, noise, yamux, as sphr-p2p's) with key `seed` and the given
/// behaviour: a hand-made peer for tests that write what sphr-p2p would not.
pub fn raw_swarm<B: NetworkBehaviour>(
    seed: [u8; 32],
    behaviour: impl FnOnce(&identity::Keypair) -> B,
) -> Swarm<B> {
    let mut seed = seed;
    let key = identity::Keypair::ed25519_from_bytes(&mut seed).unwrap();
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// A bare libp2p node with node 1's key that speaks only the stream protocol, driven by
/// its own task; streams are opened and accepted through the returned control.
pub async fn raw_stream_peer(target: &P2pHandle) -> (libp2p_stream::Control, PeerId) {
    let mut swarm = raw_swarm(seed(1), |_| libp2p_stream::Behaviour::new());
    let control = swarm.behaviour().new_control();
    let target_id = peer_id_of(&target.local_key());
    swarm.dial(dial_addr(target)).unwrap();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionClosed { .. } = swarm.select_next_some().await {
                tracing::debug!("raw peer: connection closed");
            }
        }
    });
    (control, target_id)
}

/// Node 0 (echoing, with `limits`) and a hand-made node 1 connected to it that takes the
/// streams of `protocol` node 0 opens.
pub async fn node0_and_raw_peer_accepting(
    limits: P2pLimits,
    protocol: libp2p::StreamProtocol,
) -> (
    P2pHandle,
    mpsc::Receiver<Seen>,
    libp2p_stream::Control,
    libp2p_stream::IncomingStreams,
) {
    let (a, seen) = start_node0_echoing(limits).await;
    let (mut control, _) = raw_stream_peer(&a).await;
    let incoming = control.accept(protocol).unwrap();
    wait_until("connected", || a.is_connected(&key(1))).await;
    (a, seen, control, incoming)
}

/// The two refusals every stream protocol makes, as a hand-made peer sees them: `other_net`
/// (a frame of another network, written on `stream`) is counted as `wrong_network` and ends
/// that stream; on a new stream of `protocol`, a length over the limit after `prefix` (what
/// the protocol puts before a frame) is counted as `oversized` and ends it too. Returns what
/// node 0 wrote back on the first stream after the bad frame.
pub async fn refuse_bad_frames(
    a: &P2pHandle,
    control: &mut libp2p_stream::Control,
    mut stream: libp2p::Stream,
    protocol: libp2p::StreamProtocol,
    other_net: &[u8],
    prefix: &[u8],
) -> Vec<u8> {
    use libp2p::futures::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(other_net).await.unwrap();
    stream.flush().await.unwrap();
    let mut answered = Vec::new();
    let _ = bounded("the stream ends", stream.read_to_end(&mut answered)).await;
    wait_until("wrong network counted", || {
        a.stats().bad_messages.wrong_network == 1
    })
    .await;

    // Refused before a byte of the frame is read.
    let a_id = peer_id_of(&a.local_key());
    let mut stream = bounded("open another", control.open_stream(a_id, protocol))
        .await
        .unwrap();
    let declared = u32::try_from(limits().max_message_bytes + 1_000).unwrap();
    stream.write_all(prefix).await.unwrap();
    stream.write_all(&declared.to_be_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let mut rest = Vec::new();
    let _ = bounded("that stream ends too", stream.read_to_end(&mut rest)).await;
    wait_until("oversized counted", || {
        a.stats().bad_messages.oversized == 1
    })
    .await;
    answered
}

/// Small limits so that oversized frames are cheap to make; short redial backoff.
pub fn limits() -> P2pLimits {
    P2pLimits {
        max_message_bytes: 64 << 10,
        max_block_message_bytes: 256 << 10,
        redial_max_ms: 1_000,
        ..P2pLimits::default()
    }
}

/// A config for node `i` that allows `members` (their addresses unknown: port 0).
pub fn config(i: u8, members: &[u8], listen: &str, limits: P2pLimits) -> P2pConfig {
    P2pConfig {
        key_seed: zeroize::Zeroizing::new(seed(i)),
        listen: listen.to_string(),
        network_id: NET,
        peers: members
            .iter()
            .map(|&m| PeerInfo {
                name: format!("node{m}"),
                public_key: key(m),
                addr: "127.0.0.1:0".into(),
            })
            .collect(),
        limits,
    }
}

/// Starts `n` nodes (indices 0..n) on port 0, tells each the others' addresses, and waits
/// until every node is connected to every other and subscribed on both topics.
pub async fn start_net(n: u8, limits: P2pLimits) -> Vec<(P2pHandle, mpsc::Receiver<Inbound>)> {
    let members: Vec<u8> = (0..n).collect();
    let mut nodes = Vec::new();
    for i in 0..n {
        let started = P2p::start(config(i, &members, "127.0.0.1:0", limits.clone()))
            .await
            .expect("node starts");
        nodes.push(started);
    }
    for i in 0..n as usize {
        for j in 0..n as usize {
            if i != j {
                let addr = nodes[j].0.local_addr().to_string();
                nodes[i].0.set_peer_addr(key(j as u8), &addr).await.unwrap();
            }
        }
    }
    let handles: Vec<P2pHandle> = nodes.iter().map(|(h, _)| h.clone()).collect();
    let want = u64::from(n) - 1;
    wait_until("full mesh with gossip subscriptions", || {
        handles.iter().all(|h| {
            let s = h.stats();
            s.peers_connected == want && s.gossip_peers_blocks == want && s.gossip_peers_txs == want
        })
    })
    .await;
    nodes
}

/// Polls `cond` every 20 ms until it holds; panics after [`SOON`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + SOON;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `fut`, panicking after [`SOON`]: "returns in bounded time".
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(SOON, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {SOON:?}"))
}

/// What an echoing node saw (besides the requests it answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Request {
        from: [u8; 32],
        kind: Kind,
        body: Vec<u8>,
    },
    Raft {
        from: [u8; 32],
        body: Vec<u8>,
    },
    Gossip {
        from: [u8; 32],
        topic: Topic,
        body: Vec<u8>,
    },
}

/// The answer of an echoing node: the kind's name, a colon, the body.
pub fn echo(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{kind}:").into_bytes();
    out.extend_from_slice(body);
    out
}

/// Drains `inbound`, answering every request with [`echo`], and reports all it saw.
pub fn spawn_echo(mut inbound: mpsc::Receiver<Inbound>) -> mpsc::Receiver<Seen> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(msg) = inbound.recv().await {
            let seen = match msg {
                Inbound::Request {
                    from,
                    kind,
                    body,
                    reply,
                } => {
                    let _ = reply.send(Ok(echo(kind, &body)));
                    Seen::Request { from, kind, body }
                }
                Inbound::Raft { from, body } => Seen::Raft { from, body },
                Inbound::Gossip { from, topic, body } => Seen::Gossip { from, topic, body },
            };
            let _ = tx.try_send(seen);
        }
    });
    rx
}

/// Node 0 alone, allowing node 1 (whose address it does not know), echoing: for tests that
/// play node 1 with a hand-made libp2p peer.
pub async fn start_node0_echoing(limits: P2pLimits) -> (P2pHandle, mpsc::Receiver<Seen>) {
    let (a, inbound) = P2p::start(config(0, &[1], "127.0.0.1:0", limits))
        .await
        .unwrap();
    (a, spawn_echo(inbound))
}

/// The next thing an echoing node saw, within [`SOON`].
pub async fn next_seen(rx: &mut mpsc::Receiver<Seen>) -> Seen {
    bounded("next inbound message", rx.recv())
        .await
        .expect("echo task alive")
}
