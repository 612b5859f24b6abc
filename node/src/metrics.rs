//! The node's Prometheus metrics: names `sphr_<module>_<what>_<unit>`, base units (seconds,
//! bytes), bounded labels only (route, status, kind, code, contract, component, reason, subject:
//! `node`, `tls` or `peer:<name@org>` of a genesis node) — never a patient or user id.
//!
//! ```text
//!  pipeline stages ──inc / observe──> registered metrics ──┐
//!  scrape (/metrics) ──> Scraper::sample ──set──> sampled  ├──> Registry::gather ──> text format
//!     (Raft status, p2p counters, health, waiting clients) ┘
//! ```
//!
//! Every metric is registered through one builder that also records its name, type, help and
//! labels; `docs/metrics.md` is rendered from that record ([`Metrics::reference_markdown`],
//! `sphr-node metrics-doc`) and a test fails when the checked-in file differs.
//! Metrics that mirror state owned elsewhere (Raft, the p2p layer, health) are sampled when
//! scraped, so they cost nothing between scrapes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Buckets (seconds) for stages that take microseconds to a second: endorsement, block
/// validation and commit.
const STAGE_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Buckets (seconds) for end-to-end waits: API requests, submit to commit.
const REQUEST_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The health components, as `sphr_node_healthy{component}` labels them.
pub const HEALTH_COMPONENTS: [&str; 3] = ["storage", "raft", "p2p"];

/// One metric as the reference documents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDoc {
    /// Full name.
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Help text.
    pub help: String,
    /// Label names.
    pub labels: Vec<String>,
    /// Whether it is sampled at scrape time from state owned elsewhere.
    pub sampled: bool,
}

/// What the node reads at scrape time (Raft, p2p, health, waiting clients).
pub trait Scraper: Send + Sync {
    /// Sets the sampled metrics of `m` from the current state.
    fn sample(&self, m: &Metrics);
}

/// A metric that mirrors a value kept elsewhere, set at scrape time.
#[derive(Clone)]
enum Sampled {
    Counter(IntCounter),
    Gauge(IntGauge),
    CounterVec(IntCounterVec),
    GaugeVec(IntGaugeVec),
}

/// Every metric the node exports.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// API requests by route template and status code.
    pub api_requests_total: IntCounterVec,
    /// Requests refused for bad input, by kind (`malformed_proposal`, `body_too_large`, ...).
    pub api_rejections_total: IntCounterVec,
    /// API request durations by route template.
    pub api_request_duration_seconds: HistogramVec,
    /// Submit (wait=true) to commit, at the gateway.
    pub gateway_submit_duration_seconds: Histogram,
    /// The two phases of a submission that waited for its commit: `endorse` (proposal
    /// received to every endorsement in hand) and `order` (transaction handed to the orderer
    /// to its commit on this node).
    pub gateway_phase_duration_seconds: HistogramVec,
    /// Submissions waiting for their commit (sampled).
    pub gateway_waiting_submissions: IntGauge,
    /// Proposal check, simulation and signature at this node, by contract and result.
    pub endorser_endorsement_duration_seconds: HistogramVec,
    /// Transactions committed, by validation code.
    pub ledger_txs_committed_total: IntCounterVec,
    /// Blocks committed.
    pub ledger_blocks_committed_total: IntCounter,
    /// Ledger height (number of the last block).
    pub ledger_height: IntGauge,
    /// Worker threads of the async runtime, set when the metrics are made.
    pub runtime_worker_threads: IntGauge,
    /// Block validation durations.
    pub ledger_block_validation_duration_seconds: Histogram,
    /// Block write and flush durations.
    pub ledger_block_commit_duration_seconds: Histogram,
    /// Peer messages the node dropped after the p2p layer let them through, by reason.
    pub p2p_node_dropped_total: IntCounterVec,
    /// Endorse requests this node sent to peers.
    pub p2p_endorse_requests_total: IntCounter,
    /// Proposals those requests carried (divided by the requests: the average batch).
    pub p2p_endorse_proposals_sent_total: IntCounter,
    /// Sealed bundles served to requesters.
    pub vault_bundles_served_total: IntCounter,
    /// Bundle downloads refused, by reason.
    pub vault_bundles_refused_total: IntCounterVec,
    /// Committed grants the node handled, by result (delivered, no_data, ...).
    pub vault_grants_total: IntCounterVec,
    /// Grants waiting in the node's persisted to-do.
    pub vault_grants_pending: IntGauge,
    /// 1 per health component when healthy, 0 when not (sampled).
    pub node_healthy: IntGaugeVec,
    /// Seconds until a certificate expires, negative once expired, by subject (sampled).
    pub cert_expiry_seconds: IntGaugeVec,
    /// 1 when a certificate expires within `node.cert_warn_days` or has expired (sampled).
    pub cert_expiring: IntGaugeVec,
    /// Certificate reloads (SIGHUP), by result (`ok`, `refused`).
    pub cert_reloads_total: IntCounterVec,
    raft_is_leader: IntGauge,
    raft_term: IntGauge,
    raft_leader_changes_total: IntCounter,
    raft_committed_index: IntGauge,
    raft_applied_index: IntGauge,
    raft_pending_txs: IntGauge,
    raft_proposals_total: IntCounter,
    raft_txs_dropped_total: IntCounter,
    raft_msgs_rejected_total: IntCounter,
    sigcache_hits_total: IntCounter,
    sigcache_misses_total: IntCounter,
    sigcache_entries: IntGauge,
    /// The cache of verified signatures, once the node has made it (sampled at scrape time).
    pub sigcache: Arc<OnceLock<Arc<sphr_crypto::sigcache::VerifiedSigs>>>,
    p2p_series: Arc<BTreeMap<&'static str, Sampled>>,
    /// The p2p layer, once started (its counters are sampled at scrape time).
    pub p2p: Arc<OnceLock<sphr_p2p::P2pHandle>>,
    /// What the node samples at scrape time, once started.
    pub scraper: Arc<OnceLock<Arc<dyn Scraper>>>,
    scrape_lock: Arc<Mutex<()>>,
    reference: Arc<Vec<MetricDoc>>,
}

/// Registers metrics and records what the reference says about each.
struct Builder {
    registry: Registry,
    docs: Vec<MetricDoc>,
}

impl Builder {
    fn doc(&mut self, name: &str, kind: &'static str, help: &str, labels: &[&str], sampled: bool) {
        self.docs.push(MetricDoc {
            name: name.to_string(),
            kind,
            help: help.to_string(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            sampled,
        });
    }

    fn counter(
        &mut self,
        name: &str,
        help: &str,
        sampled: bool,
    ) -> Result<IntCounter, prometheus::Error> {
        let m = IntCounter::new(name, help)?;
        self.registry.register(Box::new(m.clone()))?;
        self.doc(name, "counter", help, &[], sampled);
        Ok(m)
    }

    fn counter_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        sampled: bool,
    ) -> Result<IntCounterVec, prometheus::Error> {
        let m = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(m.clone()))?;
        self.doc(name, "counter", help, labels, sampled);
        Ok(m)
    }

    fn gauge(
        &mut self,
        name: &str,
        help: &str,
        sampled: bool,
    ) -> Result<IntGauge, prometheus::Error> {
        let m = IntGauge::new(name, help)?;
        self.registry.register(Box::new(m.clone()))?;
        self.doc(name, "gauge", help, &[], sampled);
        Ok(m)
    }

    fn float_gauge(&mut self, name: &str, help: &str) -> Result<Gauge, prometheus::Error> {
        let m = Gauge::new(name, help)?;
        self.registry.register(Box::new(m.clone()))?;
        self.doc(name, "gauge", help, &[], false);
        Ok(m)
    }

    fn gauge_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        sampled: bool,
    ) -> Result<IntGaugeVec, prometheus::Error> {
        let m = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(m.clone()))?;
        self.doc(name, "gauge", help, labels, sampled);
        Ok(m)
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, prometheus::Error> {
        let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
        self.registry.register(Box::new(m.clone()))?;
        self.doc(name, "histogram", help, &[], false);
        Ok(m)
    }

    fn histogram_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, prometheus::Error> {
        let m = HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )?;
        self.registry.register(Box::new(m.clone()))?;
        self.doc(name, "histogram", help, labels, false);
        Ok(m)
    }
}

/// Help text of the p2p layer's samples (the p2p crate names them; the node documents them).
fn p2p_help(name: &str) -> Option<&'static str> {
    Some(match name {
        "sphr_p2p_peers_connected" => "Genesis peers with at least one connection",
        "sphr_p2p_peers_refused_total" => {
            "Connections refused after the handshake: the peer's key is not in genesis"
        }
        "sphr_p2p_connections_limited_total" => {
            "Connections refused by a connection limit (pending handshakes, per peer, total)"
        }
        "sphr_p2p_bad_messages_total" => {
            "Frames and gossip messages dropped by the p2p layer, by reason"
        }
        "sphr_p2p_messages_in_total" => "Requests, Raft messages, gossip and responses received",
        "sphr_p2p_messages_out_total" => "Requests, Raft messages, gossip and responses sent",
        "sphr_p2p_inbound_busy_total" => {
            "Inbound requests answered busy (inbound queue full) and gossip the node could not take"
        }
        "sphr_p2p_raft_dropped_total" => {
            "Raft messages dropped before sending (peer not connected, queue full, stream failed) or not acknowledged"
        }
        "sphr_p2p_raft_streams_opened_total" => {
            "Raft streams opened to peers (one per peer and connection; a rising count means streams fail)"
        }
        "sphr_p2p_endorse_streams_opened_total" => {
            "Endorse request streams opened to peers (one per peer and connection; a rising count means streams fail)"
        }
        "sphr_p2p_requests_failed_total" => {
            "Outbound requests that ended in an error (timeout, connection closed, refused)"
        }
        "sphr_p2p_dials_total" => "Dials started",
        "sphr_p2p_gossip_peers" => "Connected peers subscribed to a gossip topic, by topic",
        _ => return None,
    })
}

fn set_counter(c: &IntCounter, value: u64) {
    let cur = c.get();
    if value > cur {
        c.inc_by(value - cur);
    } else if value < cur {
        c.reset();
        c.inc_by(value);
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let mut b = Builder {
            registry: Registry::new(),
            docs: Vec::new(),
        };
        // api
        let api_requests_total = b.counter_vec(
            "sphr_api_requests_total",
            "API requests by route template and HTTP status",
            &["route", "status"],
            false,
        )?;
        let api_rejections_total = b.counter_vec(
            "sphr_api_rejections_total",
            "API requests refused for bad input, by kind",
            &["kind"],
            false,
        )?;
        let api_request_duration_seconds = b.histogram_vec(
            "sphr_api_request_duration_seconds",
            "API request durations, by route template (until the response head is sent)",
            &["route"],
            &REQUEST_BUCKETS,
        )?;
        // gateway
        let gateway_submit_duration_seconds = b.histogram(
            "sphr_gateway_submit_duration_seconds",
            "Submissions that waited for their commit: proposal received to commit acknowledged",
            &REQUEST_BUCKETS,
        )?;
        let gateway_phase_duration_seconds = b.histogram_vec(
            "sphr_gateway_phase_duration_seconds",
            "Submissions that waited for their commit, by phase: endorse (proposal received to \
             every endorsement in hand), order (handed to the orderer to committed here)",
            &["phase"],
            &REQUEST_BUCKETS,
        )?;
        let gateway_waiting_submissions = b.gauge(
            "sphr_gateway_waiting_submissions",
            "Submissions waiting for their commit",
            true,
        )?;
        // endorser
        let endorser_endorsement_duration_seconds = b.histogram_vec(
            "sphr_endorser_endorsement_duration_seconds",
            "Endorsements at this node (check, simulate, sign), by contract and result (ok, error)",
            &["contract", "result"],
            &STAGE_BUCKETS,
        )?;
        // ledger
        let ledger_height = b.gauge("sphr_ledger_height", "Number of the last block", false)?;
        let ledger_blocks_committed_total = b.counter(
            "sphr_ledger_blocks_committed_total",
            "Blocks committed",
            false,
        )?;
        let ledger_txs_committed_total = b.counter_vec(
            "sphr_ledger_txs_committed_total",
            "Transactions committed, by validation code (VALID, MVCC_READ_CONFLICT, ...)",
            &["code"],
            false,
        )?;
        let ledger_block_validation_duration_seconds = b.histogram(
            "sphr_ledger_block_validation_duration_seconds",
            "Block validation: decoding, signatures, endorsement policies, MVCC",
            &STAGE_BUCKETS,
        )?;
        let ledger_block_commit_duration_seconds = b.histogram(
            "sphr_ledger_block_commit_duration_seconds",
            "Block commit: redo record, block, writes, tx index, tip, and the flush to disk",
            &STAGE_BUCKETS,
        )?;
        // raft (sampled from the orderer's status)
        let raft_is_leader = b.gauge(
            "sphr_raft_is_leader",
            "1 when this consenter is the Raft leader, else 0",
            true,
        )?;
        let raft_term = b.gauge("sphr_raft_term", "Current Raft term", true)?;
        let raft_leader_changes_total = b.counter(
            "sphr_raft_leader_changes_total",
            "Times a new Raft leader became known to this consenter",
            true,
        )?;
        let raft_committed_index = b.gauge(
            "sphr_raft_committed_index",
            "Highest Raft log index known committed",
            true,
        )?;
        let raft_applied_index = b.gauge(
            "sphr_raft_applied_index",
            "Highest Raft log index applied to the ledger",
            true,
        )?;
        let raft_pending_txs = b.gauge(
            "sphr_raft_pending_txs",
            "Transactions accepted by the orderer and not yet proposed or forwarded",
            true,
        )?;
        let raft_proposals_total = b.counter(
            "sphr_raft_proposals_total",
            "Batches this consenter proposed as leader",
            true,
        )?;
        let raft_txs_dropped_total = b.counter(
            "sphr_raft_txs_dropped_total",
            "Transactions the orderer dropped (forward buffer full, proposal refused)",
            true,
        )?;
        let raft_msgs_rejected_total = b.counter(
            "sphr_raft_msgs_rejected_total",
            "Raft messages refused (wrong destination, unknown sender, refused type)",
            true,
        )?;
        // p2p
        let p2p_node_dropped_total = b.counter_vec(
            "sphr_p2p_node_dropped_total",
            "Peer messages dropped by the node (malformed, wrong sender, busy), by reason",
            &["reason"],
            false,
        )?;
        let p2p_endorse_requests_total = b.counter(
            "sphr_p2p_endorse_requests_total",
            "Endorse requests sent to peers (each carries the proposals that waited for it)",
            false,
        )?;
        let p2p_endorse_proposals_sent_total = b.counter(
            "sphr_p2p_endorse_proposals_sent_total",
            "Proposals sent to peers for endorsement (over sphr_p2p_endorse_requests_total: the average batch)",
            false,
        )?;
        let mut p2p_series = BTreeMap::new();
        for s in sphr_p2p::P2pStats::default().samples() {
            if p2p_series.contains_key(s.name) {
                continue;
            }
            let help = p2p_help(s.name).unwrap_or("p2p layer counter (see node/p2p)");
            let counter = s.name.ends_with("_total");
            let series = match (s.label, counter) {
                (None, true) => Sampled::Counter(b.counter(s.name, help, true)?),
                (None, false) => Sampled::Gauge(b.gauge(s.name, help, true)?),
                (Some((l, _)), true) => {
                    Sampled::CounterVec(b.counter_vec(s.name, help, &[l], true)?)
                }
                (Some((l, _)), false) => {
                    Sampled::GaugeVec(b.gauge_vec(s.name, help, &[l], true)?)
                }
            };
            p2p_series.insert(s.name, series);
        }
        // vault
        let vault_bundles_served_total = b.counter(
            "sphr_vault_bundles_served_total",
            "Sealed bundles served to their requesters",
            false,
        )?;
        let vault_bundles_refused_total = b.counter_vec(
            "sphr_vault_bundles_refused_total",
            "Bundle downloads refused, by reason (a fixed set of kinds)",
            &["reason"],
            false,
        )?;
        let vault_grants_total = b.counter_vec(
            "sphr_vault_grants_total",
            "Committed access grants the node handled, by result: delivered, already_delivered, not_granted_here, no_data, failed, retry, deferred (vault busy)",
            &["result"],
            false,
        )?;
        let vault_grants_pending = b.gauge(
            "sphr_vault_grants_pending",
            "Committed access grants waiting in the node's persisted to-do",
            false,
        )?;
        // node
        let node_healthy = b.gauge_vec(
            "sphr_node_healthy",
            "1 when a component (storage, raft, p2p) passes its health check, else 0",
            &["component"],
            true,
        )?;
        let cert_expiry_seconds = b.gauge_vec(
            "sphr_cert_expiry_seconds",
            "Seconds until a certificate expires (negative once expired), by subject: node (this node's certificate), tls (its TLS certificate), peer:<name@org> (a peer's node certificate, as last seen in a committed block)",
            &["subject"],
            true,
        )?;
        let cert_expiring = b.gauge_vec(
            "sphr_cert_expiring",
            "1 when the certificate of a subject (as in sphr_cert_expiry_seconds) expires within node.cert_warn_days or has expired, else 0",
            &["subject"],
            true,
        )?;
        let cert_reloads_total = b.counter_vec(
            "sphr_cert_reloads_total",
            "Certificate reloads asked by SIGHUP, by result: ok (the new node and TLS certificates are in use), refused (a file is unreadable, the key is not this node's genesis key, the certificate is not issued by the org CA or not valid now; the node keeps its certificates)",
            &["result"],
            false,
        )?;
        // sigcache
        let sigcache_hits_total = b.counter(
            "sphr_sigcache_hits_total",
            "Signature checks skipped because this node had already verified (or made) the same signature over the same bytes: at endorsement, at the gateway and at commit",
            true,
        )?;
        let sigcache_misses_total = b.counter(
            "sphr_sigcache_misses_total",
            "Signature lookups in the verified-signature cache that found nothing (the signature was verified)",
            true,
        )?;
        let sigcache_entries = b.gauge(
            "sphr_sigcache_entries",
            "Signatures held by the verified-signature cache (at most twice node.verified_signature_cache)",
            true,
        )?;
        let build_info = b.gauge_vec(
            "sphr_node_build_info",
            "Always 1; the version label says which sphr-node is running",
            &["version"],
            false,
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let start_time = b.float_gauge(
            "sphr_node_start_time_seconds",
            "Unix time the node started, in seconds",
        )?;
        start_time.set(crate::now_ms() as f64 / 1000.0);
        let runtime_worker_threads = b.gauge(
            "sphr_runtime_worker_threads",
            "Worker threads of the node's async runtime (node.worker_threads, or one per CPU)",
            false,
        )?;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            runtime_worker_threads
                .set(i64::try_from(rt.metrics().num_workers()).unwrap_or(i64::MAX));
        }
        Ok(Metrics {
            runtime_worker_threads,
            registry: b.registry,
            api_requests_total,
            api_rejections_total,
            api_request_duration_seconds,
            gateway_submit_duration_seconds,
            gateway_phase_duration_seconds,
            gateway_waiting_submissions,
            endorser_endorsement_duration_seconds,
            ledger_txs_committed_total,
            ledger_blocks_committed_total,
            ledger_height,
            ledger_block_validation_duration_seconds,
            ledger_block_commit_duration_seconds,
            p2p_node_dropped_total,
            p2p_endorse_requests_total,
            p2p_endorse_proposals_sent_total,
            vault_bundles_served_total,
            vault_bundles_refused_total,
            vault_grants_total,
            vault_grants_pending,
            node_healthy,
            cert_expiry_seconds,
            cert_expiring,
            cert_reloads_total,
            raft_is_leader,
            raft_term,
            raft_leader_changes_total,
            raft_committed_index,
            raft_applied_index,
            raft_pending_txs,
            raft_proposals_total,
            raft_txs_dropped_total,
            raft_msgs_rejected_total,
            sigcache_hits_total,
            sigcache_misses_total,
            sigcache_entries,
            sigcache: Arc::new(OnceLock::new()),
            p2p_series: Arc::new(p2p_series),
            p2p: Arc::new(OnceLock::new()),
            scraper: Arc::new(OnceLock::new()),
            scrape_lock: Arc::new(Mutex::new(())),
            reference: Arc::new(b.docs),
        })
    }

    /// Sets the Raft metrics from the orderer's status (at scrape time).
    pub fn set_raft(&self, s: &sphr_orderer::RaftStatus) {
        self.raft_is_leader.set(i64::from(s.is_leader));
        self.raft_term.set(as_i64(s.term));
        set_counter(&self.raft_leader_changes_total, s.leader_changes);
        self.raft_committed_index.set(as_i64(s.commit_index));
        self.raft_applied_index.set(as_i64(s.applied_index));
        self.raft_pending_txs.set(as_i64(s.pending_txs));
        set_counter(&self.raft_proposals_total, s.proposals_total);
        set_counter(&self.raft_txs_dropped_total, s.txs_dropped_total);
        set_counter(&self.raft_msgs_rejected_total, s.msgs_rejected_total);
    }

    fn set_p2p(&self, stats: &sphr_p2p::P2pStats) {
        for s in stats.samples() {
            match (self.p2p_series.get(s.name), s.label) {
                (Some(Sampled::Counter(c)), None) => set_counter(c, s.value),
                (Some(Sampled::Gauge(g)), None) => g.set(as_i64(s.value)),
                (Some(Sampled::CounterVec(c)), Some((_, v))) => {
                    set_counter(&c.with_label_values(&[v]), s.value)
                }
                (Some(Sampled::GaugeVec(g)), Some((_, v))) => {
                    g.with_label_values(&[v]).set(as_i64(s.value))
                }
                _ => {}
            }
        }
    }

    /// Samples what is owned elsewhere, then renders the registry in Prometheus text format.
    pub fn render(&self) -> String {
        {
            // One scrape at a time: sampled counters move by differences.
            let _one = self
                .scrape_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(p2p) = self.p2p.get() {
                self.set_p2p(&p2p.stats());
            }
            if let Some(s) = self.scraper.get() {
                s.sample(self);
            }
            if let Some(c) = self.sigcache.get() {
                set_counter(&self.sigcache_hits_total, c.hits());
                set_counter(&self.sigcache_misses_total, c.misses());
                self.sigcache_entries.set(as_i64(c.len() as u64));
            }
        }
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }

    /// Every registered metric: name, type, help, labels.
    pub fn reference(&self) -> &[MetricDoc] {
        &self.reference
    }

    /// The metrics reference (`docs/metrics.md`), rendered from [`Metrics::reference`].
    pub fn reference_markdown(&self) -> String {
        let mut out = String::from(
            "# sphr-node metrics\n\n\
             <!-- Generated by `sphr-node metrics-doc` from node/src/metrics.rs; do not edit.\n     \
             The test `metrics::tests::reference_doc_is_current` fails when this file differs. -->\n\n\
             Served in Prometheus text format at `/metrics` on the operations endpoint\n\
             (`[ops] listen`, default `127.0.0.1:9443`) and on the client API. Names follow\n\
             `sphr_<module>_<what>_<unit>`; durations are in seconds; every label takes a bounded\n\
             set of values (route templates, status codes, validation codes, contract names from\n\
             genesis, fixed reasons). No metric carries a patient, user or transaction id.\n\
             \"Sampled\" metrics mirror state kept elsewhere (Raft, the p2p layer, health) and are\n\
             read when scraped; they stay 0 where the part does not run (Raft on a node that is\n\
             not a consenter, p2p on a one-node network).\n\n",
        );
        let mut by_module: BTreeMap<&str, Vec<&MetricDoc>> = BTreeMap::new();
        for d in self.reference.iter() {
            let module = d
                .name
                .strip_prefix("sphr_")
                .and_then(|r| r.split('_').next())
                .unwrap_or("other");
            by_module.entry(module).or_default().push(d);
        }
        for (module, docs) in by_module {
            out.push_str(&format!("## {module}\n\n"));
            out.push_str("| name | type | labels | help |\n| --- | --- | --- | --- |\n");
            let mut docs = docs;
            docs.sort_by(|a, b| a.name.cmp(&b.name));
            for d in docs {
                let labels = if d.labels.is_empty() {
                    "-".to_string()
                } else {
                    d.labels
                        .iter()
                        .map(|l| format!("`{l}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let kind = if d.sampled {
                    format!("{} (sampled)", d.kind)
                } else {
                    d.kind.to_string()
                };
                out.push_str(&format!(
                    "| `{}` | {kind} | {labels} | {} |\n",
                    d.name, d.help
                ));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/metrics.md` is what the code registers. To update it:
    /// `cargo run -p sphr-node -- metrics-doc > docs/metrics.md`.
    #[test]
    fn reference_doc_is_current() {
        let m = Metrics::new().unwrap();
        let want = m.reference_markdown();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date: run `cargo run -p sphr-node -- metrics-doc > docs/metrics.md`",
            path.display()
        );
    }

    #[test]
    fn names_units_and_labels_follow_the_rules() {
        let m = Metrics::new().unwrap();
        let mut names = std::collections::BTreeSet::new();
        for d in m.reference() {
            assert!(names.insert(d.name.clone()), "{} registered twice", d.name);
            assert!(d.name.starts_with("sphr_"), "{}", d.name);
            assert!(!d.help.is_empty(), "{} has no help", d.name);
            match d.kind {
                "counter" => assert!(d.name.ends_with("_total"), "{}", d.name),
                "histogram" => assert!(d.name.ends_with("_seconds"), "{}", d.name),
                _ => assert!(!d.name.ends_with("_total"), "{}", d.name),
            }
            for l in &d.labels {
                assert!(
                    [
                        "route",
                        "status",
                        "kind",
                        "code",
                        "contract",
                        "result",
                        // endorse, order: the gateway's two phases.
                        "phase",
                        "reason",
                        "topic",
                        "component",
                        "version",
                        // node, tls, peer:<name@org>: bounded by the genesis nodes.
                        "subject"
                    ]
                    .contains(&l.as_str()),
                    "{} has an unexpected label {l}",
                    d.name
                );
            }
        }
        for s in sphr_p2p::P2pStats::default().samples() {
            assert!(p2p_help(s.name).is_some(), "no help for {}", s.name);
        }
        // Everything the registry exports is in the reference.
        m.vault_bundles_refused_total
            .with_label_values(&["not_granted"])
            .inc();
        for f in m.registry.gather() {
            assert!(names.contains(f.name()), "{} is not documented", f.name());
        }
    }

    /// The Grafana dashboard and the Prometheus alerts only use metrics the node exports.
    #[test]
    fn dashboard_and_alerts_use_exported_metrics() {
        let m = Metrics::new().unwrap();
        let known: std::collections::BTreeSet<String> =
            m.reference().iter().map(|d| d.name.clone()).collect();
        for (file, text) in [
            (
                "configs/grafana/sphr-dashboard.json",
                include_str!("../../configs/grafana/sphr-dashboard.json"),
            ),
            (
                "configs/prometheus/sphr-alerts.yml",
                include_str!("../../configs/prometheus/sphr-alerts.yml"),
            ),
        ] {
            let mut used = 0;
            for (i, _) in text.match_indices("sphr_") {
                let name: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| known.contains(*b)))
                    .unwrap_or(&name);
                assert!(
                    known.contains(base),
                    "{file} uses {name}, which the node does not export"
                );
                used += 1;
            }
            assert!(used > 0, "{file} uses no metric");
        }
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../../configs/grafana/sphr-dashboard.json"))
                .unwrap();
        let titles: Vec<String> = dash["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["title"].as_str().map(str::to_lowercase))
            .collect();
        for want in [
            "tps", "latency", "height", "leader", "peers", "error", "invalid",
        ] {
            assert!(titles.iter().any(|t| t.contains(want)), "no {want} panel");
        }
    }

    #[test]
    fn sampled_counters_follow_their_source() {
        let m = Metrics::new().unwrap();
        let mut s = sphr_orderer::RaftStatus {
            leader_changes: 3,
            term: 4,
            is_leader: true,
            commit_index: 9,
            ..Default::default()
        };
        m.set_raft(&s);
        s.leader_changes = 5;
        m.set_raft(&s);
        let text = m.render();
        assert!(
            text.contains("sphr_raft_leader_changes_total 5\n"),
            "{text}"
        );
        assert!(text.contains("sphr_raft_is_leader 1\n"), "{text}");
        assert!(text.contains("sphr_raft_committed_index 9\n"), "{text}");
        assert!(
            text.contains("# HELP sphr_p2p_peers_refused_total"),
            "{text}"
        );
    }
}
