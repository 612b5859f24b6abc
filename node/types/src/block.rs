//! Batches and blocks.
//!
//! The Raft leader cuts a [`Batch`] of transactions, signs the SHA-256 of its bytes (see
//! [`SignedBatch::seal`]) and proposes the [`SignedBatch`] as one Raft entry. Every node applies committed entries in log order and
//! derives the same [`Block`] from each: number = tip + 1, previous hash = tip hash,
//! data hash = SHA-256 of the batch bytes. A block's hash is the hash of its header, so the
//! chain links headers:
//!
//! ```text
//!  Block 0 (genesis config) <── Block 1 { prev = hash(h0), data = sha256(batch1) } <── Block 2 ...
//! ```
//!
//! The validation codes are stored beside the block ([`BlockRecord`]), not hashed, as in
//! Fabric's block metadata: every honest node computes the same codes from the same chain.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sphr_crypto::hash::{Hash32, sha256};
use sphr_crypto::keys::{PublicKey, SecretKey, Signature};

use crate::codes::ValidationCode;
use crate::tx::TxError;
use crate::{MAX_BLOCK_BYTES, decode, encode};

/// Names a node: its org and its name within the org.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeRef {
    /// Organisation.
    pub org: String,
    /// Node name within the org.
    pub name: String,
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.org)
    }
}

/// Transactions cut by the leader, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The consenter that cut the batch.
    pub proposer: NodeRef,
    /// The proposer's clock when it cut the batch (Unix milliseconds).
    pub timestamp_ms: u64,
    /// Encoded transactions.
    pub txs: Vec<ByteBuf>,
}

/// Domain of a proposer's signature over a batch digest (see [`SignedBatch::seal`]).
pub const BATCH_SIGNATURE_DOMAIN: &[u8] = b"sphr-batch-digest-v2";

/// What a proposer signs for a batch whose bytes hash to `digest`: the domain, then the digest.
pub fn batch_signature_message(digest: &Hash32) -> Vec<u8> {
    let mut m = Vec::with_capacity(BATCH_SIGNATURE_DOMAIN.len() + 32);
    m.extend_from_slice(BATCH_SIGNATURE_DOMAIN);
    m.extend_from_slice(&digest.0);
    m
}

/// A batch and its proposer's signature over the batch's digest: one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBatch {
    /// CBOR of [`Batch`].
    #[serde(with = "serde_bytes")]
    pub batch: Vec<u8>,
    /// The proposer's signature over [`batch_signature_message`] of the SHA-256 of `batch`
    /// (batches sealed before that signed `batch` itself; [`SignedBatch::verify`] takes both).
    pub signature: Signature,
}

impl SignedBatch {
    /// Encodes and signs a batch. The signature covers the domain and the SHA-256 of the
    /// bytes, which is also the block's data hash: every node hashes a batch once (SHA-256),
    /// instead of also running SHA-512 over its 100 to 250 KB inside the signature check.
    pub fn seal(batch: &Batch, key: &SecretKey) -> Result<Self, TxError> {
        let bytes = encode(batch).map_err(|source| TxError::Cbor {
            what: "batch",
            source,
        })?;
        let signature = key.sign(&batch_signature_message(&sha256(&bytes)));
        Ok(SignedBatch {
            batch: bytes,
            signature,
        })
    }

    /// Decodes the batch (not checking the signature).
    pub fn decode_batch(&self) -> Result<Batch, TxError> {
        decode(&self.batch, MAX_BLOCK_BYTES).map_err(|source| TxError::Cbor {
            what: "batch",
            source,
        })
    }

    /// Verifies the proposer's signature and returns the batch's SHA-256 (the data hash of
    /// the block it makes). A batch sealed by an earlier version, whose signature covers the
    /// bytes themselves, is checked that way when the digest signature does not verify (the
    /// two messages cannot be confused: one starts with the domain, the other is a CBOR map).
    pub fn verify(&self, proposer_key: &PublicKey) -> Result<Hash32, TxError> {
        let digest = sha256(&self.batch);
        if proposer_key
            .verify(&batch_signature_message(&digest), &self.signature)
            .is_ok()
            || proposer_key.verify(&self.batch, &self.signature).is_ok()
        {
            return Ok(digest);
        }
        Err(TxError::Invalid(
            "the batch signature does not verify".into(),
        ))
    }

    /// Encodes for a Raft entry.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TxError> {
        encode(self).map_err(|source| TxError::Cbor {
            what: "signed batch",
            source,
        })
    }

    /// Decodes a Raft entry.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TxError> {
        decode(bytes, MAX_BLOCK_BYTES).map_err(|source| TxError::Cbor {
            what: "signed batch",
            source,
        })
    }
}

/// What a block carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockData {
    /// Block 0: the CBOR of the genesis configuration.
    Genesis(ByteBuf),
    /// Every later block: a signed batch.
    Batch(SignedBatch),
}

impl BlockData {
    /// SHA-256 of the config or batch bytes.
    pub fn hash(&self) -> Hash32 {
        match self {
            BlockData::Genesis(b) => sha256(b),
            BlockData::Batch(s) => sha256(&s.batch),
        }
    }
}

/// The hashed part of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Height: 0 for genesis.
    pub number: u64,
    /// Hash of the previous block's header (zero for genesis).
    pub previous_hash: Hash32,
    /// Hash of the block's data.
    pub data_hash: Hash32,
    /// The proposer's clock (Unix milliseconds).
    pub timestamp_ms: u64,
}

impl BlockHeader {
    /// The block hash.
    pub fn hash(&self) -> Hash32 {
        // Encoding a struct of integers and fixed byte strings cannot fail.
        sha256(&encode(self).unwrap_or_default())
    }
}

/// A block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The hashed header.
    pub header: BlockHeader,
    /// Genesis config or signed batch.
    pub data: BlockData,
}

impl Block {
    /// The block that follows `prev` with `batch` (as derived by every node applying the entry).
    pub fn next(prev: &BlockHeader, batch: SignedBatch, timestamp_ms: u64) -> Block {
        let data_hash = sha256(&batch.batch);
        Block::next_hashed(prev, batch, timestamp_ms, data_hash)
    }

    /// [`Block::next`] with the data hash the caller already has: the SHA-256 of the batch
    /// bytes that [`SignedBatch::verify`] returned.
    pub fn next_hashed(
        prev: &BlockHeader,
        batch: SignedBatch,
        timestamp_ms: u64,
        data_hash: Hash32,
    ) -> Block {
        Block {
            header: BlockHeader {
                number: prev.number.saturating_add(1),
                previous_hash: prev.hash(),
                data_hash,
                timestamp_ms,
            },
            data: BlockData::Batch(batch),
        }
    }

    /// The block hash.
    pub fn hash(&self) -> Hash32 {
        self.header.hash()
    }

    /// Checks that the data hash matches the data, and that the block follows `prev`.
    pub fn check_link(&self, prev: &BlockHeader) -> Result<(), TxError> {
        if self.header.data_hash != self.data.hash() {
            return Err(TxError::Invalid(format!(
                "block {}: data hash does not match its data",
                self.header.number
            )));
        }
        if Some(self.header.number) != prev.number.checked_add(1) {
            return Err(TxError::Invalid(format!(
                "block {} does not follow block {}",
                self.header.number, prev.number
            )));
        }
        if self.header.previous_hash != prev.hash() {
            return Err(TxError::Invalid(format!(
                "block {}: previous hash does not match block {}",
                self.header.number, prev.number
            )));
        }
        Ok(())
    }
}

/// A block as stored: with the validation code of each transaction and the Raft index it came
/// from (0 for genesis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// The block.
    pub block: Block,
    /// One code per transaction, in order.
    pub codes: Vec<ValidationCode>,
    /// The Raft log index of the entry the block was derived from.
    pub raft_index: u64,
}

impl BlockRecord {
    /// Encodes for storage or the wire.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TxError> {
        encode(self).map_err(|source| TxError::Cbor {
            what: "block record",
            source,
        })
    }

    /// Decodes a stored block record.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TxError> {
        decode(bytes, MAX_BLOCK_BYTES + 1024 * 1024).map_err(|source| TxError::Cbor {
            what: "block record",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn genesis() -> Block {
        let data = BlockData::Genesis(ByteBuf::from(vec![1, 2, 3]));
        Block {
            header: BlockHeader {
                number: 0,
                previous_hash: Hash32::ZERO,
                data_hash: data.hash(),
                timestamp_ms: 0,
            },
            data,
        }
    }

    proptest! {
        #[test]
        fn block_record_round_trip(txs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
                                   ts in any::<u64>(), idx in any::<u64>()) {
            let key = SecretKey::from_bytes(&[3; 32]);
            let batch = Batch {
                proposer: NodeRef { org: "O".into(), name: "n".into() },
                timestamp_ms: ts,
                txs: txs.into_iter().map(ByteBuf::from).collect(),
            };
            let sb = SignedBatch::seal(&batch, &key).unwrap();
            prop_assert!(sb.verify(&key.public_key()).is_ok());
            let sb2 = SignedBatch::from_bytes(&sb.to_bytes().unwrap()).unwrap();
            prop_assert_eq!(&sb2, &sb);
            prop_assert_eq!(sb2.decode_batch().unwrap(), batch);
            let g = genesis();
            let b = Block::next(&g.header, sb, ts);
            prop_assert!(b.check_link(&g.header).is_ok());
            let n = match &b.data { BlockData::Batch(s) => s.decode_batch().unwrap().txs.len(), _ => 0 };
            let rec = BlockRecord { block: b, codes: vec![ValidationCode::Valid; n], raft_index: idx };
            prop_assert_eq!(BlockRecord::from_bytes(&rec.to_bytes().unwrap()).unwrap(), rec);
        }
    }

    #[test]
    fn broken_links_are_refused() {
        let key = SecretKey::from_bytes(&[3; 32]);
        let g = genesis();
        let batch = Batch {
            proposer: NodeRef {
                org: "O".into(),
                name: "n".into(),
            },
            timestamp_ms: 1,
            txs: vec![],
        };
        let sb = SignedBatch::seal(&batch, &key).unwrap();
        let b = Block::next(&g.header, sb, 1);
        let mut wrong_prev = b.clone();
        wrong_prev.header.previous_hash = Hash32([1; 32]);
        assert!(wrong_prev.check_link(&g.header).is_err());
        let mut wrong_num = b.clone();
        wrong_num.header.number = 5;
        assert!(wrong_num.check_link(&g.header).is_err());
        let mut wrong_data = b;
        wrong_data.header.data_hash = Hash32([2; 32]);
        assert!(wrong_data.check_link(&g.header).is_err());
        assert!(
            SignedBatch::seal(&batch, &key)
                .unwrap()
                .verify(&SecretKey::from_bytes(&[4; 32]).public_key())
                .is_err()
        );
    }

    #[test]
    fn batch_signatures_cover_the_digest_and_older_byte_signatures_still_verify() {
        let key = SecretKey::from_bytes(&[3; 32]);
        let pk = key.public_key();
        let batch = Batch {
            proposer: NodeRef {
                org: "O".into(),
                name: "n".into(),
            },
            timestamp_ms: 7,
            txs: vec![ByteBuf::from(vec![9; 300]), ByteBuf::from(vec![8; 40])],
        };
        let sealed = SignedBatch::seal(&batch, &key).unwrap();
        let digest = sha256(&sealed.batch);
        // What is signed: the domain and the digest, not the bytes.
        assert!(
            pk.verify(&batch_signature_message(&digest), &sealed.signature)
                .is_ok()
        );
        assert!(pk.verify(&sealed.batch, &sealed.signature).is_err());
        // verify returns the data hash a block of this batch carries.
        assert_eq!(sealed.verify(&pk).unwrap(), digest);
        let g = genesis();
        assert_eq!(
            Block::next(&g.header, sealed.clone(), 7).header,
            Block::next_hashed(&g.header, sealed.clone(), 7, digest).header
        );
        // A batch sealed by an earlier version (signature over the bytes) still verifies.
        let older = SignedBatch {
            signature: key.sign(&sealed.batch),
            batch: sealed.batch.clone(),
        };
        assert_eq!(older.verify(&pk).unwrap(), digest);
        // A signature over the bare digest (no domain) or over another batch's digest fails,
        // and so does a changed byte under either kind of signature.
        let bare = SignedBatch {
            signature: key.sign(&digest.0),
            batch: sealed.batch.clone(),
        };
        assert!(bare.verify(&pk).is_err());
        let mut other = batch.clone();
        other.timestamp_ms = 8;
        let swapped = SignedBatch {
            signature: SignedBatch::seal(&other, &key).unwrap().signature,
            batch: sealed.batch.clone(),
        };
        assert!(swapped.verify(&pk).is_err());
        for signed in [sealed, older] {
            let mut tampered = signed;
            if let Some(b) = tampered.batch.last_mut() {
                *b ^= 1;
            }
            assert!(tampered.verify(&pk).is_err());
        }
    }
}
