//! The node's side of the peer-to-peer layer (sphr-p2p over libp2p): what each message kind
//! means to the node, and the orderer's [`Transport`] over it.
//!
//! ```text
//!   sphr-p2p Inbound ──> dispatcher task
//!      Raft  { PeerMsg::Raft(raft-rs message) } ──sender is that Raft id?──> orderer.step
//!            { PeerMsg::Txs(txs) }              ──(a follower forwards)───> orderer.submit_batch
//!      Request Endorse  (EndorseRequest: up to 64 proposals) ──> wait for the gateway's height
//!                       ──> endorser, one proposal after another ──> EndorseAnswer (one result each)
//!      Request Blocks   (BlockRange)      ──> ledger: up to 256 blocks / 8 MiB ──> BlockRecords
//!      Gossip  Blocks   (BlockRecord)     ──> sync (nodes that are not consenters)
//!   orderer ──Transport::send / forward_txs──> P2pHandle::send_raft (never blocks)
//! ```
//!
//! A gateway's endorse requests to one peer go through that peer's batcher (see
//! [`Peers::endorse_at`]): at most [`ENDORSE_BATCHES_IN_FLIGHT`] requests are outstanding per
//! peer, and the proposals that arrive meanwhile leave together in the next one. Requests to
//! a peer are also paced: one that would leave before the next tick of the node's batch grid
//! (one tick per batch interval, see [`Ticks`]) after the previous waits for that tick,
//! gathering the proposals that arrive meanwhile; every peer's requests (and the gateway's
//! own signatures) leave on the same ticks, so a proposal waits for one tick, not for the
//! latest of four. Under light load (proposals to a peer further apart than the interval) every
//! request carries one proposal and waits for nothing; under steady load each peer gets at
//! most one request per interval (plus what the in-flight limit lets through), so one libp2p
//! frame, one blocking task, one signature and one answer serve several proposals (up to
//! [`MAX_ENDORSE_BATCH`]), and proposals queue (bounded: [`ENDORSE_QUEUE_PER_PEER`]) instead
//! of failing for want of streams.
//!
//! The interval can follow how fast the peer answers: [`PACING_RTT_FACTOR`] times the smoothed
//! round trip of the batcher's requests, never below `[p2p] endorse_batch_interval_ms`
//! (default 20 ms) nor above `[p2p] endorse_batch_interval_max_ms` (default 20 ms too, so by
//! default the interval is fixed). With a higher maximum a busy peer (answers in 6 ms or
//! more) gets fewer requests carrying more proposals each. That paid when every request was
//! a libp2p exchange of its own (a substream, a negotiation, timers: about 600 us of CPU per
//! request across the nodes); since requests ride one long-lived stream per peer
//! (`/sphr/endorse/2` in sphr-p2p) a fixed 20 ms gives the same CPU per transaction at
//! saturation and about half the latency (BENCHMARKS.md, session 11).
//!
//! Every decode is size-limited; anything malformed, from the wrong sender or of the wrong kind
//! is dropped and counted in `sphr_p2p_node_dropped_total{reason}`; nothing panics.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sphr_orderer::{OrdererHandle, RaftMessage, Transport};
use sphr_p2p::{Inbound, Kind, P2pHandle, Topic};
use sphr_types::{BlockRecord, GenesisConfig, MAX_BLOCK_BYTES, ProposalResponse, SignedProposal};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

use crate::endorser::{Endorser, StateSource};
use crate::metrics::Metrics;

/// Most blocks one range request returns.
pub const MAX_BLOCKS_PER_REQUEST: u64 = 256;
/// Most bytes of blocks one range answer carries.
pub const MAX_BLOCKS_BYTES: usize = 8 * 1024 * 1024;

/// What rides the Raft kind between consenters.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerMsg {
    /// A raft-rs message (protobuf, as `sphr_orderer::encode_message` writes it).
    Raft(ByteBuf),
    /// Transactions a follower forwards to the leader.
    Txs(Vec<ByteBuf>),
}

/// Most proposals in one endorse request.
pub const MAX_ENDORSE_BATCH: usize = 64;

/// Endorse requests a node keeps outstanding to one peer; proposals that arrive meanwhile wait
/// and leave together in the next request.
pub const ENDORSE_BATCHES_IN_FLIGHT: usize = 4;

/// Default least interval between endorse requests to one peer
/// (`[p2p] endorse_batch_interval_ms`).
pub const DEFAULT_ENDORSE_BATCH_INTERVAL: Duration = Duration::from_millis(20);

/// Default most interval between endorse requests to one peer
/// (`[p2p] endorse_batch_interval_max_ms`).
pub const DEFAULT_ENDORSE_BATCH_INTERVAL_MAX: Duration = Duration::from_millis(20);

/// The pacing interval is this many smoothed round trips of the batcher's requests (within
/// [`Pacing`]'s bounds).
pub const PACING_RTT_FACTOR: u32 = 16;

/// Bounds of the interval between endorse requests to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Least interval (zero: no pacing at all).
    pub min: Duration,
    /// Most interval; below `min` it counts as `min` (a fixed interval).
    pub max: Duration,
}

/// The instants at which paced batches may leave: every interval from one origin, shared by
/// all of a node's batchers (the endorse requests to each peer and the gateway's own
/// signatures). A proposal goes to every endorsing org at once and waits for the last answer:
/// with a phase of its own per peer it would wait for the latest of four windows (four fifths
/// of an interval on average), on one grid for one (half an interval).
///
/// Each node has its own origin (when its p2p layer started). One grid for the whole network
/// (ticks on multiples of the interval in wall-clock time) was tried: every gateway's
/// requests then reach the endorsers at the same instant and wait for each other there
/// (BENCHMARKS.md, session 19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticks {
    origin: tokio::time::Instant,
}

impl Ticks {
    /// A grid with a tick at `origin`.
    pub fn from_origin(origin: tokio::time::Instant) -> Ticks {
        Ticks { origin }
    }

    /// The first tick of the `interval` grid strictly after `t` (at most `interval` after it).
    fn next_after(&self, t: tokio::time::Instant, interval: Duration) -> tokio::time::Instant {
        let step = interval.as_nanos().max(1);
        let since = t.saturating_duration_since(self.origin).as_nanos();
        let ahead = step - since % step;
        t + Duration::from_nanos(u64::try_from(ahead).unwrap_or(u64::MAX))
    }
}

/// One batcher's pacing: the bounds and the smoothed round trip of its requests.
#[derive(Debug)]
struct Pacer {
    pacing: Pacing,
    /// The grid requests leave on.
    ticks: Ticks,
    /// Smoothed round trip in microseconds; zero before the first answer.
    rtt_us: AtomicU64,
}

impl Pacer {
    fn new(pacing: Pacing, ticks: Ticks) -> Pacer {
        Pacer {
            pacing,
            ticks,
            rtt_us: AtomicU64::new(0),
        }
    }

    /// The interval for the next request: [`PACING_RTT_FACTOR`] round trips, within bounds.
    fn interval(&self) -> Duration {
        let Pacing { min, max } = self.pacing;
        if min.is_zero() {
            return Duration::ZERO;
        }
        let rtt = Duration::from_micros(self.rtt_us.load(Ordering::Relaxed));
        rtt.saturating_mul(PACING_RTT_FACTOR)
            .clamp(min, max.max(min))
    }

    /// Folds one request's round trip into the average (a quarter of the weight to the new
    /// sample, so a few slow answers move it and one does not).
    fn observe(&self, rtt: Duration) {
        let sample = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .rtt_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    old - old / 4 + sample / 4
                })
            });
    }
}

/// Proposals waiting for a place in a request to one peer; past it endorsement at that peer
/// fails at once (the gateway answers 503).
pub const ENDORSE_QUEUE_PER_PEER: usize = 4096;

/// An endorsement request between nodes: signed proposals, and the gateway's ledger height
/// when it simulated them. The endorser first waits (bounded) until it has committed that
/// height, so that a lagging endorser does not simulate on older state and fail the match.
#[derive(Debug, Serialize, Deserialize)]
pub struct EndorseRequest {
    /// CBOR of each `SignedProposal` (at most [`MAX_ENDORSE_BATCH`]).
    pub proposals: Vec<ByteBuf>,
    /// The gateway's height (the highest of the proposals').
    pub min_height: u64,
}

/// What an endorser says of one proposal of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndorseResult {
    /// CBOR of the `ProposalResponse`.
    Endorsed(ByteBuf),
    /// Not endorsed, and why.
    Refused(String),
    /// Not looked at: its answer would have passed the message limit. Ask again alone.
    Retry,
}

/// The answer to an [`EndorseRequest`]: one result per proposal, in order.
#[derive(Debug, Serialize, Deserialize)]
pub struct EndorseAnswer {
    /// The results.
    pub results: Vec<EndorseResult>,
}

/// A proposal waiting in a peer's batcher.
struct EndorseJob {
    proposal: ByteBuf,
    min_height: u64,
    reply: oneshot::Sender<Result<EndorseResult, String>>,
}

/// How long an endorser waits to reach a gateway's height before simulating anyway.
pub const ENDORSE_CATCH_UP: Duration = Duration::from_secs(3);

/// A block range request: blocks `from..=to`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct BlockRange {
    /// First block wanted.
    pub from: u64,
    /// Last block wanted (inclusive); the answer may stop earlier.
    pub to: u64,
}

/// Block records, as a range answer carries them.
#[derive(Debug, Serialize, Deserialize)]
pub struct BlockBatch {
    /// Encoded [`BlockRecord`]s, in order.
    pub blocks: Vec<ByteBuf>,
    /// The answering node's height.
    pub height: u64,
}

/// The network as the node sees it: who is who, and the p2p handle.
#[derive(Clone)]
pub struct Peers {
    handle: P2pHandle,
    genesis: Arc<GenesisConfig>,
    raft_keys: BTreeMap<u64, [u8; 32]>,
    my_key: [u8; 32],
    /// One endorse batcher per peer asked so far (genesis nodes only, so bounded).
    batchers: Arc<Mutex<HashMap<[u8; 32], mpsc::Sender<EndorseJob>>>>,
    /// Endorse requests and the proposals they carried.
    batch_counters: BatchCounters,
    /// Bounds of the interval between two endorse requests to one peer.
    pacing: Pacing,
    /// The grid all of this node's paced batches leave on.
    ticks: Ticks,
}

/// Counts of endorse requests sent and of the proposals they carried.
#[derive(Clone)]
pub struct BatchCounters {
    /// Requests.
    pub requests: prometheus::IntCounter,
    /// Proposals.
    pub proposals: prometheus::IntCounter,
}

impl Peers {
    /// Wraps a started p2p layer; `batch_counters` count the endorse requests sent, and
    /// `pacing` spaces them (see the module documentation; a zero `min` turns pacing off).
    pub fn new(
        handle: P2pHandle,
        genesis: Arc<GenesisConfig>,
        batch_counters: BatchCounters,
        pacing: Pacing,
    ) -> Peers {
        let raft_keys = genesis
            .consenters()
            .map(|n| (n.raft_id, n.public_key.0))
            .collect();
        let my_key = handle.local_key();
        Peers {
            handle,
            genesis,
            raft_keys,
            my_key,
            batchers: Arc::new(Mutex::new(HashMap::new())),
            batch_counters,
            pacing,
            ticks: Ticks::from_origin(tokio::time::Instant::now()),
        }
    }

    /// The p2p handle.
    pub fn handle(&self) -> &P2pHandle {
        &self.handle
    }

    /// The least time between two endorse requests to one peer under steady load (also the
    /// interval of the gateway's own endorsement batches).
    pub fn batch_interval(&self) -> Duration {
        self.pacing.min
    }

    /// The grid this node's paced batches leave on (see [`Ticks`]).
    pub fn ticks(&self) -> Ticks {
        self.ticks
    }

    /// How many genesis peers are connected.
    pub fn connected(&self) -> usize {
        self.handle.connected_peers().len()
    }

    /// The orderer's transport over this network.
    pub fn transport(&self) -> P2pTransport {
        P2pTransport {
            handle: self.handle.clone(),
            raft_keys: self.raft_keys.clone(),
        }
    }

    /// The connected nodes of `org` (other than this node).
    fn nodes_of(&self, org: &str) -> Vec<[u8; 32]> {
        self.genesis
            .nodes
            .iter()
            .filter(|n| n.org == org && n.public_key.0 != self.my_key)
            .map(|n| n.public_key.0)
            .filter(|k| self.handle.is_connected(k))
            .collect()
    }

    /// Asks a node of `org` to endorse `sp`; tries each connected node of the org in turn,
    /// all within `timeout`. The proposal joins the peer's next batched request (see the
    /// module documentation).
    pub async fn endorse_at(
        &self,
        org: &str,
        sp: &SignedProposal,
        min_height: u64,
        timeout: Duration,
    ) -> Result<ProposalResponse, String> {
        let nodes = self.nodes_of(org);
        if nodes.is_empty() {
            return Err(format!("no node of {org} is connected"));
        }
        let proposal = ByteBuf::from(sp.to_bytes().map_err(|e| e.to_string())?);
        let ask = async {
            let mut last = String::new();
            for key in nodes {
                let result = match self
                    .endorse_batched(key, proposal.clone(), min_height)
                    .await
                {
                    Ok(EndorseResult::Retry) => {
                        self.endorse_alone(key, &proposal, min_height).await
                    }
                    other => other,
                };
                match result {
                    Ok(EndorseResult::Endorsed(bytes)) => {
                        return ProposalResponse::from_bytes(&bytes).map_err(|e| {
                            format!("{org} answered an undecodable endorsement: {e}")
                        });
                    }
                    Ok(EndorseResult::Refused(why)) => last = why,
                    Ok(EndorseResult::Retry) => {
                        last = "its endorsement is larger than the p2p message limit".into()
                    }
                    Err(e) => last = e,
                }
            }
            Err(format!("{org}: {last}"))
        };
        tokio::time::timeout(timeout, ask)
            .await
            .unwrap_or_else(|_| Err(format!("{org}: no endorsement within {timeout:?}")))
    }

    /// Queues one proposal in `to`'s batcher and waits for its result.
    async fn endorse_batched(
        &self,
        to: [u8; 32],
        proposal: ByteBuf,
        min_height: u64,
    ) -> Result<EndorseResult, String> {
        let (reply, answer) = oneshot::channel();
        let job = EndorseJob {
            proposal,
            min_height,
            reply,
        };
        let queue = self.batcher(to);
        match queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(format!(
                    "queue full: {ENDORSE_QUEUE_PER_PEER} proposals wait for the peer"
                ));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                if let Ok(mut map) = self.batchers.lock() {
                    map.remove(&to);
                }
                return Err("the peer's endorse batcher stopped".into());
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the peer's endorse batcher stopped".into()))
    }

    /// Sends one proposal in a request of its own (after a batch had no room for its answer).
    async fn endorse_alone(
        &self,
        to: [u8; 32],
        proposal: &ByteBuf,
        min_height: u64,
    ) -> Result<EndorseResult, String> {
        let req = EndorseRequest {
            proposals: vec![proposal.clone()],
            min_height,
        };
        let timeout = self.handle.limits().timeout(Kind::Endorse);
        let mut results = send_endorse_request(&self.handle, to, &req, timeout).await?;
        results
            .pop()
            .ok_or_else(|| "the peer answered no result".to_string())
    }

    /// The batcher of `to`, started on first use.
    fn batcher(&self, to: [u8; 32]) -> mpsc::Sender<EndorseJob> {
        let mut map = match self.batchers.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(q) = map.get(&to).filter(|q| !q.is_closed()) {
            return q.clone();
        }
        let (tx, rx) = mpsc::channel(ENDORSE_QUEUE_PER_PEER);
        let limits = self.handle.limits();
        // Half the message limit for proposals leaves room for their answers (responses
        // are about as large as proposals); a proposal over half goes alone.
        let budget = limits.max_message_bytes / 2;
        tokio::spawn(run_batcher(
            self.handle.clone(),
            to,
            rx,
            budget,
            limits.timeout(Kind::Endorse),
            Arc::new(Pacer::new(self.pacing, self.ticks)),
            self.batch_counters.clone(),
        ));
        map.insert(to, tx.clone());
        tx
    }

    /// Fetches blocks `from..=to` from any connected peer that has them; returns the decoded
    /// records in order (possibly fewer than asked, never none unless every peer failed).
    pub async fn fetch_blocks(&self, from: u64, to: u64) -> Result<Vec<BlockRecord>, String> {
        let body = sphr_types::encode(&BlockRange { from, to }).map_err(|e| e.to_string())?;
        let mut last = String::from("no peer is connected");
        for key in self.handle.connected_peers() {
            let answer = match self
                .handle
                .request(key, Kind::Blocks, body.clone(), Duration::from_secs(30))
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let batch: BlockBatch = match sphr_types::decode(&answer, MAX_BLOCKS_BYTES + 64 * 1024)
            {
                Ok(b) => b,
                Err(e) => {
                    last = format!("undecodable block batch: {e}");
                    continue;
                }
            };
            let mut out = Vec::with_capacity(batch.blocks.len());
            for raw in &batch.blocks {
                match BlockRecord::from_bytes(raw) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        last = format!("undecodable block: {e}");
                        break;
                    }
                }
            }
            if out.first().map(|r| r.block.header.number) == Some(from) {
                return Ok(out);
            }
            if !out.is_empty() {
                last = "a peer answered blocks that do not start where asked".into();
            }
        }
        Err(last)
    }

    /// Publishes a committed block for nodes that are not consenters.
    pub async fn publish_block(&self, record: &BlockRecord) {
        match record.to_bytes() {
            Ok(bytes) => {
                if let Err(e) = self.handle.publish(Topic::Blocks, bytes).await {
                    debug!(target: "sphr::p2p", error = %e, "block not gossiped");
                }
            }
            Err(e) => warn!(target: "sphr::p2p", error = %e, "cannot encode a block for gossip"),
        }
    }
}

/// Sends proposals queued for `to` in batched requests, at most [`ENDORSE_BATCHES_IN_FLIGHT`]
/// at a time and, under steady load, at most one per `pacer`'s interval, which follows the
/// round trip of the requests it times; each request takes whatever
/// waits, up to [`MAX_ENDORSE_BATCH`] proposals and `budget` bytes of them. Ends when every
/// sender is gone.
async fn run_batcher(
    handle: P2pHandle,
    to: [u8; 32],
    mut rx: mpsc::Receiver<EndorseJob>,
    budget: usize,
    timeout: Duration,
    pacer: Arc<Pacer>,
    counters: BatchCounters,
) {
    let slots = Arc::new(Semaphore::new(ENDORSE_BATCHES_IN_FLIGHT));
    let mut carried: Option<EndorseJob> = None;
    let mut last_sent: Option<tokio::time::Instant> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut batch = Batch::new(first, budget);
        carried = gather(
            &mut batch,
            &mut rx,
            last_sent,
            pacer.interval(),
            pacer.ticks,
        )
        .await;
        last_sent = Some(tokio::time::Instant::now());
        let mut jobs = batch.jobs;
        // Callers that gave up (timed out) need no endorsement.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        counters.requests.inc();
        counters.proposals.inc_by(jobs.len() as u64);
        let handle = handle.clone();
        let pacer = pacer.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let min_height = jobs.iter().map(|j| j.min_height).max().unwrap_or(0);
            let (proposals, replies): (Vec<_>, Vec<_>) =
                jobs.into_iter().map(|j| (j.proposal, j.reply)).unzip();
            let req = EndorseRequest {
                proposals,
                min_height,
            };
            let sent = tokio::time::Instant::now();
            let answer = send_endorse_request(&handle, to, &req, timeout).await;
            pacer.observe(sent.elapsed());
            match answer {
                Ok(results) => {
                    for (result, reply) in results.into_iter().zip(replies) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// A batch being gathered from a queue.
pub(crate) trait Gathering<T> {
    /// Whether it takes no more.
    fn is_full(&self) -> bool;
    /// Adds `job`, or gives it back when it does not fit (it then starts the next batch).
    fn push(&mut self, job: T) -> Option<T>;
}

/// Fills `batch` from `rx`: with what waits, then, when no tick of the `interval` grid
/// `ticks` has passed since the previous batch left (see [`pace_until`]), with what arrives
/// until the next tick. Stops early when the batch is full or every sender is gone; returns
/// a job that did not fit.
pub(crate) async fn gather<T, B: Gathering<T>>(
    batch: &mut B,
    rx: &mut mpsc::Receiver<T>,
    last_sent: Option<tokio::time::Instant>,
    interval: Duration,
    ticks: Ticks,
) -> Option<T> {
    let mut carried = None;
    while carried.is_none() && !batch.is_full() {
        let Ok(job) = rx.try_recv() else { break };
        carried = batch.push(job);
    }
    if let Some(until) = pace_until(last_sent, interval, tokio::time::Instant::now(), ticks) {
        while carried.is_none() && !batch.is_full() {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(job)) => carried = batch.push(job),
                // Time is up, or every sender is gone: send what we have.
                Ok(None) | Err(_) => break,
            }
        }
    }
    carried
}

/// The proposals of one endorse request, as they are gathered.
struct Batch {
    jobs: Vec<EndorseJob>,
    bytes: usize,
    budget: usize,
}

impl Batch {
    /// A batch of `first` (which goes even when it alone is over `budget`).
    fn new(first: EndorseJob, budget: usize) -> Batch {
        Batch {
            bytes: first.proposal.len(),
            jobs: vec![first],
            budget,
        }
    }
}

impl Gathering<EndorseJob> for Batch {
    fn is_full(&self) -> bool {
        self.jobs.len() >= MAX_ENDORSE_BATCH
    }

    /// Adds `job`, or gives it back when it would take the batch over its byte budget.
    fn push(&mut self, job: EndorseJob) -> Option<EndorseJob> {
        if self.bytes + job.proposal.len() > self.budget {
            return Some(job);
        }
        self.bytes += job.proposal.len();
        self.jobs.push(job);
        None
    }
}

/// When a request about to leave at `now` should leave instead, if later: at the first tick
/// of the grid after the previous one, so at most one interval after it (under steady load
/// every request leaves on a tick, one interval apart). `None`: send now (pacing off, first
/// request, or a tick has passed since the previous one, as one always has under light
/// load).
fn pace_until(
    last_sent: Option<tokio::time::Instant>,
    interval: Duration,
    now: tokio::time::Instant,
    ticks: Ticks,
) -> Option<tokio::time::Instant> {
    if interval.is_zero() {
        return None;
    }
    let until = ticks.next_after(last_sent?, interval);
    (until > now).then_some(until)
}

/// One endorse request and its checked answer: exactly one result per proposal.
async fn send_endorse_request(
    handle: &P2pHandle,
    to: [u8; 32],
    req: &EndorseRequest,
    timeout: Duration,
) -> Result<Vec<EndorseResult>, String> {
    let body = sphr_types::encode(req).map_err(|e| e.to_string())?;
    let bytes = handle
        .request(to, Kind::Endorse, body, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let answer: EndorseAnswer = sphr_types::decode(&bytes, handle.limits().max_message_bytes)
        .map_err(|e| format!("undecodable endorse answer: {e}"))?;
    if answer.results.len() != req.proposals.len() {
        return Err(format!(
            "the peer answered {} results for {} proposals",
            answer.results.len(),
            req.proposals.len()
        ));
    }
    Ok(answer.results)
}

/// The orderer's transport: Raft messages and forwarded transactions over libp2p.
pub struct P2pTransport {
    handle: P2pHandle,
    raft_keys: BTreeMap<u64, [u8; 32]>,
}

impl P2pTransport {
    fn send_msg(&self, to: u64, msg: &PeerMsg) {
        let Some(key) = self.raft_keys.get(&to) else {
            warn!(target: "sphr::p2p", raft_id = to, "no consenter with that Raft id");
            return;
        };
        match sphr_types::encode(msg) {
            Ok(body) => {
                if let Err(e) = self.handle.send_raft(*key, body) {
                    debug!(target: "sphr::p2p", raft_id = to, error = %e, "raft message dropped");
                }
            }
            Err(e) => warn!(target: "sphr::p2p", error = %e, "cannot encode a raft message"),
        }
    }
}

impl Transport for P2pTransport {
    fn send(&self, msgs: Vec<RaftMessage>) {
        for m in msgs {
            match sphr_orderer::encode_message(&m) {
                Ok(bytes) => self.send_msg(m.to, &PeerMsg::Raft(ByteBuf::from(bytes))),
                Err(e) => warn!(target: "sphr::p2p", error = %e, "cannot encode a raft message"),
            }
        }
    }

    fn forward_txs(&self, leader: u64, txs: Vec<Vec<u8>>) {
        let txs = txs.into_iter().map(ByteBuf::from).collect();
        self.send_msg(leader, &PeerMsg::Txs(txs));
    }
}

/// What the dispatcher needs from the node.
pub struct Dispatch {
    /// The genesis configuration.
    pub genesis: Arc<GenesisConfig>,
    /// The orderer (consenters only).
    pub orderer: Option<OrdererHandle>,
    /// The endorser.
    pub endorser: Arc<Endorser>,
    /// Committed state.
    pub state: Arc<dyn StateSource>,
    /// Blocks by number.
    pub blocks: Arc<dyn BlockSource>,
    /// Gossiped blocks go here (nodes that are not consenters).
    pub gossip_blocks: Option<mpsc::Sender<BlockRecord>>,
    /// Metrics.
    pub metrics: Metrics,
    /// The largest Raft message or endorse request accepted (`p2p.limits.max_message_bytes`).
    pub max_raft_bytes: usize,
}

/// Reads blocks for range requests.
pub trait BlockSource: Send + Sync {
    /// The node's height.
    fn height(&self) -> u64;
    /// A stored block.
    fn block(&self, number: u64) -> Result<Option<BlockRecord>, String>;
}

impl Dispatch {
    fn drop_msg(&self, reason: &'static str) {
        self.metrics
            .p2p_node_dropped_total
            .with_label_values(&[reason])
            .inc();
    }

    fn raft_id_of(&self, key: &[u8; 32]) -> Option<u64> {
        self.genesis
            .consenters()
            .find(|n| &n.public_key.0 == key)
            .map(|n| n.raft_id)
    }

    /// Handles inbound messages until the p2p layer stops.
    pub async fn run(self: Arc<Self>, mut inbound: mpsc::Receiver<Inbound>) {
        while let Some(msg) = inbound.recv().await {
            match msg {
                Inbound::Raft { from, body } => self.on_raft(from, &body),
                Inbound::Request {
                    from: _,
                    kind,
                    body,
                    reply,
                } => {
                    // Straight onto a blocking thread, which answers: one hand-off per request.
                    // (A panic there drops `reply`; the requester then gets "the node dropped
                    // the request".)
                    let me = self.clone();
                    tokio::task::spawn_blocking(move || {
                        let _ = reply.send(me.on_request(kind, &body));
                    });
                }
                Inbound::Gossip { topic, body, .. } => self.on_gossip(topic, &body).await,
            }
        }
    }

    fn on_raft(&self, from: [u8; 32], body: &[u8]) {
        let msg: PeerMsg = match sphr_types::decode(body, self.max_raft_bytes + 1024) {
            Ok(m) => m,
            Err(_) => return self.drop_msg("undecodable_peer_msg"),
        };
        let Some(orderer) = &self.orderer else {
            return self.drop_msg("not_a_consenter");
        };
        match msg {
            PeerMsg::Raft(bytes) => {
                let Some(sender_id) = self.raft_id_of(&from) else {
                    return self.drop_msg("sender_not_a_consenter");
                };
                let m = match sphr_orderer::decode_message(&bytes, self.max_raft_bytes) {
                    Ok(m) => m,
                    Err(_) => return self.drop_msg("undecodable_raft"),
                };
                if m.from != sender_id {
                    return self.drop_msg("raft_sender_mismatch");
                }
                if orderer.step(m).is_err() {
                    self.drop_msg("orderer_busy");
                }
            }
            // Any genesis node may hand transactions to a consenter (the p2p layer admits
            // only genesis nodes); the committers validate every one of them.
            PeerMsg::Txs(txs) => {
                let txs: Vec<Vec<u8>> = txs.into_iter().map(|t| t.into_vec()).collect();
                if orderer.submit_batch(txs).is_err() {
                    self.drop_msg("orderer_busy");
                }
            }
        }
    }

    fn on_request(&self, kind: Kind, body: &[u8]) -> Result<Vec<u8>, String> {
        match kind {
            Kind::Endorse => self.on_endorse(body),
            Kind::Blocks => {
                let range: BlockRange = sphr_types::decode(body, 1024).map_err(|e| {
                    self.drop_msg("undecodable_block_range");
                    e.to_string()
                })?;
                let height = self.blocks.height();
                if range.from > range.to || range.from > height {
                    self.drop_msg("absurd_block_range");
                    return Err(format!(
                        "no blocks {}..={} here: height is {height}",
                        range.from, range.to
                    ));
                }
                let to = range
                    .to
                    .min(height)
                    .min(range.from.saturating_add(MAX_BLOCKS_PER_REQUEST - 1));
                let mut blocks = Vec::new();
                let mut bytes = 0usize;
                for n in range.from..=to {
                    let Some(rec) = self.blocks.block(n)? else {
                        break;
                    };
                    let b = rec.to_bytes().map_err(|e| e.to_string())?;
                    if !blocks.is_empty() && bytes + b.len() > MAX_BLOCKS_BYTES {
                        break;
                    }
                    bytes += b.len();
                    blocks.push(ByteBuf::from(b));
                }
                sphr_types::encode(&BlockBatch { blocks, height }).map_err(|e| e.to_string())
            }
            Kind::Raft => Err("raft messages are not requests".into()),
        }
    }

    /// Endorses each proposal of a request, on at least the gateway's state (this runs on a
    /// blocking thread), with one signature for all. A proposal that does not decode or is
    /// refused gets its own `Refused`; once the answer nears the message limit the rest get
    /// `Retry`.
    fn on_endorse(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let req: EndorseRequest =
            sphr_types::decode(body, self.max_raft_bytes + 1024).map_err(|e| {
                self.drop_msg("undecodable_proposal");
                e.to_string()
            })?;
        if req.proposals.len() > MAX_ENDORSE_BATCH {
            self.drop_msg("oversized_endorse_batch");
            return Err(format!(
                "{} proposals in one endorse request; at most {MAX_ENDORSE_BATCH}",
                req.proposals.len()
            ));
        }
        let deadline = std::time::Instant::now() + ENDORSE_CATCH_UP;
        while self.blocks.height() < req.min_height && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let proposals: Vec<Result<SignedProposal, String>> = req
            .proposals
            .iter()
            .map(|raw| {
                SignedProposal::from_bytes(raw).map_err(|e| {
                    self.drop_msg("undecodable_proposal");
                    e.to_string()
                })
            })
            .collect();
        // One signature for the whole request (see `Endorser::endorse_many`).
        let endorsed = self
            .endorser
            .endorse_many(self.state.as_ref(), &proposals, crate::now_ms());
        // Room for the answer's framing, and for one result's own.
        let budget = self.max_raft_bytes.saturating_sub(1024);
        let mut used = 16usize;
        let mut results = Vec::with_capacity(endorsed.len());
        for e in endorsed {
            let result = match e.map_err(|e| e.to_string()).and_then(|e| {
                ProposalResponse {
                    response: e.payload_bytes,
                    endorsement: e.endorsement,
                }
                .to_bytes()
                .map_err(|e| e.to_string())
            }) {
                Ok(b) => EndorseResult::Endorsed(ByteBuf::from(b)),
                Err(why) => EndorseResult::Refused(why),
            };
            let size = 16
                + match &result {
                    EndorseResult::Endorsed(b) => b.len(),
                    EndorseResult::Refused(why) => why.len(),
                    EndorseResult::Retry => 0,
                };
            if used + size > budget {
                used = budget + 1;
                results.push(EndorseResult::Retry);
            } else {
                used += size;
                results.push(result);
            }
        }
        sphr_types::encode(&EndorseAnswer { results }).map_err(|e| e.to_string())
    }

    async fn on_gossip(&self, topic: Topic, body: &[u8]) {
        match topic {
            Topic::Blocks => {
                let Some(tx) = &self.gossip_blocks else {
                    return;
                };
                match BlockRecord::from_bytes(body) {
                    Ok(rec) if body.len() <= MAX_BLOCK_BYTES => {
                        if tx.try_send(rec).is_err() {
                            self.drop_msg("sync_busy");
                        }
                    }
                    _ => self.drop_msg("undecodable_block"),
                }
            }
            Topic::Txs => self.drop_msg("unexpected_tx_gossip"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn job(len: usize) -> EndorseJob {
        let (reply, _) = oneshot::channel();
        EndorseJob {
            proposal: ByteBuf::from(vec![7u8; len]),
            min_height: 0,
            reply,
        }
    }

    #[test]
    fn requests_are_paced_only_under_steady_load() {
        let ms = Duration::from_millis;
        let origin = Instant::now();
        let ticks = Ticks::from_origin(origin);
        let interval = ms(20);
        let now = origin + ms(105);
        // The first request to a peer, and any request with pacing off, leave at once.
        assert_eq!(pace_until(None, interval, now, ticks), None);
        assert_eq!(pace_until(Some(now), Duration::ZERO, now, ticks), None);
        // Light load: a tick (100 ms) has passed since the previous request.
        assert_eq!(
            pace_until(Some(origin + ms(80)), interval, now, ticks),
            None
        );
        assert_eq!(
            pace_until(Some(origin + ms(99)), interval, now, ticks),
            None
        );
        // Steady load: wait for the next tick after the previous request, never longer
        // than an interval after it.
        let on_tick = origin + ms(100);
        assert_eq!(
            pace_until(Some(on_tick), interval, now, ticks),
            Some(origin + ms(120))
        );
        // A request that left late (the runtime was busy) keeps to the grid.
        assert_eq!(
            pace_until(Some(origin + ms(101)), interval, now, ticks),
            Some(origin + ms(120))
        );
        assert_eq!(
            pace_until(Some(now), interval, now, ticks),
            Some(origin + ms(120))
        );
    }

    #[test]
    fn every_batcher_of_a_node_leaves_on_the_same_ticks() {
        let ms = Duration::from_millis;
        let origin = Instant::now();
        let ticks = Ticks::from_origin(origin);
        let interval = ms(20);
        // Two peers whose previous requests left at different times within one interval:
        // their next requests leave together.
        let now = origin + ms(47);
        let a = pace_until(Some(origin + ms(41)), interval, now, ticks);
        let b = pace_until(Some(origin + ms(46)), interval, now, ticks);
        assert_eq!(a, Some(origin + ms(60)));
        assert_eq!(a, b);
        // One that waited for nothing (light load) leaves the next on the grid as well.
        let c = pace_until(Some(origin + ms(52)), interval, now + ms(6), ticks);
        assert_eq!(c, a);
    }

    #[test]
    fn the_interval_follows_the_round_trip_within_its_bounds() {
        let ms = Duration::from_millis;
        let pacer = Pacer::new(
            Pacing {
                min: ms(20),
                max: ms(100),
            },
            Ticks::from_origin(Instant::now()),
        );
        // Before any answer, and while the peer answers fast: the least interval.
        assert_eq!(pacer.interval(), ms(20));
        pacer.observe(Duration::from_micros(800));
        assert_eq!(pacer.interval(), ms(20));
        // A slower peer: 16 round trips.
        let pacer = Pacer::new(
            Pacing {
                min: ms(20),
                max: ms(100),
            },
            Ticks::from_origin(Instant::now()),
        );
        pacer.observe(ms(3));
        assert_eq!(pacer.interval(), ms(48));
        // A quarter of the weight goes to each new answer: 3 ms then 7 ms average to 4 ms.
        pacer.observe(ms(7));
        assert_eq!(pacer.interval(), ms(64));
        // A busy peer (or one that times out): never past the most.
        pacer.observe(Duration::from_secs(10));
        assert_eq!(pacer.interval(), ms(100));
        // Fast answers bring it back down.
        for _ in 0..64 {
            pacer.observe(Duration::from_micros(500));
        }
        assert_eq!(pacer.interval(), ms(20));
    }

    #[test]
    fn pacing_off_or_fixed_ignores_the_round_trip() {
        let ms = Duration::from_millis;
        let off = Pacer::new(
            Pacing {
                min: Duration::ZERO,
                max: ms(100),
            },
            Ticks::from_origin(Instant::now()),
        );
        off.observe(ms(50));
        assert_eq!(off.interval(), Duration::ZERO);
        // A most at or below the least fixes the interval at the least.
        let fixed = Pacer::new(
            Pacing {
                min: ms(200),
                max: ms(100),
            },
            Ticks::from_origin(Instant::now()),
        );
        fixed.observe(ms(50));
        assert_eq!(fixed.interval(), ms(200));
        fixed.observe(Duration::from_micros(10));
        assert_eq!(fixed.interval(), ms(200));
    }

    #[test]
    fn a_batch_keeps_to_its_count_and_byte_budget() {
        // The first proposal goes even when it alone is over the budget.
        let big = Batch::new(job(500), 100);
        assert_eq!(big.jobs.len(), 1);

        let mut b = Batch::new(job(40), 100);
        assert!(b.push(job(40)).is_none());
        // A third would take the batch to 120 bytes: it is given back, to start the next.
        let back = b.push(job(40)).expect("over the budget");
        assert_eq!(back.proposal.len(), 40);
        assert_eq!((b.jobs.len(), b.bytes), (2, 80));
        assert!(b.push(job(20)).is_none());
        assert_eq!((b.jobs.len(), b.bytes), (3, 100));

        let mut full = Batch::new(job(1), usize::MAX);
        while !full.is_full() {
            assert!(full.push(job(1)).is_none());
        }
        assert_eq!(full.jobs.len(), MAX_ENDORSE_BATCH);
    }
}
