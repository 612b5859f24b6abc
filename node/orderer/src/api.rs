//! The three boundaries the node implements: [`Transport`], [`BatchSealer`], [`Applier`].
//!
//! All three are called from the driver thread only, one call at a time, and each call
//! holds up the Raft loop (ticks, heartbeats) while it runs: keep them short and never
//! block on the network.
//!
//! ```text
//!              ┌──────────── driver thread ─────────────┐
//!  leader:     │ BlockCutter ─batch─> BatchSealer::seal ─┼─> raft propose
//!  every Ready:│ raft msgs ─────────> Transport::send    ┼─> peers (node: libp2p)
//!  follower:   │ txs ───────────────> Transport::forward_txs(leader)
//!  committed:  │ entry ─────────────> Applier::apply      ┼─> node: block + applied index, one sled tx
//!  snapshot:   │ Applier::snapshot_data / restore_snapshot│
//!              └─────────────────────────────────────────┘
//! ```

use raft::eraftpb::Message;

/// Carries Raft messages and forwarded transactions to the other consenters.
///
/// Correctness requirements:
/// - **Non-blocking.** Both methods queue and return; they run on the Raft thread.
/// - **May drop, must not corrupt.** Raft tolerates lost, duplicated and reordered messages
///   and retries; a message must arrive intact or not at all.
/// - **Route by `msg.to`.** Deliver each message to the peer whose Raft id is `msg.to`, who
///   hands it to its `OrdererHandle::step`. Do not deliver to anyone else.
/// - **Snapshots.** A `MsgSnapshot` is reported to raft as sent once handed to `send`; if it
///   is lost, the follower's next rejection makes the leader send it again. The snapshot
///   carries only what [`Applier::snapshot_data`] returned (small: a height and a hash).
/// - **Forwarded transactions** (`forward_txs`) are best effort: the receiver submits them
///   to its orderer (`OrdererHandle::submit_batch`); a transaction lost on the way (leader
///   changed, queue full) is not reported back, so clients must wait for the commit event
///   and resubmit on timeout.
pub trait Transport: Send + 'static {
    /// Sends Raft messages; each names its destination in `to`.
    fn send(&self, msgs: Vec<Message>);

    /// Forwards transactions received by a follower to the node it believes is the leader.
    fn forward_txs(&self, leader: u64, txs: Vec<Vec<u8>>);
}

/// Turns a batch of transactions into the bytes of one Raft entry (the node builds and signs
/// a block).
///
/// Correctness requirements:
/// - Called on the leader only, in proposal order, once per batch; the returned bytes are
///   what every node's [`Applier::apply`] receives for that entry.
/// - Must return non-empty bytes: an empty entry is a Raft no-op and is never applied (the
///   driver drops such a batch and counts it in `RaftStatus::txs_dropped`).
/// - Must not depend on being applied: the proposal may be lost when leadership changes;
///   the sealer cannot assume its previous output was committed (the block height and
///   previous hash are the applier's to check, not the sealer's to predict).
pub trait BatchSealer: Send + 'static {
    /// Seals a non-empty batch into the bytes of one entry.
    fn seal(&mut self, txs: Vec<Vec<u8>>) -> Vec<u8>;
}

/// The state machine fed with committed entries (the node's block store).
///
/// Correctness requirements:
/// - **Exactly once, in order.** `apply` receives committed, non-empty, normal entries with
///   strictly increasing `index` (indexes of Raft no-ops are skipped, so gaps are normal).
/// - **Atomic and durable.** `apply` persists what it applies *and* `index` as the applied
///   index in one atomic write, durable (flushed) before returning `Ok`. After it returns,
///   [`Applier::applied_index`] must return `index` (the driver checks).
/// - **Restart.** On start the driver reads `applied_index()` and tells Raft; entries at or
///   below it are never handed out again, the ones above are. So an entry is neither applied
///   twice nor skipped, whatever the crash point.
/// - **Snapshots.** `snapshot_data()` describes the state at `applied_index()` (the node:
///   "blocks up to height h, tip hash"); it is stored in the Raft snapshot at the driver's
///   applied index, which may be a few no-op entries above `applied_index()`.
///   `restore_snapshot(index, term, data)` makes the state equal to what `data` describes
///   (the node fetches the missing blocks from a peer) and records `index` as the applied
///   index, durably, before returning `Ok`. It must accept a snapshot it already covers
///   (same height: only the index moves), since on restart the driver replays the stored
///   snapshot whenever `applied_index()` is below its index.
/// - **Errors are fatal.** Any `Err` stops the orderer (every member must apply the same
///   log): reject nothing that was ordered; record invalid content as invalid instead.
/// - **Its own thread.** Every method after `start` runs on the orderer's apply thread
///   (`sphr-apply-<id>`), one call at a time, while the Raft thread goes on ordering; a call
///   that takes long delays applying, not replication. A panic stops the orderer like an
///   `Err`.
pub trait Applier: Send + 'static {
    /// The index of the last entry applied (or restored), as persisted; 0 when none.
    fn applied_index(&self) -> u64;

    /// Applies one committed entry.
    fn apply(&mut self, index: u64, term: u64, entry: &[u8]) -> Result<(), ApplyError>;

    /// A description of the applied state to put in a Raft snapshot.
    fn snapshot_data(&self) -> Vec<u8>;

    /// Brings the state to a snapshot received from the leader (or replayed on restart).
    fn restore_snapshot(&mut self, index: u64, term: u64, data: &[u8]) -> Result<(), ApplyError>;
}

/// The applier could not apply an entry or restore a snapshot.
///
/// What follows: the orderer stops and reports the error (`RaftStatus::fatal`); the node
/// should stop too and be restarted once the cause is fixed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The applier's store failed.
    #[error("applier storage: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The entry or snapshot cannot be applied (undecodable, wrong height, ...).
    #[error("cannot apply: {0}")]
    Invalid(String),
}
