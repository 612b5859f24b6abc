//! Network specifications and `sphr-node genesis`: keys, certificates, TLS files and block 0.
//!
//! ```text
//!  genesis/<net>.toml ──GenesisSpec::load──> GenesisSpec (defaults filled, every key checked)
//!        │ generate(spec, OUT, now_ms)
//!        │   per org:   CA key (ed25519) ─────────────┬─ X.509 TLS CA (self-signed, same key)
//!        │   per node:  key ── Certificate(role node) ┴─ X.509 server cert (same key, SANs)
//!        │   per user:  key ── Certificate(role from the spec)
//!        v
//!  GenesisConfig (validated) ──> block 0 ──> network id = hash of block 0
//!
//!  OUT/genesis.block                             CBOR of block 0
//!  OUT/network.json                              NetworkManifest: ids, addresses, file paths
//!  OUT/tls-ca.pem                                every org's TLS CA: what clients trust
//!  OUT/orgs/<Org>/ca.key                         org CA seed, hex (0600)
//!  OUT/orgs/<Org>/tls-ca.pem                     the org's X.509 CA certificate
//!  OUT/orgs/<Org>/nodes/<node>/identity.json     node identity (0600)
//!  OUT/orgs/<Org>/nodes/<node>/tls.crt, tls.key  X.509 server certificate, PKCS#8 key (0600)
//!  OUT/orgs/<Org>/users/<user>/identity.json     user identity (0600)
//! ```
//!
//! Nothing is written until the whole network has been built and its genesis configuration
//! validated; every file is created with `O_EXCL`, so an existing genesis is never overwritten,
//! and `genesis.block` is written last and read back before `generate` returns.
//!
//! Every user gets a proxy re-encryption key (AFGH, `sphr_crypto::pre`) in its certificate and
//! identity file; nodes get none.
//!
//! Certificates (sphr and X.509) start one hour before `now` to tolerate clock skew between
//! the machine that runs `genesis` and the nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{PrivatePkcs8KeyDer, ServerName};
use serde::{Deserialize, Serialize};
use sphr_crypto::cert::{CertError, Certificate, CertificateBody, Role};
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::{KeyError, SecretKey};
use sphr_crypto::pre::PreSecretKey;
use sphr_types::genesis::{GenesisError as ConfigError, MAX_GENESIS_BYTES};
use sphr_types::{
    Block, BlockCutting, ContractConfig, GenesisConfig, NodeConfig, OrgConfig, Policy, RaftTimings,
};
use zeroize::Zeroizing;

use crate::identity::{Identity, IdentityError, SECRET_FILE_MODE, write_new_file};

/// Largest spec file read.
pub const MAX_SPEC_BYTES: u64 = 1024 * 1024;
/// Largest `genesis.block` read: the configuration limit and room for the block header.
pub const MAX_GENESIS_BLOCK_BYTES: usize = MAX_GENESIS_BYTES + 4096;
/// Largest `network.json` read.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// Most orgs in a spec.
pub const MAX_ORGS: usize = 64;
/// Most nodes in a spec, all orgs together.
pub const MAX_NODES: usize = 256;
/// Most users in a spec, all orgs together.
pub const MAX_USERS: usize = 10_000;
/// Longest certificate validity accepted (about 100 years).
pub const MAX_CERT_VALIDITY_DAYS: u32 = 36_500;
/// How far before `now` certificates start, for clock skew between machines.
pub const CLOCK_SKEW_S: u64 = 3600;
/// The last second X.509 can express with a 4-digit year (9999-12-31T23:59:59Z).
const X509_MAX_UNIX_S: u64 = 253_402_300_799;

/// File name of block 0 in the output directory.
pub const GENESIS_BLOCK_FILE: &str = "genesis.block";
/// File name of the network manifest in the output directory.
pub const NETWORK_FILE: &str = "network.json";
/// File name of the bundle of every org's TLS CA in the output directory.
pub const TLS_CA_FILE: &str = "tls-ca.pem";
/// Directory of the orgs' files in the output directory.
pub const ORGS_DIR: &str = "orgs";

/// Why a spec was refused, or a network could not be generated or loaded.
///
/// What follows: `sphr-node genesis` (or the node start that loads block 0) stops and prints
/// the error, which names the file or the spec key at fault.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than it may be.
    #[error("{path} is over the {limit}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The spec is not valid TOML for a [`GenesisSpec`]; toml's message shows the key and line.
    #[error("genesis spec {path}: {message}")]
    SpecSyntax {
        /// The spec file.
        path: PathBuf,
        /// toml's message (line, column, the key and what was expected).
        message: String,
    },
    /// A spec value breaks a rule.
    #[error("genesis spec{}: `{key}`: {why}", in_file(.path.as_deref()))]
    InvalidSpec {
        /// The spec file, when the spec came from one.
        path: Option<PathBuf>,
        /// The key, as a path (`orgs.HospitalOrg.nodes.node0.api_port`).
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The output directory already holds a genesis (or part of one).
    #[error(
        "{path} exists already: refusing to overwrite a genesis; choose an empty --out directory"
    )]
    AlreadyExists {
        /// The existing file or directory.
        path: PathBuf,
    },
    /// The genesis configuration built from the spec, or read from a block, is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `genesis.block` could not be decoded or is not a valid block 0.
    #[error("genesis block {path}: {why}")]
    BadBlock {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `network.json` could not be decoded.
    #[error("network manifest {path}: {why}")]
    BadManifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A key could not be generated or parsed.
    #[error("{what}: {source}")]
    Key {
        /// Which key.
        what: String,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A certificate could not be issued.
    #[error("certificate of {name}: {source}")]
    Certificate {
        /// `subject@org`.
        name: String,
        /// Why.
        #[source]
        source: CertError,
    },
    /// An X.509 certificate could not be made.
    #[error("X.509 {what}: {source}")]
    X509 {
        /// Which certificate or key.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// An identity could not be written.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Something could not be encoded.
    #[error("encoding {what}: {why}")]
    Encoding {
        /// What.
        what: &'static str,
        /// Why.
        why: String,
    },
}

fn in_file(path: Option<&Path>) -> String {
    path.map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

fn invalid(key: impl Into<String>, why: impl Into<String>) -> GenesisError {
    GenesisError::InvalidSpec {
        path: None,
        key: key.into(),
        why: why.into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GenesisError + '_ {
    move |source| GenesisError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// The spec
// ---------------------------------------------------------------------------------------------

/// A network specification, as written in `genesis/<net>.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisSpec {
    /// A human name for the network (default `dev`).
    #[serde(default = "default_network")]
    pub network: String,
    /// How long certificates are valid, in days (default 365).
    #[serde(default = "default_validity_days")]
    pub cert_validity_days: u32,
    /// Block cutting.
    #[serde(default)]
    pub block: BlockSpec,
    /// Raft timings.
    #[serde(default)]
    pub raft: RaftSpec,
    /// The organisations, in order.
    pub orgs: Vec<OrgSpec>,
    /// The contracts and their endorsement policies.
    #[serde(default)]
    pub contracts: Vec<ContractSpec>,
}

fn default_network() -> String {
    "dev".into()
}

fn default_validity_days() -> u32 {
    365
}

/// `[block]`: how the Raft leader cuts blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockSpec {
    /// Most transactions per block (default 100).
    pub max_tx: u32,
    /// Most bytes of transactions per block (default 8 MiB).
    pub max_bytes: u64,
    /// Longest wait after a block's first transaction before cutting it, in ms (default 20).
    pub batch_timeout_ms: u64,
}

impl Default for BlockSpec {
    fn default() -> Self {
        let d = BlockCutting::default();
        BlockSpec {
            max_tx: d.max_tx,
            max_bytes: d.max_bytes,
            batch_timeout_ms: d.batch_timeout_ms,
        }
    }
}

/// `[raft]`: Raft timings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSpec {
    /// Tick interval, in ms (default 100).
    pub tick_ms: u64,
    /// Election timeout, in ticks (default 10).
    pub election_ticks: u32,
    /// Heartbeat interval, in ticks (default 2).
    pub heartbeat_ticks: u32,
    /// Snapshot and compact the Raft log every this many entries (default 500).
    pub snapshot_interval: u64,
}

impl Default for RaftSpec {
    fn default() -> Self {
        let d = RaftTimings::default();
        RaftSpec {
            tick_ms: d.tick_ms,
            election_ticks: d.election_ticks,
            heartbeat_ticks: d.heartbeat_ticks,
            snapshot_interval: d.snapshot_interval,
        }
    }
}

/// `[[orgs]]`: an organisation, its nodes and its users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    /// The org's name (A-Z a-z 0-9 - _ .).
    pub name: String,
    /// Its nodes.
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// Its users.
    #[serde(default)]
    pub users: Vec<UserSpec>,
}

/// `[[orgs.nodes]]`: a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's name within its org.
    pub name: String,
    /// The IP address or DNS name others reach it at (default 127.0.0.1).
    #[serde(default = "default_host")]
    pub host: String,
    /// Client API port (HTTPS).
    pub api_port: u16,
    /// Peer-to-peer port.
    pub p2p_port: u16,
    /// Operations port (metrics, health).
    pub ops_port: u16,
    /// Whether it takes part in Raft (default true).
    #[serde(default = "default_true")]
    pub consenter: bool,
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_true() -> bool {
    true
}

/// `[[orgs.users]]`: a person or application of an org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// The user's name within its org (the certificate's subject).
    pub name: String,
    /// The user's role (`admin`, `patient`, `doctor`, `nurse`, `lab`, `insurer`, `pharmacist`,
    /// `auditor`, `client`; `node` is for nodes).
    pub role: Role,
    /// Whether the user gets a proxy re-encryption key, in its certificate and identity file
    /// (default true). Data can be sealed only to a user that has one, and only such a user can
    /// delegate; an application that never receives sealed data (a load generator) does without
    /// one, and its transactions carry a certificate 672 bytes shorter.
    #[serde(default = "default_true")]
    pub pre_key: bool,
}

/// `[[contracts]]`: a contract and its endorsement policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractSpec {
    /// The contract's name.
    pub name: String,
    /// `ALL`, `MAJORITY`, `ANY`, `AND(OrgA, OrgB)` or `OUTOF(n, OrgA, ...)`.
    pub policy: Policy,
}

/// Names used as directory names and certificate subjects: 1 to 64 of A-Z a-z 0-9 - _ . and
/// not starting with a dot (no hidden files, no `.` or `..`).
fn check_name(key: &str, v: &str) -> Result<(), GenesisError> {
    let ok = !v.is_empty()
        && v.len() <= sphr_types::MAX_NAME_LEN
        && !v.starts_with('.')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        return Err(invalid(
            key,
            format!(
                "{v:?} must be 1 to {} characters of A-Z a-z 0-9 - _ . not starting with '.'",
                sphr_types::MAX_NAME_LEN
            ),
        ));
    }
    Ok(())
}

/// `host:port`, with brackets around an IPv6 address.
fn join_host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

impl GenesisSpec {
    /// Reads (at most [`MAX_SPEC_BYTES`]), parses and validates a spec file.
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        let mut text = String::new();
        file.take(MAX_SPEC_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io_err(path))?;
        if text.len() as u64 > MAX_SPEC_BYTES {
            return Err(GenesisError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_SPEC_BYTES,
            });
        }
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates a spec; `path` only names the source in errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, GenesisError> {
        let spec: GenesisSpec = toml::from_str(text).map_err(|e| GenesisError::SpecSyntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        spec.validate().map_err(|e| match e {
            GenesisError::InvalidSpec { key, why, .. } => GenesisError::InvalidSpec {
                path: Some(path.to_path_buf()),
                key,
                why,
            },
            other => other,
        })?;
        Ok(spec)
    }

    /// Checks the rules that do not need keys, naming the key at fault. The genesis
    /// configuration built by [`generate`] is validated again as a whole.
    pub fn validate(&self) -> Result<(), GenesisError> {
        check_name("network", &self.network)?;
        if self.cert_validity_days == 0 || self.cert_validity_days > MAX_CERT_VALIDITY_DAYS {
            return Err(invalid(
                "cert_validity_days",
                format!("must be 1 to {MAX_CERT_VALIDITY_DAYS}"),
            ));
        }
        self.to_block_cutting_and_raft()?;
        if self.orgs.is_empty() || self.orgs.len() > MAX_ORGS {
            return Err(invalid("orgs", format!("1 to {MAX_ORGS} orgs are needed")));
        }
        let mut org_names = BTreeSet::new();
        // (host, port) -> the key that uses it, so a clash names both keys.
        let mut ports: BTreeMap<(String, u16), String> = BTreeMap::new();
        let (mut nodes, mut users, mut consenters) = (0usize, 0usize, 0usize);
        for org in &self.orgs {
            check_name("orgs.name", &org.name)?;
            if !org_names.insert(org.name.as_str()) {
                return Err(invalid(
                    "orgs.name",
                    format!("{:?} appears twice", org.name),
                ));
            }
            let at = format!("orgs.{}", org.name);
            // Subjects are unique within an org, nodes and users together.
            let mut subjects = BTreeSet::new();
            for node in &org.nodes {
                check_name(&format!("{at}.nodes.name"), &node.name)?;
                let key = format!("{at}.nodes.{}", node.name);
                if !subjects.insert(node.name.as_str()) {
                    return Err(invalid(
                        format!("{at}.nodes.name"),
                        format!("{:?} is used twice in the org", node.name),
                    ));
                }
                if ServerName::try_from(node.host.as_str()).is_err() {
                    return Err(invalid(
                        format!("{key}.host"),
                        format!("{:?} is neither an IP address nor a DNS name", node.host),
                    ));
                }
                for (what, port) in [
                    ("api_port", node.api_port),
                    ("p2p_port", node.p2p_port),
                    ("ops_port", node.ops_port),
                ] {
                    let this = format!("{key}.{what}");
                    if port == 0 {
                        return Err(invalid(this, "must be 1 to 65535"));
                    }
                    if let Some(other) = ports.insert((node.host.clone(), port), this.clone()) {
                        return Err(invalid(
                            this,
                            format!("port {port} on {} is already {other}", node.host),
                        ));
                    }
                }
                nodes += 1;
                consenters += usize::from(node.consenter);
            }
            for user in &org.users {
                check_name(&format!("{at}.users.name"), &user.name)?;
                if !subjects.insert(user.name.as_str()) {
                    return Err(invalid(
                        format!("{at}.users.name"),
                        format!(
                            "{:?} is used twice in the org (nodes and users share names)",
                            user.name
                        ),
                    ));
                }
                if user.role == Role::Node {
                    return Err(invalid(
                        format!("{at}.users.{}.role", user.name),
                        "role \"node\" is for [[orgs.nodes]]",
                    ));
                }
                users += 1;
            }
        }
        if nodes > MAX_NODES {
            return Err(invalid("orgs.nodes", format!("at most {MAX_NODES} nodes")));
        }
        if users > MAX_USERS {
            return Err(invalid("orgs.users", format!("at most {MAX_USERS} users")));
        }
        if consenters == 0 {
            return Err(invalid(
                "orgs.nodes.consenter",
                "at least one node must be a consenter",
            ));
        }
        let org_list: Vec<String> = self.orgs.iter().map(|o| o.name.clone()).collect();
        let mut contracts = BTreeSet::new();
        for c in &self.contracts {
            check_name("contracts.name", &c.name)?;
            if !contracts.insert(c.name.as_str()) {
                return Err(invalid(
                    "contracts.name",
                    format!("{:?} appears twice", c.name),
                ));
            }
            c.policy
                .check_orgs(&org_list)
                .map_err(|e| invalid(format!("contracts.{}.policy", c.name), e.to_string()))?;
        }
        Ok(())
    }

    fn to_block_cutting_and_raft(&self) -> Result<(BlockCutting, RaftTimings), GenesisError> {
        let block = BlockCutting {
            max_tx: self.block.max_tx,
            max_bytes: self.block.max_bytes,
            batch_timeout_ms: self.block.batch_timeout_ms,
        };
        let raft = RaftTimings {
            tick_ms: self.raft.tick_ms,
            election_ticks: self.raft.election_ticks,
            heartbeat_ticks: self.raft.heartbeat_ticks,
            snapshot_interval: self.raft.snapshot_interval,
        };
        // The genesis rules for these sections name their keys (`block.max_tx`, ...): check
        // them now, with placeholder orgs and nodes, so a bad value is reported before any key
        // is made.
        let placeholder = SecretKey::from_bytes(&[1; 32]).public_key();
        let probe = GenesisConfig {
            network: "probe".into(),
            created_ms: 0,
            orgs: vec![OrgConfig {
                name: "probe".into(),
                ca_key: placeholder,
            }],
            nodes: vec![NodeConfig {
                name: "probe".into(),
                org: "probe".into(),
                public_key: placeholder,
                api_addr: String::new(),
                p2p_addr: String::new(),
                consenter: true,
                raft_id: 1,
            }],
            block: block.clone(),
            raft: raft.clone(),
            contracts: vec![],
        };
        match probe.validate() {
            Ok(()) => Ok((block, raft)),
            // The message starts with the key: "block.max_tx must be 1 to 10000".
            Err(ConfigError::Invalid(why)) => match why.split_once(' ') {
                Some((key, rest)) => Err(invalid(key, rest)),
                None => Err(invalid("block", why)),
            },
            Err(e) => Err(e.into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The manifest
// ---------------------------------------------------------------------------------------------

/// `network.json`: what scripts, the CLI and the load generator need to find and reach the
/// network. Paths are relative to the directory holding `network.json`, so the directory can be
/// moved or copied whole. Readers ignore fields they do not know, so fields can be added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkManifest {
    /// The network's human name.
    pub network: String,
    /// The network id: hash of block 0 (hex).
    pub network_id: String,
    /// When genesis was made (Unix ms).
    pub created_ms: u64,
    /// Block 0 (relative path).
    pub genesis_block: String,
    /// The bundle of every org's TLS CA (relative path).
    pub tls_ca: String,
    /// The orgs.
    pub orgs: Vec<ManifestOrg>,
    /// The nodes.
    pub nodes: Vec<ManifestNode>,
    /// The users.
    pub users: Vec<ManifestUser>,
    /// The contracts.
    pub contracts: Vec<ManifestContract>,
}

/// An org in `network.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOrg {
    /// Name.
    pub name: String,
    /// The org CA's ed25519 public key (hex).
    pub ca_key: String,
    /// The org's X.509 TLS CA certificate (relative path).
    pub tls_ca: String,
}

/// A node in `network.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestNode {
    /// Its org.
    pub org: String,
    /// Its name.
    pub name: String,
    /// Client API address (`host:port`, HTTPS).
    pub api_addr: String,
    /// Peer-to-peer address.
    pub p2p_addr: String,
    /// Operations address (metrics, health).
    pub ops_addr: String,
    /// Whether it takes part in Raft.
    pub consenter: bool,
    /// Its Raft id, for consenters.
    pub raft_id: Option<u64>,
    /// Its ed25519 public key (hex).
    pub public_key: String,
    /// Its identity file (relative path).
    pub identity: String,
    /// Its TLS certificate (relative path).
    pub tls_cert: String,
    /// Its TLS key (relative path).
    pub tls_key: String,
}

/// A user in `network.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestUser {
    /// Its org.
    pub org: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its identity file (relative path).
    pub identity: String,
}

/// A contract in `network.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestContract {
    /// Name.
    pub name: String,
    /// Endorsement policy, as written in genesis.
    pub policy: String,
}

impl NetworkManifest {
    /// Reads `network.json` (at most [`MAX_MANIFEST_BYTES`]).
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        let mut bytes = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(path))?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(GenesisError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_MANIFEST_BYTES,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| GenesisError::BadManifest {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    }

    /// The node `name` of `org`.
    pub fn node(&self, org: &str, name: &str) -> Option<&ManifestNode> {
        self.nodes.iter().find(|n| n.org == org && n.name == name)
    }

    /// The user `name` of `org`.
    pub fn user(&self, org: &str, name: &str) -> Option<&ManifestUser> {
        self.users.iter().find(|u| u.org == org && u.name == name)
    }
}

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

/// What [`generate`] made.
#[derive(Debug, Clone)]
pub struct GeneratedNetwork {
    /// The output directory.
    pub out: PathBuf,
    /// The network id: hash of block 0.
    pub network_id: Hash32,
    /// Block 0.
    pub block: Block,
    /// The genesis configuration in block 0.
    pub genesis: GenesisConfig,
    /// What was written to `network.json`.
    pub manifest: NetworkManifest,
}

/// One file to write: relative path, contents, mode.
struct OutFile {
    rel: PathBuf,
    data: Zeroizing<Vec<u8>>,
    mode: u32,
}

impl OutFile {
    fn public(rel: PathBuf, data: Vec<u8>) -> Self {
        OutFile {
            rel,
            data: Zeroizing::new(data),
            mode: 0o644,
        }
    }

    fn secret(rel: PathBuf, data: Zeroizing<Vec<u8>>) -> Self {
        OutFile {
            rel,
            data,
            mode: SECRET_FILE_MODE,
        }
    }
}

/// A relative path as the manifest writes it (always `/`).
fn rel_str(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The unencrypted PKCS#8 v1 (RFC 8410) DER of an ed25519 seed.
fn ed25519_pkcs8(key: &SecretKey) -> Zeroizing<Vec<u8>> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = Zeroizing::new(Vec::with_capacity(48));
    der.extend_from_slice(&PREFIX);
    der.extend_from_slice(key.to_bytes().as_ref());
    der
}

/// The same ed25519 key as an rcgen key pair, for signing X.509 certificates.
fn rcgen_key(key: &SecretKey, what: &str) -> Result<KeyPair, GenesisError> {
    let der = ed25519_pkcs8(key);
    KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der.as_slice()),
        &rcgen::PKCS_ED25519,
    )
    .map_err(|source| GenesisError::X509 {
        what: format!("key of {what}"),
        source,
    })
}

/// X.509 validity from Unix seconds.
fn x509_validity(params: &mut CertificateParams, not_before: u64, not_after: u64) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + std::time::Duration::from_secs(not_before);
    params.not_after = epoch + std::time::Duration::from_secs(not_after);
}

/// The org's X.509 CA: self-signed with the org CA key, may sign end-entity certificates only.
fn tls_ca_params(org: &str, not_before: u64, not_after: u64) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{org} TLS CA"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, org);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    x509_validity(&mut params, not_before, not_after);
    params
}

/// A node's X.509 server certificate parameters: SANs host, `localhost`, `127.0.0.1`.
fn tls_node_params(
    org: &str,
    node: &NodeSpec,
    not_before: u64,
    not_after: u64,
) -> Result<CertificateParams, GenesisError> {
    let mut sans: Vec<String> = Vec::new();
    for s in [node.host.as_str(), "localhost", "127.0.0.1"] {
        if !sans.iter().any(|x| x == s) {
            sans.push(s.to_string());
        }
    }
    let mut params = CertificateParams::new(sans).map_err(|source| GenesisError::X509 {
        what: format!("subject names of {}@{org}", node.name),
        source,
    })?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, node.name.as_str());
    params
        .distinguished_name
        .push(DnType::OrganizationName, org);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    x509_validity(&mut params, not_before, not_after);
    Ok(params)
}

fn new_key(what: &str) -> Result<SecretKey, GenesisError> {
    SecretKey::generate().map_err(|source| GenesisError::Key {
        what: format!("generating the key of {what}"),
        source,
    })
}

fn issue(ca: &SecretKey, body: CertificateBody) -> Result<(Certificate, String), GenesisError> {
    let name = format!("{}@{}", body.subject, body.org);
    let cert = Certificate::issue(ca, body).map_err(|source| GenesisError::Certificate {
        name: name.clone(),
        source,
    })?;
    Ok((cert, name))
}

/// Refuses an output directory that already holds any part of a genesis.
fn check_out_is_free(out: &Path) -> Result<(), GenesisError> {
    for name in [GENESIS_BLOCK_FILE, NETWORK_FILE, TLS_CA_FILE, ORGS_DIR] {
        let p = out.join(name);
        match std::fs::symlink_metadata(&p) {
            Ok(_) => return Err(GenesisError::AlreadyExists { path: p }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p)(e)),
        }
    }
    Ok(())
}

/// Makes every key, certificate and TLS file of `spec`, builds and validates the genesis
/// configuration and block 0, and writes them under `out` (created if absent). `now_ms` is the
/// genesis time and the start of the certificates' validity (less [`CLOCK_SKEW_S`]).
///
/// Refuses an `out` that already holds `genesis.block`, `network.json`, `tls-ca.pem` or
/// `orgs/`. Nothing is written unless the whole network was built and validated.
pub fn generate(
    spec: &GenesisSpec,
    out: &Path,
    now_ms: u64,
) -> Result<GeneratedNetwork, GenesisError> {
    spec.validate()?;
    let (block_cutting, raft) = spec.to_block_cutting_and_raft()?;
    check_out_is_free(out)?;

    let now_s = now_ms / 1000;
    let not_before = now_s.saturating_sub(CLOCK_SKEW_S);
    let not_after = u64::from(spec.cert_validity_days)
        .checked_mul(86_400)
        .and_then(|v| now_s.checked_add(v))
        .filter(|t| *t <= X509_MAX_UNIX_S)
        .ok_or_else(|| {
            invalid(
                "cert_validity_days",
                "certificates would end after 9999-12-31, which X.509 cannot express",
            )
        })?;

    let mut files: Vec<OutFile> = Vec::new();
    let mut orgs = Vec::new();
    let mut nodes = Vec::new();
    let mut m_orgs = Vec::new();
    let mut m_nodes = Vec::new();
    let mut m_users = Vec::new();
    let mut tls_bundle = String::new();
    let mut next_raft_id: u64 = 1;

    for org in &spec.orgs {
        let org_dir = Path::new(ORGS_DIR).join(&org.name);
        let ca = new_key(&format!("the CA of {}", org.name))?;
        orgs.push(OrgConfig {
            name: org.name.clone(),
            ca_key: ca.public_key(),
        });
        let mut ca_hex = Zeroizing::new(ca.to_hex().as_bytes().to_vec());
        ca_hex.push(b'\n');
        files.push(OutFile::secret(org_dir.join("ca.key"), ca_hex));

        let ca_params = tls_ca_params(&org.name, not_before, not_after);
        let ca_x509_key = rcgen_key(&ca, &format!("the CA of {}", org.name))?;
        let ca_cert = ca_params
            .self_signed(&ca_x509_key)
            .map_err(|source| GenesisError::X509 {
                what: format!("TLS CA of {}", org.name),
                source,
            })?;
        let ca_pem = ca_cert.pem();
        tls_bundle.push_str(&ca_pem);
        files.push(OutFile::public(
            org_dir.join("tls-ca.pem"),
            ca_pem.into_bytes(),
        ));
        let issuer = Issuer::new(ca_params, ca_x509_key);
        m_orgs.push(ManifestOrg {
            name: org.name.clone(),
            ca_key: ca.public_key().to_hex(),
            tls_ca: rel_str(&org_dir.join("tls-ca.pem")),
        });

        for node in &org.nodes {
            let key = new_key(&format!("node {}@{}", node.name, org.name))?;
            let (cert, name) = issue(
                &ca,
                CertificateBody {
                    subject: node.name.clone(),
                    org: org.name.clone(),
                    role: Role::Node,
                    public_key: key.public_key(),
                    pre_public_key: None,
                    not_before,
                    not_after,
                },
            )?;
            let raft_id = if node.consenter {
                let id = next_raft_id;
                next_raft_id += 1;
                id
            } else {
                0
            };
            let api_addr = join_host_port(&node.host, node.api_port);
            let p2p_addr = join_host_port(&node.host, node.p2p_port);
            nodes.push(NodeConfig {
                name: node.name.clone(),
                org: org.name.clone(),
                public_key: key.public_key(),
                api_addr: api_addr.clone(),
                p2p_addr: p2p_addr.clone(),
                consenter: node.consenter,
                raft_id,
            });

            let node_x509_key = rcgen_key(&key, &name)?;
            let tls_cert = tls_node_params(&org.name, node, not_before, not_after)?
                .signed_by(&node_x509_key, &issuer)
                .map_err(|source| GenesisError::X509 {
                    what: format!("TLS certificate of {name}"),
                    source,
                })?;
            let tls_key_pem = Zeroizing::new(node_x509_key.serialize_pem().into_bytes());
            drop(node_x509_key);

            let dir = org_dir.join("nodes").join(&node.name);
            let id = Identity::new(cert, key)?;
            files.push(OutFile::secret(dir.join("identity.json"), id.to_json()?));
            files.push(OutFile::public(
                dir.join("tls.crt"),
                tls_cert.pem().into_bytes(),
            ));
            files.push(OutFile::secret(dir.join("tls.key"), tls_key_pem));
            m_nodes.push(ManifestNode {
                org: org.name.clone(),
                name: node.name.clone(),
                api_addr,
                p2p_addr,
                ops_addr: join_host_port(&node.host, node.ops_port),
                consenter: node.consenter,
                raft_id: node.consenter.then_some(raft_id),
                public_key: id.public_key().to_hex(),
                identity: rel_str(&dir.join("identity.json")),
                tls_cert: rel_str(&dir.join("tls.crt")),
                tls_key: rel_str(&dir.join("tls.key")),
            });
        }

        for user in &org.users {
            let key = new_key(&format!("user {}@{}", user.name, org.name))?;
            // A user gets a proxy re-encryption key unless its spec says `pre_key = false`:
            // sealed fields and bundle keys are sealed to it, and patients delegate with it.
            let pre = if user.pre_key {
                Some(
                    PreSecretKey::generate().map_err(|e| GenesisError::InvalidSpec {
                        path: None,
                        key: format!("orgs.{}.users.{}", org.name, user.name),
                        why: format!("cannot generate a proxy re-encryption key: {e}"),
                    })?,
                )
            } else {
                None
            };
            let (cert, _) = issue(
                &ca,
                CertificateBody {
                    subject: user.name.clone(),
                    org: org.name.clone(),
                    role: user.role,
                    public_key: key.public_key(),
                    pre_public_key: pre.as_ref().map(|p| p.public_key().to_bytes().to_vec()),
                    not_before,
                    not_after,
                },
            )?;
            let id = Identity::new(cert, key)?;
            let id = match pre {
                Some(pre) => id.with_pre(pre)?,
                None => id,
            };
            let path = org_dir.join("users").join(&user.name).join("identity.json");
            files.push(OutFile::secret(path.clone(), id.to_json()?));
            m_users.push(ManifestUser {
                org: org.name.clone(),
                name: user.name.clone(),
                role: user.role,
                identity: rel_str(&path),
            });
        }
    }

    let genesis = GenesisConfig {
        network: spec.network.clone(),
        created_ms: now_ms,
        orgs,
        nodes,
        block: block_cutting,
        raft,
        contracts: spec
            .contracts
            .iter()
            .map(|c| ContractConfig {
                name: c.name.clone(),
                policy: c.policy.clone(),
            })
            .collect(),
    };
    genesis.validate()?;
    let block = genesis.to_block()?;
    let block_bytes = sphr_types::encode(&block).map_err(|e| GenesisError::Encoding {
        what: "genesis block",
        why: e.to_string(),
    })?;
    if block_bytes.len() > MAX_GENESIS_BLOCK_BYTES {
        return Err(invalid(
            "orgs",
            format!(
                "the genesis block would be {} bytes, over the {MAX_GENESIS_BLOCK_BYTES}-byte limit",
                block_bytes.len()
            ),
        ));
    }
    let network_id = block.hash();

    let manifest = NetworkManifest {
        network: spec.network.clone(),
        network_id: network_id.to_hex(),
        created_ms: now_ms,
        genesis_block: GENESIS_BLOCK_FILE.into(),
        tls_ca: TLS_CA_FILE.into(),
        orgs: m_orgs,
        nodes: m_nodes,
        users: m_users,
        contracts: spec
            .contracts
            .iter()
            .map(|c| ManifestContract {
                name: c.name.clone(),
                policy: c.policy.to_string(),
            })
            .collect(),
    };
    let mut manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| GenesisError::Encoding {
            what: "network manifest",
            why: e.to_string(),
        })?;
    manifest_json.push(b'\n');
    files.push(OutFile::public(
        PathBuf::from(TLS_CA_FILE),
        tls_bundle.into_bytes(),
    ));
    files.push(OutFile::public(PathBuf::from(NETWORK_FILE), manifest_json));
    // Last: a directory with genesis.block in it holds a complete genesis.
    files.push(OutFile::public(
        PathBuf::from(GENESIS_BLOCK_FILE),
        block_bytes,
    ));

    std::fs::create_dir_all(out).map_err(io_err(out))?;
    for f in &files {
        let path = out.join(&f.rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        write_new_file(&path, &f.data, f.mode).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                GenesisError::AlreadyExists { path: path.clone() }
            } else {
                GenesisError::Io {
                    path: path.clone(),
                    source,
                }
            }
        })?;
    }

    // Read block 0 back: what the nodes will load is what was built.
    let (back, back_genesis) = load_genesis_block(&out.join(GENESIS_BLOCK_FILE))?;
    if back.hash() != network_id || back_genesis != genesis {
        return Err(GenesisError::BadBlock {
            path: out.join(GENESIS_BLOCK_FILE),
            why: "the block read back differs from the block written".into(),
        });
    }
    tracing::info!(
        target: "sphr::genesis",
        network = %genesis.network,
        network_id = %network_id,
        orgs = genesis.orgs.len(),
        nodes = genesis.nodes.len(),
        users = manifest.users.len(),
        out = %out.display(),
        "genesis written",
    );
    Ok(GeneratedNetwork {
        out: out.to_path_buf(),
        network_id,
        block,
        genesis,
        manifest,
    })
}

/// Reads `genesis.block` (at most [`MAX_GENESIS_BLOCK_BYTES`]) and returns block 0 with its
/// validated genesis configuration. The network id is `block.hash()`.
pub fn load_genesis_block(path: &Path) -> Result<(Block, GenesisConfig), GenesisError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_GENESIS_BLOCK_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    let bad = |why: String| GenesisError::BadBlock {
        path: path.to_path_buf(),
        why,
    };
    let block: Block =
        sphr_types::decode(&bytes, MAX_GENESIS_BLOCK_BYTES).map_err(|e| bad(e.to_string()))?;
    let genesis = GenesisConfig::from_block(&block).map_err(|e| bad(e.to_string()))?;
    Ok((block, genesis))
}

/// What [`renew_node`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewedNode {
    /// `name@org`.
    pub node: String,
    /// The identity file rewritten (new certificate, same key).
    pub identity: PathBuf,
    /// The TLS certificate rewritten (same key).
    pub tls_cert: PathBuf,
    /// Start of the new validity (Unix seconds).
    pub not_before: u64,
    /// End of the new validity (Unix seconds).
    pub not_after: u64,
}

/// Renews the certificates of node `name@org` of the network in `network_dir`: a new node
/// certificate (same subject, org, role and key: genesis pins the key, as the node's libp2p
/// identity and Raft member) and a new X.509 TLS certificate for the same key, both signed by
/// the org CA (`ca_key`: the org's `ca.key`), valid from `now` (less [`CLOCK_SKEW_S`]) for
/// `days` days. Each file is replaced atomically (written beside it with its mode, 0600 for
/// the identity, then renamed over it); the running node takes them on SIGHUP.
///
/// The org's TLS CA certificate (`orgs/<Org>/tls-ca.pem`) is not re-issued: the new TLS
/// certificate names the same issuer and is signed by the same key, and rustls clients check
/// a trust anchor's key and name, not its dates.
pub fn renew_node(
    network_dir: &Path,
    node: &str,
    ca_key: &SecretKey,
    days: u32,
    now_ms: u64,
) -> Result<RenewedNode, GenesisError> {
    if days == 0 || days > MAX_CERT_VALIDITY_DAYS {
        return Err(invalid(
            "days",
            format!("must be 1 to {MAX_CERT_VALIDITY_DAYS}"),
        ));
    }
    let manifest = NetworkManifest::load(&network_dir.join(NETWORK_FILE))?;
    let (name, org) = node
        .split_once('@')
        .ok_or_else(|| invalid("node", format!("{node:?} is not name@org")))?;
    let m = manifest
        .node(org, name)
        .ok_or_else(|| invalid("node", format!("{node} is not a node of this network")))?;
    let ca_hex = manifest
        .orgs
        .iter()
        .find(|o| o.name == org)
        .map(|o| o.ca_key.clone())
        .unwrap_or_default();
    if ca_key.public_key().to_hex() != ca_hex {
        return Err(invalid(
            "ca_key",
            format!("this key is not the CA key of {org} in network.json"),
        ));
    }
    let id_path = network_dir.join(&m.identity);
    let tls_path = network_dir.join(&m.tls_cert);
    let old = Identity::load(&id_path)?;
    if old.public_key().to_hex() != m.public_key {
        return Err(invalid(
            "node",
            format!(
                "{} holds a key that is not {node}'s key in network.json",
                id_path.display()
            ),
        ));
    }
    let now_s = now_ms / 1000;
    let not_before = now_s.saturating_sub(CLOCK_SKEW_S);
    let not_after = u64::from(days)
        .checked_mul(86_400)
        .and_then(|v| now_s.checked_add(v))
        .filter(|t| *t <= X509_MAX_UNIX_S)
        .ok_or_else(|| invalid("days", "the certificate would end after 9999-12-31"))?;
    let mut body = old.cert.body.clone();
    body.not_before = not_before;
    body.not_after = not_after;
    let (cert, _) = issue(ca_key, body)?;
    let id = Identity::new(cert, old.key.clone())?;

    // TLS: same SANs as genesis made (the host of the API address, localhost, 127.0.0.1).
    let host = m
        .api_addr
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or("127.0.0.1")
        .to_string();
    let spec = NodeSpec {
        name: name.to_string(),
        host,
        api_port: 1,
        p2p_port: 1,
        ops_port: 1,
        consenter: m.consenter,
    };
    let ca_x509_key = rcgen_key(ca_key, &format!("the CA of {org}"))?;
    let issuer = Issuer::new(tls_ca_params(org, not_before, not_after), ca_x509_key);
    let node_x509_key = rcgen_key(&old.key, node)?;
    let tls_cert = tls_node_params(org, &spec, not_before, not_after)?
        .signed_by(&node_x509_key, &issuer)
        .map_err(|source| GenesisError::X509 {
            what: format!("TLS certificate of {node}"),
            source,
        })?;

    replace_file(&id_path, &id.to_json()?, SECRET_FILE_MODE)?;
    replace_file(&tls_path, tls_cert.pem().as_bytes(), 0o644)?;
    tracing::info!(target: "sphr::genesis", %node, not_after, "node certificates renewed");
    Ok(RenewedNode {
        node: node.to_string(),
        identity: id_path,
        tls_cert: tls_path,
        not_before,
        not_after,
    })
}

/// Writes `data` to `<path>.new` (mode `mode`, exclusive) and renames it over `path`.
fn replace_file(path: &Path, data: &[u8], mode: u32) -> Result<(), GenesisError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp)(e)),
    }
    write_new_file(&tmp, data, mode).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Reads an org CA key file (`orgs/<Org>/ca.key`: the seed in hex), for enrolling identities
/// after genesis.
pub fn load_ca_key(path: &Path) -> Result<SecretKey, GenesisError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut text = Zeroizing::new(String::new());
    file.take(1024)
        .read_to_string(&mut text)
        .map_err(io_err(path))?;
    SecretKey::from_hex(text.trim()).map_err(|source| GenesisError::Key {
        what: format!("CA key file {}", path.display()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use std::os::unix::fs::PermissionsExt;

    fn shipped(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../genesis")
            .join(name)
    }

    fn parse(text: &str) -> Result<GenesisSpec, GenesisError> {
        GenesisSpec::from_toml_str(text, Path::new("spec.toml"))
    }

    const MINIMAL: &str = r#"
        [[orgs]]
        name = "A"
        [[orgs.nodes]]
        name = "n0"
        api_port = 1
        p2p_port = 2
        ops_port = 3
    "#;

    #[test]
    fn defaults_are_filled() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.network, "dev");
        assert_eq!(s.cert_validity_days, 365);
        assert_eq!(s.block.max_tx, 100);
        assert_eq!(s.block, BlockSpec::default());
        assert_eq!(s.raft, RaftSpec::default());
        assert_eq!(s.orgs[0].nodes[0].host, "127.0.0.1");
        assert!(s.orgs[0].nodes[0].consenter);
        assert!(s.contracts.is_empty());
    }

    fn err_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn spec_errors_name_the_key() {
        let cases: Vec<(String, &str)> = vec![
            (
                MINIMAL.replace("[[orgs]]", "netwrk = \"x\"\n[[orgs]]"),
                "netwrk",
            ),
            (format!("{MINIMAL}\n[block]\nmax_txs = 5\n"), "max_txs"),
            (format!("{MINIMAL}\n[block]\nmax_tx = 0\n"), "block.max_tx"),
            (
                format!("{MINIMAL}\n[raft]\nheartbeat_ticks = 20\n"),
                "raft.election_ticks",
            ),
            (
                MINIMAL.replace("api_port = 1", "api_port = \"x\""),
                "api_port",
            ),
            (
                MINIMAL.replace("api_port = 1", "api_port = 70000"),
                "api_port",
            ),
            (MINIMAL.replace("api_port = 1\n", ""), "api_port"),
            (
                MINIMAL.replace("api_port = 1", "api_port = 0"),
                "orgs.A.nodes.n0.api_port",
            ),
            (
                MINIMAL.replace("ops_port = 3", "ops_port = 2"),
                "orgs.A.nodes.n0.ops_port",
            ),
            (
                MINIMAL.replace("ops_port = 3", "ops_port = 3\nconsenter = false"),
                "consenter",
            ),
            (
                MINIMAL.replace("name = \"n0\"", "name = \"n0\"\nhost = \"bad host\""),
                "orgs.A.nodes.n0.host",
            ),
            (
                MINIMAL.replace("name = \"A\"", "name = \"..\""),
                "orgs.name",
            ),
            (
                format!("{MINIMAL}\n[[orgs.users]]\nname = \"u\"\nrole = \"wizard\"\n"),
                "wizard",
            ),
            (
                format!("{MINIMAL}\n[[orgs.users]]\nname = \"u\"\nrole = \"node\"\n"),
                "orgs.A.users.u.role",
            ),
            (
                format!("{MINIMAL}\n[[orgs.users]]\nname = \"n0\"\nrole = \"doctor\"\n"),
                "orgs.A.users.name",
            ),
            (
                format!(
                    "{MINIMAL}\n[[orgs.users]]\nname = \"u\"\nrole = \"patient\"\npre = true\n"
                ),
                "pre",
            ),
            (
                format!("{MINIMAL}\n[[contracts]]\nname = \"kv\"\npolicy = \"AND(A, Z)\"\n"),
                "contracts.kv.policy",
            ),
            (
                format!("{MINIMAL}\n[[contracts]]\nname = \"kv\"\npolicy = \"SOME\"\n"),
                "policy",
            ),
            (
                format!("cert_validity_days = 0\n{MINIMAL}"),
                "cert_validity_days",
            ),
            ("network = \"x\"\n".to_string(), "orgs"),
        ];
        for (text, key) in cases {
            let e = err_of(&text);
            assert!(e.contains(key), "error for {key:?} does not name it: {e}");
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Everything a generated network must satisfy, for any spec.
    fn check_generated(spec: &GenesisSpec, net: &GeneratedNetwork) {
        let out = &net.out;
        let now_s = net.genesis.created_ms / 1000;
        let (block, genesis) = load_genesis_block(&out.join(GENESIS_BLOCK_FILE)).unwrap();
        assert_eq!(block, net.block);
        assert_eq!(genesis, net.genesis);
        assert_eq!(block.hash(), net.network_id);
        let manifest = NetworkManifest::load(&out.join(NETWORK_FILE)).unwrap();
        assert_eq!(manifest, net.manifest);
        assert_eq!(manifest.network_id, net.network_id.to_hex());
        assert_eq!(mode(&out.join(GENESIS_BLOCK_FILE)), 0o644);
        assert_eq!(mode(&out.join(TLS_CA_FILE)), 0o644);

        let bundle = std::fs::read_to_string(out.join(TLS_CA_FILE)).unwrap();
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), spec.orgs.len());
        let mut raft_ids = Vec::new();
        for org in &spec.orgs {
            let dir = out.join(ORGS_DIR).join(&org.name);
            let ca_key = genesis.org(&org.name).unwrap().ca_key;
            assert_eq!(mode(&dir.join("ca.key")), 0o600);
            assert_eq!(
                load_ca_key(&dir.join("ca.key")).unwrap().public_key(),
                ca_key
            );
            let org_ca = std::fs::read_to_string(dir.join("tls-ca.pem")).unwrap();
            assert!(bundle.contains(&org_ca));
            for node in &org.nodes {
                let nd = dir.join("nodes").join(&node.name);
                for (f, m) in [
                    ("identity.json", 0o600),
                    ("tls.key", 0o600),
                    ("tls.crt", 0o644),
                ] {
                    assert_eq!(mode(&nd.join(f)), m, "{}", nd.join(f).display());
                }
                let id = Identity::load(&nd.join("identity.json")).unwrap();
                id.cert.verify(&ca_key, now_s).unwrap();
                id.check_in_network(&genesis, now_s).unwrap();
                assert_eq!(id.cert.body.role, Role::Node);
                let cfg = genesis.node(&org.name, &node.name).unwrap();
                assert_eq!(cfg.public_key, id.public_key());
                assert_eq!(cfg.consenter, node.consenter);
                assert_eq!(cfg.api_addr, join_host_port(&node.host, node.api_port));
                if node.consenter {
                    raft_ids.push(cfg.raft_id);
                }
                // The TLS key is the node key; the TLS certificate holds its public key.
                let key_pem = std::fs::read(nd.join("tls.key")).unwrap();
                let der = PrivatePkcs8KeyDer::from_pem_slice(&key_pem).unwrap();
                assert_eq!(&der.secret_pkcs8_der()[16..], id.key.to_bytes().as_slice());
                let cert = crate::tls::load_certs(&nd.join("tls.crt")).unwrap();
                assert!(
                    cert[0]
                        .windows(32)
                        .any(|w| w == id.public_key().0.as_slice())
                );
                let m = manifest.node(&org.name, &node.name).unwrap();
                assert_eq!(out.join(&m.identity), nd.join("identity.json"));
                assert_eq!(m.raft_id, node.consenter.then_some(cfg.raft_id));
            }
            for user in &org.users {
                let p = dir.join("users").join(&user.name).join("identity.json");
                assert_eq!(mode(&p), 0o600);
                let id = Identity::load(&p).unwrap();
                id.cert.verify(&ca_key, now_s).unwrap();
                assert_eq!(id.cert.body.role, user.role);
                assert!(id.cert.body.pre_public_key.is_some() == id.pre.is_some());
                assert_eq!(id.pre.is_some(), user.pre_key, "{}", user.name);
                let m = manifest.user(&org.name, &user.name).unwrap();
                assert_eq!(out.join(&m.identity), p);
                // Signed by its own org's CA, not another's.
                for other in &genesis.orgs {
                    if other.name != org.name {
                        assert!(id.cert.verify(&other.ca_key, now_s).is_err());
                    }
                }
            }
        }
        assert_eq!(raft_ids, (1..=raft_ids.len() as u64).collect::<Vec<_>>());
    }

    async fn check_tls(net: &GeneratedNetwork) {
        let client = crate::tls::client_config(&net.out.join(TLS_CA_FILE)).unwrap();
        for node in &net.manifest.nodes {
            let server = crate::tls::server_config(
                &net.out.join(&node.tls_cert),
                &net.out.join(&node.tls_key),
            )
            .unwrap();
            let host = node.api_addr.rsplit_once(':').unwrap().0;
            for name in [host, "localhost", "127.0.0.1"] {
                let (c, s) =
                    crate::tls::test_support::handshake(server.clone(), client.clone(), name).await;
                assert_eq!(
                    c.unwrap_or_else(|e| panic!("{}@{} as {name}: {e}", node.name, node.org)),
                    b"pong"
                );
                assert!(s.is_ok());
            }
        }
    }

    #[tokio::test]
    async fn shipped_specs_generate_complete_networks() {
        for (file, orgs, users) in [("dev.toml", 1, 2), ("four-orgs.toml", 4, 15)] {
            let spec = GenesisSpec::load(&shipped(file)).unwrap();
            assert_eq!(spec.orgs.len(), orgs, "{file}");
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("net");
            let net = generate(&spec, &out, crate::now_ms()).unwrap();
            check_generated(&spec, &net);
            check_tls(&net).await;
            assert_eq!(net.manifest.users.len(), users, "{file}");
            // Every org endorses kv in four-orgs; any one in dev.
            let kv = net.genesis.policy("kv").unwrap();
            let names = net.genesis.org_names();
            assert!(kv.is_satisfied(&names, names.iter().map(String::as_str)));
        }
    }

    #[test]
    fn dev_and_four_orgs_match_the_design() {
        let dev = GenesisSpec::load(&shipped("dev.toml")).unwrap();
        assert_eq!(dev.orgs[0].name, "DevOrg");
        let n = &dev.orgs[0].nodes[0];
        assert_eq!(
            (
                n.name.as_str(),
                n.api_port,
                n.p2p_port,
                n.ops_port,
                n.consenter
            ),
            ("node0", 7443, 7000, 9443, true)
        );
        let users: Vec<(&str, Role)> = dev.orgs[0]
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.role))
            .collect();
        assert_eq!(users, vec![("alice", Role::Client), ("bob", Role::Doctor)]);
        assert_eq!(dev.contracts[0].policy, Policy::Any);

        let four = GenesisSpec::load(&shipped("four-orgs.toml")).unwrap();
        let names: Vec<&str> = four.orgs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["PatientOrg", "HospitalOrg", "InsuranceOrg", "PharmacyOrg"]
        );
        for org in &four.orgs {
            assert_eq!(org.nodes.len(), 1, "{}", org.name);
            assert!(org.nodes[0].consenter);
            assert!(
                org.users.iter().any(|u| u.role == Role::Admin),
                "{}",
                org.name
            );
            // Only the load generator goes without a proxy re-encryption key.
            for u in &org.users {
                assert_eq!(u.pre_key, u.name != "loadgen", "{}@{}", u.name, org.name);
            }
        }
        let roles: BTreeSet<Role> = four
            .orgs
            .iter()
            .flat_map(|o| o.users.iter().map(|u| u.role))
            .collect();
        for r in [
            Role::Patient,
            Role::Doctor,
            Role::Lab,
            Role::Insurer,
            Role::Pharmacist,
        ] {
            assert!(roles.contains(&r), "{r}");
        }
        assert_eq!(four.contracts[0].policy, Policy::All);
    }

    #[test]
    fn existing_genesis_is_not_overwritten() {
        let spec = parse(MINIMAL).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let first = generate(&spec, dir.path(), crate::now_ms()).unwrap();
        let before = std::fs::read(dir.path().join(GENESIS_BLOCK_FILE)).unwrap();
        let err = generate(&spec, dir.path(), crate::now_ms()).unwrap_err();
        assert!(matches!(err, GenesisError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains(GENESIS_BLOCK_FILE), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join(GENESIS_BLOCK_FILE)).unwrap(),
            before
        );
        assert_eq!(
            load_genesis_block(&dir.path().join(GENESIS_BLOCK_FILE))
                .unwrap()
                .0
                .hash(),
            first.network_id
        );
        // A leftover orgs/ alone is refused too.
        let dir2 = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir2.path().join(ORGS_DIR)).unwrap();
        let err = generate(&spec, dir2.path(), crate::now_ms()).unwrap_err();
        assert!(err.to_string().contains("orgs"), "{err}");
    }

    #[test]
    fn bad_genesis_blocks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(GENESIS_BLOCK_FILE);
        std::fs::write(&p, b"\xff\x00garbage").unwrap();
        let e = load_genesis_block(&p).unwrap_err().to_string();
        assert!(e.contains(GENESIS_BLOCK_FILE), "{e}");
        std::fs::write(&p, vec![0u8; MAX_GENESIS_BLOCK_BYTES + 10]).unwrap();
        assert!(load_genesis_block(&p).is_err());
        // A valid block whose data was tampered with.
        let spec = parse(MINIMAL).unwrap();
        let out = dir.path().join("net");
        let net = generate(&spec, &out, crate::now_ms()).unwrap();
        let mut block = net.block.clone();
        block.header.timestamp_ms ^= 1;
        if let sphr_types::BlockData::Genesis(b) = &mut block.data {
            let last = b.len() - 1;
            b[last] ^= 1;
        }
        std::fs::write(&p, sphr_types::encode(&block).unwrap()).unwrap();
        assert!(load_genesis_block(&p).is_err());
    }

    #[test]
    fn raft_ids_follow_spec_order_and_skip_non_consenters() {
        let text = r#"
            [[orgs]]
            name = "A"
            [[orgs.nodes]]
            name = "a0"
            api_port = 1
            p2p_port = 2
            ops_port = 3
            [[orgs.nodes]]
            name = "a1"
            api_port = 4
            p2p_port = 5
            ops_port = 6
            consenter = false
            [[orgs]]
            name = "B"
            [[orgs.nodes]]
            name = "b0"
            host = "::1"
            api_port = 7
            p2p_port = 8
            ops_port = 9
        "#;
        let spec = parse(text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let net = generate(&spec, dir.path(), 1_700_000_000_000).unwrap();
        let ids: Vec<(&str, bool, u64)> = net
            .genesis
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.consenter, n.raft_id))
            .collect();
        assert_eq!(
            ids,
            vec![("a0", true, 1), ("a1", false, 0), ("b0", true, 2)]
        );
        assert_eq!(net.genesis.nodes[2].api_addr, "[::1]:7");
        assert_eq!(net.manifest.nodes[1].raft_id, None);
        check_generated(&spec, &net);
    }
}
