//! No acknowledged transaction lost: a transaction a client saw committed (on the node it
//! asked, as the gateway reports it) is, once the cluster has settled, in the ledger of every
//! node at the same place with the same validation code.
//!
//! ```text
//!  ack(tx, node, block, position, code) ── acked before? ── must agree, else violation
//!  check(ledgers): for every ack, every node's tx index has (block, position, code)
//! ```

use std::collections::BTreeMap;

use sphr_crypto::hash::Hash32;
use sphr_ledger::Ledger;
use sphr_types::ValidationCode;

use super::one_block_per_height::short;

/// What a client was told about its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The node that told it.
    pub node: u64,
    /// Block number.
    pub block: u64,
    /// Position in the block.
    pub position: u32,
    /// Validation code.
    pub code: ValidationCode,
    /// When (virtual ms).
    pub at_ms: u64,
}

/// Every acknowledgement.
#[derive(Debug, Default)]
pub struct NoAckedTxLost {
    acks: BTreeMap<Hash32, Ack>,
}

impl NoAckedTxLost {
    /// A client was told `ack` about `tx_id`.
    pub fn record(&mut self, tx_id: Hash32, ack: Ack) -> Result<(), String> {
        match self.acks.get(&tx_id) {
            None => {
                self.acks.insert(tx_id, ack);
                Ok(())
            }
            Some(a) if (a.block, a.position, a.code) != (ack.block, ack.position, ack.code) => {
                Err(format!(
                    "tx {}: node {} acknowledged block {} position {} {}, node {} acknowledged \
                     block {} position {} {}",
                    short(&tx_id),
                    a.node,
                    a.block,
                    a.position,
                    a.code,
                    ack.node,
                    ack.block,
                    ack.position,
                    ack.code
                ))
            }
            Some(_) => Ok(()),
        }
    }

    /// Whether `tx_id` was acknowledged.
    pub fn is_acked(&self, tx_id: &Hash32) -> bool {
        self.acks.contains_key(tx_id)
    }

    /// Number of acknowledged transactions.
    pub fn len(&self) -> usize {
        self.acks.len()
    }

    /// Whether nothing was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    /// Acknowledged transactions by code.
    pub fn by_code(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for a in self.acks.values() {
            *m.entry(a.code.as_str()).or_insert(0) += 1;
        }
        m
    }

    /// Every acknowledged transaction is on every ledger, where and as acknowledged.
    pub fn check(&self, ledgers: &[(u64, &Ledger)]) -> Result<(), String> {
        for (tx_id, a) in &self.acks {
            for (id, ledger) in ledgers {
                let loc = ledger
                    .tx_location(tx_id)
                    .map_err(|e| format!("node {id}: tx index: {e}"))?;
                match loc {
                    None => {
                        return Err(format!(
                            "tx {} acknowledged by node {} at {} ms (block {}, {}) is not on node {id} \
                             (height {})",
                            short(tx_id),
                            a.node,
                            a.at_ms,
                            a.block,
                            a.code,
                            ledger.height()
                        ));
                    }
                    Some(l) if (l.block, l.position, l.code) != (a.block, a.position, a.code) => {
                        return Err(format!(
                            "tx {} acknowledged by node {} as block {} position {} {}; node {id} \
                             has block {} position {} {}",
                            short(tx_id),
                            a.node,
                            a.block,
                            a.position,
                            a.code,
                            l.block,
                            l.position,
                            l.code
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}
