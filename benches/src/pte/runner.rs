//! Runs the processes: resolves the targets in network.json, opens the connections, paces the
//! sends, times each transaction and merges the counts into a [`Report`].
//!
//! ```text
//!  run(cfg)
//!   ├─ network.json ─> orgs, nodes, `user` identity per org, kv policy ─> endorsing orgs
//!   ├─ per gateway node (client flow): EventHub (GET /v1/events)
//!   ├─ per process (org o, k-th): lanes = its outstanding-tx slots, each with its own
//!   │    keep-alive connection(s); warm-up opens them all before the clock starts
//!   ├─ open loop (constant, burst, mix, rate): at each scheduled offset take a free lane (LIFO,
//!   │    so connections stay warm) and spawn the tx; no free lane = a late send
//!   ├─ closed loop (latency: 1 lane; inflight: n lanes): each lane sends its next tx when
//!   │    the previous one is done
//!   └─ per tx: Outcome -> the process's counts and histograms (one mutex, held for a record)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rustls::ClientConfig;
use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;
use sphr_node::client::{Client, ClientError, make_proposal};
use sphr_node::genesis::NetworkManifest;
use sphr_node::identity::Identity;
use sphr_types::{Policy, Transaction};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::pte::committed::CommittedLog;
use crate::pte::config::{ConfigError, Flow, PteConfig, TransMode, TransType, WorkloadKind};
use crate::pte::events::{EventError, EventHub, Waited};
use crate::pte::report::{ProcessReport, QueryReport, Report};
use crate::pte::schedule::Schedule;
use crate::pte::stats::Histogram;
use crate::pte::timeline::Timeline;
use crate::pte::workload::{self, Call, Signer, Workload};

/// Distinct error kinds kept per process (the rest are counted under "other").
const MAX_ERROR_KINDS: usize = 32;
/// Longest error message kept as a kind's example.
const MAX_ERROR_SAMPLE: usize = 300;
/// Connections opened at once during warm-up.
const WARMUP_CONCURRENCY: usize = 32;
/// Errors listed in the report.
const REPORT_ERRORS: usize = 8;

/// Why a run could not be made (individual transaction failures are counted, not errors).
#[derive(Debug, thiserror::Error)]
pub enum PteError {
    /// The configuration is invalid; the message names the key.
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// network.json or a file it names could not be used.
    #[error("network {path}: {why}")]
    Network {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A node could not be reached or is not of this network.
    #[error("node {node}: {why}")]
    Node {
        /// `name@org` or URL.
        node: String,
        /// What failed.
        why: String,
    },
    /// The commit-event stream could not be opened.
    #[error(transparent)]
    Events(#[from] EventError),
    /// Preloading the keys of a query run failed.
    #[error("preloading keys for the query run: {0}")]
    Preload(String),
    /// A workload's setup call (healthcare: registerUser) was not committed valid.
    #[error("workload setup: {0}")]
    Setup(String),
}

/// What a run is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the network, opening connections.
    Setup,
    /// Writing the keys a query run reads.
    Preload,
    /// Sending, and waiting for the last commits.
    Running,
    /// Finished.
    Done,
}

/// Live counters of a run, for a progress display (updated as transactions finish).
#[derive(Debug, Default)]
pub struct Progress {
    /// Sent.
    pub sent: AtomicU64,
    /// Committed valid (queries: answered).
    pub received: AtomicU64,
    /// Failures of any kind, event timeouts included.
    pub failed: AtomicU64,
    /// The number of transactions the run will send, 0 if it is timed.
    pub expected: AtomicU64,
    /// The run's length in ms, 0 if it is counted.
    pub duration_ms: AtomicU64,
    /// When sending started (Unix ms), 0 before.
    pub started_unix_ms: AtomicU64,
    phase: AtomicU8,
}

impl Progress {
    /// A fresh set of counters.
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Setup,
            1 => Phase::Preload,
            2 => Phase::Running,
            _ => Phase::Done,
        }
    }

    /// Seconds since sending started (0 before).
    pub fn elapsed_s(&self) -> f64 {
        let start = self.started_unix_ms.load(Ordering::Relaxed);
        if start == 0 {
            return 0.0;
        }
        sphr_node::now_ms().saturating_sub(start) as f64 / 1000.0
    }

    fn set_phase(&self, p: Phase) {
        let v = match p {
            Phase::Setup => 0,
            Phase::Preload => 1,
            Phase::Running => 2,
            Phase::Done => 3,
        };
        self.phase.store(v, Ordering::Relaxed);
    }
}

/// One endpoint: `name@org` and its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeRef {
    id: String,
    url: String,
}

/// What one process does, resolved from network.json.
struct ProcSpec {
    index: u32,
    org: String,
    gateway: NodeRef,
    /// Client flow: one node per endorsing org.
    endorsers: Vec<NodeRef>,
    identity: Arc<Identity>,
    /// Healthcare flow: who signs as the patient and as the doctor.
    people: People,
}

/// The healthcare flow's signers of one process (none for other workloads).
#[derive(Clone, Default)]
struct People {
    patient: Option<Arc<Identity>>,
    doctor: Option<Arc<Identity>>,
}

impl People {
    /// The doctor as the contract names them (certificate org and subject).
    fn doctor_identity(&self) -> Option<sphr_contracts::healthcare::Identity> {
        self.doctor.as_ref().map(|d| {
            sphr_contracts::healthcare::Identity::new(
                d.cert.body.org.clone(),
                d.cert.body.subject.clone(),
            )
        })
    }
}

/// The slots of a process's outstanding transactions; each owns its connections.
struct Lane {
    gateway: Client,
    endorsers: Vec<Client>,
}

/// A LIFO pool of lanes: the most recently used lane (warmest connection) goes first.
struct LanePool {
    stack: Mutex<Vec<Lane>>,
    free: Semaphore,
}

impl LanePool {
    fn new(lanes: Vec<Lane>) -> LanePool {
        let n = lanes.len();
        LanePool {
            stack: Mutex::new(lanes),
            free: Semaphore::new(n),
        }
    }

    fn pop(&self) -> Option<Lane> {
        self.stack
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    /// A free lane, and whether one was free at once.
    async fn take(&self) -> Option<(Lane, bool)> {
        if let Ok(p) = self.free.try_acquire() {
            p.forget();
            return self.pop().map(|l| (l, true));
        }
        let p = self.free.acquire().await.ok()?;
        p.forget();
        self.pop().map(|l| (l, false))
    }

    fn put(&self, lane: Lane) {
        self.stack
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(lane);
        self.free.add_permits(1);
    }

    /// Takes every free lane out of the pool (with their permits).
    fn drain(&self) -> Vec<Lane> {
        let mut stack = self
            .stack
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = u32::try_from(stack.len()).unwrap_or(u32::MAX);
        if let Ok(p) = self.free.try_acquire_many(n) {
            p.forget();
        }
        std::mem::take(&mut *stack)
    }
}

/// How one transaction ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Invoke committed valid, or query answered.
    Ok {
        event: Duration,
        peer: Option<Duration>,
        orderer: Option<Duration>,
        via_poll: bool,
        /// The contract's response (invokes; none if the node's answer did not carry it).
        response: Option<Vec<u8>>,
        /// The block it committed in (invokes).
        block: Option<u64>,
    },
    /// Not endorsed (or the query was refused): error kind and message.
    ProposalFailed((String, String)),
    /// Not ordered, or committed with a non-VALID code.
    TxFailed((String, String)),
    /// No commit known within the event timeout.
    Timeout((String, String)),
}

/// Where an error happened, to classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `POST /v1/transactions?wait=true`: endorsement, ordering and commit in one call.
    Submit,
    /// `POST /v1/endorse` or `POST /v1/query`.
    Endorse,
    /// `POST /v1/broadcast`.
    Broadcast,
}

/// Error kinds of the node API that mean the proposal was not endorsed.
const PROPOSAL_KINDS: &[&str] = &[
    "malformed_proposal",
    "wrong_network",
    "unknown_identity",
    "bad_signature",
    "clock_skew",
    "unknown_contract",
    "unknown_function",
    "bad_arguments",
    "access_denied",
    "not_found",
    "refused",
    "limit_exceeded",
    "state_unavailable",
    "policy_unreachable",
    "endorsement_mismatch",
];

/// A short, bounded name for an error (API errors by status and kind), and its full message.
fn error_key(e: &ClientError) -> (String, String) {
    let key = match e {
        ClientError::Api { status, error, .. } => format!("{status} {error}"),
        ClientError::Timeout { method, path, .. } => format!("client timeout on {method} {path}"),
        ClientError::Connect { .. } => "connect failed".into(),
        ClientError::Tls { .. } => "TLS failed".into(),
        ClientError::Http { .. } => "HTTP failed".into(),
        other => other.to_string().chars().take(80).collect(),
    };
    let message: String = e.to_string().chars().take(MAX_ERROR_SAMPLE).collect();
    (key, message)
}

/// The outcome of a failed call at `step`.
fn classify(e: &ClientError, step: Step) -> Outcome {
    let key = error_key(e);
    match e {
        ClientError::Api { error, .. } if error == "commit_timeout" => Outcome::Timeout(key),
        ClientError::Api { error, .. } if PROPOSAL_KINDS.contains(&error.as_str()) => {
            Outcome::ProposalFailed(key)
        }
        ClientError::Timeout { .. } if step == Step::Submit => Outcome::Timeout(key),
        _ if step == Step::Endorse => Outcome::ProposalFailed(key),
        _ => Outcome::TxFailed(key),
    }
}

/// An error raised here rather than by the node: its key is its message.
fn local(msg: impl Into<String>) -> (String, String) {
    let m = msg.into();
    (m.clone(), m)
}

/// A process's counts.
#[derive(Default)]
struct ProcStats {
    sent: u64,
    received: u64,
    failures_proposal: u64,
    failures_transaction: u64,
    timeouts: u64,
    via_poll: u64,
    late_sends: u64,
    peer: Histogram,
    orderer: Histogram,
    event: Histogram,
    q_sent: u64,
    q_ok: u64,
    q_failed: u64,
    q_latency: Histogram,
    timeline: Timeline,
    first_send: Option<Instant>,
    last_done: Option<Instant>,
    /// Error kind -> (count, first message).
    errors: BTreeMap<String, (u64, String)>,
}

impl ProcStats {
    fn note_error(&mut self, (key, message): &(String, String)) {
        if let Some(e) = self.errors.get_mut(key) {
            e.0 += 1;
        } else if self.errors.len() < MAX_ERROR_KINDS {
            self.errors.insert(key.clone(), (1, message.clone()));
        } else {
            self.errors
                .entry("(other errors)".to_string())
                .or_insert((0, String::new()))
                .0 += 1;
        }
    }
}

/// What the tasks of one process share.
struct ProcEnv {
    index: u32,
    network_id: Hash32,
    flow: Flow,
    tx_type: TransType,
    mix: bool,
    event_timeout: Duration,
    identity: Arc<Identity>,
    people: People,
    hub: Option<Arc<EventHub>>,
    committed: Option<Arc<CommittedLog>>,
    workload: Mutex<Box<dyn Workload>>,
    keys: Vec<String>,
    seq: AtomicU64,
    stats: Mutex<ProcStats>,
    progress: Arc<Progress>,
    /// The run's start, for the timeline (set just before sending starts).
    t0: Instant,
}

impl ProcEnv {
    fn stats(&self) -> std::sync::MutexGuard<'_, ProcStats> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next_call(&self) -> Call {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut w = self
            .workload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.tx_type {
            TransType::Invoke => w.next_invoke(self.index, seq),
            TransType::Query => {
                let i = usize::try_from(seq).unwrap_or(0) % self.keys.len().max(1);
                let key = self.keys.get(i).map(String::as_str).unwrap_or("");
                w.query(key, self.index, seq)
            }
        }
    }

    /// Sends one transaction on `lane` and records it.
    async fn one(&self, lane: &Lane) {
        let call = self.next_call();
        let sent_at = self.since_start();
        {
            let mut s = self.stats();
            s.sent += 1;
            s.timeline.sent(sent_at);
            if s.first_send.is_none() {
                s.first_send = Some(Instant::now());
            }
        }
        self.progress.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = match self.tx_type {
            TransType::Query => self.query(lane, &call).await,
            TransType::Invoke => match self.flow {
                Flow::Gateway => self.invoke_gateway(lane, &call).await,
                Flow::Client => self.invoke_client(lane, &call).await,
            },
        };
        // An invoke that committed: the workload learns its result (and may name the key a
        // later query reads, when the call's own key does not say it).
        let committed = match &outcome {
            Outcome::Ok {
                response, block, ..
            } if self.tx_type == TransType::Invoke => Some(
                self.workload
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .committed(&call, response.as_deref().unwrap_or_default(), *block),
            ),
            _ => None,
        };
        self.record(outcome, sent_at);
        if let (true, Some(key)) = (self.mix, committed) {
            let key = key.as_deref().unwrap_or(&call.key);
            let seq = self.seq.load(Ordering::Relaxed);
            let q = self
                .workload
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .query(key, self.index, seq);
            let out = self.query(lane, &q).await;
            let mut s = self.stats();
            s.q_sent += 1;
            match out {
                Outcome::Ok { event, .. } => {
                    s.q_ok += 1;
                    s.q_latency.record(event);
                }
                Outcome::ProposalFailed((k, m))
                | Outcome::TxFailed((k, m))
                | Outcome::Timeout((k, m)) => {
                    s.q_failed += 1;
                    s.note_error(&(format!("query: {k}"), m));
                }
            }
        }
    }

    /// Time since the run's start.
    fn since_start(&self) -> Duration {
        Instant::now().saturating_duration_since(self.t0)
    }

    fn record(&self, outcome: Outcome, sent_at: Duration) {
        let now = Instant::now();
        let mut s = self.stats();
        s.last_done = Some(now);
        if !matches!(outcome, Outcome::Ok { .. }) {
            s.timeline.failed(now.saturating_duration_since(self.t0));
        }
        match outcome {
            Outcome::Ok {
                event,
                peer,
                orderer,
                via_poll,
                response: _,
                block: _,
            } => {
                s.received += 1;
                s.event.record(event);
                s.timeline.committed(sent_at, event);
                if let Some(p) = peer {
                    s.peer.record(p);
                }
                if let Some(o) = orderer {
                    s.orderer.record(o);
                }
                if via_poll {
                    s.via_poll += 1;
                }
                drop(s);
                self.progress.received.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::ProposalFailed(e) => {
                s.failures_proposal += 1;
                s.note_error(&e);
                drop(s);
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::TxFailed(e) => {
                s.failures_transaction += 1;
                s.note_error(&e);
                drop(s);
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Timeout(e) => {
                s.timeouts += 1;
                s.note_error(&e);
                drop(s);
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Who signs `call`: the process's user, or its patient or doctor.
    fn signer(&self, call: &Call) -> Result<&Identity, Outcome> {
        let who = match call.signer {
            Signer::Process => Some(&self.identity),
            Signer::Patient => self.people.patient.as_ref(),
            Signer::Doctor => self.people.doctor.as_ref(),
        };
        who.map(|i| &**i).ok_or_else(|| {
            Outcome::ProposalFailed(local(format!(
                "no {:?} identity for this process",
                call.signer
            )))
        })
    }

    fn propose(
        &self,
        call: &Call,
    ) -> Result<(sphr_types::Proposal, sphr_types::SignedProposal), Outcome> {
        make_proposal(
            self.signer(call)?,
            self.network_id,
            &call.contract,
            &call.function,
            &call.args,
        )
        .map_err(|e| Outcome::ProposalFailed(local(format!("making the proposal: {e}"))))
    }

    async fn query(&self, lane: &Lane, call: &Call) -> Outcome {
        let t0 = Instant::now();
        let (_, sp) = match self.propose(call) {
            Ok(p) => p,
            Err(o) => return o,
        };
        match lane.gateway.query(&sp).await {
            Ok(_) => Outcome::Ok {
                event: t0.elapsed(),
                peer: None,
                orderer: None,
                via_poll: false,
                response: None,
                block: None,
            },
            Err(e) => classify(&e, Step::Endorse),
        }
    }

    async fn invoke_gateway(&self, lane: &Lane, call: &Call) -> Outcome {
        let t0 = Instant::now();
        let (_, sp) = match self.propose(call) {
            Ok(p) => p,
            Err(o) => return o,
        };
        match lane.gateway.submit(&sp, true).await {
            Ok(r) => {
                if let (Some(code), Some(log)) = (r.code.as_deref(), &self.committed) {
                    log.record(&r.tx_id, code, r.block);
                }
                match r.code.as_deref() {
                    Some("VALID") => Outcome::Ok {
                        event: t0.elapsed(),
                        peer: None,
                        orderer: None,
                        via_poll: false,
                        response: hex::decode(&r.response_hex).ok(),
                        block: r.block,
                    },
                    Some(code) => Outcome::TxFailed(local(format!("committed {code}"))),
                    None => Outcome::TxFailed(local("answered without a commit")),
                }
            }
            Err(e) => classify(&e, Step::Submit),
        }
    }

    async fn invoke_client(&self, lane: &Lane, call: &Call) -> Outcome {
        let t0 = Instant::now();
        let deadline = tokio::time::Instant::from_std(t0 + self.event_timeout);
        let (proposal, sp) = match self.propose(call) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let Some(hub) = &self.hub else {
            return Outcome::TxFailed(local("no event stream"));
        };
        // Endorse at every org the policy names, in parallel.
        let tp = Instant::now();
        let answers = join_all(
            lane.endorsers
                .iter()
                .map(|c| c.endorse_after(&sp, call.after_block)),
        )
        .await;
        let peer = tp.elapsed();
        let mut response: Option<Vec<u8>> = None;
        let mut endorsements = Vec::with_capacity(answers.len());
        for a in answers {
            match a {
                Ok(pr) => {
                    match &response {
                        None => response = Some(pr.response),
                        Some(r) if *r == pr.response => {}
                        Some(_) => {
                            return Outcome::ProposalFailed(local(
                                "endorsers returned different results",
                            ));
                        }
                    }
                    endorsements.push(pr.endorsement);
                }
                Err(e) => return classify(&e, Step::Endorse),
            }
        }
        let Some(response) = response else {
            return Outcome::ProposalFailed(local("no endorser to ask"));
        };
        // The contract's own answer, inside the endorsed payload (kept for the workload).
        let answer = sphr_types::decode::<sphr_types::ResponsePayload>(
            &response,
            sphr_contracts::healthcare::client::MAX_RESPONSE_BYTES,
        )
        .ok()
        .map(|p| p.response);
        let tx = Transaction {
            signed_proposal: sp,
            response,
            endorsements,
        };
        let tx_id = proposal.tx_id().to_hex();
        // Register before broadcasting, so the event cannot come first.
        let reg = match hub.register(tx_id.clone()) {
            Ok(r) => r,
            Err(e) => return Outcome::TxFailed(local(e.to_string())),
        };
        let to = Instant::now();
        if let Err(e) = lane.gateway.broadcast(&tx, false).await {
            hub.cancel(&tx_id);
            return classify(&e, Step::Broadcast);
        }
        let orderer = to.elapsed();
        let waited = hub.wait(reg, deadline).await;
        if let (Waited::Committed(seen), Some(log)) = (&waited, &self.committed) {
            log.record(&tx_id, &seen.code, Some(seen.block));
        }
        match waited {
            Waited::Committed(seen) if seen.code == "VALID" => Outcome::Ok {
                event: t0.elapsed(),
                peer: Some(peer),
                orderer: Some(orderer),
                via_poll: seen.via_poll,
                response: answer,
                block: Some(seen.block),
            },
            Waited::Committed(seen) => Outcome::TxFailed(local(format!("committed {}", seen.code))),
            Waited::Timeout => Outcome::Timeout(local(format!(
                "no commit event within {} ms",
                self.event_timeout.as_millis()
            ))),
        }
    }
}

/// Unix ms of an `Instant`, from a reference pair taken at the start of the run.
#[derive(Clone, Copy)]
struct Clock {
    instant: Instant,
    unix_ms: u64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            unix_ms: sphr_node::now_ms(),
        }
    }

    fn unix_ms(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.instant).as_millis();
        self.unix_ms
            .saturating_add(u64::try_from(d).unwrap_or(u64::MAX))
    }
}

/// CPU time (user + system) of this process in seconds, from /proc (Linux; USER_HZ = 100).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ")".
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn split_node_id(id: &str) -> (&str, &str) {
    id.split_once('@').unwrap_or((id, ""))
}

/// Resolves orgs, nodes, identities and endorsers from network.json.
fn plan(cfg: &PteConfig) -> Result<(NetworkManifest, Arc<ClientConfig>, Vec<ProcSpec>), PteError> {
    let manifest_path = cfg.network.join(sphr_node::genesis::NETWORK_FILE);
    let manifest = NetworkManifest::load(&manifest_path).map_err(|e| PteError::Network {
        path: manifest_path.clone(),
        why: e.to_string(),
    })?;
    let tls_path = cfg.network.join(&manifest.tls_ca);
    let tls = sphr_node::tls::client_config(&tls_path).map_err(|e| PteError::Network {
        path: tls_path.clone(),
        why: e.to_string(),
    })?;
    let url_of = |org: &str, name: &str, addr: &str| -> String {
        cfg.endpoints
            .get(&format!("{name}@{org}"))
            .cloned()
            .unwrap_or_else(|| format!("https://{addr}"))
    };
    let invalid = |key: &str, why: String| {
        PteError::Config(ConfigError::Invalid {
            key: key.to_string(),
            why,
        })
    };
    for k in cfg.endpoints.keys() {
        let (n, o) = split_node_id(k);
        if manifest.node(o, n).is_none() {
            return Err(invalid(
                &format!("endpoints.{k}"),
                format!("no node {k} in {}", manifest_path.display()),
            ));
        }
    }
    // Orgs: as asked, or every org with a node.
    let orgs: Vec<String> = if cfg.orgs.is_empty() {
        manifest
            .orgs
            .iter()
            .filter(|o| manifest.nodes.iter().any(|n| n.org == o.name))
            .map(|o| o.name.clone())
            .collect()
    } else {
        cfg.orgs.clone()
    };
    // Nodes per org: as asked, or all of the org's.
    let mut org_nodes: HashMap<String, Vec<NodeRef>> = HashMap::new();
    for id in &cfg.nodes {
        let (n, o) = split_node_id(id);
        let node = manifest.node(o, n).ok_or_else(|| {
            invalid(
                "nodes",
                format!("no node {id} in {}", manifest_path.display()),
            )
        })?;
        org_nodes.entry(o.to_string()).or_default().push(NodeRef {
            id: id.clone(),
            url: url_of(&node.org, &node.name, &node.api_addr),
        });
    }
    for o in org_nodes.keys() {
        if !orgs.contains(o) {
            return Err(invalid(
                "nodes",
                format!("node of org {o}, which is not among the orgs {orgs:?}"),
            ));
        }
    }
    let all_nodes_of = |org: &str| -> Vec<NodeRef> {
        manifest
            .nodes
            .iter()
            .filter(|n| n.org == org)
            .map(|n| NodeRef {
                id: format!("{}@{}", n.name, n.org),
                url: url_of(&n.org, &n.name, &n.api_addr),
            })
            .collect()
    };
    let network_orgs: Vec<String> = manifest.orgs.iter().map(|o| o.name.clone()).collect();
    let policy = if cfg.flow == Flow::Client && cfg.trans_type == TransType::Invoke {
        let c = manifest
            .contracts
            .iter()
            .find(|c| c.name == cfg.workload.contract_name())
            .ok_or_else(|| {
                invalid(
                    "workload.contract",
                    format!(
                        "no contract {:?} in {}",
                        cfg.workload.contract_name(),
                        manifest_path.display()
                    ),
                )
            })?;
        Some(Policy::from_str(&c.policy).map_err(|e| PteError::Network {
            path: manifest_path.clone(),
            why: e.to_string(),
        })?)
    } else {
        None
    };
    let (patients, doctors) = if cfg.workload.kind == WorkloadKind::HealthcareAppointment {
        people_of(cfg, &manifest, &manifest_path)?
    } else {
        (Vec::new(), Vec::new())
    };
    let mut specs = Vec::new();
    for org in &orgs {
        if !manifest.orgs.iter().any(|o| o.name == *org) {
            return Err(invalid(
                "orgs",
                format!("no org {org:?} in {}", manifest_path.display()),
            ));
        }
        let nodes = match org_nodes.get(org) {
            Some(n) => n.clone(),
            None => all_nodes_of(org),
        };
        if nodes.is_empty() {
            return Err(invalid("orgs", format!("org {org} has no node")));
        }
        let user = manifest.user(org, &cfg.user).ok_or_else(|| {
            let users: Vec<&str> = manifest
                .users
                .iter()
                .filter(|u| u.org == *org)
                .map(|u| u.name.as_str())
                .collect();
            invalid(
                "user",
                format!("org {org} has no user {:?} (it has {users:?})", cfg.user),
            )
        })?;
        let id_path = cfg.network.join(&user.identity);
        let identity = Arc::new(Identity::load(&id_path).map_err(|e| PteError::Network {
            path: id_path.clone(),
            why: e.to_string(),
        })?);
        for k in 0..cfg.proc_per_org {
            let index = u32::try_from(specs.len()).unwrap_or(u32::MAX);
            let gateway = nodes[k as usize % nodes.len()].clone();
            let endorsers = match &policy {
                None => Vec::new(),
                Some(p) => p
                    .orgs_to_ask(&network_orgs, org)
                    .iter()
                    .map(|eo| {
                        if eo == org {
                            return Ok(gateway.clone());
                        }
                        let candidates = match org_nodes.get(eo) {
                            Some(n) => n.clone(),
                            None => all_nodes_of(eo),
                        };
                        candidates
                            .get(k as usize % candidates.len().max(1))
                            .cloned()
                            .ok_or_else(|| {
                                invalid(
                                    "flow",
                                    format!("the policy {p} needs org {eo}, which has no node"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let pick = |v: &Vec<Arc<Identity>>| v.get(index as usize % v.len().max(1)).cloned();
            specs.push(ProcSpec {
                index,
                org: org.clone(),
                gateway,
                endorsers,
                identity: identity.clone(),
                people: People {
                    patient: pick(&patients),
                    doctor: pick(&doctors),
                },
            });
        }
    }
    Ok((manifest, tls, specs))
}

/// The healthcare flow's patients and doctors: every network.json user with that role, in
/// file order (process `i` signs as patient `i % patients` and doctor `i % doctors`).
type Signers = Vec<Arc<Identity>>;
fn people_of(
    cfg: &PteConfig,
    manifest: &NetworkManifest,
    manifest_path: &std::path::Path,
) -> Result<(Signers, Signers), PteError> {
    let load = |role: Role| -> Result<Signers, PteError> {
        let mut out = Vec::new();
        for u in manifest.users.iter().filter(|u| u.role == role) {
            let path = cfg.network.join(&u.identity);
            let id = Identity::load(&path).map_err(|e| PteError::Network {
                path: path.clone(),
                why: e.to_string(),
            })?;
            out.push(Arc::new(id));
        }
        if out.is_empty() {
            return Err(PteError::Config(ConfigError::Invalid {
                key: "workload.kind".into(),
                why: format!(
                    "the healthcare appointment flow needs a user with role {} in {}, and it has none",
                    role.as_str(),
                    manifest_path.display()
                ),
            }));
        }
        Ok(out)
    };
    Ok((load(Role::Patient)?, load(Role::Doctor)?))
}

/// Submits `call` through the lane's gateway and waits for its commit, outside the measured
/// run (setup, preload). Answers the contract's response and the block, or why it was not
/// committed valid.
async fn submit_unmeasured(
    env: &ProcEnv,
    lane: &Lane,
    call: &Call,
) -> Result<(Vec<u8>, Option<u64>), String> {
    let signer = env.signer(call).map_err(|o| format!("{o:?}"))?;
    let (_, sp) = make_proposal(
        signer,
        env.network_id,
        &call.contract,
        &call.function,
        &call.args,
    )
    .map_err(|e| e.to_string())?;
    let r = lane
        .gateway
        .submit(&sp, true)
        .await
        .map_err(|e| e.to_string())?;
    match r.code.as_deref() {
        Some("VALID") => Ok((hex::decode(&r.response_hex).unwrap_or_default(), r.block)),
        other => Err(format!("committed {other:?}")),
    }
}

/// Commits each process's workload setup calls (healthcare: registerUser for its patient and
/// doctor), one after the other, through the process's gateway. Not measured.
async fn setup(env: &ProcEnv, pool: &LanePool) -> Result<(), PteError> {
    let calls = env
        .workload
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .setup();
    if calls.is_empty() {
        return Ok(());
    }
    let Some((lane, _)) = pool.take().await else {
        return Err(PteError::Setup("no lane".into()));
    };
    let mut result = Ok(());
    for c in &calls {
        if let Err(why) = submit_unmeasured(env, &lane, c).await {
            result = Err(PteError::Setup(format!(
                "process {}: {} as {:?}: {why}",
                env.index, c.function, c.signer
            )));
            break;
        }
    }
    pool.put(lane);
    result
}

fn client(url: &str, tls: &Arc<ClientConfig>, timeout: Duration) -> Result<Client, PteError> {
    Client::new(url, tls.clone())
        .map(|c| c.with_timeout(timeout))
        .map_err(|e| PteError::Node {
            node: url.to_string(),
            why: e.to_string(),
        })
}

/// Opens every lane's connections, at most [`WARMUP_CONCURRENCY`] at once.
async fn warm_up(pools: &[Arc<LanePool>]) -> Result<(), PteError> {
    let gate = Arc::new(Semaphore::new(WARMUP_CONCURRENCY));
    let mut set = JoinSet::new();
    for pool in pools {
        for lane in pool.drain() {
            let gate = gate.clone();
            let pool = pool.clone();
            set.spawn(async move {
                let _permit = gate.acquire().await;
                let mut r = lane
                    .gateway
                    .status()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{}: {e}", lane.gateway.addr()));
                for c in &lane.endorsers {
                    if r.is_ok() {
                        r = c
                            .status()
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("{}: {e}", c.addr()));
                    }
                }
                pool.put(lane);
                r
            });
        }
    }
    while let Some(j) = set.join_next().await {
        if let Ok(Err(why)) = j {
            return Err(PteError::Node {
                node: "warm-up".into(),
                why,
            });
        }
    }
    Ok(())
}

/// Writes `n` keys per process with the invoke workload (not measured), for query runs.
async fn preload(env: &ProcEnv, pool: &LanePool, n: u32) -> Result<Vec<String>, PteError> {
    let mut keys = Vec::with_capacity(n as usize);
    let mut done = 0u32;
    while done < n {
        let batch = (n - done).min(64);
        let calls: Vec<Call> = {
            let mut w = env
                .workload
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (0..batch)
                .map(|i| w.next_invoke(env.index, u64::from(done + i)))
                .collect()
        };
        let Some((lane, _)) = pool.take().await else {
            return Err(PteError::Preload("no lane".into()));
        };
        let results = join_all(calls.iter().map(|c| submit_unmeasured(env, &lane, c))).await;
        pool.put(lane);
        let mut w = env
            .workload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (c, r) in calls.iter().zip(results) {
            let (response, block) = r.map_err(PteError::Preload)?;
            keys.push(
                w.committed(c, &response, block)
                    .unwrap_or_else(|| c.key.clone()),
            );
        }
        done += batch;
    }
    Ok(keys)
}

/// The open-loop schedule of process `index` of `procs`.
fn schedule_for(cfg: &PteConfig, index: u32, procs: u32, seed: u64) -> Schedule {
    match cfg.trans_mode {
        TransMode::Burst => Schedule::burst(&cfg.burst.burst_freq_ms, &cfg.burst.burst_dur_ms),
        TransMode::Rate => Schedule::rate(cfg.rate.tps, index, procs),
        TransMode::Mix => Schedule::every(cfg.mix.mix_freq_ms),
        _ => Schedule::constant(
            cfg.constant.const_freq_ms,
            cfg.constant.dev_freq_ms,
            seed ^ u64::from(index).wrapping_mul(0xA24B_AED4_963E_E407),
        ),
    }
}

/// Sends on a schedule, one spawned task per transaction.
async fn open_loop(
    env: Arc<ProcEnv>,
    pool: Arc<LanePool>,
    mut schedule: Schedule,
    start: tokio::time::Instant,
    n_request: Option<u64>,
    run_end: Option<tokio::time::Instant>,
) {
    let mut tasks = JoinSet::new();
    let mut sent = 0u64;
    while n_request.is_none_or(|n| sent < n) {
        let Some(offset) = schedule.next_offset() else {
            break;
        };
        let at = start + offset;
        if run_end.is_some_and(|end| at >= end) {
            break;
        }
        tokio::time::sleep_until(at).await;
        let Some((lane, on_time)) = pool.take().await else {
            break;
        };
        if !on_time {
            env.stats().late_sends += 1;
        }
        while tasks.try_join_next().is_some() {}
        let env = env.clone();
        let pool = pool.clone();
        tasks.spawn(async move {
            env.one(&lane).await;
            pool.put(lane);
        });
        sent += 1;
    }
    while tasks.join_next().await.is_some() {}
}

/// Each lane sends its next transaction when the previous one is done.
async fn closed_loop(
    env: Arc<ProcEnv>,
    pool: Arc<LanePool>,
    start: tokio::time::Instant,
    n_request: Option<u64>,
    run_end: Option<tokio::time::Instant>,
) {
    tokio::time::sleep_until(start).await;
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for lane in pool.drain() {
        let env = env.clone();
        let issued = issued.clone();
        workers.spawn(async move {
            loop {
                if let Some(n) = n_request
                    && issued.fetch_add(1, Ordering::Relaxed) >= n
                {
                    break;
                }
                if run_end.is_some_and(|end| tokio::time::Instant::now() >= end) {
                    break;
                }
                env.one(&lane).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

/// Runs the configured load against the network and returns the report. The caller's tokio
/// runtime runs it; `progress` is updated live.
pub async fn run(cfg: &PteConfig, progress: Arc<Progress>) -> Result<Report, PteError> {
    run_logged(cfg, progress, None).await
}

/// [`run`], also writing every transaction seen committed (valid or not) to `committed`.
pub async fn run_logged(
    cfg: &PteConfig,
    progress: Arc<Progress>,
    committed: Option<Arc<CommittedLog>>,
) -> Result<Report, PteError> {
    cfg.validate()?;
    progress.set_phase(Phase::Setup);
    let (manifest, tls, specs) = plan(cfg)?;
    let network_id = Hash32::from_hex(&manifest.network_id).map_err(|e| PteError::Network {
        path: cfg.network.join(sphr_node::genesis::NETWORK_FILE),
        why: format!("network_id: {e}"),
    })?;
    let limits = cfg.limits();
    let event_timeout = Duration::from_millis(cfg.event_timeout_ms);
    let lanes_per_proc = cfg.lanes_per_process() as usize;
    let procs = u32::try_from(specs.len()).unwrap_or(u32::MAX);
    let seed = cfg.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });

    // Every node used must answer and be of this network.
    let mut urls: Vec<(String, String)> = Vec::new();
    for s in &specs {
        for n in std::iter::once(&s.gateway).chain(&s.endorsers) {
            if !urls.iter().any(|(_, u)| *u == n.url) {
                urls.push((n.id.clone(), n.url.clone()));
            }
        }
    }
    for (id, url) in &urls {
        let st = client(url, &tls, Duration::from_secs(10))?
            .status()
            .await
            .map_err(|e| PteError::Node {
                node: format!("{id} ({url})"),
                why: e.to_string(),
            })?;
        if st.network_id != manifest.network_id {
            return Err(PteError::Node {
                node: format!("{id} ({url})"),
                why: format!(
                    "serves network {}, but {} is network {}",
                    st.network_id,
                    cfg.network.display(),
                    manifest.network_id
                ),
            });
        }
    }

    // Commit-event streams, one per gateway node (client flow).
    let mut hubs: HashMap<String, Arc<EventHub>> = HashMap::new();
    if cfg.flow == Flow::Client && cfg.trans_type == TransType::Invoke {
        for s in &specs {
            if hubs.contains_key(&s.gateway.url) {
                continue;
            }
            let users = specs
                .iter()
                .filter(|o| o.gateway.url == s.gateway.url)
                .count();
            let hub = EventHub::connect(
                &s.gateway.url,
                tls.clone(),
                client(&s.gateway.url, &tls, Duration::from_secs(10))?,
                users * lanes_per_proc + 16,
            )
            .await?;
            hubs.insert(s.gateway.url.clone(), Arc::new(hub));
        }
    }

    // Processes and their lanes.
    let mut envs = Vec::with_capacity(specs.len());
    let mut pools = Vec::with_capacity(specs.len());
    let mut meta = Vec::with_capacity(specs.len());
    for s in &specs {
        let mut lanes = Vec::with_capacity(lanes_per_proc);
        for _ in 0..lanes_per_proc {
            lanes.push(Lane {
                gateway: client(&s.gateway.url, &tls, event_timeout)?,
                endorsers: s
                    .endorsers
                    .iter()
                    .map(|n| client(&n.url, &tls, event_timeout))
                    .collect::<Result<_, _>>()?,
            });
        }
        pools.push(Arc::new(LanePool::new(lanes)));
        envs.push(ProcEnv {
            index: s.index,
            network_id,
            flow: cfg.flow,
            tx_type: cfg.trans_type,
            mix: cfg.trans_mode == TransMode::Mix,
            event_timeout,
            identity: s.identity.clone(),
            people: s.people.clone(),
            hub: hubs.get(&s.gateway.url).cloned(),
            committed: committed.clone(),
            workload: Mutex::new(workload::for_process(
                &cfg.workload,
                seed,
                s.index,
                s.people.doctor_identity().as_ref(),
            )?),
            keys: Vec::new(),
            seq: AtomicU64::new(0),
            stats: Mutex::new(ProcStats::default()),
            progress: progress.clone(),
            t0: Instant::now(),
        });
        meta.push((s.index, s.org.clone(), s.gateway.id.clone()));
    }
    if cfg.warmup {
        warm_up(&pools).await?;
    }
    for (env, pool) in envs.iter().zip(&pools) {
        setup(env, pool).await?;
    }
    if cfg.trans_type == TransType::Query {
        progress.set_phase(Phase::Preload);
        for (env, pool) in envs.iter_mut().zip(&pools) {
            env.keys = preload(env, pool, cfg.workload.preload).await?;
        }
    }

    // Go.
    if let Some(n) = limits.n_request {
        progress
            .expected
            .store(n.saturating_mul(u64::from(procs)), Ordering::Relaxed);
    }
    if let Some(d) = limits.run_dur_s {
        progress
            .duration_ms
            .store((d * 1000.0) as u64, Ordering::Relaxed);
    }
    let clock = Clock::now();
    let cpu0 = cpu_seconds();
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let run_end = limits.run_dur_s.map(|d| start + Duration::from_secs_f64(d));
    for env in &mut envs {
        env.t0 = start.into_std();
    }
    let envs: Vec<Arc<ProcEnv>> = envs.into_iter().map(Arc::new).collect();
    progress
        .started_unix_ms
        .store(sphr_node::now_ms(), Ordering::Relaxed);
    progress.set_phase(Phase::Running);
    let mut set = JoinSet::new();
    for (env, pool) in envs.iter().zip(&pools) {
        let env = env.clone();
        let pool = pool.clone();
        match cfg.trans_mode {
            TransMode::Latency | TransMode::Inflight => {
                set.spawn(closed_loop(env, pool, start, limits.n_request, run_end));
            }
            _ => {
                let sched = schedule_for(cfg, env.index, procs, seed);
                set.spawn(open_loop(
                    env,
                    pool,
                    sched,
                    start,
                    limits.n_request,
                    run_end,
                ));
            }
        }
    }
    while set.join_next().await.is_some() {}
    progress.set_phase(Phase::Done);
    let cpu = match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };

    // Merge.
    let mut processes = Vec::with_capacity(envs.len());
    let mut peer = Histogram::new();
    let mut orderer = Histogram::new();
    let mut event = Histogram::new();
    let mut q_latency = Histogram::new();
    let mut timeline = Timeline::new();
    let (mut q_sent, mut q_ok, mut q_failed) = (0, 0, 0);
    let mut errors: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut via_poll = 0;
    let mut late = 0;
    for (env, (index, org, node)) in envs.iter().zip(meta) {
        let s = env.stats();
        peer.merge(&s.peer);
        orderer.merge(&s.orderer);
        event.merge(&s.event);
        q_latency.merge(&s.q_latency);
        timeline.merge(&s.timeline);
        q_sent += s.q_sent;
        q_ok += s.q_ok;
        q_failed += s.q_failed;
        via_poll += s.via_poll;
        late += s.late_sends;
        for (k, (n, m)) in &s.errors {
            errors.entry(k.clone()).or_insert((0, m.clone())).0 += n;
        }
        let f = s.first_send.unwrap_or(clock.instant);
        let l = s.last_done.unwrap_or(f);
        first = Some(first.map_or(f, |x| x.min(f)));
        last = Some(last.map_or(l, |x| x.max(l)));
        processes.push(ProcessReport {
            index,
            org,
            node,
            sent: s.sent,
            received: s.received,
            failures_proposal: s.failures_proposal,
            failures_transaction: s.failures_transaction,
            event_timeouts: s.timeouts,
            start_ms: clock.unix_ms(f),
            end_ms: clock.unix_ms(l),
            late_sends: s.late_sends,
        });
    }
    let first = first.unwrap_or(clock.instant);
    let last = last.unwrap_or(first);
    let received: u64 = processes.iter().map(|p| p.received).sum();
    let secs = last.saturating_duration_since(first).as_secs_f64();
    let tps = if secs > 0.0 {
        received as f64 / secs
    } else {
        0.0
    };
    let mut errors: Vec<(String, u64, String)> =
        errors.into_iter().map(|(k, (n, m))| (k, n, m)).collect();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    errors.truncate(REPORT_ERRORS);
    let offered_tps = match cfg.trans_mode {
        TransMode::Rate => Some(cfg.rate.tps),
        TransMode::Constant if cfg.constant.const_freq_ms > 0.0 => {
            Some(f64::from(procs) * 1000.0 / cfg.constant.const_freq_ms)
        }
        TransMode::Mix if cfg.mix.mix_freq_ms > 0.0 => {
            Some(f64::from(procs) * 1000.0 / cfg.mix.mix_freq_ms)
        }
        _ => None,
    };
    let function = match (cfg.workload.kind, cfg.trans_type) {
        (WorkloadKind::HealthcareAppointment, TransType::Invoke) => {
            "requestAppointment+acceptAppointment".to_string()
        }
        (WorkloadKind::HealthcareAppointment, TransType::Query) => {
            "getAppointmentStatus".to_string()
        }
        (_, TransType::Invoke) => cfg.workload.invoke_function.clone(),
        (_, TransType::Query) => cfg.workload.query_function.clone(),
    };
    let report = Report {
        mode: cfg.trans_mode,
        tx_type: cfg.trans_type,
        flow: cfg.flow,
        contract: cfg.workload.contract_name().to_string(),
        function,
        sent: processes.iter().map(|p| p.sent).sum(),
        received,
        failures_proposal: processes.iter().map(|p| p.failures_proposal).sum(),
        failures_transaction: processes.iter().map(|p| p.failures_transaction).sum(),
        event_timeouts: processes.iter().map(|p| p.event_timeouts).sum(),
        events_recovered: via_poll,
        start_ms: clock.unix_ms(first),
        end_ms: clock.unix_ms(last),
        tps,
        offered_tps,
        late_sends: late,
        peer: peer.summary(),
        orderer: orderer.summary(),
        event: event.summary(),
        queries: (cfg.trans_mode == TransMode::Mix).then(|| QueryReport {
            sent: q_sent,
            received: q_ok,
            failures: q_failed,
            latency: q_latency.summary(),
        }),
        client_cpu_s: cpu,
        errors,
        timeline: timeline.rows(),
        processes,
    };
    drop(hubs);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_step_and_kind() {
        let api = |kind: &str| ClientError::Api {
            status: 503,
            error: kind.into(),
            message: "m".into(),
        };
        assert!(matches!(
            classify(&api("policy_unreachable"), Step::Submit),
            Outcome::ProposalFailed(_)
        ));
        assert!(matches!(
            classify(&api("busy"), Step::Submit),
            Outcome::TxFailed(_)
        ));
        assert!(matches!(
            classify(&api("busy"), Step::Endorse),
            Outcome::ProposalFailed(_)
        ));
        assert!(matches!(
            classify(&api("commit_timeout"), Step::Submit),
            Outcome::Timeout(_)
        ));
        let timeout = ClientError::Timeout {
            method: "POST".into(),
            path: "/v1/transactions".into(),
            after_ms: 1,
        };
        assert!(matches!(
            classify(&timeout, Step::Submit),
            Outcome::Timeout(_)
        ));
        assert!(matches!(
            classify(&timeout, Step::Broadcast),
            Outcome::TxFailed(_)
        ));
        assert!(matches!(
            classify(&timeout, Step::Endorse),
            Outcome::ProposalFailed(_)
        ));
        assert_eq!(error_key(&api("busy")).0, "503 busy");
        assert!(
            error_key(&api("busy"))
                .1
                .contains("node answered 503 busy: m")
        );
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut s = ProcStats::default();
        for i in 0..100 {
            s.note_error(&(format!("e{i}"), format!("message {i}")));
        }
        s.note_error(&("e0".into(), "another".into()));
        assert_eq!(s.errors.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(s.errors["e0"], (2, "message 0".to_string()));
        assert_eq!(s.errors["(other errors)"].0, 100 - MAX_ERROR_KINDS as u64);
    }

    #[test]
    fn cpu_time_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            let a = cpu_seconds().unwrap();
            assert!(a >= 0.0);
        }
    }
}
