//! No fatal stop: a node never stops on an error of its own. The orderer turns storage
//! errors, a broken applier contract, raft refusing its stored state and raft-rs panics into
//! a fatal stop (`RaftStatus::fatal`); in a correct system under crashes, partitions and
//! message loss, none of them may happen.
//!
//! Not counted: planned crashes, and a node behind a snapshot whose peers are all out of
//! reach (the real node's catch-up fails the same way; it is restarted later).

/// Formats a fatal stop of node `node` for the report.
pub fn describe(node: u64, reason: &str, during: &str) -> String {
    format!("node {node} stopped during {during}: {reason}")
}
