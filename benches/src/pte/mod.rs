//! `sphr-pte`: a load generator in the manner of Hyperledger's Performance Traffic Engine (PTE),
//! which seed 003 used to benchmark its Fabric network (chapter 6: 4 orgs, 1 process per org,
//! 1000 txs each, constant mode; 172.90 TPS).
//!
//! ```text
//!  PteConfig (TOML or flags) ──> runner::run
//!     network.json: orgs, nodes, each org's `loadgen` identity, the contract's policy
//!     processes = orgs x proc_per_org (tokio tasks), each with its org's node as gateway
//!        │ schedule (constant / burst / rate / mix) or closed loop (latency / inflight)
//!        v
//!     gateway flow: POST /v1/transactions?wait=true ───────────────────────> event latency
//!     client flow:  POST /v1/endorse at each org ──> peer latency
//!                   POST /v1/broadcast?wait=false ──> orderer latency
//!                   commit event on GET /v1/events ──> event latency
//!        │
//!        v
//!  Report: a PTE line per process, the summary, or one JSON object (report.rs says exactly
//!  what each latency covers)
//! ```
//!
//! Modules: [`committed`] (`--committed-out`: every tx seen committed), [`config`] (the file and its checks), [`schedule`] (send times, pure),
//! [`workload`] (what each tx calls), [`events`] (the SSE commit stream), [`stats`]
//! (histograms and percentiles), [`timeline`] (the run per interval), [`report`] (text and JSON), [`runner`] (the run).

pub mod committed;
pub mod config;
pub mod events;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod stats;
pub mod timeline;
pub mod workload;

pub use committed::CommittedLog;
pub use config::PteConfig;
pub use report::Report;
pub use runner::{Phase, Progress, PteError, run, run_logged};
