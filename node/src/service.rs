//! Wires the stages into a running node and owns its shutdown.
//!
//! ```text
//!  start(config)
//!    genesis.block ─> GenesisConfig ─┐
//!    identity.json ─> node identity ─┼─> Ledger::open(data_dir) (refuses another genesis)
//!                                    ├─> orderer: SledRaftStorage (same sled db) + LedgerApplier
//!                                    ├─> Endorser + Gateway
//!                                    ├─> HTTPS API (rustls) on api.listen
//!                                    └─> operations endpoint on ops.listen (metrics, health, logspec)
//!  shutdown() (SIGTERM), bounded by node.shutdown_timeout_ms:
//!    1. the gateway refuses new proposals (503 stopping); event streams end
//!    2. the orderer drains: accepted txs are cut into blocks, ordered, committed, flushed
//!    3. the API finishes the requests in flight (clients waiting for those commits)
//!    4. the orderer stops after the Ready in hand; p2p closes; the ledger is flushed
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum_server::tls_rustls::RustlsConfig;
use sphr_contracts::Registry;
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::SecretKey;
use sphr_ledger::{CommitOutcome, Ledger};
use sphr_orderer::{
    Applier, ApplyError, BatchSealer, OrdererConfig, OrdererHandle, RAFT_ENTRIES_DIR, RaftMessage,
    SledRaftStorage, SubmitError, Transport,
};
use sphr_p2p::{P2p, P2pConfig, PeerInfo};
use sphr_types::{Batch, BlockRecord, GenesisConfig, NodeRef, SignedBatch, ValidationCode};
use tracing::{info, warn};

use crate::api::model::NodeStatus;
use crate::api::{self, ApiState, ChainView};
use crate::config::NodeConfig;
use crate::endorser::{Endorser, StateSource};
use crate::gateway::{CommitNotifier, Gateway, TxLookup, TxSink};
use crate::health::{HealthChecker, HealthReport, StorageFault};
use crate::identity::Identity;
use crate::logging::LogControl;
use crate::metrics::{HEALTH_COMPONENTS, Metrics, Scraper};
use crate::ops::{OpsListener, OpsServer, OpsState, VersionInfo};
use crate::p2p::{BlockSource, Dispatch, PeerMsg, Peers};

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The genesis block could not be loaded.
    #[error("genesis: {0}")]
    Genesis(String),
    /// The node identity could not be loaded or is not a node of this network.
    #[error("identity: {0}")]
    Identity(String),
    /// The ledger could not be opened (e.g. made from another genesis).
    #[error("ledger: {0}")]
    Ledger(String),
    /// The orderer could not start.
    #[error("orderer: {0}")]
    Orderer(String),
    /// The peer-to-peer layer could not start.
    #[error("p2p: {0}")]
    P2p(String),
    /// TLS material could not be loaded.
    #[error("tls: {0}")]
    Tls(String),
    /// The API could not bind or serve.
    #[error("api: {0}")]
    Api(String),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The operations endpoint could not bind or serve.
    #[error("ops: {0}")]
    Ops(String),
}

/// A running node.
pub struct RunningNode {
    certs: Arc<crate::certs::CertWatch>,
    cert_warner: tokio::task::JoinHandle<()>,
    endorser: Arc<Endorser>,
    tls: RustlsConfig,
    identity_path: std::path::PathBuf,
    tls_cert_path: std::path::PathBuf,
    tls_key_path: std::path::PathBuf,
    api_addr: SocketAddr,
    server: axum_server::Handle<SocketAddr>,
    server_task: tokio::task::JoinHandle<()>,
    ops: Option<OpsServer>,
    orderer: Option<OrdererHandle>,
    peers: Option<Peers>,
    ledger: Arc<Ledger>,
    network_id: Hash32,
    gateway: Arc<Gateway>,
    health: Arc<HealthChecker>,
    metrics: Metrics,
    shutdown_timeout: Duration,
    /// The grant follower (packages and delivers bundles; see [`crate::bundler`]).
    bundler: Option<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Where the API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The network id.
    pub fn network_id(&self) -> Hash32 {
        self.network_id
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The peer-to-peer address, when the network has peers.
    pub fn p2p_addr(&self) -> Option<SocketAddr> {
        self.peers.as_ref().map(|p| p.handle().local_addr())
    }

    /// The Raft status, on consenters.
    pub fn raft_status(&self) -> Option<sphr_orderer::RaftStatus> {
        self.orderer.as_ref().map(|o| o.status())
    }

    /// Where the operations endpoint listens (when `ops.enabled`).
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(|o| o.addr())
    }

    /// The operations endpoint's base URL (`http://` or `https://`).
    pub fn ops_url(&self) -> Option<String> {
        self.ops.as_ref().map(|o| o.url())
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Checks the health of every component (reads storage).
    pub fn health(&self) -> HealthReport {
        self.health.check()
    }

    /// The certificates the node watches for expiry.
    pub fn certificates(&self) -> &Arc<crate::certs::CertWatch> {
        &self.certs
    }

    /// Reloads the node certificate (`node.identity`) and the TLS certificate and key
    /// (`api.tls_cert`, `api.tls_key`) from their files, without a restart: what SIGHUP does
    /// after `sphr-node cert renew`. The new node certificate must be this node's (same key as
    /// in genesis), issued by its org CA and valid now; the TLS pair must load. Either both
    /// are taken or neither (the error says why, counted in
    /// `sphr_cert_reloads_total{result="refused"}`). Connections already open keep their TLS
    /// session; new ones get the new certificate.
    pub async fn reload_certificates(&self) -> Result<String, String> {
        let result = self.reload_inner().await;
        let label = if result.is_ok() { "ok" } else { "refused" };
        self.metrics
            .cert_reloads_total
            .with_label_values(&[label])
            .inc();
        match &result {
            Ok(what) => info!(target: "sphr::certs", %what, "certificates reloaded"),
            Err(why) => {
                warn!(target: "sphr::certs", %why, "certificate reload refused: the node keeps its certificates")
            }
        }
        result
    }

    async fn reload_inner(&self) -> Result<String, String> {
        let identity = Identity::load(&self.identity_path).map_err(|e| e.to_string())?;
        let tls = crate::tls::server_config(&self.tls_cert_path, &self.tls_key_path)
            .map_err(|e| e.to_string())?;
        let tls_not_after = crate::certs::tls_not_after(&self.tls_cert_path)?;
        let now_s = crate::now_ms() / 1000;
        if tls_not_after <= now_s {
            return Err(format!(
                "the TLS certificate {} expired at {tls_not_after}",
                self.tls_cert_path.display()
            ));
        }
        let not_after = identity.cert.body.not_after;
        self.endorser
            .set_certificate(identity.cert.clone(), now_s)
            .map_err(|e| format!("{}: {e}", self.identity_path.display()))?;
        self.tls.reload_from_config(tls);
        self.certs.set_own(not_after);
        self.certs.set_tls(Some(tls_not_after));
        Ok(format!(
            "node certificate valid until {not_after}, TLS certificate until {tls_not_after}"
        ))
    }

    /// Stops gracefully, within `node.shutdown_timeout_ms`: refuses new proposals, lets the
    /// orderer order and commit what it accepted, lets requests in flight finish, stops the
    /// orderer after the Ready in hand, closes p2p and flushes the ledger.
    pub async fn shutdown(self) {
        let deadline = Instant::now() + self.shutdown_timeout;
        self.cert_warner.abort();
        info!(target: "sphr::service", "shutting down: no new proposals");
        self.gateway.stop_accepting();
        if let Some(o) = &self.orderer {
            drain(o, deadline).await;
        }
        // The follower's work is persisted (to-do, consumer zone): stopping it mid-way loses
        // nothing; it resumes from its to-do on the next start.
        if let Some(b) = self.bundler {
            b.abort();
            let _ = b.await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        self.server
            .graceful_shutdown(Some(left.max(Duration::from_millis(100))));
        let _ = self.server_task.await;
        if let Some(ops) = self.ops {
            ops.shutdown(Duration::from_secs(1)).await;
        }
        if let Some(orderer) = self.orderer.clone() {
            let _ = tokio::task::spawn_blocking(move || orderer.shutdown()).await;
        }
        if let Some(peers) = &self.peers {
            peers.handle().shutdown().await;
        }
        if let Err(e) = self.ledger.db().flush() {
            warn!(target: "sphr::service", error = %e, "final flush failed");
        }
        info!(target: "sphr::service", height = self.ledger.height(), "stopped");
    }
}

/// Waits until the orderer has ordered, committed and applied every transaction it accepted
/// (nothing pending, nothing in flight), it cannot (no leader, stopped), or `deadline`.
async fn drain(o: &OrdererHandle, deadline: Instant) {
    loop {
        let s = o.status();
        let idle =
            s.pending_txs == 0 && s.inflight_proposals == 0 && s.applied_index >= s.commit_index;
        if idle {
            info!(target: "sphr::service", applied = s.applied_index, "orderer drained");
            return;
        }
        if !s.running || s.leader_id == 0 {
            warn!(target: "sphr::service", pending = s.pending_txs, in_flight = s.inflight_proposals,
                  running = s.running, leader = s.leader_id,
                  "the orderer cannot order now: transactions still pending are dropped (their clients were not told COMMITTED)");
            return;
        }
        if Instant::now() >= deadline {
            warn!(target: "sphr::service", pending = s.pending_txs, in_flight = s.inflight_proposals,
                  "shutdown timeout: transactions still pending are dropped (their clients were not told COMMITTED)");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the node samples when scraped: Raft status, health, waiting submissions.
struct NodeScraper {
    certs: Arc<crate::certs::CertWatch>,
    orderer: Option<OrdererHandle>,
    health: Arc<HealthChecker>,
    notifier: Arc<CommitNotifier>,
}

impl Scraper for NodeScraper {
    fn sample(&self, m: &Metrics) {
        if let Some(o) = &self.orderer {
            m.set_raft(&o.status());
        }
        let report = self.health.check();
        for c in HEALTH_COMPONENTS {
            m.node_healthy
                .with_label_values(&[c])
                .set(i64::from(report.component_ok(c)));
        }
        m.gateway_waiting_submissions
            .set(i64::try_from(self.notifier.waiting()).unwrap_or(i64::MAX));
        self.certs.sample(m, crate::now_ms() / 1000);
    }
}

/// Starts a node from its configuration, embedded in another program (tests): the log filter
/// is reported on `/logspec` but cannot be changed there.
pub async fn start(cfg: &NodeConfig) -> Result<RunningNode, ServiceError> {
    start_with(cfg, LogControl::detached(&cfg.log.filter)).await
}

/// Starts a node from its configuration, with the process's log control.
pub async fn start_with(cfg: &NodeConfig, log: LogControl) -> Result<RunningNode, ServiceError> {
    let (block0, genesis) = crate::genesis::load_genesis_block(&cfg.node.genesis)
        .map_err(|e| ServiceError::Genesis(e.to_string()))?;
    let identity =
        Identity::load(&cfg.node.identity).map_err(|e| ServiceError::Identity(e.to_string()))?;
    let me = genesis
        .node(&identity.cert.body.org, &identity.cert.body.subject)
        .ok_or_else(|| {
            ServiceError::Identity(format!(
                "{} is not a node of network {:?} (see genesis)",
                identity.cert.name(),
                genesis.network
            ))
        })?
        .clone();
    if me.public_key != identity.cert.body.public_key {
        return Err(ServiceError::Identity(format!(
            "the key of {} differs from its key in genesis",
            identity.cert.name()
        )));
    }
    let metrics = Metrics::new().map_err(|e| ServiceError::Metrics(e.to_string()))?;
    let ops_listener = if cfg.ops.enabled {
        Some(OpsListener::bind(cfg)?)
    } else {
        None
    };
    let ledger = {
        let dir = cfg.node.data_dir.clone();
        let b0 = block0.clone();
        tokio::task::spawn_blocking(move || Ledger::open(&dir, &b0))
            .await
            .map_err(|e| ServiceError::Ledger(e.to_string()))?
            .map_err(|e| ServiceError::Ledger(e.to_string()))?
    };
    let ledger = Arc::new(ledger);
    let network_id = ledger.network_id();
    metrics
        .ledger_height
        .set(i64::try_from(ledger.height()).unwrap_or(i64::MAX));
    let genesis = Arc::new(genesis);
    let tls_not_after = match crate::certs::tls_not_after(&cfg.api.tls_cert) {
        Ok(t) => Some(t),
        Err(e) => {
            warn!(target: "sphr::certs", error = %e, "cannot read the TLS certificate's expiry");
            None
        }
    };
    let certs = Arc::new(crate::certs::CertWatch::new(
        format!("{}@{}", me.name, me.org),
        cfg.node.cert_warn_days,
        identity.cert.body.not_after,
        tls_not_after,
        ledger.clone(),
    ));
    let notifier = Arc::new(CommitNotifier::new(cfg.api.max_waiting, 4096));
    let fault = Arc::new(StorageFault::default());

    let peers = if genesis.nodes.len() > 1 {
        Some(start_p2p(cfg, &genesis, &me, &identity, network_id, &metrics).await?)
    } else {
        None
    };
    let (peers, inbound) = match peers {
        Some((p, rx)) => (Some(p), Some(rx)),
        None => (None, None),
    };
    let orderer_cell: Arc<OnceLock<OrdererHandle>> = Arc::new(OnceLock::new());
    let orderer = if me.consenter {
        let o = start_orderer(
            cfg,
            &genesis,
            &me,
            &identity.key,
            LedgerApplier {
                ledger: ledger.clone(),
                notifier: notifier.clone(),
                metrics: metrics.clone(),
                peers: peers.clone(),
                rt: tokio::runtime::Handle::current(),
                orderer: orderer_cell.clone(),
                gossip_blocks: genesis.nodes.iter().any(|n| !n.consenter),
                fault: fault.clone(),
            },
            peers.as_ref(),
        )?;
        let _ = orderer_cell.set(o.clone());
        Some(o)
    } else {
        None
    };
    let endorser = Arc::new(
        Endorser::new(
            genesis.clone(),
            network_id,
            Registry::with_builtin(),
            identity.clone(),
        )
        .with_metrics(metrics.clone())
        .with_verified_signatures(Arc::new(sphr_crypto::sigcache::VerifiedSigs::new(
            cfg.node.verified_signature_cache,
        ))),
    );
    // The committer skips the signatures the endorser verified or made (same verdicts).
    ledger.set_verified_signatures(endorser.verified_signatures().clone());
    let _ = metrics.sigcache.set(endorser.verified_signatures().clone());
    let store: Arc<LedgerStore> = Arc::new(LedgerStore(ledger.clone()));
    let sink: Arc<dyn TxSink> = match (&orderer, &peers) {
        (Some(o), _) => Arc::new(o.clone()),
        (None, Some(p)) => Arc::new(ForwardToConsenters {
            peers: p.clone(),
            genesis: genesis.clone(),
        }),
        (None, None) => {
            return Err(ServiceError::Orderer(
                "a network of one node needs that node to be a consenter".into(),
            ));
        }
    };
    if let (Some(p), Some(rx)) = (&peers, inbound) {
        let gossip = if me.consenter {
            None
        } else {
            let (tx, grx) = tokio::sync::mpsc::channel(256);
            tokio::spawn(crate::sync::follow(
                ledger.clone(),
                p.clone(),
                grx,
                notifier.clone(),
                metrics.clone(),
            ));
            Some(tx)
        };
        let dispatch = Arc::new(Dispatch {
            genesis: genesis.clone(),
            orderer: orderer.clone(),
            endorser: endorser.clone(),
            state: store.clone(),
            blocks: store.clone(),
            gossip_blocks: gossip,
            metrics: metrics.clone(),
            max_raft_bytes: cfg.p2p.limits.max_message_bytes,
        });
        tokio::spawn(dispatch.run(rx));
    }
    let gateway = Arc::new(Gateway::new(
        endorser.clone(),
        store.clone(),
        store,
        sink,
        notifier.clone(),
        me.org.clone(),
        Duration::from_millis(cfg.api.commit_timeout_ms),
        peers.clone(),
        metrics.clone(),
    ));
    let health = Arc::new(HealthChecker::new(
        ledger.clone(),
        orderer.clone(),
        peers.clone(),
        genesis.nodes.len().saturating_sub(1),
        fault,
    ));
    let _ = metrics.scraper.set(Arc::new(NodeScraper {
        certs: certs.clone(),
        orderer: orderer.clone(),
        health: health.clone(),
        notifier,
    }));
    let chain = Arc::new(Chain {
        ledger: ledger.clone(),
        orderer: orderer.clone(),
        peers: peers.clone(),
        genesis: genesis.clone(),
        node: NodeRef {
            org: me.org.clone(),
            name: me.name.clone(),
        },
        health: health.clone(),
    });
    let bundles = crate::vault::BundleStore::open(ledger.db())
        .map_err(|e| ServiceError::Ledger(e.to_string()))?;
    let bundler = crate::bundler::spawn(crate::bundler::Bundler {
        ledger: ledger.clone(),
        gateway: gateway.clone(),
        identity: identity.clone(),
        network_id,
        data_dir: cfg.node.data_dir.clone(),
        store: bundles.clone(),
        metrics: metrics.clone(),
    })
    .map_err(|e| ServiceError::Ledger(e.to_string()))?;
    let state = ApiState {
        gateway: gateway.clone(),
        chain,
        metrics: Arc::new(metrics.clone()),
        trust: crate::signed_request::Trust::new(genesis.clone(), network_id),
        bundles,
        explorer: Default::default(),
    };
    let app = api::router(state, cfg.api.max_body_bytes);
    let tls = crate::tls::server_config(&cfg.api.tls_cert, &cfg.api.tls_key)
        .map_err(|e| ServiceError::Tls(e.to_string()))?;
    let listen = cfg
        .api_listen()
        .map_err(|e| ServiceError::Api(e.to_string()))?;
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| ServiceError::Api(format!("bind {listen}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ServiceError::Api(e.to_string()))?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| ServiceError::Api(e.to_string()))?;
    let server = axum_server::Handle::new();
    let tls = RustlsConfig::from_config(tls);
    let srv = axum_server::from_tcp_rustls(listener, tls.clone())
        .map_err(|e| ServiceError::Api(e.to_string()))?
        .handle(server.clone());
    let server_task = tokio::spawn(async move {
        if let Err(e) = srv.serve(app.into_make_service()).await {
            warn!(target: "sphr::api", error = %e, "API server stopped");
        }
    });
    let ops = if let Some(listener) = ops_listener {
        let state = OpsState {
            p2p_faults: peers
                .as_ref()
                .filter(|_| cfg.p2p.fault_injection)
                .map(|p| p.handle().clone()),
            metrics: metrics.clone(),
            health: health.clone(),
            log,
            version: VersionInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                node: format!("{}@{}", me.name, me.org),
                network_id: network_id.to_hex(),
            },
        };
        match listener.serve(state) {
            Ok(o) => Some(o),
            Err(e) => {
                server.shutdown();
                let _ = server_task.await;
                if let Some(o) = orderer.clone() {
                    let _ = tokio::task::spawn_blocking(move || o.shutdown()).await;
                }
                if let Some(p) = &peers {
                    p.handle().shutdown().await;
                }
                return Err(e);
            }
        }
    } else {
        None
    };
    let cert_warner = tokio::spawn(crate::certs::warn_periodically(
        certs.clone(),
        crate::certs::WARN_EVERY,
    ));
    info!(target: "sphr::service", node = %format!("{}@{}", me.name, me.org),
          api = %api_addr, ops = %ops.as_ref().map(|o| o.url()).unwrap_or_else(|| "off".into()),
          network_id = %network_id, height = ledger.height(), "node started");
    Ok(RunningNode {
        certs,
        cert_warner,
        endorser,
        tls,
        identity_path: cfg.node.identity.clone(),
        tls_cert_path: cfg.api.tls_cert.clone(),
        tls_key_path: cfg.api.tls_key.clone(),
        api_addr,
        server,
        server_task,
        ops,
        orderer,
        peers,
        ledger,
        network_id,
        gateway,
        health,
        metrics,
        shutdown_timeout: Duration::from_millis(cfg.node.shutdown_timeout_ms),
        bundler: Some(bundler),
    })
}

async fn start_p2p(
    cfg: &NodeConfig,
    genesis: &Arc<GenesisConfig>,
    me: &sphr_types::NodeConfig,
    identity: &Identity,
    network_id: Hash32,
    metrics: &Metrics,
) -> Result<(Peers, tokio::sync::mpsc::Receiver<sphr_p2p::Inbound>), ServiceError> {
    let p2p_cfg = P2pConfig {
        key_seed: identity.key.to_bytes(),
        listen: cfg
            .p2p
            .listen
            .clone()
            .unwrap_or_else(|| me.p2p_addr.clone()),
        network_id: network_id.0,
        peers: genesis
            .nodes
            .iter()
            .map(|n| PeerInfo {
                name: format!("{}@{}", n.name, n.org),
                public_key: n.public_key.0,
                addr: n.p2p_addr.clone(),
            })
            .collect(),
        limits: cfg.p2p.limits.clone(),
    };
    let (handle, inbound) = P2p::start(p2p_cfg)
        .await
        .map_err(|e| ServiceError::P2p(e.to_string()))?;
    let _ = metrics.p2p.set(handle.clone());
    info!(target: "sphr::p2p", listen = %handle.local_addr(), "p2p listening");
    Ok((
        Peers::new(
            handle,
            genesis.clone(),
            crate::p2p::BatchCounters {
                requests: metrics.p2p_endorse_requests_total.clone(),
                proposals: metrics.p2p_endorse_proposals_sent_total.clone(),
            },
            crate::p2p::Pacing {
                min: Duration::from_millis(cfg.p2p.endorse_batch_interval_ms),
                max: Duration::from_millis(cfg.p2p.endorse_batch_interval_max_ms),
            },
        ),
        inbound,
    ))
}

fn start_orderer(
    cfg: &NodeConfig,
    genesis: &GenesisConfig,
    me: &sphr_types::NodeConfig,
    key: &SecretKey,
    applier: LedgerApplier,
    peers: Option<&Peers>,
) -> Result<OrdererHandle, ServiceError> {
    let g = genesis;
    let oc = OrdererConfig {
        id: me.raft_id,
        voters: g.consenters().map(|n| n.raft_id).collect(),
        tick: Duration::from_millis(g.raft.tick_ms),
        election_ticks: g.raft.election_ticks as usize,
        heartbeat_ticks: g.raft.heartbeat_ticks as usize,
        max_tx: g.block.max_tx as usize,
        max_bytes: usize::try_from(g.block.max_bytes).unwrap_or(usize::MAX),
        batch_timeout: Duration::from_millis(g.block.batch_timeout_ms),
        snapshot_interval: g.raft.snapshot_interval,
        snapshot_catchup_entries: (g.raft.snapshot_interval / 2)
            .min(OrdererConfig::default().snapshot_catchup_entries),
        max_pending_txs: cfg.orderer.queue_capacity,
        ..OrdererConfig::default()
    };
    let db = applier.ledger.db();
    let log = db
        .open_tree("raft_log")
        .map_err(|e| ServiceError::Orderer(e.to_string()))?;
    let meta = db
        .open_tree("raft_meta")
        .map_err(|e| ServiceError::Orderer(e.to_string()))?;
    let storage = SledRaftStorage::open(log, meta, applier.ledger.path().join(RAFT_ENTRIES_DIR))
        .map_err(|e| ServiceError::Orderer(e.to_string()))?;
    let sealer = NodeSealer {
        key: key.clone(),
        me: NodeRef {
            org: me.org.clone(),
            name: me.name.clone(),
        },
    };
    let result = match peers {
        Some(p) => sphr_orderer::start(oc, storage, p.transport(), sealer, applier),
        None => sphr_orderer::start(oc, storage, NoPeers, sealer, applier),
    };
    result.map_err(|e| ServiceError::Orderer(e.to_string()))
}

/// Sends transactions to a connected consenter (from a node that is not one); the consenter's
/// orderer forwards them to the leader.
struct ForwardToConsenters {
    peers: Peers,
    genesis: Arc<GenesisConfig>,
}

impl TxSink for ForwardToConsenters {
    fn submit(&self, tx: Vec<u8>) -> Result<(), SubmitError> {
        let msg = PeerMsg::Txs(vec![serde_bytes::ByteBuf::from(tx)]);
        let body = sphr_types::encode(&msg).map_err(|_| SubmitError::Stopped)?;
        let handle = self.peers.handle();
        for n in self.genesis.consenters() {
            if handle.is_connected(&n.public_key.0)
                && handle.send_raft(n.public_key.0, body.clone()).is_ok()
            {
                return Ok(());
            }
        }
        Err(SubmitError::Full)
    }
}

/// Signs batches as this node.
struct NodeSealer {
    key: SecretKey,
    me: NodeRef,
}

impl BatchSealer for NodeSealer {
    fn seal(&mut self, txs: Vec<Vec<u8>>) -> Vec<u8> {
        let batch = Batch {
            proposer: self.me.clone(),
            timestamp_ms: crate::now_ms(),
            txs: txs.into_iter().map(serde_bytes::ByteBuf::from).collect(),
        };
        match SignedBatch::seal(&batch, &self.key).and_then(|s| s.to_bytes()) {
            Ok(b) => b,
            Err(e) => {
                warn!(target: "sphr::orderer", error = %e, "could not seal a batch; dropped");
                Vec::new()
            }
        }
    }
}

/// The transport of a network with one consenter: there is nobody to talk to.
struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, msgs: Vec<RaftMessage>) {
        if !msgs.is_empty() {
            warn!(target: "sphr::orderer", count = msgs.len(), "raft messages for peers dropped: this node has no peer transport");
        }
    }
    fn forward_txs(&self, leader: u64, txs: Vec<Vec<u8>>) {
        warn!(target: "sphr::orderer", leader, count = txs.len(), "cannot forward transactions: no peer transport");
    }
}

/// Applies committed Raft entries to the ledger and tells waiting clients.
struct LedgerApplier {
    ledger: Arc<Ledger>,
    notifier: Arc<CommitNotifier>,
    metrics: Metrics,
    peers: Option<Peers>,
    rt: tokio::runtime::Handle,
    orderer: Arc<OnceLock<OrdererHandle>>,
    gossip_blocks: bool,
    fault: Arc<StorageFault>,
}

impl Applier for LedgerApplier {
    fn applied_index(&self) -> u64 {
        self.ledger.applied_raft_index()
    }

    fn apply(&mut self, index: u64, _term: u64, entry: &[u8]) -> Result<(), ApplyError> {
        let outcome = self.ledger.commit_entry(index, entry).map_err(|e| {
            self.fault.record(e.to_string());
            ApplyError::Storage(Box::new(e))
        })?;
        match &outcome {
            CommitOutcome::Committed(block) => {
                crate::sync::announce(block, &self.notifier, &self.metrics);
                self.gossip(block.number);
            }
            CommitOutcome::Skipped { raft_index, reason } => {
                warn!(target: "sphr::ledger", raft_index, %reason, "raft entry skipped: no block");
            }
            CommitOutcome::AlreadyApplied { .. } => {}
        }
        Ok(())
    }

    fn snapshot_data(&self) -> Vec<u8> {
        let tip = self.ledger.tip();
        sphr_types::encode(&(tip.number, tip.hash())).unwrap_or_default()
    }

    fn restore_snapshot(&mut self, index: u64, _term: u64, data: &[u8]) -> Result<(), ApplyError> {
        let (height, hash): (u64, Hash32) = sphr_types::decode(data, 1024)
            .map_err(|e| ApplyError::Invalid(format!("snapshot data: {e}")))?;
        let tip = self.ledger.tip();
        if tip.number < height {
            let Some(peers) = &self.peers else {
                return Err(ApplyError::Invalid(format!(
                    "snapshot covers blocks up to {height} but this node is at {} and has no peers",
                    tip.number
                )));
            };
            info!(target: "sphr::sync", from = tip.number, to = height, "behind a raft snapshot: fetching blocks from peers");
            crate::sync::CatchUp {
                rt: &self.rt,
                ledger: &self.ledger,
                peers,
                notifier: &self.notifier,
                metrics: &self.metrics,
            }
            .to(height, hash, index)
            .map_err(ApplyError::Invalid)?;
        } else if tip.number == height && tip.hash() != hash {
            return Err(ApplyError::Invalid(format!(
                "snapshot says block {height} is {hash}, this node has {}",
                tip.hash()
            )));
        }
        self.ledger.mark_applied(index).map(|_| ()).map_err(|e| {
            self.fault.record(e.to_string());
            ApplyError::Storage(Box::new(e))
        })
    }
}

impl LedgerApplier {
    /// The leader gossips committed blocks when the network has nodes that are not consenters.
    fn gossip(&self, number: u64) {
        if !self.gossip_blocks {
            return;
        }
        let (Some(peers), Some(orderer)) = (&self.peers, self.orderer.get()) else {
            return;
        };
        if !orderer.status().is_leader {
            return;
        }
        if let Ok(Some(rec)) = self.ledger.block(number) {
            let peers = peers.clone();
            self.rt
                .spawn(async move { peers.publish_block(&rec).await });
        }
    }
}

/// The ledger as the endorser and gateway read it.
struct LedgerStore(Arc<Ledger>);

impl StateSource for LedgerStore {
    fn get(&self, key: &[u8]) -> Result<Option<(sphr_types::Version, Vec<u8>)>, String> {
        self.0.get_state(key).map_err(|e| e.to_string())
    }
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<sphr_ledger::StateEntry>, String> {
        self.0
            .range_state(start, end, limit)
            .map_err(|e| e.to_string())
    }
}

impl TxLookup for LedgerStore {
    fn committed_block(&self, tx_id: &Hash32) -> Result<Option<u64>, String> {
        self.0
            .tx_location(tx_id)
            .map(|l| l.map(|l| l.block))
            .map_err(|e| e.to_string())
    }
    fn height(&self) -> u64 {
        self.0.height()
    }
}

/// The chain as the API reads it.
struct Chain {
    ledger: Arc<Ledger>,
    orderer: Option<OrdererHandle>,
    peers: Option<Peers>,
    genesis: Arc<GenesisConfig>,
    node: NodeRef,
    health: Arc<HealthChecker>,
}

impl ChainView for Chain {
    fn tx_status(&self, tx_id: &Hash32) -> Result<Option<(u64, u32, ValidationCode)>, String> {
        self.ledger
            .tx_location(tx_id)
            .map(|l| l.map(|l| (l.block, l.position, l.code)))
            .map_err(|e| e.to_string())
    }

    fn block(&self, number: u64) -> Result<Option<BlockRecord>, String> {
        self.ledger.block(number).map_err(|e| e.to_string())
    }

    fn status(&self) -> NodeStatus {
        let (tip, state_hash) = self.ledger.tip_and_state_hash();
        let raft = self
            .orderer
            .as_ref()
            .map(|o| o.status())
            .unwrap_or_default();
        let leader = self
            .genesis
            .consenters()
            .find(|n| n.raft_id == raft.leader_id)
            .map(|n| format!("{}@{}", n.name, n.org));
        NodeStatus {
            network_id: self.ledger.network_id().to_hex(),
            node: self.node.to_string(),
            height: tip.number,
            tip: tip.hash().to_hex(),
            state_hash: state_hash.to_hex(),
            leader,
            is_leader: raft.is_leader,
            term: raft.term,
            peers: self.peers.as_ref().map(|p| p.connected()).unwrap_or(0),
        }
    }

    fn health(&self) -> HealthReport {
        self.health.check()
    }
}

impl BlockSource for LedgerStore {
    fn height(&self) -> u64 {
        self.0.height()
    }
    fn block(&self, number: u64) -> Result<Option<BlockRecord>, String> {
        self.0.block(number).map_err(|e| e.to_string())
    }
}
