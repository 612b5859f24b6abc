//! The node's configuration file (`node.toml`).
//!
//! Every section has defaults (`#[serde(default)]`) and refuses unknown keys; [`NodeConfig::validate`]
//! names the bad key and says why. Secrets are never inlined: the file names the paths of the
//! identity and TLS key files. Relative paths are resolved against the config file's folder.
//! `configs/node.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a config file was refused. The message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is impossible.
    #[error("config key {key}: {why}")]
    Invalid { key: String, why: String },
}

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
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            genesis: PathBuf::from("genesis.block"),
            identity: PathBuf::from("identity.json"),
            data_dir: PathBuf::from("data"),
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pSection {
    /// Listen address (`host:port`). Default: this node's `p2p_addr` in genesis.
    pub listen: Option<String>,
    /// Message sizes, queues and timeouts.
    pub limits: sphr_p2p::P2pLimits,
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
    /// `[orderer]`
    pub orderer: OrdererSection,
    /// `[p2p]`
    pub p2p: P2pSection,
    /// `[log]`
    pub log: LogSection,
}

impl NodeConfig {
    /// Reads, parses, resolves relative paths against the file's folder, applies environment
    /// overrides (`SPHR_DATA_DIR`, `SPHR_API_LISTEN`, `SPHR_LOG`) and validates.
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

    /// Parses TOML text (`path` only names the file in errors).
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.node.genesis,
            &mut self.node.identity,
            &mut self.node.data_dir,
            &mut self.api.tls_cert,
            &mut self.api.tls_key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Environment overrides.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("SPHR_DATA_DIR") {
            self.node.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("SPHR_API_LISTEN") {
            self.api.listen = v;
        }
        if let Some(v) = get("SPHR_LOG") {
            self.log.filter = v;
        }
    }

    /// Checks every value, naming the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                why,
            })
        };
        self.api_listen()?;
        if self.api.max_body_bytes < 1024 || self.api.max_body_bytes > 64 * 1024 * 1024 {
            return bad("api.max_body_bytes", "must be 1024 to 67108864".into());
        }
        if self.api.commit_timeout_ms == 0 || self.api.commit_timeout_ms > 600_000 {
            return bad("api.commit_timeout_ms", "must be 1 to 600000".into());
        }
        if self.api.max_waiting == 0 || self.api.max_waiting > 1_000_000 {
            return bad("api.max_waiting", "must be 1 to 1000000".into());
        }
        if self.orderer.queue_capacity == 0 || self.orderer.queue_capacity > 1_000_000 {
            return bad("orderer.queue_capacity", "must be 1 to 1000000".into());
        }
        if let Some(l) = &self.p2p.listen
            && l.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        {
            return bad("p2p.listen", format!("{l:?} is not a host:port address"));
        }
        if let Err(e) = self.p2p.limits.validate() {
            return bad("p2p.limits", e.to_string());
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return bad(
                "log.format",
                format!("{:?}: must be \"human\" or \"json\"", self.log.format),
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_err() {
            return bad(
                "log.filter",
                format!("{:?} is not a valid tracing filter", self.log.filter),
            );
        }
        for (key, p) in [
            ("node.genesis", &self.node.genesis),
            ("node.identity", &self.node.identity),
            ("api.tls_cert", &self.api.tls_cert),
            ("api.tls_key", &self.api.tls_key),
        ] {
            if !p.is_file() {
                return bad(key, format!("{} is not a readable file", p.display()));
            }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_and_wrong_type_are_named() {
        let e = NodeConfig::parse("[api]\nlisten_addr = \"x\"\n", Path::new("n.toml")).unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let e = NodeConfig::parse("[api]\nmax_body_bytes = \"big\"\n", Path::new("n.toml"))
            .unwrap_err();
        assert!(e.to_string().contains("max_body_bytes"), "{e}");
    }

    #[test]
    fn impossible_values_are_named() {
        let mut c = NodeConfig::default();
        c.api.listen = "nowhere".into();
        assert!(c.validate().unwrap_err().to_string().contains("api.listen"));
        let mut c = NodeConfig::default();
        c.api.max_body_bytes = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("api.max_body_bytes")
        );
        let mut c = NodeConfig::default();
        c.log.format = "xml".into();
        assert!(c.validate().unwrap_err().to_string().contains("log.format"));
        let c = NodeConfig::default();
        // Files do not exist in the test's working directory.
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("node.genesis")
        );
    }

    #[test]
    fn env_overrides_and_paths() {
        let mut c = NodeConfig::default();
        c.resolve_paths(Path::new("/etc/sphr"));
        assert_eq!(c.node.data_dir, PathBuf::from("/etc/sphr/data"));
        c.apply_env(|k| (k == "SPHR_DATA_DIR").then(|| "/var/lib/sphr".to_string()));
        assert_eq!(c.node.data_dir, PathBuf::from("/var/lib/sphr"));
    }
}
