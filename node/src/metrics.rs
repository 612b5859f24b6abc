//! The node's Prometheus metrics: names `sphr_<module>_<what>_<unit>`, base units, bounded
//! labels only (route, status, kind, code) — never a patient or user id.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric the node exports.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// API requests by route template and status code.
    pub api_requests_total: IntCounterVec,
    /// Requests refused for bad input, by kind (`malformed_proposal`, `body_too_large`, ...).
    pub api_rejections_total: IntCounterVec,
    /// Transactions committed, by validation code.
    pub ledger_txs_committed_total: IntCounterVec,
    /// Blocks committed.
    pub ledger_blocks_committed_total: IntCounter,
    /// Ledger height (number of the last block).
    pub ledger_height: IntGauge,
    /// Peer messages the node dropped after the p2p layer let them through, by reason.
    pub p2p_node_dropped_total: IntCounterVec,
    /// The p2p layer's own counters, rendered with the registry.
    pub p2p: std::sync::Arc<std::sync::OnceLock<sphr_p2p::P2pHandle>>,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let api_requests_total = IntCounterVec::new(
            Opts::new(
                "sphr_api_requests_total",
                "API requests by route and status",
            ),
            &["route", "status"],
        )?;
        let api_rejections_total = IntCounterVec::new(
            Opts::new(
                "sphr_api_rejections_total",
                "API requests refused for bad input, by kind",
            ),
            &["kind"],
        )?;
        let ledger_txs_committed_total = IntCounterVec::new(
            Opts::new(
                "sphr_ledger_txs_committed_total",
                "Transactions committed, by validation code",
            ),
            &["code"],
        )?;
        let ledger_blocks_committed_total =
            IntCounter::new("sphr_ledger_blocks_committed_total", "Blocks committed")?;
        let ledger_height = IntGauge::new("sphr_ledger_height", "Number of the last block")?;
        let p2p_node_dropped_total = IntCounterVec::new(
            Opts::new(
                "sphr_p2p_node_dropped_total",
                "Peer messages dropped by the node (malformed, wrong sender, busy), by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(p2p_node_dropped_total.clone()))?;
        registry.register(Box::new(api_requests_total.clone()))?;
        registry.register(Box::new(api_rejections_total.clone()))?;
        registry.register(Box::new(ledger_txs_committed_total.clone()))?;
        registry.register(Box::new(ledger_blocks_committed_total.clone()))?;
        registry.register(Box::new(ledger_height.clone()))?;
        Ok(Metrics {
            registry,
            api_requests_total,
            api_rejections_total,
            ledger_txs_committed_total,
            ledger_blocks_committed_total,
            ledger_height,
            p2p_node_dropped_total,
            p2p: std::sync::Arc::new(std::sync::OnceLock::new()),
        })
    }

    /// The registry, and the p2p layer's counters, in Prometheus text format.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        let mut out = encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default();
        if let Some(p2p) = self.p2p.get() {
            let mut seen = std::collections::BTreeSet::new();
            for s in p2p.stats().samples() {
                if seen.insert(s.name) {
                    let kind = if s.name.ends_with("_total") {
                        "counter"
                    } else {
                        "gauge"
                    };
                    out.push_str(&format!("# TYPE {} {kind}\n", s.name));
                }
                match s.label {
                    Some((k, v)) => {
                        out.push_str(&format!("{}{{{k}=\"{v}\"}} {}\n", s.name, s.value))
                    }
                    None => out.push_str(&format!("{} {}\n", s.name, s.value)),
                }
            }
        }
        out
    }
}
