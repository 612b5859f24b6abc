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
        })
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
