//! sphr-types: the types that cross stages of the pipeline, on the wire and on disk.
//!
//! ```text
//!  SignedProposal ──endorse──> ResponsePayload + Endorsement(s)
//!        \___________________________/
//!                    Transaction ──order──> SignedBatch (Raft entry) ──apply──> Block
//!                                                                       + ValidationCode per tx
//! ```
//!
//! Everything that is hashed or signed is kept as the exact bytes that were hashed or signed
//! (`proposal`, `response`, `batch`), so no node ever depends on re-encoding giving the same
//! bytes. Every decode goes through [`decode`] with a size limit.

pub mod block;
pub mod codes;
pub mod genesis;
pub mod policy;
pub mod tx;

pub use block::{Batch, Block, BlockData, BlockHeader, BlockRecord, NodeRef, SignedBatch};
pub use codes::ValidationCode;
pub use genesis::{
    BlockCutting, ContractConfig, GenesisConfig, GenesisError, NodeConfig, OrgConfig, RaftTimings,
};
pub use policy::{Policy, PolicyError};
pub use tx::{
    BatchProof, EndorsedPayload, Endorsement, Event, MAX_BATCH_DEPTH, Proposal, ProposalHeader,
    ProposalResponse, Read, ResponsePayload, RwSet, SignedProposal, Transaction, TxError, Version,
    Write, batch_leaf, batch_message, batch_tree,
};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sphr_crypto::cbor::{self, CborError};

/// Largest signed proposal accepted (encoded).
pub const MAX_PROPOSAL_BYTES: usize = 1024 * 1024;
/// Largest endorsed response payload accepted (encoded).
pub const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// Largest transaction accepted (encoded).
pub const MAX_TX_BYTES: usize = 4 * 1024 * 1024;
/// Largest block or batch accepted (encoded).
pub const MAX_BLOCK_BYTES: usize = 64 * 1024 * 1024;
/// Most arguments one proposal may carry.
pub const MAX_ARGS: usize = 64;
/// Most endorsements one transaction may carry.
pub const MAX_ENDORSEMENTS: usize = 32;
/// Longest contract or function name.
pub const MAX_NAME_LEN: usize = 64;

/// Encodes a value as CBOR.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CborError> {
    cbor::to_vec(value)
}

/// Decodes a value from CBOR of at most `limit` bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, CborError> {
    cbor::from_slice(bytes, limit)
}

/// The key under which a contract's `key` lives in the world state: `contract 0x00 key`.
pub fn namespaced_key(contract: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(contract.len() + 1 + key.len());
    k.extend_from_slice(contract.as_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

/// The contract-local part of a namespaced key, if it belongs to `contract`.
pub fn strip_namespace<'a>(contract: &str, full: &'a [u8]) -> Option<&'a [u8]> {
    let rest = full.strip_prefix(contract.as_bytes())?;
    rest.strip_prefix(&[0u8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_do_not_collide() {
        let a = namespaced_key("kv", b"x");
        assert_eq!(strip_namespace("kv", &a), Some(b"x".as_slice()));
        assert_eq!(strip_namespace("k", &a), None);
        assert_eq!(strip_namespace("kv2", &a), None);
        // Contract names never hold NUL (genesis allows A-Z a-z 0-9 - _ . only), so the first
        // NUL always ends the namespace.
        assert_eq!(
            strip_namespace("kv", &namespaced_key("kv", b"\0x")),
            Some(b"\0x".as_slice())
        );
    }
}
