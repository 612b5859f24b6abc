//! The configuration of a `sphr-pte` run: a TOML file, flags, or both (flags win).
//!
//! Key names follow PTE's user input file where PTE has the notion (the PTE spelling is
//! accepted as an alias: `nProcPerOrg`, `nRequest`, `runDur`, `transMode`, `transType`,
//! `constantOpt.constFreq`, `burstOpt.burstFreq`, ...), so a PTE user can read a sphr-pte file.
//! Every section is optional, unknown keys are refused, and [`PteConfig::validate`] names the
//! key at fault.
//!
//! ```toml
//! network = "testnet/run/network"   # folder holding network.json and tls-ca.pem
//! proc_per_org = 1                  # PTE nProcPerOrg
//! n_request = 1000                  # PTE nRequest: txs per process
//! trans_mode = "constant"           # constant | burst | latency | mix | rate | inflight
//! [constant]
//! const_freq_ms = 2.0               # PTE constFreq
//! dev_freq_ms = 0.0                 # PTE devFreq
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Most processes per org.
pub const MAX_PROC_PER_ORG: u32 = 1024;
/// Most transactions outstanding per process.
pub const MAX_INFLIGHT: u32 = 65_536;
/// Largest value a `kv` put may carry (the contract's limit, `sphr_contracts::MAX_VALUE_LEN`).
pub const MAX_PAYLOAD_BYTES: u32 = sphr_contracts::MAX_VALUE_LEN as u32;
/// Longest event timeout (1 hour).
pub const MAX_EVENT_TIMEOUT_MS: u64 = 3_600_000;
/// Longest run (1 day).
pub const MAX_RUN_DUR_S: f64 = 86_400.0;
/// Most keys preloaded per process for a query run.
pub const MAX_PRELOAD: u32 = 100_000;

/// A configuration that cannot run, with the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        why: String,
    },
    /// The file is not valid TOML for this schema (the message names the key or line).
    #[error("{path}: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message.
        why: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{key}: {why}")]
    Invalid {
        /// The key, as written in the file (`constant.const_freq_ms`).
        key: String,
        /// What is wrong and what is allowed.
        why: String,
    },
}

impl ConfigError {
    fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            why: why.into(),
        }
    }

    /// The key at fault, for [`ConfigError::Invalid`].
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// How transactions are paced (PTE `transMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransMode {
    /// One tx every `constant.const_freq_ms` (± `dev_freq_ms`) per process, not waiting for
    /// commits (open loop, at most `max_inflight` outstanding).
    #[serde(alias = "Constant", alias = "CONSTANT")]
    Constant,
    /// Cycles through (`burst.burst_freq_ms[i]`, `burst.burst_dur_ms[i]`) phases: one tx every
    /// `burst_freq_ms[i]` for `burst_dur_ms[i]`, then the next phase (open loop).
    #[serde(alias = "Burst", alias = "BURST")]
    Burst,
    /// The next tx only after the previous one committed (closed loop, 1 outstanding).
    #[serde(alias = "Latency", alias = "LATENCY")]
    Latency,
    /// Each invoke, once committed, is followed by a query of the key it wrote; invokes
    /// every `mix.mix_freq_ms` (open loop).
    #[serde(alias = "Mix", alias = "MIX")]
    Mix,
    /// A fixed offered rate, `rate.tps`, across all processes (open loop).
    #[serde(alias = "Rate", alias = "RATE")]
    Rate,
    /// Closed loop keeping `inflight.n` txs outstanding per process.
    #[serde(alias = "Inflight", alias = "INFLIGHT")]
    Inflight,
}

impl TransMode {
    /// The name, upper case as PTE prints it.
    pub fn label(self) -> &'static str {
        match self {
            TransMode::Constant => "CONSTANT",
            TransMode::Burst => "BURST",
            TransMode::Latency => "LATENCY",
            TransMode::Mix => "MIX",
            TransMode::Rate => "RATE",
            TransMode::Inflight => "INFLIGHT",
        }
    }
}

/// What each transaction does (PTE `transType` / `invokeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransType {
    /// Submit for endorsement, ordering and commit.
    #[serde(alias = "Invoke", alias = "INVOKE", alias = "move", alias = "Move")]
    Invoke,
    /// Evaluate on one node's committed state (`POST /v1/query`), nothing ordered.
    #[serde(alias = "Query", alias = "QUERY")]
    Query,
}

impl TransType {
    /// Upper-case name.
    pub fn label(self) -> &'static str {
        match self {
            TransType::Invoke => "INVOKE",
            TransType::Query => "QUERY",
        }
    }
}

/// Who endorses and assembles the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// `POST /v1/transactions?wait=true` at the process's node, which endorses (fanning out to
    /// the orgs the policy names), orders and answers after the commit. Only the end-to-end
    /// (event) latency is measured.
    Gateway,
    /// The client endorses at one node of each org the policy names (`POST /v1/endorse`),
    /// assembles the transaction, broadcasts it (`POST /v1/broadcast?wait=false`) and waits
    /// for its commit event (`GET /v1/events`): peer, orderer and event latencies are measured.
    Client,
}

impl Flow {
    /// Lower-case name.
    pub fn label(self) -> &'static str {
        match self {
            Flow::Gateway => "gateway",
            Flow::Client => "client",
        }
    }
}

/// Fixed or random payload size (PTE `ccOpt.payLoadType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadType {
    /// Every value is `payload_min` bytes.
    #[serde(alias = "Fixed", alias = "FIXED")]
    Fixed,
    /// Each value is a uniformly random size in `[payload_min, payload_max]`.
    #[serde(alias = "Random", alias = "RANDOM")]
    Random,
}

/// Which workload builds the transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// `contract.invoke_function(invoke_args)` with placeholders filled per tx (default: `kv`
    /// put of a random key with a `payload_*`-sized value).
    Template,
    /// The healthcare appointment flow (seed 003): a patient's `requestAppointment`, then the
    /// doctor's `acceptAppointment` of it once it committed (`pte::workload::HealthcareWorkload`).
    /// Signed by a network.json user with role `patient` and one with role `doctor`; the
    /// contract is `healthcare` whatever `workload.contract` says.
    HealthcareAppointment,
}

/// `[constant]` (PTE `constantOpt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConstantOpt {
    /// Time between two sends of one process, ms (fractions allowed; 0 = as fast as lanes allow).
    #[serde(alias = "constFreq")]
    pub const_freq_ms: f64,
    /// Each interval is drawn uniformly from `[const_freq_ms - dev_freq_ms, const_freq_ms + dev_freq_ms]`
    /// (clamped at 0).
    #[serde(alias = "devFreq")]
    pub dev_freq_ms: f64,
}

impl Default for ConstantOpt {
    fn default() -> Self {
        ConstantOpt {
            const_freq_ms: 10.0,
            dev_freq_ms: 0.0,
        }
    }
}

/// `[burst]` (PTE `burstOpt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BurstOpt {
    /// Time between two sends in each phase, ms.
    #[serde(alias = "burstFreq")]
    pub burst_freq_ms: Vec<f64>,
    /// Length of each phase, ms.
    #[serde(alias = "burstDur")]
    pub burst_dur_ms: Vec<f64>,
}

impl Default for BurstOpt {
    fn default() -> Self {
        // Seed 003's values.
        BurstOpt {
            burst_freq_ms: vec![500.0, 200.0, 300.0, 100.0],
            burst_dur_ms: vec![3000.0, 2000.0, 3000.0, 1000.0],
        }
    }
}

/// `[mix]` (PTE `mixOpt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixOpt {
    /// Time between two invokes of one process, ms.
    #[serde(alias = "mixFreq")]
    pub mix_freq_ms: f64,
}

impl Default for MixOpt {
    fn default() -> Self {
        MixOpt { mix_freq_ms: 10.0 }
    }
}

/// `[rate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateOpt {
    /// Offered transactions per second, summed over all processes.
    pub tps: f64,
}

impl Default for RateOpt {
    fn default() -> Self {
        RateOpt { tps: 1000.0 }
    }
}

/// `[inflight]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InflightOpt {
    /// Transactions kept outstanding per process.
    pub n: u32,
}

impl Default for InflightOpt {
    fn default() -> Self {
        InflightOpt { n: 32 }
    }
}

/// `[workload]`: what the transactions call (PTE `ccOpt` and `invoke`).
///
/// Argument templates may hold placeholders, replaced per transaction: `{key}` (a random key,
/// or for queries one of the keys preloaded or just written), `{value}` (a payload of
/// `payload_*` bytes of random letters and digits), `{proc}` (process index), `{seq}` (the
/// process's tx counter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadOpt {
    /// `template` (default) or `healthcare-appointment`.
    pub kind: WorkloadKind,
    /// Contract name.
    pub contract: String,
    /// Function of invokes.
    pub invoke_function: String,
    /// Argument templates of invokes.
    pub invoke_args: Vec<String>,
    /// Function of queries (query runs and the query half of mix runs).
    pub query_function: String,
    /// Argument templates of queries.
    pub query_args: Vec<String>,
    /// Fixed or random payload size.
    #[serde(alias = "payLoadType")]
    pub payload_type: PayloadType,
    /// Smallest payload, bytes.
    #[serde(alias = "payLoadMin")]
    pub payload_min: u32,
    /// Largest payload, bytes (random payloads only).
    #[serde(alias = "payLoadMax")]
    pub payload_max: u32,
    /// Keys each process writes (with invokes, not measured) before a query run.
    pub preload: u32,
}

impl WorkloadOpt {
    /// The contract the calls go to: `healthcare` for the appointment flow, else `contract`.
    pub fn contract_name(&self) -> &str {
        match self.kind {
            WorkloadKind::Template => &self.contract,
            WorkloadKind::HealthcareAppointment => sphr_contracts::healthcare::NAME,
        }
    }
}

impl Default for WorkloadOpt {
    fn default() -> Self {
        WorkloadOpt {
            kind: WorkloadKind::Template,
            contract: "kv".into(),
            invoke_function: "put".into(),
            invoke_args: vec!["{key}".into(), "{value}".into()],
            query_function: "get".into(),
            query_args: vec!["{key}".into()],
            payload_type: PayloadType::Fixed,
            payload_min: 100,
            payload_max: 100,
            preload: 100,
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PteConfig {
    /// Folder made by `sphr-node genesis` (holds `network.json` and the TLS CA bundle).
    pub network: PathBuf,
    /// Orgs that run processes (default: every org with a node).
    pub orgs: Vec<String>,
    /// Nodes to use as gateways, `name@org` (default: every node of the chosen orgs; processes
    /// of an org take its nodes in turn).
    pub nodes: Vec<String>,
    /// Address overrides, `"name@org" = "https://host:port"` (default: `api_addr` from
    /// network.json).
    pub endpoints: BTreeMap<String, String>,
    /// The user of each org that signs (default `loadgen`, as in genesis/four-orgs.toml).
    pub user: String,
    /// Processes per org (PTE nProcPerOrg): tokio tasks, each with its org's user and node.
    #[serde(alias = "nProcPerOrg")]
    pub proc_per_org: u32,
    /// Transactions per process (PTE nRequest). Unset: 1000, or unlimited when `run_dur_s` is set.
    #[serde(alias = "nRequest")]
    pub n_request: Option<u64>,
    /// Run duration per process, s (PTE runDur). With `n_request` too, the first limit reached
    /// ends the process.
    #[serde(alias = "runDur")]
    pub run_dur_s: Option<f64>,
    /// Pacing.
    #[serde(alias = "transMode")]
    pub trans_mode: TransMode,
    /// Invoke or query.
    #[serde(alias = "transType")]
    pub trans_type: TransType,
    /// Gateway or client-assembled transactions.
    pub flow: Flow,
    /// Most txs outstanding per process in the open-loop modes (constant, burst, mix, rate);
    /// when all are taken the next send waits and is counted as late.
    pub max_inflight: u32,
    /// How long to wait for a commit (PTE eventOpt.timeout), ms.
    pub event_timeout_ms: u64,
    /// Open every connection and check the network id before the clock starts.
    pub warmup: bool,
    /// Seed of the random keys, payloads and jitter (default: from the clock).
    pub seed: Option<u64>,
    /// `constant` mode.
    #[serde(alias = "constantOpt")]
    pub constant: ConstantOpt,
    /// `burst` mode.
    #[serde(alias = "burstOpt")]
    pub burst: BurstOpt,
    /// `mix` mode.
    #[serde(alias = "mixOpt")]
    pub mix: MixOpt,
    /// `rate` mode.
    pub rate: RateOpt,
    /// `inflight` mode.
    pub inflight: InflightOpt,
    /// The transactions.
    pub workload: WorkloadOpt,
}

impl Default for PteConfig {
    fn default() -> Self {
        PteConfig {
            network: PathBuf::from("testnet/run/network"),
            orgs: Vec::new(),
            nodes: Vec::new(),
            endpoints: BTreeMap::new(),
            user: "loadgen".into(),
            proc_per_org: 1,
            n_request: None,
            run_dur_s: None,
            trans_mode: TransMode::Constant,
            trans_type: TransType::Invoke,
            flow: Flow::Gateway,
            max_inflight: 256,
            event_timeout_ms: 60_000,
            warmup: true,
            seed: None,
            constant: ConstantOpt::default(),
            burst: BurstOpt::default(),
            mix: MixOpt::default(),
            rate: RateOpt::default(),
            inflight: InflightOpt::default(),
            workload: WorkloadOpt::default(),
        }
    }
}

/// When a process stops sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Most txs per process (`None`: no count limit).
    pub n_request: Option<u64>,
    /// Longest send phase per process, s (`None`: no time limit).
    pub run_dur_s: Option<f64>,
}

fn finite_ms(key: &str, v: f64, min: f64) -> Result<(), ConfigError> {
    if !v.is_finite() || v < min {
        return Err(ConfigError::invalid(
            key,
            format!("must be a number >= {min} (got {v})"),
        ));
    }
    Ok(())
}

impl PteConfig {
    /// Reads and parses a TOML file (relative `network` resolved against the file's folder).
    /// Does not validate: flags may still change it.
    pub fn load(path: &Path) -> Result<PteConfig, ConfigError> {
        use std::io::Read;
        let read_err = |e: std::io::Error| ConfigError::Read {
            path: path.to_path_buf(),
            why: e.to_string(),
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                why: format!("over the {MAX_CONFIG_BYTES}-byte limit"),
            });
        }
        let mut cfg = PteConfig::parse(&text, path)?;
        if cfg.network.is_relative()
            && let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            cfg.network = dir.join(&cfg.network);
        }
        Ok(cfg)
    }

    /// Parses TOML text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<PteConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            why: e.to_string().trim_end().to_string(),
        })
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::invalid("(config)", e.to_string()))
    }

    /// The count and time limits after defaults: neither set means 1000 txs per process.
    pub fn limits(&self) -> Limits {
        match (self.n_request, self.run_dur_s) {
            (None, None) => Limits {
                n_request: Some(1000),
                run_dur_s: None,
            },
            (n, d) => Limits {
                n_request: n,
                run_dur_s: d,
            },
        }
    }

    /// Transactions outstanding per process at most, for the chosen mode.
    pub fn lanes_per_process(&self) -> u32 {
        match self.trans_mode {
            TransMode::Latency => 1,
            TransMode::Inflight => self.inflight.n,
            _ => self.max_inflight,
        }
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.network.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "network",
                "must name the folder holding network.json",
            ));
        }
        if self.user.is_empty() {
            return Err(ConfigError::invalid("user", "must not be empty"));
        }
        for (k, v) in &self.endpoints {
            if !k.contains('@') {
                return Err(ConfigError::invalid(
                    &format!("endpoints.{k}"),
                    "keys are node ids, name@org",
                ));
            }
            if !v.starts_with("https://") {
                return Err(ConfigError::invalid(
                    &format!("endpoints.{k}"),
                    format!("must be an https:// URL (got {v:?})"),
                ));
            }
        }
        for n in &self.nodes {
            if !n.contains('@') {
                return Err(ConfigError::invalid(
                    "nodes",
                    format!("{n:?}: write nodes as name@org"),
                ));
            }
        }
        if self.proc_per_org == 0 || self.proc_per_org > MAX_PROC_PER_ORG {
            return Err(ConfigError::invalid(
                "proc_per_org",
                format!(
                    "must be 1 to {MAX_PROC_PER_ORG} (got {})",
                    self.proc_per_org
                ),
            ));
        }
        if self.n_request == Some(0) {
            return Err(ConfigError::invalid(
                "n_request",
                "must be at least 1 (leave it unset and set run_dur_s for a timed run)",
            ));
        }
        if let Some(d) = self.run_dur_s
            && (!d.is_finite() || d <= 0.0 || d > MAX_RUN_DUR_S)
        {
            return Err(ConfigError::invalid(
                "run_dur_s",
                format!("must be > 0 and at most {MAX_RUN_DUR_S} s (got {d})"),
            ));
        }
        if self.max_inflight == 0 || self.max_inflight > MAX_INFLIGHT {
            return Err(ConfigError::invalid(
                "max_inflight",
                format!("must be 1 to {MAX_INFLIGHT} (got {})", self.max_inflight),
            ));
        }
        if self.event_timeout_ms == 0 || self.event_timeout_ms > MAX_EVENT_TIMEOUT_MS {
            return Err(ConfigError::invalid(
                "event_timeout_ms",
                format!(
                    "must be 1 to {MAX_EVENT_TIMEOUT_MS} (got {})",
                    self.event_timeout_ms
                ),
            ));
        }
        match self.trans_mode {
            TransMode::Constant => {
                finite_ms("constant.const_freq_ms", self.constant.const_freq_ms, 0.0)?;
                finite_ms("constant.dev_freq_ms", self.constant.dev_freq_ms, 0.0)?;
            }
            TransMode::Burst => {
                let b = &self.burst;
                if b.burst_freq_ms.is_empty() {
                    return Err(ConfigError::invalid(
                        "burst.burst_freq_ms",
                        "needs at least one phase",
                    ));
                }
                if b.burst_freq_ms.len() != b.burst_dur_ms.len() {
                    return Err(ConfigError::invalid(
                        "burst.burst_dur_ms",
                        format!(
                            "has {} entries but burst.burst_freq_ms has {}: one duration per frequency",
                            b.burst_dur_ms.len(),
                            b.burst_freq_ms.len()
                        ),
                    ));
                }
                for (i, f) in b.burst_freq_ms.iter().enumerate() {
                    if !f.is_finite() || *f <= 0.0 {
                        return Err(ConfigError::invalid(
                            &format!("burst.burst_freq_ms[{i}]"),
                            format!("must be > 0 ms (got {f})"),
                        ));
                    }
                }
                for (i, d) in b.burst_dur_ms.iter().enumerate() {
                    if !d.is_finite() || *d <= 0.0 {
                        return Err(ConfigError::invalid(
                            &format!("burst.burst_dur_ms[{i}]"),
                            format!("must be > 0 ms (got {d})"),
                        ));
                    }
                }
            }
            TransMode::Mix => {
                finite_ms("mix.mix_freq_ms", self.mix.mix_freq_ms, 0.0)?;
                if self.trans_type != TransType::Invoke {
                    return Err(ConfigError::invalid(
                        "trans_type",
                        "mix mode invokes and then queries: set trans_type = \"invoke\"",
                    ));
                }
            }
            TransMode::Rate => {
                if !self.rate.tps.is_finite() || self.rate.tps <= 0.0 || self.rate.tps > 1e7 {
                    return Err(ConfigError::invalid(
                        "rate.tps",
                        format!("must be > 0 and at most 1e7 (got {})", self.rate.tps),
                    ));
                }
            }
            TransMode::Inflight => {
                if self.inflight.n == 0 || self.inflight.n > MAX_INFLIGHT {
                    return Err(ConfigError::invalid(
                        "inflight.n",
                        format!("must be 1 to {MAX_INFLIGHT} (got {})", self.inflight.n),
                    ));
                }
            }
            TransMode::Latency => {}
        }
        let w = &self.workload;
        if w.contract.is_empty() {
            return Err(ConfigError::invalid(
                "workload.contract",
                "must not be empty",
            ));
        }
        if w.invoke_function.is_empty() {
            return Err(ConfigError::invalid(
                "workload.invoke_function",
                "must not be empty",
            ));
        }
        if w.query_function.is_empty() {
            return Err(ConfigError::invalid(
                "workload.query_function",
                "must not be empty",
            ));
        }
        if w.invoke_args.len() > sphr_types::MAX_ARGS {
            return Err(ConfigError::invalid(
                "workload.invoke_args",
                format!("at most {} arguments", sphr_types::MAX_ARGS),
            ));
        }
        if w.query_args.len() > sphr_types::MAX_ARGS {
            return Err(ConfigError::invalid(
                "workload.query_args",
                format!("at most {} arguments", sphr_types::MAX_ARGS),
            ));
        }
        if w.payload_min > MAX_PAYLOAD_BYTES {
            return Err(ConfigError::invalid(
                "workload.payload_min",
                format!("at most {MAX_PAYLOAD_BYTES} bytes (got {})", w.payload_min),
            ));
        }
        if w.payload_type == PayloadType::Random
            && (w.payload_max < w.payload_min || w.payload_max > MAX_PAYLOAD_BYTES)
        {
            return Err(ConfigError::invalid(
                "workload.payload_max",
                format!(
                    "must be from payload_min ({}) to {MAX_PAYLOAD_BYTES} (got {})",
                    w.payload_min, w.payload_max
                ),
            ));
        }
        if self.trans_type == TransType::Query && (w.preload == 0 || w.preload > MAX_PRELOAD) {
            return Err(ConfigError::invalid(
                "workload.preload",
                format!(
                    "a query run needs 1 to {MAX_PRELOAD} keys to read (got {})",
                    w.preload
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PteConfig, ConfigError> {
        PteConfig::parse(text, Path::new("t.toml"))
    }

    fn invalid_key(text: &str) -> String {
        let cfg = parse(text).unwrap();
        match cfg.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_mirror_the_seed() {
        let cfg = parse("").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg, PteConfig::default());
        assert_eq!(cfg.limits().n_request, Some(1000));
        assert_eq!(cfg.user, "loadgen");
        assert_eq!(cfg.burst.burst_freq_ms, vec![500.0, 200.0, 300.0, 100.0]);
    }

    #[test]
    fn pte_spellings_are_accepted() {
        let cfg = parse(
            r#"
            nProcPerOrg = 2
            nRequest = 10
            transMode = "Constant"
            transType = "Invoke"
            [constantOpt]
            constFreq = 2.5
            devFreq = 1
            [burstOpt]
            burstFreq = [5, 10]
            burstDur = [100, 200]
            [workload]
            payLoadType = "Random"
            payLoadMin = 10
            payLoadMax = 20
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.proc_per_org, 2);
        assert_eq!(cfg.n_request, Some(10));
        assert_eq!(cfg.constant.const_freq_ms, 2.5);
        assert_eq!(cfg.constant.dev_freq_ms, 1.0);
        assert_eq!(cfg.burst.burst_dur_ms, vec![100.0, 200.0]);
        assert_eq!(cfg.workload.payload_type, PayloadType::Random);
    }

    #[test]
    fn limits_follow_pte_rules() {
        let timed = parse("run_dur_s = 60").unwrap();
        assert_eq!(
            timed.limits(),
            Limits {
                n_request: None,
                run_dur_s: Some(60.0)
            }
        );
        let both = parse("run_dur_s = 60\nn_request = 5").unwrap();
        assert_eq!(both.limits().n_request, Some(5));
        assert_eq!(both.limits().run_dur_s, Some(60.0));
    }

    #[test]
    fn parse_errors_name_the_key() {
        let e = parse("proc_per_orgs = 1").unwrap_err().to_string();
        assert!(e.contains("proc_per_orgs"), "{e}");
        let e = parse("[constant]\nconst_freq = 1").unwrap_err().to_string();
        assert!(e.contains("const_freq"), "{e}");
        let e = parse("trans_mode = \"sometimes\"").unwrap_err().to_string();
        assert!(e.contains("sometimes") && e.contains("trans_mode"), "{e}");
        let e = parse("max_inflight = \"many\"").unwrap_err().to_string();
        assert!(e.contains("max_inflight"), "{e}");
        let e = parse("[workload]\nkind = \"other\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kind"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key() {
        assert_eq!(invalid_key("proc_per_org = 0"), "proc_per_org");
        assert_eq!(invalid_key("n_request = 0"), "n_request");
        assert_eq!(invalid_key("run_dur_s = -1"), "run_dur_s");
        assert_eq!(invalid_key("max_inflight = 0"), "max_inflight");
        assert_eq!(invalid_key("event_timeout_ms = 0"), "event_timeout_ms");
        assert_eq!(invalid_key("user = \"\""), "user");
        assert_eq!(
            invalid_key("[constant]\nconst_freq_ms = -1"),
            "constant.const_freq_ms"
        );
        assert_eq!(
            invalid_key("[constant]\ndev_freq_ms = nan"),
            "constant.dev_freq_ms"
        );
        assert_eq!(
            invalid_key(
                "trans_mode = \"burst\"\n[burst]\nburst_freq_ms = [1, 2]\nburst_dur_ms = [1]"
            ),
            "burst.burst_dur_ms"
        );
        assert_eq!(
            invalid_key(
                "trans_mode = \"burst\"\n[burst]\nburst_freq_ms = [1, 0]\nburst_dur_ms = [1, 1]"
            ),
            "burst.burst_freq_ms[1]"
        );
        assert_eq!(
            invalid_key("trans_mode = \"burst\"\n[burst]\nburst_freq_ms = []\nburst_dur_ms = []"),
            "burst.burst_freq_ms"
        );
        assert_eq!(
            invalid_key("trans_mode = \"rate\"\n[rate]\ntps = 0"),
            "rate.tps"
        );
        assert_eq!(
            invalid_key("trans_mode = \"inflight\"\n[inflight]\nn = 0"),
            "inflight.n"
        );
        assert_eq!(
            invalid_key("trans_mode = \"mix\"\ntrans_type = \"query\""),
            "trans_type"
        );
        assert_eq!(
            invalid_key("[workload]\npayload_type = \"random\"\npayload_min = 10\npayload_max = 5"),
            "workload.payload_max"
        );
        assert_eq!(
            invalid_key("[workload]\npayload_min = 999999999"),
            "workload.payload_min"
        );
        assert_eq!(
            invalid_key("trans_type = \"query\"\n[workload]\npreload = 0"),
            "workload.preload"
        );
        assert_eq!(
            invalid_key("[workload]\ncontract = \"\""),
            "workload.contract"
        );
        assert_eq!(invalid_key("nodes = [\"node0\"]"), "nodes");
        assert_eq!(
            invalid_key("[endpoints]\n\"node0@A\" = \"http://x\""),
            "endpoints.node0@A"
        );
        // Other modes' sections are not checked when unused.
        let cfg = parse("[rate]\ntps = 0").unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn healthcare_is_a_valid_kind_and_names_its_contract() {
        let cfg = parse("[workload]\nkind = \"healthcare-appointment\"").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.workload.contract_name(), "healthcare");
        assert_eq!(PteConfig::default().workload.contract_name(), "kv");
    }

    #[test]
    fn relative_network_is_resolved_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pte.toml");
        std::fs::write(&path, "network = \"net\"\n").unwrap();
        let cfg = PteConfig::load(&path).unwrap();
        assert_eq!(cfg.network, dir.path().join("net"));
        let missing = PteConfig::load(&dir.path().join("nope.toml")).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }));
    }

    #[test]
    fn round_trips_through_toml() {
        let mut cfg = PteConfig {
            n_request: Some(7),
            ..PteConfig::default()
        };
        cfg.endpoints
            .insert("node0@A".into(), "https://127.0.0.1:1".into());
        let text = cfg.to_toml().unwrap();
        assert_eq!(parse(&text).unwrap(), cfg);
    }
}
