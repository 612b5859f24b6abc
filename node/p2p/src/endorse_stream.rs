//! Endorse requests on one long-lived stream per peer (`/sphr/endorse/2`).
//!
//! An endorse request as a libp2p request-response exchange (`/sphr/endorse/1`) costs a
//! yamux substream, a protocol negotiation, a request timer on libp2p's timer thread and a
//! hop through the swarm task at each end. Those costs are why the node paces its endorse
//! requests (see `sphr_node::p2p`): each one carries many proposals, and each proposal
//! waits for it. On a stream a request is a frame:
//!
//! ```text
//!  request(Endorse) ─► per-peer queue ─► client task ──(id, request)──► server reader ─► Inbound::Request
//!   (bounded; full:     (bounded)         │ ▲ pending: id -> reply          (one task per       │ reply
//!    QueueFull)                           │ └─(id, answer)── answer reader ◄── answer writer ◄──┘
//!                                         └ answers stop for request_timeout_ms while requests
//!                                           wait: the peer is gone or stuck; close the connection
//! ```
//!
//! - **Frames**: a request is its id (a u64 big-endian, counted up per stream) followed by a
//!   `/sphr/endorse/1` request frame (u32 big-endian length, CBOR [`crate::wire::Envelope`]);
//!   an answer is the id followed by a `/sphr/endorse/1` response frame (the
//!   [`crate::wire::ResponseEnvelope`]: the body or an error text). Each frame is checked as
//!   on `/sphr/endorse/1` (length against the limit before it is read, network id, kind); a
//!   bad one is counted in `bad_messages_total`, logged, and ends the stream. Answers may come
//!   in any order.
//! - **Every request is answered**: with the node's answer, with "busy" when the node's
//!   inbound queue is full, or with an error when the node takes longer than 0.9 times the
//!   request timeout, exactly as on `/sphr/endorse/1`.
//! - **Bounds**: a peer's requests in flight on the stream are at most
//!   `max_in_flight_per_peer` (past it a request fails at once with `QueueFull`); a server
//!   stream holds at most `max_pending_replies` answers being prepared and stops reading while
//!   it does; a peer has at most four inbound streams at once.
//! - **Older peers**: a peer that does not speak `/sphr/endorse/2` gets `/sphr/endorse/1`
//!   requests (asked again every minute); this node still serves `/sphr/endorse/1`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::futures::io::{ReadHalf, WriteHalf};
use libp2p::futures::stream::FuturesUnordered;
use libp2p::futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use libp2p::request_response::Codec;
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::Control;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::TARGET;
use crate::error::P2pError;
use crate::handle::{Command, Inbound};
use crate::metrics::Metrics;
use crate::raft_stream::{
    Link, MAX_FRAMES_PER_FLUSH, OpenFailed, PeerLink, PeerTask, Shared, spawn_per_peer, top_up,
};
use crate::wire::{self, Envelope, Kind, Reply, ResponseEnvelope};

/// The protocol of the long-lived endorse stream.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/sphr/endorse/2");

/// What a request's caller waits on.
pub(crate) type ReplyTx = oneshot::Sender<Result<Vec<u8>, P2pError>>;

/// A request queued for a peer's client task.
pub(crate) struct Request {
    pub body: Vec<u8>,
    pub reply: ReplyTx,
    /// Streams it was written on (or failed to open for it) that failed before it was
    /// answered; at [`MAX_ATTEMPTS`] it fails.
    pub attempts: u8,
}

/// Streams a request is tried on before it fails: a stream fails under its requests when
/// the connection it rode closes while another connection to the peer stays (both ends
/// dialed at once), and a new stream may land on the closing connection once more (libp2p
/// picks among the peer's connections at random).
const MAX_ATTEMPTS: u8 = 3;

/// The requests written on one stream and not answered yet, by id.
type Pending = Arc<Mutex<HashMap<u64, Request>>>;

fn take_all(pending: &Pending) -> Vec<Request> {
    match pending.lock() {
        Ok(mut map) => map.drain().map(|(_, r)| r).collect(),
        Err(poisoned) => poisoned.into_inner().drain().map(|(_, r)| r).collect(),
    }
}

/// Spawns an endorse client per peer; returns the queue of each.
pub(crate) fn spawn_clients(
    peers: Vec<PeerLink>,
    control: &Control,
    shared: &Shared,
    cmd_tx: &mpsc::Sender<Command>,
    connected: &watch::Receiver<Vec<[u8; 32]>>,
) -> HashMap<PeerId, mpsc::Sender<Request>> {
    spawn_per_peer(peers, control, shared, cmd_tx, connected, |task, rx| {
        Client {
            task,
            link: None,
            resend: Vec::new(),
        }
        .run(rx)
    })
}

/// An open stream: the write side with its answer count (as a Raft stream's acks), the
/// requests waiting for answers, the next id, and a signal that the answer reader ended.
struct ClientLink {
    link: Link,
    pending: Pending,
    next_id: u64,
    reader_ended: oneshot::Receiver<()>,
}

struct Client {
    task: PeerTask,
    link: Option<ClientLink>,
    /// Requests whose stream failed before they were answered: written again on a new
    /// stream, up to [`MAX_ATTEMPTS`] in all (an endorsement is a pure answer to its
    /// proposal; asking twice is safe).
    resend: Vec<Request>,
}

/// Resolves when the link's answer reader has ended (never while there is no link).
async fn reader_ended(link: &mut Option<ClientLink>) {
    match link {
        Some(l) => {
            let _ = (&mut l.reader_ended).await;
        }
        None => std::future::pending().await,
    }
}

impl Client {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_FRAMES_PER_FLUSH);
        loop {
            if self.resend.is_empty() {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(first) => batch.push(first),
                        None => break,
                    },
                    () = reader_ended(&mut self.link) => {
                        self.stream_failed("the endorse stream closed");
                        continue;
                    }
                }
            } else {
                batch.append(&mut self.resend);
            }
            top_up(&mut rx, &mut batch);
            self.send(&mut batch).await;
            batch.clear();
        }
        self.drop_link("the p2p layer is shutting down");
    }

    fn timeout(&self) -> Duration {
        self.task.shared.limits.timeout(Kind::Endorse)
    }

    /// Forgets the stream; the requests waiting on it fail with `why`.
    fn drop_link(&mut self, why: &str) {
        if let Some(link) = self.link.take() {
            let err = P2pError::Failed(why.to_string());
            for r in take_all(&link.pending) {
                let _ = r.reply.send(Err(err.clone()));
            }
        }
    }

    /// Forgets a stream that failed under its requests: those not answered go again on a
    /// new stream, up to [`MAX_ATTEMPTS`] streams each; then they fail with `why`.
    fn stream_failed(&mut self, why: &str) {
        let Some(link) = self.link.take() else {
            return;
        };
        debug!(target: TARGET, peer = %self.task.name, why, "endorse stream failed; resending what it left unanswered");
        self.try_again(take_all(&link.pending), why);
    }

    /// Queues requests for another stream, or fails those that have had their attempts.
    fn try_again(&mut self, requests: Vec<Request>, why: &str) {
        for mut r in requests {
            r.attempts = r.attempts.saturating_add(1);
            if r.attempts >= MAX_ATTEMPTS || r.reply.is_closed() {
                let _ = r.reply.send(Err(P2pError::Failed(why.to_string())));
            } else {
                self.resend.push(r);
            }
        }
    }

    fn fail(batch: &mut Vec<Request>, err: &P2pError) {
        for r in batch.drain(..) {
            let _ = r.reply.send(Err(err.clone()));
        }
    }

    async fn send(&mut self, batch: &mut Vec<Request>) {
        batch.retain(|r| !r.reply.is_closed()); // callers that gave up while queued
        if batch.is_empty() {
            return;
        }
        if !self.task.is_connected() {
            self.drop_link("the peer disconnected");
            Self::fail(batch, &P2pError::NotConnected(self.task.name.clone()));
            return;
        }
        if self.task.in_legacy() {
            self.send_legacy(batch);
            return;
        }
        let timeout = self.timeout();
        if let Some(open) = &mut self.link {
            if open.link.acked.has_changed().is_err() {
                self.stream_failed("the endorse stream closed");
                batch.append(&mut self.resend);
            } else if open.link.overdue(timeout) {
                warn!(target: TARGET, peer = %self.task.name,
                      "endorse stream: answers stopped: closing the connection");
                self.drop_link("the peer stopped answering");
                self.task.disconnect();
                Self::fail(
                    batch,
                    &P2pError::Failed("the peer stopped answering".into()),
                );
                return;
            }
        }
        if self.link.is_none() && !self.open(batch).await {
            return;
        }
        let Some(open) = self.link.as_mut() else {
            return;
        };
        let limit = self.task.shared.limits.max_in_flight_per_peer;
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.body.len() + 72).sum());
        let mut n = 0usize;
        {
            let mut pending = match open.pending.lock() {
                Ok(map) => map,
                Err(poisoned) => poisoned.into_inner(),
            };
            pending.retain(|_, r| !r.reply.is_closed()); // callers that timed out
            for mut r in batch.drain(..) {
                if pending.len() >= limit {
                    let _ = r.reply.send(Err(P2pError::QueueFull(
                        "endorse requests in flight to the peer",
                    )));
                    continue;
                }
                let env = Envelope {
                    network_id: self.task.shared.network_id,
                    kind: Kind::Endorse.code(),
                    body: std::mem::take(&mut r.body),
                };
                let encoded = wire::encode_frame(&env);
                r.body = env.body; // kept for a resend
                match encoded {
                    Ok(frame) => {
                        let id = open.next_id;
                        open.next_id += 1;
                        buf.extend_from_slice(&id.to_be_bytes());
                        buf.extend_from_slice(&frame);
                        pending.insert(id, r);
                        n += 1;
                    }
                    Err(e) => {
                        let _ = r.reply.send(Err(P2pError::Failed(format!(
                            "cannot encode the request: {e}"
                        ))));
                    }
                }
            }
        }
        if n == 0 {
            return;
        }
        let write = async {
            open.link.wr.write_all(&buf).await?;
            open.link.wr.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => {
                open.link.wrote(n);
                self.task
                    .shared
                    .metrics
                    .messages_out_total
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                // A stream on a connection that closed under it (libp2p keeps another one
                // to the peer): the requests go again on a new stream.
                self.stream_failed(&format!("endorse stream write failed: {e}"));
            }
            Err(_) => {
                warn!(target: TARGET, peer = %self.task.name,
                      "endorse stream write timed out: closing the connection");
                self.drop_link("endorse stream write timed out");
                self.task.disconnect();
            }
        }
    }

    /// Opens the stream; false (with the batch sent the old way, or queued to be tried again)
    /// when it could not be opened.
    async fn open(&mut self, batch: &mut Vec<Request>) -> bool {
        match self.task.open(PROTOCOL, self.timeout()).await {
            Ok(stream) => {
                let (rd, wr) = stream.split();
                let (answered_tx, answered) = watch::channel(0);
                let (ended_tx, reader_ended) = oneshot::channel();
                let pending = Pending::default();
                tokio::spawn(read_answers(
                    rd,
                    pending.clone(),
                    answered_tx,
                    ended_tx,
                    self.task.shared.clone(),
                    self.task.name.clone(),
                ));
                Metrics::inc(&self.task.shared.metrics.endorse_streams_opened_total);
                self.link = Some(ClientLink {
                    link: Link::new(wr, answered),
                    pending,
                    next_id: 0,
                    reader_ended,
                });
                true
            }
            Err(OpenFailed::Unsupported) => {
                self.send_legacy(batch);
                false
            }
            Err(OpenFailed::Other(why)) => {
                // As a stream that failed: the connection chosen may be closing.
                let requests = std::mem::take(batch);
                self.try_again(requests, &why);
                false
            }
        }
    }

    fn send_legacy(&mut self, batch: &mut Vec<Request>) {
        for r in batch.drain(..) {
            let cmd = Command::Request {
                to: self.task.peer,
                kind: Kind::Endorse,
                body: r.body,
                reply: r.reply,
            };
            if let Err(e) = self.task.cmd_tx.try_send(cmd) {
                let (mpsc::error::TrySendError::Full(cmd) | mpsc::error::TrySendError::Closed(cmd)) =
                    e;
                if let Command::Request { reply, .. } = cmd {
                    let _ = reply.send(Err(P2pError::QueueFull("command queue")));
                }
            }
        }
    }
}

/// Reads answers (id, response frame) and hands each to its request's caller, until the
/// stream fails or the client drops the link; the client then resends what is left.
async fn read_answers(
    mut rd: ReadHalf<Stream>,
    pending: Pending,
    answered: watch::Sender<u64>,
    _ended: oneshot::Sender<()>,
    shared: Shared,
    name: String,
) {
    let mut codec = shared.codec(Kind::Endorse);
    let mut count = 0u64;
    loop {
        let read = async {
            let mut id = [0u8; 8];
            rd.read_exact(&mut id).await?;
            let answer = codec.read_response(&PROTOCOL, &mut rd).await?;
            Ok::<_, std::io::Error>((u64::from_be_bytes(id), answer))
        };
        let (id, answer) = tokio::select! {
            read = read => match read {
                Ok(read) => read,
                Err(e) => {
                    debug!(target: TARGET, peer = %name, error = %e, "endorse stream closed");
                    return;
                }
            },
            () = answered.closed() => return,
        };
        Metrics::inc(&shared.metrics.messages_in_total);
        let waiting = match pending.lock() {
            Ok(mut map) => map.remove(&id),
            Err(poisoned) => poisoned.into_inner().remove(&id),
        };
        // No one waiting: the caller gave up (its id was swept), or a broken peer.
        if let Some(r) = waiting {
            let _ = r.reply.send(answer.map_err(P2pError::Remote));
        }
        count += 1;
        answered.send_replace(count);
    }
}

/// An answer being prepared: the request's id and the node's reply.
type Answering = (u64, oneshot::Receiver<Result<Vec<u8>, String>>);

/// Reads requests from one inbound endorse stream, hands them to the node and has their
/// answers written back (see [`crate::raft_stream::accept_loop`]).
pub(crate) async fn serve(
    stream: Stream,
    from: [u8; 32],
    name: String,
    shared: Shared,
    inbound_tx: mpsc::Sender<Inbound>,
) {
    let (name, shared) = (name.as_str(), &shared);
    let (mut rd, wr) = stream.split();
    // Bounded: with this many answers being prepared the reader waits (and so does the peer).
    let (answer_tx, answer_rx) = mpsc::channel::<Answering>(shared.limits.max_pending_replies);
    tokio::spawn(write_answers(
        wr,
        answer_rx,
        shared.clone(),
        name.to_string(),
    ));
    let mut codec = shared.codec(Kind::Endorse);
    loop {
        let mut id = [0u8; 8];
        let read = async {
            rd.read_exact(&mut id).await?;
            // Checked as a /sphr/endorse/1 request; a bad one is counted and logged.
            codec.read_request(&PROTOCOL, &mut rd).await
        };
        let body = match read.await {
            Ok(body) => body,
            Err(e) => {
                debug!(target: TARGET, peer = %name, error = %e, "endorse stream closed");
                return;
            }
        };
        let id = u64::from_be_bytes(id);
        Metrics::inc(&shared.metrics.messages_in_total);
        let (reply, answer) = oneshot::channel();
        let request = Inbound::Request {
            from,
            kind: Kind::Endorse,
            body,
            reply,
        };
        match inbound_tx.try_send(request) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Inbound::Request { reply, .. })) => {
                Metrics::inc(&shared.metrics.inbound_busy_total);
                let _ = reply.send(Err("busy".into()));
            }
            Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
        if answer_tx.send((id, answer)).await.is_err() {
            return; // the writer failed: the stream is gone
        }
    }
}

/// Writes each answer as it comes (or the error that says why there is none), coalescing
/// those ready together into one flush.
async fn write_answers(
    mut wr: WriteHalf<Stream>,
    mut rx: mpsc::Receiver<Answering>,
    shared: Shared,
    name: String,
) {
    // A little less than the requester's own timeout, so that it gets "did not answer in
    // time" rather than a timeout of its own.
    let timeout = shared.limits.timeout(Kind::Endorse).mul_f64(0.9);
    type Ready = Pin<Box<dyn Future<Output = (u64, Result<Vec<u8>, String>)> + Send>>;
    let mut preparing: FuturesUnordered<Ready> = FuturesUnordered::new();
    let mut reading = true;
    let mut buf = Vec::new();
    loop {
        let first = tokio::select! {
            next = rx.recv(), if reading => {
                match next {
                    Some((id, answer)) => preparing.push(Box::pin(async move {
                        let result = match tokio::time::timeout(timeout, answer).await {
                            Ok(Ok(result)) => result,
                            Ok(Err(_)) => Err("the node dropped the request".into()),
                            Err(_) => Err("the node did not answer in time".into()),
                        };
                        (id, result)
                    })),
                    None => reading = false,
                }
                continue;
            }
            Some(done) = preparing.next(), if !preparing.is_empty() => done,
            else => break,
        };
        buf.clear();
        let mut n = 0u64;
        let mut next = Some(first);
        while let Some((id, result)) = next {
            answer_frame(&mut buf, id, result, &shared, &name);
            n += 1;
            next = if n < MAX_FRAMES_PER_FLUSH as u64 {
                preparing.next().now_or_never().flatten()
            } else {
                None
            };
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        shared
            .metrics
            .messages_out_total
            .fetch_add(n, Ordering::Relaxed);
    }
    let _ = wr.close().await;
}

/// Appends one answer (id, response frame) to `buf`; an answer over the limit, or one that
/// does not encode, goes as an error text instead.
fn answer_frame(
    buf: &mut Vec<u8>,
    id: u64,
    result: Result<Vec<u8>, String>,
    shared: &Shared,
    name: &str,
) {
    let limit = shared.limits.body_limit(Kind::Endorse);
    let reply = match result {
        Ok(body) if body.len() > limit => {
            warn!(target: TARGET, peer = %name, len = body.len(), limit,
                  "the node's endorse answer is over the limit; sending an error instead");
            Reply::Err(format!(
                "answer of {} bytes is over the {limit} byte limit",
                body.len()
            ))
        }
        Ok(body) => Reply::Ok(body),
        Err(text) => Reply::Err(wire::clip_error(text)),
    };
    let env = ResponseEnvelope {
        network_id: shared.network_id,
        kind: Kind::Endorse.code(),
        reply,
    };
    match wire::encode_response_frame(&env) {
        Ok(frame) => {
            buf.extend_from_slice(&id.to_be_bytes());
            buf.extend_from_slice(&frame);
        }
        // Not written: the requester's own timeout ends its wait.
        Err(e) => {
            warn!(target: TARGET, peer = %name, error = %e, "cannot encode an endorse answer")
        }
    }
}
