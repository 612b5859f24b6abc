//! One simulated consenter: a `raft::RawNode` over `SledRaftStorage`, a `BlockCutter`, and a
//! `Ledger`, all in one sled database in the node's own directory, driven by the simulation
//! instead of the orderer's driver thread.
//!
//! Every operation mirrors one turn of `sphr_orderer::driver` (same order, same checks), with
//! the simulation's clock in place of `Instant::now()` and an outbox in place of the
//! transport:
//!
//! ```text
//!  tick / step(msg) / accept_txs / poll (batch timeout)
//!    └─> sync_role ─> propose (leader: cutter ─> seal ─> RawNode::propose)
//!        ─> while has_ready: Ready ──┐
//!             1. leader messages ─────────────────────────────> outbox   ◄ crash point 1
//!             2. snapshot, entries + hard state (one sled tx), flush      ◄ crash point 2
//!             3. snapshot? ─> restore (catch up blocks from a peer)
//!             4. persisted messages (votes, append responses) ─> outbox   ◄ crash point 3
//!             5. committed entries ─> Ledger::commit_entry (+flush)        ◄ crash point 4
//!             6. advance; light ready: store commit, send, apply; advance_apply
//!             7. every snapshot_interval applied: snapshot + compact
//!        ─> forward (follower: buffered txs ─> outbox, to the leader)
//!    then: if raft reset its election timer, redraw the timeout from the seeded stream
//! ```
//!
//! A crash is the node being dropped: the RawNode, the cutter, the buffers and every
//! in-memory state go; only what sled holds survives, and [`SimNode::open`] reopens it with
//! the same start-up logic as `sphr_orderer::start` (replay of the stored snapshot, the
//! applied-index checks) and the node's `LedgerApplier`.
//!
//! raft-rs draws its randomized election timeout from `rand::thread_rng()` whenever it
//! resets its timers (`Raft::reset`). Every reset leaves `election_elapsed == 0` at the end
//! of the operation, so after every operation with `election_elapsed == 0` the node
//! overwrites the timeout with a draw from its seeded stream (also after heartbeats, which
//! zero the counter too: extra draws are harmless, and deterministic). raft-rs only reads the
//! timeout in `tick`, at the start of the next operation, so the OS randomness never matters.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft::eraftpb::{Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use serde_bytes::ByteBuf;
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::SecretKey;
use sphr_ledger::test_utils::TEST_TIME_MS;
use sphr_ledger::{CommitOutcome, Ledger};
use sphr_orderer::cutter::Batch as CutBatch;
use sphr_orderer::{BlockCutter, CutterLimits, SledRaftStorage, raft_logger};
use sphr_types::{Batch, Block, BlockRecord, NodeRef, SignedBatch};

#[cfg(feature = "bugs")]
use crate::config::Bug;
use crate::invariants::equal_state::state_hash;
use crate::rng::SimRng;

/// Tree of the Raft log in the node's database (as the node names it).
pub const RAFT_LOG_TREE: &str = "raft_log";
/// Directory (inside the ledger's database directory) of the Raft entry segment files.
pub const RAFT_ENTRIES_DIR: &str = sphr_orderer::RAFT_ENTRIES_DIR;
/// Tree of the Raft metadata in the node's database.
pub const RAFT_META_TREE: &str = "raft_meta";

/// Readies handled per operation (as the driver).
const MAX_READY_ROUNDS: usize = 16;

/// Message types a peer never legitimately sends (as the driver refuses them).
const REFUSED_FROM_PEERS: [MessageType; 4] = [
    MessageType::MsgPropose,
    MessageType::MsgTransferLeader,
    MessageType::MsgTimeoutNow,
    MessageType::MsgReadIndex,
];

/// Why a node stopped during an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The simulation crashed it at a planned point.
    Crashed,
    /// It stopped on an error of its own: storage, applier contract, raft refusing its state
    /// or panicking. The real orderer reports these as fatal; here they are findings.
    Fatal(String),
    /// It is behind a Raft snapshot and no reachable live peer has the blocks: the real
    /// node's catch-up fails and the orderer stops too; it is restarted later.
    CatchUpUnavailable(String),
}

fn fatal(what: &str) -> impl FnOnce(String) -> Stop + '_ {
    move |e| Stop::Fatal(format!("{what}: {e}"))
}

/// Points inside the handling of a `Ready` where a planned crash strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the leader's messages left, before anything was written.
    AfterLeaderMessages,
    /// After entries and hard state were written and flushed, before anything else.
    AfterPersist,
    /// After the votes and append responses left, before applying.
    AfterPersistedMessages,
    /// After the first committed entry of the Ready was applied.
    AfterFirstApply,
    /// After a snapshot received from the leader was stored, before the ledger caught up
    /// to it (only a Ready with a snapshot): the restart must replay the stored snapshot.
    AfterSnapshotStored,
}

/// Where a node behind a snapshot fetches blocks (the real node asks its peers).
pub trait BlockSource {
    /// Blocks `from..=to` from a live peer reachable from `me` whose block `to` has hash
    /// `tip`; `None` when no such peer.
    fn fetch(&self, me: u64, from: u64, to: u64, tip: &Hash32) -> Option<Vec<BlockRecord>>;
}

/// A block that entered the node's ledger during an operation, with the state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBlock {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: Hash32,
    /// Hash of the world state right after the block.
    pub state_hash: Hash32,
    /// Fetched from a peer (catch-up) rather than applied from the log.
    pub synced: bool,
}

/// What an operation produced, in order.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Raft messages to send.
    pub msgs: Vec<Message>,
    /// Transactions to forward: `(leader, txs)`.
    pub forwards: Vec<(u64, Vec<Vec<u8>>)>,
    /// Blocks committed or appended.
    pub blocks: Vec<NewBlock>,
    /// Notable things for the event log (skipped entries, snapshots).
    pub notes: Vec<String>,
}

/// What an operation needs from the simulation.
pub struct Ctx<'a> {
    /// Virtual time (ms).
    pub now_ms: u64,
    /// The node's election-timeout stream.
    pub rng: &'a mut SimRng,
    /// Peers' block stores, for catch-up.
    pub peers: &'a dyn BlockSource,
    /// Where the operation's effects go.
    pub out: &'a mut Outbox,
    /// A planned crash inside the next Ready.
    pub crash_at: Option<CrashPoint>,
}

impl Ctx<'_> {
    fn crash_point(&self, p: CrashPoint) -> Result<(), Stop> {
        if self.crash_at == Some(p) {
            Err(Stop::Crashed)
        } else {
            Ok(())
        }
    }
}

/// Everything that defines a node across restarts.
#[derive(Clone)]
pub struct NodeSpec {
    /// Raft id.
    pub id: u64,
    /// Every voter.
    pub voters: Vec<u64>,
    /// Its sled directory.
    pub dir: PathBuf,
    /// Block 0.
    pub genesis: Block,
    /// Its signing key (seals batches).
    pub key: SecretKey,
    /// Its name in genesis.
    pub me: NodeRef,
    /// Raft election timeout (ticks).
    pub election_ticks: usize,
    /// Raft heartbeat (ticks).
    pub heartbeat_ticks: usize,
    /// In-flight proposal bound.
    pub max_inflight_proposals: usize,
    /// Snapshot every this many applied entries.
    pub snapshot_interval: u64,
    /// Entries kept behind a snapshot.
    pub snapshot_catchup_entries: u64,
    /// Cutter limits (batch timeout in virtual time).
    pub cutter: CutterLimits,
    /// Follower's forward buffer bound.
    pub forward_buffer_txs: usize,
    /// A deliberately broken behaviour.
    #[cfg(feature = "bugs")]
    pub bug: Option<Bug>,
}

/// Counters of one node's life (reset on restart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Batches proposed as leader.
    pub proposals: u64,
    /// Entries handed to the ledger.
    pub entries_applied: u64,
    /// Snapshots restored.
    pub snapshots_restored: u64,
    /// Snapshots taken.
    pub snapshots_taken: u64,
    /// Transactions dropped (forward buffer full, proposal refused).
    pub txs_dropped: u64,
    /// Raft messages refused.
    pub msgs_rejected: u64,
}

/// A running consenter.
pub struct SimNode {
    spec: NodeSpec,
    raw: RawNode<SledRaftStorage>,
    ledger: Ledger,
    cutter: BlockCutter,
    batches: VecDeque<CutBatch>,
    forward_buf: Vec<Vec<u8>>,
    leader_id: u64,
    is_leader: bool,
    applied: u64,
    last_snapshot_index: u64,
    snapshots_sent: Vec<u64>,
    /// The virtual clock's origin as an `Instant`, for the cutter (only differences matter).
    base: Instant,
    counters: NodeCounters,
    #[cfg(feature = "bugs")]
    prev_entry: Option<Vec<u8>>,
}

/// Runs `f`, turning a panic (raft-rs panics on broken invariants) into a fatal stop.
fn guard<T>(f: impl FnOnce() -> Result<T, Stop>) -> Result<T, Stop> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = if let Some(s) = p.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = p.downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic".to_string()
            };
            Err(Stop::Fatal(format!("panicked: {msg}")))
        }
    }
}

/// Opens the ledger (which waits for sled to release the lock of a just-dropped instance).
fn open_ledger(dir: &Path, genesis: &Block) -> Result<Ledger, Stop> {
    Ledger::open(dir, genesis).map_err(|e| Stop::Fatal(format!("open ledger: {e}")))
}

/// The node's `LedgerApplier::restore_snapshot`: brings the ledger to the snapshot's
/// "blocks up to height h, tip hash" (fetching the missing blocks from a peer), then records
/// `index` as applied.
fn restore_ledger(
    ledger: &Ledger,
    me: u64,
    index: u64,
    data: &[u8],
    cx: &mut Ctx<'_>,
) -> Result<(), Stop> {
    let (height, hash): (u64, Hash32) = sphr_types::decode(data, 1024)
        .map_err(|e| Stop::Fatal(format!("snapshot data does not decode: {e}")))?;
    let tip = ledger.tip();
    if tip.number < height {
        let Some(records) = cx.peers.fetch(me, tip.number + 1, height, &hash) else {
            return Err(Stop::CatchUpUnavailable(format!(
                "behind a snapshot of block {height}: no reachable peer has blocks {}..={height}",
                tip.number + 1
            )));
        };
        for rec in records {
            let b = ledger
                .append_block(&rec)
                .map_err(|e| Stop::Fatal(format!("catch-up: {e}")))?;
            let state = state_hash(ledger).map_err(fatal("state hash"))?;
            cx.out.blocks.push(NewBlock {
                number: b.number,
                hash: b.hash,
                state_hash: state,
                synced: true,
            });
        }
        cx.out.notes.push(format!(
            "caught up blocks {}..={height} behind snapshot {index}",
            tip.number + 1
        ));
    } else if tip.number == height && tip.hash() != hash {
        return Err(Stop::Fatal(format!(
            "snapshot says block {height} is {hash:?}, this node has {:?}",
            tip.hash()
        )));
    }
    ledger
        .mark_applied(index)
        .map_err(|e| Stop::Fatal(format!("mark applied: {e}")))?;
    Ok(())
}

impl SimNode {
    /// Starts the node on what its directory holds (creating it on first start): the same
    /// checks as `sphr_orderer::start`.
    pub fn open(spec: &NodeSpec, base: Instant, cx: &mut Ctx<'_>) -> Result<SimNode, Stop> {
        guard(|| Self::open_inner(spec, base, cx))
    }

    fn open_inner(spec: &NodeSpec, base: Instant, cx: &mut Ctx<'_>) -> Result<SimNode, Stop> {
        let ledger = open_ledger(&spec.dir, &spec.genesis)?;
        let (log, meta) = {
            let db = ledger.db();
            let log = db
                .open_tree(RAFT_LOG_TREE)
                .map_err(|e| Stop::Fatal(format!("open raft log: {e}")))?;
            let meta = db
                .open_tree(RAFT_META_TREE)
                .map_err(|e| Stop::Fatal(format!("open raft meta: {e}")))?;
            (log, meta)
        };
        let mut storage = SledRaftStorage::open(log, meta, ledger.path().join(RAFT_ENTRIES_DIR))
            .map_err(|e| Stop::Fatal(format!("raft store: {e}")))?;
        storage
            .bootstrap(&spec.voters)
            .map_err(|e| Stop::Fatal(format!("raft bootstrap: {e}")))?;

        let mut applied = ledger.applied_raft_index();
        let snap_index = storage.snapshot_metadata().index;
        if snap_index > applied {
            let snap = storage
                .stored_snapshot()
                .map_err(|e| Stop::Fatal(format!("stored snapshot: {e}")))?
                .ok_or_else(|| Stop::Fatal("snapshot metadata without a stored snapshot".into()))?;
            let m = snap.get_metadata();
            restore_ledger(&ledger, spec.id, m.index, &snap.data, cx)?;
            applied = ledger.applied_raft_index();
            if applied != m.index {
                return Err(Stop::Fatal(format!(
                    "applier reports index {applied} after restoring the snapshot at {}",
                    m.index
                )));
            }
            cx.out
                .notes
                .push(format!("replayed stored snapshot {}", m.index));
        }
        let last = storage.last_log_index();
        if applied > last {
            return Err(Stop::Fatal(format!(
                "applier is at index {applied} but the raft log ends at {last}"
            )));
        }
        let truncated = storage.first_log_index().saturating_sub(1);
        if applied < truncated {
            return Err(Stop::Fatal(format!(
                "applier is at index {applied} but the raft log starts after {truncated}"
            )));
        }
        if applied > storage.hard_state().commit {
            storage
                .set_commit(applied)
                .and_then(|()| storage.flush())
                .map_err(|e| Stop::Fatal(format!("raise commit: {e}")))?;
        }
        let raft_config = raft::Config {
            id: spec.id,
            election_tick: spec.election_ticks,
            heartbeat_tick: spec.heartbeat_ticks,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            max_committed_size_per_ready: 16 * 1024 * 1024,
            ..raft::Config::default()
        };
        raft_config
            .validate()
            .map_err(|e| Stop::Fatal(format!("raft config: {e}")))?;
        let last_snapshot_index = storage.snapshot_metadata().index;
        let mut raw = RawNode::new(&raft_config, storage, &raft_logger())
            .map_err(|e| Stop::Fatal(format!("raft refused the stored state: {e}")))?;
        if spec.voters == [spec.id] {
            raw.campaign()
                .map_err(|e| Stop::Fatal(format!("campaign: {e}")))?;
        }
        let mut node = SimNode {
            spec: spec.clone(),
            raw,
            ledger,
            cutter: BlockCutter::new(spec.cutter),
            batches: VecDeque::new(),
            forward_buf: Vec::new(),
            leader_id: 0,
            is_leader: false,
            applied,
            last_snapshot_index,
            snapshots_sent: Vec::new(),
            base,
            counters: NodeCounters::default(),
            #[cfg(feature = "bugs")]
            prev_entry: None,
        };
        node.fix_election_timeout(cx.rng);
        Ok(node)
    }

    /// One Raft tick, then a turn.
    pub fn tick(&mut self, cx: &mut Ctx<'_>) -> Result<(), Stop> {
        guard(|| {
            self.raw.tick();
            self.turn(cx)
        })
    }

    /// A Raft message from a peer (checked as the driver checks it), then a turn. Returns
    /// false when the message was refused.
    pub fn step(&mut self, msg: Message, cx: &mut Ctx<'_>) -> Result<bool, Stop> {
        guard(|| {
            let t = msg.get_msg_type();
            let ok = if msg.to != self.spec.id
                || msg.from == self.spec.id
                || !self.spec.voters.contains(&msg.from)
                || REFUSED_FROM_PEERS.contains(&t)
            {
                false
            } else {
                self.raw.step(msg).is_ok()
            };
            if !ok {
                self.counters.msgs_rejected += 1;
            }
            self.sync_role(cx.now_ms);
            self.turn(cx)?;
            Ok(ok)
        })
    }

    /// Transactions from a client or forwarded by a follower, then a turn.
    pub fn accept_txs(&mut self, txs: Vec<Vec<u8>>, cx: &mut Ctx<'_>) -> Result<(), Stop> {
        guard(|| {
            for tx in txs {
                self.accept_tx(tx, cx.now_ms);
            }
            self.turn(cx)
        })
    }

    /// The batch timeout may have passed: a turn.
    pub fn poll(&mut self, cx: &mut Ctx<'_>) -> Result<(), Stop> {
        guard(|| self.turn(cx))
    }

    /// This node's ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Whether this node is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.is_leader
    }

    /// The leader this node knows of (0: none).
    pub fn leader_id(&self) -> u64 {
        self.leader_id
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// Highest index applied (entries and no-ops).
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Transactions held in memory: cutter, cut batches, forward buffer.
    pub fn pending_txs(&self) -> usize {
        self.cutter.len()
            + self.batches.iter().map(Vec::len).sum::<usize>()
            + self.forward_buf.len()
    }

    /// This life's counters.
    pub fn counters(&self) -> NodeCounters {
        self.counters
    }

    /// When the open batch times out (virtual ms), if this node is the leader with one.
    pub fn cutter_deadline_ms(&self) -> Option<u64> {
        if !self.is_leader {
            return None;
        }
        let d = self.cutter.deadline()?;
        Some(u64::try_from(d.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX))
    }

    fn instant(&self, now_ms: u64) -> Instant {
        self.base + Duration::from_millis(now_ms)
    }

    /// See the module documentation: replace raft-rs's `thread_rng` timeout with a seeded one.
    fn fix_election_timeout(&mut self, rng: &mut SimRng) {
        if self.raw.raft.election_elapsed == 0 {
            let lo = self.spec.election_ticks as u64;
            let t = rng.range(lo, 2 * lo - 1);
            self.raw.raft.set_randomized_election_timeout(
                usize::try_from(t).unwrap_or(self.spec.election_ticks),
            );
        }
    }

    fn turn(&mut self, cx: &mut Ctx<'_>) -> Result<(), Stop> {
        self.sync_role(cx.now_ms);
        self.propose(cx.now_ms)?;
        self.handle_readies(cx)?;
        self.forward(cx);
        self.fix_election_timeout(cx.rng);
        Ok(())
    }

    fn accept_tx(&mut self, tx: Vec<u8>, now_ms: u64) {
        if self.is_leader {
            let now = self.instant(now_ms);
            let cut = self.cutter.push(tx, now);
            self.batches.extend(cut);
        } else {
            self.buffer_for_leader(tx);
        }
    }

    fn buffer_for_leader(&mut self, tx: Vec<u8>) {
        if self.forward_buf.len() >= self.spec.forward_buffer_txs {
            self.counters.txs_dropped += 1;
        } else {
            self.forward_buf.push(tx);
        }
    }

    fn sync_role(&mut self, now_ms: u64) {
        self.leader_id = self.raw.raft.leader_id;
        let is_leader = self.raw.raft.state == StateRole::Leader;
        if is_leader == self.is_leader {
            return;
        }
        self.is_leader = is_leader;
        if is_leader {
            let now = self.instant(now_ms);
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

    fn seal(&self, txs: CutBatch, now_ms: u64) -> Vec<u8> {
        let batch = Batch {
            proposer: self.spec.me.clone(),
            timestamp_ms: TEST_TIME_MS + now_ms,
            txs: txs.into_iter().map(ByteBuf::from).collect(),
        };
        SignedBatch::seal(&batch, &self.spec.key)
            .and_then(|s| s.to_bytes())
            .unwrap_or_default()
    }

    fn propose(&mut self, now_ms: u64) -> Result<(), Stop> {
        if !self.is_leader {
            return Ok(());
        }
        if let Some(b) = self.cutter.poll_timeout(self.instant(now_ms)) {
            self.batches.push_back(b);
        }
        while !self.batches.is_empty()
            && self.inflight() < self.spec.max_inflight_proposals as u64
            && self.raw.raft.lead_transferee.is_none()
        {
            let Some(batch) = self.batches.pop_front() else {
                break;
            };
            let n = batch.len() as u64;
            let data = self.seal(batch, now_ms);
            if data.is_empty() {
                self.counters.txs_dropped += n;
                continue;
            }
            match self.raw.propose(Vec::new(), data) {
                Ok(()) => self.counters.proposals += 1,
                Err(raft::Error::ProposalDropped) => self.counters.txs_dropped += n,
                Err(e) => return Err(Stop::Fatal(format!("propose: {e}"))),
            }
        }
        Ok(())
    }

    fn forward(&mut self, cx: &mut Ctx<'_>) {
        if self.is_leader || self.leader_id == 0 || self.forward_buf.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.forward_buf);
        let max = self.spec.cutter.max_tx.max(1);
        let mut it = txs.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<Vec<u8>> = it.by_ref().take(max).collect();
            cx.out.forwards.push((self.leader_id, chunk));
        }
    }

    fn send(&mut self, msgs: Vec<Message>, cx: &mut Ctx<'_>) {
        for m in &msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.push(m.to);
            }
        }
        cx.out.msgs.extend(msgs);
    }

    fn handle_readies(&mut self, cx: &mut Ctx<'_>) -> Result<(), Stop> {
        for _ in 0..MAX_READY_ROUNDS {
            if !self.raw.has_ready() {
                break;
            }
            let mut rd = self.raw.ready();

            // 1. Leader messages may precede the write.
            self.send(rd.take_messages(), cx);
            #[cfg(feature = "bugs")]
            if self.spec.bug == Some(Bug::AckBeforePersist) {
                self.send(rd.take_persisted_messages(), cx);
            }
            cx.crash_point(CrashPoint::AfterLeaderMessages)?;

            // 2. Snapshot, entries and hard state, then flush.
            let snapshot: Option<Snapshot> =
                (!rd.snapshot().is_empty()).then(|| rd.snapshot().clone());
            let store = self.raw.mut_store();
            let mut wrote = false;
            if let Some(s) = &snapshot {
                store
                    .apply_snapshot(s)
                    .map_err(|e| Stop::Fatal(format!("store snapshot: {e}")))?;
                wrote = true;
            }
            if !rd.entries().is_empty() || rd.hs().is_some() {
                store
                    .append_and_set_hard_state(rd.entries(), rd.hs())
                    .map_err(|e| Stop::Fatal(format!("append: {e}")))?;
                wrote = true;
            }
            if wrote {
                store
                    .flush()
                    .map_err(|e| Stop::Fatal(format!("flush: {e}")))?;
            }
            cx.crash_point(CrashPoint::AfterPersist)?;
            if snapshot.is_some() {
                cx.crash_point(CrashPoint::AfterSnapshotStored)?;
            }

            // 3. The ledger follows the snapshot.
            if let Some(s) = &snapshot {
                let m = s.get_metadata();
                restore_ledger(&self.ledger, self.spec.id, m.index, &s.data, cx)?;
                let got = self.ledger.applied_raft_index();
                if got != m.index {
                    return Err(Stop::Fatal(format!(
                        "applier contract: applied index {got} after restoring snapshot {}",
                        m.index
                    )));
                }
                self.applied = m.index;
                self.last_snapshot_index = m.index;
                self.counters.snapshots_restored += 1;
                cx.out
                    .notes
                    .push(format!("restored snapshot {} term {}", m.index, m.term));
            }

            // 4. Votes and append responses, now that the state is durable.
            self.send(rd.take_persisted_messages(), cx);
            cx.crash_point(CrashPoint::AfterPersistedMessages)?;

            // 5. Committed entries.
            self.apply_entries(rd.take_committed_entries(), cx)?;

            // 6. Advance; the light ready's commit index is stored before applying.
            let mut light = self.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                let store = self.raw.mut_store();
                store
                    .set_commit(commit)
                    .map_err(|e| Stop::Fatal(format!("store commit: {e}")))?;
                if !light.committed_entries().is_empty() {
                    store
                        .flush()
                        .map_err(|e| Stop::Fatal(format!("flush: {e}")))?;
                }
            }
            self.send(light.take_messages(), cx);
            self.apply_entries(light.take_committed_entries(), cx)?;
            self.raw.advance_apply();

            for to in std::mem::take(&mut self.snapshots_sent) {
                self.raw.report_snapshot(to, SnapshotStatus::Finish);
            }
            // 7. Snapshot and compact.
            self.maybe_snapshot(cx)?;
            self.sync_role(cx.now_ms);
        }
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>, cx: &mut Ctx<'_>) -> Result<(), Stop> {
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal if !e.data.is_empty() => {
                    let data: &[u8] = &e.data;
                    #[cfg(feature = "bugs")]
                    let stale = self.bug_stale_entry(data);
                    #[cfg(feature = "bugs")]
                    let data: &[u8] = stale.as_deref().unwrap_or(data);
                    let outcome = self
                        .ledger
                        .commit_entry(e.index, data)
                        .map_err(|err| Stop::Fatal(format!("apply entry {}: {err}", e.index)))?;
                    match outcome {
                        CommitOutcome::Committed(b) => {
                            let state = state_hash(&self.ledger).map_err(fatal("state hash"))?;
                            cx.out.blocks.push(NewBlock {
                                number: b.number,
                                hash: b.hash,
                                state_hash: state,
                                synced: false,
                            });
                        }
                        CommitOutcome::Skipped { raft_index, reason } => {
                            cx.out
                                .notes
                                .push(format!("entry {raft_index} skipped: {reason}"));
                        }
                        CommitOutcome::AlreadyApplied { .. } => {}
                    }
                    let got = self.ledger.applied_raft_index();
                    if got != e.index {
                        return Err(Stop::Fatal(format!(
                            "applier contract: applied index {got} after applying {}",
                            e.index
                        )));
                    }
                    self.counters.entries_applied += 1;
                    cx.crash_point(CrashPoint::AfterFirstApply)?;
                }
                EntryType::EntryNormal => {}
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    cx.out
                        .notes
                        .push(format!("ignoring conf change at {}", e.index));
                }
            }
            self.applied = e.index;
        }
        Ok(())
    }

    /// `Bug::ReapplyPrevious`: the bytes to apply instead of `data`, if the bug strikes now.
    #[cfg(feature = "bugs")]
    fn bug_stale_entry(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let prev = self.prev_entry.replace(data.to_vec());
        match self.spec.bug {
            Some(Bug::ReapplyPrevious { node, at_block })
                if node == self.spec.id && self.ledger.height() + 1 == at_block =>
            {
                prev
            }
            _ => None,
        }
    }

    fn maybe_snapshot(&mut self, cx: &mut Ctx<'_>) -> Result<(), Stop> {
        if self.applied
            < self
                .last_snapshot_index
                .saturating_add(self.spec.snapshot_interval)
        {
            return Ok(());
        }
        let index = self.applied;
        let tip = self.ledger.tip();
        let data = sphr_types::encode(&(tip.number, tip.hash())).unwrap_or_default();
        let store = self.raw.mut_store();
        store
            .create_snapshot(index, data)
            .map_err(|e| Stop::Fatal(format!("create snapshot: {e}")))?;
        let compact_to = index
            .saturating_sub(self.spec.snapshot_catchup_entries)
            .saturating_add(1);
        store
            .compact(compact_to)
            .and_then(|()| store.flush())
            .map_err(|e| Stop::Fatal(format!("compact: {e}")))?;
        self.last_snapshot_index = index;
        self.counters.snapshots_taken += 1;
        cx.out
            .notes
            .push(format!("snapshot at {index}, log from {compact_to}"));
        Ok(())
    }
}
