//! A bounded cache of certificates whose CA signature has been checked.
//!
//! Every transaction carries its creator's certificate and one certificate per endorsement; in
//! steady state they are the same few dozen certificates block after block. Checking a CA
//! signature costs about as much as checking the transaction's own signature, so verdicts are
//! remembered.
//!
//! The key is the issuer's signature (64 bytes) and a hit requires the stored certificate to be
//! *equal* to the one presented: the cache is keyed by the certificate's identity as surely as
//! by [`Certificate::fingerprint`], without encoding and hashing every certificate of every
//! transaction (about 2 us each, 5 per transaction). Only certificates whose CA signature
//! verified are stored; validity dates are not cached (they depend on the block time).
//!
//! Bounded with two generations: when the current one is full it becomes the old one and the
//! previous old one is dropped; a hit in the old generation moves the entry back. Memory stays
//! under `2 * capacity` certificates and hot entries survive.

use std::collections::HashMap;

use sphr_crypto::cert::Certificate;

/// Default number of certificates per generation.
pub const DEFAULT_CERT_CACHE_CAPACITY: usize = 4096;

/// Certificates whose CA signature verified, keyed by that signature.
#[derive(Debug)]
pub struct CertCache {
    current: HashMap<[u8; 64], Certificate>,
    old: HashMap<[u8; 64], Certificate>,
    capacity: usize,
}

impl Default for CertCache {
    fn default() -> Self {
        Self::new(DEFAULT_CERT_CACHE_CAPACITY)
    }
}

impl CertCache {
    /// A cache holding at most `2 * capacity` certificates (capacity at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        CertCache {
            current: HashMap::with_capacity(capacity.min(1024)),
            old: HashMap::new(),
            capacity,
        }
    }

    /// Whether `cert` (exactly this certificate) is known to carry a valid CA signature.
    pub fn contains(&mut self, cert: &Certificate) -> bool {
        let key = &cert.signature.0;
        if let Some(c) = self.current.get(key) {
            return c == cert;
        }
        match self.old.remove(key) {
            Some(c) if c == *cert => {
                self.insert(c);
                true
            }
            Some(c) => {
                // Same signature, different body: not this certificate. Keep the stored one.
                self.old.insert(c.signature.0, c);
                false
            }
            None => false,
        }
    }

    /// Remembers that `cert`'s CA signature verified.
    pub fn insert(&mut self, cert: Certificate) {
        if self.current.len() >= self.capacity {
            self.old = std::mem::take(&mut self.current);
        }
        self.current.insert(cert.signature.0, cert);
    }

    /// Number of certificates held.
    pub fn len(&self) -> usize {
        self.current.len() + self.old.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphr_crypto::cert::{CertificateBody, Role};
    use sphr_crypto::keys::SecretKey;

    fn cert(i: u8) -> Certificate {
        let ca = SecretKey::from_bytes(&[1; 32]);
        Certificate::issue(
            &ca,
            CertificateBody {
                subject: format!("u{i}"),
                org: "Org1".into(),
                role: Role::Client,
                public_key: SecretKey::from_bytes(&[i; 32]).public_key(),
                pre_public_key: None,
                not_before: 0,
                not_after: 10,
            },
        )
        .unwrap()
    }

    #[test]
    fn bounded_and_keeps_hot_entries() {
        let mut c = CertCache::new(4);
        let certs: Vec<Certificate> = (10..30).map(cert).collect();
        for x in &certs {
            c.insert(x.clone());
            assert!(c.contains(&certs[0]) || c.len() <= 8);
            assert!(c.len() <= 8);
        }
        assert!(c.contains(&certs[19]));
        assert!(!c.contains(&cert(99)));
    }

    #[test]
    fn same_signature_other_body_is_a_miss() {
        let mut c = CertCache::new(4);
        let good = cert(10);
        c.insert(good.clone());
        let mut forged = good.clone();
        forged.body.subject = "mallory".into();
        assert!(!c.contains(&forged));
        assert!(c.contains(&good));
        // Also when the genuine one sits in the old generation.
        for i in 11..15 {
            c.insert(cert(i));
        }
        assert!(!c.contains(&forged));
        assert!(c.contains(&good));
    }
}
