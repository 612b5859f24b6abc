//! sphr-crypto: the cryptography of sphr, kept small, separate and fuzzable.
//!
//! - [`hash`]: SHA-256 and the 32-byte [`hash::Hash32`] used for tx ids, block hashes and the network id.
//! - [`keys`]: ed25519 signing keys, public keys and signatures (ZIP-215 verification:
//!   batches whose verdicts are the single verdicts).
//! - [`sigcache`]: a bounded, per-process cache of signatures already verified, so
//!   the committer skips what the endorser or gateway of the same node checked.
//! - [`cert`]: certificates issued by an organisation's CA: subject, org, role, ed25519 key,
//!   optional proxy re-encryption key, validity dates.
//! - [`cbor`]: deterministic CBOR (ciborium) with a size limit on every decode.
//! - [`pre`]: AFGH proxy re-encryption on BLS12-381 (blst) with a ChaCha20-Poly1305 payload.

pub mod cbor;
pub mod cert;
pub mod hash;
pub mod keys;
pub mod pre;
pub mod sigcache;
