//! No committed VALID transaction without valid endorsements.
//!
//! Every block is re-checked once (by hash) when it first appears, independently of the
//! ledger's validator, from genesis alone. For each transaction the block marks VALID:
//!
//! ```text
//!  the simulation built it with bad endorsements? ─────────────────> violation
//!  for each endorsement:  certificate signed by its org's CA in genesis, valid at the block
//!                         time, role node, same key as that node in genesis, and its
//!                         signature over the response bytes verifies ── else: not counted
//!  distinct orgs of the endorsements that passed satisfy the contract's policy ── else: violation
//! ```
//!
//! The ground truth (the transactions the clients built with a policy failure, a forged
//! signature or a user as endorser) and the re-check are two separate witnesses: the first
//! catches a validator that trusts something it should not, the second one that trusts what
//! the clients never tried.

use std::collections::BTreeSet;

use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;
use sphr_types::{BlockData, BlockRecord, GenesisConfig, Transaction};

use super::one_block_per_height::short;

/// Blocks already checked, and the transactions that must never be VALID.
#[derive(Debug)]
pub struct NoValidWithoutEndorsements {
    genesis: GenesisConfig,
    org_names: Vec<String>,
    checked: BTreeSet<Hash32>,
    must_fail: BTreeSet<Hash32>,
    /// VALID transactions re-checked.
    pub valid_rechecked: u64,
}

impl NoValidWithoutEndorsements {
    /// A checker for the network of `genesis`.
    pub fn new(genesis: &GenesisConfig) -> Self {
        Self {
            genesis: genesis.clone(),
            org_names: genesis.org_names(),
            checked: BTreeSet::new(),
            must_fail: BTreeSet::new(),
            valid_rechecked: 0,
        }
    }

    /// Transaction `tx_id` was built with endorsements that must not pass.
    pub fn must_fail(&mut self, tx_id: Hash32) {
        self.must_fail.insert(tx_id);
    }

    /// Checks `record` unless a block with its hash was checked before; returns the VALID
    /// transactions it checked: `(tx id, position)`.
    pub fn observe(&mut self, record: &BlockRecord) -> Result<Vec<(Hash32, u32)>, String> {
        let hash = record.block.hash();
        if !self.checked.insert(hash) {
            return Ok(Vec::new());
        }
        let BlockData::Batch(sb) = &record.block.data else {
            return Ok(Vec::new()); // genesis
        };
        let number = record.block.header.number;
        let batch = sb
            .decode_batch()
            .map_err(|e| format!("block {number}: batch does not decode: {e}"))?;
        if batch.txs.len() != record.codes.len() {
            return Err(format!(
                "block {number}: {} codes for {} transactions",
                record.codes.len(),
                batch.txs.len()
            ));
        }
        let time_s = record.block.header.timestamp_ms / 1000;
        let mut valid = Vec::new();
        for (pos, (raw, code)) in (0u32..).zip(batch.txs.iter().zip(&record.codes)) {
            if code.is_valid() {
                self.valid_rechecked += 1;
                let id = self
                    .check_tx(raw, time_s)
                    .map_err(|e| format!("block {number} ({}) tx {pos}: {e}", short(&hash)))?;
                valid.push((id, pos));
            }
        }
        Ok(valid)
    }

    /// Re-checks one VALID transaction; its id.
    fn check_tx(&self, raw: &[u8], time_s: u64) -> Result<Hash32, String> {
        let tx = Transaction::from_bytes(raw).map_err(|e| format!("VALID but undecodable: {e}"))?;
        let proposal = tx
            .signed_proposal
            .decode_proposal()
            .map_err(|e| format!("VALID but its proposal does not decode: {e}"))?;
        let tx_id = proposal.tx_id();
        if self.must_fail.contains(&tx_id) {
            return Err(format!(
                "VALID, but tx {} was built with bad endorsements",
                short(&tx_id)
            ));
        }
        let policy = self
            .genesis
            .policy(&proposal.contract)
            .ok_or_else(|| format!("VALID for unknown contract {:?}", proposal.contract))?;
        let mut orgs: Vec<&str> = Vec::new();
        for e in &tx.endorsements {
            let cert = &e.endorser;
            let b = &cert.body;
            let ca_ok = self
                .genesis
                .org(&b.org)
                .is_some_and(|o| cert.verify(&o.ca_key, time_s).is_ok());
            let node_ok = b.role == Role::Node
                && self
                    .genesis
                    .node(&b.org, &b.subject)
                    .is_some_and(|n| n.public_key == b.public_key);
            let sig_ok = b
                .public_key
                .verify(&e.signed_message(&tx.response), &e.signature)
                .is_ok();
            if ca_ok && node_ok && sig_ok && !orgs.contains(&b.org.as_str()) {
                orgs.push(b.org.as_str());
            }
        }
        if !policy.is_satisfied(&self.org_names, orgs.iter().copied()) {
            return Err(format!(
                "VALID, but only {orgs:?} endorsed validly and the policy is {policy}"
            ));
        }
        Ok(tx_id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sphr_ledger::test_utils::{TestNetwork, put};
    use sphr_types::{Block, BlockRecord, ValidationCode};

    fn record(net: &TestNetwork, txs: &[Transaction], codes: Vec<ValidationCode>) -> BlockRecord {
        BlockRecord {
            block: Block::next(&net.genesis_block.header, net.batch(txs), 1_700_000_000_000),
            codes,
            raft_index: 1,
        }
    }

    #[test]
    fn catches_valid_without_enough_endorsements() {
        let net = TestNetwork::new(3, "MAJORITY");
        let alice = net.user(0, "alice");
        let good = net.kv_put(&alice, b"k", b"v");
        let one_org = net
            .tx(&alice)
            .writes(vec![put("kv", b"k", b"w")])
            .endorsers(vec![net.node(0, 0)])
            .build();
        let mut c = NoValidWithoutEndorsements::new(&net.genesis);
        c.observe(&record(
            &net,
            std::slice::from_ref(&good),
            vec![ValidationCode::Valid],
        ))
        .unwrap();
        let bad = record(
            &net,
            &[good, one_org],
            vec![ValidationCode::Valid, ValidationCode::Valid],
        );
        let err = c.observe(&bad).unwrap_err();
        assert!(err.contains("tx 1"), "{err}");
        // Seen once: not checked again.
        assert!(c.observe(&bad).is_ok());
    }

    #[test]
    fn catches_a_known_bad_tx_marked_valid() {
        let net = TestNetwork::new(3, "MAJORITY");
        let alice = net.user(0, "alice");
        let tx = net.kv_put(&alice, b"k", b"v");
        let p = tx.signed_proposal.decode_proposal().unwrap();
        let mut c = NoValidWithoutEndorsements::new(&net.genesis);
        c.must_fail(p.tx_id());
        let err = c
            .observe(&record(&net, &[tx], vec![ValidationCode::Valid]))
            .unwrap_err();
        assert!(err.contains("bad endorsements"), "{err}");
    }
}
