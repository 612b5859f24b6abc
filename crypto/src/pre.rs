//! AFGH proxy re-encryption (Ateniese, Fu, Green, Hohenberger; seed 003, chapter 4) on
//! BLS12-381 with blst, asymmetric setting, with a ChaCha20-Poly1305 payload.
//!
//! # Scheme
//!
//! `g1`, `g2` generate G1 and G2, `e: G1 x G2 -> GT` is the optimal ate pairing and
//! `Z = e(g1, g2)`.
//!
//! | step | who | computes |
//! | --- | --- | --- |
//! | key generation | everyone | `sk = (a1, a2)` random in `1..r`; `pk = (Z^a1, g2^a2)` |
//! | re-encryption key A -> B | A only (needs `a1`) | `rk = (g2^b2)^a1 = g2^(a1*b2)` |
//! | seal to A | anyone | random `k`; `c1 = g1^k`; `shared = (Z^a1)^k` |
//! | open (A) | A | `shared = e(c1, g2^a1)` |
//! | re-encrypt | any node, inside a contract | `c1' = e(c1, rk) = Z^(k*a1*b2)` |
//! | open re-encrypted (B) | B | `shared = c1'^(1/b2) = Z^(k*a1)` |
//!
//! The shared GT element goes through HKDF-SHA256 to a ChaCha20-Poly1305 key that seals the
//! payload:
//!
//! ```text
//!   seal(pk_A, m, aad)                     reencrypt(rk_AB)                open_reencrypted(sk_B)
//!   k <- random                            (deterministic)
//!   c1 = g1^k ----------------------------> c1' = e(c1, rk) ----------------> shared = c1'^(1/b2)
//!   shared = (Z^a1)^k                        c1, ct copied                     key = HKDF(shared)
//!   key = HKDF(shared)                                                          m = Open(key, ct,
//!   ct = Seal(key, nonce 0, m, c1 || aad)                                            c1 || aad)
//!                  \--------- open(sk_A): shared = e(c1, g2^a1) ----------------------/
//! ```
//!
//! Re-encryption uses only public data and has no randomness: every endorsing node computes
//! byte-identical output (GT elements are encoded canonically; see below). Only the owner of
//! `a1` can delegate, and a delegatee cannot delegate further (the scheme is single-hop and
//! unidirectional); but read the first security note on what a delegation gives away.
//!
//! # Security notes for callers
//!
//! - **A re-encryption key plus the delegatee's key open everything.** From a public `rk` and
//!   its own `b2`, a delegatee computes `rk^(1/b2) = g2^a1` and then opens *every* ciphertext
//!   sealed to A (`e(c1, g2^a1)`), re-encrypted or not, past and future. This is inherent to AFGH
//!   (the paper's "weak secret", which a colluding proxy and delegatee can always compute; the
//!   owner's `a1` and `a2` stay safe); it matters here because keys stored on a ledger are public
//!   to every org. So a grant is for all that is sealed to that key pair, and cannot be revoked
//!   short of a new key pair: give a patient one key pair per consent scope (tag, category)
//!   if grants must be narrower than "everything", and rotate it when a grant ends.
//! - Re-encryption does not authenticate anything: a node that computes a wrong `c1'` only makes
//!   the delegatee's opening fail (the AEAD catches it). Endorsement policy is what makes nodes
//!   agree on `c1'`.
//! - Sealing does not authenticate the sender: anyone can seal to a public key. Who wrote a
//!   sealed field is established by the signed transaction that carries it. The AEAD, with `c1`
//!   bound in, makes any change to a ciphertext (`c1`, `c1'`, body, associated data) fail to
//!   open rather than open to something else.
//!
//! # Key derivation and nonce
//!
//! `key = HKDF-SHA256(salt = none, ikm = bytes(shared), info = "sphr-afgh-v1")`, 32 bytes.
//! The associated data given to the AEAD is `c1 (48 bytes) || aad`, so a ciphertext cannot be
//! moved under another `c1`, and the caller can bind its own context (record id, field name).
//! The nonce is twelve zero bytes: each key seals exactly one message, because `k` is fresh and
//! uniform for every [`seal`] (two seals share a key only if they share `k`, probability
//! about 2^-254), and re-encryption never re-seals the payload, it only transforms `c1`.
//!
//! # Formats
//!
//! | item | bytes | encoding |
//! | --- | --- | --- |
//! | [`PreSecretKey`] | 64 | `a1 || a2`, each 32 bytes big-endian, in `1..r` |
//! | [`PrePublicKey`] | 672 | `Z^a1` (GT, 576) `||` `g2^a2` (G2 compressed, 96) |
//! | [`ReKey`] | 96 | G2 compressed |
//! | [`Sealed`] | 48 + n + 16 | `c1` (G1 compressed) `||` ChaCha20-Poly1305 ciphertext and tag |
//! | [`ReSealed`] | 48 + 576 + n + 16 | `c1 || c1' (GT) ||` ciphertext and tag |
//!
//! G1 and G2 points use the ZCash compressed encoding (as in the BLS signature standard).
//! A GT element is the six Fp2 coefficients of `1, w, ..., w^5` (with
//! `Fp12 = Fp2[w]/(w^6 - (1 + i))`), each Fp2 as `c0 || c1`, each Fp as 48 bytes big-endian
//! (blst's `blst_bendian_from_fp12` order). Decoding checks everything, and every decode path
//! (the `from_bytes` functions and serde) goes through it: the length, the encoding flags,
//! each Fp below p, the point on the curve, membership in the order-r subgroup (GT included),
//! and not the identity. With serde, keys are one byte string, ciphertexts a struct of byte
//! strings (`c1`, `c1_prime`, `ciphertext`).
//!
//! # Speed
//!
//! See the `bls` submodule for the methods (fixed-base tables, GLS splitting of GT exponents,
//! precomputed Miller lines) and `BENCHMARKS.md` for the figures. A [`PreparedPublicKey`] (about 480 KB)
//! makes repeated sealing to the same recipient faster; a [`ReKey`] computes its Miller lines on
//! its first re-encryption and keeps them. Sealing, opening and key generation run in time
//! independent of the secrets.

mod bls;
#[cfg(test)]
mod tests;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use bls::{G1, G1_LEN, G2, G2_LEN, GT_LEN, GlsDigits, Gt, GtTable, Lines, SCALAR_LEN, Scalar};

/// Bytes of an encoded [`PreSecretKey`].
pub const SECRET_KEY_LEN: usize = 2 * SCALAR_LEN;
/// Bytes of an encoded [`PrePublicKey`].
pub const PUBLIC_KEY_LEN: usize = GT_LEN + G2_LEN;
/// Bytes of an encoded [`ReKey`].
pub const REKEY_LEN: usize = G2_LEN;
/// Bytes of `c1` (a compressed G1 point).
pub const C1_LEN: usize = G1_LEN;
/// Bytes of `c1'` (a GT element).
pub const C1_PRIME_LEN: usize = GT_LEN;
/// Bytes the AEAD adds to the plaintext (the Poly1305 tag).
pub const TAG_LEN: usize = 16;
/// Largest plaintext [`seal`] accepts, and so the largest ciphertext any decode accepts
/// (plus [`TAG_LEN`]): 16 MiB. Sealed fields are small (a dosage, a lab report, a bundle key);
/// bundles themselves travel sealed under their own key, off chain.
pub const MAX_PLAINTEXT_LEN: usize = 16 << 20;

/// HKDF `info`: the domain separation of this scheme's payload keys.
const KDF_INFO: &[u8] = b"sphr-afgh-v1";

/// Errors of proxy re-encryption. Decoding errors mean the input came from a faulty or
/// malicious party: reject the transaction or message that carried it. [`PreError::Decryption`]
/// means the caller is not a recipient or the data was altered: report it, do not retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreError {
    /// A byte string has the wrong length. Reject the input.
    #[error("{what}: expected {expected} bytes, got {got}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A plaintext or ciphertext is over [`MAX_PLAINTEXT_LEN`]. Reject the input.
    #[error("{what}: {got} bytes is over the limit of {max}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// The limit.
        max: usize,
        /// The length given.
        got: usize,
    },
    /// Malformed point encoding (flag bits, coordinate not below p). Reject the input.
    #[error("{what}: bad encoding")]
    Encoding {
        /// What was being decoded.
        what: &'static str,
    },
    /// A GT coefficient is not below p: not the canonical encoding. Reject the input.
    #[error("{what}: field element is not below the modulus p")]
    NonCanonical {
        /// What was being decoded.
        what: &'static str,
    },
    /// The point is not on the curve. Reject the input.
    #[error("{what}: point is not on the curve")]
    NotOnCurve {
        /// What was being decoded.
        what: &'static str,
    },
    /// The element is not in the order-r subgroup (G1, G2 or GT). Reject the input.
    #[error("{what}: not in the prime-order subgroup")]
    NotInSubgroup {
        /// What was being decoded.
        what: &'static str,
    },
    /// The identity element (point at infinity, or 1 in GT), which would void the scheme.
    /// Reject the input.
    #[error("{what}: the identity element is not allowed")]
    Identity {
        /// What was being decoded.
        what: &'static str,
    },
    /// A secret-key scalar is zero or not below the group order r. The key file is corrupt.
    #[error("PRE secret key: scalar is zero or not below the group order")]
    InvalidScalar,
    /// The AEAD tag did not verify: wrong key (not a recipient, or a re-encryption key made
    /// for someone else), or the ciphertext, `c1`, `c1'` or the associated data were altered.
    #[error("decryption failed: wrong key, or altered ciphertext or associated data")]
    Decryption,
    /// HKDF refused the output length. Cannot happen with the fixed 32-byte key; kept so that
    /// no path panics.
    #[error("key derivation failed")]
    KeyDerivation,
    /// The operating system's random number generator failed. Stop: nothing can be sealed.
    #[error("operating-system randomness failed: {0}")]
    Random(getrandom::Error),
}

impl From<getrandom::Error> for PreError {
    fn from(e: getrandom::Error) -> Self {
        Self::Random(e)
    }
}

fn expect_len<'a, const N: usize>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<&'a [u8; N], PreError> {
    bytes.try_into().map_err(|_| PreError::Length {
        what,
        expected: N,
        got: bytes.len(),
    })
}

fn check_ciphertext_len(len: usize) -> Result<(), PreError> {
    if len < TAG_LEN {
        return Err(PreError::Length {
            what: "PRE ciphertext",
            expected: TAG_LEN,
            got: len,
        });
    }
    if len > MAX_PLAINTEXT_LEN + TAG_LEN {
        return Err(PreError::TooLong {
            what: "PRE ciphertext",
            max: MAX_PLAINTEXT_LEN + TAG_LEN,
            got: len,
        });
    }
    Ok(())
}

/// First eight bytes of SHA-256, in hex: enough to tell keys apart in logs and `Debug`.
fn fingerprint(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

// ---------------------------------------------------------------------------------------------
// Keys.

/// A proxy re-encryption secret key `(a1, a2)`.
///
/// `a1` opens ciphertexts sealed to this key and makes re-encryption keys; `a2` opens
/// ciphertexts re-encrypted to this key. Loading precomputes what makes opening fast (the
/// Miller lines of `g2^a1`, `1/a2` split for GT exponentiation) and the public key; all of it
/// is wiped on drop. `Debug` shows only the public key's fingerprint.
pub struct PreSecretKey {
    a1: Scalar,
    a2: Scalar,
    /// Lines of `g2^a1`: whoever holds them opens every ciphertext sealed to this key.
    owner_lines: Lines,
    /// `1/a2`, split in GLS digits.
    delegatee_exp: GlsDigits,
    public: PrePublicKey,
}

impl PreSecretKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, PreError> {
        let a1 = Scalar::random()?;
        let a2 = Scalar::random()?;
        Ok(Self::from_scalars(a1, a2))
    }

    /// Parses the 64-byte encoding `a1 || a2` (big-endian, each in `1..r`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PreError> {
        let bytes = expect_len::<SECRET_KEY_LEN>(bytes, "PRE secret key")?;
        let (b1, b2) = bytes.split_at(SCALAR_LEN);
        let a1 = expect_len::<SCALAR_LEN>(b1, "PRE secret key")
            .and_then(|b| Scalar::from_be_bytes(b).ok_or(PreError::InvalidScalar))?;
        let a2 = expect_len::<SCALAR_LEN>(b2, "PRE secret key")
            .and_then(|b| Scalar::from_be_bytes(b).ok_or(PreError::InvalidScalar))?;
        Ok(Self::from_scalars(a1, a2))
    }

    /// The 64-byte encoding `a1 || a2`, wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SECRET_KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; SECRET_KEY_LEN]);
        let (o1, o2) = out.split_at_mut(SCALAR_LEN);
        o1.copy_from_slice(&self.a1.to_be_bytes()[..]);
        o2.copy_from_slice(&self.a2.to_be_bytes()[..]);
        out
    }

    /// The public key `(Z^a1, g2^a2)`.
    pub fn public_key(&self) -> &PrePublicKey {
        &self.public
    }

    /// The re-encryption key from this key (the delegator, A) to `delegatee` (B):
    /// `rk = (g2^b2)^a1`.
    pub fn rekey_to(&self, delegatee: &PrePublicKey) -> ReKey {
        ReKey::from_point(delegatee.g2_a2.mul(&self.a1))
    }

    fn from_scalars(a1: Scalar, a2: Scalar) -> Self {
        let mut g2_a1 = G2::generator().mul(&a1);
        let owner_lines = Lines::new(&g2_a1);
        g2_a1.wipe();
        let delegatee_exp = GlsDigits::new(&a2.inverse());
        let z_a1 = bls::gt_pow(Gt::generator(), &GlsDigits::new(&a1));
        let g2_a2 = G2::generator().mul(&a2);
        Self {
            a1,
            a2,
            owner_lines,
            delegatee_exp,
            public: PrePublicKey { z_a1, g2_a2 },
        }
    }
}

impl Zeroize for PreSecretKey {
    fn zeroize(&mut self) {
        self.a1.wipe();
        self.a2.wipe();
        self.owner_lines.wipe();
        self.delegatee_exp.wipe();
    }
}

impl Drop for PreSecretKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for PreSecretKey {}

impl Clone for PreSecretKey {
    fn clone(&self) -> Self {
        Self {
            a1: self.a1.clone(),
            a2: self.a2.clone(),
            owner_lines: self.owner_lines.clone(),
            delegatee_exp: self.delegatee_exp.clone(),
            public: self.public.clone(),
        }
    }
}

impl fmt::Debug for PreSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreSecretKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A proxy re-encryption public key `(Z^a1, g2^a2)`: checked on every decode.
#[derive(Clone, PartialEq, Eq)]
pub struct PrePublicKey {
    z_a1: Gt,
    g2_a2: G2,
}

impl PrePublicKey {
    /// The 672-byte encoding `Z^a1 || g2^a2`.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        let (gt, g2) = out.split_at_mut(GT_LEN);
        gt.copy_from_slice(&self.z_a1.to_bytes());
        g2.copy_from_slice(&self.g2_a2.to_compressed());
        out
    }

    /// Parses and checks [`PrePublicKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PreError> {
        const WHAT: &str = "PRE public key";
        let bytes = expect_len::<PUBLIC_KEY_LEN>(bytes, WHAT)?;
        let (gt, g2) = bytes.split_at(GT_LEN);
        let z_a1 = Gt::from_bytes(expect_len::<GT_LEN>(gt, WHAT)?, WHAT)?;
        let g2_a2 = G2::from_compressed(expect_len::<G2_LEN>(g2, WHAT)?, WHAT)?;
        Ok(Self { z_a1, g2_a2 })
    }

    /// Precomputes the tables that make sealing to this key faster (about 1 ms, 480 KB):
    /// keep the result for a recipient you seal to often.
    pub fn prepare(&self) -> PreparedPublicKey {
        PreparedPublicKey {
            public: self.clone(),
            table: Arc::new(GtTable::new(&self.z_a1)),
        }
    }
}

impl Hash for PrePublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.to_bytes().hash(state);
    }
}

impl fmt::Debug for PrePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrePublicKey({})", fingerprint(&self.to_bytes()))
    }
}

impl Serialize for PrePublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for PrePublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// A public key with its fixed-base exponentiation tables, for fast repeated sealing
/// ([`seal_prepared`]). Cloning is cheap (the tables are shared).
#[derive(Clone)]
pub struct PreparedPublicKey {
    public: PrePublicKey,
    table: Arc<GtTable>,
}

impl PreparedPublicKey {
    /// Memory the tables of one prepared key take, in bytes.
    pub const TABLE_BYTES: usize = GtTable::SIZE;

    /// The public key these tables are for.
    pub fn public_key(&self) -> &PrePublicKey {
        &self.public
    }
}

impl From<&PrePublicKey> for PreparedPublicKey {
    fn from(pk: &PrePublicKey) -> Self {
        pk.prepare()
    }
}

impl fmt::Debug for PreparedPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PreparedPublicKey")
            .field(&self.public)
            .finish()
    }
}

/// A re-encryption key `rk = g2^(a1*b2)` from a delegator A to a delegatee B: checked on every
/// decode. Its Miller lines are computed on the first [`reencrypt`] and kept.
#[derive(Clone)]
pub struct ReKey {
    point: G2,
    lines: OnceLock<Lines>,
}

impl ReKey {
    fn from_point(point: G2) -> Self {
        Self {
            point,
            lines: OnceLock::new(),
        }
    }

    fn lines(&self) -> &Lines {
        self.lines.get_or_init(|| Lines::new(&self.point))
    }

    /// The 96-byte compressed G2 encoding.
    pub fn to_bytes(&self) -> [u8; REKEY_LEN] {
        self.point.to_compressed()
    }

    /// Parses and checks [`ReKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PreError> {
        const WHAT: &str = "PRE re-encryption key";
        let point = G2::from_compressed(expect_len::<REKEY_LEN>(bytes, WHAT)?, WHAT)?;
        Ok(Self::from_point(point))
    }
}

impl PartialEq for ReKey {
    fn eq(&self, other: &Self) -> bool {
        self.point == other.point
    }
}

impl Eq for ReKey {}

impl fmt::Debug for ReKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReKey({})", fingerprint(&self.to_bytes()))
    }
}

impl Serialize for ReKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for ReKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Ciphertexts.

/// A first-level ciphertext: `c1 = g1^k` and the AEAD ciphertext. `c1` is checked on every
/// decode.
#[derive(Clone)]
pub struct Sealed {
    c1: G1,
    c1_bytes: [u8; C1_LEN],
    ciphertext: Vec<u8>,
}

impl Sealed {
    /// `c1`, compressed.
    pub fn c1(&self) -> &[u8; C1_LEN] {
        &self.c1_bytes
    }

    /// The AEAD ciphertext, tag included.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// `c1 || ciphertext`.
    pub fn to_bytes(&self) -> Vec<u8> {
        [&self.c1_bytes[..], &self.ciphertext].concat()
    }

    /// Parses and checks [`Sealed::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PreError> {
        if bytes.len() < C1_LEN {
            return Err(PreError::Length {
                what: "PRE sealed: c1",
                expected: C1_LEN,
                got: bytes.len(),
            });
        }
        let (c1, ct) = bytes.split_at(C1_LEN);
        Self::from_parts(c1, ct.to_vec())
    }

    /// Builds a ciphertext from its two parts, checking both.
    pub fn from_parts(c1: &[u8], ciphertext: Vec<u8>) -> Result<Self, PreError> {
        const WHAT: &str = "PRE sealed: c1";
        let c1_bytes = *expect_len::<C1_LEN>(c1, WHAT)?;
        check_ciphertext_len(ciphertext.len())?;
        let c1 = G1::from_compressed(&c1_bytes, WHAT)?;
        Ok(Self {
            c1,
            c1_bytes,
            ciphertext,
        })
    }
}

impl PartialEq for Sealed {
    fn eq(&self, other: &Self) -> bool {
        self.c1_bytes == other.c1_bytes && self.ciphertext == other.ciphertext
    }
}

impl Eq for Sealed {}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("c1", &hex::encode(self.c1_bytes))
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

#[derive(Serialize)]
struct SealedRef<'a> {
    #[serde(with = "serde_bytes")]
    c1: &'a [u8],
    #[serde(with = "serde_bytes")]
    ciphertext: &'a [u8],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedOwned {
    #[serde(with = "serde_bytes")]
    c1: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ciphertext: Vec<u8>,
}

impl Serialize for Sealed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SealedRef {
            c1: &self.c1_bytes,
            ciphertext: &self.ciphertext,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = SealedOwned::deserialize(d)?;
        Self::from_parts(&w.c1, w.ciphertext).map_err(serde::de::Error::custom)
    }
}

/// A re-encrypted ciphertext: `c1` (kept because it is bound into the AEAD), `c1'` in GT and the
/// AEAD ciphertext, unchanged. Both group elements are checked on every decode.
#[derive(Clone)]
pub struct ReSealed {
    c1_bytes: [u8; C1_LEN],
    c1_prime: Gt,
    ciphertext: Vec<u8>,
}

impl ReSealed {
    /// `c1`, compressed.
    pub fn c1(&self) -> &[u8; C1_LEN] {
        &self.c1_bytes
    }

    /// `c1'`, encoded.
    pub fn c1_prime(&self) -> [u8; C1_PRIME_LEN] {
        self.c1_prime.to_bytes()
    }

    /// The AEAD ciphertext, tag included.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// `c1 || c1' || ciphertext`.
    pub fn to_bytes(&self) -> Vec<u8> {
        [
            &self.c1_bytes[..],
            &self.c1_prime.to_bytes(),
            &self.ciphertext,
        ]
        .concat()
    }

    /// Parses and checks [`ReSealed::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PreError> {
        if bytes.len() < C1_LEN + C1_PRIME_LEN {
            return Err(PreError::Length {
                what: "PRE re-sealed: c1 and c1'",
                expected: C1_LEN + C1_PRIME_LEN,
                got: bytes.len(),
            });
        }
        let (c1, rest) = bytes.split_at(C1_LEN);
        let (c1_prime, ct) = rest.split_at(C1_PRIME_LEN);
        Self::from_parts(c1, c1_prime, ct.to_vec())
    }

    /// Builds a re-encrypted ciphertext from its three parts, checking all of them.
    pub fn from_parts(c1: &[u8], c1_prime: &[u8], ciphertext: Vec<u8>) -> Result<Self, PreError> {
        const WHAT_C1: &str = "PRE re-sealed: c1";
        const WHAT_C1P: &str = "PRE re-sealed: c1'";
        let c1_bytes = *expect_len::<C1_LEN>(c1, WHAT_C1)?;
        let c1_prime = expect_len::<C1_PRIME_LEN>(c1_prime, WHAT_C1P)?;
        check_ciphertext_len(ciphertext.len())?;
        G1::from_compressed(&c1_bytes, WHAT_C1)?;
        let c1_prime = Gt::from_bytes(c1_prime, WHAT_C1P)?;
        Ok(Self {
            c1_bytes,
            c1_prime,
            ciphertext,
        })
    }
}

impl PartialEq for ReSealed {
    fn eq(&self, other: &Self) -> bool {
        self.c1_bytes == other.c1_bytes
            && self.c1_prime == other.c1_prime
            && self.ciphertext == other.ciphertext
    }
}

impl Eq for ReSealed {}

impl fmt::Debug for ReSealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReSealed")
            .field("c1", &hex::encode(self.c1_bytes))
            .field("c1_prime", &fingerprint(&self.c1_prime.to_bytes()))
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

#[derive(Serialize)]
struct ReSealedRef<'a> {
    #[serde(with = "serde_bytes")]
    c1: &'a [u8],
    #[serde(with = "serde_bytes")]
    c1_prime: &'a [u8],
    #[serde(with = "serde_bytes")]
    ciphertext: &'a [u8],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReSealedOwned {
    #[serde(with = "serde_bytes")]
    c1: Vec<u8>,
    #[serde(with = "serde_bytes")]
    c1_prime: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ciphertext: Vec<u8>,
}

impl Serialize for ReSealed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c1_prime = self.c1_prime.to_bytes();
        ReSealedRef {
            c1: &self.c1_bytes,
            c1_prime: &c1_prime,
            ciphertext: &self.ciphertext,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ReSealed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ReSealedOwned::deserialize(d)?;
        Self::from_parts(&w.c1, &w.c1_prime, w.ciphertext).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Operations.

/// Seals `plaintext` to `recipient`, binding `aad` (which the opener must give again).
/// For many seals to the same recipient, [`seal_prepared`] is faster.
pub fn seal(recipient: &PrePublicKey, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, PreError> {
    let k = Scalar::random()?;
    seal_with_k(|e| bls::gt_pow(&recipient.z_a1, e), &k, plaintext, aad)
}

/// [`seal`] with the recipient's precomputed tables.
pub fn seal_prepared(
    recipient: &PreparedPublicKey,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Sealed, PreError> {
    let k = Scalar::random()?;
    seal_with_k(|e| recipient.table.pow(e), &k, plaintext, aad)
}

/// Sealing with a given `k`; `z_a1_pow` computes `(Z^a1)^k` from the GLS digits of `k`.
fn seal_with_k(
    z_a1_pow: impl FnOnce(&GlsDigits) -> Gt,
    k: &Scalar,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Sealed, PreError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(PreError::TooLong {
            what: "PRE plaintext",
            max: MAX_PLAINTEXT_LEN,
            got: plaintext.len(),
        });
    }
    let c1 = G1::mul_generator(k);
    let c1_bytes = c1.to_compressed();
    let mut shared = z_a1_pow(&GlsDigits::new(k));
    let ciphertext = aead_seal(&shared, &c1_bytes, aad, plaintext);
    shared.wipe();
    Ok(Sealed {
        c1,
        c1_bytes,
        ciphertext: ciphertext?,
    })
}

/// Opens a ciphertext sealed to `sk`'s public key.
pub fn open(sk: &PreSecretKey, sealed: &Sealed, aad: &[u8]) -> Result<Vec<u8>, PreError> {
    let mut shared = bls::pairing(&sk.owner_lines, &sealed.c1);
    let out = aead_open(&shared, &sealed.c1_bytes, aad, &sealed.ciphertext);
    shared.wipe();
    out
}

/// Re-encrypts a ciphertext with a re-encryption key: `c1' = e(c1, rk)`. Deterministic (the
/// same inputs give the same bytes on every machine), public inputs only. The result opens with
/// the delegatee's key ([`open_reencrypted`]) only if `rk` was made for the key `sealed` was
/// sealed to; otherwise opening fails.
pub fn reencrypt(sealed: &Sealed, rk: &ReKey) -> Result<ReSealed, PreError> {
    let c1_prime = bls::pairing(rk.lines(), &sealed.c1);
    if c1_prime.is_one() {
        // Unreachable for checked, non-identity inputs (the pairing is non-degenerate).
        return Err(PreError::Identity {
            what: "PRE re-encryption: c1'",
        });
    }
    Ok(ReSealed {
        c1_bytes: sealed.c1_bytes,
        c1_prime,
        ciphertext: sealed.ciphertext.clone(),
    })
}

/// Opens a re-encrypted ciphertext with the delegatee's key.
pub fn open_reencrypted(
    sk: &PreSecretKey,
    resealed: &ReSealed,
    aad: &[u8],
) -> Result<Vec<u8>, PreError> {
    let mut shared = bls::gt_pow(&resealed.c1_prime, &sk.delegatee_exp);
    let out = aead_open(&shared, &resealed.c1_bytes, aad, &resealed.ciphertext);
    shared.wipe();
    out
}

/// The payload key: HKDF-SHA256 of the shared GT element's canonical bytes.
fn payload_key(shared: &Gt) -> Result<Zeroizing<[u8; 32]>, PreError> {
    let ikm = Zeroizing::new(shared.to_bytes());
    let hk = Hkdf::<Sha256>::new(None, &ikm[..]);
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(KDF_INFO, &mut key[..])
        .map_err(|_| PreError::KeyDerivation)?;
    Ok(key)
}

/// `c1 || aad`: `c1` has a fixed length, so the split is unambiguous.
fn full_aad(c1: &[u8; C1_LEN], aad: &[u8]) -> Vec<u8> {
    [&c1[..], aad].concat()
}

fn aead_seal(
    shared: &Gt,
    c1: &[u8; C1_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, PreError> {
    let key = payload_key(shared)?;
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    // A fixed nonce is safe: the key is used for this one message (see the module docs).
    let tag = cipher
        .encrypt_inout_detached(
            &Nonce::default(),
            &full_aad(c1, aad),
            buf.as_mut_slice().into(),
        )
        .map_err(|_| PreError::TooLong {
            what: "PRE plaintext",
            max: MAX_PLAINTEXT_LEN,
            got: plaintext.len(),
        })?;
    buf.extend_from_slice(&tag);
    Ok(buf)
}

fn aead_open(
    shared: &Gt,
    c1: &[u8; C1_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, PreError> {
    let Some(body_len) = ciphertext.len().checked_sub(TAG_LEN) else {
        return Err(PreError::Decryption);
    };
    let (body, tag) = ciphertext.split_at(body_len);
    let tag = Tag::try_from(tag).map_err(|_| PreError::Decryption)?;
    let key = payload_key(shared)?;
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let mut buf = body.to_vec();
    cipher
        .decrypt_inout_detached(
            &Nonce::default(),
            &full_aad(c1, aad),
            buf.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| PreError::Decryption)?;
    Ok(buf)
}
