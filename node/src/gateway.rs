//! The gateway: what the node does with a client's signed proposal, on the client's behalf.
//!
//! ```text
//!  submit(sp, wait)
//!    │ already committed? ──> AlreadyCommitted (409)
//!    │ endorse locally (and, with peers, at the orgs the policy names)
//!    │ build Transaction { sp, response bytes, endorsements }
//!    │ register a waiter (bounded), hand the tx to the orderer (bounded queue: Full -> 503)
//!    v
//!  wait for the CommitNotifier (fed by the applier on the orderer thread) or time out (504)
//! ```
//!
//! The answer `COMMITTED` is given only after the block holding the tx was written and
//! flushed: an acknowledged transaction survives `kill -9`.
//!
//! On shutdown, [`Gateway::stop_accepting`] makes new submissions fail with
//! [`GatewayError::Stopped`] (503 `stopping`) and ends commit event streams, while
//! submissions already handed to the orderer still get their answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sphr_crypto::hash::Hash32;
use sphr_orderer::{OrdererHandle, SubmitError};
use sphr_types::{Policy, ProposalResponse, SignedProposal, Transaction, ValidationCode};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::api::model::CommitEvent;
use crate::endorser::{EndorseError, Endorser, StateSource};
use crate::metrics::Metrics;

/// Why a submission or query failed. Each variant maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The proposal was not endorsed.
    #[error(transparent)]
    Endorse(#[from] EndorseError),
    /// The tx id is already in the ledger (a replay): 409.
    #[error("transaction {tx_id} is already committed in block {block}")]
    AlreadyCommitted { tx_id: Hash32, block: u64 },
    /// The same tx id is being processed: 409.
    #[error("transaction {0} is already being processed")]
    InFlight(Hash32),
    /// Too many submissions are waiting for their commit, or the ordering queue is full: 503.
    #[error("node is busy: {0}; retry later")]
    Busy(String),
    /// The policy needs orgs that did not endorse (unreachable, refused, timed out): 503.
    #[error("endorsement policy {policy} is not met: {}", missing.join("; "))]
    PolicyUnreachable {
        policy: Policy,
        missing: Vec<String>,
    },
    /// Another org's endorser computed a different result (its state differs, e.g. it is
    /// behind): 409, retry.
    #[error("the endorsement of {org} does not match this node's result ({why}); retry")]
    EndorsementMismatch { org: String, why: String },
    /// The function changes state and cannot be evaluated as a query: 400.
    #[error("{contract}.{function} is not a query function: submit it as a transaction")]
    NotAQuery { contract: String, function: String },
    /// The node is shutting down: 503.
    #[error("node is shutting down")]
    Stopped,
    /// The commit did not happen within the timeout: 504. The tx may still commit.
    #[error(
        "transaction {0} was ordered but not committed within the timeout; query its status later"
    )]
    Timeout(Hash32),
    /// The ledger could not be read: 503.
    #[error("ledger unavailable: {0}")]
    Ledger(String),
}

/// How long the gateway waits for a commit before it hands the transaction to the orderer
/// again (forwarding to the leader is best effort; see `order_and_wait`). Well above the
/// commit latency of a saturated network (p99 under 2 s in BENCHMARKS.md).
const RESUBMIT_AFTER: Duration = Duration::from_secs(5);

/// At most this many resubmissions of one transaction while its client waits.
const MAX_RESUBMITS: u32 = 3;

/// How many times a submission is simulated when another org's result differs.
const MAX_ENDORSE_ATTEMPTS: u64 = 4;

/// Where and how a transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxCommitted {
    /// Block number.
    pub block: u64,
    /// Position in the block.
    pub position: u32,
    /// Validation code.
    pub code: ValidationCode,
}

/// The result of a submission.
#[derive(Debug, Clone)]
pub struct SubmitOutcome {
    /// Tx id.
    pub tx_id: Hash32,
    /// The contract's response (from simulation).
    pub response: Vec<u8>,
    /// Set when the caller waited for the commit.
    pub committed: Option<TxCommitted>,
}

/// Tells waiting submitters and event subscribers about commits.
pub struct CommitNotifier {
    waiters: Mutex<HashMap<Hash32, oneshot::Sender<TxCommitted>>>,
    max_waiting: usize,
    events: broadcast::Sender<CommitEvent>,
}

impl CommitNotifier {
    /// A notifier with room for `max_waiting` waiters and `event_buffer` buffered events per
    /// subscriber (a slower subscriber misses events and is told so).
    pub fn new(max_waiting: usize, event_buffer: usize) -> Self {
        let (events, _) = broadcast::channel(event_buffer.max(1));
        CommitNotifier {
            waiters: Mutex::new(HashMap::new()),
            max_waiting,
            events,
        }
    }

    fn register(&self, tx_id: Hash32) -> Result<oneshot::Receiver<TxCommitted>, GatewayError> {
        let mut w = self
            .waiters
            .lock()
            .map_err(|_| GatewayError::Busy("waiter table poisoned".into()))?;
        if w.contains_key(&tx_id) {
            return Err(GatewayError::InFlight(tx_id));
        }
        if w.len() >= self.max_waiting {
            return Err(GatewayError::Busy(format!(
                "{} submissions already wait for their commit",
                w.len()
            )));
        }
        let (tx, rx) = oneshot::channel();
        w.insert(tx_id, tx);
        Ok(rx)
    }

    fn cancel(&self, tx_id: &Hash32) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(tx_id);
        }
    }

    /// Called by the applier after a block is durably committed.
    pub fn notify(&self, block: u64, txs: &[(Hash32, u32, ValidationCode, String, Vec<String>)]) {
        if let Ok(mut w) = self.waiters.lock() {
            for (tx_id, position, code, _, _) in txs {
                if let Some(s) = w.remove(tx_id) {
                    let _ = s.send(TxCommitted {
                        block,
                        position: *position,
                        code: *code,
                    });
                }
            }
        }
        if self.events.receiver_count() > 0 {
            for (tx_id, position, code, contract, events) in txs {
                let _ = self.events.send(CommitEvent {
                    tx_id: tx_id.to_hex(),
                    block,
                    position: *position,
                    code: code.as_str().to_string(),
                    contract: contract.clone(),
                    events: events.clone(),
                });
            }
        }
    }

    /// A new subscription to commit events.
    pub fn subscribe(&self) -> broadcast::Receiver<CommitEvent> {
        self.events.subscribe()
    }

    /// How many submissions wait for their commit.
    pub fn waiting(&self) -> usize {
        self.waiters.lock().map(|w| w.len()).unwrap_or(0)
    }
}

/// Where the gateway hands transactions to be ordered: the local orderer on a consenter, or a
/// consenter over the network on other nodes.
pub trait TxSink: Send + Sync {
    /// Queues a transaction for ordering, without waiting.
    fn submit(&self, tx: Vec<u8>) -> Result<(), SubmitError>;
}

impl TxSink for OrdererHandle {
    fn submit(&self, tx: Vec<u8>) -> Result<(), SubmitError> {
        OrdererHandle::submit(self, tx)
    }
}

/// Looks up whether a tx id is committed.
pub trait TxLookup: Send + Sync {
    /// The block of a committed tx id, if any.
    fn committed_block(&self, tx_id: &Hash32) -> Result<Option<u64>, String>;
    /// The ledger height.
    fn height(&self) -> u64;
}

/// Endorses, orders and waits, for clients.
pub struct Gateway {
    endorser: Arc<Endorser>,
    state: Arc<dyn StateSource>,
    lookup: Arc<dyn TxLookup>,
    orderer: Arc<dyn TxSink>,
    notifier: Arc<CommitNotifier>,
    local_org: String,
    commit_timeout: Duration,
    peers: Option<crate::p2p::Peers>,
    endorse_timeout: Duration,
    metrics: Metrics,
    accepting: AtomicBool,
    stopping: watch::Sender<bool>,
    /// Signs this node's endorsements of its own submissions in paced batches, when other
    /// orgs endorse too (started on first use).
    local_signer: OnceLock<mpsc::Sender<SignJob>>,
}

/// Most of this node's own endorsements waiting to be signed; past it they are signed alone.
const LOCAL_SIGN_QUEUE: usize = 4096;

/// One of this node's own endorsements to sign.
struct SignJob {
    payload: Vec<u8>,
    reply: oneshot::Sender<sphr_types::Endorsement>,
}

/// This node's own endorsements to sign together: up to 64, whatever their size.
struct SignBatch(Vec<SignJob>);

impl crate::p2p::Gathering<SignJob> for SignBatch {
    fn is_full(&self) -> bool {
        self.0.len() >= crate::p2p::MAX_ENDORSE_BATCH
    }

    fn push(&mut self, job: SignJob) -> Option<SignJob> {
        self.0.push(job);
        None
    }
}

/// Signs the payloads of this node's own submissions in batches, paced like the endorse
/// requests to peers (see `crate::p2p`): under steady load at most one signature per
/// `interval`, over the batch tree of what waited (up to 64 payloads). A submission that
/// needs other orgs waits for their endorsements anyway, and those requests are paced by the
/// same interval, so the wait here hides behind theirs; what it saves is a signature per
/// submission here and, at every other node's commit, a signature check per submission.
async fn run_local_signer(
    endorser: Arc<Endorser>,
    mut rx: mpsc::Receiver<SignJob>,
    interval: Duration,
    ticks: crate::p2p::Ticks,
) {
    let mut last: Option<tokio::time::Instant> = None;
    while let Some(first) = rx.recv().await {
        let mut jobs = SignBatch(vec![first]);
        // Every job fits (no byte budget), so nothing is carried over.
        let _ = crate::p2p::gather(&mut jobs, &mut rx, last, interval, ticks).await;
        last = Some(tokio::time::Instant::now());
        let mut jobs = jobs.0;
        // Submissions that gave up need no signature.
        jobs.retain(|j| !j.reply.is_closed());
        let payloads: Vec<&[u8]> = jobs.iter().map(|j| j.payload.as_slice()).collect();
        let endorsements = endorser.sign_many(&payloads);
        for (job, e) in jobs.into_iter().zip(endorsements) {
            let _ = job.reply.send(e);
        }
    }
}

impl Gateway {
    /// A gateway over the node's stages.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        endorser: Arc<Endorser>,
        state: Arc<dyn StateSource>,
        lookup: Arc<dyn TxLookup>,
        orderer: Arc<dyn TxSink>,
        notifier: Arc<CommitNotifier>,
        local_org: String,
        commit_timeout: Duration,
        peers: Option<crate::p2p::Peers>,
        metrics: Metrics,
    ) -> Self {
        Gateway {
            endorser,
            state,
            lookup,
            orderer,
            notifier,
            local_org,
            commit_timeout,
            peers,
            endorse_timeout: Duration::from_secs(10),
            metrics,
            accepting: AtomicBool::new(true),
            stopping: watch::Sender::new(false),
            local_signer: OnceLock::new(),
        }
    }

    /// This node's endorsement of `payload`: from the paced local signer when other orgs
    /// must endorse too (and so the wait hides behind theirs), signed at once otherwise.
    async fn sign_local(&self, payload: &[u8], batched: bool) -> sphr_types::Endorsement {
        let Some(peers) = self.peers.as_ref() else {
            return self.endorser.sign_alone(payload);
        };
        let interval = peers.batch_interval();
        if !batched || interval.is_zero() {
            return self.endorser.sign_alone(payload);
        }
        let queue = self.local_signer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(LOCAL_SIGN_QUEUE);
            let ticks = peers.ticks();
            tokio::spawn(run_local_signer(self.endorser.clone(), rx, interval, ticks));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let job = SignJob {
            payload: payload.to_vec(),
            reply,
        };
        // A full queue (or a signer gone with the runtime) signs alone: never fails, never
        // blocks.
        if queue.try_send(job).is_ok()
            && let Ok(e) = answer.await
        {
            return e;
        }
        self.endorser.sign_alone(payload)
    }

    /// Refuses new submissions and broadcasts from now on (503 `stopping`) and ends the
    /// commit event streams. Submissions already accepted go on.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
        self.stopping.send_replace(true);
    }

    /// Turns true when [`Gateway::stop_accepting`] is called (for long-lived streams).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    fn check_accepting(&self) -> Result<(), GatewayError> {
        if self.accepting.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(GatewayError::Stopped)
        }
    }

    /// The notifier (for event streams).
    pub fn notifier(&self) -> &Arc<CommitNotifier> {
        &self.notifier
    }

    /// The ledger height (number of the last committed block).
    pub fn height(&self) -> u64 {
        self.lookup.height()
    }

    /// The endorser.
    pub fn endorser(&self) -> &Arc<Endorser> {
        &self.endorser
    }

    /// Endorses `sp`, orders it, and (with `wait`) waits for its commit.
    pub async fn submit(
        &self,
        sp: SignedProposal,
        wait: bool,
    ) -> Result<SubmitOutcome, GatewayError> {
        self.check_accepting()?;
        let started = Instant::now();
        let now = crate::now_ms();
        let proposal = self.endorser.check(&sp, now)?;
        let tx_id = proposal.tx_id();
        if let Some(block) = self
            .lookup
            .committed_block(&tx_id)
            .map_err(GatewayError::Ledger)?
        {
            return Err(GatewayError::AlreadyCommitted { tx_id, block });
        }
        let genesis = self.endorser.genesis();
        let policy = genesis
            .policy(&proposal.contract)
            .cloned()
            .ok_or_else(|| EndorseError::UnknownContract(proposal.contract.clone()))?;
        let orgs = genesis.org_names();
        let contract = proposal.contract.clone();
        // Another org's node may be a block ahead of this one and simulate on newer state:
        // then simulate again once this node has caught up (a few times at most).
        let mut attempt = 0;
        let (endorsed, endorsements) = loop {
            attempt += 1;
            let height = self.lookup.height();
            let unsigned =
                self.endorser
                    .simulate_unsigned(self.state.as_ref(), &sp, proposal.clone());
            self.endorser.observe(&contract, started, unsigned.is_ok());
            let unsigned = unsigned?;
            let local_only = policy.is_satisfied(&orgs, [self.local_org.as_str()]);
            let payload = &unsigned.payload_bytes;
            // This node's signature and the other orgs' endorsements at the same time.
            let (local, remote) = tokio::join!(
                self.sign_local(payload, !local_only),
                self.collect_endorsements(&policy, &orgs, &sp, payload, height)
            );
            match remote {
                Ok(remote) => {
                    let mut all = Vec::with_capacity(remote.len() + 1);
                    all.push(local.clone());
                    all.extend(remote);
                    break (unsigned.signed(local), all);
                }
                Err(GatewayError::EndorsementMismatch { .. }) if attempt < MAX_ENDORSE_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let tx = Transaction {
            signed_proposal: sp,
            response: endorsed.payload_bytes,
            endorsements,
        };
        let bytes = tx
            .to_bytes()
            .map_err(|e| GatewayError::Endorse(EndorseError::Malformed(e.to_string())))?;
        let endorsed_at = Instant::now();
        let committed = self.order_and_wait(tx_id, bytes, wait).await?;
        if committed.is_some() {
            let m = &self.metrics;
            m.gateway_submit_duration_seconds
                .observe(started.elapsed().as_secs_f64());
            m.gateway_phase_duration_seconds
                .with_label_values(&["endorse"])
                .observe(endorsed_at.duration_since(started).as_secs_f64());
            m.gateway_phase_duration_seconds
                .with_label_values(&["order"])
                .observe(endorsed_at.elapsed().as_secs_f64());
        }
        Ok(SubmitOutcome {
            tx_id,
            response: endorsed.payload.response,
            committed,
        })
    }

    /// The endorsements of other orgs the policy needs besides this node's (which the caller
    /// adds), asked in parallel; stops asking once the policy is met.
    async fn collect_endorsements(
        &self,
        policy: &Policy,
        orgs: &[String],
        sp: &SignedProposal,
        payload: &[u8],
        height: u64,
    ) -> Result<Vec<sphr_types::Endorsement>, GatewayError> {
        let mut endorsements = Vec::new();
        let mut have = vec![self.local_org.clone()];
        if policy.is_satisfied(orgs, have.iter().map(String::as_str)) {
            return Ok(endorsements);
        }
        let candidates: Vec<String> = match policy {
            Policy::All | Policy::Majority | Policy::Any => orgs.to_vec(),
            Policy::And(o) | Policy::OutOf(_, o) => o.clone(),
        };
        let remote: Vec<String> = candidates
            .into_iter()
            .filter(|o| *o != self.local_org)
            .collect();
        let Some(peers) = &self.peers else {
            return Err(GatewayError::PolicyUnreachable {
                policy: policy.clone(),
                missing: remote
                    .iter()
                    .map(|o| format!("{o}: this node has no peer connections"))
                    .collect(),
            });
        };
        let mut asks = JoinSet::new();
        for org in remote {
            let peers = peers.clone();
            let sp = sp.clone();
            let timeout = self.endorse_timeout;
            asks.spawn(async move {
                let r = peers.endorse_at(&org, &sp, height, timeout).await;
                (org, r)
            });
        }
        let mut failures = Vec::new();
        // Answers whose signatures are not checked yet: checked together (one batch) as soon
        // as they would meet the policy, or when no more answers come.
        let mut unchecked: Vec<(String, sphr_types::Endorsement)> = Vec::new();
        let sigs = self.endorser.verified_signatures();
        loop {
            let joined = asks.join_next().await;
            let finished = joined.is_none();
            if let Some(Ok((org, result))) = joined {
                match result {
                    Ok(pr) => {
                        if pr.response != payload {
                            asks.abort_all();
                            return Err(GatewayError::EndorsementMismatch {
                                org,
                                why: "different read set, write set or response".into(),
                            });
                        }
                        if pr.endorsement.endorser.body.org != org {
                            failures.push(format!("{org}: answered with a bad endorsement"));
                        } else {
                            unchecked.push((org, pr.endorsement));
                        }
                    }
                    Err(e) => failures.push(e),
                }
            }
            let would_satisfy = policy.is_satisfied(
                orgs,
                have.iter()
                    .map(String::as_str)
                    .chain(unchecked.iter().map(|(o, _)| o.as_str())),
            );
            if !unchecked.is_empty() && (would_satisfy || finished) {
                let mut shared = sphr_types::EndorsedPayload::new(payload);
                let msgs: Vec<_> = unchecked
                    .iter()
                    .map(|(_, e)| e.signed_message_of(&mut shared))
                    .collect();
                let items: Vec<_> = unchecked
                    .iter()
                    .zip(&msgs)
                    .map(|((_, e), m)| (m.as_ref(), &e.signature, &e.endorser.body.public_key))
                    .collect();
                let verdicts = sigs.verify_many(&items);
                for ((org, e), ok) in unchecked.drain(..).zip(verdicts) {
                    if ok {
                        endorsements.push(e);
                        have.push(org);
                    } else {
                        failures.push(format!("{org}: answered with a bad endorsement"));
                    }
                }
                if policy.is_satisfied(orgs, have.iter().map(String::as_str)) {
                    asks.abort_all();
                    return Ok(endorsements);
                }
            }
            if finished {
                break;
            }
        }
        Err(GatewayError::PolicyUnreachable {
            policy: policy.clone(),
            missing: failures,
        })
    }

    /// Endorses `sp` at this node only and returns the signed response (Fabric Gateway's
    /// `Endorse`), for clients that assemble transactions themselves.
    pub fn endorse(&self, sp: &SignedProposal) -> Result<ProposalResponse, GatewayError> {
        let e = self
            .endorser
            .endorse(self.state.as_ref(), sp, crate::now_ms())?;
        Ok(ProposalResponse {
            response: e.payload_bytes,
            endorsement: e.endorsement,
        })
    }

    /// Orders a transaction the client assembled (Fabric's `Broadcast`). The creator, network
    /// and signature are checked here; endorsements and policy are checked by every committer,
    /// so a transaction that fails them commits with its validation code and changes nothing.
    pub async fn broadcast(
        &self,
        tx: Transaction,
        wait: bool,
    ) -> Result<SubmitOutcome, GatewayError> {
        self.check_accepting()?;
        let proposal = self.endorser.check(&tx.signed_proposal, crate::now_ms())?;
        let tx_id = proposal.tx_id();
        if let Some(block) = self
            .lookup
            .committed_block(&tx_id)
            .map_err(GatewayError::Ledger)?
        {
            return Err(GatewayError::AlreadyCommitted { tx_id, block });
        }
        let response = tx
            .decode_response()
            .map(|p| p.response)
            .map_err(|e| GatewayError::Endorse(EndorseError::Malformed(e.to_string())))?;
        let bytes = tx
            .to_bytes()
            .map_err(|e| GatewayError::Endorse(EndorseError::Malformed(e.to_string())))?;
        let committed = self.order_and_wait(tx_id, bytes, wait).await?;
        Ok(SubmitOutcome {
            tx_id,
            response,
            committed,
        })
    }

    async fn order_and_wait(
        &self,
        tx_id: Hash32,
        bytes: Vec<u8>,
        wait: bool,
    ) -> Result<Option<TxCommitted>, GatewayError> {
        let waiter = if wait {
            Some(self.notifier.register(tx_id)?)
        } else {
            None
        };
        // Kept for resubmission while waiting (see below); the no-wait path needs no copy.
        let copy = if wait { Some(bytes.clone()) } else { None };
        if let Err(e) = self.orderer.submit(bytes) {
            self.notifier.cancel(&tx_id);
            return Err(match e {
                SubmitError::Full => GatewayError::Busy("the ordering queue is full".into()),
                SubmitError::TooLarge { len, max } => {
                    GatewayError::Endorse(EndorseError::Malformed(format!(
                        "transaction of {len} bytes is over the block limit of {max}"
                    )))
                }
                SubmitError::Stopped => GatewayError::Stopped,
            });
        }
        let (Some(mut rx), Some(copy)) = (waiter, copy) else {
            return Ok(None);
        };
        // Transactions a follower forwards to the leader are best effort (sphr_orderer's
        // `Transport`): a leader that dies or steps down loses what it had not proposed. So a
        // transaction not committed after RESUBMIT_AFTER is handed to the orderer again (at
        // most MAX_RESUBMITS times). That is safe: a second copy that also gets ordered commits
        // as DUPLICATE_TXID and changes nothing; the tx index and this waiter keep the first.
        let deadline = tokio::time::Instant::now() + self.commit_timeout;
        let mut resubmits = 0;
        loop {
            let next = (tokio::time::Instant::now() + RESUBMIT_AFTER).min(deadline);
            match tokio::time::timeout_at(next, &mut rx).await {
                Ok(Ok(c)) => return Ok(Some(c)),
                Ok(Err(_)) => return Err(GatewayError::Stopped),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    self.notifier.cancel(&tx_id);
                    return Err(GatewayError::Timeout(tx_id));
                }
                Err(_) => {
                    let committed = matches!(self.lookup.committed_block(&tx_id), Ok(Some(_)));
                    if !committed && resubmits < MAX_RESUBMITS {
                        resubmits += 1;
                        tracing::debug!(target: "sphr::gateway", tx = %tx_id, attempt = resubmits,
                            "not committed yet: handed to the orderer again");
                        // Full or stopped: the next round (or the timeout) deals with it.
                        let _ = self.orderer.submit(copy.clone());
                    }
                }
            }
        }
    }

    /// Evaluates query `function` of `contract` on committed state as the holder of `creator`,
    /// a certificate already authenticated by a signed request ([`crate::signed_request`]).
    pub fn query_as(
        &self,
        creator: &sphr_crypto::cert::Certificate,
        contract: &str,
        function: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, GatewayError> {
        Ok(self.endorser.evaluate_as(
            self.state.as_ref(),
            creator,
            contract,
            function,
            args,
            crate::now_ms(),
        )?)
    }

    /// Evaluates `sp` on committed state without ordering it; returns the response. Only the
    /// contract's query functions may be evaluated: a function that changes state (or that
    /// must be recorded, such as a counted fetch) has to be submitted.
    pub fn query(&self, sp: &SignedProposal) -> Result<Vec<u8>, GatewayError> {
        let p = self.endorser.check(sp, crate::now_ms())?;
        if !self.endorser.is_query(&p.contract, &p.function) {
            return Err(GatewayError::NotAQuery {
                contract: p.contract,
                function: p.function,
            });
        }
        let e = self
            .endorser
            .endorse(self.state.as_ref(), sp, crate::now_ms())?;
        Ok(e.payload.response)
    }
}
