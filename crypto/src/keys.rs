//! ed25519 keys and signatures.
//!
//! Signing is RFC 8032 (ed25519-dalek). Verification follows **ZIP-215** (ed25519-zebra): a
//! signature is valid when `[8][s]B = [8]R + [8][k]A`, with `s` canonical (below the group
//! order) and `R`, `A` any encoding of a curve point. ZIP-215 is the rule under which a batch
//! check gives, for every signature in it, exactly the verdict of checking it alone, whatever
//! else shares the batch and whatever random coefficients it draws. That is what lets
//! [`verify_many`] use a batch equation (about 19 us a signature here, against 31 to 33 us one
//! by one) while every node still reaches the same verdict on every transaction, though each
//! node batches different signatures (each skips those it has verified already). The
//! cofactorless `verify_strict` used before has no batch form with that property: a signature
//! with a small-order component in `R` fails alone and passes some batches.
//!
//! What ZIP-215 accepts beyond `verify_strict`: signatures whose `R` has a small-order
//! component or a non-canonical encoding. Only the key's holder can make them (`s` still needs
//! the secret key), so they are other encodings of a signature, not forgeries; sphr never
//! names anything by a signature's bytes (a transaction id is the hash of its proposal).
//! Weak (small-order) public keys are still refused when a key is parsed, so they never get
//! into a certificate: for such a key anyone could make signatures that verify.
//!
//! Decompressed keys are kept in a small bounded cache (keys are few; decompressing one costs
//! about a tenth of a verification).

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use ed25519_dalek::{Signer, VerifyingKey};
use ed25519_zebra::{VerificationKey, VerificationKeyBytes};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::hash::fixed_bytes::FixedVisitor;

/// Shards of the cache of decompressed keys (by the key's first byte).
const KEY_CACHE_SHARDS: usize = 16;
/// Keys per shard; a full shard is emptied. Certificate keys (CAs, nodes, users) are few.
const KEY_CACHE_PER_SHARD: usize = 256;

/// One shard of [`KEY_CACHE`].
type KeyShard = Mutex<HashMap<[u8; 32], VerificationKey>>;

/// Valid, non-weak keys already decompressed in this process, by their 32 bytes. Decompressing
/// costs a field exponentiation (about 3 us); a hit costs a lock and a lookup.
static KEY_CACHE: LazyLock<Vec<KeyShard>> = LazyLock::new(|| {
    (0..KEY_CACHE_SHARDS)
        .map(|_| Mutex::new(HashMap::new()))
        .collect()
});

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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

/// 32 bytes from the operating system's random source, for nonces (not for keys: a key's
/// seed is made and wiped inside [`SecretKey::generate`]). Costs a system call, where making
/// a key to borrow its seed would also compute a public key (a scalar multiplication).
pub fn random_nonce() -> Result<[u8; 32], KeyError> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(nonce)
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

    /// The decompressed key, from the cache of valid keys when it is there.
    fn verifying_key(&self) -> Result<VerificationKey, KeyError> {
        let shard = KEY_CACHE.get(usize::from(self.0[0]) % KEY_CACHE_SHARDS);
        if let Some(vk) = shard.and_then(|m| lock(m).get(&self.0).copied()) {
            return Ok(vk);
        }
        // The point check and the small-order check; the verifier's own form of the key.
        let point = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::InvalidPublicKey)?;
        if point.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        let vk = VerificationKey::try_from(self.0).map_err(|_| KeyError::InvalidPublicKey)?;
        if let Some(m) = shard {
            let mut m = lock(m);
            if m.len() >= KEY_CACHE_PER_SHARD {
                m.clear();
            }
            m.insert(self.0, vk);
        }
        Ok(vk)
    }

    /// Verifies `sig` over `msg` (ZIP-215, see the module docs).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        let vk = self.verifying_key()?;
        vk.verify(&sig.to_zebra(), msg)
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

impl Signature {
    fn to_zebra(self) -> ed25519_zebra::Signature {
        ed25519_zebra::Signature::from_bytes(&self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(&self.0[..8]))
    }
}

/// Names one (key, message, signature) triple: SHA-256 over a domain tag, the key, the
/// signature and the message (the first two have fixed lengths, so the parts are unambiguous).
///
/// [`crate::sigcache::VerifiedSigs`] keys its entries by it.
pub fn signature_digest(msg: &[u8], sig: &Signature, pk: &PublicKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sphr-ed25519-signature-v1");
    h.update(pk.0);
    h.update(sig.0);
    h.update(msg);
    h.finalize().into()
}

/// Verifies many signatures. Returns, for each item, whether it verified: exactly what
/// [`PublicKey::verify`] says of each item alone.
///
/// Two or more items are checked with one ZIP-215 batch equation (random 128-bit
/// coefficients from the operating system); under ZIP-215 the batch holds if and only if every
/// item verifies alone (but for a chance of 2^-128), so the verdicts do not depend on what
/// shares the batch. When the batch fails, each item is checked alone to say which: a batch
/// with a bad signature costs its batch check plus single checks.
pub fn verify_many(items: &[(&[u8], &Signature, &PublicKey)]) -> Vec<bool> {
    verify_many_known(items, &[])
}

/// [`verify_many`] where `known[i]` says item `i` already passed [`PublicKey::verify`] in this
/// process (a missing entry is false). A known item is true without work; the others are
/// verified, so the verdicts are exactly those of [`verify_many`], whatever this process
/// happens to know. Only ever mark as known what verified.
pub(crate) fn verify_many_known(
    items: &[(&[u8], &Signature, &PublicKey)],
    known: &[bool],
) -> Vec<bool> {
    let mut out: Vec<bool> = (0..items.len())
        .map(|i| known.get(i).copied().unwrap_or(false))
        .collect();
    // Items to check: their key parses and is not weak (an item whose key does not is false).
    let todo: Vec<usize> = (0..items.len())
        .filter(|&i| !out[i] && items[i].2.verifying_key().is_ok())
        .collect();
    if let [i] = todo[..] {
        let (m, s, pk) = items[i];
        out[i] = pk.verify(m, s).is_ok();
        return out;
    }
    if todo.is_empty() {
        return out;
    }
    if batch_holds(items, &todo) {
        for i in todo {
            out[i] = true;
        }
    } else {
        for i in todo {
            let (m, s, pk) = items[i];
            out[i] = pk.verify(m, s).is_ok();
        }
    }
    out
}

/// Bytes of randomness the batch verifier draws per signature (one 128-bit coefficient).
const BATCH_RANDOM_BYTES_PER_ITEM: usize = 16;

/// Whether the ZIP-215 batch equation over `items[todo]` holds. False also when the
/// operating system's random source fails (the caller then checks each item alone).
fn batch_holds(items: &[(&[u8], &Signature, &PublicKey)], todo: &[usize]) -> bool {
    let mut rng = match BatchRandom::new(todo.len() * BATCH_RANDOM_BYTES_PER_ITEM) {
        Ok(r) => r,
        Err(_) => return false,
    };
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for &i in todo {
        let (m, s, pk) = items[i];
        batch.queue((VerificationKeyBytes::from(pk.0), s.to_zebra(), m));
    }
    let ok = batch.verify(&mut rng).is_ok();
    ok && !rng.failed
}

/// The batch verifier's coefficients: random bytes fetched from the operating system up front
/// (where a failure can be handled), then handed out; more than was fetched is fetched again,
/// and a failure then is remembered so that the batch's verdict is not used.
struct BatchRandom {
    buf: Vec<u8>,
    at: usize,
    failed: bool,
}

impl BatchRandom {
    fn new(n: usize) -> Result<Self, KeyError> {
        let mut buf = vec![0u8; n];
        getrandom::fill(&mut buf).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(BatchRandom {
            buf,
            at: 0,
            failed: false,
        })
    }
}

impl rand_core_06::RngCore for BatchRandom {
    fn next_u32(&mut self) -> u32 {
        rand_core_06::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core_06::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let left = self.buf.len() - self.at;
        if dest.len() <= left {
            dest.copy_from_slice(&self.buf[self.at..self.at + dest.len()]);
            self.at += dest.len();
        } else if getrandom::fill(dest).is_err() {
            self.failed = true;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core_06::CryptoRng for BatchRandom {}

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
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::edwards::EdwardsPoint;
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::IsIdentity;
    use sha2::Sha512;

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
    fn nonces_differ() {
        let a = random_nonce().unwrap();
        let b = random_nonce().unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
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

    /// The secret scalar `a` of an ed25519 key (A = aB), as RFC 8032 derives it from the seed.
    fn secret_scalar(seed: &[u8; 32]) -> Scalar {
        let h: [u8; 64] = Sha512::digest(seed).into();
        let mut a = [0u8; 32];
        a.copy_from_slice(&h[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        Scalar::from_bytes_mod_order(a)
    }

    fn hram(r: &[u8; 32], pk: &PublicKey, msg: &[u8]) -> Scalar {
        let mut h = Sha512::new();
        h.update(r);
        h.update(pk.0);
        h.update(msg);
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    }

    /// A signature of `seed`'s key over `msg` with R = [nonce]B + torsion and
    /// s = nonce + k a, so that [s]B = R - torsion + [k]A.
    fn crafted(seed: &[u8; 32], msg: &[u8], nonce: Scalar, torsion: EdwardsPoint) -> Signature {
        let r = (ED25519_BASEPOINT_POINT * nonce + torsion)
            .compress()
            .to_bytes();
        crafted_with_r(seed, msg, nonce, r)
    }

    /// A signature with R given as bytes (any encoding of [nonce]B plus torsion) and
    /// s = nonce + k a, k hashed over those bytes.
    fn crafted_with_r(seed: &[u8; 32], msg: &[u8], nonce: Scalar, r: [u8; 32]) -> Signature {
        let pk = SecretKey::from_bytes(seed).public_key();
        let s = nonce + hram(&r, &pk, msg) * secret_scalar(seed);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(s.as_bytes());
        Signature(sig)
    }

    /// Signatures of 6 keys over distinct messages, two of them by the same key.
    fn good_items() -> (Vec<PublicKey>, Vec<Vec<u8>>, Vec<Signature>) {
        let keys: Vec<SecretKey> = [1u8, 2, 3, 4, 5, 1]
            .iter()
            .map(|i| SecretKey::from_bytes(&[*i; 32]))
            .collect();
        let msgs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 40]).collect();
        let sigs = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        (keys.iter().map(|k| k.public_key()).collect(), msgs, sigs)
    }

    fn run(pks: &[PublicKey], msgs: &[Vec<u8>], sigs: &[Signature]) -> Vec<bool> {
        let items: Vec<(&[u8], &Signature, &PublicKey)> = msgs
            .iter()
            .zip(sigs)
            .zip(pks)
            .map(|((m, s), p)| (m.as_slice(), s, p))
            .collect();
        verify_many(&items)
    }

    /// The edge cases where ed25519 rules differ: each gets the same verdict alone and in
    /// every position of a batch, and the verdict is ZIP-215's (`verify_strict`'s differs
    /// where the comment says).
    #[test]
    fn crafted_signatures_same_verdict_alone_and_in_batches() {
        let seed = [9u8; 32];
        let pk = SecretKey::from_bytes(&seed).public_key();
        let dalek = VerifyingKey::from_bytes(&pk.0).unwrap();
        let msg = b"crafted".to_vec();
        // The helper itself makes valid signatures when there is no torsion.
        let fine = crafted(&seed, &msg, Scalar::from(12345u64), EdwardsPoint::default());
        assert!(pk.verify(&msg, &fine).is_ok());

        let order8 = curve25519_dalek::constants::EIGHT_TORSION[1];
        let order2 = curve25519_dalek::constants::EIGHT_TORSION[4];
        assert!(order8.is_small_order() && !order8.is_identity());
        assert!(!order2.is_identity() && (order2 + order2).is_identity());
        let torsion8 = crafted(&seed, &msg, Scalar::from(777u64), order8);
        // s + l: the same point equation, a non-canonical scalar.
        let non_canonical_s = {
            let mut sig = fine;
            let s = Scalar::from_canonical_bytes(sig.0[32..].try_into().unwrap()).unwrap();
            let mut wide = [0u8; 32];
            // s + l as a 256-bit integer (s < l < 2^253: no overflow).
            let mut l = [0u8; 32];
            l[..16].copy_from_slice(&[
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
                0xde, 0x14,
            ]);
            l[31] = 0x10;
            assert_eq!(Scalar::from_bytes_mod_order(l), Scalar::ZERO);
            let mut carry = 0u16;
            for (i, w) in wide.iter_mut().enumerate() {
                let v = u16::from(s.as_bytes()[i]) + u16::from(l[i]) + carry;
                *w = v as u8;
                carry = v >> 8;
            }
            sig.0[32..].copy_from_slice(&wide);
            sig
        };
        // The identity's y = 1 encoded as 1 + p = 2^255 - 18.
        let mut identity_plus_p = [0xffu8; 32];
        identity_plus_p[0] = 0xee;
        identity_plus_p[31] = 0x7f;
        let mut torsion_wrong_s = torsion8;
        torsion_wrong_s.0[32] ^= 1;

        // (what, signature, ZIP-215 verdict, verify_strict verdict)
        let cases: Vec<(&str, Signature, bool, bool)> = vec![
            ("plain", fine, true, true),
            // R = identity, s = k a: the equation holds, R has small order.
            (
                "small-order R",
                crafted(&seed, &msg, Scalar::ZERO, EdwardsPoint::default()),
                true,
                false,
            ),
            // R = rB + T: the cofactorless equation is off by T, the cofactored one holds.
            ("order-8 torsion in R", torsion8, true, false),
            (
                "order-2 torsion in R",
                crafted(&seed, &msg, Scalar::from(778u64), order2),
                true,
                false,
            ),
            ("non-canonical s", non_canonical_s, false, false),
            (
                "non-canonical R",
                crafted_with_r(&seed, &msg, Scalar::ZERO, identity_plus_p),
                true,
                false,
            ),
            ("torsion in R and a wrong s", torsion_wrong_s, false, false),
        ];
        let (pks, msgs, sigs) = good_items();
        for (what, sig, zip215, strict) in cases {
            let alone = pk.verify(&msg, &sig).is_ok();
            assert_eq!(alone, zip215, "{what}: alone");
            let d = ed25519_dalek::Signature::from_bytes(&sig.0);
            assert_eq!(
                dalek.verify_strict(&msg, &d).is_ok(),
                strict,
                "{what}: strict"
            );
            assert_eq!(
                run(&[pk], std::slice::from_ref(&msg), &[sig]),
                vec![zip215],
                "{what}"
            );
            // First, in the middle and last of a batch of good signatures; and twice, so a
            // batch holds two of it (two torsion components could cancel in a batch whose
            // equation is not cofactored).
            for at in [0, 3, 6] {
                let (mut p, mut m, mut s) = (pks.clone(), msgs.clone(), sigs.clone());
                p.insert(at, pk);
                m.insert(at, msg.clone());
                s.insert(at, sig);
                let mut expect = vec![true; 7];
                expect[at] = zip215;
                assert_eq!(run(&p, &m, &s), expect, "{what} at {at}");
                p.push(pk);
                m.push(msg.clone());
                s.push(sig);
                expect.push(zip215);
                assert_eq!(run(&p, &m, &s), expect, "{what} twice, at {at}");
            }
        }
    }

    /// Many batches of good, torsion-crafted and bad signatures in random order: the batch
    /// verdicts are the single verdicts, item by item.
    #[test]
    fn batch_verdicts_are_single_verdicts() {
        let order = curve25519_dalek::constants::EIGHT_TORSION;
        let seeds: Vec<[u8; 32]> = (1..=5u8).map(|i| [i; 32]).collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..40 {
            let n = 2 + (next() % 12) as usize;
            let mut pks = Vec::new();
            let mut msgs = Vec::new();
            let mut sigs = Vec::new();
            for j in 0..n {
                let seed = seeds[(next() % 5) as usize];
                let msg = format!("round {round} item {j}").into_bytes();
                let t = order[(next() % 8) as usize];
                let mut sig = crafted(&seed, &msg, Scalar::from(next()), t);
                if next() % 4 == 0 {
                    sig.0[33] ^= 1 << (next() % 8);
                }
                pks.push(SecretKey::from_bytes(&seed).public_key());
                msgs.push(msg);
                sigs.push(sig);
            }
            let alone: Vec<bool> = (0..n)
                .map(|i| pks[i].verify(&msgs[i], &sigs[i]).is_ok())
                .collect();
            assert_eq!(run(&pks, &msgs, &sigs), alone, "round {round}");
        }
    }

    #[test]
    fn forged_and_weak_refused_in_batches() {
        let (mut pks, msgs, mut sigs) = good_items();
        assert_eq!(run(&pks, &msgs, &sigs), vec![true; 6]);
        // Another key's valid signature over the same message.
        sigs[2] = SecretKey::from_bytes(&[42; 32]).sign(&msgs[2]);
        // A weak key (the identity point).
        let mut id = [0u8; 32];
        id[0] = 1;
        pks[4] = PublicKey(id);
        // A key that is not a point.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert!(PublicKey(bad).validate().is_err());
        pks[5] = PublicKey(bad);
        assert_eq!(
            run(&pks, &msgs, &sigs),
            vec![true, true, false, true, false, false]
        );
    }

    #[test]
    fn known_items_do_not_change_verdicts() {
        let (pks, msgs, mut sigs) = good_items();
        sigs[1].0[40] ^= 1;
        let items: Vec<(&[u8], &Signature, &PublicKey)> = msgs
            .iter()
            .zip(&sigs)
            .zip(&pks)
            .map(|((m, s), p)| (m.as_slice(), s, p))
            .collect();
        let expect = vec![true, false, true, true, true, true];
        assert_eq!(verify_many(&items), expect);
        for known in [
            vec![true, false, false, false, false, false],
            vec![true, false, true, true, true, false],
            vec![true, false, true, true, true, true],
        ] {
            assert_eq!(verify_many_known(&items, &known), expect);
        }
    }

    #[test]
    fn key_cache_keeps_verdicts() {
        let sk = SecretKey::from_bytes(&[77; 32]);
        let pk = sk.public_key();
        let sig = sk.sign(b"m");
        for _ in 0..3 {
            assert!(pk.verify(b"m", &sig).is_ok());
            assert_eq!(pk.verify(b"n", &sig), Err(KeyError::BadSignature));
        }
        // Weak and invalid keys are never cached: refused every time.
        let mut id = [0u8; 32];
        id[0] = 1;
        for _ in 0..3 {
            assert_eq!(
                PublicKey(id).verify(b"m", &sig),
                Err(KeyError::WeakPublicKey)
            );
        }
        // More keys than a shard holds: still right after the shard is emptied.
        for i in 0..(KEY_CACHE_PER_SHARD * 2) {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let k = SecretKey::from_bytes(&seed);
            assert!(k.public_key().verify(b"x", &k.sign(b"x")).is_ok());
        }
        assert!(
            KEY_CACHE
                .iter()
                .all(|m| lock(m).len() <= KEY_CACHE_PER_SHARD)
        );
        assert!(pk.verify(b"m", &sig).is_ok());
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
