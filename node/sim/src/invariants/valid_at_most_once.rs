//! VALID at most once: a transaction id is VALID in at most one block of the chain, whatever
//! the replays (clients resubmit after timeouts and replay acknowledged transactions, the
//! network duplicates forwarded ones, a new leader re-proposes what it had buffered).
//!
//! ```text
//!  valid_needs_endorsements decodes every VALID tx of a new block ──> (tx id, height)
//!  observe: tx id VALID before at another height? ──> violation
//! ```

use std::collections::BTreeMap;

use sphr_crypto::hash::Hash32;

use super::one_block_per_height::short;

/// Where each transaction id was VALID.
#[derive(Debug, Default)]
pub struct ValidAtMostOnce {
    valid_at: BTreeMap<Hash32, (u64, u32)>,
}

impl ValidAtMostOnce {
    /// `tx_id` is VALID in block `height` at `position`.
    pub fn observe(&mut self, tx_id: Hash32, height: u64, position: u32) -> Result<(), String> {
        match self.valid_at.get(&tx_id) {
            None => {
                self.valid_at.insert(tx_id, (height, position));
                Ok(())
            }
            Some(&(h, p)) if (h, p) != (height, position) => Err(format!(
                "tx {} is VALID in block {h} position {p} and again in block {height} position \
                 {position}",
                short(&tx_id)
            )),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twice_valid_is_a_violation() {
        let mut c = ValidAtMostOnce::default();
        let t = Hash32([3; 32]);
        assert!(c.observe(t, 4, 1).is_ok());
        assert!(c.observe(t, 4, 1).is_ok());
        assert!(c.observe(t, 9, 0).is_err());
    }
}
