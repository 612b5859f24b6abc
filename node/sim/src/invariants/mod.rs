//! The properties every run must keep: one per file, each with its own small state, fed by
//! the simulation as blocks appear and checked once more at the end.
//!
//! ```text
//!  node commits / appends block n ──> one_block_per_height   (hash + codes at n, first seen wins)
//!                                 ──> equal_state            (state hash right after n)
//!   first time a block hash is seen ──> valid_needs_endorsements (re-check every VALID tx)
//!                                   ──> valid_at_most_once   (no tx id VALID twice)
//!  client sees its tx committed ────> no_ack_lost            (remember node, code, place)
//!  a node stops on its own ─────────> no_fatal_stop
//!  after the fault phase ───────────> settles                (healed cluster converges)
//!  end of run: full chain scan, state at equal heights, every ack on every node
//! ```
//!
//! A checker returns the first violation it finds; the simulation stops there and reports it
//! with the seed.

pub mod equal_state;
pub mod no_ack_lost;
pub mod no_fatal_stop;
pub mod one_block_per_height;
pub mod settles;
pub mod valid_at_most_once;
pub mod valid_needs_endorsements;

use std::fmt;

/// Which property broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// The same block (hash and validation codes) at the same height on every node.
    OneBlockPerHeight,
    /// The same world state on every node at the same height.
    EqualStateAtEqualHeight,
    /// No transaction is VALID unless its endorsements verify and satisfy the policy.
    NoValidWithoutEndorsements,
    /// No transaction id is VALID twice (replays and duplicates are refused).
    ValidAtMostOnce,
    /// Every acknowledged transaction ends up on every node with the acknowledged code.
    NoAckedTxLost,
    /// No node stops on an error of its own (storage, applier contract, raft panic).
    NoFatalStop,
    /// Once the network heals and every node is up, the cluster converges (liveness).
    Settles,
}

impl Invariant {
    /// The checker's name (its file).
    pub fn name(&self) -> &'static str {
        match self {
            Invariant::OneBlockPerHeight => "one_block_per_height",
            Invariant::EqualStateAtEqualHeight => "equal_state",
            Invariant::NoValidWithoutEndorsements => "valid_needs_endorsements",
            Invariant::ValidAtMostOnce => "valid_at_most_once",
            Invariant::NoAckedTxLost => "no_ack_lost",
            Invariant::NoFatalStop => "no_fatal_stop",
            Invariant::Settles => "settles",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which.
    pub invariant: Invariant,
    /// Virtual time when it was detected (ms).
    pub at_ms: u64,
    /// What exactly.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at {} ms: {}",
            self.invariant, self.at_ms, self.detail
        )
    }
}
