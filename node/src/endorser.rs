//! The endorser: checks a signed proposal, simulates the contract on committed state, and
//! signs the outcome.
//!
//! ```text
//!  SignedProposal ──decode (size-limited)──> Proposal
//!     │ network id == ours?          else WrongNetwork      (400)
//!     │ creator cert under its org CA from genesis, in validity?  else UnknownIdentity (403)
//!     │ creator signature?           else BadSignature       (403)
//!     │ contract in genesis and registry?  else UnknownContract (404)
//!     v
//!  Simulator (a Ctx): reads committed state, records (key, version); buffers writes
//!     │ Contract::invoke
//!     v
//!  ResponsePayload { tx_id, proposal_hash, rwset, response, events } ──sign──> Endorsement
//! ```
//!
//! Simulation never changes state. Range reads record every key they return; a key inserted
//! into a range by another transaction between simulation and commit (a phantom) is not
//! detected, as in Fabric for non-validated range queries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sphr_contracts::{
    Caller, Contract, ContractError, Ctx, MAX_EVENTS, MAX_KEY_LEN, MAX_RANGE_LEN, MAX_VALUE_LEN,
    Registry,
};
use sphr_crypto::cert::Certificate;
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::{PublicKey, Signature};
use sphr_crypto::sigcache::VerifiedSigs;
use sphr_types::{
    Endorsement, Event, GenesisConfig, Proposal, Read, ResponsePayload, RwSet, SignedProposal,
    Version, Write, encode, namespaced_key, strip_namespace,
};

use crate::identity::Identity;
use crate::metrics::Metrics;

/// A message, its signature and the key to check it with.
type SignedItem<'a> = (&'a [u8], &'a Signature, &'a PublicKey);

/// How far a proposal's timestamp may be from the endorser's clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// How many verified creator certificates are remembered.
const CERT_CACHE_MAX: usize = 10_000;

/// Committed state as the simulator reads it.
///
/// Correctness requirements: reads see one committed height for the whole simulation as far as
/// the store allows (sled gives per-key atomicity; MVCC at commit catches anything that moved),
/// and versions are those written by the committer.
pub trait StateSource: Send + Sync {
    /// The value and version at a namespaced key.
    fn get(&self, key: &[u8]) -> Result<Option<(Version, Vec<u8>)>, String>;
    /// Up to `limit` entries with keys in `[start, end)`, in key order.
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<sphr_ledger::StateEntry>, String>;
}

/// Why a proposal was not endorsed. Each variant maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndorseError {
    /// The bytes are not a well-formed signed proposal (reject: 400).
    #[error("malformed proposal: {0}")]
    Malformed(String),
    /// The proposal is for another network (reject: 400).
    #[error("proposal is for network {got}, this node serves network {ours}")]
    WrongNetwork { got: Hash32, ours: Hash32 },
    /// The creator's certificate is not from a genesis org CA or is not valid now (reject: 403).
    #[error("unknown identity: {0}")]
    UnknownIdentity(String),
    /// The creator's signature does not verify (reject: 403).
    #[error("the creator's signature over the proposal does not verify")]
    BadSignature,
    /// The proposal's clock is too far from ours (reject: 400).
    #[error(
        "proposal timestamp {got} ms is more than {MAX_CLOCK_SKEW_MS} ms from the node's clock {now}"
    )]
    ClockSkew { got: u64, now: u64 },
    /// No such contract in this network (reject: 404).
    #[error("contract {0:?} is not enabled in this network")]
    UnknownContract(String),
    /// The contract refused (reject: 422, or 403/404 by kind).
    #[error("{0}")]
    Contract(ContractError),
    /// The node could not read its state (retry later: 503).
    #[error("state unavailable: {0}")]
    State(String),
}

/// A proposal that passed every check and was simulated and signed.
#[derive(Debug, Clone)]
pub struct Endorsed {
    /// The decoded proposal.
    pub proposal: Proposal,
    /// Its tx id.
    pub tx_id: Hash32,
    /// The outcome.
    pub payload: ResponsePayload,
    /// The exact bytes signed.
    pub payload_bytes: Vec<u8>,
    /// This node's signature.
    pub endorsement: Endorsement,
}

/// Checks, simulates and signs proposals.
pub struct Endorser {
    genesis: Arc<GenesisConfig>,
    network_id: Hash32,
    registry: Registry,
    identity: Identity,
    /// The certificate endorsements carry: `identity.cert` until a renewed one is set.
    cert: std::sync::RwLock<sphr_crypto::cert::Certificate>,
    verified_certs: Mutex<BTreeMap<Hash32, (String, u64, u64)>>,
    /// Creator signatures verified here and this node's endorsements, for the committer.
    sigs: Arc<VerifiedSigs>,
    metrics: Option<Metrics>,
}

impl Endorser {
    /// An endorser for `genesis`, signing as `identity` (a node of the network).
    pub fn new(
        genesis: Arc<GenesisConfig>,
        network_id: Hash32,
        registry: Registry,
        identity: Identity,
    ) -> Self {
        Endorser {
            genesis,
            network_id,
            registry,
            cert: std::sync::RwLock::new(identity.cert.clone()),
            identity,
            verified_certs: Mutex::new(BTreeMap::new()),
            sigs: Arc::new(VerifiedSigs::default()),
            metrics: None,
        }
    }

    /// Verifies creator signatures and records this node's endorsements in `sigs` (shared
    /// with the committer, which then skips them) instead of a cache of its own.
    pub fn with_verified_signatures(mut self, sigs: Arc<VerifiedSigs>) -> Self {
        self.sigs = sigs;
        self
    }

    /// The cache of signatures verified (or made) here.
    pub fn verified_signatures(&self) -> &Arc<VerifiedSigs> {
        &self.sigs
    }

    /// The certificate this node's endorsements carry.
    pub fn certificate(&self) -> sphr_crypto::cert::Certificate {
        self.cert
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Uses a renewed certificate for the endorsements from now on. It must be for this node
    /// (same subject, org, role and key: the key is pinned by genesis), issued by its org's CA
    /// in genesis and valid at `now_s`; otherwise nothing changes.
    pub fn set_certificate(
        &self,
        cert: sphr_crypto::cert::Certificate,
        now_s: u64,
    ) -> Result<(), String> {
        let cur = &self.identity.cert.body;
        let b = &cert.body;
        if b.subject != cur.subject || b.org != cur.org || b.role != cur.role {
            return Err(format!(
                "the certificate is for {}@{} ({}), this node is {}@{} ({})",
                b.subject, b.org, b.role, cur.subject, cur.org, cur.role
            ));
        }
        if b.public_key != self.identity.key.public_key() {
            return Err(format!(
                "the certificate's key {} is not this node's key {} (genesis pins it)",
                b.public_key,
                self.identity.key.public_key()
            ));
        }
        let ca = self
            .genesis
            .org(&b.org)
            .ok_or_else(|| format!("org {} is not in genesis", b.org))?;
        cert.verify(&ca.ca_key, now_s).map_err(|e| e.to_string())?;
        *self
            .cert
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cert;
        Ok(())
    }

    /// Observes endorsement durations in `sphr_endorser_endorsement_duration_seconds`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Records one endorsement of a checked proposal of `contract` (a contract of genesis,
    /// so the label is bounded), begun at `started`.
    pub fn observe(&self, contract: &str, started: Instant, ok: bool) {
        if let Some(m) = &self.metrics {
            m.endorser_endorsement_duration_seconds
                .with_label_values(&[contract, if ok { "ok" } else { "error" }])
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// The network id.
    pub fn network_id(&self) -> Hash32 {
        self.network_id
    }

    /// The genesis configuration.
    pub fn genesis(&self) -> &GenesisConfig {
        &self.genesis
    }

    /// Checks the creator's certificate against its org's CA in genesis, at `now_ms`.
    pub fn check_creator(&self, cert: &Certificate, now_ms: u64) -> Result<(), EndorseError> {
        let now_s = now_ms / 1000;
        let fp = cert
            .fingerprint()
            .map_err(|e| EndorseError::Malformed(e.to_string()))?;
        if let Ok(cache) = self.verified_certs.lock()
            && let Some((_, nb, na)) = cache.get(&fp)
        {
            if now_s >= *nb && now_s < *na {
                return Ok(());
            }
            return cert
                .check_validity(now_s)
                .map_err(|e| EndorseError::UnknownIdentity(e.to_string()));
        }
        let org = self.genesis.org(&cert.body.org).ok_or_else(|| {
            EndorseError::UnknownIdentity(format!(
                "organisation {:?} of {} is not in this network",
                cert.body.org,
                cert.name()
            ))
        })?;
        cert.verify(&org.ca_key, now_s)
            .map_err(|e| EndorseError::UnknownIdentity(e.to_string()))?;
        if let Ok(mut cache) = self.verified_certs.lock() {
            if cache.len() >= CERT_CACHE_MAX {
                cache.clear();
            }
            cache.insert(fp, (cert.name(), cert.body.not_before, cert.body.not_after));
        }
        Ok(())
    }

    /// Decodes and checks a signed proposal: shape, network, creator, signature, clock, contract.
    pub fn check(&self, sp: &SignedProposal, now_ms: u64) -> Result<Proposal, EndorseError> {
        let p = self.check_before_signature(sp, now_ms)?;
        self.sigs
            .verify(
                &sp.proposal,
                &sp.signature,
                &p.header.creator.body.public_key,
            )
            .map_err(|_| EndorseError::BadSignature)?;
        self.check_after_signature(p, now_ms)
    }

    /// The checks of [`Endorser::check`] before the creator's signature: shape, network,
    /// creator.
    fn check_before_signature(
        &self,
        sp: &SignedProposal,
        now_ms: u64,
    ) -> Result<Proposal, EndorseError> {
        let p = sp
            .decode_proposal()
            .map_err(|e| EndorseError::Malformed(e.to_string()))?;
        if p.header.network_id != self.network_id {
            return Err(EndorseError::WrongNetwork {
                got: p.header.network_id,
                ours: self.network_id,
            });
        }
        self.check_creator(&p.header.creator, now_ms)?;
        Ok(p)
    }

    /// The checks of [`Endorser::check`] after the creator's signature: clock, contract.
    fn check_after_signature(&self, p: Proposal, now_ms: u64) -> Result<Proposal, EndorseError> {
        if p.header.timestamp_ms.abs_diff(now_ms) > MAX_CLOCK_SKEW_MS {
            return Err(EndorseError::ClockSkew {
                got: p.header.timestamp_ms,
                now: now_ms,
            });
        }
        if self.genesis.policy(&p.contract).is_none() || self.registry.get(&p.contract).is_err() {
            return Err(EndorseError::UnknownContract(p.contract.clone()));
        }
        Ok(p)
    }

    /// Evaluates query `function` of `contract` on `state` as the holder of `creator`, a
    /// certificate the caller has already authenticated (a signed request, say: there is no
    /// signed proposal). The certificate is checked against genesis like a proposal's creator;
    /// only query functions run, and nothing is signed or ordered.
    pub fn evaluate_as(
        &self,
        state: &dyn StateSource,
        creator: &Certificate,
        contract: &str,
        function: &str,
        args: Vec<Vec<u8>>,
        now_ms: u64,
    ) -> Result<Vec<u8>, EndorseError> {
        self.check_creator(creator, now_ms)?;
        if self.genesis.policy(contract).is_none() {
            return Err(EndorseError::UnknownContract(contract.to_string()));
        }
        let c = self
            .registry
            .get(contract)
            .map_err(|_| EndorseError::UnknownContract(contract.to_string()))?;
        if !c.is_query(function) {
            return Err(EndorseError::Contract(ContractError::Denied(format!(
                "{contract}.{function} is not a query"
            ))));
        }
        let proposal = Proposal {
            header: sphr_types::ProposalHeader {
                network_id: self.network_id,
                creator: creator.clone(),
                nonce: Hash32::ZERO,
                timestamp_ms: now_ms,
            },
            contract: contract.to_string(),
            function: function.to_string(),
            args: args.into_iter().map(serde_bytes::ByteBuf::from).collect(),
        };
        let (_, response, _) = simulate(c.as_ref(), state, &proposal, Hash32::ZERO)?;
        Ok(response)
    }

    /// Whether `function` of `contract` only reads (unknown ones: no).
    pub fn is_query(&self, contract: &str, function: &str) -> bool {
        self.registry
            .get(contract)
            .map(|c| c.is_query(function))
            .unwrap_or(false)
    }

    /// Checks, simulates on `state` and signs.
    pub fn endorse(
        &self,
        state: &dyn StateSource,
        sp: &SignedProposal,
        now_ms: u64,
    ) -> Result<Endorsed, EndorseError> {
        let started = Instant::now();
        let proposal = self.check(sp, now_ms)?;
        let contract = proposal.contract.clone();
        let endorsed = self.simulate_and_sign(state, sp, proposal);
        self.observe(&contract, started, endorsed.is_ok());
        endorsed
    }

    /// Checks and simulates each proposal, then signs every outcome at once: one signature
    /// over the root of a batch tree of the payloads (each endorsement carries its proof;
    /// see `sphr_types::tx`), or a plain signature when only one proposal got that far.
    /// Results are in the order of `proposals`.
    pub fn endorse_many(
        &self,
        state: &dyn StateSource,
        proposals: &[Result<SignedProposal, String>],
        now_ms: u64,
    ) -> Vec<Result<Endorsed, EndorseError>> {
        // The checks of `check`, in its order, with the creators' signatures verified in one
        // batch (`VerifiedSigs::verify_many`: the same verdicts as one by one).
        let started = Instant::now();
        let before: Vec<Result<(&SignedProposal, Proposal), EndorseError>> = proposals
            .iter()
            .map(|sp| match sp {
                Err(why) => Err(EndorseError::Malformed(why.clone())),
                Ok(sp) => self.check_before_signature(sp, now_ms).map(|p| (sp, p)),
            })
            .collect();
        let signed: Vec<SignedItem<'_>> = before
            .iter()
            .filter_map(|b| b.as_ref().ok())
            .map(|(sp, p)| {
                (
                    sp.proposal.as_slice(),
                    &sp.signature,
                    &p.header.creator.body.public_key,
                )
            })
            .collect();
        // One verdict per passed proposal, in order.
        let mut verdicts = self.sigs.verify_many(&signed).into_iter();
        let mut out: Vec<Result<Unsigned, EndorseError>> = Vec::with_capacity(proposals.len());
        for b in before {
            out.push(b.and_then(|(sp, p)| {
                if !verdicts.next().unwrap_or(false) {
                    return Err(EndorseError::BadSignature);
                }
                self.check_after_signature(p, now_ms).and_then(|proposal| {
                    let contract = proposal.contract.clone();
                    let unsigned = self.simulate_unsigned(state, sp, proposal);
                    self.observe(&contract, started, unsigned.is_ok());
                    unsigned
                })
            }));
        }
        let payloads: Vec<&[u8]> = out
            .iter()
            .filter_map(|u| u.as_ref().ok().map(|u| u.payload_bytes.as_slice()))
            .collect();
        let mut proofs = self.sign_many(&payloads).into_iter();
        out.into_iter()
            .map(|u| {
                let u = u?;
                let endorsement = proofs
                    .next()
                    .ok_or_else(|| EndorseError::Malformed("no endorsement made".into()))?;
                Ok(u.signed(endorsement))
            })
            .collect()
    }

    /// Endorsements of `payloads`, in order: one signature over the root of their batch
    /// tree, each endorsement with its proof; a plain signature when there is only one.
    pub fn sign_many(&self, payloads: &[&[u8]]) -> Vec<Endorsement> {
        let cert = self.certificate();
        match sphr_types::batch_tree(payloads) {
            Ok((message, proofs)) => {
                let signature = self.sigs.sign(&self.identity.key, &message);
                proofs
                    .into_iter()
                    .map(|p| Endorsement {
                        endorser: cert.clone(),
                        signature,
                        batch: Some(p),
                    })
                    .collect()
            }
            // Fewer than two (or more than a tree holds; callers send at most 64).
            Err(_) => payloads.iter().map(|p| self.sign_alone(p)).collect(),
        }
    }

    /// This node's endorsement of one payload: a signature over the payload itself.
    pub fn sign_alone(&self, payload: &[u8]) -> Endorsement {
        Endorsement::single(
            self.certificate(),
            self.sigs.sign(&self.identity.key, payload),
        )
    }

    /// Simulates an already-checked proposal and signs the outcome.
    pub fn simulate_and_sign(
        &self,
        state: &dyn StateSource,
        sp: &SignedProposal,
        proposal: Proposal,
    ) -> Result<Endorsed, EndorseError> {
        let u = self.simulate_unsigned(state, sp, proposal)?;
        let endorsement = self.sign_alone(&u.payload_bytes);
        Ok(u.signed(endorsement))
    }

    /// Simulates an already-checked proposal; the outcome, not signed yet.
    pub(crate) fn simulate_unsigned(
        &self,
        state: &dyn StateSource,
        sp: &SignedProposal,
        proposal: Proposal,
    ) -> Result<Unsigned, EndorseError> {
        let contract = self
            .registry
            .get(&proposal.contract)
            .map_err(|_| EndorseError::UnknownContract(proposal.contract.clone()))?;
        let tx_id = proposal.tx_id();
        let (rwset, response, events) = simulate(contract.as_ref(), state, &proposal, tx_id)?;
        let payload = ResponsePayload {
            tx_id,
            proposal_hash: sp.proposal_hash(),
            rwset,
            response,
            events,
        };
        let payload_bytes = encode(&payload).map_err(|e| EndorseError::Malformed(e.to_string()))?;
        Ok(Unsigned {
            proposal,
            tx_id,
            payload,
            payload_bytes,
        })
    }
}

/// A simulated proposal waiting for its signature.
pub(crate) struct Unsigned {
    proposal: Proposal,
    tx_id: Hash32,
    payload: ResponsePayload,
    /// The bytes to sign (alone, or as a leaf of a batch tree).
    pub(crate) payload_bytes: Vec<u8>,
}

impl Unsigned {
    pub(crate) fn signed(self, endorsement: Endorsement) -> Endorsed {
        Endorsed {
            proposal: self.proposal,
            tx_id: self.tx_id,
            payload: self.payload,
            payload_bytes: self.payload_bytes,
            endorsement,
        }
    }
}

/// Runs the contract in a simulator; returns the sorted rwset, the response and the events.
fn simulate(
    contract: &dyn Contract,
    state: &dyn StateSource,
    proposal: &Proposal,
    tx_id: Hash32,
) -> Result<(RwSet, Vec<u8>, Vec<Event>), EndorseError> {
    let cert = &proposal.header.creator.body;
    let mut sim = Simulator {
        ns: contract.name(),
        state,
        reads: BTreeMap::new(),
        writes: BTreeMap::new(),
        events: Vec::new(),
        caller: Caller {
            id: cert.subject.clone(),
            org: cert.org.clone(),
            role: cert.role,
            public_key: cert.public_key,
            pre_public_key: cert.pre_public_key.clone(),
        },
        tx_id,
        tx_time_ms: proposal.header.timestamp_ms,
        state_error: None,
    };
    let args: Vec<Vec<u8>> = proposal.args.iter().map(|a| a.to_vec()).collect();
    let result = contract.invoke(&mut sim, &proposal.function, &args);
    if let Some(e) = sim.state_error.take() {
        return Err(EndorseError::State(e));
    }
    let response = result.map_err(EndorseError::Contract)?;
    let rwset = RwSet {
        reads: sim
            .reads
            .into_iter()
            .map(|(key, version)| Read { key, version })
            .collect(),
        writes: sim
            .writes
            .into_iter()
            .map(|(key, value)| Write { key, value })
            .collect(),
    };
    Ok((rwset, response, sim.events))
}

/// The `Ctx` a contract runs in during endorsement.
struct Simulator<'a> {
    ns: &'static str,
    state: &'a dyn StateSource,
    reads: BTreeMap<Vec<u8>, Option<Version>>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    events: Vec<Event>,
    caller: Caller,
    tx_id: Hash32,
    tx_time_ms: u64,
    state_error: Option<String>,
}

impl Simulator<'_> {
    fn key(&self, key: &[u8]) -> Result<Vec<u8>, ContractError> {
        if key.len() > MAX_KEY_LEN {
            return Err(ContractError::Limit(format!(
                "key of {} bytes, at most {MAX_KEY_LEN}",
                key.len()
            )));
        }
        Ok(namespaced_key(self.ns, key))
    }

    fn state_failed(&mut self, e: String) -> ContractError {
        self.state_error = Some(e.clone());
        ContractError::State(e)
    }
}

impl Ctx for Simulator<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError> {
        let full = self.key(key)?;
        if let Some(w) = self.writes.get(&full) {
            return Ok(w.clone());
        }
        match self.state.get(&full) {
            Ok(found) => {
                let (version, value) = match found {
                    Some((v, val)) => (Some(v), Some(val)),
                    None => (None, None),
                };
                self.reads.entry(full).or_insert(version);
                Ok(value)
            }
            Err(e) => Err(self.state_failed(e)),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ContractError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(ContractError::Limit(format!(
                "value of {} bytes, at most {MAX_VALUE_LEN}",
                value.len()
            )));
        }
        let full = self.key(key)?;
        self.writes.insert(full, Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), ContractError> {
        let full = self.key(key)?;
        self.writes.insert(full, None);
        Ok(())
    }

    fn range(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<sphr_contracts::KvPairs, ContractError> {
        let limit = limit.min(MAX_RANGE_LEN);
        let (s, e) = (self.key(start)?, self.key(end)?);
        let committed = match self.state.range(&s, &e, limit) {
            Ok(rows) => rows,
            Err(err) => return Err(self.state_failed(err)),
        };
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for (k, v, val) in committed {
            self.reads.entry(k.clone()).or_insert(Some(v));
            merged.insert(k, Some(val));
        }
        for (k, w) in self.writes.range(s..e) {
            merged.insert(k.clone(), w.clone());
        }
        let ns = self.ns;
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| {
                let local = strip_namespace(ns, &k)?.to_vec();
                v.map(|v| (local, v))
            })
            .take(limit)
            .collect())
    }

    fn caller(&self) -> &Caller {
        &self.caller
    }

    fn tx_id(&self) -> Hash32 {
        self.tx_id
    }

    fn tx_time_ms(&self) -> u64 {
        self.tx_time_ms
    }

    fn emit(&mut self, name: &str, payload: &[u8]) -> Result<(), ContractError> {
        if self.events.len() >= MAX_EVENTS {
            return Err(ContractError::Limit(format!(
                "more than {MAX_EVENTS} events"
            )));
        }
        if name.is_empty() || name.len() > 64 {
            return Err(ContractError::Limit(
                "event name must be 1 to 64 bytes".into(),
            ));
        }
        if payload.len() > MAX_VALUE_LEN {
            return Err(ContractError::Limit("event payload too large".into()));
        }
        self.events.push(Event {
            name: name.to_string(),
            payload: payload.to_vec(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphr_contracts::kv::KvContract;
    use sphr_crypto::cert::{CertificateBody, Role};
    use sphr_crypto::keys::SecretKey;
    use sphr_types::ProposalHeader;

    /// In-memory committed state, for unit tests of the simulator only.
    struct MemState(BTreeMap<Vec<u8>, (Version, Vec<u8>)>);

    impl StateSource for MemState {
        fn get(&self, key: &[u8]) -> Result<Option<(Version, Vec<u8>)>, String> {
            Ok(self.0.get(key).cloned())
        }
        fn range(
            &self,
            start: &[u8],
            end: &[u8],
            limit: usize,
        ) -> Result<Vec<sphr_ledger::StateEntry>, String> {
            Ok(self
                .0
                .range(start.to_vec()..end.to_vec())
                .take(limit)
                .map(|(k, (v, val))| (k.clone(), *v, val.clone()))
                .collect())
        }
    }

    fn proposal(function: &str, args: &[&str]) -> Proposal {
        let k = SecretKey::from_bytes(&[1; 32]);
        let ca = SecretKey::from_bytes(&[2; 32]);
        let cert = Certificate::issue(
            &ca,
            CertificateBody {
                subject: "u".into(),
                org: "O".into(),
                role: Role::Client,
                public_key: k.public_key(),
                pre_public_key: None,
                not_before: 0,
                not_after: u64::MAX,
            },
        )
        .unwrap();
        Proposal {
            header: ProposalHeader {
                network_id: Hash32::ZERO,
                creator: cert,
                nonce: Hash32([5; 32]),
                timestamp_ms: 1,
            },
            contract: "kv".into(),
            function: function.into(),
            args: args
                .iter()
                .map(|a| serde_bytes::ByteBuf::from(a.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn transfer_records_reads_and_writes() {
        let v = Version { block: 3, tx: 1 };
        let mut m = BTreeMap::new();
        m.insert(namespaced_key("kv", b"a"), (v, b"10".to_vec()));
        let state = MemState(m);
        let p = proposal("transfer", &["a", "b", "4"]);
        let (rw, resp, events) = simulate(&KvContract, &state, &p, Hash32::ZERO).unwrap();
        assert_eq!(resp, b"6");
        assert_eq!(events.len(), 1);
        assert_eq!(
            rw.reads,
            vec![
                Read {
                    key: namespaced_key("kv", b"a"),
                    version: Some(v)
                },
                Read {
                    key: namespaced_key("kv", b"b"),
                    version: None
                },
            ]
        );
        assert_eq!(rw.writes.len(), 2);
        assert_eq!(rw.writes[0].value.as_deref(), Some(b"6".as_slice()));
    }

    #[test]
    fn contract_errors_and_limits() {
        let state = MemState(BTreeMap::new());
        let p = proposal("get", &["missing"]);
        assert!(matches!(
            simulate(&KvContract, &state, &p, Hash32::ZERO),
            Err(EndorseError::Contract(ContractError::NotFound(_)))
        ));
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let p = proposal("put", &[&long, "v"]);
        assert!(matches!(
            simulate(&KvContract, &state, &p, Hash32::ZERO),
            Err(EndorseError::Contract(ContractError::Limit(_)))
        ));
    }

    /// One endorse request holds good proposals and bad ones: each gets the verdict it gets
    /// alone (the creators' signatures are checked in one batch), in `check`'s order of
    /// checks, and the good ones are endorsed under one batch signature.
    #[test]
    fn a_batch_gives_each_proposal_its_own_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::genesis::GenesisSpec::from_toml_str(
            "network = \"batch\"\n[[orgs]]\nname = \"OrgA\"\n[[orgs.nodes]]\nname = \"n0\"\napi_port = 1\np2p_port = 2\nops_port = 3\n[[orgs.users]]\nname = \"alice\"\nrole = \"client\"\n[[orgs.users]]\nname = \"bob\"\nrole = \"client\"\n[[contracts]]\nname = \"kv\"\npolicy = \"ANY\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let net = crate::genesis::generate(&spec, dir.path(), crate::now_ms()).unwrap();
        let load = |name: &str| {
            let path = net
                .manifest
                .users
                .iter()
                .find(|u| u.name == name)
                .map(|u| dir.path().join(&u.identity))
                .unwrap();
            Identity::load(&path).unwrap()
        };
        let node = Identity::load(&dir.path().join(&net.manifest.nodes[0].identity)).unwrap();
        let endorser = Endorser::new(
            Arc::new(net.genesis.clone()),
            net.network_id,
            Registry::with_builtin(),
            node,
        );
        let (alice, bob) = (load("alice"), load("bob"));
        let make = |who: &Identity, contract: &str, key: &str| {
            crate::client::make_proposal(who, net.network_id, contract, "put", [key, "v"])
                .unwrap()
                .1
        };
        let now = crate::now_ms();
        let mut forged = make(&alice, "kv", "k2");
        forged.signature = bob.key.sign(&forged.proposal);
        let mut flipped = make(&bob, "kv", "k3");
        flipped.signature.0[40] ^= 1;
        // A bad signature is reported before an unknown contract, as `check` does.
        let mut unknown_and_forged = make(&alice, "nope", "k5");
        unknown_and_forged.signature = bob.key.sign(&unknown_and_forged.proposal);
        let proposals: Vec<Result<SignedProposal, String>> = vec![
            Ok(make(&alice, "kv", "k1")),
            Ok(forged),
            Ok(flipped),
            Err("undecodable".into()),
            Ok(make(&bob, "nope", "k4")),
            Ok(unknown_and_forged),
            Ok(make(&bob, "kv", "k6")),
        ];
        let state = MemState(BTreeMap::new());
        let out = endorser.endorse_many(&state, &proposals, now);
        let verdicts: Vec<String> = out
            .iter()
            .map(|r| match r {
                Ok(_) => "ok".to_string(),
                Err(EndorseError::BadSignature) => "bad signature".to_string(),
                Err(EndorseError::Malformed(_)) => "malformed".to_string(),
                Err(EndorseError::UnknownContract(c)) => format!("unknown {c}"),
                Err(e) => format!("other: {e}"),
            })
            .collect();
        assert_eq!(
            verdicts,
            [
                "ok",
                "bad signature",
                "bad signature",
                "malformed",
                "unknown nope",
                "bad signature",
                "ok"
            ]
        );
        // Alone, each proposal gets the same verdict from `check`.
        for (sp, verdict) in proposals.iter().zip(&verdicts) {
            if let Ok(sp) = sp {
                let alone = match endorser.check(sp, now) {
                    Ok(_) => "ok".to_string(),
                    Err(EndorseError::BadSignature) => "bad signature".to_string(),
                    Err(EndorseError::UnknownContract(c)) => format!("unknown {c}"),
                    Err(e) => format!("other: {e}"),
                };
                assert_eq!(&alone, verdict);
            }
        }
        // The two good ones share one batch signature, which verifies over their batch root.
        let good: Vec<&Endorsed> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(good.len(), 2);
        assert_eq!(good[0].endorsement.signature, good[1].endorsement.signature);
        assert!(good[0].endorsement.batch.is_some());
    }

    #[test]
    fn range_sees_own_writes_and_namespace_only() {
        let mut m = BTreeMap::new();
        m.insert(
            namespaced_key("kv", b"k1"),
            (Version { block: 1, tx: 0 }, b"v1".to_vec()),
        );
        m.insert(
            namespaced_key("other", b"k2"),
            (Version { block: 1, tx: 1 }, b"x".to_vec()),
        );
        let state = MemState(m);
        let p = proposal("range", &["k", "l"]);
        let (_, resp, _) = simulate(&KvContract, &state, &p, Hash32::ZERO).unwrap();
        assert_eq!(resp, b"k1=v1\n");
    }
}
