//! ed25519 keys and signatures.
//!
//! Verification is strict (`verify_strict`): it refuses small-order keys and non-canonical
//! signatures, so one signature has one meaning on every node. Weak (small-order) public keys
//! are refused when a key is parsed, so they never get into a certificate. Batch verification
//! is used where many signatures are checked at once; when a batch fails, every signature is
//! checked on its own so that the verdict for each is exactly what `verify_strict` says.

use std::fmt;

use ed25519_dalek::{Signer, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::fixed_bytes::FixedVisitor;

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The 32 bytes are not a valid ed25519 point.
    #[error("not a valid ed25519 public key")]
    InvalidPublicKey,
    /// The key has small order: anyone could forge signatures for it.
    #[error("weak (small-order) ed25519 public key")]
    WeakPublicKey,
    /// The signature does not verify under the key.
    #[error("signature does not verify")]
    BadSignature,
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
    /// Hex or length was wrong.
    #[error("bad key encoding: {0}")]
    Encoding(String),
}

/// An ed25519 signing key. Its bytes are wiped when it is dropped.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_bytes(&seed))
    }

    /// The key from its 32-byte seed.
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        SecretKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The key from 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(s.trim(), seed.as_mut())
            .map_err(|_| KeyError::Encoding("a secret key is 64 hex characters".into()))?;
        Ok(Self::from_bytes(&seed))
    }

    /// The 32-byte seed, in a buffer wiped on drop.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    /// The seed as hex, in a string wiped on drop.
    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(self.0.to_bytes()))
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.0.sign(msg).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(pub={})", self.public_key())
    }
}

/// An ed25519 public key (32 bytes, compressed Edwards point).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Checks that the bytes are a valid, non-weak key.
    pub fn validate(&self) -> Result<(), KeyError> {
        self.verifying_key().map(|_| ())
    }

    fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::InvalidPublicKey)?;
        if vk.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        Ok(vk)
    }

    /// Strictly verifies `sig` over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        let vk = self.verifying_key()?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        vk.verify_strict(msg, &sig)
            .map_err(|_| KeyError::BadSignature)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters and validates the key.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out)
            .map_err(|_| KeyError::Encoding("a public key is 64 hex characters".into()))?;
        let pk = PublicKey(out);
        pk.validate()?;
        Ok(pk)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(&self.0[..8]))
    }
}

/// Verifies many signatures. Returns, for each item, whether it verified strictly.
///
/// The whole batch is tried first (about twice as fast per signature); if the batch fails,
/// each item is checked with `verify_strict` so that one bad signature does not condemn the
/// others and the verdicts equal those of [`PublicKey::verify`].
pub fn verify_many(items: &[(&[u8], &Signature, &PublicKey)]) -> Vec<bool> {
    if items.is_empty() {
        return Vec::new();
    }
    let mut keys = Vec::with_capacity(items.len());
    for (_, _, pk) in items {
        match pk.verifying_key() {
            Ok(vk) => keys.push(vk),
            Err(_) => return one_by_one(items),
        }
    }
    let msgs: Vec<&[u8]> = items.iter().map(|(m, _, _)| *m).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, s, _)| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    if items.len() > 1 && ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        // The batch equation holds; confirm the strictness rules (canonical R and s) that the
        // batch check does not apply, cheaply, by re-checking with verify_strict only when
        // a signature's R is of small order. verify_strict is the reference: fall back fully.
        return one_by_one_if_needed(items);
    }
    one_by_one(items)
}

fn one_by_one(items: &[(&[u8], &Signature, &PublicKey)]) -> Vec<bool> {
    items
        .iter()
        .map(|(m, s, pk)| pk.verify(m, s).is_ok())
        .collect()
}

/// After a successful batch: signatures whose R encodes a small-order point are the only ones
/// verify_strict could still refuse; check those on their own.
fn one_by_one_if_needed(items: &[(&[u8], &Signature, &PublicKey)]) -> Vec<bool> {
    items
        .iter()
        .map(|(m, s, pk)| {
            if r_is_small_order(s) {
                pk.verify(m, s).is_ok()
            } else {
                true
            }
        })
        .collect()
}

fn r_is_small_order(sig: &Signature) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig.0[..32]);
    match VerifyingKey::from_bytes(&r) {
        Ok(point) => point.is_weak(),
        // Not even a point: the batch could not have passed; be safe.
        Err(_) => true,
    }
}

macro_rules! bytes_serde {
    ($t:ty, $n:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_bytes(FixedVisitor::<$n>).map(Self)
            }
        }
    };
}
bytes_serde!(PublicKey, 32);
bytes_serde!(Signature, 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify() {
        let sk = SecretKey::generate().unwrap();
        let pk = sk.public_key();
        let sig = sk.sign(b"hello");
        assert!(pk.verify(b"hello", &sig).is_ok());
        assert_eq!(pk.verify(b"hellp", &sig), Err(KeyError::BadSignature));
        let other = SecretKey::generate().unwrap().public_key();
        assert_eq!(other.verify(b"hello", &sig), Err(KeyError::BadSignature));
    }

    #[test]
    fn weak_key_refused() {
        // The identity point (y = 1) has small order.
        let mut id = [0u8; 32];
        id[0] = 1;
        assert_eq!(PublicKey(id).validate(), Err(KeyError::WeakPublicKey));
    }

    #[test]
    fn batch_matches_one_by_one() {
        let keys: Vec<SecretKey> = (0..8u8).map(|i| SecretKey::from_bytes(&[i; 32])).collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let pks: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
        let items = |sigs: &Vec<Signature>| -> Vec<bool> {
            let v: Vec<(&[u8], &Signature, &PublicKey)> = msgs
                .iter()
                .zip(sigs.iter())
                .zip(pks.iter())
                .map(|((m, s), p)| (m.as_slice(), s, p))
                .collect();
            verify_many(&v)
        };
        assert_eq!(items(&sigs), vec![true; 8]);
        sigs[3].0[5] ^= 1;
        let mut expect = vec![true; 8];
        expect[3] = false;
        assert_eq!(items(&sigs), expect);
    }

    #[test]
    fn hex_round_trip() {
        let sk = SecretKey::generate().unwrap();
        let back = SecretKey::from_hex(&sk.to_hex()).unwrap();
        assert_eq!(back.public_key(), sk.public_key());
        assert_eq!(
            PublicKey::from_hex(&sk.public_key().to_hex()).unwrap(),
            sk.public_key()
        );
        assert!(PublicKey::from_hex("00").is_err());
    }
}
