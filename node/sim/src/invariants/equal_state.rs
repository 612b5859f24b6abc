//! Equal world state at equal height: right after block `n`, every node's `state` tree holds
//! the same keys, values and versions.
//!
//! The state hash is computed here over sphr-ledger's public API (the `state` tree of
//! [`Ledger::db`], scanned in key order; each record holds its version and value), so the
//! check adds nothing to the ledger:
//!
//! ```text
//!  h = sha256("sphr-sim-state")
//!  for (key, version ++ value) in state tree, in key order:
//!      h = sha256(h, len(key), key, len(record), record)
//! ```

use std::collections::BTreeMap;

use sphr_crypto::hash::{Hash32, sha256, sha256_parts};
use sphr_ledger::Ledger;
use sphr_ledger::ledger::TREE_STATE;

use super::one_block_per_height::short;

/// Hash of the whole world state of `ledger`.
pub fn state_hash(ledger: &Ledger) -> Result<Hash32, String> {
    let tree = ledger
        .db()
        .open_tree(TREE_STATE)
        .map_err(|e| format!("open state tree: {e}"))?;
    let mut h = sha256(b"sphr-sim-state");
    for item in tree.iter() {
        let (k, v) = item.map_err(|e| format!("scan state: {e}"))?;
        h = sha256_parts(&[
            &h.0,
            &(k.len() as u64).to_be_bytes(),
            &k,
            &(v.len() as u64).to_be_bytes(),
            &v,
        ]);
    }
    Ok(h)
}

/// The state hash first seen after each height.
#[derive(Debug, Default)]
pub struct EqualStateAtEqualHeight {
    seen: BTreeMap<u64, (Hash32, u64)>,
}

impl EqualStateAtEqualHeight {
    /// Node `node`'s state right after block `height` hashes to `state`.
    pub fn observe(&mut self, node: u64, height: u64, state: Hash32) -> Result<(), String> {
        match self.seen.get(&height) {
            None => {
                self.seen.insert(height, (state, node));
                Ok(())
            }
            Some((s, first)) if *s != state => Err(format!(
                "after block {height}: node {node} has state {}, node {first} has {}",
                short(&state),
                short(s)
            )),
            Some(_) => Ok(()),
        }
    }

    /// Every ledger's current state against what was seen at its height.
    pub fn check_now(&mut self, ledgers: &[(u64, &Ledger)]) -> Result<(), String> {
        for (id, ledger) in ledgers {
            let h = state_hash(ledger).map_err(|e| format!("node {id}: {e}"))?;
            self.observe(*id, ledger.height(), h)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sphr_ledger::test_utils::TestNetwork;

    #[test]
    fn state_hash_follows_the_state() {
        let net = TestNetwork::new(2, "ANY");
        let dir = tempfile::tempdir().unwrap();
        let a = net.open_ledger(&dir.path().join("a"));
        let b = net.open_ledger(&dir.path().join("b"));
        assert_eq!(state_hash(&a).unwrap(), state_hash(&b).unwrap());
        let alice = net.user(0, "alice");
        let batch = net.batch(&[net.kv_put(&alice, b"k", b"v")]);
        a.commit_batch(1, &batch).unwrap();
        assert_ne!(state_hash(&a).unwrap(), state_hash(&b).unwrap());
        b.commit_batch(1, &batch).unwrap();
        assert_eq!(state_hash(&a).unwrap(), state_hash(&b).unwrap());

        let mut c = EqualStateAtEqualHeight::default();
        c.check_now(&[(1, &a), (2, &b)]).unwrap();
        assert!(c.observe(3, 1, Hash32([9; 32])).is_err());
    }
}
