//! A bounded, per-process set of signatures that this process has verified.
//!
//! A transaction's signatures are checked several times on one node: the creator's when it is
//! endorsed and again at commit; the node's own endorsement is made here and checked again at
//! commit. [`VerifiedSigs`] remembers (key, message, signature) triples by their
//! [`signature_digest`], so the committer can skip what this process already knows to be good.
//!
//! What gets in: only triples that passed [`PublicKey::verify`] through
//! [`VerifiedSigs::verify`] or [`VerifiedSigs::verify_many`], and signatures this process made with its own key through
//! [`VerifiedSigs::sign`] (valid by construction). There is no other way to insert: a forged
//! signature fails `verify` and is never stored. [`VerifiedSigs::verify_many`] stores what it
//! verified, since [`crate::keys::verify_many`] gives each signature its single verdict. Nothing is
//! persisted; a restart starts empty.
//!
//! Lookups do not change verdicts: [`VerifiedSigs::verify_many`] gives exactly what
//! [`crate::keys::verify_many`] gives on the same items, whatever the cache holds, so nodes with
//! different caches agree on every block.
//!
//! Bounded with two generations: when the current one holds `capacity` digests it becomes the
//! old one and the previous old one is dropped; a hit in the old generation moves the digest
//! back. At most `2 * capacity` digests of 32 bytes are held.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::keys::{KeyError, PublicKey, SecretKey, Signature, signature_digest, verify_many_known};

/// Default number of digests per generation: a few seconds of signatures at 10,000 tx/s.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Signatures this process verified (or made), by [`signature_digest`].
#[derive(Debug)]
pub struct VerifiedSigs {
    sets: Mutex<Generations>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashSet<[u8; 32]>,
    old: HashSet<[u8; 32]>,
}

impl Default for VerifiedSigs {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl VerifiedSigs {
    /// A cache of at most `2 * capacity` digests; 0 disables it (nothing is stored, every
    /// lookup misses).
    pub fn new(capacity: usize) -> Self {
        VerifiedSigs {
            sets: Mutex::new(Generations::default()),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Verifies `sig` over `msg` under `pk` ([`PublicKey::verify`]), or finds that it did so before.
    pub fn verify(&self, msg: &[u8], sig: &Signature, pk: &PublicKey) -> Result<(), KeyError> {
        let d = signature_digest(msg, sig, pk);
        if self.lookup(&d) {
            return Ok(());
        }
        pk.verify(msg, sig)?;
        self.insert(d);
        Ok(())
    }

    /// Signs `msg` with `sk` and remembers the signature.
    pub fn sign(&self, sk: &SecretKey, msg: &[u8]) -> Signature {
        let sig = sk.sign(msg);
        self.insert(signature_digest(msg, &sig, &sk.public_key()));
        sig
    }

    /// [`crate::keys::verify_many`], skipping the items found here. The verdicts are the same
    /// as without the cache; the items that verified are remembered.
    ///
    /// An item that repeats an earlier item of the same call (same key, message and
    /// signature: a batch endorsement shared by several transactions of one block) is not
    /// checked again: it gets the earlier item's verdict, which is what checking it would
    /// give, and counts as a hit.
    pub fn verify_many(&self, items: &[(&[u8], &Signature, &PublicKey)]) -> Vec<bool> {
        let digests: Vec<[u8; 32]> = items
            .iter()
            .map(|(m, s, pk)| signature_digest(m, s, pk))
            .collect();
        // For each item, the first item of the call with the same digest (itself if none).
        let mut first_of: HashMap<[u8; 32], usize> = HashMap::with_capacity(digests.len());
        let source: Vec<usize> = digests
            .iter()
            .enumerate()
            .map(|(i, d)| *first_of.entry(*d).or_insert(i))
            .collect();
        // Repeats are marked known so that nothing checks them; their verdicts follow below.
        let known: Vec<bool> = digests
            .iter()
            .zip(&source)
            .enumerate()
            .map(|(i, (d, &src))| {
                if src == i {
                    self.lookup(d)
                } else {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    true
                }
            })
            .collect();
        let mut verdicts = verify_many_known(items, &known);
        for (i, &src) in source.iter().enumerate() {
            if src != i {
                verdicts[i] = verdicts[src];
            } else if verdicts[i] && !known[i] {
                self.insert(digests[i]);
            }
        }
        verdicts
    }

    /// Lookups that found the signature.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that did not.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Digests held.
    pub fn len(&self) -> usize {
        let g = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        g.current.len() + g.old.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Digests per generation.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lookup(&self, d: &[u8; 32]) -> bool {
        let found = if self.capacity == 0 {
            false
        } else {
            let mut g = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
            if g.current.contains(d) {
                true
            } else if g.old.remove(d) {
                Self::put(&mut g, self.capacity, *d);
                true
            } else {
                false
            }
        };
        let counter = if found { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn insert(&self, d: [u8; 32]) {
        if self.capacity == 0 {
            return;
        }
        let mut g = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        Self::put(&mut g, self.capacity, d);
    }

    fn put(g: &mut Generations, capacity: usize, d: [u8; 32]) {
        if g.current.len() >= capacity {
            g.old = std::mem::take(&mut g.current);
        }
        g.current.insert(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::verify_many;

    fn key(i: u8) -> SecretKey {
        SecretKey::from_bytes(&[i; 32])
    }

    #[test]
    fn only_verified_signatures_get_in() {
        let c = VerifiedSigs::new(16);
        let sk = key(1);
        let pk = sk.public_key();
        let sig = sk.sign(b"proposal");
        // Forged: another message, another key, a flipped bit. Refused, never stored.
        let mut flipped = sig;
        flipped.0[3] ^= 1;
        for _ in 0..2 {
            assert_eq!(
                c.verify(b"proposa1", &sig, &pk),
                Err(KeyError::BadSignature)
            );
            assert_eq!(
                c.verify(b"proposal", &sig, &key(2).public_key()),
                Err(KeyError::BadSignature)
            );
            assert_eq!(
                c.verify(b"proposal", &flipped, &pk),
                Err(KeyError::BadSignature)
            );
        }
        assert!(c.is_empty());
        assert_eq!((c.hits(), c.misses()), (0, 6));
        // Good: verified once, then found.
        assert!(c.verify(b"proposal", &sig, &pk).is_ok());
        assert_eq!(c.len(), 1);
        assert!(c.verify(b"proposal", &sig, &pk).is_ok());
        assert_eq!((c.hits(), c.misses()), (1, 7));
        // A hit is for the exact triple only.
        assert!(c.verify(b"proposa1", &sig, &pk).is_err());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn own_signatures_are_known() {
        let c = VerifiedSigs::new(16);
        let sk = key(3);
        let sig = c.sign(&sk, b"response");
        assert_eq!(sig, sk.sign(b"response"));
        assert!(c.verify(b"response", &sig, &sk.public_key()).is_ok());
        assert_eq!((c.hits(), c.misses()), (1, 0));
    }

    #[test]
    fn bounded_with_two_generations() {
        let c = VerifiedSigs::new(4);
        let sk = key(4);
        let pk = sk.public_key();
        let msgs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i]).collect();
        let sigs: Vec<Signature> = msgs.iter().map(|m| c.sign(&sk, m)).collect();
        assert!(c.len() <= 8);
        // The last ones are still known, the first ones are gone but still verify.
        assert!(c.verify(&msgs[19], &sigs[19], &pk).is_ok());
        assert_eq!(c.hits(), 1);
        assert!(c.verify(&msgs[0], &sigs[0], &pk).is_ok());
        assert_eq!(c.misses(), 1);
        assert!(c.len() <= 8);
        // Disabled: stores nothing, verdicts unchanged.
        let off = VerifiedSigs::new(0);
        assert!(off.verify(&msgs[0], &sigs[0], &pk).is_ok());
        assert!(off.verify(&msgs[0], &sigs[0], &pk).is_ok());
        assert_eq!((off.len(), off.hits(), off.misses()), (0, 0, 2));
    }

    #[test]
    fn tampered_item_fails_with_the_cache_warm() {
        let c = VerifiedSigs::new(64);
        let keys: Vec<SecretKey> = (10..16u8).map(key).collect();
        let pks: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
        let msgs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 100]).collect();
        let mut sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| c.sign(k, m)).collect();
        let items =
            |sigs: &[Signature], msgs: &[Vec<u8>]| -> Vec<(Vec<u8>, Signature, PublicKey)> {
                msgs.iter()
                    .cloned()
                    .zip(sigs.iter().copied())
                    .zip(pks.iter().copied())
                    .map(|((m, s), p)| (m, s, p))
                    .collect()
            };
        let check = |owned: &[(Vec<u8>, Signature, PublicKey)]| {
            let v: Vec<(&[u8], &Signature, &PublicKey)> =
                owned.iter().map(|(m, s, p)| (m.as_slice(), s, p)).collect();
            let cached = c.verify_many(&v);
            assert_eq!(
                cached,
                verify_many(&v),
                "same verdicts with and without the cache"
            );
            cached
        };
        assert_eq!(check(&items(&sigs, &msgs)), vec![true; 6]);
        assert_eq!(c.hits(), 6);
        // A tampered signature and a tampered message: their triples are not in the cache.
        sigs[2].0[50] ^= 0x10;
        let mut msgs2 = msgs.clone();
        msgs2[4][7] ^= 1;
        assert_eq!(
            check(&items(&sigs, &msgs2)),
            vec![true, true, false, true, false, true]
        );
        // What verify_many verified is stored; what failed is not.
        let before = c.len();
        let fresh = key(20);
        let m = b"fresh".to_vec();
        let s = fresh.sign(&m);
        let p = fresh.public_key();
        let mut bad = s;
        bad.0[40] ^= 1;
        assert_eq!(
            c.verify_many(&[(&m, &s, &p), (&m, &bad, &p)]),
            vec![true, false]
        );
        assert_eq!(c.len(), before + 1);
        let hits = c.hits();
        assert_eq!(
            c.verify_many(&[(&m, &s, &p), (&m, &bad, &p)]),
            vec![true, false]
        );
        assert_eq!(
            c.hits(),
            hits + 1,
            "the good one is now known, the bad one never"
        );
    }

    #[test]
    fn repeats_in_one_call_are_checked_once_with_the_same_verdict() {
        let c = VerifiedSigs::new(64);
        let sk = key(30);
        let pk = sk.public_key();
        let root = b"batch root".to_vec();
        let good = sk.sign(&root);
        let mut bad = good;
        bad.0[10] ^= 4;
        let other = b"other".to_vec();
        let other_sig = sk.sign(&other);
        // A batch signature shared by three transactions, a bad one twice, another once.
        let v: Vec<(&[u8], &Signature, &PublicKey)> = vec![
            (&root, &good, &pk),
            (&root, &bad, &pk),
            (&root, &good, &pk),
            (&other, &other_sig, &pk),
            (&root, &bad, &pk),
            (&root, &good, &pk),
        ];
        let verdicts = c.verify_many(&v);
        assert_eq!(verdicts, verify_many(&v), "same verdicts as checking each");
        assert_eq!(verdicts, vec![true, false, true, true, false, true]);
        // Three distinct triples looked up (and missed), three repeats served: hits.
        assert_eq!((c.hits(), c.misses()), (3, 3));
        // The good ones are stored, the bad one is not.
        assert_eq!(c.len(), 2);
        assert_eq!(c.verify_many(&v[..2]), vec![true, false]);
        assert_eq!((c.hits(), c.misses()), (4, 4));
    }
}
