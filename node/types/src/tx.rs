//! Proposals, endorsements and transactions.
//!
//! ```text
//!  Proposal { header { network_id, creator cert, nonce, timestamp }, contract, function, args }
//!     | CBOR, signed by the creator              -> SignedProposal { proposal bytes, signature }
//!     | simulated by each endorser               -> ResponsePayload { tx_id, proposal_hash, rwset,
//!     |                                                               response, events }
//!     | CBOR, signed by each endorsing node      -> Endorsement { endorser cert, signature }
//!     v
//!  Transaction { signed_proposal, response bytes, endorsements }
//! ```
//!
//! The tx id is SHA-256 over the creator's certificate and the nonce, so a replayed proposal
//! keeps its id and is caught as a duplicate.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sphr_crypto::cbor::CborError;
use sphr_crypto::cert::Certificate;
use sphr_crypto::hash::{Hash32, sha256, sha256_parts};
use sphr_crypto::keys::{SecretKey, Signature};

use crate::{
    MAX_ARGS, MAX_ENDORSEMENTS, MAX_NAME_LEN, MAX_PROPOSAL_BYTES, MAX_RESPONSE_BYTES, MAX_TX_BYTES,
    decode, encode,
};

/// Why a proposal or transaction is malformed.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// CBOR could not be decoded or is over its limit.
    #[error("{what}: {source}")]
    Cbor {
        what: &'static str,
        #[source]
        source: CborError,
    },
    /// A field breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// The creator's signature does not verify.
    #[error("the creator's signature over the proposal does not verify")]
    BadSignature,
}

/// The part of a proposal that names its transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalHeader {
    /// The network this proposal is for (hash of the genesis configuration).
    pub network_id: Hash32,
    /// The creator's certificate.
    pub creator: Certificate,
    /// 32 random bytes chosen by the creator.
    pub nonce: Hash32,
    /// The creator's clock (Unix milliseconds): the tx time contracts see.
    pub timestamp_ms: u64,
}

/// A request to run a contract function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Names the transaction.
    pub header: ProposalHeader,
    /// Contract name.
    pub contract: String,
    /// Function name.
    pub function: String,
    /// Arguments, as byte strings.
    pub args: Vec<ByteBuf>,
}

impl Proposal {
    /// The tx id: SHA-256 over a domain tag, the creator's public key, org, subject and the nonce.
    pub fn tx_id(&self) -> Hash32 {
        tx_id(&self.header)
    }

    /// Checks sizes and names.
    pub fn check_shape(&self) -> Result<(), TxError> {
        for (what, v) in [("contract", &self.contract), ("function", &self.function)] {
            if v.is_empty() || v.len() > MAX_NAME_LEN || !v.is_ascii() {
                return Err(TxError::Invalid(format!(
                    "{what} name must be 1 to {MAX_NAME_LEN} ASCII characters"
                )));
            }
        }
        if self.args.len() > MAX_ARGS {
            return Err(TxError::Invalid(format!(
                "{} arguments, at most {MAX_ARGS}",
                self.args.len()
            )));
        }
        Ok(())
    }

    /// Encodes and signs the proposal with the creator's key.
    pub fn sign(&self, key: &SecretKey) -> Result<SignedProposal, TxError> {
        let proposal = encode(self).map_err(|source| TxError::Cbor {
            what: "proposal",
            source,
        })?;
        let signature = key.sign(&proposal);
        Ok(SignedProposal {
            proposal,
            signature,
        })
    }
}

/// The tx id of a proposal header.
pub fn tx_id(h: &ProposalHeader) -> Hash32 {
    let c = &h.creator.body;
    sha256_parts(&[
        b"sphr-txid-v1",
        &c.public_key.0,
        c.org.as_bytes(),
        c.subject.as_bytes(),
        &h.nonce.0,
    ])
}

/// A proposal and its creator's signature over the exact proposal bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedProposal {
    /// CBOR of [`Proposal`].
    #[serde(with = "serde_bytes")]
    pub proposal: Vec<u8>,
    /// The creator's signature over `proposal`.
    pub signature: Signature,
}

impl SignedProposal {
    /// Decodes a signed proposal from the wire.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TxError> {
        decode(bytes, MAX_PROPOSAL_BYTES + 256).map_err(|source| TxError::Cbor {
            what: "signed proposal",
            source,
        })
    }

    /// Encodes for the wire.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TxError> {
        encode(self).map_err(|source| TxError::Cbor {
            what: "signed proposal",
            source,
        })
    }

    /// Decodes the proposal and checks its shape (not the signature, not the certificate).
    pub fn decode_proposal(&self) -> Result<Proposal, TxError> {
        let p: Proposal =
            decode(&self.proposal, MAX_PROPOSAL_BYTES).map_err(|source| TxError::Cbor {
                what: "proposal",
                source,
            })?;
        p.check_shape()?;
        Ok(p)
    }

    /// Verifies the creator's signature with the key in the proposal's certificate.
    pub fn verify_signature(&self, p: &Proposal) -> Result<(), TxError> {
        p.header
            .creator
            .body
            .public_key
            .verify(&self.proposal, &self.signature)
            .map_err(|_| TxError::BadSignature)
    }

    /// SHA-256 of the proposal bytes (bound into each endorsement).
    pub fn proposal_hash(&self) -> Hash32 {
        sha256(&self.proposal)
    }
}

/// The version of a world-state value: the block and position of the tx that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Block number.
    pub block: u64,
    /// Position of the tx in the block.
    pub tx: u32,
}

impl Version {
    /// 12 bytes, big-endian: the prefix of every stored world-state value.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.block.to_be_bytes());
        b[8..].copy_from_slice(&self.tx.to_be_bytes());
        b
    }

    /// Parses the 12-byte prefix.
    pub fn from_bytes(b: &[u8]) -> Option<Version> {
        let block = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let tx = u32::from_be_bytes(b.get(8..12)?.try_into().ok()?);
        Some(Version { block, tx })
    }
}

/// A key read during simulation and the version it had (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Read {
    /// Namespaced key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Its version when read.
    pub version: Option<Version>,
}

/// A key written during simulation (`value: None` deletes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// Namespaced key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The new value, or `None` to delete.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// The read set and write set of a simulation, each sorted by key with no duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RwSet {
    /// Keys read, with versions.
    pub reads: Vec<Read>,
    /// Keys written.
    pub writes: Vec<Write>,
}

/// An event a contract emitted; delivered when the tx commits valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Event name.
    pub name: String,
    /// Event payload.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// What endorsers sign: the outcome of simulating a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponsePayload {
    /// The tx id of the proposal.
    pub tx_id: Hash32,
    /// SHA-256 of the proposal bytes.
    pub proposal_hash: Hash32,
    /// Reads and writes.
    pub rwset: RwSet,
    /// The function's return value.
    #[serde(with = "serde_bytes")]
    pub response: Vec<u8>,
    /// Events emitted.
    pub events: Vec<Event>,
}

/// An endorsing node's signature over the response payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endorsement {
    /// The endorsing node's certificate (role `node`).
    pub endorser: Certificate,
    /// Signature over the response payload bytes.
    pub signature: Signature,
}

/// One endorser's answer to a proposal: the response payload bytes it signed and its
/// endorsement. Clients that assemble transactions themselves collect one per org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalResponse {
    /// CBOR of [`ResponsePayload`].
    #[serde(with = "serde_bytes")]
    pub response: Vec<u8>,
    /// The endorser's signature over `response`.
    pub endorsement: Endorsement,
}

impl ProposalResponse {
    /// Encodes for the wire.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TxError> {
        encode(self).map_err(|source| TxError::Cbor {
            what: "proposal response",
            source,
        })
    }

    /// Decodes from the wire.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TxError> {
        decode(bytes, MAX_RESPONSE_BYTES + 4096).map_err(|source| TxError::Cbor {
            what: "proposal response",
            source,
        })
    }
}

/// A proposal with its endorsed outcome: what is ordered into blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The creator's signed proposal.
    pub signed_proposal: SignedProposal,
    /// CBOR of [`ResponsePayload`]: the exact bytes every endorsement signs.
    #[serde(with = "serde_bytes")]
    pub response: Vec<u8>,
    /// One per endorsing node.
    pub endorsements: Vec<Endorsement>,
}

impl Transaction {
    /// Decodes a transaction.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TxError> {
        let tx: Transaction = decode(bytes, MAX_TX_BYTES).map_err(|source| TxError::Cbor {
            what: "transaction",
            source,
        })?;
        if tx.endorsements.len() > MAX_ENDORSEMENTS {
            return Err(TxError::Invalid(format!(
                "{} endorsements, at most {MAX_ENDORSEMENTS}",
                tx.endorsements.len()
            )));
        }
        Ok(tx)
    }

    /// Encodes a transaction.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TxError> {
        encode(self).map_err(|source| TxError::Cbor {
            what: "transaction",
            source,
        })
    }

    /// Decodes the response payload.
    pub fn decode_response(&self) -> Result<ResponsePayload, TxError> {
        decode(&self.response, MAX_RESPONSE_BYTES).map_err(|source| TxError::Cbor {
            what: "response payload",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sphr_crypto::cert::{CertificateBody, Role};

    pub(crate) fn cert(seed: u8) -> (SecretKey, Certificate) {
        let ca = SecretKey::from_bytes(&[200; 32]);
        let k = SecretKey::from_bytes(&[seed; 32]);
        let body = CertificateBody {
            subject: format!("user{seed}"),
            org: "Org1".into(),
            role: Role::Client,
            public_key: k.public_key(),
            pre_public_key: None,
            not_before: 0,
            not_after: u64::MAX,
        };
        (k, Certificate::issue(&ca, body).unwrap())
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    prop_compose! {
        fn arb_proposal()(seed in 1u8..50, nonce in any::<[u8; 32]>(), ts in any::<u64>(),
                          f in "[a-z]{1,10}", args in proptest::collection::vec(arb_bytes(40), 0..5))
                          -> (SecretKey, Proposal) {
            let (k, c) = cert(seed);
            (k, Proposal {
                header: ProposalHeader { network_id: Hash32([9; 32]), creator: c, nonce: Hash32(nonce), timestamp_ms: ts },
                contract: "kv".into(),
                function: f,
                args: args.into_iter().map(ByteBuf::from).collect(),
            })
        }
    }

    prop_compose! {
        fn arb_rwset()(reads in proptest::collection::vec((arb_bytes(20), proptest::option::of((any::<u64>(), any::<u32>()))), 0..5),
                       writes in proptest::collection::vec((arb_bytes(20), proptest::option::of(arb_bytes(30))), 0..5)) -> RwSet {
            RwSet {
                reads: reads.into_iter().map(|(key, v)| Read { key, version: v.map(|(block, tx)| Version { block, tx }) }).collect(),
                writes: writes.into_iter().map(|(key, value)| Write { key, value }).collect(),
            }
        }
    }

    proptest! {
        #[test]
        fn signed_proposal_round_trip((k, p) in arb_proposal()) {
            let sp = p.sign(&k).unwrap();
            let back = SignedProposal::from_bytes(&sp.to_bytes().unwrap()).unwrap();
            prop_assert_eq!(&back, &sp);
            let p2 = back.decode_proposal().unwrap();
            prop_assert_eq!(&p2, &p);
            prop_assert!(back.verify_signature(&p2).is_ok());
            prop_assert_eq!(p2.tx_id(), p.tx_id());
        }

        #[test]
        fn transaction_round_trip((k, p) in arb_proposal(), rwset in arb_rwset(), resp in arb_bytes(50)) {
            let sp = p.sign(&k).unwrap();
            let payload = ResponsePayload {
                tx_id: p.tx_id(), proposal_hash: sp.proposal_hash(), rwset,
                response: resp, events: vec![Event { name: "e".into(), payload: vec![1] }],
            };
            let response = encode(&payload).unwrap();
            let (nk, nc) = cert(99);
            let tx = Transaction {
                signed_proposal: sp,
                endorsements: vec![Endorsement { endorser: nc, signature: nk.sign(&response) }],
                response,
            };
            let back = Transaction::from_bytes(&tx.to_bytes().unwrap()).unwrap();
            prop_assert_eq!(&back, &tx);
            prop_assert_eq!(back.decode_response().unwrap(), payload);
        }

        #[test]
        fn proposal_response_round_trip((k, p) in arb_proposal(), rwset in arb_rwset()) {
            let sp = p.sign(&k).unwrap();
            let payload = ResponsePayload {
                tx_id: p.tx_id(), proposal_hash: sp.proposal_hash(), rwset,
                response: vec![1, 2], events: vec![],
            };
            let response = encode(&payload).unwrap();
            let (nk, nc) = cert(77);
            let pr = ProposalResponse {
                endorsement: Endorsement { endorser: nc, signature: nk.sign(&response) },
                response,
            };
            prop_assert_eq!(ProposalResponse::from_bytes(&pr.to_bytes().unwrap()).unwrap(), pr);
        }

        #[test]
        fn version_bytes_round_trip(block in any::<u64>(), tx in any::<u32>()) {
            let v = Version { block, tx };
            prop_assert_eq!(Version::from_bytes(&v.to_bytes()), Some(v));
        }

        #[test]
        fn garbage_never_panics(bytes in arb_bytes(300)) {
            let _ = Transaction::from_bytes(&bytes);
            let _ = SignedProposal::from_bytes(&bytes);
        }
    }

    #[test]
    fn tampered_proposal_fails_signature() {
        let (k, c) = cert(1);
        let p = Proposal {
            header: ProposalHeader {
                network_id: Hash32::ZERO,
                creator: c,
                nonce: Hash32([1; 32]),
                timestamp_ms: 1,
            },
            contract: "kv".into(),
            function: "put".into(),
            args: vec![],
        };
        let mut sp = p.sign(&k).unwrap();
        let last = sp.proposal.len() - 1;
        sp.proposal[last] ^= 1;
        if let Ok(p2) = sp.decode_proposal() {
            assert!(sp.verify_signature(&p2).is_err());
        }
    }
}
