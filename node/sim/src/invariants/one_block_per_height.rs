//! One block per height: every node that has a block at height `n` has the same one, by
//! hash (header: number, previous hash, data hash, time) and by validation codes (not
//! hashed, so compared apart: equal blocks with different codes mean the committers
//! disagree).
//!
//! ```text
//!  observe(node, n, hash, codes) ── first at n? ── yes ──> remember (hash, codes, node)
//!                                       └── no ──> equal to what was remembered, or violation
//!  check_chains(ledgers): every node, every height 0..=tip, through observe
//! ```

use std::collections::BTreeMap;

use sphr_crypto::hash::Hash32;
use sphr_ledger::Ledger;
use sphr_types::ValidationCode;

/// What was first seen at each height.
#[derive(Debug, Default)]
pub struct OneBlockPerHeight {
    seen: BTreeMap<u64, (Hash32, Vec<ValidationCode>, u64)>,
}

impl OneBlockPerHeight {
    /// Node `node` has block `number` with `hash` and `codes`.
    pub fn observe(
        &mut self,
        node: u64,
        number: u64,
        hash: Hash32,
        codes: &[ValidationCode],
    ) -> Result<(), String> {
        match self.seen.get(&number) {
            None => {
                self.seen.insert(number, (hash, codes.to_vec(), node));
                Ok(())
            }
            Some((h, c, first)) => {
                if *h != hash {
                    Err(format!(
                        "block {number}: node {node} has {}, node {first} has {}",
                        short(&hash),
                        short(h)
                    ))
                } else if c.as_slice() != codes {
                    Err(format!(
                        "block {number} ({}): node {node} has codes {codes:?}, node {first} has {c:?}",
                        short(&hash)
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Scans every block of every ledger.
    pub fn check_chains(&mut self, ledgers: &[(u64, &Ledger)]) -> Result<(), String> {
        for (id, ledger) in ledgers {
            let tip = ledger.height();
            for n in 0..=tip {
                let rec = ledger
                    .block(n)
                    .map_err(|e| format!("node {id}: block {n}: {e}"))?
                    .ok_or_else(|| format!("node {id}: block {n} missing below its tip {tip}"))?;
                self.observe(*id, n, rec.block.hash(), &rec.codes)?;
            }
        }
        Ok(())
    }

    /// Highest height seen on any node.
    pub fn max_height(&self) -> u64 {
        self.seen.keys().next_back().copied().unwrap_or(0)
    }
}

/// The first bytes of a hash, for messages.
pub fn short(h: &Hash32) -> String {
    h.to_hex().chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_hash_or_codes_at_one_height_is_a_violation() {
        let mut c = OneBlockPerHeight::default();
        let a = Hash32([1; 32]);
        let b = Hash32([2; 32]);
        assert!(c.observe(1, 5, a, &[ValidationCode::Valid]).is_ok());
        assert!(c.observe(2, 5, a, &[ValidationCode::Valid]).is_ok());
        assert!(c.observe(3, 5, b, &[ValidationCode::Valid]).is_err());
        assert!(
            c.observe(3, 5, a, &[ValidationCode::MvccReadConflict])
                .is_err()
        );
        assert_eq!(c.max_height(), 5);
    }
}
