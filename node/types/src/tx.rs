//! Proposals, endorsements and transactions.
//!
//! ```text
//!  Proposal { header { network_id, creator cert, nonce, timestamp }, contract, function, args }
//!     | CBOR, signed by the creator              -> SignedProposal { proposal bytes, signature }
//!     | simulated by each endorser               -> ResponsePayload { tx_id, proposal_hash, rwset,
//!     |                                                               response, events }
//!     | CBOR, signed by each endorsing node      -> Endorsement { endorser cert, signature,
//!     v                                                           batch proof? }
//!  Transaction { signed_proposal, response bytes, endorsements }
//! ```
//!
//! An endorser that answers many proposals at once (a batched endorse request between nodes)
//! signs once: the root of a Merkle tree over the payloads ([`batch_tree`]). Each endorsement
//! then carries a [`BatchProof`] (its leaf's index and the sibling hashes up to the root), and
//! [`Endorsement::signed_message`] says what its signature covers. Every payload is still
//! attested on its own: the proof ties exactly that payload to the signed root. One
//! verification per endorser and batch serves every transaction of the batch (the verified
//! signature cache remembers it), where a signature per payload would need one each.
//!
//! The tx id is SHA-256 over the creator's certificate and the nonce, so a replayed proposal
//! keeps its id and is caught as a duplicate.

use std::borrow::Cow;

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

/// An endorsing node's signature over the response payload bytes, or over the root of a
/// batch of payloads that includes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endorsement {
    /// The endorsing node's certificate (role `node`).
    pub endorser: Certificate,
    /// Signature over [`Endorsement::signed_message`].
    pub signature: Signature,
    /// Where the payload sits in the batch the endorser signed; absent when the signature is
    /// over the payload itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchProof>,
}

impl Endorsement {
    /// An endorsement whose signature is over the payload itself.
    pub fn single(endorser: Certificate, signature: Signature) -> Endorsement {
        Endorsement {
            endorser,
            signature,
            batch: None,
        }
    }

    /// What the signature covers for `payload`: the payload bytes, or the batch message
    /// ([`batch_message`]) of the root that the proof and the payload's leaf lead to.
    pub fn signed_message<'a>(&self, payload: &'a [u8]) -> Cow<'a, [u8]> {
        self.signed_message_of(&mut EndorsedPayload::new(payload))
    }

    /// [`Endorsement::signed_message`] for one of several endorsements of the same payload
    /// (a transaction's): the payload's leaf is hashed once for all of them.
    pub fn signed_message_of<'a>(&self, payload: &mut EndorsedPayload<'a>) -> Cow<'a, [u8]> {
        match &self.batch {
            None => Cow::Borrowed(payload.bytes),
            Some(proof) => Cow::Owned(batch_message(&proof.root(payload.leaf()))),
        }
    }
}

/// An endorsed payload and its batch-tree leaf ([`batch_leaf`]), hashed on first use and
/// kept: the endorsements of a transaction all carry the same payload, each in its own
/// endorser's tree.
#[derive(Debug, Clone)]
pub struct EndorsedPayload<'a> {
    bytes: &'a [u8],
    leaf: Option<Hash32>,
}

impl<'a> EndorsedPayload<'a> {
    /// `bytes`, its leaf not hashed yet.
    pub fn new(bytes: &'a [u8]) -> EndorsedPayload<'a> {
        EndorsedPayload { bytes, leaf: None }
    }

    /// The payload's leaf.
    pub fn leaf(&mut self) -> Hash32 {
        let bytes = self.bytes;
        *self.leaf.get_or_insert_with(|| batch_leaf(bytes))
    }
}

/// Most levels of an endorsement batch tree (so at most 256 payloads per signature).
pub const MAX_BATCH_DEPTH: usize = 8;

/// An endorsement's place in a batch tree: the index of its leaf and the sibling hashes from
/// the leaf up to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProof {
    /// Index of the payload's leaf (its position in the batch).
    pub index: u32,
    /// Sibling hashes, leaf level first (at most [`MAX_BATCH_DEPTH`]).
    pub siblings: Vec<Hash32>,
}

impl BatchProof {
    /// The root that `leaf` and this proof lead to.
    pub fn root(&self, leaf: Hash32) -> Hash32 {
        let mut node = leaf;
        for (level, sibling) in self.siblings.iter().enumerate() {
            let right = level < 32 && (self.index >> level) & 1 == 1;
            node = if right {
                batch_node(sibling, &node)
            } else {
                batch_node(&node, sibling)
            };
        }
        node
    }

    /// Checks the shape: depth and index in range.
    pub fn check(&self) -> Result<(), TxError> {
        let depth = self.siblings.len();
        if depth == 0 || depth > MAX_BATCH_DEPTH || u64::from(self.index) >= 1u64 << depth {
            return Err(TxError::Invalid(format!(
                "endorsement batch proof of depth {depth} with index {}: depth must be 1 to \
                 {MAX_BATCH_DEPTH} and the index below 2^depth",
                self.index
            )));
        }
        Ok(())
    }
}

/// The leaf of a payload in a batch tree (domain-separated from inner nodes).
pub fn batch_leaf(payload: &[u8]) -> Hash32 {
    sha256_parts(&[b"sphr/endorse-batch/leaf", payload])
}

fn batch_node(left: &Hash32, right: &Hash32) -> Hash32 {
    sha256_parts(&[b"sphr/endorse-batch/node", &left.0, &right.0])
}

/// What an endorser signs for a batch: a tag that no CBOR item starts with (0xff is CBOR's
/// "break"), so it cannot be read as a payload, then the root.
pub fn batch_message(root: &Hash32) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.push(0xff);
    m.extend_from_slice(b"sphr/endorse-batch/v1");
    m.extend_from_slice(&root.0);
    m
}

/// The batch tree over `payloads` (2 to 2^[`MAX_BATCH_DEPTH`] of them): the message to sign
/// and each payload's proof, in order. Leaves are padded to a power of two with a filler
/// that no payload's leaf can equal.
pub fn batch_tree(payloads: &[&[u8]]) -> Result<(Vec<u8>, Vec<BatchProof>), TxError> {
    let n = payloads.len();
    if !(2..=1usize << MAX_BATCH_DEPTH).contains(&n) {
        return Err(TxError::Invalid(format!(
            "a batch tree needs 2 to {} payloads, not {n}",
            1usize << MAX_BATCH_DEPTH
        )));
    }
    let width = n.next_power_of_two();
    let filler = sha256(b"sphr/endorse-batch/filler");
    let mut level: Vec<Hash32> = payloads.iter().map(|p| batch_leaf(p)).collect();
    level.resize(width, filler);
    let mut proofs: Vec<BatchProof> = (0..n)
        .map(|i| BatchProof {
            index: i as u32,
            siblings: Vec::with_capacity(width.trailing_zeros() as usize),
        })
        .collect();
    while level.len() > 1 {
        for (i, proof) in proofs.iter_mut().enumerate() {
            let at = i >> proof.siblings.len();
            proof.siblings.push(level[at ^ 1]);
        }
        level = level
            .chunks_exact(2)
            .map(|pair| batch_node(&pair[0], &pair[1]))
            .collect();
    }
    Ok((batch_message(&level[0]), proofs))
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
        let pr: ProposalResponse =
            decode(bytes, MAX_RESPONSE_BYTES + 4096).map_err(|source| TxError::Cbor {
                what: "proposal response",
                source,
            })?;
        if let Some(proof) = &pr.endorsement.batch {
            proof.check()?;
        }
        Ok(pr)
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
        for e in &tx.endorsements {
            if let Some(proof) = &e.batch {
                proof.check()?;
            }
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
                endorsements: vec![Endorsement::single(nc, nk.sign(&response))],
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
                endorsement: Endorsement::single(nc, nk.sign(&response)),
                response,
            };
            prop_assert_eq!(ProposalResponse::from_bytes(&pr.to_bytes().unwrap()).unwrap(), pr);
        }

        /// Every payload of a batch leads to the signed message with its own proof, and with
        /// no other payload or proof.
        #[test]
        fn batch_proofs_lead_each_payload_to_the_signed_root(
            payloads in prop::collection::vec(arb_bytes(40), 2..70),
            flip in any::<prop::sample::Index>(),
        ) {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let (message, proofs) = batch_tree(&refs).unwrap();
            prop_assert_eq!(proofs.len(), payloads.len());
            let (k, c) = cert(9);
            let sig = k.sign(&message);
            for (i, (p, proof)) in payloads.iter().zip(&proofs).enumerate() {
                prop_assert!(proof.check().is_ok());
                prop_assert_eq!(proof.index as usize, i);
                let e = Endorsement { endorser: c.clone(), signature: sig, batch: Some(proof.clone()) };
                let signed = e.signed_message(p);
                prop_assert_eq!(signed.as_ref(), message.as_slice());
                prop_assert!(c.body.public_key.verify(&signed, &sig).is_ok());
                // A payload not in the batch (one byte changed) does not verify.
                let mut other = p.clone();
                other.push(0);
                prop_assert!(c.body.public_key.verify(&e.signed_message(&other), &sig).is_err());
            }
            // Another payload's proof does not fit this payload (unless the two are equal).
            let j = flip.index(payloads.len());
            let i = (j + 1) % payloads.len();
            if payloads[i] != payloads[j] {
                let e = Endorsement { endorser: c.clone(), signature: sig, batch: Some(proofs[j].clone()) };
                prop_assert!(c.body.public_key.verify(&e.signed_message(&payloads[i]), &sig).is_err());
            }
        }

        /// A transaction's endorsements from different batches (and one signed alone), checked
        /// with its payload's leaf hashed once, cover exactly what each checked alone covers.
        #[test]
        fn endorsements_of_one_payload_share_its_leaf(
            a in prop::collection::vec(arb_bytes(40), 1..9),
            b in prop::collection::vec(arb_bytes(40), 1..20),
            payload in arb_bytes(60),
        ) {
            let (k, c) = cert(9);
            let mut endorsements = Vec::new();
            for others in [&a, &b] {
                // The payload last in one batch, first in the other.
                let mut batch: Vec<&[u8]> = others.iter().map(Vec::as_slice).collect();
                if endorsements.is_empty() { batch.push(&payload) } else { batch.insert(0, &payload) }
                let (message, proofs) = batch_tree(&batch).unwrap();
                let at = if endorsements.is_empty() { batch.len() - 1 } else { 0 };
                endorsements.push((message.clone(), Endorsement {
                    endorser: c.clone(),
                    signature: k.sign(&message),
                    batch: Some(proofs[at].clone()),
                }));
            }
            endorsements.push((payload.clone(), Endorsement::single(c.clone(), k.sign(&payload))));
            let mut shared = EndorsedPayload::new(&payload);
            for (message, e) in &endorsements {
                let once = e.signed_message_of(&mut shared);
                prop_assert_eq!(once.as_ref(), message.as_slice());
                let alone = e.signed_message(&payload);
                prop_assert_eq!(once.as_ref(), alone.as_ref());
                prop_assert!(c.body.public_key.verify(&once, &e.signature).is_ok());
            }
            prop_assert_eq!(shared.leaf(), batch_leaf(&payload));
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
    fn batch_endorsements_round_trip_and_bad_proofs_are_refused_at_decode() {
        let payloads: [&[u8]; 3] = [b"a", b"b", b"c"];
        let (message, proofs) = batch_tree(&payloads).unwrap();
        // Three leaves pad to four: depth 2.
        assert!(proofs.iter().all(|p| p.siblings.len() == 2));
        let (nk, nc) = cert(5);
        let sig = nk.sign(&message);
        let pr = ProposalResponse {
            response: payloads[1].to_vec(),
            endorsement: Endorsement {
                endorser: nc.clone(),
                signature: sig,
                batch: Some(proofs[1].clone()),
            },
        };
        let back = ProposalResponse::from_bytes(&pr.to_bytes().unwrap()).unwrap();
        assert_eq!(back, pr);
        // A single endorsement encodes without the field, as before batches existed.
        let single = Endorsement::single(nc.clone(), nk.sign(b"x"));
        let bytes = encode(&single).unwrap();
        assert!(!bytes.windows(5).any(|w| w == b"batch"));

        let bad_proofs = [
            BatchProof {
                index: 0,
                siblings: vec![],
            },
            BatchProof {
                index: 4,
                siblings: vec![Hash32::ZERO; 2],
            },
            BatchProof {
                index: 0,
                siblings: vec![Hash32::ZERO; MAX_BATCH_DEPTH + 1],
            },
        ];
        for bad in bad_proofs {
            let mut pr = pr.clone();
            pr.endorsement.batch = Some(bad.clone());
            let err = ProposalResponse::from_bytes(&pr.to_bytes().unwrap()).unwrap_err();
            assert!(err.to_string().contains("batch proof"), "{err}");
        }
        assert!(batch_tree(&payloads[..1]).is_err());
        assert!(batch_tree(&[]).is_err());
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
