//! Settles (liveness): once the network is healed, every node restarted and the clients
//! stopped, the cluster converges within `settle_ms_max`: every node is up, one leader is
//! known to all, every node has the same tip and has applied everything committed, and no
//! transaction waits in a cutter or forward buffer.
//!
//! ```text
//!  settle phase, every tick: converged()? ── 3 times in a row ──> final checks
//!                                └── settle_ms_max passed ──> violation (with the status)
//! ```

use sphr_crypto::hash::Hash32;

use super::one_block_per_height::short;

/// What one node looks like, for the convergence test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Raft id.
    pub id: u64,
    /// Up, or down (crashed, not restarted yet).
    pub up: bool,
    /// Leader it knows of.
    pub leader: u64,
    /// Tip height.
    pub height: u64,
    /// Tip hash.
    pub tip: Hash32,
    /// Raft commit index.
    pub commit: u64,
    /// Raft applied index.
    pub applied: u64,
    /// Transactions held in memory.
    pub pending: usize,
}

/// Whether the views show a converged cluster.
pub fn converged(views: &[NodeView]) -> bool {
    let Some(first) = views.first() else {
        return true;
    };
    views.iter().all(|v| {
        v.up && v.leader != 0
            && v.leader == first.leader
            && v.tip == first.tip
            && v.commit == first.commit
            && v.applied == v.commit
            && v.pending == 0
    })
}

/// The views, for the violation message.
pub fn describe(views: &[NodeView]) -> String {
    views
        .iter()
        .map(|v| {
            if v.up {
                format!(
                    "node {}: leader {} height {} tip {} commit {} applied {} pending {}",
                    v.id,
                    v.leader,
                    v.height,
                    short(&v.tip),
                    v.commit,
                    v.applied,
                    v.pending
                )
            } else {
                format!("node {}: down", v.id)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
