//! The node's side: [`P2p::start`], the [`P2pHandle`] and what arrives as [`Inbound`].
//!
//! Calls on the handle do their checks (known peer, size) and their encoding in the
//! caller's task, then queue a command for the swarm task on a bounded channel; they never
//! wait for the network unless they return its answer (`request`, `publish`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{self, P2pConfig, P2pLimits};
use crate::endorse_stream;
use crate::error::P2pError;
use crate::metrics::{Metrics, P2pStats};
use crate::raft_stream;
use crate::swarm;
use crate::wire::{self, Envelope, Kind, Topic};

/// What the p2p layer hands to the node.
pub enum Inbound {
    /// A request to answer (`Endorse` or `Blocks`; Raft messages come as [`Inbound::Raft`]).
    /// Send the answer on `reply`, or an error text for the requester; an answer that comes
    /// later than the kind's timeout, or never, reaches the requester as an error.
    Request {
        /// The requester's public key.
        from: [u8; 32],
        /// Its kind.
        kind: Kind,
        /// Its body.
        body: Vec<u8>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    /// A Raft message (already acknowledged to the sender).
    Raft {
        /// The sender's public key.
        from: [u8; 32],
        /// The message.
        body: Vec<u8>,
    },
    /// A gossip message that passed validation (it is forwarded to our other peers too).
    Gossip {
        /// The author's public key (not necessarily the peer that relayed it).
        from: [u8; 32],
        /// Its topic.
        topic: Topic,
        /// Its body.
        body: Vec<u8>,
    },
}

/// Says who and how much, never the body (it may carry patient data).
impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |k: &[u8; 32]| hex::encode(&k[..8]);
        match self {
            Inbound::Request {
                from, kind, body, ..
            } => f
                .debug_struct("Request")
                .field("from", &short(from))
                .field("kind", kind)
                .field("body_len", &body.len())
                .finish(),
            Inbound::Raft { from, body } => f
                .debug_struct("Raft")
                .field("from", &short(from))
                .field("body_len", &body.len())
                .finish(),
            Inbound::Gossip { from, topic, body } => f
                .debug_struct("Gossip")
                .field("from", &short(from))
                .field("topic", topic)
                .field("body_len", &body.len())
                .finish(),
        }
    }
}

/// What the handles ask of the swarm task.
pub(crate) enum Command {
    Raft {
        to: PeerId,
        body: Vec<u8>,
    },
    Request {
        to: PeerId,
        kind: Kind,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, P2pError>>,
    },
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
    SetPeerAddr {
        peer: PeerId,
        addr: SocketAddr,
    },
    /// Close every connection to the peer (a Raft stream found it dead); it is redialed.
    Disconnect {
        peer: PeerId,
    },
    SetIsolated {
        on: bool,
        reply: oneshot::Sender<()>,
    },
}

/// Starts the p2p layer.
pub struct P2p;

impl P2p {
    /// Checks the configuration, builds the swarm, listens, spawns the swarm task (which
    /// dials every peer with a known address) and returns once listening.
    ///
    /// Must be called inside a tokio runtime. The returned receiver is the only way requests,
    /// Raft messages and gossip reach the node: keep draining it.
    pub async fn start(
        config: P2pConfig,
    ) -> Result<(P2pHandle, mpsc::Receiver<Inbound>), P2pError> {
        config.limits.validate()?;
        let metrics = Arc::new(Metrics::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(config.limits.command_queue);
        let (inbound_tx, inbound_rx) = mpsc::channel(config.limits.inbound_queue);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (connected_tx, connected_rx) = watch::channel(Vec::new());
        let (done_tx, done_rx) = watch::channel(());
        let started = swarm::start(swarm::StartArgs {
            config: &config,
            metrics: metrics.clone(),
            cmd_rx,
            inbound_tx,
            shutdown_rx,
            connected_tx,
            done_tx,
            done_rx: done_rx.clone(),
        })
        .await?;
        let links = || {
            started
                .peer_ids
                .iter()
                .map(|(key, peer)| raft_stream::PeerLink {
                    peer: *peer,
                    key: *key,
                    name: started.names.get(key).cloned().unwrap_or_default(),
                })
                .collect()
        };
        let shared = raft_stream::Shared::new(&config, &metrics);
        let raft_queues =
            raft_stream::spawn_writers(links(), &started.control, &shared, &cmd_tx, &connected_rx);
        let endorse_queues = endorse_stream::spawn_clients(
            links(),
            &started.control,
            &shared,
            &cmd_tx,
            &connected_rx,
        );
        let handle = P2pHandle {
            inner: Arc::new(Inner {
                cmd_tx,
                raft_queues,
                endorse_queues,
                metrics,
                limits: config.limits.clone(),
                peer_ids: started.peer_ids,
                names: started.names,
                connected: connected_rx,
                shutdown: shutdown_tx,
                done: done_rx,
                local_addr: started.local_addr,
                local_key: started.local_key,
                network_id: config.network_id,
                isolated: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        Ok((handle, inbound_rx))
    }
}

struct Inner {
    cmd_tx: mpsc::Sender<Command>,
    /// Each peer's Raft stream writer.
    raft_queues: HashMap<PeerId, mpsc::Sender<Vec<u8>>>,
    /// Each peer's endorse stream client.
    endorse_queues: HashMap<PeerId, mpsc::Sender<endorse_stream::Request>>,
    metrics: Arc<Metrics>,
    limits: P2pLimits,
    peer_ids: HashMap<[u8; 32], PeerId>,
    names: HashMap<[u8; 32], String>,
    connected: watch::Receiver<Vec<[u8; 32]>>,
    shutdown: watch::Sender<bool>,
    done: watch::Receiver<()>,
    local_addr: SocketAddr,
    local_key: [u8; 32],
    network_id: [u8; 32],
    isolated: std::sync::atomic::AtomicBool,
}

/// The node's handle on the p2p layer. Cheap to clone; when the last clone is dropped the
/// swarm task stops as [`P2pHandle::shutdown`] would.
#[derive(Clone)]
pub struct P2pHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for P2pHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pHandle")
            .field("local_key", &hex::encode(self.inner.local_key))
            .field("local_addr", &self.inner.local_addr)
            .finish()
    }
}

impl P2pHandle {
    /// The address we listen on (with the actual port when the configuration said 0; the
    /// first interface's address when it said 0.0.0.0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Our public key (our libp2p identity).
    pub fn local_key(&self) -> [u8; 32] {
        self.inner.local_key
    }

    /// The network id every message carries.
    pub fn network_id(&self) -> [u8; 32] {
        self.inner.network_id
    }

    /// The allowed peers connected now, sorted.
    pub fn connected_peers(&self) -> Vec<[u8; 32]> {
        self.inner.connected.borrow().clone()
    }

    /// Whether an allowed peer is connected now.
    pub fn is_connected(&self, peer: &[u8; 32]) -> bool {
        self.inner.connected.borrow().binary_search(peer).is_ok()
    }

    /// Whether the swarm task is still running (false after [`P2pHandle::shutdown`] or when
    /// the task ended on its own). For health checks.
    pub fn is_running(&self) -> bool {
        // The task holds the `done` sender: once it has ended, `has_changed` fails.
        self.inner.done.has_changed().is_ok()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> P2pStats {
        self.inner.metrics.snapshot()
    }

    fn peer(&self, key: &[u8; 32]) -> Result<PeerId, P2pError> {
        self.inner
            .peer_ids
            .get(key)
            .copied()
            .ok_or_else(|| P2pError::UnknownPeer(hex::encode(key)))
    }

    fn name(&self, key: &[u8; 32]) -> String {
        self.inner
            .names
            .get(key)
            .cloned()
            .unwrap_or_else(|| hex::encode(key))
    }

    /// Sends a Raft message, fire-and-forget: it is queued and this returns at once. When
    /// the peer is not connected or a queue is full, the message is dropped, counted in
    /// `raft_dropped_total` and the error says why (Raft retries on its own). Never blocks:
    /// safe to call from the Raft thread.
    pub fn send_raft(&self, to: [u8; 32], body: Vec<u8>) -> Result<(), P2pError> {
        let peer = self.peer(&to)?;
        let limit = self.inner.limits.max_message_bytes;
        if body.len() > limit {
            Metrics::inc(&self.inner.metrics.raft_dropped_total);
            return Err(P2pError::TooLarge {
                len: body.len(),
                limit,
            });
        }
        if !self.is_connected(&to) {
            Metrics::inc(&self.inner.metrics.raft_dropped_total);
            return Err(P2pError::NotConnected(self.name(&to)));
        }
        let queue = self
            .inner
            .raft_queues
            .get(&peer)
            .ok_or_else(|| P2pError::UnknownPeer(hex::encode(to)))?;
        queue.try_send(body).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                Metrics::inc(&self.inner.metrics.raft_dropped_total);
                P2pError::QueueFull("raft queue to the peer")
            }
            mpsc::error::TrySendError::Closed(_) => P2pError::Shutdown,
        })
    }

    /// Sends a request and waits for the answer, at most `timeout` (and at most the kind's
    /// configured timeout, which bounds the exchange on the libp2p side). A peer that is not
    /// connected fails at once with `NotConnected`. Errors are counted in
    /// `requests_failed_total`.
    pub async fn request(
        &self,
        to: [u8; 32],
        kind: Kind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, P2pError> {
        let result = self.request_inner(to, kind, body, timeout).await;
        if result.is_err() {
            Metrics::inc(&self.inner.metrics.requests_failed_total);
        }
        result
    }

    async fn request_inner(
        &self,
        to: [u8; 32],
        kind: Kind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, P2pError> {
        let peer = self.peer(&to)?;
        let limit = self.inner.limits.body_limit(kind);
        if body.len() > limit {
            return Err(P2pError::TooLarge {
                len: body.len(),
                limit,
            });
        }
        let (reply, answer) = oneshot::channel();
        if kind == Kind::Endorse
            && let Some(queue) = self.inner.endorse_queues.get(&peer)
        {
            // On the peer's endorse stream (see `endorse_stream`).
            if !self.is_running() {
                return Err(P2pError::Shutdown);
            }
            if !self.is_connected(&to) {
                return Err(P2pError::NotConnected(self.name(&to)));
            }
            queue
                .try_send(endorse_stream::Request {
                    body,
                    reply,
                    attempts: 0,
                })
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => {
                        P2pError::QueueFull("endorse queue to the peer")
                    }
                    mpsc::error::TrySendError::Closed(_) => P2pError::Shutdown,
                })?;
            return tokio::time::timeout(timeout, answer)
                .await
                .map_err(|_| P2pError::Timeout)?
                .map_err(|_| P2pError::Shutdown)?;
        }
        let cmd = Command::Request {
            to: peer,
            kind,
            body,
            reply,
        };
        let exchange = async {
            self.inner
                .cmd_tx
                .send(cmd)
                .await
                .map_err(|_| P2pError::Shutdown)?;
            answer.await.map_err(|_| P2pError::Shutdown)?
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| P2pError::Timeout)?
    }

    /// The limits this layer runs with.
    pub fn limits(&self) -> &P2pLimits {
        &self.inner.limits
    }

    /// Publishes a gossip message to the topic. Fails with `NoPeers` when no connected peer
    /// is subscribed yet (nothing was sent), `TooLarge` over the topic's limit.
    pub async fn publish(&self, topic: Topic, body: Vec<u8>) -> Result<(), P2pError> {
        let limit = self.inner.limits.topic_limit(topic);
        if body.len() > limit {
            return Err(P2pError::TooLarge {
                len: body.len(),
                limit,
            });
        }
        let data = wire::encode_envelope(&Envelope {
            network_id: self.inner.network_id,
            kind: topic.code(),
            body,
        })
        .map_err(|e| P2pError::Failed(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        self.inner
            .cmd_tx
            .send(Command::Publish { topic, data, reply })
            .await
            .map_err(|_| P2pError::Shutdown)?;
        answer.await.map_err(|_| P2pError::Shutdown)?
    }

    /// Changes where an allowed peer is dialed (it must be in the configuration) and dials
    /// it now if it is not connected. For peers configured with port 0, and for tests.
    pub async fn set_peer_addr(&self, peer: [u8; 32], addr: &str) -> Result<(), P2pError> {
        let peer_id = self.peer(&peer)?;
        let key = format!("peers[{}].addr", self.name(&peer));
        let addr = config::resolve(&key, addr).await?;
        self.inner
            .cmd_tx
            .send(Command::SetPeerAddr {
                peer: peer_id,
                addr,
            })
            .await
            .map_err(|_| P2pError::Shutdown)
    }

    /// A fault switch for tests (chaos runs): `true` cuts this node off from every peer (its
    /// connections are closed, it dials nobody and refuses every incoming connection, without
    /// counting them as strangers); `false` heals it (peers are allowed again and redialed at
    /// once). Returns once the swarm task has applied it. The node exposes it only when its
    /// configuration says `p2p.fault_injection = true`.
    pub async fn set_isolated(&self, on: bool) -> Result<(), P2pError> {
        let (reply, done) = oneshot::channel();
        self.inner
            .cmd_tx
            .send(Command::SetIsolated { on, reply })
            .await
            .map_err(|_| P2pError::Shutdown)?;
        done.await.map_err(|_| P2pError::Shutdown)?;
        self.inner
            .isolated
            .store(on, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Whether [`P2pHandle::set_isolated`] cut this node off.
    pub fn is_isolated(&self) -> bool {
        self.inner
            .isolated
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the swarm task: closes the listener and every connection, fails the requests
    /// in flight with `Shutdown`. Returns when the task has ended. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let mut done = self.inner.done.clone();
        // The task holds the sender: `changed` fails once the task has ended.
        while done.changed().await.is_ok() {}
    }
}
