//! The genesis configuration: what every node of a network agrees on before block 1.
//!
//! It is the data of block 0; the hash of block 0 is the network id that every proposal and
//! every peer message carries. A node refuses a data dir made from another genesis.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::PublicKey;

use crate::block::{Block, BlockData, BlockHeader};
use crate::policy::Policy;
use crate::{MAX_BLOCK_BYTES, MAX_NAME_LEN, decode, encode};

/// Largest genesis configuration accepted.
pub const MAX_GENESIS_BYTES: usize = 1024 * 1024;

/// An organisation and its CA key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgConfig {
    /// Organisation name (e.g. `HospitalOrg`).
    pub name: String,
    /// The org CA's ed25519 key: it signs the certificates of the org's nodes and users.
    pub ca_key: PublicKey,
}

/// A node of the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Name within the org (e.g. `peer0`).
    pub name: String,
    /// Its organisation.
    pub org: String,
    /// Its ed25519 key: signs endorsements and batches, and is its libp2p identity.
    pub public_key: PublicKey,
    /// Client API address (`host:port`, HTTPS).
    pub api_addr: String,
    /// Peer-to-peer address (`host:port`).
    pub p2p_addr: String,
    /// Whether it takes part in Raft.
    pub consenter: bool,
    /// Its Raft id (1-based, unique), for consenters.
    pub raft_id: u64,
}

/// How the leader cuts blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCutting {
    /// Most transactions per block.
    pub max_tx: u32,
    /// Most bytes of transactions per block.
    pub max_bytes: u64,
    /// Longest wait after the first transaction of a block before cutting it (ms).
    pub batch_timeout_ms: u64,
}

impl Default for BlockCutting {
    fn default() -> Self {
        BlockCutting {
            max_tx: 100,
            max_bytes: 8 * 1024 * 1024,
            batch_timeout_ms: 20,
        }
    }
}

/// Raft timings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftTimings {
    /// Tick interval (ms).
    pub tick_ms: u64,
    /// Election timeout, in ticks.
    pub election_ticks: u32,
    /// Heartbeat interval, in ticks.
    pub heartbeat_ticks: u32,
    /// Take a snapshot and compact the log every this many applied entries.
    pub snapshot_interval: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_interval: 500,
        }
    }
}

/// A contract enabled in the network and its endorsement policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractConfig {
    /// Contract name.
    pub name: String,
    /// Which orgs must endorse its transactions.
    pub policy: Policy,
}

/// Everything in block 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisConfig {
    /// A human name for the network.
    pub network: String,
    /// When genesis was made (Unix milliseconds).
    pub created_ms: u64,
    /// The organisations.
    pub orgs: Vec<OrgConfig>,
    /// The nodes.
    pub nodes: Vec<NodeConfig>,
    /// Block cutting.
    pub block: BlockCutting,
    /// Raft timings.
    pub raft: RaftTimings,
    /// Contracts and their policies.
    pub contracts: Vec<ContractConfig>,
}

/// Why a genesis configuration or block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// A field breaks a rule; the message names it.
    #[error("genesis: {0}")]
    Invalid(String),
    /// Encoding or decoding failed.
    #[error("genesis encoding: {0}")]
    Encoding(String),
}

fn check_name(what: &str, v: &str) -> Result<(), GenesisError> {
    if v.is_empty()
        || v.len() > MAX_NAME_LEN
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(GenesisError::Invalid(format!(
            "{what} {v:?} must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 - _ ."
        )));
    }
    Ok(())
}

impl GenesisConfig {
    /// Checks every rule a network depends on, naming the field that breaks one.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let inv = |s: String| Err(GenesisError::Invalid(s));
        check_name("network", &self.network)?;
        if self.orgs.is_empty() {
            return inv("orgs: at least one org is needed".into());
        }
        let mut names = BTreeSet::new();
        for o in &self.orgs {
            check_name("orgs.name", &o.name)?;
            if !names.insert(o.name.as_str()) {
                return inv(format!("orgs.name: {:?} appears twice", o.name));
            }
            o.ca_key
                .validate()
                .map_err(|e| GenesisError::Invalid(format!("orgs.{}.ca_key: {e}", o.name)))?;
        }
        let mut node_names = BTreeSet::new();
        let mut raft_ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for n in &self.nodes {
            check_name("nodes.name", &n.name)?;
            if !names.contains(n.org.as_str()) {
                return inv(format!("nodes.{}.org: no org named {:?}", n.name, n.org));
            }
            if !node_names.insert((n.org.as_str(), n.name.as_str())) {
                return inv(format!("nodes: {}@{} appears twice", n.name, n.org));
            }
            if !keys.insert(n.public_key) {
                return inv(format!(
                    "nodes.{}.public_key: shared with another node",
                    n.name
                ));
            }
            n.public_key
                .validate()
                .map_err(|e| GenesisError::Invalid(format!("nodes.{}.public_key: {e}", n.name)))?;
            if n.consenter && (n.raft_id == 0 || !raft_ids.insert(n.raft_id)) {
                return inv(format!(
                    "nodes.{}.raft_id: consenters need distinct ids from 1",
                    n.name
                ));
            }
        }
        if raft_ids.is_empty() {
            return inv("nodes: at least one node must be a consenter".into());
        }
        if self.block.max_tx == 0 || self.block.max_tx > 10_000 {
            return inv("block.max_tx must be 1 to 10000".into());
        }
        if self.block.max_bytes < 1024 || self.block.max_bytes > MAX_BLOCK_BYTES as u64 / 2 {
            return inv(format!(
                "block.max_bytes must be 1024 to {}",
                MAX_BLOCK_BYTES / 2
            ));
        }
        if self.block.batch_timeout_ms == 0 || self.block.batch_timeout_ms > 60_000 {
            return inv("block.batch_timeout_ms must be 1 to 60000".into());
        }
        let r = &self.raft;
        if r.tick_ms == 0 || r.tick_ms > 10_000 {
            return inv("raft.tick_ms must be 1 to 10000".into());
        }
        if r.heartbeat_ticks == 0 || r.election_ticks <= r.heartbeat_ticks {
            return inv(
                "raft.election_ticks must be greater than raft.heartbeat_ticks >= 1".into(),
            );
        }
        if r.snapshot_interval < 10 {
            return inv("raft.snapshot_interval must be at least 10".into());
        }
        let org_names = self.org_names();
        let mut contracts = BTreeSet::new();
        for c in &self.contracts {
            check_name("contracts.name", &c.name)?;
            if !contracts.insert(c.name.as_str()) {
                return inv(format!("contracts: {:?} appears twice", c.name));
            }
            c.policy
                .check_orgs(&org_names)
                .map_err(|e| GenesisError::Invalid(format!("contracts.{}.policy: {e}", c.name)))?;
        }
        Ok(())
    }

    /// The org names, in genesis order.
    pub fn org_names(&self) -> Vec<String> {
        self.orgs.iter().map(|o| o.name.clone()).collect()
    }

    /// The org called `name`.
    pub fn org(&self, name: &str) -> Option<&OrgConfig> {
        self.orgs.iter().find(|o| o.name == name)
    }

    /// The node `name` of `org`.
    pub fn node(&self, org: &str, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.org == org && n.name == name)
    }

    /// The node with this key.
    pub fn node_by_key(&self, key: &PublicKey) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| &n.public_key == key)
    }

    /// The consenters, by Raft id.
    pub fn consenters(&self) -> impl Iterator<Item = &NodeConfig> {
        self.nodes.iter().filter(|n| n.consenter)
    }

    /// The policy of contract `name`.
    pub fn policy(&self, contract: &str) -> Option<&Policy> {
        self.contracts
            .iter()
            .find(|c| c.name == contract)
            .map(|c| &c.policy)
    }

    /// Block 0.
    pub fn to_block(&self) -> Result<Block, GenesisError> {
        let bytes = encode(self).map_err(|e| GenesisError::Encoding(e.to_string()))?;
        let data = BlockData::Genesis(ByteBuf::from(bytes));
        Ok(Block {
            header: BlockHeader {
                number: 0,
                previous_hash: Hash32::ZERO,
                data_hash: data.hash(),
                timestamp_ms: self.created_ms,
            },
            data,
        })
    }

    /// Reads the configuration back out of block 0 and validates it.
    pub fn from_block(block: &Block) -> Result<Self, GenesisError> {
        if block.header.number != 0 || block.header.previous_hash != Hash32::ZERO {
            return Err(GenesisError::Invalid("not block 0".into()));
        }
        let BlockData::Genesis(bytes) = &block.data else {
            return Err(GenesisError::Invalid(
                "block 0 holds no genesis configuration".into(),
            ));
        };
        if block.header.data_hash != block.data.hash() {
            return Err(GenesisError::Invalid(
                "block 0 data hash does not match".into(),
            ));
        }
        let cfg: GenesisConfig =
            decode(bytes, MAX_GENESIS_BYTES).map_err(|e| GenesisError::Encoding(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphr_crypto::keys::SecretKey;

    pub fn sample() -> GenesisConfig {
        let k = |i: u8| SecretKey::from_bytes(&[i; 32]).public_key();
        GenesisConfig {
            network: "test".into(),
            created_ms: 1,
            orgs: vec![
                OrgConfig {
                    name: "A".into(),
                    ca_key: k(1),
                },
                OrgConfig {
                    name: "B".into(),
                    ca_key: k(2),
                },
            ],
            nodes: vec![NodeConfig {
                name: "n0".into(),
                org: "A".into(),
                public_key: k(3),
                api_addr: "127.0.0.1:1".into(),
                p2p_addr: "127.0.0.1:2".into(),
                consenter: true,
                raft_id: 1,
            }],
            block: BlockCutting::default(),
            raft: RaftTimings::default(),
            contracts: vec![ContractConfig {
                name: "kv".into(),
                policy: "AND(A, B)".parse().unwrap(),
            }],
        }
    }

    #[test]
    fn round_trip_through_block() {
        let g = sample();
        g.validate().unwrap();
        let b = g.to_block().unwrap();
        assert_eq!(GenesisConfig::from_block(&b).unwrap(), g);
        assert_eq!(b.hash(), g.to_block().unwrap().hash());
    }

    #[test]
    fn rules_name_the_field() {
        let mut g = sample();
        g.block.max_tx = 0;
        assert!(g.validate().unwrap_err().to_string().contains("max_tx"));
        let mut g = sample();
        g.contracts[0].policy = "AND(A, Z)".parse().unwrap();
        assert!(
            g.validate()
                .unwrap_err()
                .to_string()
                .contains("contracts.kv.policy")
        );
        let mut g = sample();
        g.nodes[0].org = "Z".into();
        assert!(
            g.validate()
                .unwrap_err()
                .to_string()
                .contains("nodes.n0.org")
        );
        let mut g = sample();
        g.nodes[0].consenter = false;
        assert!(g.validate().is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use sphr_crypto::keys::SecretKey;

    proptest! {
        #[test]
        fn genesis_round_trips_through_block_0(orgs in 1usize..5, max_tx in 1u32..10_000,
                                               timeout in 1u64..60_000, created in any::<u64>(),
                                               policy_pick in 0usize..5) {
            let key = |i: usize| SecretKey::from_bytes(&[(i + 1) as u8; 32]).public_key();
            let org_names: Vec<String> = (0..orgs).map(|i| format!("Org{i}")).collect();
            let policy = match policy_pick {
                0 => Policy::All,
                1 => Policy::Majority,
                2 => Policy::Any,
                3 => Policy::And(vec![org_names[0].clone()]),
                _ => Policy::OutOf(1, org_names.clone()),
            };
            let g = GenesisConfig {
                network: "net".into(),
                created_ms: created,
                orgs: org_names.iter().enumerate().map(|(i, n)| OrgConfig { name: n.clone(), ca_key: key(i) }).collect(),
                nodes: org_names.iter().enumerate().map(|(i, n)| NodeConfig {
                    name: "n".into(), org: n.clone(), public_key: key(100 + i),
                    api_addr: format!("127.0.0.1:{}", 7000 + i), p2p_addr: format!("127.0.0.1:{}", 8000 + i),
                    consenter: true, raft_id: i as u64 + 1,
                }).collect(),
                block: BlockCutting { max_tx, max_bytes: 1 << 20, batch_timeout_ms: timeout },
                raft: RaftTimings::default(),
                contracts: vec![ContractConfig { name: "kv".into(), policy }],
            };
            prop_assert!(g.validate().is_ok());
            let b = g.to_block().unwrap();
            prop_assert_eq!(GenesisConfig::from_block(&b).unwrap(), g.clone());
            prop_assert_eq!(b.hash(), g.to_block().unwrap().hash());
        }
    }
}
