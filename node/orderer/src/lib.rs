//! sphr ordering: a block cutter and Raft replication of blocks (raft-rs, the etcd raft
//! lineage of Fabric's etcdraft orderer), with the Raft log on sled.
//!
//! The crate deals in opaque bytes: transactions in, sealed batches (blocks) out. The node
//! wires it with three traits ([`Transport`], [`BatchSealer`], [`Applier`]) and drives it
//! through an [`OrdererHandle`].
//!
//! ```text
//!  submit(tx) ─┐                         ┌────────── driver thread (one RawNode) ───────────┐
//!  step(msg) ──┼─> bounded queue ──────> │ leader:   BlockCutter ─> BatchSealer ─> propose  │
//!  shutdown() ─┘    (Full/Stopped)       │ follower: forward txs ─> Transport::forward_txs  │
//!                                        │ tick (recv_timeout)                              │
//!                                        │ Ready: send ─ persist+flush (SledRaftStorage) ─  │
//!                                        │        send persisted ─ queue committed ─ advance│
//!                                        │ every snapshot_interval: snapshot + compact      │
//!                                        └─────────────┬─────────────┬──────────────────────┘
//!                                                      │             v bounded queue, in order
//!                                                      │   apply thread: Applier::apply,
//!                                                      │   snapshot_data, restore_snapshot
//!  status() <── RaftStatus (Mutex, updated every loop turn; applied index live) ┘
//! ```
//!
//! Like Fabric's etcdraft, a snapshot carries only what the applier says ("blocks up to
//! height h, tip hash"); a member behind a snapshot gets it through
//! [`Applier::restore_snapshot`] and fetches the blocks itself.
//!
//! Modules: [`config`] (limits and timing), [`cutter`] (pure batching), [`storage`] (the
//! `raft::Storage` on sled), [`api`] (the traits), [`driver`] (the thread and its handle),
//! [`codec`] (raft messages on the wire), [`logging`] (raft-rs's slog into tracing); the apply
//! thread (`apply.rs`) is private to the driver.

pub mod api;
mod apply;
pub mod codec;
pub mod config;
pub mod cutter;
pub mod driver;
pub mod logging;
pub mod storage;

pub use api::{Applier, ApplyError, BatchSealer, Transport};
pub use codec::{CodecError, decode_message, encode_message};
pub use config::{ConfigError, OrdererConfig};
pub use cutter::{Batch, BlockCutter, CutterLimits};
pub use driver::{OrdererHandle, RaftStatus, StartError, SubmitError, start};
pub use logging::{TracingDrain, raft_logger};
pub use storage::{EntryFiles, RAFT_ENTRIES_DIR, SledRaftStorage, StoreError};

/// raft-rs's message type, re-exported so that the node needs no direct raft dependency.
pub use raft::eraftpb::Message as RaftMessage;
