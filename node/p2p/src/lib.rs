//! sphr-p2p: the peer-to-peer layer of a sphr node, on libp2p (TCP, noise, yamux, tokio).
//!
//! It carries opaque bytes between the genesis nodes and nobody else. A node's ed25519 key
//! (its sphr key) is its libp2p identity, so the allow-list is the set of genesis node keys:
//! a peer whose key is not in it is disconnected right after the noise handshake, before any
//! protocol stream is opened, and is counted in `peers_refused_total`.
//!
//! ```text
//!   node (endorser, gateway, Raft driver, sync)
//!     │  P2pHandle (Clone)                                ▲ mpsc::Receiver<Inbound> (bounded)
//!     │  send_raft / request / publish / stats            │ Request{reply} | Raft | Gossip
//!     ├─ request(Endorse) ─► per-peer queue ─► endorse client ─ /sphr/endorse/2 (ids) ─► server
//!     ├─ send_raft ─► per-peer queue ─► raft stream writer ─── /sphr/raft/2 (one stream per
//!     │                                 (raft_stream)           peer, frames one way, acks
//!     ▼  bounded command queue                                  the other) ──► reader ─┘
//!   ┌─────────────────────────── swarm task (tokio) ───────────────────────────────┐
//!   │ allow_block_list ─ connection_limits ─ request-response x3 ─ stream ─ gossipsub │
//!   │  (genesis keys)     (handshakes, per peer)  endorse/raft/blocks        blocks, txs│
//!   │ redial with backoff 100 ms .. 5 s; replies from the node awaited with timeout │
//!   └──────────────────────────────────┬──────────────────────────────────────────────┘
//!            connection tasks: FrameCodec (length-prefixed CBOR envelope, size limit,
//!            network id and kind checked, bad frames counted by reason)
//!                                      │ TCP + noise (ed25519) + yamux
//!                                    peers
//! ```
//!
//! - **Requests** (`Endorse`, `Blocks`) go to the node as [`Inbound::Request`] with a oneshot
//!   for the answer, which goes back when it comes, or an error when the node takes longer
//!   than the kind's timeout. Endorse requests ride one long-lived `/sphr/endorse/2` stream
//!   per peer, each with an id its answer carries back (see `endorse_stream`; a peer that
//!   does not speak it gets `/sphr/endorse/1` request-response exchanges); block range
//!   fetches are request-response exchanges, answered through the swarm task. **Raft** messages (and the transactions a
//!   follower forwards to the leader) are one-way: they go as frames on one long-lived
//!   `/sphr/raft/2` stream per peer, acknowledged in bulk, and are handed over as
//!   [`Inbound::Raft`]; a peer that only speaks `/sphr/raft/1` gets one request per message,
//!   acked by the p2p layer (see `raft_stream`).
//! - **Gossip** (topics `sphr/<network-id prefix>/blocks` and `.../txs`) is validated before
//!   it is forwarded: author and relaying peer in the allow-list, our network id, the topic's
//!   kind, under the size limit; otherwise it is rejected and counted.
//! - **Limits**: every queue is bounded and rejects when full (inbound requests are answered
//!   "busy", Raft messages dropped and counted); every frame has a size limit checked before
//!   it is read; a peer has at most four inbound Raft streams at once. See [`P2pLimits`].
//!
//! Wire format: [`wire`]. Counters: [`P2pStats`].

mod codec;
pub mod config;
mod endorse_stream;
mod error;
mod handle;
mod metrics;
mod raft_stream;
mod swarm;
pub mod wire;

pub use config::{ConfigError, P2pConfig, P2pLimits, PeerInfo};
pub use error::P2pError;
pub use handle::{Inbound, P2p, P2pHandle};
pub use metrics::{BadMessages, P2pStats, Sample};
pub use wire::{BadReason, Kind, Topic};

/// The tracing target of this crate.
pub(crate) const TARGET: &str = "sphr::p2p";
