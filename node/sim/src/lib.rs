//! sphr-sim: a deterministic simulation of sphr's ordering and commit.
//!
//! N consenters (3 or 5), each a real `raft::RawNode` over the orderer's `SledRaftStorage`,
//! the orderer's `BlockCutter`, and a real `sphr_ledger::Ledger`, in its own sled database,
//! run in one thread on a virtual clock. A seed drives everything else: message delays,
//! losses, duplicates and reorderings, partitions that come and go, crashes (between events
//! or in the middle of handling a Raft `Ready`) and restarts from what is on disk, pauses (a
//! frozen node, as under SIGSTOP, that resumes with stale beliefs), and clients
//! that submit real endorsed transactions of the test network, some of them conflicting,
//! some with bad endorsements.
//!
//! ```text
//!   seed ──> SimConfig::for_seed ──> rng streams (net, faults, clients, clock, election/N)
//!                                         │
//!  ┌──────────────────────────── sim.rs: discrete-event loop ───────────────────────────┐
//!  │ queue of (virtual time, seq) ─> event                                              │
//!  │   Tick ─┐   Deliver ─┐   Forward ─┐   Arrive (client tx) ─┐   Fault   Restart      │
//!  │         v            v            v                       v     │        │         │
//!  │   node.rs: one driver turn ─ sync role ─ propose ─ Ready:  │     │   reopen sled:   │
//!  │      send leader msgs ─ persist+flush ─ send votes/acks ─   │     │   ledger, raft   │
//!  │      Ledger::commit_entry ─ advance ─ snapshot/compact      │     │   log, snapshot  │
//!  │         │ Outbox                                           crash now / mid-Ready,  │
//!  │         ├─ msgs, forwards ─> net.rs (cut links, drop, dup, delay) ─> queue          │
//!  │         ├─ new blocks ─────> invariants/ (after every block)                       │
//!  │         └─ commits a waiting client's tx ─> acknowledged                           │
//!  │ after fault_ms: heal, calm, restart all, stop clients ─> converged? ─> final checks │
//!  └────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Invariants, one per file in [`invariants`]: one block per height, equal state at equal
//! height, no VALID transaction without valid endorsements, no acknowledged transaction
//! lost; and three more: no transaction id VALID twice, no node stops on a fatal error, the
//! healed cluster converges.
//!
//! # Reproducing a seed
//!
//! A failing run prints its invariant, detail, last events and
//! `SPHR_SIM_SEED=<n>`. Every random choice comes from the seed (raft-rs's own
//! `thread_rng` election timeout is overwritten, see [`node`]), ties in the event queue are
//! broken by scheduling order, and every map is ordered, so:
//!
//! ```text
//!  SPHR_SIM_SEED=<n> cargo test -p sphr-sim --test sim -- --nocapture    # that seed only
//!  SPHR_SIM_SEED=<n> SPHR_SIM_TRACE=1 cargo test -p sphr-sim --test sim  # every event
//!  SPHR_SIM_SEEDS=1000 cargo test -p sphr-sim --release --test sim      # seeds 0..1000
//! ```
//!
//! The event log of a run is folded into a hash ([`Report::event_log_hash`]); a test runs
//! one seed twice and compares them. Node directories go to `/dev/shm` when it exists
//! (`SPHR_SIM_DIR` overrides): only speed depends on it.
//!
//! What is not simulated: the gateway and endorsers (clients build endorsed transactions
//! directly), the p2p layer (the network model stands for it), unflushed writes lost in a
//! crash (sled is closed in-process, and the node flushes before every step that announces
//! a write anyway), and disk faults.

pub mod client;
pub mod config;
pub mod invariants;
pub mod log;
pub mod net;
pub mod node;
pub mod rng;
pub mod sim;

#[cfg(feature = "bugs")]
pub use config::Bug;
pub use config::SimConfig;
pub use invariants::{Invariant, Violation};
pub use sim::{Report, SimError, run};

/// Runs the simulation of `seed` with its default configuration.
pub fn run_seed(seed: u64) -> Result<Report, SimError> {
    run(SimConfig::for_seed(seed))
}
