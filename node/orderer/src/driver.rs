//! The Raft driver: one OS thread owning a [`raft::RawNode`], fed through one bounded queue.
//!
//! ```text
//!  OrdererHandle::submit/submit_batch/step/shutdown
//!        │ try_send (Full / Stopped, never blocks)
//!        v
//!  ┌── bounded sync_channel<Input> ──┐
//!  │                                 v
//!  │  loop {                                                           driver thread
//!  │    recv_timeout(until next tick / batch timeout), then drain the queue (bounded)
//!  │      Tx   ─ leader ──> BlockCutter ──batch──> waiting batches
//!  │           ─ follower > forward buffer ──(leader known)──> Transport::forward_txs
//!  │      Step ─ checked (to == me, from a voter, no proposals) ──> RawNode::step
//!  │    tick when due
//!  │    leader: while in-flight proposals < max: BatchSealer::seal ──> RawNode::propose
//!  │    while has_ready:  Ready ──┐
//!  │      1. send leader messages (may precede the disk write: raft thesis 10.2.1)
//!  │      2. storage: apply snapshot, append entries + hard state (one sled transaction)
//!  │      3. flush (fsync) ── nothing below happens before the write is durable
//!  │      4. restore the snapshot on the apply thread, and wait (if the Ready had one)
//!  │      5. send persisted messages (votes, append responses)
//!  │      6. committed entries ─> apply thread (queued; apply.rs)
//!  │      7. advance ─> LightReady: store commit (+flush), send, queue, advance_apply
//!  │    every snapshot_interval queued: ask the apply thread for Applier::snapshot_data;
//!  │      when it is back (a later turn): snapshot + compact
//!  │    publish RaftStatus
//!  │  }
//!  └─────────────────────────────────
//! ```
//!
//! A storage or apply error, a broken applier contract or a panic inside raft-rs stops the
//! thread; `RaftStatus::healthy` turns false with the reason. Nothing panics out of it.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use raft::eraftpb::{Entry, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use serde::Serialize;

use crate::api::{Applier, ApplyError, BatchSealer, Transport};
use crate::apply::{ApplyFailure, ApplyState, ApplyThread};
use crate::config::{ConfigError, OrdererConfig};
use crate::cutter::{Batch, BlockCutter, CutterLimits};
use crate::logging::raft_logger;
use crate::storage::{SledRaftStorage, StoreError};

/// Readies handled per loop turn before going back to the queue (each is usually one).
const MAX_READY_ROUNDS: usize = 16;

/// Message types a peer never legitimately sends to this orderer: entries are proposed only
/// by the local leader (no proposal forwarding), and leadership transfer and read-index are
/// not used. Refusing them keeps a peer from injecting entries or moving leadership.
const REFUSED_FROM_PEERS: [MessageType; 4] = [
    MessageType::MsgPropose,
    MessageType::MsgTransferLeader,
    MessageType::MsgTimeoutNow,
    MessageType::MsgReadIndex,
];

/// `submit`, `submit_batch` or `step` was refused.
///
/// What follows: nothing was queued. `Full`: retry later or tell the client to slow down
/// (Raft messages: drop, raft retries). `Stopped`: the orderer is gone. `TooLarge`: reject
/// the transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The input queue or the pending-transaction bound is full.
    #[error("orderer queue full")]
    Full,
    /// The orderer has shut down or stopped on a fatal error.
    #[error("orderer stopped")]
    Stopped,
    /// A transaction is larger than `max_bytes`, the batch limit.
    #[error("transaction of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// The orderer could not start.
///
/// What follows: the node does not start; the message says which part to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Raft storage could not be read or bootstrapped.
    #[error("raft storage: {0}")]
    Store(#[from] StoreError),
    /// The applier failed to replay the stored snapshot.
    #[error("applier: {0}")]
    Apply(#[from] ApplyError),
    /// raft-rs refused the state (its message says why).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// raft-rs panicked while loading the state.
    #[error("raft panicked on start: {0}")]
    RaftPanic(String),
    /// The applier claims entries that the Raft log does not have (the Raft trees were
    /// lost or belong to another node).
    #[error("applier is at index {applied} but the raft log ends at {last}")]
    AppliedAhead {
        /// Applier's index.
        applied: u64,
        /// Last index in the log.
        last: u64,
    },
    /// The applier is behind the compacted part of the log with no snapshot to restore.
    #[error("applier is at index {applied} but the raft log starts after {truncated}")]
    AppliedBehind {
        /// Applier's index.
        applied: u64,
        /// Last compacted index.
        truncated: u64,
    },
    /// The applier did not record the restored snapshot's index.
    #[error("applier reports index {got} after restoring the snapshot at {want}")]
    ApplierContract {
        /// Expected applied index.
        want: u64,
        /// What `applied_index` returned.
        got: u64,
    },
    /// The driver thread or the apply thread could not be spawned.
    #[error("spawn the raft or apply thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why the driver stopped on its own (reported through `RaftStatus::fatal`).
#[derive(Debug, thiserror::Error)]
enum Fatal {
    #[error("raft storage: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Apply(#[from] ApplyFailure),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("raft panicked: {0}")]
    Panic(String),
}

/// A snapshot of the orderer's state, published by the driver after every loop turn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RaftStatus {
    /// This member's Raft id.
    pub id: u64,
    /// The leader this member knows of; 0 when none.
    pub leader_id: u64,
    /// Current Raft term.
    pub term: u64,
    /// Whether this member is the leader.
    pub is_leader: bool,
    /// Highest index known committed.
    pub commit_index: u64,
    /// Highest index applied by the apply thread (an entry applied, a no-op passed over, or
    /// a snapshot restored).
    pub applied_index: u64,
    /// First index still in the log (compaction moves it).
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Index of the latest snapshot (0 when none).
    pub snapshot_index: u64,
    /// Times a (new) leader became known.
    pub leader_changes: u64,
    /// This leader's appended, uncommitted entries.
    pub inflight_proposals: u64,
    /// Transactions accepted and not yet proposed, forwarded or dropped.
    pub pending_txs: u64,
    /// Batches this member proposed as leader.
    pub proposals_total: u64,
    /// Entries handed to `Applier::apply`.
    pub entries_applied_total: u64,
    /// Snapshots handed to `Applier::restore_snapshot`.
    pub snapshots_restored_total: u64,
    /// Snapshots taken locally.
    pub snapshots_taken_total: u64,
    /// Transactions dropped: follower forward buffer full, proposal refused by raft, or an
    /// empty sealed batch.
    pub txs_dropped_total: u64,
    /// Raft messages refused: wrong destination, unknown sender, refused type, or refused by
    /// raft-rs.
    pub msgs_rejected_total: u64,
    /// Whether the driver thread is running.
    pub running: bool,
    /// False once the driver stopped on an error; `fatal` says why.
    pub healthy: bool,
    /// The reason the driver stopped, when it stopped on an error.
    pub fatal: Option<String>,
    /// Whether that error came from the Raft storage (a disk write or read failed): the
    /// node's storage is then failing too, even if the ledger's database still answers.
    pub storage_failed: bool,
}

enum Input {
    Tx(Vec<u8>),
    Txs(Vec<Vec<u8>>),
    Step(Box<Message>),
    Shutdown,
}

struct Shared {
    status: Mutex<RaftStatus>,
    /// Set by `shutdown()` and when the driver exits.
    stopped: AtomicBool,
    /// Transactions accepted by `submit*` and not yet proposed, forwarded or dropped.
    pending_txs: AtomicUsize,
}

impl Shared {
    fn reserve(&self, n: usize, max: usize) -> bool {
        self.pending_txs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                cur.checked_add(n).filter(|&v| v <= max)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        let _ = self
            .pending_txs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(cur.saturating_sub(n))
            });
    }

    fn status(&self) -> std::sync::MutexGuard<'_, RaftStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A cloneable handle on a running orderer. Every method returns at once.
#[derive(Clone)]
pub struct OrdererHandle {
    input: SyncSender<Input>,
    shared: Arc<Shared>,
    apply: Arc<ApplyState>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    max_pending_txs: usize,
    max_tx_bytes: usize,
}

impl std::fmt::Debug for OrdererHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrdererHandle")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl OrdererHandle {
    /// Queues one transaction for ordering (leader: block cutter; follower: forwarded to
    /// the leader). `Ok` means queued, not committed: watch the applier for the outcome.
    pub fn submit(&self, tx: Vec<u8>) -> Result<(), SubmitError> {
        self.check_open()?;
        if tx.len() > self.max_tx_bytes {
            return Err(SubmitError::TooLarge {
                len: tx.len(),
                max: self.max_tx_bytes,
            });
        }
        self.send_txs(1, Input::Tx(tx))
    }

    /// Queues several transactions as one input (for instance those a follower forwarded).
    /// All or nothing.
    pub fn submit_batch(&self, txs: Vec<Vec<u8>>) -> Result<(), SubmitError> {
        self.check_open()?;
        if let Some(big) = txs.iter().find(|t| t.len() > self.max_tx_bytes) {
            return Err(SubmitError::TooLarge {
                len: big.len(),
                max: self.max_tx_bytes,
            });
        }
        if txs.is_empty() {
            return Ok(());
        }
        self.send_txs(txs.len(), Input::Txs(txs))
    }

    /// Hands a Raft message received from a peer to the driver.
    pub fn step(&self, msg: Message) -> Result<(), SubmitError> {
        self.check_open()?;
        match self.input.try_send(Input::Step(Box::new(msg))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }

    /// The latest status published by the driver.
    pub fn status(&self) -> RaftStatus {
        let mut s = self.shared.status().clone();
        s.pending_txs = self.shared.pending_txs.load(Ordering::Acquire) as u64;
        // Live from the apply thread (the rest is as of the driver's last turn).
        s.applied_index = self.apply.applied();
        s.entries_applied_total = self.apply.entries_applied();
        s
    }

    /// Stops the driver (it finishes the `Ready` in hand) and joins its thread. Idempotent;
    /// transactions still pending are dropped.
    pub fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        // If the queue is full the driver is busy and sees the flag at its next turn.
        let _ = self.input.try_send(Input::Shutdown);
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            if h.thread().id() == std::thread::current().id() {
                return; // called from the driver's own callbacks: it will exit by itself
            }
            if h.join().is_err() {
                tracing::error!(target: "sphr::orderer", "raft driver thread panicked");
            }
        }
    }

    fn check_open(&self) -> Result<(), SubmitError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            Err(SubmitError::Stopped)
        } else {
            Ok(())
        }
    }

    fn send_txs(&self, n: usize, input: Input) -> Result<(), SubmitError> {
        if !self.shared.reserve(n, self.max_pending_txs) {
            return Err(SubmitError::Full);
        }
        match self.input.try_send(input) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.release(n);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::Full,
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }
}

/// Starts an orderer: checks the configuration, bootstraps or checks the storage, lines
/// the Raft state up with the applier (replaying the stored snapshot if the applier is
/// behind it) and spawns the driver thread.
pub fn start<T, S, A>(
    config: OrdererConfig,
    mut storage: SledRaftStorage,
    transport: T,
    sealer: S,
    mut applier: A,
) -> Result<OrdererHandle, StartError>
where
    T: Transport,
    S: BatchSealer,
    A: Applier,
{
    config.validate()?;
    storage.bootstrap(&config.voters)?;

    let mut applied = applier.applied_index();
    let snap_index = storage.snapshot_metadata().index;
    if snap_index > applied {
        // A crash between storing a received snapshot and restoring it, or an applier
        // whose last entries were no-ops: replay the snapshot.
        let snap = storage.stored_snapshot()?.ok_or_else(|| {
            StoreError::Corrupt("snapshot metadata without a stored snapshot".into())
        })?;
        let m = snap.get_metadata();
        applier.restore_snapshot(m.index, m.term, &snap.data)?;
        applied = applier.applied_index();
        if applied != m.index {
            return Err(StartError::ApplierContract {
                want: m.index,
                got: applied,
            });
        }
    }
    let last = storage.last_log_index();
    if applied > last {
        return Err(StartError::AppliedAhead { applied, last });
    }
    let truncated = storage.first_log_index().saturating_sub(1);
    if applied < truncated {
        return Err(StartError::AppliedBehind { applied, truncated });
    }
    if applied > storage.hard_state().commit {
        // The commit index is stored before applying, so this means the hard state was
        // lost; what the applier applied was committed.
        tracing::warn!(target: "sphr::orderer", applied, commit = storage.hard_state().commit,
            "raising the stored commit index to the applied index");
        storage.set_commit(applied)?;
        storage.flush()?;
    }

    let raft_config = raft::Config {
        id: config.id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        applied,
        max_size_per_msg: config.max_msg_bytes,
        max_inflight_msgs: config.max_inflight_msgs,
        check_quorum: true,
        pre_vote: true,
        max_committed_size_per_ready: config.max_committed_bytes_per_ready,
        ..raft::Config::default()
    };
    raft_config.validate()?;
    let logger = raft_logger();
    let last_snapshot_index = storage.snapshot_metadata().index;
    let mut raw = match panic::catch_unwind(AssertUnwindSafe(|| {
        RawNode::new(&raft_config, storage, &logger)
    })) {
        Ok(r) => r?,
        Err(p) => return Err(StartError::RaftPanic(panic_message(&*p))),
    };
    if config.voters == [config.id] {
        // Alone: no need to wait for an election timeout.
        raw.campaign()?;
    }

    let (input, rx) = mpsc::sync_channel(config.input_capacity);
    let shared = Arc::new(Shared {
        status: Mutex::new(RaftStatus {
            id: config.id,
            running: true,
            healthy: true,
            applied_index: applied,
            ..RaftStatus::default()
        }),
        stopped: AtomicBool::new(false),
        pending_txs: AtomicUsize::new(0),
    });
    let cutter = BlockCutter::new(CutterLimits {
        max_tx: config.max_tx,
        max_bytes: config.max_bytes,
        batch_timeout: config.batch_timeout,
    });
    let handle_template = (config.max_pending_txs, config.max_bytes);
    let apply = ApplyThread::start(config.id, applier, applied, config.apply_queue)
        .map_err(StartError::Spawn)?;
    let apply_state = apply.state();
    let driver = Driver {
        id: config.id,
        voters: config.voters.clone(),
        next_tick: Instant::now() + config.tick,
        cfg: config,
        raw,
        rx,
        shared: Arc::clone(&shared),
        transport,
        sealer,
        apply,
        cutter,
        batches: VecDeque::new(),
        forward_buf: Vec::new(),
        leader_id: 0,
        is_leader: false,
        applied,
        last_snapshot_index,
        snapshot_pending: false,
        snapshots_sent: Vec::new(),
        counters: Counters::default(),
        stop: false,
    };
    let thread = std::thread::Builder::new()
        .name(format!("sphr-raft-{}", driver.id))
        .spawn(move || driver.run())
        .map_err(StartError::Spawn)?;
    Ok(OrdererHandle {
        input,
        shared,
        apply: apply_state,
        thread: Arc::new(Mutex::new(Some(thread))),
        max_pending_txs: handle_template.0,
        max_tx_bytes: handle_template.1,
    })
}

#[derive(Debug, Default)]
struct Counters {
    leader_changes: u64,
    proposals: u64,
    snapshots_restored: u64,
    snapshots_taken: u64,
    txs_dropped: u64,
    msgs_rejected: u64,
}

struct Driver<T, S> {
    id: u64,
    voters: Vec<u64>,
    cfg: OrdererConfig,
    raw: RawNode<SledRaftStorage>,
    rx: Receiver<Input>,
    shared: Arc<Shared>,
    transport: T,
    sealer: S,
    apply: ApplyThread,
    cutter: BlockCutter,
    /// Cut batches waiting for a proposal slot (leader).
    batches: VecDeque<Batch>,
    /// Transactions waiting for a known leader (follower).
    forward_buf: Vec<Vec<u8>>,
    leader_id: u64,
    is_leader: bool,
    /// Last index handed to the apply thread (or restored).
    applied: u64,
    last_snapshot_index: u64,
    /// A snapshot was asked of the apply thread and has not come back.
    snapshot_pending: bool,
    /// Peers sent a snapshot during the current Ready, reported to raft after `advance`.
    snapshots_sent: Vec<u64>,
    next_tick: Instant,
    counters: Counters,
    stop: bool,
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

impl<T: Transport, S: BatchSealer> Driver<T, S> {
    fn run(mut self) {
        let span = tracing::info_span!(target: "sphr::orderer", "raft", id = self.id);
        let _enter = span.enter();
        tracing::info!(target: "sphr::orderer", voters = ?self.voters, applied = self.applied,
            "raft driver started");
        let outcome: Result<(), Fatal> = loop {
            if self.shared.stopped.load(Ordering::Acquire) {
                self.stop = true;
            }
            if self.stop {
                break Ok(());
            }
            match panic::catch_unwind(AssertUnwindSafe(|| self.turn())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break Err(e),
                Err(p) => break Err(Fatal::Panic(panic_message(&*p))),
            }
        };
        self.shared.stopped.store(true, Ordering::Release);
        // What is queued for the apply thread is committed: let it finish.
        self.apply.finish();
        let outcome = match (outcome, self.apply.take_failure()) {
            (Ok(()), Some(f)) => Err(Fatal::Apply(f)),
            (o, _) => o,
        };
        let lost = self.cutter.len()
            + self.batches.iter().map(Vec::len).sum::<usize>()
            + self.forward_buf.len();
        self.publish_status();
        let mut st = self.shared.status();
        st.running = false;
        match outcome {
            Ok(()) => {
                tracing::info!(target: "sphr::orderer", pending_txs_dropped = lost,
                    "raft driver stopped");
            }
            Err(e) => {
                tracing::error!(target: "sphr::orderer", error = %e, pending_txs_dropped = lost,
                    "raft driver stopped on a fatal error");
                st.healthy = false;
                st.storage_failed = matches!(e, Fatal::Store(_));
                st.fatal = Some(e.to_string());
            }
        }
    }

    /// One loop turn: wait for input or a deadline, then tick, propose and handle Readies.
    fn turn(&mut self) -> Result<(), Fatal> {
        if let Some(f) = self.apply.take_failure() {
            return Err(f.into());
        }
        let now = Instant::now();
        let mut deadline = self.next_tick;
        if self.is_leader
            && let Some(d) = self.cutter.deadline()
        {
            deadline = deadline.min(d);
        }
        match self
            .rx
            .recv_timeout(deadline.saturating_duration_since(now))
        {
            Ok(input) => {
                self.handle_input(input)?;
                // Take what else is queued (bounded) so one Ready (one fsync) covers it.
                for _ in 0..self.cfg.input_capacity {
                    match self.rx.try_recv() {
                        Ok(input) => self.handle_input(input)?,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            self.stop = true;
                            break;
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.stop = true, // every handle dropped
        }
        let now = Instant::now();
        if now >= self.next_tick {
            self.raw.tick();
            self.next_tick += self.cfg.tick;
            if self.next_tick <= now {
                // After a stall, do not burst ticks: that would look like an election timeout.
                self.next_tick = now + self.cfg.tick;
            }
        }
        self.sync_role();
        self.propose(now)?;
        self.handle_readies()?;
        // Snapshot and compact every `snapshot_interval` applied entries.
        self.maybe_snapshot()?;
        self.forward();
        self.publish_status();
        Ok(())
    }

    fn handle_input(&mut self, input: Input) -> Result<(), Fatal> {
        match input {
            Input::Tx(tx) => self.accept_tx(tx),
            Input::Txs(txs) => {
                for tx in txs {
                    self.accept_tx(tx);
                }
            }
            Input::Step(msg) => self.step(*msg),
            Input::Shutdown => self.stop = true,
        }
        Ok(())
    }

    fn accept_tx(&mut self, tx: Vec<u8>) {
        if self.is_leader {
            let cut = self.cutter.push(tx, Instant::now());
            self.batches.extend(cut);
        } else {
            self.buffer_for_leader(tx);
        }
    }

    fn buffer_for_leader(&mut self, tx: Vec<u8>) {
        if self.forward_buf.len() >= self.cfg.forward_buffer_txs {
            self.counters.txs_dropped += 1;
            self.shared.release(1);
            if self.counters.txs_dropped.is_power_of_two() {
                tracing::warn!(target: "sphr::orderer", dropped_total = self.counters.txs_dropped,
                    "no leader and the forward buffer is full: transaction dropped");
            }
        } else {
            self.forward_buf.push(tx);
        }
    }

    fn step(&mut self, msg: Message) {
        let t = msg.get_msg_type();
        if msg.to != self.id
            || msg.from == self.id
            || !self.voters.contains(&msg.from)
            || REFUSED_FROM_PEERS.contains(&t)
        {
            self.counters.msgs_rejected += 1;
            tracing::debug!(target: "sphr::orderer", from = msg.from, to = msg.to, msg_type = ?t,
                "raft message refused");
            return;
        }
        if let Err(e) = self.raw.step(msg) {
            self.counters.msgs_rejected += 1;
            tracing::debug!(target: "sphr::orderer", error = %e, msg_type = ?t,
                "raft refused a message");
        }
        // A message may change the role (a higher term demotes the leader).
        self.sync_role();
    }

    /// Follows role and leader changes of the live raft state, moving pending transactions
    /// between the cutter (leader) and the forward buffer (follower).
    fn sync_role(&mut self) {
        let leader_id = self.raw.raft.leader_id;
        let is_leader = self.raw.raft.state == StateRole::Leader;
        if leader_id != self.leader_id {
            if leader_id != 0 {
                self.counters.leader_changes += 1;
                tracing::info!(target: "sphr::orderer", leader = leader_id,
                    term = self.raw.raft.term, "leader known");
            }
            self.leader_id = leader_id;
        }
        if is_leader == self.is_leader {
            return;
        }
        self.is_leader = is_leader;
        if is_leader {
            let now = Instant::now();
            for tx in std::mem::take(&mut self.forward_buf) {
                let cut = self.cutter.push(tx, now);
                self.batches.extend(cut);
            }
        } else {
            let mut txs: Vec<Vec<u8>> = self.batches.drain(..).flatten().collect();
            txs.extend(self.cutter.take_pending());
            for tx in txs {
                self.buffer_for_leader(tx);
            }
        }
    }

    fn inflight(&self) -> u64 {
        let log = &self.raw.raft.raft_log;
        log.last_index().saturating_sub(log.committed)
    }

    /// Leader: cuts a timed-out batch and proposes waiting batches while in-flight
    /// proposals stay under the bound.
    fn propose(&mut self, now: Instant) -> Result<(), Fatal> {
        if !self.is_leader {
            return Ok(());
        }
        if let Some(b) = self.cutter.poll_timeout(now) {
            self.batches.push_back(b);
        }
        while !self.batches.is_empty()
            && self.inflight() < self.cfg.max_inflight_proposals as u64
            && self.raw.raft.lead_transferee.is_none()
        {
            let Some(batch) = self.batches.pop_front() else {
                break;
            };
            let n = batch.len();
            let data = self.sealer.seal(batch);
            self.shared.release(n);
            if data.is_empty() {
                self.counters.txs_dropped += n as u64;
                tracing::error!(target: "sphr::orderer", txs = n,
                    "sealer returned an empty entry: batch dropped");
                continue;
            }
            match self.raw.propose(Vec::new(), data) {
                Ok(()) => self.counters.proposals += 1,
                Err(raft::Error::ProposalDropped) => {
                    self.counters.txs_dropped += n as u64;
                    tracing::warn!(target: "sphr::orderer", txs = n, "raft dropped a proposal");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Follower: sends buffered transactions to the known leader, `max_tx` per call.
    fn forward(&mut self) {
        if self.is_leader || self.leader_id == 0 || self.forward_buf.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.forward_buf);
        let n = txs.len();
        let mut it = txs.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<Vec<u8>> = it.by_ref().take(self.cfg.max_tx).collect();
            self.transport.forward_txs(self.leader_id, chunk);
        }
        self.shared.release(n);
    }

    fn send(&mut self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        for m in &msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.push(m.to);
            }
        }
        self.transport.send(msgs);
    }

    fn handle_readies(&mut self) -> Result<(), Fatal> {
        for _ in 0..MAX_READY_ROUNDS {
            if !self.raw.has_ready() {
                break;
            }
            let mut rd = self.raw.ready();

            // 1. Leader messages may be sent before the write (raft-rs puts only leader
            //    appends/heartbeats here; everything that announces persisted state is in
            //    the persisted messages below).
            self.send(rd.take_messages());

            // 2-3. Persist snapshot, entries and hard state, then make them durable.
            let snapshot: Option<Snapshot> =
                (!rd.snapshot().is_empty()).then(|| rd.snapshot().clone());
            let store = self.raw.mut_store();
            let mut must_flush = false;
            if let Some(s) = &snapshot {
                store.apply_snapshot(s)?;
                must_flush = true;
            }
            if !rd.entries().is_empty() || rd.hs().is_some() {
                // A hard state whose term and vote are those stored changes only the commit
                // index: see `commit_only`.
                let hs_needs_flush = rd
                    .hs()
                    .is_some_and(|hs| !commit_only(store.hard_state(), hs));
                store.append_and_set_hard_state(rd.entries(), rd.hs())?;
                must_flush |= !rd.entries().is_empty() || hs_needs_flush;
            }
            if must_flush {
                store.flush()?;
            }

            // 4. The state machine follows the snapshot.
            if let Some(s) = &snapshot {
                self.restore(s)?;
            }

            // 5. Votes and append responses: only now that the state is durable.
            self.send(rd.take_persisted_messages());

            // 6. Committed entries: their commit index is in a stored hard state.
            self.apply_entries(rd.take_committed_entries())?;

            // 7. Advance; the light ready's commit index is stored (not flushed: see
            //    `commit_only`) before applying.
            let mut light = self.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                self.raw.mut_store().set_commit(commit)?;
            }
            self.send(light.take_messages());
            self.apply_entries(light.take_committed_entries())?;
            self.raw.advance_apply();

            for to in std::mem::take(&mut self.snapshots_sent) {
                self.raw.report_snapshot(to, SnapshotStatus::Finish);
            }
            self.sync_role();
        }
        Ok(())
    }

    fn restore(&mut self, s: &Snapshot) -> Result<(), Fatal> {
        let m = s.get_metadata();
        tracing::info!(target: "sphr::orderer", index = m.index, term = m.term,
            "restoring a snapshot from the leader");
        // After what is queued before it; the apply thread checks the applier's index.
        self.apply.restore(m.index, m.term, s.data.to_vec())?;
        self.applied = m.index;
        self.last_snapshot_index = m.index;
        self.counters.snapshots_restored += 1;
        Ok(())
    }

    /// Hands committed entries to the apply thread (in order; waits while its queue is full).
    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), Fatal> {
        // raft does not hand out an entry twice; defensive.
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|e| e.index > self.applied)
            .collect();
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        self.apply.apply(entries)?;
        self.applied = last;
        Ok(())
    }

    /// Every `snapshot_interval` entries handed to the apply thread, asks it for the
    /// snapshot data; when the data comes back (at a later turn), stores the snapshot and
    /// compacts the log up to `snapshot_catchup_entries` before it.
    fn maybe_snapshot(&mut self) -> Result<(), Fatal> {
        if let Some((index, data)) = self.apply.try_snapshot() {
            self.snapshot_pending = false;
            // A snapshot restored from the leader meanwhile may already cover it.
            if index > self.last_snapshot_index {
                let store = self.raw.mut_store();
                store.create_snapshot(index, data)?;
                let compact_to = index
                    .saturating_sub(self.cfg.snapshot_catchup_entries)
                    .saturating_add(1);
                store.compact(compact_to)?;
                store.flush()?;
                self.last_snapshot_index = index;
                self.counters.snapshots_taken += 1;
                tracing::info!(target: "sphr::orderer", index, first_index = compact_to,
                    "snapshot taken, log compacted");
            }
        }
        if !self.snapshot_pending
            && self.applied
                >= self
                    .last_snapshot_index
                    .saturating_add(self.cfg.snapshot_interval)
        {
            self.apply.request_snapshot()?;
            self.snapshot_pending = true;
        }
        Ok(())
    }

    fn publish_status(&self) {
        let raft = &self.raw.raft;
        let store = self.raw.store();
        let mut st = self.shared.status();
        st.leader_id = raft.leader_id;
        st.term = raft.term;
        st.is_leader = raft.state == StateRole::Leader;
        st.commit_index = raft.raft_log.committed;
        let apply = self.apply.state();
        st.applied_index = apply.applied();
        st.first_index = store.first_log_index();
        st.last_index = raft.raft_log.last_index();
        st.snapshot_index = store.snapshot_metadata().index;
        st.leader_changes = self.counters.leader_changes;
        st.inflight_proposals = if st.is_leader { self.inflight() } else { 0 };
        st.proposals_total = self.counters.proposals;
        st.entries_applied_total = apply.entries_applied();
        st.snapshots_restored_total = self.counters.snapshots_restored;
        st.snapshots_taken_total = self.counters.snapshots_taken;
        st.txs_dropped_total = self.counters.txs_dropped;
        st.msgs_rejected_total = self.counters.msgs_rejected;
    }
}

/// Whether storing `new` over `stored` changes only the commit index, which then needs no
/// flush of its own: Raft's safety rests on terms, votes and entries (flushed before any
/// message that announces them), and a commit index lost in a crash is learned again from
/// the leader. Applying cannot get ahead of it on disk either: the commit index is written to
/// the node's one sled database before its entries go to the apply thread, the ledger writes
/// to the same database after that, and sled recovers a prefix of its log, so a flushed block
/// means a stored commit index at least as high (and `start` raises a lower one to the
/// applied index all the same). What this saves is a flush per block on every node (a job for
/// sled's I/O pool, which wakes all of its threads, and an fsync) between the commit of a
/// block and its application.
fn commit_only(stored: &raft::eraftpb::HardState, new: &raft::eraftpb::HardState) -> bool {
    new.term == stored.term && new.vote == stored.vote
}
