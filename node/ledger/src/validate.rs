//! The committer's validation of a block's transactions, as a chain of types.
//!
//! ```text
//!  &[tx bytes] ──Received::decode──────────> Received          BAD_PAYLOAD, WRONG_NETWORK
//!      ──check_signatures(cache, tx index)─> SignaturesChecked BAD_CREATOR, BAD_SIGNATURE,
//!                                                              DUPLICATE_TXID, BAD_PAYLOAD,
//!                                                              UNKNOWN_CONTRACT,
//!                                                              BAD_ENDORSEMENT_SIGNATURE
//!      ──check_policy──────────────────────> PolicyChecked     ENDORSEMENT_POLICY_FAILURE
//!      ──check_mvcc(state)─────────────────> MvccChecked       MVCC_READ_CONFLICT or VALID
//! ```
//!
//! Each stage can only be made from the one before, so no later stage sees unchecked data.
//! For every transaction the first check that fails gives its code, in this order:
//!
//! 1. tx, proposal or response does not decode (or breaks a size rule): `BAD_PAYLOAD`
//! 2. the proposal's network id is not ours: `WRONG_NETWORK`
//! 3. the creator's certificate is not signed by the CA of its org in genesis, or the block
//!    time (seconds) is outside its validity: `BAD_CREATOR`
//! 4. the creator's signature over the proposal bytes: `BAD_SIGNATURE`
//! 5. the tx id is in the tx index or earlier in this block (among txs that passed 4):
//!    `DUPLICATE_TXID`
//! 6. the response names another tx id or proposal hash, or a read or write key is outside the
//!    contract's namespace, or a read or write set is not sorted without duplicates:
//!    `BAD_PAYLOAD`
//! 7. the contract is not in genesis: `UNKNOWN_CONTRACT`
//! 8. an endorsement's certificate is not that of a genesis node of its org (role `node`, same
//!    key as the node of that name in genesis, CA-signed, valid at the block time), or its
//!    signature over the response bytes fails: `BAD_ENDORSEMENT_SIGNATURE`
//! 9. the distinct endorsing orgs do not satisfy the contract's policy:
//!    `ENDORSEMENT_POLICY_FAILURE`
//! 10. a read's version differs from the committed one, counting writes of earlier VALID txs
//!     of the same block: `MVCC_READ_CONFLICT`
//!
//! Cost: certificates already checked are remembered ([`CertCache`]); all creator and
//! endorsement signatures of a block go through `verify_many` in chunks of
//! [`SIG_BATCH_CHUNK`], each chunk one ZIP-215 batch equation whose verdict for each signature
//! is the single verdict, whatever shares the chunk (see `sphr_crypto::keys`), so all nodes
//! compute the same codes. Signatures this process already verified (the
//! creator's at endorsement, its own endorsement, the remote endorsements its gateway checked:
//! [`VerifiedSigs`], set with [`Validator::set_verified_signatures`]) are not checked again;
//! the verdicts stay exactly the same.
//!
//! Only store failures are errors ([`LedgerError`]); every property of the transactions is a
//! [`ValidationCode`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use sphr_crypto::cbor;
use sphr_crypto::cert::{Certificate, Role};
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::{PublicKey, Signature, verify_many};
use sphr_crypto::sigcache::VerifiedSigs;
use sphr_types::{
    BlockHeader, EndorsedPayload, Event, GenesisConfig, Policy, ProposalHeader, ResponsePayload,
    Transaction, ValidationCode, Version, Write, strip_namespace,
};

use crate::cert_cache::CertCache;
use crate::codec::{TxLocation, encode_state_value};
use crate::ledger::LedgerError;
use crate::store::{StateReader, TxIndexReader};

/// Most signatures per `verify_many` call.
pub const SIG_BATCH_CHUNK: usize = 128;

/// What a committed block tells about one of its transactions: what the node needs to notify
/// waiting clients and count codes. Holds no arguments, keys or values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    /// Position in the block.
    pub position: u32,
    /// The tx id the proposal claims (`None`: the proposal did not decode).
    pub tx_id: Option<Hash32>,
    /// Whether the creator's signature verified, so that `tx_id` is really the creator's.
    /// When false, another party may have put someone else's tx id in a forged transaction:
    /// do not tell the owner of that id that their transaction failed.
    pub id_verified: bool,
    /// The verdict.
    pub code: ValidationCode,
    /// Contract name, when the proposal decoded.
    pub contract: Option<String>,
    /// Function name, when the proposal decoded.
    pub function: Option<String>,
    /// Events the contract emitted (VALID transactions only).
    pub events: Vec<Event>,
}

/// The genesis facts validation needs, indexed, and the certificate cache.
///
/// Made once per ledger; [`Validator::validate`] runs all stages on one block.
#[derive(Debug)]
pub struct Validator {
    network_id: Hash32,
    org_names: Vec<String>,
    ca_keys: HashMap<String, PublicKey>,
    /// org -> node name -> key.
    nodes: HashMap<String, HashMap<String, PublicKey>>,
    policies: HashMap<String, Policy>,
    certs: CertCache,
    /// `name@org` of each genesis node -> the latest `not_after` of its node certificates
    /// met (CA signature verified) in blocks validated since the ledger was opened.
    node_cert_expiry: BTreeMap<String, u64>,
    /// Signatures this process already verified (endorser, own endorsements): the
    /// creator and endorsement checks skip them, with the same verdicts.
    sigs: Option<Arc<VerifiedSigs>>,
}

impl Validator {
    /// A validator for the network of `genesis`, whose id is `network_id`.
    pub fn new(genesis: &GenesisConfig, network_id: Hash32) -> Self {
        let mut nodes: HashMap<String, HashMap<String, PublicKey>> = HashMap::new();
        for n in &genesis.nodes {
            nodes
                .entry(n.org.clone())
                .or_default()
                .insert(n.name.clone(), n.public_key);
        }
        Validator {
            network_id,
            org_names: genesis.org_names(),
            ca_keys: genesis
                .orgs
                .iter()
                .map(|o| (o.name.clone(), o.ca_key))
                .collect(),
            nodes,
            policies: genesis
                .contracts
                .iter()
                .map(|c| (c.name.clone(), c.policy.clone()))
                .collect(),
            certs: CertCache::default(),
            node_cert_expiry: BTreeMap::new(),
            sigs: None,
        }
    }

    /// Skips, in the signature checks, what `sigs` knows to verify (same verdicts, less work).
    pub fn set_verified_signatures(&mut self, sigs: Arc<VerifiedSigs>) {
        self.sigs = Some(sigs);
    }

    /// The genesis nodes whose node certificate was met in a block validated since the ledger
    /// was opened, as `(name@org, not_after)` with the latest `not_after` seen (a renewed
    /// certificate replaces the old one as soon as one of its endorsements is committed).
    pub fn node_cert_expiry(&self) -> Vec<(String, u64)> {
        self.node_cert_expiry
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Notes a certificate whose CA signature verified, when it is a genesis node's.
    fn note_node_cert(&mut self, cert: &Certificate) {
        let b = &cert.body;
        let is_node = b.role == Role::Node
            && self
                .nodes
                .get(&b.org)
                .and_then(|n| n.get(&b.subject))
                .is_some_and(|k| *k == b.public_key);
        if is_node {
            let e = self
                .node_cert_expiry
                .entry(format!("{}@{}", b.subject, b.org))
                .or_insert(b.not_after);
            *e = (*e).max(b.not_after);
        }
    }

    /// The network id transactions must carry.
    pub fn network_id(&self) -> Hash32 {
        self.network_id
    }

    /// Runs every stage on the transactions of the block with `header`.
    pub fn validate<S>(
        &mut self,
        header: &BlockHeader,
        txs: &[impl AsRef<[u8]>],
        store: &S,
    ) -> Result<MvccChecked, LedgerError>
    where
        S: StateReader + TxIndexReader + ?Sized,
    {
        Received::decode(self, header, txs)
            .check_signatures(self, store)?
            .check_policy(self)
            .check_mvcc(store)
    }

    /// Number of certificates in the cache.
    pub fn cached_certificates(&self) -> usize {
        self.certs.len()
    }
}

/// The names a transaction's proposal gives.
#[derive(Debug, Clone)]
struct TxMeta {
    tx_id: Hash32,
    contract: String,
    function: String,
}

/// A transaction whose bytes all decoded.
#[derive(Debug, Clone)]
struct Body {
    tx: Transaction,
    header: ProposalHeader,
    response: ResponsePayload,
}

/// One transaction on its way through the stages.
#[derive(Debug, Clone)]
struct Slot {
    /// `None` while every check so far passed; the first failure sets it for good.
    code: Option<ValidationCode>,
    meta: Option<TxMeta>,
    body: Option<Box<Body>>,
    /// The creator's signature verified.
    id_verified: bool,
}

impl Slot {
    fn failed(code: ValidationCode, meta: Option<TxMeta>) -> Slot {
        Slot {
            code: Some(code),
            meta,
            body: None,
            id_verified: false,
        }
    }

    /// The body of a transaction still in the running.
    fn pending(&self) -> Option<&Body> {
        match self.code {
            None => self.body.as_deref(),
            Some(_) => None,
        }
    }
}

/// The block the transactions belong to, as validation needs it.
#[derive(Debug, Clone, Copy)]
struct BlockCtx {
    number: u64,
    time_s: u64,
}

/// Stage 1: every transaction decoded (or marked `BAD_PAYLOAD`), network ids checked.
#[derive(Debug, Clone)]
pub struct Received {
    block: BlockCtx,
    slots: Vec<Slot>,
}

/// Stage 2: identities, signatures, tx ids, payload consistency, contracts and endorsements
/// checked.
#[derive(Debug, Clone)]
pub struct SignaturesChecked {
    block: BlockCtx,
    slots: Vec<Slot>,
}

/// Stage 3: endorsement policies checked.
#[derive(Debug, Clone)]
pub struct PolicyChecked {
    block: BlockCtx,
    slots: Vec<Slot>,
}

/// Stage 4: read versions checked; every transaction has its final code.
#[derive(Debug, Clone)]
pub struct MvccChecked {
    block: BlockCtx,
    slots: Vec<Slot>,
    codes: Vec<ValidationCode>,
}

impl Received {
    /// Decodes the transactions of the block with `header`.
    pub fn decode(v: &Validator, header: &BlockHeader, txs: &[impl AsRef<[u8]>]) -> Received {
        Received {
            block: BlockCtx {
                number: header.number,
                time_s: header.timestamp_ms / 1000,
            },
            slots: txs.iter().map(|raw| decode_one(v, raw.as_ref())).collect(),
        }
    }

    /// Checks certificates, signatures (batched), tx ids, payload consistency, contracts and
    /// endorser identities. `index` answers whether a tx id is already committed.
    pub fn check_signatures<I>(
        self,
        v: &mut Validator,
        index: &I,
    ) -> Result<SignaturesChecked, LedgerError>
    where
        I: TxIndexReader + ?Sized,
    {
        let Received { block, mut slots } = self;
        let now = block.time_s;

        // 1. Certificates: the CA signature of each distinct certificate not in the cache,
        //    in one batch. Per slot: the creator's cert entry and a range of endorser entries.
        let mut certs = CertChecks::default();
        let mut creator_entry: Vec<Option<usize>> = Vec::with_capacity(slots.len());
        let mut endorser_entries: Vec<usize> = Vec::new();
        let mut endorser_range: Vec<Range<usize>> = Vec::with_capacity(slots.len());
        for slot in &slots {
            let start = endorser_entries.len();
            match slot.pending() {
                Some(b) => {
                    creator_entry.push(Some(certs.entry(v, &b.header.creator)));
                    for e in &b.tx.endorsements {
                        endorser_entries.push(certs.entry(v, &e.endorser));
                    }
                }
                None => creator_entry.push(None),
            }
            endorser_range.push(start..endorser_entries.len());
        }
        for cert in certs.verify(&mut v.certs) {
            v.note_node_cert(cert);
        }

        // 2. Creator certificates (BAD_CREATOR) and endorser identities (decided at step 8).
        let mut creator_ok: Vec<bool> = Vec::with_capacity(slots.len());
        let mut endorsers_ok: Vec<bool> = Vec::with_capacity(slots.len());
        for ((slot, ce), er) in slots.iter().zip(&creator_entry).zip(&endorser_range) {
            let Some(b) = slot.pending() else {
                creator_ok.push(false);
                endorsers_ok.push(false);
                continue;
            };
            creator_ok.push(
                ce.is_some_and(|i| certs.ok(i)) && b.header.creator.check_validity(now).is_ok(),
            );
            endorsers_ok.push(
                b.tx.endorsements
                    .iter()
                    .zip(endorser_entries.get(er.clone()).unwrap_or_default())
                    .all(|(e, &i)| certs.ok(i) && v.is_genesis_node(&e.endorser, now)),
            );
        }
        drop(certs);
        for (slot, ok) in slots.iter_mut().zip(&creator_ok) {
            if slot.code.is_none() && !ok {
                slot.code = Some(ValidationCode::BadCreator);
            }
        }

        // 3. Signatures: the creator's over the proposal, each endorser's over the response
        //    (only when all its endorser identities are right: otherwise the tx fails at 8
        //    whatever its signatures say).
        //    What each endorsement signed: the response, or its batch's root message.
        let messages: Vec<Vec<Cow<'_, [u8]>>> = slots
            .iter()
            .zip(&endorsers_ok)
            .map(|(slot, &ends_ok)| match slot.pending() {
                Some(b) if ends_ok => {
                    let mut payload = EndorsedPayload::new(&b.tx.response);
                    b.tx.endorsements
                        .iter()
                        .map(|e| e.signed_message_of(&mut payload))
                        .collect()
                }
                _ => Vec::new(),
            })
            .collect();
        let mut items: Vec<(&[u8], &Signature, &PublicKey)> = Vec::new();
        let mut sig_start: Vec<usize> = Vec::with_capacity(slots.len());
        for ((slot, &ends_ok), msgs) in slots.iter().zip(&endorsers_ok).zip(&messages) {
            sig_start.push(items.len());
            let Some(b) = slot.pending() else { continue };
            let sp = &b.tx.signed_proposal;
            items.push((
                &sp.proposal,
                &sp.signature,
                &b.header.creator.body.public_key,
            ));
            if ends_ok {
                for (e, m) in b.tx.endorsements.iter().zip(msgs) {
                    items.push((m.as_ref(), &e.signature, &e.endorser.body.public_key));
                }
            }
        }
        let mut sig_ok = Vec::with_capacity(items.len());
        for chunk in items.chunks(SIG_BATCH_CHUNK) {
            sig_ok.extend(match &v.sigs {
                Some(known) => known.verify_many(chunk),
                None => verify_many(chunk),
            });
        }
        drop(items);
        drop(messages);

        // 4. In block order, the checks that follow the signatures.
        let mut seen: HashSet<Hash32> = HashSet::with_capacity(slots.len());
        for ((slot, &start), &ends_ok) in slots.iter_mut().zip(&sig_start).zip(&endorsers_ok) {
            let (code, id_verified) = {
                let (Some(b), Some(meta)) = (slot.pending(), slot.meta.as_ref()) else {
                    continue;
                };
                if !sig_ok.get(start).copied().unwrap_or(false) {
                    (Some(ValidationCode::BadSignature), false)
                } else if !seen.insert(meta.tx_id) || index.contains_tx(&meta.tx_id)? {
                    (Some(ValidationCode::DuplicateTxid), true)
                } else if !payload_consistent(b, meta) {
                    (Some(ValidationCode::BadPayload), true)
                } else if !v.policies.contains_key(&meta.contract) {
                    (Some(ValidationCode::UnknownContract), true)
                } else {
                    // This tx's endorsement verdicts follow its creator's in `sig_ok`.
                    let n = b.tx.endorsements.len();
                    let sigs = start
                        .checked_add(1)
                        .and_then(|s| Some(s..s.checked_add(n)?))
                        .and_then(|r| sig_ok.get(r));
                    let all_good = ends_ok && sigs.is_some_and(|s| s.iter().all(|ok| *ok));
                    let code = (!all_good).then_some(ValidationCode::BadEndorsementSignature);
                    (code, true)
                }
            };
            slot.code = code;
            slot.id_verified = id_verified;
        }
        Ok(SignaturesChecked { block, slots })
    }
}

impl SignaturesChecked {
    /// Checks each pending transaction's distinct endorsing orgs against its contract's policy.
    pub fn check_policy(self, v: &Validator) -> PolicyChecked {
        let SignaturesChecked { block, mut slots } = self;
        let mut failed: Vec<bool> = Vec::with_capacity(slots.len());
        let mut orgs: Vec<&str> = Vec::with_capacity(8);
        for slot in &slots {
            let (Some(b), Some(meta)) = (slot.pending(), slot.meta.as_ref()) else {
                failed.push(false);
                continue;
            };
            orgs.clear();
            for e in &b.tx.endorsements {
                let org = e.endorser.body.org.as_str();
                if !orgs.contains(&org) {
                    orgs.push(org);
                }
            }
            let satisfied = v
                .policies
                .get(&meta.contract)
                .is_some_and(|p| p.is_satisfied(&v.org_names, orgs.iter().copied()));
            failed.push(!satisfied);
        }
        drop(orgs);
        for (slot, failed) in slots.iter_mut().zip(failed) {
            if failed {
                slot.code = Some(ValidationCode::EndorsementPolicyFailure);
            }
        }
        PolicyChecked { block, slots }
    }
}

impl PolicyChecked {
    /// Checks every read's version against committed state overlaid with the writes of earlier
    /// VALID transactions of this block; what passes is VALID.
    pub fn check_mvcc<S>(self, state: &S) -> Result<MvccChecked, LedgerError>
    where
        S: StateReader + ?Sized,
    {
        let PolicyChecked { block, slots } = self;
        let mut codes = Vec::with_capacity(slots.len());
        {
            // Key -> version after the earlier valid txs of this block (None: deleted).
            let mut overlay: HashMap<&[u8], Option<Version>> = HashMap::new();
            for (position, slot) in (0u32..).zip(&slots) {
                let Some(b) = slot.pending() else {
                    codes.push(slot.code.unwrap_or(ValidationCode::BadPayload));
                    continue;
                };
                let rwset = &b.response.rwset;
                let mut conflict = false;
                for r in &rwset.reads {
                    let current = match overlay.get(r.key.as_slice()) {
                        Some(v) => *v,
                        None => state.version(&r.key)?,
                    };
                    if current != r.version {
                        conflict = true;
                        break;
                    }
                }
                if conflict {
                    codes.push(ValidationCode::MvccReadConflict);
                    continue;
                }
                let version = Version {
                    block: block.number,
                    tx: position,
                };
                for w in &rwset.writes {
                    overlay.insert(&w.key, w.value.as_ref().map(|_| version));
                }
                codes.push(ValidationCode::Valid);
            }
        }
        Ok(MvccChecked {
            block,
            slots,
            codes,
        })
    }
}

impl MvccChecked {
    /// The code of each transaction, in block order.
    pub fn codes(&self) -> &[ValidationCode] {
        &self.codes
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether the block has no transactions.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Number of VALID transactions.
    pub fn valid_count(&self) -> usize {
        self.codes.iter().filter(|c| c.is_valid()).count()
    }

    /// The writes of VALID transactions in block order, as `(key, stored value)`: the value is
    /// the version prefix and the bytes, or `None` for a delete. A later write of the same key
    /// comes later in the list.
    pub fn state_writes(&self) -> Vec<(&[u8], Option<Vec<u8>>)> {
        let mut out = Vec::new();
        for ((position, slot), code) in (0u32..).zip(&self.slots).zip(&self.codes) {
            let Some(b) = slot.body.as_deref().filter(|_| code.is_valid()) else {
                continue;
            };
            let version = Version {
                block: self.block.number,
                tx: position,
            };
            for Write { key, value } in &b.response.rwset.writes {
                let stored = value.as_deref().map(|v| encode_state_value(version, v));
                out.push((key.as_slice(), stored));
            }
        }
        out
    }

    /// The tx index entries the block adds: every transaction whose creator signature
    /// verified and whose id is new (not `DUPLICATE_TXID`), with its code. Transactions that
    /// failed earlier carry an id nobody vouches for; indexing them would let anyone who saw a
    /// pending transaction's id block it with a forged copy.
    pub fn index_entries(&self) -> Vec<(Hash32, TxLocation)> {
        (0u32..)
            .zip(&self.slots)
            .zip(&self.codes)
            .filter(|((_, s), c)| s.id_verified && **c != ValidationCode::DuplicateTxid)
            .filter_map(|((position, s), code)| {
                let meta = s.meta.as_ref()?;
                Some((
                    meta.tx_id,
                    TxLocation {
                        block: self.block.number,
                        position,
                        code: *code,
                    },
                ))
            })
            .collect()
    }

    /// What to tell the node about each transaction (events of VALID ones included).
    pub fn into_outcomes(self) -> Vec<TxOutcome> {
        (0u32..)
            .zip(self.slots)
            .zip(self.codes)
            .map(|((position, slot), code)| {
                let events = match slot.body {
                    Some(b) if code.is_valid() => b.response.events,
                    _ => Vec::new(),
                };
                let (tx_id, contract, function) = match slot.meta {
                    Some(m) => (Some(m.tx_id), Some(m.contract), Some(m.function)),
                    None => (None, None, None),
                };
                TxOutcome {
                    position,
                    tx_id,
                    id_verified: slot.id_verified,
                    code,
                    contract,
                    function,
                    events,
                }
            })
            .collect()
    }
}

impl Validator {
    /// Whether `cert` names a node of its org in genesis, with that node's key and role `node`,
    /// valid at `now` (seconds). The CA signature is checked apart.
    fn is_genesis_node(&self, cert: &Certificate, now: u64) -> bool {
        let b = &cert.body;
        b.role == Role::Node
            && self
                .nodes
                .get(&b.org)
                .and_then(|n| n.get(&b.subject))
                .is_some_and(|k| *k == b.public_key)
            && cert.check_validity(now).is_ok()
    }
}

fn decode_one(v: &Validator, raw: &[u8]) -> Slot {
    let Ok(tx) = Transaction::from_bytes(raw) else {
        return Slot::failed(ValidationCode::BadPayload, None);
    };
    let Ok(proposal) = tx.signed_proposal.decode_proposal() else {
        return Slot::failed(ValidationCode::BadPayload, None);
    };
    let meta = TxMeta {
        tx_id: proposal.tx_id(),
        contract: proposal.contract,
        function: proposal.function,
    };
    let Ok(response) = tx.decode_response() else {
        return Slot::failed(ValidationCode::BadPayload, Some(meta));
    };
    if proposal.header.network_id != v.network_id {
        return Slot::failed(ValidationCode::WrongNetwork, Some(meta));
    }
    Slot {
        code: None,
        meta: Some(meta),
        body: Some(Box::new(Body {
            tx,
            header: proposal.header,
            response,
        })),
        id_verified: false,
    }
}

/// Step 6: the response is for this proposal and stays in the contract's namespace, with read
/// and write sets sorted by key and free of duplicates (one key, one meaning).
fn payload_consistent(b: &Body, meta: &TxMeta) -> bool {
    let r = &b.response;
    r.tx_id == meta.tx_id
        && r.proposal_hash == b.tx.signed_proposal.proposal_hash()
        && keys_ok(
            &meta.contract,
            r.rwset.reads.iter().map(|x| x.key.as_slice()),
        )
        && keys_ok(
            &meta.contract,
            r.rwset.writes.iter().map(|x| x.key.as_slice()),
        )
}

fn keys_ok<'a>(contract: &str, keys: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut prev: Option<&[u8]> = None;
    for k in keys {
        if strip_namespace(contract, k).is_none() || prev.is_some_and(|p| p >= k) {
            return false;
        }
        prev = Some(k);
    }
    true
}

/// The CA-signature verdicts of the certificates of one block.
#[derive(Default)]
struct CertChecks<'a> {
    entries: Vec<CertEntry<'a>>,
    /// Issuer signature -> entry, for certificates met earlier in the block.
    by_sig: HashMap<[u8; 64], usize>,
}

struct CertEntry<'a> {
    cert: &'a Certificate,
    ok: bool,
    /// Signed bytes and CA key, while the CA signature waits for the batch.
    to_verify: Option<(Vec<u8>, PublicKey)>,
}

impl<'a> CertChecks<'a> {
    /// The entry of `cert`: a known verdict, or one queued for the batch.
    fn entry(&mut self, v: &mut Validator, cert: &'a Certificate) -> usize {
        if let Some(&i) = self.by_sig.get(&cert.signature.0)
            && self.entries.get(i).is_some_and(|e| e.cert == cert)
        {
            return i;
        }
        let (ok, to_verify) = if v.certs.contains(cert) {
            (true, None)
        } else {
            match (cert.body.check_shape(), v.ca_keys.get(&cert.body.org)) {
                // The CA signs the CBOR of the body (`Certificate::signature`).
                (Ok(()), Some(ca)) => match cbor::to_vec(&cert.body) {
                    Ok(bytes) => (false, Some((bytes, *ca))),
                    Err(_) => (false, None),
                },
                _ => (false, None),
            }
        };
        let i = self.entries.len();
        self.entries.push(CertEntry {
            cert,
            ok,
            to_verify,
        });
        self.by_sig.entry(cert.signature.0).or_insert(i);
        i
    }

    /// Verifies the queued CA signatures and caches the certificates that pass; returns
    /// those (the certificates met for the first time since the cache last held them).
    fn verify(&mut self, cache: &mut CertCache) -> Vec<&'a Certificate> {
        let queued: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries.get(i).is_some_and(|e| e.to_verify.is_some()))
            .collect();
        let mut passed = Vec::new();
        if queued.is_empty() {
            return passed;
        }
        let verdicts = {
            let items: Vec<(&[u8], &Signature, &PublicKey)> = queued
                .iter()
                .filter_map(|&i| {
                    let e = self.entries.get(i)?;
                    let (bytes, ca) = e.to_verify.as_ref()?;
                    Some((bytes.as_slice(), &e.cert.signature, ca))
                })
                .collect();
            let mut out = Vec::with_capacity(items.len());
            for chunk in items.chunks(SIG_BATCH_CHUNK) {
                out.extend(verify_many(chunk));
            }
            out
        };
        for (&i, ok) in queued.iter().zip(verdicts) {
            if let Some(e) = self.entries.get_mut(i) {
                e.ok = ok;
                e.to_verify = None;
                if ok {
                    cache.insert(e.cert.clone());
                    passed.push(e.cert);
                }
            }
        }
        passed
    }

    fn ok(&self, i: usize) -> bool {
        self.entries.get(i).is_some_and(|e| e.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{TestNetwork, put, read};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// In-memory state and tx index.
    #[derive(Default)]
    struct Mem {
        state: BTreeMap<Vec<u8>, (Version, Vec<u8>)>,
        index: Mutex<HashMap<Hash32, TxLocation>>,
    }

    impl StateReader for Mem {
        fn get_state(&self, key: &[u8]) -> Result<Option<(Version, Vec<u8>)>, LedgerError> {
            Ok(self.state.get(key).cloned())
        }
        fn range_state(
            &self,
            start: &[u8],
            end: &[u8],
            limit: usize,
        ) -> Result<Vec<crate::StateEntry>, LedgerError> {
            Ok(self
                .state
                .range(start.to_vec()..end.to_vec())
                .take(limit)
                .map(|(k, (v, x))| (k.clone(), *v, x.clone()))
                .collect())
        }
    }

    impl TxIndexReader for Mem {
        fn tx_location(&self, id: &Hash32) -> Result<Option<TxLocation>, LedgerError> {
            Ok(self.index.lock().unwrap().get(id).copied())
        }
    }

    fn header(number: u64) -> BlockHeader {
        BlockHeader {
            number,
            previous_hash: Hash32::ZERO,
            data_hash: Hash32::ZERO,
            timestamp_ms: crate::test_utils::TEST_TIME_MS,
        }
    }

    fn run(v: &mut Validator, mem: &Mem, txs: &[Transaction]) -> MvccChecked {
        let raw: Vec<Vec<u8>> = txs.iter().map(|t| t.to_bytes().unwrap()).collect();
        v.validate(&header(1), &raw, mem).unwrap()
    }

    #[test]
    fn first_failing_check_wins() {
        let net = TestNetwork::new(2, "AND(Org1, Org2)");
        let mut v = Validator::new(&net.genesis, net.network_id());
        let mem = Mem::default();
        let user = net.user(0, "alice");
        // Wrong network and a forged signature: WRONG_NETWORK comes first.
        let mut t = net
            .tx(&user)
            .network_id(Hash32([7; 32]))
            .writes(vec![put("kv", b"a", b"1")])
            .build();
        t.signed_proposal.signature.0[0] ^= 1;
        // Forged signature and only one endorsing org: BAD_SIGNATURE comes first.
        let mut t2 = net
            .tx(&user)
            .endorsers(vec![net.node(0, 0)])
            .writes(vec![put("kv", b"b", b"1")])
            .build();
        t2.signed_proposal.signature.0[0] ^= 1;
        // Undecodable.
        let garbage = vec![0xffu8, 0x00];
        let mut raw: Vec<Vec<u8>> = [t, t2].iter().map(|t| t.to_bytes().unwrap()).collect();
        raw.push(garbage);
        let out = v.validate(&header(1), &raw, &mem).unwrap();
        assert_eq!(
            out.codes(),
            &[
                ValidationCode::WrongNetwork,
                ValidationCode::BadSignature,
                ValidationCode::BadPayload
            ]
        );
        assert!(out.index_entries().is_empty());
        assert!(out.state_writes().is_empty());
        let outcomes = out.into_outcomes();
        assert!(outcomes.iter().all(|o| !o.id_verified));
        assert_eq!(outcomes[2].tx_id, None);
    }

    #[test]
    fn forged_duplicate_does_not_block_the_real_tx() {
        let net = TestNetwork::new(1, "ANY");
        let mut v = Validator::new(&net.genesis, net.network_id());
        let mem = Mem::default();
        let user = net.user(0, "alice");
        let real = net
            .tx(&user)
            .nonce(Hash32([5; 32]))
            .writes(vec![put("kv", b"a", b"1")])
            .build();
        let mut forged = real.clone();
        forged.signed_proposal.signature.0[3] ^= 1;
        let out = run(&mut v, &mem, &[forged, real.clone(), real]);
        assert_eq!(
            out.codes(),
            &[
                ValidationCode::BadSignature,
                ValidationCode::Valid,
                ValidationCode::DuplicateTxid
            ]
        );
        let idx = out.index_entries();
        assert_eq!(idx.len(), 1);
        assert_eq!(idx[0].1.position, 1);
    }

    #[test]
    fn mvcc_sees_earlier_valid_writes_and_deletes() {
        let net = TestNetwork::new(1, "ANY");
        let mut v = Validator::new(&net.genesis, net.network_id());
        let mut mem = Mem::default();
        let k = sphr_types::namespaced_key("kv", b"k");
        let v0 = Version { block: 0, tx: 0 };
        mem.state.insert(k.clone(), (v0, b"x".to_vec()));
        let user = net.user(0, "alice");
        // t1 reads k at v0 and deletes it; t2 reads k absent: valid after t1's delete;
        // t3 reads k at v0: conflict.
        let t1 = net
            .tx(&user)
            .reads(vec![read("kv", b"k", Some(v0))])
            .writes(vec![sphr_types::Write {
                key: k.clone(),
                value: None,
            }])
            .build();
        let t2 = net
            .tx(&user)
            .reads(vec![read("kv", b"k", None)])
            .writes(vec![put("kv", b"k", b"y")])
            .build();
        let t3 = net
            .tx(&user)
            .reads(vec![read("kv", b"k", Some(v0))])
            .build();
        let out = run(&mut v, &mem, &[t1, t2, t3]);
        assert_eq!(
            out.codes(),
            &[
                ValidationCode::Valid,
                ValidationCode::Valid,
                ValidationCode::MvccReadConflict
            ]
        );
        let w = out.state_writes();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].1, None);
        assert_eq!(
            w[1].1.as_deref(),
            Some(encode_state_value(Version { block: 1, tx: 1 }, b"y").as_slice())
        );
    }

    #[test]
    fn unsorted_or_foreign_keys_are_bad_payload() {
        let net = TestNetwork::new(1, "ANY");
        let mut v = Validator::new(&net.genesis, net.network_id());
        let mem = Mem::default();
        let user = net.user(0, "alice");
        let unsorted = net
            .tx(&user)
            .writes(vec![put("kv", b"b", b"1"), put("kv", b"a", b"1")])
            .build();
        let dup = net
            .tx(&user)
            .writes(vec![put("kv", b"a", b"1"), put("kv", b"a", b"2")])
            .build();
        let foreign_read = net.tx(&user).reads(vec![read("other", b"a", None)]).build();
        let out = run(&mut v, &mem, &[unsorted, dup, foreign_read]);
        assert_eq!(out.codes(), &[ValidationCode::BadPayload; 3]);
        // Their ids are authenticated: they are indexed with their code.
        assert_eq!(out.index_entries().len(), 3);
    }

    #[test]
    fn certificates_are_cached() {
        let net = TestNetwork::new(2, "ALL");
        let mut v = Validator::new(&net.genesis, net.network_id());
        let mem = Mem::default();
        let user = net.user(0, "alice");
        let txs: Vec<Transaction> = (0..5u8)
            .map(|i| net.tx(&user).writes(vec![put("kv", &[i], b"1")]).build())
            .collect();
        let out = run(&mut v, &mem, &txs);
        assert_eq!(out.valid_count(), 5);
        // The user and two node certificates.
        assert_eq!(v.cached_certificates(), 3);
        // The node certificates (not the user's) are noted with their expiry.
        let seen = v.node_cert_expiry();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for (name, not_after) in &seen {
            let (subject, org) = name.split_once('@').unwrap();
            let node = net.genesis.node(org, subject).unwrap();
            assert_eq!(node.name, subject);
            assert!(*not_after > 0);
        }
    }

    #[test]
    fn verified_signature_cache_skips_work_not_checks() {
        let net = TestNetwork::new(2, "ALL");
        let user = net.user(0, "alice");
        let txs: Vec<Transaction> = (0..6u8)
            .map(|i| net.tx(&user).writes(vec![put("kv", &[i], b"1")]).build())
            .collect();
        // Warm: every signature of every tx verified through the cache, as the endorser and
        // gateway of a node do.
        let sigs = Arc::new(VerifiedSigs::new(1024));
        for t in &txs {
            let sp = &t.signed_proposal;
            let creator = sp.decode_proposal().unwrap().header.creator.body.public_key;
            sigs.verify(&sp.proposal, &sp.signature, &creator).unwrap();
            for e in &t.endorsements {
                let pk = e.endorser.body.public_key;
                sigs.verify(&t.response, &e.signature, &pk).unwrap();
            }
        }
        assert_eq!(sigs.len(), 18);
        let mut tampered = txs.clone();
        // A flipped bit in the creator's signature and in an endorsement's.
        tampered[1].signed_proposal.signature.0[5] ^= 1;
        tampered[2].endorsements[1].signature.0[40] ^= 1;
        // A good (cached) signature of the same endorser over another tx's response.
        tampered[3].endorsements[0].signature = txs[4].endorsements[0].signature;
        // The creator's signature of another tx.
        tampered[5].signed_proposal.signature = txs[0].signed_proposal.signature;
        let mut plain = Validator::new(&net.genesis, net.network_id());
        let mut cached = Validator::new(&net.genesis, net.network_id());
        cached.set_verified_signatures(sigs.clone());
        let hits = sigs.hits();
        let a = run(&mut plain, &Mem::default(), &tampered);
        let b = run(&mut cached, &Mem::default(), &tampered);
        use ValidationCode::*;
        let expect = [
            Valid,
            BadSignature,
            BadEndorsementSignature,
            BadEndorsementSignature,
            Valid,
            BadSignature,
        ];
        assert_eq!(a.codes(), &expect);
        assert_eq!(b.codes(), &expect);
        // Every untouched signature was found: all 3 of txs 0 and 4, 2 of each other tx.
        assert_eq!(sigs.hits() - hits, 14);
        // Nothing was added by validation.
        assert_eq!(sigs.len(), 18);
    }
    #[test]
    fn batch_endorsements_verify_once_per_batch_and_bad_proofs_fail() {
        let net = TestNetwork::new(2, "ALL");
        let user = net.user(0, "alice");
        let mut txs: Vec<Transaction> = (0..4u8)
            .map(|i| net.tx(&user).writes(vec![put("kv", &[i], b"1")]).build())
            .collect();
        // Org2's node endorsed all four in one batch: one signature over the tree's root.
        let node = net.node(1, 0);
        let responses: Vec<Vec<u8>> = txs.iter().map(|t| t.response.clone()).collect();
        let refs: Vec<&[u8]> = responses.iter().map(Vec::as_slice).collect();
        let (message, proofs) = sphr_types::batch_tree(&refs).unwrap();
        let sig = node.key.sign(&message);
        for (t, proof) in txs.iter_mut().zip(proofs) {
            let e = t
                .endorsements
                .iter_mut()
                .find(|e| e.endorser.body.org == node.cert.body.org)
                .unwrap();
            e.signature = sig;
            e.batch = Some(proof);
        }
        let mut tampered = txs.clone();
        // tx 1 carries tx 2's proof; tx 3's proof has a flipped sibling.
        let (a, b) = tampered.split_at_mut(2);
        let proof_of_2 = b[0]
            .endorsements
            .iter()
            .find_map(|e| e.batch.clone())
            .unwrap();
        for e in &mut a[1].endorsements {
            if e.batch.is_some() {
                e.batch = Some(proof_of_2.clone());
            }
        }
        for e in &mut tampered[3].endorsements {
            if let Some(p) = &mut e.batch {
                p.siblings[0].0[0] ^= 1;
            }
        }
        let sigs = Arc::new(VerifiedSigs::new(1024));
        let mut v = Validator::new(&net.genesis, net.network_id());
        v.set_verified_signatures(sigs.clone());
        let out = run(&mut v, &Mem::default(), &txs);
        assert_eq!(out.valid_count(), 4);
        // Four creators, four Org1 endorsements, one batch signature: 9, not 12.
        assert_eq!(sigs.len(), 9);
        let mut plain = Validator::new(&net.genesis, net.network_id());
        let out = run(&mut plain, &Mem::default(), &tampered);
        use ValidationCode::*;
        assert_eq!(
            out.codes(),
            &[
                Valid,
                BadEndorsementSignature,
                Valid,
                BadEndorsementSignature
            ]
        );
    }
}
