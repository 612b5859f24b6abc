//! The node's SPHR data vault (crate `sphr-vault`): where it lives, who opens it when, the
//! hospital-local patient links, and the consumer zone the node serves sealed bundles from.
//!
//! ```text
//!  <data_dir>/            the node's sled db (ledger, Raft log) ─ always held by the node
//!     trees node_bundles  consumer zone: bundle id -> ServedBundle (sealed bytes, grantee)
//!           node_grants   the grant follower's cursor and persisted to-do (see bundler)
//!  <data_dir>/vault/      the vault's own sled db ─ held by whoever has work for it:
//!     trees vault_*       hubs, links, satellites, raw zone, profiles, tags (sphr-vault)
//!           node_patient_links   patient org \0 id -> business key (e.g. CHI)
//!
//!  sphr-node vault ingest|tags|profile|link-patient ──open (bounded retry)──> <data_dir>/vault
//!  node, on a committed grant for its org ───────────open (bounded retry)──> package, seal, close
//!  GET /v1/bundles/{id} ────────────────────────────> node_bundles (never waits on the vault)
//! ```
//!
//! # Why a separate database, opened on demand
//!
//! sled lets one process hold a database. The vault is loaded by hospital staff with the CLI,
//! from files of many gigabytes, while the node keeps endorsing, ordering and serving: the
//! node must not stop for an ingest, and an ingest must not go through the node's API (a
//! multi-gigabyte upload, a second copy of the file, and the ledger's database growing with
//! data that never goes on chain). So the vault has its own sled database under the data
//! directory. The CLI opens it for an ingest, a tag map or a patient link; the node opens it
//! only while it packages bundles for committed grants, and closes it when the to-do is empty.
//! Either side that finds it locked retries within a bound (the CLI `--wait-lock-ms`, 30 s by
//! default; the node 1 s); the node then leaves the grant in its persisted to-do and tries
//! again 5 s later, so a long ingest delays packaging, never loses a grant. Sealed bundles live in the node's own database (tree
//! [`TREE_BUNDLES`]): downloads never wait for an ingest.
//!
//! # Patient links
//!
//! A grant names the patient by certificate identity (`patient1@PatientOrg`); the vault knows
//! patients by their business key (the CHI). The mapping is hospital-local and stays off chain,
//! in the vault database ([`TREE_PATIENT_LINKS`]), set by `sphr-node vault link-patient`.
//! Business keys never reach a log line, a metric or the chain.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sphr_contracts::consent::Identity as Party;
use sphr_crypto::cert::Role;
use sphr_crypto::hash::{Hash32, sha256_parts};
use sphr_vault::{Limits, Vault, VaultConfig, VaultError};

/// The vault database's folder under the node's data directory.
pub const VAULT_DIR: &str = "vault";
/// Vault database tree: patient `org \0 id` -> business key.
pub const TREE_PATIENT_LINKS: &str = "node_patient_links";
/// Node database tree (the consumer zone): bundle id -> [`ServedBundle`].
pub const TREE_BUNDLES: &str = "node_bundles";
/// Largest bundle the node packages: its sealed form must fit the client's answer limit
/// ([`crate::client::MAX_RESPONSE_BYTES`]).
pub const MAX_BUNDLE_BYTES: u64 = 24 << 20;
/// A default bound for waiting on a vault database another process holds.
pub const OPEN_RETRY: Duration = Duration::from_secs(5);
/// Longest business key accepted for a patient link.
pub const MAX_BUSINESS_KEY_LEN: usize = 128;
/// Cache of the vault database (sled's page cache), in bytes.
const VAULT_CACHE_BYTES: u64 = 64 << 20;
/// Served bundle record format.
const SERVED_VERSION: u16 = 1;

/// Why the vault could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeVaultError {
    /// Another process holds the vault database (an ingest, or the node packaging).
    #[error(
        "the vault database {path} is in use by another process (an ingest, or the node packaging bundles); waited {waited_ms} ms"
    )]
    Locked {
        /// The database folder.
        path: PathBuf,
        /// How long the open retried.
        waited_ms: u64,
    },
    /// The database could not be opened or written.
    #[error("vault database {path}: {source}")]
    Sled {
        /// The database folder.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// The vault refused (bad input, corrupt entry, ...).
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A patient link is not valid.
    #[error("patient link: {0}")]
    BadLink(String),
    /// A stored record did not decode.
    #[error("{0}")]
    Corrupt(String),
}

/// The vault database folder of a node whose data directory is `data_dir`.
pub fn vault_path(data_dir: &Path) -> PathBuf {
    data_dir.join(VAULT_DIR)
}

/// The vault configuration a node of `hospital` (its org) uses.
pub fn vault_config(hospital: &str) -> VaultConfig {
    VaultConfig {
        hospital: hospital.to_string(),
        limits: Limits {
            max_bundle_bytes: MAX_BUNDLE_BYTES,
            ..Limits::default()
        },
    }
}

/// The vault database, open: holds its lock until dropped.
pub struct VaultDb {
    vault: Vault,
    links: sled::Tree,
    db: sled::Db,
    path: PathBuf,
}

impl std::fmt::Debug for VaultDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultDb")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl VaultDb {
    /// Whether a vault database exists at `path` (something was ever ingested or linked).
    pub fn exists(path: &Path) -> bool {
        path.join("db").is_file()
    }

    /// Opens (or creates) the vault database at `path` for `hospital`, retrying for up to
    /// `wait` while another process holds it.
    pub fn open(path: &Path, hospital: &str, wait: Duration) -> Result<VaultDb, NodeVaultError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        let db = loop {
            let opened = sled::Config::new()
                .path(path)
                .cache_capacity(VAULT_CACHE_BYTES)
                .open();
            match opened {
                Ok(db) => break db,
                Err(e) if sphr_ledger::is_lock_error(&e) => {
                    let waited = started.elapsed();
                    if waited >= wait {
                        return Err(NodeVaultError::Locked {
                            path: path.to_path_buf(),
                            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                        });
                    }
                    std::thread::sleep(pause.min(wait.saturating_sub(waited)));
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(source) => {
                    return Err(NodeVaultError::Sled {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        };
        let sled_err = |source| NodeVaultError::Sled {
            path: path.to_path_buf(),
            source,
        };
        let links = db.open_tree(TREE_PATIENT_LINKS).map_err(sled_err)?;
        let vault = Vault::open(&db, vault_config(hospital))?;
        Ok(VaultDb {
            vault,
            links,
            db,
            path: path.to_path_buf(),
        })
    }

    /// The vault.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    fn link_key(patient: &Party) -> Vec<u8> {
        [patient.org.as_bytes(), &[0], patient.id.as_bytes()].concat()
    }

    /// Links a patient's certificate identity to their business key in this hospital's vault
    /// (replacing an earlier link). The key is normalised as the vault normalises hub keys.
    pub fn link_patient(&self, patient: &Party, business_key: &str) -> Result<(), NodeVaultError> {
        for (what, v) in [("patient org", &patient.org), ("patient id", &patient.id)] {
            if v.is_empty() || v.len() > sphr_crypto::cert::MAX_NAME_LEN {
                return Err(NodeVaultError::BadLink(format!(
                    "{what} must be 1 to {} bytes",
                    sphr_crypto::cert::MAX_NAME_LEN
                )));
            }
            if v.chars().any(|c| c.is_control() || c == '@') {
                return Err(NodeVaultError::BadLink(format!(
                    "{what} holds a control character or '@'"
                )));
            }
        }
        let key = sphr_vault::normalise_business_key(business_key);
        if key.is_empty() || key.len() > MAX_BUSINESS_KEY_LEN {
            return Err(NodeVaultError::BadLink(format!(
                "the business key must be 1 to {MAX_BUSINESS_KEY_LEN} bytes"
            )));
        }
        if key.chars().any(char::is_control) {
            return Err(NodeVaultError::BadLink(
                "the business key holds a control character".into(),
            ));
        }
        self.links
            .insert(Self::link_key(patient), key.as_bytes())
            .map_err(|source| NodeVaultError::Sled {
                path: self.path.clone(),
                source,
            })?;
        self.flush()
    }

    /// Removes a patient's link; true if there was one.
    pub fn unlink_patient(&self, patient: &Party) -> Result<bool, NodeVaultError> {
        let removed = self
            .links
            .remove(Self::link_key(patient))
            .map_err(|source| NodeVaultError::Sled {
                path: self.path.clone(),
                source,
            })?
            .is_some();
        self.flush()?;
        Ok(removed)
    }

    /// The business key linked to a patient, if any.
    pub fn patient_key(&self, patient: &Party) -> Result<Option<String>, NodeVaultError> {
        let v = self
            .links
            .get(Self::link_key(patient))
            .map_err(|source| NodeVaultError::Sled {
                path: self.path.clone(),
                source,
            })?;
        match v {
            None => Ok(None),
            Some(v) => String::from_utf8(v.to_vec()).map(Some).map_err(|_| {
                NodeVaultError::Corrupt(format!(
                    "{TREE_PATIENT_LINKS}: a stored business key is not UTF-8"
                ))
            }),
        }
    }

    /// Flushes to disk.
    pub fn flush(&self) -> Result<(), NodeVaultError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|source| NodeVaultError::Sled {
                path: self.path.clone(),
                source,
            })
    }
}

/// The id of the bundle `hospital` packages for access request `request_id`: deterministic, so
/// a node that restarts half way packages under the same id.
pub fn bundle_id(request_id: &Hash32, hospital: &str) -> Hash32 {
    sha256_parts(&[
        b"sphr.vault.bundle",
        request_id.as_bytes(),
        hospital.as_bytes(),
    ])
}

/// The associated data binding a bundle key, sealed to the requester's PRE key, to its request,
/// hospital, bundle and sealed bundle hash: a sealed key cannot be moved to another bundle.
pub fn bundle_key_aad(
    request_id: &Hash32,
    hospital: &str,
    bundle_id: &str,
    bundle_hash: &Hash32,
) -> Vec<u8> {
    sha256_parts(&[
        b"sphr.vault.bundle-key/v1",
        request_id.as_bytes(),
        hospital.as_bytes(),
        bundle_id.as_bytes(),
        bundle_hash.as_bytes(),
    ])
    .0
    .to_vec()
}

/// A bundle in the node's consumer zone: the sealed bytes, who may download them, and the key
/// delivery the node made (or is making) on chain.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedBundle {
    /// Record format.
    pub version: u16,
    /// The bundle id (as in the sealed bundle and on chain, in hex).
    pub bundle_id: Hash32,
    /// The access request it answers.
    pub request_id: Hash32,
    /// This node's hospital.
    pub hospital: String,
    /// The grantee: the only identity that may download it.
    pub requester: Party,
    /// The grantee's certificate role at request time.
    pub requester_role: Role,
    /// SHA-256 of `sealed`.
    pub bundle_hash: Hash32,
    /// The bundle key sealed to the requester's PRE key (public: only the requester opens it).
    pub sealed_key: ByteBuf,
    /// The rule ids of the lineage.
    pub rule_ids: Vec<Hash32>,
    /// Whether `deliverBundleKey` committed (or another node of the hospital delivered first).
    pub delivered: bool,
    /// When packaged (Unix ms).
    pub created_ms: u64,
    /// The CBOR `SealedBundle`.
    pub sealed: ByteBuf,
}

impl std::fmt::Debug for ServedBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedBundle")
            .field("bundle_id", &self.bundle_id)
            .field("request_id", &self.request_id)
            .field("hospital", &self.hospital)
            .field("bundle_hash", &self.bundle_hash)
            .field("delivered", &self.delivered)
            .field("sealed_bytes", &self.sealed.len())
            .finish_non_exhaustive()
    }
}

/// The consumer zone in the node's own database.
#[derive(Clone)]
pub struct BundleStore {
    tree: sled::Tree,
    db: sled::Db,
}

impl BundleStore {
    /// Opens the tree in the node's database.
    pub fn open(db: &sled::Db) -> Result<BundleStore, sled::Error> {
        Ok(BundleStore {
            tree: db.open_tree(TREE_BUNDLES)?,
            db: db.clone(),
        })
    }

    fn limit() -> usize {
        usize::try_from(MAX_BUNDLE_BYTES).unwrap_or(usize::MAX) + (1 << 20)
    }

    /// Keeps a bundle, durably.
    pub fn put(&self, b: &ServedBundle) -> Result<(), NodeVaultError> {
        let bytes = sphr_crypto::cbor::to_vec(b)
            .map_err(|e| NodeVaultError::Corrupt(format!("encoding a served bundle: {e}")))?;
        let sled_err = |source| NodeVaultError::Sled {
            path: PathBuf::from(TREE_BUNDLES),
            source,
        };
        self.tree
            .insert(b.bundle_id.as_bytes(), bytes)
            .map_err(sled_err)?;
        self.db.flush().map_err(sled_err)?;
        Ok(())
    }

    /// A bundle by id.
    pub fn get(&self, bundle_id: &Hash32) -> Result<Option<ServedBundle>, NodeVaultError> {
        let v = self
            .tree
            .get(bundle_id.as_bytes())
            .map_err(|source| NodeVaultError::Sled {
                path: PathBuf::from(TREE_BUNDLES),
                source,
            })?;
        let Some(v) = v else {
            return Ok(None);
        };
        let b: ServedBundle = sphr_crypto::cbor::from_slice(&v, Self::limit()).map_err(|_| {
            NodeVaultError::Corrupt(format!("{TREE_BUNDLES}: a served bundle does not decode"))
        })?;
        if b.version != SERVED_VERSION || b.bundle_id != *bundle_id {
            return Err(NodeVaultError::Corrupt(format!(
                "{TREE_BUNDLES}: a served bundle has another version or id"
            )));
        }
        Ok(Some(b))
    }

    /// Number of bundles kept.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether no bundle is kept.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

/// A new served bundle record (not yet delivered).
#[allow(clippy::too_many_arguments)]
pub fn served_bundle(
    bundle_id: Hash32,
    request_id: Hash32,
    hospital: &str,
    requester: Party,
    requester_role: Role,
    sealed: Vec<u8>,
    sealed_key: Vec<u8>,
    rule_ids: Vec<Hash32>,
) -> ServedBundle {
    ServedBundle {
        version: SERVED_VERSION,
        bundle_id,
        request_id,
        hospital: hospital.to_string(),
        requester,
        requester_role,
        bundle_hash: sphr_crypto::hash::sha256(&sealed),
        sealed_key: ByteBuf::from(sealed_key),
        rule_ids,
        delivered: false,
        created_ms: crate::now_ms(),
        sealed: ByteBuf::from(sealed),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn open_waits_for_the_lock_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = vault_path(dir.path());
        let held = VaultDb::open(&path, "HospA", OPEN_RETRY).unwrap();
        let started = Instant::now();
        let e = VaultDb::open(&path, "HospA", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, NodeVaultError::Locked { .. }), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(held);
        // Released on drop: the next open gets it (within the bound, sled may take a moment).
        let again = VaultDb::open(&path, "HospA", OPEN_RETRY).unwrap();
        assert!(VaultDb::exists(&path));
        drop(again);
    }

    #[test]
    fn patient_links() {
        let dir = tempfile::tempdir().unwrap();
        let v = VaultDb::open(&vault_path(dir.path()), "HospA", OPEN_RETRY).unwrap();
        let p = Party::new("PatientOrg", "patient1");
        assert_eq!(v.patient_key(&p).unwrap(), None);
        v.link_patient(&p, " 0101501234 ").unwrap();
        assert_eq!(v.patient_key(&p).unwrap().as_deref(), Some("0101501234"));
        assert!(v.link_patient(&Party::new("a@b", "x"), "1").is_err());
        assert!(v.link_patient(&p, "   ").is_err());
        assert!(v.unlink_patient(&p).unwrap());
        assert_eq!(v.patient_key(&p).unwrap(), None);
    }

    #[test]
    fn bundle_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = BundleStore::open(&db).unwrap();
        let id = bundle_id(&Hash32([1; 32]), "HospA");
        assert_ne!(id, bundle_id(&Hash32([1; 32]), "HospB"));
        let b = served_bundle(
            id,
            Hash32([1; 32]),
            "HospA",
            Party::new("HospA", "doctor1"),
            Role::Doctor,
            vec![1, 2, 3],
            vec![4; 96],
            vec![Hash32([2; 32])],
        );
        s.put(&b).unwrap();
        assert_eq!(s.get(&id).unwrap(), Some(b.clone()));
        assert_eq!(s.get(&Hash32([9; 32])).unwrap(), None);
        assert_eq!(b.bundle_hash, sphr_crypto::hash::sha256(&[1, 2, 3]));
        assert!(!format!("{b:?}").contains("doctor1"));
    }
}
