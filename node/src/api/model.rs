//! JSON bodies of the client API (described in `node/openapi.json`).
//!
//! Byte strings are hex. Proposals travel as CBOR (`application/cbor`) since they are signed
//! bytes; everything the node answers is JSON.

use serde::{Deserialize, Serialize};

/// Every error the API returns: a stable kind and a message saying what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable kind (`bad_request`, `unknown_identity`, ...).
    pub error: String,
    /// What was wrong, for people.
    pub message: String,
}

/// The answer to `POST /v1/transactions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The transaction id (hex).
    pub tx_id: String,
    /// `SUBMITTED` (ordered, not waited for) or `COMMITTED`.
    pub status: String,
    /// The block it committed in, when waited for.
    pub block: Option<u64>,
    /// Its validation code, when waited for (`VALID`, `MVCC_READ_CONFLICT`, ...).
    pub code: Option<String>,
    /// The contract's response (hex).
    pub response_hex: String,
}

/// The answer to `POST /v1/query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// The contract's response (hex).
    pub response_hex: String,
}

/// The answer to `GET /v1/transactions/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxStatus {
    /// The transaction id (hex).
    pub tx_id: String,
    /// Block number.
    pub block: u64,
    /// Position in the block.
    pub position: u32,
    /// Validation code.
    pub code: String,
}

/// One transaction in a block view. No patient data: only names of contract, function and orgs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxView {
    /// The transaction id (hex), or empty if undecodable.
    pub tx_id: String,
    /// Contract.
    pub contract: String,
    /// Function.
    pub function: String,
    /// The creator's org.
    pub creator_org: String,
    /// Orgs that endorsed it.
    pub endorsing_orgs: Vec<String>,
    /// Validation code.
    pub code: String,
}

/// The answer to `GET /v1/blocks/{number}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// Height.
    pub number: u64,
    /// Block hash (hex).
    pub hash: String,
    /// Previous block hash (hex).
    pub previous_hash: String,
    /// Data hash (hex).
    pub data_hash: String,
    /// Proposer clock (Unix ms).
    pub timestamp_ms: u64,
    /// The consenter that cut it (`name@org`), none for genesis.
    pub proposer: Option<String>,
    /// Its transactions.
    pub txs: Vec<TxView>,
}

/// A commit event, as streamed on `GET /v1/events` (SSE, event name `commit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitEvent {
    /// The transaction id (hex).
    pub tx_id: String,
    /// Block number.
    pub block: u64,
    /// Position in the block.
    pub position: u32,
    /// Validation code.
    pub code: String,
    /// Contract.
    pub contract: String,
    /// Names of the events the contract emitted (valid txs only).
    pub events: Vec<String>,
}

/// The answer to `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Network id (hex hash of block 0).
    pub network_id: String,
    /// This node (`name@org`).
    pub node: String,
    /// Ledger height (number of the last block).
    pub height: u64,
    /// Hash of the last block (hex).
    pub tip: String,
    /// World-state hash after the last block (hex): a running hash of every state write
    /// since genesis, equal on nodes with equal state at equal height.
    #[serde(default)]
    pub state_hash: String,
    /// Raft leader's node name, if known.
    pub leader: Option<String>,
    /// Whether this node leads.
    pub is_leader: bool,
    /// Raft term.
    pub term: u64,
    /// Genesis peers connected over libp2p.
    pub peers: usize,
}
