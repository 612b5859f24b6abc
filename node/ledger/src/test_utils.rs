//! A deterministic test network: org CAs, nodes, users, genesis, and builders for signed
//! proposals, endorsements, transactions and batches. For tests and benchmarks only (feature
//! `test-utils`).
//!
//! ```text
//!  TestNetwork::new(4, "ALL")
//!    orgs Org1..Org4, each: CA key, node peer0 (consenter, raft id = org number)
//!    genesis: contract "kv" with the policy given
//!  net.user(0, "alice")                        -> TestIdentity (client cert from Org1's CA)
//!  net.tx(&alice).writes(vec![put("kv", b"k", b"v")]).build()
//!                                              -> Transaction endorsed by every org's peer0
//!  net.batch(&[tx, ...])                       -> SignedBatch sealed by Org1's peer0
//! ```
//!
//! Keys come from seeds (SHA-256 of a label), so every run makes the same network. Helpers
//! panic on misuse: they are test code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_bytes::ByteBuf;
use sphr_crypto::cert::{Certificate, CertificateBody, Role};
use sphr_crypto::hash::{Hash32, sha256, sha256_parts};
use sphr_crypto::keys::SecretKey;
use sphr_types::{
    Batch, Block, BlockCutting, ContractConfig, Endorsement, Event, GenesisConfig, NodeConfig,
    NodeRef, OrgConfig, Proposal, ProposalHeader, RaftTimings, Read, ResponsePayload, RwSet,
    SignedBatch, Transaction, Version, Write, encode, namespaced_key,
};

use crate::Ledger;

/// The block time of test batches, and the proposal time (Unix milliseconds, Nov 2023).
pub const TEST_TIME_MS: u64 = 1_700_000_000_000;

/// A key and its certificate.
#[derive(Debug, Clone)]
pub struct TestIdentity {
    /// Signing key.
    pub key: SecretKey,
    /// Certificate.
    pub cert: Certificate,
}

/// An organisation of the test network.
#[derive(Debug, Clone)]
pub struct TestOrg {
    /// Name (`Org1`, `Org2`, ...).
    pub name: String,
    /// CA key.
    pub ca: SecretKey,
    /// Its nodes (`peer0`, `peer1`, ...).
    pub nodes: Vec<TestIdentity>,
}

/// A network of orgs with one CA each, nodes, and a genesis with given contracts.
#[derive(Debug)]
pub struct TestNetwork {
    /// The orgs.
    pub orgs: Vec<TestOrg>,
    /// The genesis configuration.
    pub genesis: GenesisConfig,
    /// Block 0.
    pub genesis_block: Block,
    nonce: AtomicU64,
}

/// A deterministic key from a label.
pub fn seeded_key(label: &str) -> SecretKey {
    SecretKey::from_bytes(&sha256_parts(&[b"sphr-test-key", label.as_bytes()]).0)
}

/// A certificate signed by `ca`.
pub fn issue(
    ca: &SecretKey,
    org: &str,
    subject: &str,
    role: Role,
    key: &SecretKey,
    not_before: u64,
    not_after: u64,
) -> Certificate {
    Certificate::issue(
        ca,
        CertificateBody {
            subject: subject.into(),
            org: org.into(),
            role,
            public_key: key.public_key(),
            pre_public_key: None,
            not_before,
            not_after,
        },
    )
    .expect("test certificate")
}

impl TestNetwork {
    /// `orgs` orgs with one consenter node each and contract `kv` under `kv_policy`.
    pub fn new(orgs: usize, kv_policy: &str) -> Self {
        Self::with_contracts(orgs, 1, &[("kv", kv_policy)])
    }

    /// `orgs` orgs (`Org1`...) with `nodes_per_org` nodes each (`peer0`... ; every `peer0` is a
    /// consenter), and the given `(contract, policy)` pairs.
    pub fn with_contracts(orgs: usize, nodes_per_org: usize, contracts: &[(&str, &str)]) -> Self {
        let mut test_orgs = Vec::new();
        let mut nodes = Vec::new();
        for o in 0..orgs {
            let name = format!("Org{}", o + 1);
            let ca = seeded_key(&format!("ca/{name}"));
            let mut org_nodes = Vec::new();
            for n in 0..nodes_per_org {
                let node_name = format!("peer{n}");
                let key = seeded_key(&format!("node/{name}/{node_name}"));
                let cert = issue(&ca, &name, &node_name, Role::Node, &key, 0, u64::MAX);
                nodes.push(NodeConfig {
                    name: node_name,
                    org: name.clone(),
                    public_key: key.public_key(),
                    api_addr: format!("127.0.0.1:{}", 7000 + o * 10 + n),
                    p2p_addr: format!("127.0.0.1:{}", 8000 + o * 10 + n),
                    consenter: n == 0,
                    raft_id: if n == 0 { o as u64 + 1 } else { 0 },
                });
                org_nodes.push(TestIdentity { key, cert });
            }
            test_orgs.push(TestOrg {
                name,
                ca,
                nodes: org_nodes,
            });
        }
        let genesis = GenesisConfig {
            network: "testnet".into(),
            created_ms: TEST_TIME_MS - 1000,
            orgs: test_orgs
                .iter()
                .map(|o| OrgConfig {
                    name: o.name.clone(),
                    ca_key: o.ca.public_key(),
                })
                .collect(),
            nodes,
            block: BlockCutting::default(),
            raft: RaftTimings::default(),
            contracts: contracts
                .iter()
                .map(|(name, policy)| ContractConfig {
                    name: (*name).into(),
                    policy: policy.parse().expect("test policy"),
                })
                .collect(),
        };
        genesis.validate().expect("test genesis");
        let genesis_block = genesis.to_block().expect("genesis block");
        TestNetwork {
            orgs: test_orgs,
            genesis,
            genesis_block,
            nonce: AtomicU64::new(1),
        }
    }

    /// The network id (hash of block 0).
    pub fn network_id(&self) -> Hash32 {
        self.genesis_block.hash()
    }

    /// Node `i` of org `org` (0-based).
    pub fn node(&self, org: usize, i: usize) -> &TestIdentity {
        &self.orgs[org].nodes[i]
    }

    /// `peer0` of every org: endorsers that satisfy any policy.
    pub fn all_endorsers(&self) -> Vec<&TestIdentity> {
        self.orgs.iter().map(|o| &o.nodes[0]).collect()
    }

    /// A client of org `org`, valid forever.
    pub fn user(&self, org: usize, subject: &str) -> TestIdentity {
        self.identity(org, subject, Role::Client, 0, u64::MAX)
    }

    /// An identity of org `org` with a given role and validity (Unix seconds).
    pub fn identity(
        &self,
        org: usize,
        subject: &str,
        role: Role,
        not_before: u64,
        not_after: u64,
    ) -> TestIdentity {
        let o = &self.orgs[org];
        let key = seeded_key(&format!("user/{}/{subject}", o.name));
        let cert = issue(&o.ca, &o.name, subject, role, &key, not_before, not_after);
        TestIdentity { key, cert }
    }

    /// An identity claiming org `org_name` but signed by a CA that is not in genesis.
    pub fn foreign_identity(&self, org_name: &str, subject: &str, role: Role) -> TestIdentity {
        let ca = seeded_key(&format!("foreign-ca/{org_name}"));
        let key = seeded_key(&format!("foreign/{org_name}/{subject}"));
        let cert = issue(&ca, org_name, subject, role, &key, 0, u64::MAX);
        TestIdentity { key, cert }
    }

    /// A fresh nonce (a counter, hashed).
    pub fn next_nonce(&self) -> Hash32 {
        let n = self.nonce.fetch_add(1, Ordering::Relaxed);
        sha256(&n.to_be_bytes())
    }

    /// Starts a transaction by `creator`: contract `kv`, function `put`, no args, empty rwset,
    /// endorsed by every org's `peer0`, for this network, with a fresh nonce.
    pub fn tx<'a>(&'a self, creator: &'a TestIdentity) -> TxBuilder<'a> {
        TxBuilder {
            net: self,
            creator,
            network_id: self.network_id(),
            nonce: None,
            contract: "kv".into(),
            function: "put".into(),
            args: Vec::new(),
            rwset: RwSet::default(),
            events: Vec::new(),
            endorsers: self.all_endorsers(),
        }
    }

    /// A `kv` put of `key` = `value` by `creator`, endorsed by every org.
    pub fn kv_put(&self, creator: &TestIdentity, key: &[u8], value: &[u8]) -> Transaction {
        self.tx(creator)
            .args(vec![key.to_vec(), value.to_vec()])
            .writes(vec![put("kv", key, value)])
            .build()
    }

    /// `txs` in a batch sealed by Org1's `peer0` at [`TEST_TIME_MS`].
    pub fn batch(&self, txs: &[Transaction]) -> SignedBatch {
        self.batch_at(txs, TEST_TIME_MS)
    }

    /// `txs` in a batch sealed by Org1's `peer0` at `timestamp_ms`.
    pub fn batch_at(&self, txs: &[Transaction], timestamp_ms: u64) -> SignedBatch {
        let raw = txs
            .iter()
            .map(|t| ByteBuf::from(t.to_bytes().expect("tx bytes")))
            .collect();
        self.batch_raw(raw, timestamp_ms, 0, &self.node(0, 0).key)
    }

    /// A batch of raw tx bytes proposed by `peer0` of org `proposer_org`, sealed with `key`.
    pub fn batch_raw(
        &self,
        txs: Vec<ByteBuf>,
        timestamp_ms: u64,
        proposer_org: usize,
        key: &SecretKey,
    ) -> SignedBatch {
        let batch = Batch {
            proposer: NodeRef {
                org: self.orgs[proposer_org].name.clone(),
                name: "peer0".into(),
            },
            timestamp_ms,
            txs,
        };
        SignedBatch::seal(&batch, key).expect("seal batch")
    }

    /// Opens (or creates) a ledger for this network at `path`.
    pub fn open_ledger(&self, path: &Path) -> Ledger {
        Ledger::open(path, &self.genesis_block).expect("open ledger")
    }
}

/// Builds one transaction. Every field has a default that makes a valid transaction.
#[derive(Debug)]
pub struct TxBuilder<'a> {
    net: &'a TestNetwork,
    creator: &'a TestIdentity,
    network_id: Hash32,
    nonce: Option<Hash32>,
    contract: String,
    function: String,
    args: Vec<Vec<u8>>,
    rwset: RwSet,
    events: Vec<Event>,
    endorsers: Vec<&'a TestIdentity>,
}

impl<'a> TxBuilder<'a> {
    /// The network id the proposal names.
    pub fn network_id(mut self, id: Hash32) -> Self {
        self.network_id = id;
        self
    }

    /// A fixed nonce (same creator + same nonce = same tx id).
    pub fn nonce(mut self, nonce: Hash32) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// The contract.
    pub fn contract(mut self, c: &str) -> Self {
        self.contract = c.into();
        self
    }

    /// The function.
    pub fn function(mut self, f: &str) -> Self {
        self.function = f.into();
        self
    }

    /// The arguments.
    pub fn args(mut self, args: Vec<Vec<u8>>) -> Self {
        self.args = args;
        self
    }

    /// The read set (namespaced keys, as the simulator records them).
    pub fn reads(mut self, reads: Vec<Read>) -> Self {
        self.rwset.reads = reads;
        self
    }

    /// The write set (namespaced keys).
    pub fn writes(mut self, writes: Vec<Write>) -> Self {
        self.rwset.writes = writes;
        self
    }

    /// Events in the response.
    pub fn events(mut self, events: Vec<Event>) -> Self {
        self.events = events;
        self
    }

    /// Who endorses (default: every org's `peer0`).
    pub fn endorsers(mut self, e: Vec<&'a TestIdentity>) -> Self {
        self.endorsers = e;
        self
    }

    /// The signed proposal alone.
    pub fn proposal(&self) -> (Proposal, sphr_types::SignedProposal) {
        let nonce = self.nonce.unwrap_or_else(|| self.net.next_nonce());
        let p = Proposal {
            header: ProposalHeader {
                network_id: self.network_id,
                creator: self.creator.cert.clone(),
                nonce,
                timestamp_ms: TEST_TIME_MS,
            },
            contract: self.contract.clone(),
            function: self.function.clone(),
            args: self.args.iter().cloned().map(ByteBuf::from).collect(),
        };
        let sp = p.sign(&self.creator.key).expect("sign proposal");
        (p, sp)
    }

    /// The signed, endorsed transaction.
    pub fn build(self) -> Transaction {
        let (p, sp) = self.proposal();
        let response = encode(&ResponsePayload {
            tx_id: p.tx_id(),
            proposal_hash: sp.proposal_hash(),
            rwset: self.rwset,
            response: Vec::new(),
            events: self.events,
        })
        .expect("encode response");
        let endorsements = self
            .endorsers
            .iter()
            .map(|e| endorse(e, &response))
            .collect();
        Transaction {
            signed_proposal: sp,
            response,
            endorsements,
        }
    }
}

/// `endorser`'s endorsement of the response bytes.
pub fn endorse(endorser: &TestIdentity, response: &[u8]) -> Endorsement {
    Endorsement::single(endorser.cert.clone(), endorser.key.sign(response))
}

/// A write of `value` at `contract`'s `key`.
pub fn put(contract: &str, key: &[u8], value: &[u8]) -> Write {
    Write {
        key: namespaced_key(contract, key),
        value: Some(value.to_vec()),
    }
}

/// A delete of `contract`'s `key`.
pub fn delete(contract: &str, key: &[u8]) -> Write {
    Write {
        key: namespaced_key(contract, key),
        value: None,
    }
}

/// A read of `contract`'s `key` at `version`.
pub fn read(contract: &str, key: &[u8], version: Option<Version>) -> Read {
    Read {
        key: namespaced_key(contract, key),
        version,
    }
}
