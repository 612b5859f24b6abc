//! Raft messages on one long-lived stream per peer (`/sphr/raft/2`).
//!
//! A request-response exchange per Raft message (`/sphr/raft/1`) costs a yamux substream, a
//! protocol negotiation, a request timer, an answer and a hop through the swarm task at
//! each end, for a message that needs no answer. Raft messages and transaction forwards
//! make up most of the messages between consenters (about one per committed transaction
//! at 1,400 tx/s on four orgs), so they now take one stream per peer, opened once:
//!
//! ```text
//!  send_raft ─► per-peer queue (bounded) ─► writer task ──frames──► reader task ─► Inbound::Raft
//!               (full: dropped, counted)     │  ▲                     │ (one per inbound stream)
//!                                            │  └──── acks ◄──── acker task (the frame count,
//!                                            │                    at most every ACK_DELAY)
//!                                            └ no ack progress for raft_timeout_ms: the peer
//!                                              is gone or stuck; close the connection
//! ```
//!
//! - **Frames** are those of `/sphr/raft/1` requests: a u32 big-endian length, then the CBOR
//!   [`crate::wire::Envelope`] (network id, kind `raft`). Each frame is checked like a
//!   request (length against the limit before it is read, network id, kind); a bad frame
//!   is counted in `bad_messages_total`, logged, and ends the stream (the writer opens a new
//!   one with its next message).
//! - **Acks** go the other way: the number of frames read so far, a u64 big-endian, sent at
//!   most every [`ACK_DELAY`] while frames arrive. They exist to find a dead link: a TCP
//!   connection to a host that vanished keeps accepting writes, and the old request timeout
//!   was what closed it.
//! - **Older peers**: a peer that does not speak `/sphr/raft/2` gets its messages as
//!   `/sphr/raft/1` requests (asked again every [`LEGACY_RECHECK`]); this node still serves
//!   `/sphr/raft/1`.
//! - Messages are dropped (and counted in `raft_dropped_total`) when the peer is not
//!   connected, its queue is full or the stream fails: Raft resends what matters.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use libp2p::futures::io::{ReadHalf, WriteHalf};
use libp2p::futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::request_response::Codec;
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams, OpenStreamError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::TARGET;
use crate::codec::FrameCodec;
use crate::config::{P2pConfig, P2pLimits};
use crate::handle::{Command, Inbound};
use crate::metrics::Metrics;
use crate::wire::{self, BadReason, Envelope, Kind};

/// The protocol of the long-lived Raft stream.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/sphr/raft/2");

/// How long a reader waits before it acknowledges what it has read (acks are coalesced:
/// one per interval at most, however many frames came).
pub(crate) const ACK_DELAY: Duration = Duration::from_millis(100);

/// Inbound Raft streams served at once per peer (a peer opens a new one only when its
/// last one failed; the old one ends when its connection does). Past this a new stream is
/// dropped at once.
pub(crate) const MAX_INBOUND_STREAMS_PER_PEER: usize = 4;

/// Frames written before one flush, at most.
pub(crate) const MAX_FRAMES_PER_FLUSH: usize = 64;

/// How long a peer that did not speak `/sphr/raft/2` gets `/sphr/raft/1` before it is asked
/// again (it may have been upgraded).
pub(crate) const LEGACY_RECHECK: Duration = Duration::from_secs(60);

/// What the writers and readers share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub network_id: [u8; 32],
    pub metrics: Arc<Metrics>,
    pub limits: P2pLimits,
}

impl Shared {
    pub fn new(config: &P2pConfig, metrics: &Arc<Metrics>) -> Shared {
        Shared {
            network_id: config.network_id,
            metrics: metrics.clone(),
            limits: config.limits.clone(),
        }
    }

    pub(crate) fn codec(&self, kind: Kind) -> FrameCodec {
        FrameCodec::new(
            kind,
            self.network_id,
            self.limits.body_limit(kind),
            self.metrics.clone(),
        )
    }

    fn dropped(&self, n: usize) {
        self.metrics
            .raft_dropped_total
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// One allowed peer, as a writer knows it.
pub(crate) struct PeerLink {
    pub peer: PeerId,
    pub key: [u8; 32],
    pub name: String,
}

/// What a per-peer stream task (a Raft writer, an endorse client) knows of its peer.
pub(crate) struct PeerTask {
    pub peer: PeerId,
    pub key: [u8; 32],
    pub name: String,
    pub control: Control,
    pub shared: Shared,
    pub cmd_tx: mpsc::Sender<Command>,
    pub connected: watch::Receiver<Vec<[u8; 32]>>,
    /// Until when the peer gets the old request-response protocol instead (it did not speak
    /// the stream's).
    pub legacy_until: Option<Instant>,
}

/// Why a stream could not be opened.
pub(crate) enum OpenFailed {
    /// The peer does not speak the protocol: use the old one until [`LEGACY_RECHECK`].
    Unsupported,
    /// Anything else (not connected, the connection closing, timed out).
    Other(String),
}

impl PeerTask {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.borrow().binary_search(&self.key).is_ok()
    }

    pub(crate) fn in_legacy(&self) -> bool {
        self.legacy_until.is_some_and(|t| Instant::now() < t)
    }

    /// Closes every connection to the peer (it is redialed).
    pub(crate) fn disconnect(&self) {
        let _ = self
            .cmd_tx
            .try_send(Command::Disconnect { peer: self.peer });
    }

    /// Opens a stream of `protocol` to the peer, waiting at most `timeout`.
    pub(crate) async fn open(
        &mut self,
        protocol: StreamProtocol,
        timeout: Duration,
    ) -> Result<Stream, OpenFailed> {
        let opened = tokio::time::timeout(
            timeout,
            self.control.open_stream(self.peer, protocol.clone()),
        )
        .await;
        match opened {
            Ok(Ok(stream)) => {
                debug!(target: TARGET, peer = %self.name, %protocol, "stream open");
                Ok(stream)
            }
            Ok(Err(OpenStreamError::UnsupportedProtocol(_))) => {
                info!(target: TARGET, peer = %self.name,
                      "peer does not speak {protocol}: using the request-response protocol");
                self.legacy_until = Some(Instant::now() + LEGACY_RECHECK);
                Err(OpenFailed::Unsupported)
            }
            Ok(Err(e)) => {
                debug!(target: TARGET, peer = %self.name, %protocol, error = %e, "cannot open a stream");
                Err(OpenFailed::Other(format!(
                    "cannot open a {protocol} stream: {e}"
                )))
            }
            Err(_) => {
                debug!(target: TARGET, peer = %self.name, %protocol, "opening a stream timed out");
                Err(OpenFailed::Other(format!(
                    "opening a {protocol} stream timed out"
                )))
            }
        }
    }
}

/// Adds what is queued already to `batch`, up to [`MAX_FRAMES_PER_FLUSH`] in all: what one
/// flush of a per-peer task writes.
pub(crate) fn top_up<R>(rx: &mut mpsc::Receiver<R>, batch: &mut Vec<R>) {
    while batch.len() < MAX_FRAMES_PER_FLUSH {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
}

/// Spawns `run` for each peer with its [`PeerTask`] and a bounded queue
/// (`max_in_flight_per_peer`); returns the queue of each. A task's queue closes when the
/// handle's senders are all dropped.
pub(crate) fn spawn_per_peer<R, F, Fut>(
    peers: Vec<PeerLink>,
    control: &Control,
    shared: &Shared,
    cmd_tx: &mpsc::Sender<Command>,
    connected: &watch::Receiver<Vec<[u8; 32]>>,
    run: F,
) -> HashMap<PeerId, mpsc::Sender<R>>
where
    R: Send + 'static,
    F: Fn(PeerTask, mpsc::Receiver<R>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut queues = HashMap::new();
    for p in peers {
        let (tx, rx) = mpsc::channel(shared.limits.max_in_flight_per_peer);
        let task = PeerTask {
            peer: p.peer,
            key: p.key,
            name: p.name,
            control: control.clone(),
            shared: shared.clone(),
            cmd_tx: cmd_tx.clone(),
            connected: connected.clone(),
            legacy_until: None,
        };
        tokio::spawn(run(task, rx));
        queues.insert(p.peer, tx);
    }
    queues
}

/// Spawns a Raft writer per peer; returns the queue of each.
pub(crate) fn spawn_writers(
    peers: Vec<PeerLink>,
    control: &Control,
    shared: &Shared,
    cmd_tx: &mpsc::Sender<Command>,
    connected: &watch::Receiver<Vec<[u8; 32]>>,
) -> HashMap<PeerId, mpsc::Sender<Vec<u8>>> {
    spawn_per_peer(peers, control, shared, cmd_tx, connected, |task, rx| {
        Writer { task, link: None }.run(rx)
    })
}

/// An open stream to the peer (also the endorse stream's, whose answers count as acks).
pub(crate) struct Link {
    pub wr: WriteHalf<Stream>,
    /// The peer's ack count; closed when the ack reader has ended (the stream failed).
    pub acked: watch::Receiver<u64>,
    pub sent: u64,
    last_acked: u64,
    /// Since when frames have been waiting for an ack without progress.
    waiting_since: Option<Instant>,
}

impl Link {
    pub(crate) fn new(wr: WriteHalf<Stream>, acked: watch::Receiver<u64>) -> Link {
        Link {
            wr,
            acked,
            sent: 0,
            last_acked: 0,
            waiting_since: None,
        }
    }

    /// Counts `n` frames written: from now on they wait for their acks.
    pub(crate) fn wrote(&mut self, n: usize) {
        self.sent += n as u64;
        if self.waiting_since.is_none() {
            self.waiting_since = Some(Instant::now());
        }
    }

    /// Whether frames have waited longer than `timeout` with no ack progress.
    pub(crate) fn overdue(&mut self, timeout: Duration) -> bool {
        let acked = (*self.acked.borrow_and_update()).min(self.sent);
        if acked == self.sent {
            self.waiting_since = None;
            self.last_acked = acked;
            return false;
        }
        if acked > self.last_acked {
            self.last_acked = acked;
            self.waiting_since = Some(Instant::now());
            return false;
        }
        self.waiting_since.is_some_and(|t| t.elapsed() > timeout)
    }
}

struct Writer {
    task: PeerTask,
    link: Option<Link>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Vec<u8>>) {
        let mut batch = Vec::with_capacity(MAX_FRAMES_PER_FLUSH);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            top_up(&mut rx, &mut batch);
            self.send(&mut batch).await;
            batch.clear();
        }
    }

    fn timeout(&self) -> Duration {
        self.task.shared.limits.timeout(Kind::Raft)
    }

    fn close_connection(&mut self, why: &str) {
        warn!(target: TARGET, peer = %self.task.name, "raft stream {why}: closing the connection");
        self.link = None;
        self.task.disconnect();
    }

    async fn send(&mut self, batch: &mut Vec<Vec<u8>>) {
        if !self.task.is_connected() {
            self.link = None;
            self.task.shared.dropped(batch.len());
            return;
        }
        if self.task.in_legacy() {
            self.send_legacy(batch);
            return;
        }
        let timeout = self.timeout();
        if let Some(link) = &mut self.link {
            if link.acked.has_changed().is_err() {
                debug!(target: TARGET, peer = %self.task.name, "raft stream ended; opening a new one");
                self.link = None;
            } else if link.overdue(timeout) {
                self.close_connection("acks stopped");
                self.task.shared.dropped(batch.len());
                return;
            }
        }
        if self.link.is_none() && !self.open(batch).await {
            return;
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let mut buf = Vec::with_capacity(batch.iter().map(|b| b.len() + 64).sum());
        // Frames in `buf`: what the peer will count and acknowledge.
        let mut n = 0usize;
        for body in batch.drain(..) {
            let env = Envelope {
                network_id: self.task.shared.network_id,
                kind: Kind::Raft.code(),
                body,
            };
            match wire::encode_frame(&env) {
                Ok(frame) => {
                    buf.extend_from_slice(&frame);
                    n += 1;
                }
                Err(e) => {
                    warn!(target: TARGET, error = %e, "cannot encode a raft frame");
                    self.task.shared.dropped(1);
                }
            }
        }
        let write = async {
            link.wr.write_all(&buf).await?;
            link.wr.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => {
                link.wrote(n);
                self.task
                    .shared
                    .metrics
                    .messages_out_total
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                debug!(target: TARGET, peer = %self.task.name, error = %e, "raft stream write failed");
                self.link = None;
                self.task.shared.dropped(n);
            }
            Err(_) => {
                self.close_connection("write timed out");
                self.task.shared.dropped(n);
            }
        }
    }

    /// Opens the stream; false (with the batch dropped or sent the old way) when it could
    /// not be opened.
    async fn open(&mut self, batch: &mut Vec<Vec<u8>>) -> bool {
        match self.task.open(PROTOCOL, self.timeout()).await {
            Ok(stream) => {
                let (rd, wr) = stream.split();
                let (ack_tx, acked) = watch::channel(0);
                tokio::spawn(read_acks(rd, ack_tx));
                Metrics::inc(&self.task.shared.metrics.raft_streams_opened_total);
                self.link = Some(Link::new(wr, acked));
                true
            }
            Err(OpenFailed::Unsupported) => {
                self.send_legacy(batch);
                false
            }
            Err(OpenFailed::Other(_)) => {
                self.task.shared.dropped(batch.len());
                false
            }
        }
    }

    fn send_legacy(&mut self, batch: &mut Vec<Vec<u8>>) {
        for body in batch.drain(..) {
            let cmd = Command::Raft {
                to: self.task.peer,
                body,
            };
            if self.task.cmd_tx.try_send(cmd).is_err() {
                self.task.shared.dropped(1);
            }
        }
    }
}

/// Reads the peer's acks until the stream fails or the writer drops the link.
async fn read_acks(mut rd: ReadHalf<Stream>, acked: watch::Sender<u64>) {
    let mut buf = [0u8; 8];
    loop {
        tokio::select! {
            read = rd.read_exact(&mut buf) => {
                if read.is_err() {
                    return;
                }
                let n = u64::from_be_bytes(buf);
                if n < *acked.borrow() {
                    return; // counts only grow: a broken peer; the writer opens a new stream
                }
                acked.send_replace(n);
            }
            () = acked.closed() => return,
        }
    }
}

/// Serves the inbound streams of one protocol until the swarm task has ended (`done`
/// closes): a stream from a peer outside the allow-list is counted and dropped, at most
/// [`MAX_INBOUND_STREAMS_PER_PEER`] are served at once per peer, and each is handed to
/// `serve` (with the peer's key and name) in a task of its own.
pub(crate) async fn accept_loop<Fut>(
    protocol: StreamProtocol,
    mut incoming: IncomingStreams,
    allowed: HashMap<PeerId, ([u8; 32], String)>,
    shared: Shared,
    inbound_tx: mpsc::Sender<Inbound>,
    mut done: watch::Receiver<()>,
    serve: fn(Stream, [u8; 32], String, Shared, mpsc::Sender<Inbound>) -> Fut,
) where
    Fut: Future<Output = ()> + Send + 'static,
{
    let open: HashMap<PeerId, Arc<AtomicUsize>> =
        allowed.keys().map(|p| (*p, Arc::default())).collect();
    loop {
        let next = tokio::select! {
            next = incoming.next() => next,
            _ = done.changed() => None,
        };
        let Some((peer, stream)) = next else {
            return;
        };
        let (Some((from, name)), Some(count)) = (allowed.get(&peer).cloned(), open.get(&peer))
        else {
            // The allow-list refuses strangers before any stream; a second lock.
            shared.metrics.bad(BadReason::NotAllowed);
            warn!(target: TARGET, %peer, %protocol, "stream from a peer not in the allow-list");
            continue;
        };
        if count.fetch_add(1, Ordering::Relaxed) >= MAX_INBOUND_STREAMS_PER_PEER {
            count.fetch_sub(1, Ordering::Relaxed);
            warn!(target: TARGET, peer = %name, %protocol, limit = MAX_INBOUND_STREAMS_PER_PEER,
                  "too many streams from the peer: dropped the new one");
            continue;
        }
        let count = count.clone();
        let served = serve(stream, from, name, shared.clone(), inbound_tx.clone());
        tokio::spawn(async move {
            served.await;
            count.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Reads frames from one inbound Raft stream and acknowledges them (see [`accept_loop`]).
pub(crate) async fn serve(
    stream: Stream,
    from: [u8; 32],
    name: String,
    shared: Shared,
    inbound_tx: mpsc::Sender<Inbound>,
) {
    let (name, shared) = (name.as_str(), &shared);
    let (mut rd, mut wr) = stream.split();
    let (ack_tx, mut ack_rx) = watch::channel(0u64);
    tokio::spawn(async move {
        while ack_rx.changed().await.is_ok() {
            tokio::time::sleep(ACK_DELAY).await;
            let n = *ack_rx.borrow_and_update();
            if wr.write_all(&n.to_be_bytes()).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.close().await;
    });
    let mut codec = shared.codec(Kind::Raft);
    let mut read = 0u64;
    loop {
        // The codec checks the frame as it checks a /sphr/raft/1 request, and counts and
        // logs a bad one.
        let body = match codec.read_request(&PROTOCOL, &mut rd).await {
            Ok(body) => body,
            Err(e) => {
                debug!(target: TARGET, peer = %name, error = %e, "raft stream closed");
                return;
            }
        };
        Metrics::inc(&shared.metrics.messages_in_total);
        match inbound_tx.try_send(Inbound::Raft { from, body }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // As a busy answer on /sphr/raft/1: the message is lost, Raft resends.
                Metrics::inc(&shared.metrics.inbound_busy_total);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
        read += 1;
        ack_tx.send_replace(read);
    }
}
