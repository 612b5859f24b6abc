//! The explorer: a read-only web page served by every node at `GET /explorer`, and the JSON
//! endpoints it reads.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/explorer` | one self-contained HTML page (inline CSS and JS, no external assets) |
//! | GET | `/v1/explorer/network` | orgs, contracts, nodes with their height, tip, leader and peers |
//! | GET | `/v1/explorer/blocks?from=&limit=` | block summaries, newest first (`limit` 1 to 100) |
//!
//! The page also reads `/v1/blocks/{n}` (block detail) and `/v1/transactions/{id}` (tx
//! detail). Nothing here shows patient data: blocks are shown as contract, function, creator
//! org, endorsing orgs, validation code, hashes and sizes; never arguments, read or write
//! sets, sealed fields or the creator's subject id.
//!
//! How a node sees the heights of the others: `GET /v1/explorer/network` polls every node's
//! `GET /v1/status` at the `api_addr` genesis gives it (at most once a second, all nodes at
//! once, [`PROBE_TIMEOUT`] each) and answers from that poll. The TLS connection to a node is
//! pinned to that node's ed25519 key from genesis: the server's TLS 1.3 handshake signature
//! must verify under the key genesis lists for it (genesis issues each node's TLS certificate
//! for its own node key), so a node only reports what the genesis node itself answered. A
//! node whose TLS key is not its node key (a certificate from another CA), or that does not
//! answer, is shown with `reachable: false` and the reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use sphr_crypto::keys::{PublicKey, Signature};
use sphr_types::{BlockRecord, GenesisConfig, ValidationCode};

use crate::api::model::NodeStatus;
use crate::api::{ApiError, ApiState, block_view};
use crate::client::Client;

/// The page, served as is.
pub const EXPLORER_HTML: &str = include_str!("explorer.html");

/// Most block summaries one `GET /v1/explorer/blocks` returns.
pub const MAX_BLOCKS_PAGE: u64 = 100;
/// Block summaries returned when `limit` is not given.
pub const DEFAULT_BLOCKS_PAGE: u64 = 20;
/// How long one node's `/v1/status` may take before it is shown as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a poll of the nodes is reused.
pub const PROBE_TTL: Duration = Duration::from_millis(1000);

/// The answer to `GET /v1/explorer/network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    /// The network's name from genesis.
    pub network: String,
    /// Network id (hex hash of block 0).
    pub network_id: String,
    /// The node answering (`name@org`).
    pub node: String,
    /// The Raft leader as this node sees it (`name@org`).
    pub leader: Option<String>,
    /// Raft term at this node.
    pub term: u64,
    /// This node's height.
    pub height: u64,
    /// Block cutting from genesis.
    pub block_cutting: BlockCuttingView,
    /// Organisations and the names of their nodes.
    pub orgs: Vec<OrgView>,
    /// Contracts and their endorsement policies.
    pub contracts: Vec<ContractView>,
    /// Every node of genesis, as last polled.
    pub nodes: Vec<NodeView>,
    /// When the nodes were polled (Unix ms, this node's clock).
    pub polled_ms: u64,
}

/// Block cutting parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCuttingView {
    /// Most transactions per block.
    pub max_tx: u32,
    /// Most bytes of transactions per block.
    pub max_bytes: u64,
    /// Batch timeout (ms).
    pub batch_timeout_ms: u64,
}

/// An organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgView {
    /// Its name.
    pub name: String,
    /// Names of its nodes.
    pub nodes: Vec<String>,
}

/// A contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractView {
    /// Its name.
    pub name: String,
    /// Its endorsement policy (`ALL`, `MAJORITY`, `AND(A, B)`, ...).
    pub policy: String,
}

/// One node, as polled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Name within its org.
    pub name: String,
    /// Its org.
    pub org: String,
    /// Client API address from genesis.
    pub api_addr: String,
    /// Peer-to-peer address from genesis.
    pub p2p_addr: String,
    /// Whether it is a Raft consenter.
    pub consenter: bool,
    /// Whether it is the node answering.
    pub this_node: bool,
    /// Whether its `/v1/status` answered.
    pub reachable: bool,
    /// Its height.
    pub height: Option<u64>,
    /// Its tip (hex).
    pub tip: Option<String>,
    /// The leader it sees.
    pub leader: Option<String>,
    /// Whether it leads.
    pub is_leader: bool,
    /// How many genesis peers it is connected to.
    pub peers: Option<usize>,
    /// Why it is not reachable.
    pub error: Option<String>,
}

/// Query of `GET /v1/explorer/blocks`.
#[derive(Debug, Deserialize)]
pub struct BlocksQuery {
    /// The newest block to list (default: the tip).
    pub from: Option<String>,
    /// How many (1 to [`MAX_BLOCKS_PAGE`], default [`DEFAULT_BLOCKS_PAGE`]).
    pub limit: Option<String>,
}

/// The answer to `GET /v1/explorer/blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockPage {
    /// This node's height.
    pub height: u64,
    /// Summaries, newest first.
    pub blocks: Vec<BlockSummary>,
}

/// One block in a [`BlockPage`]: numbers, hashes, counts and sizes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSummary {
    /// Height.
    pub number: u64,
    /// Block hash (hex).
    pub hash: String,
    /// Previous block hash (hex).
    pub previous_hash: String,
    /// Proposer clock (Unix ms).
    pub timestamp_ms: u64,
    /// The consenter that cut it (`name@org`), none for genesis.
    pub proposer: Option<String>,
    /// Transactions in it.
    pub tx_count: usize,
    /// Transactions with code `VALID`.
    pub valid_count: usize,
    /// Count of transactions per validation code.
    pub codes: BTreeMap<String, usize>,
    /// Size of the stored block record (bytes).
    pub size_bytes: usize,
}

/// The summary of a stored block.
pub fn block_summary(rec: &BlockRecord) -> BlockSummary {
    let view = block_view(rec);
    let mut codes = BTreeMap::new();
    for c in &rec.codes {
        *codes.entry(c.as_str().to_string()).or_insert(0) += 1;
    }
    BlockSummary {
        number: view.number,
        hash: view.hash,
        previous_hash: view.previous_hash,
        timestamp_ms: view.timestamp_ms,
        proposer: view.proposer,
        tx_count: view.txs.len(),
        valid_count: rec
            .codes
            .iter()
            .filter(|c| **c == ValidationCode::Valid)
            .count(),
        codes,
        size_bytes: rec.to_bytes().map(|b| b.len()).unwrap_or(0),
    }
}

/// `GET /explorer`.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // The page loads nothing from elsewhere and talks only to the node that served it.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ],
        EXPLORER_HTML,
    )
        .into_response()
}

fn parse_u64(what: &str, kind: &'static str, v: &str) -> Result<u64, ApiError> {
    v.parse::<u64>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            kind,
            format!("{what} must be a non-negative integer, got {v:?}"),
        )
    })
}

/// `GET /v1/explorer/blocks?from=&limit=`: summaries of blocks `from`, `from - 1`, ... (newest
/// first), at most `limit`.
pub async fn blocks(
    State(s): State<ApiState>,
    q: Result<Query<BlocksQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<BlockPage>, ApiError> {
    let q = crate::api::query_params(q)?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_BLOCKS_PAGE,
        Some(v) => parse_u64("limit", "bad_limit", v)?,
    };
    if limit == 0 || limit > MAX_BLOCKS_PAGE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit must be 1 to {MAX_BLOCKS_PAGE}, got {limit}"),
        ));
    }
    let height = s.chain.status().height;
    let from = match q.from.as_deref() {
        None => height,
        Some(v) => parse_u64("from", "bad_block_number", v)?.min(height),
    };
    let chain = s.chain.clone();
    let blocks = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut n = from;
        loop {
            if out.len() as u64 >= limit {
                break;
            }
            match chain.block(n)? {
                Some(rec) => out.push(block_summary(&rec)),
                None => break,
            }
            if n == 0 {
                break;
            }
            n -= 1;
        }
        Ok::<_, String>(out)
    })
    .await
    .map_err(|e| ledger_unavailable(e.to_string()))?
    .map_err(ledger_unavailable)?;
    Ok(axum::Json(BlockPage { height, blocks }))
}

fn ledger_unavailable(e: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", e)
}

/// `GET /v1/explorer/network`.
pub async fn network(State(s): State<ApiState>) -> axum::Json<NetworkView> {
    let genesis = s.gateway.endorser().genesis();
    let me = s.chain.status();
    let nodes = s.explorer.poll(genesis, &me).await;
    let mut orgs: Vec<OrgView> = genesis
        .orgs
        .iter()
        .map(|o| OrgView {
            name: o.name.clone(),
            nodes: genesis
                .nodes
                .iter()
                .filter(|n| n.org == o.name)
                .map(|n| n.name.clone())
                .collect(),
        })
        .collect();
    orgs.sort_by(|a, b| a.name.cmp(&b.name));
    axum::Json(NetworkView {
        network: genesis.network.clone(),
        network_id: me.network_id.clone(),
        node: me.node.clone(),
        leader: me.leader.clone(),
        term: me.term,
        height: me.height,
        block_cutting: BlockCuttingView {
            max_tx: genesis.block.max_tx,
            max_bytes: genesis.block.max_bytes,
            batch_timeout_ms: genesis.block.batch_timeout_ms,
        },
        orgs,
        contracts: genesis
            .contracts
            .iter()
            .map(|c| ContractView {
                name: c.name.clone(),
                policy: c.policy.to_string(),
            })
            .collect(),
        nodes,
        polled_ms: crate::now_ms(),
    })
}

/// Polls the nodes of genesis for the explorer, at most once per [`PROBE_TTL`].
#[derive(Default)]
pub struct Probe {
    state: tokio::sync::Mutex<ProbeState>,
}

#[derive(Default)]
struct ProbeState {
    /// One client per genesis node (by `name@org`), made on first use.
    clients: BTreeMap<String, Result<Client, String>>,
    last: Option<(Instant, Vec<NodeView>)>,
}

impl Probe {
    /// Every genesis node's view: this node's from `me`, the others' from their `/v1/status`.
    pub async fn poll(&self, genesis: &GenesisConfig, me: &NodeStatus) -> Vec<NodeView> {
        let mut st = self.state.lock().await;
        if let Some((at, views)) = &st.last
            && at.elapsed() < PROBE_TTL
        {
            let mut views = views.clone();
            // This node's own line is always current.
            for v in views.iter_mut().filter(|v| v.this_node) {
                fill(v, me);
            }
            return views;
        }
        let mut tasks = tokio::task::JoinSet::new();
        let mut views = Vec::with_capacity(genesis.nodes.len());
        for (i, n) in genesis.nodes.iter().enumerate() {
            let id = format!("{}@{}", n.name, n.org);
            let mut v = NodeView {
                name: n.name.clone(),
                org: n.org.clone(),
                api_addr: n.api_addr.clone(),
                p2p_addr: n.p2p_addr.clone(),
                consenter: n.consenter,
                this_node: id == me.node,
                reachable: false,
                height: None,
                tip: None,
                leader: None,
                is_leader: false,
                peers: None,
                error: None,
            };
            if v.this_node {
                fill(&mut v, me);
            } else {
                let client = st
                    .clients
                    .entry(id)
                    .or_insert_with(|| pinned_client(&n.api_addr, n.public_key))
                    .clone();
                match client {
                    Ok(c) => {
                        let network_id = me.network_id.clone();
                        tasks.spawn(async move {
                            let answer = match c.status().await {
                                Ok(s) if s.network_id == network_id => Ok(s),
                                Ok(s) => Err(format!(
                                    "answers for network {} instead",
                                    s.network_id.get(..16).unwrap_or("")
                                )),
                                Err(e) => Err(e.to_string()),
                            };
                            (i, answer)
                        });
                    }
                    Err(e) => v.error = Some(e),
                }
            }
            views.push(v);
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok((i, answer)) = done
                && let Some(v) = views.get_mut(i)
            {
                match answer {
                    Ok(s) => fill(v, &s),
                    Err(e) => v.error = Some(e),
                }
            }
        }
        st.last = Some((Instant::now(), views.clone()));
        views
    }
}

fn fill(v: &mut NodeView, s: &NodeStatus) {
    v.reachable = true;
    v.height = Some(s.height);
    v.tip = Some(s.tip.clone());
    v.leader = s.leader.clone();
    v.is_leader = s.is_leader;
    v.peers = Some(s.peers);
    v.error = None;
}

/// A TLS 1.3 client configuration that accepts only a server whose handshake is signed by
/// `key`.
pub fn pinned_config(key: PublicKey) -> Result<Arc<ClientConfig>, String> {
    let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedNodeKey { key }))
        .with_no_client_auth();
    config.alpn_protocols = vec![crate::tls::ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// A client of the node at `api_addr` whose TLS handshake must be signed by `key`.
fn pinned_client(api_addr: &str, key: PublicKey) -> Result<Client, String> {
    Client::new(&format!("https://{api_addr}"), pinned_config(key)?)
        .map(|c| c.with_timeout(PROBE_TIMEOUT))
        .map_err(|e| e.to_string())
}

/// Accepts a TLS 1.3 server only if its handshake signature verifies under one pinned ed25519
/// key (the node's key from genesis). The certificate's contents do not matter: only the
/// holder of the pinned private key can make that signature over this handshake.
#[derive(Debug)]
struct PinnedNodeKey {
    key: PublicKey,
}

impl ServerCertVerifier for PinnedNodeKey {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not spoken".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        _cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::General(format!(
                "the node signed with {:?}, not its ed25519 node key",
                dss.scheme
            )));
        }
        let sig = <[u8; 64]>::try_from(dss.signature())
            .map_err(|_| rustls::Error::General("an ed25519 signature is 64 bytes".into()))?;
        self.key
            .verify(message, &Signature(sig))
            .map(|_| HandshakeSignatureValid::assertion())
            .map_err(|_| {
                rustls::Error::General("TLS key is not the node's key from genesis".into())
            })
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{GenesisSpec, NetworkManifest, generate};
    use crate::tls::test_support::handshake;
    use sphr_types::{Block, BlockData, BlockHeader};

    /// The probe's TLS accepts a node only if it holds the key genesis lists for it.
    #[tokio::test]
    async fn probes_are_pinned_to_the_genesis_node_key() {
        let dir = tempfile::tempdir().unwrap();
        let spec = "network = \"pin\"\n[[orgs]]\nname = \"OrgA\"\n[[orgs.nodes]]\nname = \"n0\"\napi_port = 17443\np2p_port = 17000\nops_port = 19443\n[[orgs]]\nname = \"OrgB\"\n[[orgs.nodes]]\nname = \"n1\"\napi_port = 17444\np2p_port = 17001\nops_port = 19444\n[[contracts]]\nname = \"kv\"\npolicy = \"ALL\"\n";
        let spec = GenesisSpec::from_toml_str(spec, std::path::Path::new("t.toml")).unwrap();
        generate(&spec, dir.path(), crate::now_ms()).unwrap();
        let m = NetworkManifest::load(&dir.path().join("network.json")).unwrap();
        let key = |i: usize| {
            crate::identity::Identity::load(&dir.path().join(&m.nodes[i].identity))
                .unwrap()
                .cert
                .body
                .public_key
        };
        let n0 = &m.nodes[0];
        let server = crate::tls::server_config(
            &dir.path().join(&n0.tls_cert),
            &dir.path().join(&n0.tls_key),
        )
        .unwrap();
        let (ok, _) = handshake(server.clone(), pinned_config(key(0)).unwrap(), "127.0.0.1").await;
        assert_eq!(ok.unwrap(), b"pong");
        let (wrong, _) = handshake(server, pinned_config(key(1)).unwrap(), "127.0.0.1").await;
        assert!(
            wrong.is_err(),
            "a node answering with another node's key was accepted"
        );
    }

    /// Accepts any certificate, signed with ECDSA P-256 only: what a web browser offers.
    #[derive(Debug)]
    struct BrowserLike;

    impl ServerCertVerifier for BrowserLike {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("no TLS 1.2".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            assert_eq!(dss.scheme, SignatureScheme::ECDSA_NISTP256_SHA256);
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ECDSA_NISTP256_SHA256]
        }
    }

    /// A client that does not offer ed25519 (a browser) still reaches the node.
    #[tokio::test]
    async fn browsers_without_ed25519_get_a_certificate_they_can_use() {
        let dir = tempfile::tempdir().unwrap();
        let spec = "network = \"web\"\n[[orgs]]\nname = \"OrgA\"\n[[orgs.nodes]]\nname = \"n0\"\napi_port = 17443\np2p_port = 17000\nops_port = 19443\n[[contracts]]\nname = \"kv\"\npolicy = \"ANY\"\n";
        let spec = GenesisSpec::from_toml_str(spec, std::path::Path::new("t.toml")).unwrap();
        generate(&spec, dir.path(), crate::now_ms()).unwrap();
        let m = NetworkManifest::load(&dir.path().join("network.json")).unwrap();
        let server = crate::tls::server_config(
            &dir.path().join(&m.nodes[0].tls_cert),
            &dir.path().join(&m.nodes[0].tls_key),
        )
        .unwrap();
        let mut browser = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(BrowserLike))
            .with_no_client_auth();
        browser.alpn_protocols = vec![crate::tls::ALPN_HTTP1.to_vec()];
        let (ok, _) = handshake(server, Arc::new(browser), "127.0.0.1").await;
        assert_eq!(ok.unwrap(), b"pong");
    }

    #[test]
    fn genesis_block_summary_counts_nothing() {
        let rec = BlockRecord {
            block: Block {
                header: BlockHeader {
                    number: 0,
                    previous_hash: sphr_crypto::hash::Hash32::ZERO,
                    data_hash: sphr_crypto::hash::Hash32::ZERO,
                    timestamp_ms: 5,
                },
                data: BlockData::Genesis(serde_bytes::ByteBuf::new()),
            },
            codes: vec![],
            raft_index: 0,
        };
        let s = block_summary(&rec);
        assert_eq!((s.number, s.tx_count, s.valid_count), (0, 0, 0));
        assert!(s.codes.is_empty());
        assert!(s.proposer.is_none());
        assert!(s.size_bytes > 0);
    }

    #[test]
    fn page_is_self_contained() {
        let html = EXPLORER_HTML.to_ascii_lowercase();
        for needle in [
            "src=\"http",
            "href=\"http",
            "src='http",
            "@import",
            "url(http",
        ] {
            assert!(!html.contains(needle), "the page loads {needle}");
        }
        for endpoint in [
            "/v1/explorer/network",
            "/v1/explorer/blocks",
            "/v1/blocks/",
            "/v1/transactions/",
        ] {
            assert!(html.contains(endpoint), "the page does not read {endpoint}");
        }
    }
}
