//! The node's configuration file (`node.toml`).
//!
//! ```text
//!  node.toml ──parse (serde_path_to_error: unknown key / wrong type named by its path)──┐
//!            ──resolve relative paths against the file's folder                         │
//!            ──environment overrides (SPHR_*, remembered to name them in errors)        │
//!            ──validate(): ranges, addresses, files exist ──> NodeConfig or ConfigError ┘
//! ```
//!
//! Every section has defaults (`#[serde(default)]`) and refuses unknown keys; every error
//! names the key at fault (`api.max_body_bytes`, `p2p.limits.inbound_queue`, ...) and says
//! why. Secrets are never inlined: the file names the paths of the identity and TLS key files.
//! `configs/node.toml` documents every key; a test checks that it lists every key with its
//! default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The environment variables that override keys, with the key each one sets.
pub const ENV_OVERRIDES: [(&str, &str); 6] = [
    ("SPHR_DATA_DIR", "node.data_dir"),
    ("SPHR_API_LISTEN", "api.listen"),
    ("SPHR_OPS_LISTEN", "ops.listen"),
    ("SPHR_P2P_LISTEN", "p2p.listen"),
    ("SPHR_LOG", "log.filter"),
    ("SPHR_LOG_FORMAT", "log.format"),
];

/// Why a config file was refused. The message names the key at fault.
///
/// What follows: the node does not start (`sphr-node run` exits non-zero) and
/// `sphr-node config check` prints the message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions).
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed (not a key/value problem: a syntax error).
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A key is unknown or its value has the wrong type.
    #[error("config {path}: key {key}: {message}{}", line_suffix(*line))]
    Key {
        path: PathBuf,
        key: String,
        message: String,
        line: Option<usize>,
    },
    /// A value is impossible.
    #[error("config key {key}: {why}")]
    Invalid { key: String, why: String },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

impl ConfigError {
    /// The key at fault, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Largest `node.worker_threads`.
pub const MAX_WORKER_THREADS: usize = 1024;

/// Largest `node.verified_signature_cache`: two generations of 32-byte digests, about 300 MB.
pub const MAX_VERIFIED_SIGNATURE_CACHE: usize = 4 * 1024 * 1024;

/// `[node]`: who this node is and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Path of the network's `genesis.block`.
    pub genesis: PathBuf,
    /// Path of this node's identity file (certificate and key, mode 0600).
    pub identity: PathBuf,
    /// Data directory (sled database).
    pub data_dir: PathBuf,
    /// On SIGTERM, how long the node waits for transactions already accepted to be ordered
    /// and committed and for requests in flight to finish (ms).
    pub shutdown_timeout_ms: u64,
    /// Warn this many days before a certificate (own, TLS, peers') expires.
    pub cert_warn_days: u32,
    /// Signatures verified at endorsement (or made by this node) remembered per generation,
    /// so that the committer does not verify them again; 0 turns the cache off.
    pub verified_signature_cache: usize,
    /// Threads of the async runtime (API, gateway, endorsement, p2p); 0 lets tokio choose:
    /// `TOKIO_WORKER_THREADS` if set, else one per CPU. Nodes sharing a machine do better with
    /// the CPUs divided between them (`testnet/up.sh` gives each `CPUs / nodes`, at least 1).
    pub worker_threads: usize,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            genesis: PathBuf::from("genesis.block"),
            identity: PathBuf::from("identity.json"),
            data_dir: PathBuf::from("data"),
            shutdown_timeout_ms: 20_000,
            cert_warn_days: 30,
            verified_signature_cache: sphr_crypto::sigcache::DEFAULT_CAPACITY,
            worker_threads: 0,
        }
    }
}

/// `[api]`: the client API over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Listen address.
    pub listen: String,
    /// PEM certificate chain for TLS.
    pub tls_cert: PathBuf,
    /// PEM private key for TLS (mode 0600).
    pub tls_key: PathBuf,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
    /// How long `wait=true` submissions wait for their commit (ms).
    pub commit_timeout_ms: u64,
    /// Most submissions waiting for their commit at once.
    pub max_waiting: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: "127.0.0.1:7443".into(),
            tls_cert: PathBuf::from("tls.crt"),
            tls_key: PathBuf::from("tls.key"),
            max_body_bytes: 1024 * 1024,
            commit_timeout_ms: 30_000,
            max_waiting: 50_000,
        }
    }
}

/// `[ops]`: the operations endpoint (`/metrics`, `/healthz`, `/version`, `/logspec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSection {
    /// Whether to serve the operations endpoint.
    pub enabled: bool,
    /// Listen address (`ip:port`). Plain HTTP unless `tls_cert` and `tls_key` are set.
    pub listen: String,
    /// PEM certificate chain, to serve HTTPS instead of HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert` (mode 0600).
    pub tls_key: Option<PathBuf>,
}

impl Default for OpsSection {
    fn default() -> Self {
        OpsSection {
            enabled: true,
            listen: "127.0.0.1:9443".into(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[orderer]`: local limits of the ordering service (cutting rules come from genesis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdererSection {
    /// Capacity of the queue of transactions waiting to be ordered.
    pub queue_capacity: usize,
}

impl Default for OrdererSection {
    fn default() -> Self {
        OrdererSection {
            queue_capacity: 20_000,
        }
    }
}

/// `[p2p]`: the peer-to-peer layer (libp2p over TCP, noise, yamux).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pSection {
    /// Listen address (`host:port`). Default: this node's `p2p_addr` in genesis.
    pub listen: Option<String>,
    /// Tests only: serve `PUT /faults/p2p` on the operations endpoint (loopback clients),
    /// which cuts this node off from its peers and heals it.
    pub fault_injection: bool,
    /// Least time between two endorse requests this node's gateway sends to one peer, in ms
    /// (0 to 1000; 0: no pacing). Under steady load requests leave on the ticks of one grid
    /// of this period for all peers; a request that would leave before the next tick waits
    /// and takes along the proposals that arrive meanwhile. Default 20.
    pub endorse_batch_interval_ms: u64,
    /// Most time between two endorse requests to one peer under steady load, in ms (0 to
    /// 1000): the interval grows from `endorse_batch_interval_ms` toward it while the peer
    /// answers slowly (16 round trips). At or below `endorse_batch_interval_ms` the interval
    /// is fixed. Default 20 (fixed).
    pub endorse_batch_interval_max_ms: u64,
    /// Message sizes, queues and timeouts.
    pub limits: sphr_p2p::P2pLimits,
}

impl Default for P2pSection {
    fn default() -> Self {
        P2pSection {
            listen: None,
            fault_injection: false,
            endorse_batch_interval_ms: crate::p2p::DEFAULT_ENDORSE_BATCH_INTERVAL.as_millis()
                as u64,
            endorse_batch_interval_max_ms: crate::p2p::DEFAULT_ENDORSE_BATCH_INTERVAL_MAX
                .as_millis() as u64,
            limits: sphr_p2p::P2pLimits::default(),
        }
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A tracing env-filter, e.g. `info,sphr::orderer=debug`. `RUST_LOG` overrides it.
    pub filter: String,
    /// `human` or `json`.
    pub format: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            filter: "info".into(),
            format: "human".into(),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// `[node]`
    pub node: NodeSection,
    /// `[api]`
    pub api: ApiSection,
    /// `[ops]`
    pub ops: OpsSection,
    /// `[orderer]`
    pub orderer: OrdererSection,
    /// `[p2p]`
    pub p2p: P2pSection,
    /// `[log]`
    pub log: LogSection,
    /// Keys set from the environment (key, variable), to name the variable in errors.
    #[serde(skip)]
    pub from_env: Vec<(&'static str, &'static str)>,
}

impl NodeConfig {
    /// Reads, parses, resolves relative paths against the file's folder, applies environment
    /// overrides ([`ENV_OVERRIDES`]) and validates.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.apply_env(|k| std::env::var(k).ok());
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text (`path` only names the file in errors). An unknown key or a value of
    /// the wrong type is reported with its full key path (`api.max_body_bytes`).
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().trim().replace('\n', " ");
            let line = inner
                .span()
                .map(|s| text.get(..s.start).unwrap_or("").matches('\n').count() + 1);
            // serde names an unknown field in the message; the path may stop at its table.
            let key = match unknown_field(&message) {
                Some(field) if at == "." || at.is_empty() => field.to_string(),
                Some(field) if at != field && !at.ends_with(&format!(".{field}")) => {
                    format!("{at}.{field}")
                }
                _ => at,
            };
            ConfigError::Key {
                path: path.to_path_buf(),
                key,
                message,
                line,
            }
        })
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let mut paths = vec![
            &mut self.node.genesis,
            &mut self.node.identity,
            &mut self.node.data_dir,
            &mut self.api.tls_cert,
            &mut self.api.tls_key,
        ];
        if let Some(p) = self.ops.tls_cert.as_mut() {
            paths.push(p);
        }
        if let Some(p) = self.ops.tls_key.as_mut() {
            paths.push(p);
        }
        for p in paths {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Environment overrides ([`ENV_OVERRIDES`]); each key set is remembered in `from_env`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        for (var, key) in ENV_OVERRIDES {
            let Some(v) = get(var) else { continue };
            match key {
                "node.data_dir" => self.node.data_dir = PathBuf::from(v),
                "api.listen" => self.api.listen = v,
                "ops.listen" => self.ops.listen = v,
                "p2p.listen" => self.p2p.listen = Some(v),
                "log.filter" => self.log.filter = v,
                "log.format" => self.log.format = v,
                _ => continue,
            }
            self.from_env.push((key, var));
        }
    }

    /// Checks every value, naming the bad key (and the environment variable that set it).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| {
            let why = match self.from_env.iter().find(|(k, _)| *k == key) {
                Some((_, var)) => format!("{why} (set by {var})"),
                None => why,
            };
            Err(ConfigError::Invalid {
                key: key.into(),
                why,
            })
        };
        if self.node.shutdown_timeout_ms < 1000 || self.node.shutdown_timeout_ms > 300_000 {
            return bad("node.shutdown_timeout_ms", "must be 1000 to 300000".into());
        }
        if self.node.cert_warn_days == 0 || self.node.cert_warn_days > 3650 {
            return bad("node.cert_warn_days", "must be 1 to 3650".into());
        }
        if self.node.verified_signature_cache > MAX_VERIFIED_SIGNATURE_CACHE {
            return bad(
                "node.verified_signature_cache",
                format!("must be 0 to {MAX_VERIFIED_SIGNATURE_CACHE}"),
            );
        }
        if self.node.worker_threads > MAX_WORKER_THREADS {
            return bad(
                "node.worker_threads",
                format!("must be 0 (one per CPU) to {MAX_WORKER_THREADS}"),
            );
        }
        let api = match self.api.listen.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                return bad(
                    "api.listen",
                    format!("{:?} is not an ip:port address", self.api.listen),
                );
            }
        };
        if self.api.max_body_bytes < 1024 || self.api.max_body_bytes > 64 * 1024 * 1024 {
            return bad("api.max_body_bytes", "must be 1024 to 67108864".into());
        }
        if self.api.commit_timeout_ms == 0 || self.api.commit_timeout_ms > 600_000 {
            return bad("api.commit_timeout_ms", "must be 1 to 600000".into());
        }
        if self.api.max_waiting == 0 || self.api.max_waiting > 1_000_000 {
            return bad("api.max_waiting", "must be 1 to 1000000".into());
        }
        if self.ops.enabled {
            let ops = match self.ops.listen.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    return bad(
                        "ops.listen",
                        format!("{:?} is not an ip:port address", self.ops.listen),
                    );
                }
            };
            if ops.port() != 0 && ops.port() == api.port() && ops.ip() == api.ip() {
                return bad(
                    "ops.listen",
                    format!("{ops} is also api.listen; give the operations endpoint its own port"),
                );
            }
            match (&self.ops.tls_cert, &self.ops.tls_key) {
                (Some(_), None) => {
                    return bad("ops.tls_key", "is needed when ops.tls_cert is set".into());
                }
                (None, Some(_)) => {
                    return bad("ops.tls_cert", "is needed when ops.tls_key is set".into());
                }
                _ => {}
            }
        }
        if self.orderer.queue_capacity == 0 || self.orderer.queue_capacity > 1_000_000 {
            return bad("orderer.queue_capacity", "must be 1 to 1000000".into());
        }
        for (key, ms) in [
            (
                "p2p.endorse_batch_interval_ms",
                self.p2p.endorse_batch_interval_ms,
            ),
            (
                "p2p.endorse_batch_interval_max_ms",
                self.p2p.endorse_batch_interval_max_ms,
            ),
        ] {
            if ms > 1000 {
                return bad(key, format!("must be 0 to 1000, not {ms}"));
            }
        }
        if let Some(l) = &self.p2p.listen
            && l.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        {
            return bad("p2p.listen", format!("{l:?} is not a host:port address"));
        }
        match self.p2p.limits.validate() {
            Ok(()) => {}
            Err(sphr_p2p::ConfigError::Limit { key, reason }) => {
                return bad(&format!("p2p.limits.{key}"), reason);
            }
            Err(e) => return bad("p2p.limits", e.to_string()),
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return bad(
                "log.format",
                format!("{:?}: must be \"human\" or \"json\"", self.log.format),
            );
        }
        if let Err(e) = crate::logging::parse_filter(&self.log.filter) {
            return bad("log.filter", e.to_string());
        }
        let mut files = vec![
            ("node.genesis", &self.node.genesis),
            ("node.identity", &self.node.identity),
            ("api.tls_cert", &self.api.tls_cert),
            ("api.tls_key", &self.api.tls_key),
        ];
        if self.ops.enabled {
            if let Some(p) = &self.ops.tls_cert {
                files.push(("ops.tls_cert", p));
            }
            if let Some(p) = &self.ops.tls_key {
                files.push(("ops.tls_key", p));
            }
        }
        for (key, p) in files {
            if !p.is_file() {
                return bad(key, format!("{} is not a readable file", p.display()));
            }
        }
        if self.node.data_dir.exists() && !self.node.data_dir.is_dir() {
            return bad(
                "node.data_dir",
                format!(
                    "{} exists and is not a directory",
                    self.node.data_dir.display()
                ),
            );
        }
        Ok(())
    }

    /// The API listen address.
    pub fn api_listen(&self) -> Result<SocketAddr, ConfigError> {
        self.api.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "api.listen".into(),
            why: format!("{:?} is not an ip:port address", self.api.listen),
        })
    }

    /// The operations listen address.
    pub fn ops_listen(&self) -> Result<SocketAddr, ConfigError> {
        self.ops.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "ops.listen".into(),
            why: format!("{:?} is not an ip:port address", self.ops.listen),
        })
    }
}

/// The field serde names in "unknown field `x`, expected ...".
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(text: &str) -> String {
        let e = NodeConfig::parse(text, Path::new("n.toml")).unwrap_err();
        e.key()
            .unwrap_or_else(|| panic!("no key in {e}"))
            .to_string()
    }

    #[test]
    fn unknown_key_and_wrong_type_are_named_by_path() {
        assert_eq!(key_of("[api]\nlisten_addr = \"x\"\n"), "api.listen_addr");
        assert_eq!(key_of("bogus = 1\n"), "bogus");
        assert_eq!(key_of("[p2p.limits]\nqueue = 1\n"), "p2p.limits.queue");
        assert_eq!(
            key_of("[api]\nmax_body_bytes = \"big\"\n"),
            "api.max_body_bytes"
        );
        assert_eq!(key_of("[ops]\nenabled = \"yes\"\n"), "ops.enabled");
        let e = NodeConfig::parse("\n[api]\nmax_body_bytes = \"big\"\n", Path::new("n.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("key api.max_body_bytes"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let e = NodeConfig::parse("[api\n", Path::new("n.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    }

    #[test]
    fn impossible_values_are_named() {
        let check = |f: &dyn Fn(&mut NodeConfig), key: &str| {
            let mut c = NodeConfig::default();
            f(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        };
        check(&|c| c.api.listen = "nowhere".into(), "api.listen");
        check(&|c| c.api.max_body_bytes = 0, "api.max_body_bytes");
        check(&|c| c.orderer.queue_capacity = 0, "orderer.queue_capacity");
        check(
            &|c| c.p2p.endorse_batch_interval_ms = 1001,
            "p2p.endorse_batch_interval_ms",
        );
        check(
            &|c| c.p2p.endorse_batch_interval_max_ms = 5000,
            "p2p.endorse_batch_interval_max_ms",
        );
        check(
            &|c| c.node.shutdown_timeout_ms = 0,
            "node.shutdown_timeout_ms",
        );
        check(&|c| c.log.format = "xml".into(), "log.format");
        check(&|c| c.node.cert_warn_days = 0, "node.cert_warn_days");
        check(&|c| c.node.cert_warn_days = 10_000, "node.cert_warn_days");
        check(
            &|c| c.node.verified_signature_cache = 1 << 30,
            "node.verified_signature_cache",
        );
        check(&|c| c.node.worker_threads = 1025, "node.worker_threads");
        check(&|c| c.log.filter = "info,x=loud".into(), "log.filter");
        check(&|c| c.ops.listen = "9443".into(), "ops.listen");
        check(&|c| c.ops.listen = "127.0.0.1:7443".into(), "ops.listen");
        check(&|c| c.ops.tls_cert = Some("ops.crt".into()), "ops.tls_key");
        check(
            &|c| c.p2p.limits.inbound_queue = 0,
            "p2p.limits.inbound_queue",
        );
        // Files do not exist in the test's working directory.
        check(&|_| {}, "node.genesis");
    }

    #[test]
    fn env_overrides_and_paths() {
        let mut c = NodeConfig::default();
        c.resolve_paths(Path::new("/etc/sphr"));
        assert_eq!(c.node.data_dir, PathBuf::from("/etc/sphr/data"));
        c.apply_env(|k| match k {
            "SPHR_DATA_DIR" => Some("/var/lib/sphr".to_string()),
            "SPHR_OPS_LISTEN" => Some("ops".to_string()),
            _ => None,
        });
        assert_eq!(c.node.data_dir, PathBuf::from("/var/lib/sphr"));
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("ops.listen") && e.contains("SPHR_OPS_LISTEN"),
            "{e}"
        );
    }

    /// configs/node.toml parses to the defaults, and names every key the node reads.
    #[test]
    fn shipped_node_toml_lists_every_key_with_its_default() {
        let text = include_str!("../../configs/node.toml");
        let parsed = NodeConfig::parse(text, Path::new("configs/node.toml")).unwrap();
        assert_eq!(parsed, NodeConfig::default());
        let defaults: toml::Table =
            toml::from_str(&toml::to_string(&NodeConfig::default()).unwrap()).unwrap();
        let mut keys = Vec::new();
        fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(t) => walk(&key, t, out),
                    _ => out.push(key),
                }
            }
        }
        walk("", &defaults, &mut keys);
        // Optional keys without a default are shown commented out.
        keys.extend(["p2p.listen", "ops.tls_cert", "ops.tls_key"].map(String::from));
        let mut section = String::new();
        let mut documented = Vec::new();
        for line in text.lines() {
            let l = line.trim_start_matches('#').trim();
            if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']'))
                && !s.contains(' ')
            {
                section = s.to_string();
            } else if let Some((k, _)) = l.split_once(" = ")
                && !k.contains(' ')
                && !section.is_empty()
            {
                documented.push(format!("{section}.{k}"));
            }
        }
        for k in &keys {
            assert!(
                documented.contains(k),
                "configs/node.toml does not show {k}"
            );
        }
        for (var, _) in ENV_OVERRIDES {
            assert!(
                text.contains(var),
                "configs/node.toml does not mention {var}"
            );
        }
    }
}
