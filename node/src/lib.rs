//! sphr-node: the node every organisation runs, and its command-line client.
//!
//! ```text
//!  client ──HTTPS (rustls, TLS 1.3)──> api ──> gateway ──> endorser (contracts, simulation)
//!                                               │
//!                                               └──tx──> orderer (block cutter, raft-rs)
//!                                                           │ committed entries
//!                                                           v
//!                                   committer (sphr-ledger: signatures, policy, MVCC, sled)
//!                                                           │ commit events
//!                                  api (tx status, SSE) <───┘
//! ```
//!
//! Modules, one per stage: [`config`], [`genesis`], [`identity`], [`tls`], [`endorser`],
//! [`gateway`], [`service`] (wires the stages and owns shutdown), [`api`], [`client`].
//! Operations: [`ops`] (the operations endpoint: metrics, health, version, log filter),
//! [`metrics`], [`health`], [`logging`], [`systemd`] (the sd_notify protocol).

pub mod api;
pub mod bundler;
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod endorser;
pub mod explorer;
pub mod fhir;
pub mod gateway;
pub mod genesis;
pub mod health;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod p2p;
pub mod service;
pub mod signed_request;
pub mod sync;
pub mod systemd;
pub mod tls;
pub mod vault;

/// Unix time in milliseconds from the system clock (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
