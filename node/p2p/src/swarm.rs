//! The swarm task: owns the libp2p `Swarm`, runs its event loop, keeps the allowed peers
//! connected, and moves messages between the handles, the node and the network.
//!
//! ```text
//!            ┌──────────────────────── Task::run (one tokio task) ───────────────────────┐
//! commands ─►│ on_command: Raft / Request ──► request-response send_request (in flight ≤ N)│
//!            │             Publish ─────────► gossipsub publish                          │
//! swarm ────►│ on_swarm_event: connected / closed ──► redial schedule, connected set     │
//!  events    │                 refused (allow-list) ► peers_refused_total                 │
//!            │ on_request: Raft ─► Inbound::Raft + ack │ Endorse/Blocks ─► Inbound::Request │──► node
//!            │ on_gossip: validate ─► Accept + Inbound::Gossip │ Reject + bad_messages     │
//! replies ──►│ finish_reply: the node's answer (or its timeout) ─► send_response          │
//! timer ────►│ redial_due: dial peers whose backoff has passed                            │
//!            └───────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Nothing in here blocks or waits on a peer: every wait is a future polled by the loop.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::futures::future::BoxFuture;
use libp2p::futures::stream::FuturesUnordered;
use libp2p::gossipsub::{self, IdentityTransform, MessageAcceptance, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, connection_limits, identity,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::TARGET;
use crate::codec::{self, FrameCodec};
use crate::config::{self, ConfigError, P2pConfig, P2pLimits};
use crate::endorse_stream;
use crate::error::P2pError;
use crate::handle::{Command, Inbound};
use crate::metrics::Metrics;
use crate::raft_stream;
use crate::wire::{self, BadMessage, BadReason, Kind, Topic};

/// The libp2p behaviours, in the order they are asked about a new connection: the
/// allow-list first, so a stranger never reaches the others.
#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    limits: connection_limits::Behaviour,
    endorse: request_response::Behaviour<FrameCodec>,
    raft: request_response::Behaviour<FrameCodec>,
    /// The long-lived Raft streams (`/sphr/raft/2`, see [`crate::raft_stream`]).
    stream: libp2p_stream::Behaviour,
    blocks: request_response::Behaviour<FrameCodec>,
    gossip: gossipsub::Behaviour<IdentityTransform, gossipsub::WhitelistSubscriptionFilter>,
}

/// Room in a gossipsub RPC around one message (signature, author, sequence number, topic).
const GOSSIP_RPC_OVERHEAD: usize = 4096;

/// How long `start` waits for the listener to come up.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections with no stream open stay up: the peers are few and known, and a dropped
/// connection costs a handshake and a redial.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) struct StartArgs<'a> {
    pub config: &'a P2pConfig,
    pub metrics: Arc<Metrics>,
    pub cmd_rx: mpsc::Receiver<Command>,
    pub inbound_tx: mpsc::Sender<Inbound>,
    pub shutdown_rx: watch::Receiver<bool>,
    pub connected_tx: watch::Sender<Vec<[u8; 32]>>,
    pub done_tx: watch::Sender<()>,
    /// Ends the Raft stream accept loop with the swarm task.
    pub done_rx: watch::Receiver<()>,
}

pub(crate) struct Started {
    pub local_addr: SocketAddr,
    pub local_key: [u8; 32],
    pub peer_ids: HashMap<[u8; 32], PeerId>,
    pub names: HashMap<[u8; 32], String>,
    /// Opens Raft streams to peers.
    pub control: libp2p_stream::Control,
}

/// An allowed peer.
struct PeerState {
    name: String,
    key: [u8; 32],
    addr: Option<Multiaddr>,
    connections: u32,
    backoff: Duration,
    redial_at: Option<Instant>,
    in_flight: usize,
}

/// Where the answer to an outbound request goes.
type ReplyTx = oneshot::Sender<Result<Vec<u8>, P2pError>>;

/// An outbound request waiting for its answer; Raft messages have no one waiting.
struct PendingOut {
    peer: PeerId,
    reply: Option<ReplyTx>,
}

/// The node's answer to an inbound request (or why there is none), ready to send.
struct ReplyDone {
    kind: Kind,
    peer: PeerId,
    channel: ResponseChannel<Result<Vec<u8>, String>>,
    result: Result<Vec<u8>, String>,
}

pub(crate) struct Task {
    swarm: Swarm<Behaviour>,
    metrics: Arc<Metrics>,
    limits: P2pLimits,
    network_id: [u8; 32],
    peers: HashMap<PeerId, PeerState>,
    topics: [(Topic, TopicHash); 2],
    cmd_rx: mpsc::Receiver<Command>,
    inbound_tx: mpsc::Sender<Inbound>,
    shutdown_rx: watch::Receiver<bool>,
    connected_tx: watch::Sender<Vec<[u8; 32]>>,
    pending_out: HashMap<(Kind, OutboundRequestId), PendingOut>,
    replies: FuturesUnordered<BoxFuture<'static, ReplyDone>>,
    /// Cut off from every peer by the fault switch (`P2pHandle::set_isolated`).
    isolated: bool,
    /// Dropped when the task ends, which is what `P2pHandle::shutdown` waits for.
    done_tx: watch::Sender<()>,
}

/// The libp2p id of an ed25519 public key.
pub(crate) fn peer_id_of(key: &[u8; 32]) -> Result<PeerId, String> {
    let pk = identity::ed25519::PublicKey::try_from_bytes(key).map_err(|e| e.to_string())?;
    Ok(identity::PublicKey::from(pk).to_peer_id())
}

fn multiaddr_of(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port()))
}

fn socket_addr_of(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

fn build_behaviour(
    key: &identity::Keypair,
    config: &P2pConfig,
    allowed: &[PeerId],
    metrics: &Arc<Metrics>,
    topics: &[(Topic, TopicHash); 2],
) -> Result<Behaviour, P2pError> {
    let limits = &config.limits;
    let build_err = |what: &str, e: String| P2pError::Build(format!("{what}: {e}"));

    let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
    for p in allowed {
        allow.allow_peer(*p);
    }

    let per_peer = limits.max_connections_per_peer;
    let peer_count = u32::try_from(allowed.len()).unwrap_or(u32::MAX);
    let conn_limits = connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(limits.max_pending_incoming))
        .with_max_established_per_peer(Some(per_peer))
        .with_max_established(Some(peer_count.saturating_mul(per_peer).max(1)));

    let rr = |kind: Kind| {
        let codec = FrameCodec::new(
            kind,
            config.network_id,
            limits.body_limit(kind),
            metrics.clone(),
        );
        let cfg = request_response::Config::default()
            .with_request_timeout(limits.timeout(kind))
            .with_max_concurrent_streams(limits.max_streams_per_connection);
        request_response::Behaviour::with_codec(
            codec,
            [(kind.protocol(), ProtocolSupport::Full)],
            cfg,
        )
    };

    let mut gcfg = gossipsub::ConfigBuilder::default();
    gcfg.validate_messages()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(
            limits
                .max_block_message_bytes
                .saturating_add(wire::ENVELOPE_OVERHEAD + GOSSIP_RPC_OVERHEAD),
        );
    for (topic, hash) in topics {
        gcfg.max_transmit_size_for_topic(
            limits
                .topic_limit(*topic)
                .saturating_add(wire::ENVELOPE_OVERHEAD + GOSSIP_RPC_OVERHEAD),
            hash.clone(),
        );
    }
    let gcfg = gcfg
        .build()
        .map_err(|e| build_err("gossipsub config", e.to_string()))?;
    let filter =
        gossipsub::WhitelistSubscriptionFilter(topics.iter().map(|(_, h)| h.clone()).collect());
    let gossip = gossipsub::Behaviour::new_with_subscription_filter(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gcfg,
        filter,
    )
    .map_err(|e| build_err("gossipsub", e.to_string()))?;

    Ok(Behaviour {
        allow,
        limits: connection_limits::Behaviour::new(conn_limits),
        endorse: rr(Kind::Endorse),
        raft: rr(Kind::Raft),
        stream: libp2p_stream::Behaviour::new(),
        blocks: rr(Kind::Blocks),
        gossip,
    })
}

/// Builds the swarm, listens, subscribes, and spawns the task.
pub(crate) async fn start(args: StartArgs<'_>) -> Result<Started, P2pError> {
    let config = args.config;
    let mut seed = Zeroizing::new(*config.key_seed);
    let keypair = identity::Keypair::ed25519_from_bytes(&mut seed[..])
        .map_err(|e| ConfigError::Key(e.to_string()))?;
    let local_key = keypair
        .public()
        .try_into_ed25519()
        .map_err(|e| ConfigError::Key(e.to_string()))?
        .to_bytes();

    let checked = config::check_peers(&config.peers, &local_key).await?;
    let listen = config::resolve("listen", &config.listen).await?;

    let mut peers = HashMap::new();
    let mut peer_ids = HashMap::new();
    let mut names = HashMap::new();
    for p in checked {
        let id = peer_id_of(&p.public_key).map_err(|reason| ConfigError::PeerKey {
            name: p.name.clone(),
            reason,
        })?;
        peer_ids.insert(p.public_key, id);
        names.insert(p.public_key, p.name.clone());
        peers.insert(
            id,
            PeerState {
                name: p.name,
                key: p.public_key,
                addr: p.addr.map(multiaddr_of),
                connections: 0,
                backoff: Duration::from_millis(config.limits.redial_min_ms),
                // Dial every peer with a known address as soon as the task runs.
                redial_at: p.addr.map(|_| Instant::now()),
                in_flight: 0,
            },
        );
    }
    let allowed: Vec<PeerId> = peers.keys().copied().collect();

    let topics = Topic::ALL.map(|t| {
        let topic = gossipsub::IdentTopic::new(t.name(&config.network_id));
        (t, topic.hash())
    });

    let mut behaviour_result = None;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| P2pError::Build(format!("transport: {e}")))?
        .with_behaviour(|key| {
            match build_behaviour(key, config, &allowed, &args.metrics, &topics) {
                Ok(b) => Ok(b),
                Err(e) => {
                    let text = e.to_string();
                    behaviour_result = Some(e);
                    Err(text.into())
                }
            }
        })
        .map_err(|e| match behaviour_result.take() {
            Some(err) => err,
            None => P2pError::Build(e.to_string()),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();

    for (topic, hash) in &topics {
        let t = gossipsub::IdentTopic::new(topic.name(&config.network_id));
        debug_assert_eq!(&t.hash(), hash);
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&t)
            .map_err(|e| P2pError::Build(format!("subscribe to {topic}: {e}")))?;
    }

    let listen_err = |reason: String| P2pError::Listen {
        addr: config.listen.clone(),
        reason,
    };
    swarm
        .listen_on(multiaddr_of(listen))
        .map_err(|e| listen_err(e.to_string()))?;
    let local_addr = tokio::time::timeout(LISTEN_TIMEOUT, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    return socket_addr_of(&address)
                        .ok_or_else(|| format!("listening on {address}, not an IP and port"));
                }
                SwarmEvent::ListenerError { error, .. } => return Err(error.to_string()),
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(format!("listener closed: {reason:?}"));
                }
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| listen_err("no listen address in time".into()))?
    .map_err(listen_err)?;

    let local_peer = *swarm.local_peer_id();
    info!(target: TARGET, peer = %local_peer, key = %hex::encode(local_key), %local_addr,
          network = %hex::encode(&config.network_id[..8]), peers = peers.len(), "p2p listening");

    let mut control = swarm.behaviour().stream.new_control();
    let allowed_keys: HashMap<PeerId, ([u8; 32], String)> = peers
        .iter()
        .map(|(id, p)| (*id, (p.key, p.name.clone())))
        .collect();
    let shared = raft_stream::Shared::new(config, &args.metrics);
    let accept = |control: &mut libp2p_stream::Control, protocol: StreamProtocol| {
        control
            .accept(protocol.clone())
            .map_err(|e| P2pError::Build(format!("{protocol}: {e}")))
    };
    let incoming = accept(&mut control, raft_stream::PROTOCOL)?;
    tokio::spawn(raft_stream::accept_loop(
        raft_stream::PROTOCOL,
        incoming,
        allowed_keys.clone(),
        shared.clone(),
        args.inbound_tx.clone(),
        args.done_rx.clone(),
        raft_stream::serve,
    ));
    let incoming = accept(&mut control, endorse_stream::PROTOCOL)?;
    tokio::spawn(raft_stream::accept_loop(
        endorse_stream::PROTOCOL,
        incoming,
        allowed_keys,
        shared,
        args.inbound_tx.clone(),
        args.done_rx,
        endorse_stream::serve,
    ));

    let task = Task {
        swarm,
        metrics: args.metrics,
        limits: config.limits.clone(),
        network_id: config.network_id,
        peers,
        topics,
        cmd_rx: args.cmd_rx,
        inbound_tx: args.inbound_tx,
        shutdown_rx: args.shutdown_rx,
        connected_tx: args.connected_tx,
        pending_out: HashMap::new(),
        replies: FuturesUnordered::new(),
        isolated: false,
        done_tx: args.done_tx,
    };
    tokio::spawn(task.run());
    Ok(Started {
        local_addr,
        local_key,
        peer_ids,
        names,
        control,
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(mut self) {
        loop {
            let next_redial = self.peers.values().filter_map(|p| p.redial_at).min();
            tokio::select! {
                changed = self.shutdown_rx.changed() => {
                    // A request to stop, or every handle dropped.
                    if changed.is_err() || *self.shutdown_rx.borrow() {
                        break;
                    }
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(done) = self.replies.next(), if !self.replies.is_empty() => {
                    self.finish_reply(done);
                }
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                () = sleep_until(next_redial) => self.redial_due(),
            }
        }
        self.stop();
    }

    fn stop(self) {
        let Task {
            swarm,
            pending_out,
            replies,
            connected_tx,
            done_tx,
            metrics,
            ..
        } = self;
        // Requests in flight fail with `Shutdown` when their senders drop.
        drop(pending_out);
        drop(replies);
        // Closes the listener and every connection.
        drop(swarm);
        Metrics::set(&metrics.peers_connected, 0);
        Metrics::set(&metrics.gossip_peers_blocks, 0);
        Metrics::set(&metrics.gossip_peers_txs, 0);
        connected_tx.send_replace(Vec::new());
        info!(target: TARGET, "p2p stopped");
        drop(done_tx);
    }

    fn rr(&mut self, kind: Kind) -> &mut request_response::Behaviour<FrameCodec> {
        let b = self.swarm.behaviour_mut();
        match kind {
            Kind::Endorse => &mut b.endorse,
            Kind::Raft => &mut b.raft,
            Kind::Blocks => &mut b.blocks,
        }
    }

    fn publish_connected(&mut self) {
        let set: BTreeSet<[u8; 32]> = self
            .peers
            .values()
            .filter(|p| p.connections > 0)
            .map(|p| p.key)
            .collect();
        Metrics::set(&self.metrics.peers_connected, set.len());
        self.connected_tx.send_replace(set.into_iter().collect());
    }

    fn recount_gossip_peers(&mut self) {
        let [(_, blocks), (_, txs)] = &self.topics;
        let (mut nb, mut nt) = (0, 0);
        for (_, topics) in self.swarm.behaviour().gossip.all_peers() {
            nb += usize::from(topics.contains(&blocks));
            nt += usize::from(topics.contains(&txs));
        }
        Metrics::set(&self.metrics.gossip_peers_blocks, nb);
        Metrics::set(&self.metrics.gossip_peers_txs, nt);
    }

    // ---- connections -------------------------------------------------------------------

    fn schedule_redial(&mut self, peer: PeerId) {
        let max = Duration::from_millis(self.limits.redial_max_ms);
        if let Some(p) = self.peers.get_mut(&peer)
            && p.connections == 0
            && p.addr.is_some()
        {
            p.redial_at = Some(Instant::now() + p.backoff);
            debug!(target: TARGET, peer = %p.name, backoff_ms = p.backoff.as_millis() as u64, "redial scheduled");
            p.backoff = (p.backoff * 2).min(max);
        }
    }

    fn redial_due(&mut self) {
        let now = Instant::now();
        if self.isolated {
            for p in self.peers.values_mut() {
                p.redial_at = None;
            }
            return;
        }
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.redial_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for peer in due {
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            p.redial_at = None;
            let Some(addr) = p.addr.clone() else {
                continue;
            };
            if p.connections > 0 {
                continue;
            }
            let name = p.name.clone();
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            Metrics::inc(&self.metrics.dials_total);
            match self.swarm.dial(opts) {
                Ok(()) => debug!(target: TARGET, peer = %name, %addr, "dialing"),
                // Already dialing or connected: that attempt's outcome schedules the next.
                Err(DialError::DialPeerConditionFalse(_)) => {}
                Err(e) => {
                    debug!(target: TARGET, peer = %name, error = %e, "dial failed at once");
                    self.schedule_redial(peer);
                }
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Endorse(e)) => self.on_rr_event(Kind::Endorse, e),
            SwarmEvent::Behaviour(BehaviourEvent::Raft(e)) => self.on_rr_event(Kind::Raft, e),
            SwarmEvent::Behaviour(BehaviourEvent::Blocks(e)) => self.on_rr_event(Kind::Blocks, e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(e)) => self.on_gossip_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Stream(())) => {}
            SwarmEvent::Behaviour(BehaviourEvent::Allow(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                let min = Duration::from_millis(self.limits.redial_min_ms);
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.connections = num_established.get();
                    p.backoff = min;
                    p.redial_at = None;
                    if num_established.get() == 1 {
                        info!(target: TARGET, peer = %p.name, addr = %endpoint.get_remote_address(),
                              dialer = endpoint.is_dialer(), "peer connected");
                        self.publish_connected();
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.connections = num_established;
                    if num_established > 0 {
                        // A second connection (both ends dialed at once) going away; streams
                        // on it fail and are reopened on the one that stays.
                        debug!(target: TARGET, peer = %p.name, remaining = num_established,
                               cause = %cause.as_ref().map(|c| c.to_string()).unwrap_or_else(|| "closed".into()),
                               "connection closed");
                    }
                    if num_established == 0 {
                        info!(target: TARGET, peer = %p.name,
                              cause = %cause.map(|c| c.to_string()).unwrap_or_else(|| "closed".into()),
                              "peer disconnected");
                        self.publish_connected();
                        self.schedule_redial(peer_id);
                    }
                }
                self.recount_gossip_peers();
            }
            SwarmEvent::IncomingConnectionError {
                error,
                peer_id,
                send_back_addr,
                ..
            } => match error {
                ListenError::Denied { cause } => self.on_denied(peer_id, &send_back_addr, &cause),
                other => {
                    debug!(target: TARGET, peer = ?peer_id, addr = %send_back_addr, error = %other,
                           "incoming connection failed");
                }
            },
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let DialError::Denied { cause } = &error
                    && cause
                        .downcast_ref::<connection_limits::Exceeded>()
                        .is_some()
                {
                    Metrics::inc(&self.metrics.connections_limited_total);
                }
                if let Some(peer) = peer_id {
                    if let Some(p) = self.peers.get(&peer) {
                        debug!(target: TARGET, peer = %p.name, error = %error, "dial failed");
                    }
                    self.schedule_redial(peer);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(target: TARGET, %address, "listening");
            }
            SwarmEvent::ListenerError { error, .. } => {
                warn!(target: TARGET, %error, "listener error");
            }
            SwarmEvent::ListenerClosed { reason, .. } => {
                warn!(target: TARGET, ?reason, "listener closed");
            }
            _ => {}
        }
    }

    fn on_denied(
        &mut self,
        peer: Option<PeerId>,
        addr: &Multiaddr,
        cause: &libp2p::swarm::ConnectionDenied,
    ) {
        let peer = peer.map(|p| p.to_string()).unwrap_or_default();
        if self.isolated {
            debug!(target: TARGET, %peer, %addr, "refused a connection: isolated by the fault switch");
        } else if cause
            .downcast_ref::<allow_block_list::NotAllowed>()
            .is_some()
        {
            Metrics::inc(&self.metrics.peers_refused_total);
            warn!(target: TARGET, %peer, %addr, "refused a peer not in the allow-list");
        } else if cause
            .downcast_ref::<connection_limits::Exceeded>()
            .is_some()
        {
            Metrics::inc(&self.metrics.connections_limited_total);
            debug!(target: TARGET, %peer, %addr, %cause, "refused a connection over a limit");
        } else {
            debug!(target: TARGET, %peer, %addr, %cause, "refused a connection");
        }
    }

    // ---- commands from the handles -----------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Raft { to, body } => {
                if let Err((e, _)) = self.send_request(to, Kind::Raft, body, None) {
                    Metrics::inc(&self.metrics.raft_dropped_total);
                    debug!(target: TARGET, error = %e, "raft message dropped");
                }
            }
            Command::Request {
                to,
                kind,
                body,
                reply,
            } => {
                if reply.is_closed() {
                    return; // the caller gave up while the command was queued
                }
                // On success the reply waits in `pending_out`; on failure it is answered now.
                if let Err((err, Some(reply))) = self.send_request(to, kind, body, Some(reply)) {
                    let _ = reply.send(Err(err));
                }
            }
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::SetIsolated { on, reply } => {
                self.set_isolated(on);
                let _ = reply.send(());
            }
            Command::Disconnect { peer } => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::SetPeerAddr { peer, addr } => {
                let min = Duration::from_millis(self.limits.redial_min_ms);
                if let Some(p) = self.peers.get_mut(&peer) {
                    info!(target: TARGET, peer = %p.name, %addr, "peer address set");
                    p.addr = Some(multiaddr_of(addr));
                    p.backoff = min;
                    if p.connections == 0 {
                        p.redial_at = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// The fault switch: cut off (disallow every peer, which closes their connections and
    /// refuses new ones; no redials) or heal (allow them again and redial now).
    fn set_isolated(&mut self, on: bool) {
        if on == self.isolated {
            return;
        }
        self.isolated = on;
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        let min = Duration::from_millis(self.limits.redial_min_ms);
        for id in ids {
            if on {
                self.swarm.behaviour_mut().allow.disallow_peer(id);
                if let Some(p) = self.peers.get_mut(&id) {
                    p.redial_at = None;
                }
            } else {
                self.swarm.behaviour_mut().allow.allow_peer(id);
                if let Some(p) = self.peers.get_mut(&id) {
                    p.backoff = min;
                    if p.connections == 0 && p.addr.is_some() {
                        p.redial_at = Some(Instant::now());
                    }
                }
            }
        }
        if on {
            warn!(target: TARGET, "fault switch: cut off from every peer");
        } else {
            warn!(target: TARGET, "fault switch: healed, redialing every peer");
        }
    }

    /// Sends a request if the peer is connected and has room; gives the reply back with the
    /// error otherwise.
    fn send_request(
        &mut self,
        to: PeerId,
        kind: Kind,
        body: Vec<u8>,
        reply: Option<ReplyTx>,
    ) -> Result<(), (P2pError, Option<ReplyTx>)> {
        let max = self.limits.max_in_flight_per_peer;
        let connected = self.swarm.is_connected(&to);
        let Some(p) = self.peers.get_mut(&to) else {
            return Err((P2pError::UnknownPeer(to.to_string()), reply));
        };
        if !connected {
            return Err((P2pError::NotConnected(p.name.clone()), reply));
        }
        if p.in_flight >= max {
            return Err((P2pError::QueueFull("requests in flight to the peer"), reply));
        }
        p.in_flight += 1;
        let id = self.rr(kind).send_request(&to, body);
        self.pending_out
            .insert((kind, id), PendingOut { peer: to, reply });
        Metrics::inc(&self.metrics.messages_out_total);
        Ok(())
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) -> Result<(), P2pError> {
        let hash = self.topic_hash(topic);
        let len = data.len();
        match self.swarm.behaviour_mut().gossip.publish(hash, data) {
            Ok(_) => {
                Metrics::inc(&self.metrics.messages_out_total);
                Ok(())
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Err(P2pError::NoPeers(topic)),
            Err(gossipsub::PublishError::MessageTooLarge) => Err(P2pError::TooLarge {
                len,
                limit: self.limits.topic_limit(topic),
            }),
            Err(gossipsub::PublishError::AllQueuesFull(_)) => {
                Err(P2pError::QueueFull("gossip queues of every peer"))
            }
            Err(e) => Err(P2pError::Failed(format!("publish on {topic}: {e}"))),
        }
    }

    fn topic_hash(&self, topic: Topic) -> TopicHash {
        let [(_, blocks), (_, txs)] = &self.topics;
        match topic {
            Topic::Blocks => blocks.clone(),
            Topic::Txs => txs.clone(),
        }
    }

    fn topic_of(&self, hash: &TopicHash) -> Option<Topic> {
        self.topics.iter().find(|(_, h)| h == hash).map(|(t, _)| *t)
    }

    // ---- request-response ---------------------------------------------------------------

    fn on_rr_event(
        &mut self,
        kind: Kind,
        event: request_response::Event<Vec<u8>, Result<Vec<u8>, String>>,
    ) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_request(kind, peer, request, channel),
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                Metrics::inc(&self.metrics.messages_in_total);
                let Some(pending) = self.finish_out(kind, request_id) else {
                    return;
                };
                match pending.reply {
                    Some(reply) => {
                        let _ = reply.send(response.map_err(P2pError::Remote));
                    }
                    None => {
                        if let Err(text) = response {
                            Metrics::inc(&self.metrics.raft_dropped_total);
                            debug!(target: TARGET, error = %text, "raft message refused by the peer");
                        }
                    }
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let name = self.name_of(&peer);
                if let request_response::OutboundFailure::Io(e) = &error
                    && let Some(bad) = codec::bad_message(e)
                {
                    warn!(target: TARGET, peer = %name, %kind, reason = %bad.reason,
                          detail = %bad.detail, "dropped a bad response");
                } else {
                    debug!(target: TARGET, peer = %name, %kind, %error, "request failed");
                }
                if kind == Kind::Raft && matches!(error, request_response::OutboundFailure::Timeout)
                {
                    // A Raft message is acked at once by the peer's p2p layer: no ack in time
                    // means the connection is dead (peer host gone, no FIN) or the peer is
                    // stuck. Close it; the redial finds out which.
                    warn!(target: TARGET, peer = %name, "raft ack timed out: closing the connection");
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                let Some(pending) = self.finish_out(kind, request_id) else {
                    return;
                };
                match pending.reply {
                    Some(reply) => {
                        let err = match error {
                            request_response::OutboundFailure::Timeout => P2pError::Timeout,
                            other => P2pError::Failed(other.to_string()),
                        };
                        let _ = reply.send(Err(err));
                    }
                    None => Metrics::inc(&self.metrics.raft_dropped_total),
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                // A frame that could not be read is not reported here (it is counted and
                // logged by the codec); these are timeouts and closed connections.
                debug!(target: TARGET, peer = %self.name_of(&peer), %kind, %error,
                       "inbound request failed");
            }
            Event::ResponseSent { .. } => Metrics::inc(&self.metrics.messages_out_total),
        }
    }

    fn finish_out(&mut self, kind: Kind, id: OutboundRequestId) -> Option<PendingOut> {
        let pending = self.pending_out.remove(&(kind, id))?;
        if let Some(p) = self.peers.get_mut(&pending.peer) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
        Some(pending)
    }

    fn name_of(&self, peer: &PeerId) -> String {
        self.peers
            .get(peer)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| peer.to_string())
    }

    fn respond(
        &mut self,
        kind: Kind,
        channel: ResponseChannel<Result<Vec<u8>, String>>,
        result: Result<Vec<u8>, String>,
    ) {
        if self.rr(kind).send_response(channel, result).is_err() {
            debug!(target: TARGET, %kind, "requester gone before the answer");
        }
    }

    fn busy(&mut self, kind: Kind, channel: ResponseChannel<Result<Vec<u8>, String>>) {
        Metrics::inc(&self.metrics.inbound_busy_total);
        self.respond(kind, channel, Err("busy".into()));
    }

    fn on_request(
        &mut self,
        kind: Kind,
        peer: PeerId,
        body: Vec<u8>,
        channel: ResponseChannel<Result<Vec<u8>, String>>,
    ) {
        // The allow-list keeps strangers out; this is a second lock on the same door.
        let Some(from) = self.peers.get(&peer).map(|p| p.key) else {
            self.metrics.bad(BadReason::NotAllowed);
            warn!(target: TARGET, %peer, %kind, "request from a peer not in the allow-list");
            return;
        };
        Metrics::inc(&self.metrics.messages_in_total);
        if kind == Kind::Raft {
            match self.inbound_tx.try_send(Inbound::Raft { from, body }) {
                Ok(()) => self.respond(kind, channel, Ok(Vec::new())),
                Err(mpsc::error::TrySendError::Full(_)) => self.busy(kind, channel),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.respond(kind, channel, Err("node not taking messages".into()))
                }
            }
            return;
        }
        if self.replies.len() >= self.limits.max_pending_replies {
            self.busy(kind, channel);
            return;
        }
        let (reply, answer) = oneshot::channel();
        match self.inbound_tx.try_send(Inbound::Request {
            from,
            kind,
            body,
            reply,
        }) {
            Ok(()) => {
                // A little less than the stream's own timeout, so that the requester gets
                // "did not answer in time" rather than a dropped stream.
                let timeout = self.limits.timeout(kind).mul_f64(0.9);
                self.replies.push(Box::pin(async move {
                    let result = match tokio::time::timeout(timeout, answer).await {
                        Ok(Ok(result)) => result,
                        Ok(Err(_)) => Err("the node dropped the request".into()),
                        Err(_) => Err("the node did not answer in time".into()),
                    };
                    ReplyDone {
                        kind,
                        peer,
                        channel,
                        result,
                    }
                }));
            }
            Err(mpsc::error::TrySendError::Full(_)) => self.busy(kind, channel),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.respond(kind, channel, Err("node not taking requests".into()))
            }
        }
    }

    fn finish_reply(&mut self, done: ReplyDone) {
        let ReplyDone {
            kind,
            peer,
            channel,
            mut result,
        } = done;
        let limit = self.limits.body_limit(kind);
        if let Ok(body) = &result
            && body.len() > limit
        {
            warn!(target: TARGET, peer = %self.name_of(&peer), %kind, len = body.len(), limit,
                  "the node's answer is over the limit; sending an error instead");
            result = Err(format!(
                "answer of {} bytes is over the {limit} byte limit",
                body.len()
            ));
        }
        self.respond(kind, channel, result);
    }

    // ---- gossip ------------------------------------------------------------------------

    fn on_gossip_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let verdict = self.validate_gossip(&propagation_source, message);
                let acceptance = match verdict {
                    Ok((topic, from, body)) => {
                        Metrics::inc(&self.metrics.messages_in_total);
                        if self
                            .inbound_tx
                            .try_send(Inbound::Gossip { from, topic, body })
                            .is_err()
                        {
                            // Valid: forward it all the same; the node catches up by sync.
                            Metrics::inc(&self.metrics.inbound_busy_total);
                        }
                        MessageAcceptance::Accept
                    }
                    Err(bad) => {
                        self.metrics.bad(bad.reason);
                        warn!(target: TARGET, peer = %self.name_of(&propagation_source),
                              reason = %bad.reason, detail = %bad.detail, "rejected a gossip message");
                        MessageAcceptance::Reject
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            gossipsub::Event::Subscribed { .. } | gossipsub::Event::Unsubscribed { .. } => {
                self.recount_gossip_peers();
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                warn!(target: TARGET, peer = %self.name_of(&peer_id), "peer does not speak gossipsub");
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                debug!(target: TARGET, peer = %self.name_of(&peer_id), ?failed_messages, "slow gossip peer");
            }
        }
    }

    fn validate_gossip(
        &self,
        relay: &PeerId,
        message: gossipsub::Message,
    ) -> Result<(Topic, [u8; 32], Vec<u8>), BadMessage> {
        let bad = |reason, detail: String| BadMessage { reason, detail };
        let Some(topic) = self.topic_of(&message.topic) else {
            return Err(bad(
                BadReason::UnknownKind,
                format!("topic {}", message.topic),
            ));
        };
        if !self.peers.contains_key(relay) {
            return Err(bad(BadReason::NotAllowed, format!("relayed by {relay}")));
        }
        let Some(author) = message.source.and_then(|s| self.peers.get(&s)) else {
            return Err(bad(
                BadReason::NotAllowed,
                format!("written by {:?}", message.source),
            ));
        };
        let body = wire::decode_envelope(
            &message.data,
            &self.network_id,
            topic.code(),
            self.limits.topic_limit(topic),
        )?;
        Ok((topic, author.key, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_come_from_ed25519_keys() {
        let sk = sphr_crypto::keys::SecretKey::from_bytes(&[9; 32]);
        let kp = identity::Keypair::ed25519_from_bytes(sk.to_bytes().to_vec()).unwrap();
        assert_eq!(
            peer_id_of(&sk.public_key().0).unwrap(),
            kp.public().to_peer_id()
        );
    }

    #[test]
    fn socket_addresses_round_trip() {
        for s in ["127.0.0.1:4000", "[::1]:5"] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(socket_addr_of(&multiaddr_of(a)), Some(a));
        }
    }
}
