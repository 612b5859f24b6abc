//! The [`Vault`]: its trees in the node's sled database, its limits, crash recovery, and the
//! read accessors.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sphr_crypto::hash::Hash32;

use crate::error::VaultError;
use crate::ingest::{IngestRecord, IngestState, STAGE_PREFIX};
use crate::model::{
    HubKind, HubRecord, LinkRecord, SatKey, SatRecord, check_source_name, patient_key, sat_prefix,
};
use crate::profile::IngestProfile;
use crate::{
    TREE_CATALOG, TREE_CONSUMER, TREE_HUBS, TREE_INGESTS, TREE_LINKS, TREE_RAW, TREE_SATS,
    TREE_TAGS,
};

/// Limits on everything the vault reads. Defaults suit a hospital table of many gigabytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest table file, in bytes.
    pub max_table_bytes: u64,
    /// Longest CSV record (a line, or several when a quoted field holds newlines), in bytes.
    pub max_line_bytes: u64,
    /// Most columns in a table (and rows in a column control file).
    pub max_columns: usize,
    /// Most satellites one column control file may name.
    pub max_satellites: usize,
    /// Largest control file, in bytes.
    pub max_control_bytes: u64,
    /// Rows read (and held in memory) before column types are fixed.
    pub infer_rows: usize,
    /// Most bad rows listed; with `allow_bad_rows`, more than this refuses the file.
    pub max_bad_rows: usize,
    /// Largest encoded bundle, in bytes.
    pub max_bundle_bytes: u64,
    /// Most satellite rows in one bundle.
    pub max_bundle_rows: usize,
    /// Most tags in one source's tag map.
    pub max_tags: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_table_bytes: 64 << 30,
            max_line_bytes: 64 << 10,
            max_columns: 256,
            max_satellites: 64,
            max_control_bytes: 1 << 20,
            infer_rows: 1000,
            max_bad_rows: 10_000,
            max_bundle_bytes: 64 << 20,
            max_bundle_rows: 100_000,
            max_tags: 256,
        }
    }
}

impl Limits {
    /// Checks that the limits make sense.
    pub fn validate(&self) -> Result<(), VaultError> {
        let checks = [
            (self.max_table_bytes == 0, "max_table_bytes must be above 0"),
            (
                self.max_line_bytes < 64,
                "max_line_bytes must be at least 64",
            ),
            (
                self.max_line_bytes > 16 << 20,
                "max_line_bytes must be at most 16 MiB",
            ),
            (self.max_columns == 0, "max_columns must be above 0"),
            (self.max_satellites == 0, "max_satellites must be above 0"),
            (
                self.max_control_bytes == 0,
                "max_control_bytes must be above 0",
            ),
            (
                self.infer_rows == 0 || self.infer_rows > 1_000_000,
                "infer_rows must be 1 to 1,000,000",
            ),
            (self.max_bad_rows == 0, "max_bad_rows must be above 0"),
            (
                self.max_bundle_bytes < 1024,
                "max_bundle_bytes must be at least 1024",
            ),
            (self.max_bundle_rows == 0, "max_bundle_rows must be above 0"),
            (self.max_tags == 0, "max_tags must be above 0"),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(VaultError::InvalidConfig(why)),
            None => Ok(()),
        }
    }

    /// Decode limit of one stored record: a satellite row holds at most one CSV record's values,
    /// plus names and keys.
    pub(crate) fn record_bytes_max(&self) -> usize {
        let line = usize::try_from(self.max_line_bytes).unwrap_or(usize::MAX);
        line.saturating_mul(2).saturating_add(64 << 10).max(1 << 20)
    }
}

/// How the vault is set up by its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultConfig {
    /// The organisation whose vault this is: the contributing hospital named in bundles.
    pub hospital: String,
    pub limits: Limits,
}

impl VaultConfig {
    /// Default limits for `hospital`.
    pub fn new(hospital: impl Into<String>) -> Self {
        VaultConfig {
            hospital: hospital.into(),
            limits: Limits::default(),
        }
    }
}

/// One satellite of a source, as the vault knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SatelliteDef {
    pub name: String,
    pub hub: HubKind,
    /// Columns in control-file order; later ingests may add columns at the end.
    pub columns: Vec<String>,
}

/// What the vault holds from one source: its satellites (union over its ingests) and ingests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCatalog {
    pub satellites: BTreeMap<String, SatelliteDef>,
    pub ingests: Vec<u64>,
}

/// The node's SPHR data vault, on trees of the node's sled database.
///
/// Ingests run one at a time. Reads that assemble a patient's data (bundles, patient rows)
/// never see an ingest half applied: they wait while one is being applied. The vault is `Send +
/// Sync`; share it behind an `Arc`.
pub struct Vault {
    pub(crate) db: sled::Db,
    pub(crate) hubs: sled::Tree,
    pub(crate) links: sled::Tree,
    pub(crate) sats: sled::Tree,
    pub(crate) raw: sled::Tree,
    pub(crate) ingests: sled::Tree,
    pub(crate) catalog: sled::Tree,
    pub(crate) tags: sled::Tree,
    pub(crate) consumer: sled::Tree,
    pub(crate) config: VaultConfig,
    ingest_lock: Mutex<()>,
    apply_lock: RwLock<()>,
    /// Set when applying a committed ingest failed: reads refuse until the vault is reopened
    /// (reopening finishes the apply).
    interrupted: AtomicBool,
    /// Tests: make the next apply fail half way, as a disk error would.
    #[cfg(test)]
    pub(crate) fail_next_apply: AtomicBool,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("hospital", &self.config.hospital)
            .finish_non_exhaustive()
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, VaultError> {
    sphr_crypto::cbor::to_vec(value).map_err(VaultError::Encode)
}

pub(crate) fn key32(tree: &'static str, bytes: &[u8]) -> Result<Hash32, VaultError> {
    Hash32::from_slice(bytes).map_err(|_| VaultError::Corrupt {
        tree,
        detail: "key is not 32 bytes".to_string(),
    })
}

impl Vault {
    /// Opens the vault's trees in `db` and finishes or discards any ingest a crash interrupted.
    pub fn open(db: &sled::Db, config: VaultConfig) -> Result<Vault, VaultError> {
        config.limits.validate()?;
        if config.hospital.trim().is_empty() || config.hospital.len() > 128 {
            return Err(VaultError::InvalidConfig(
                "the hospital name must be 1 to 128 bytes",
            ));
        }
        let vault = Vault {
            db: db.clone(),
            hubs: db.open_tree(TREE_HUBS)?,
            links: db.open_tree(TREE_LINKS)?,
            sats: db.open_tree(TREE_SATS)?,
            raw: db.open_tree(TREE_RAW)?,
            ingests: db.open_tree(TREE_INGESTS)?,
            catalog: db.open_tree(TREE_CATALOG)?,
            tags: db.open_tree(TREE_TAGS)?,
            consumer: db.open_tree(TREE_CONSUMER)?,
            config,
            ingest_lock: Mutex::new(()),
            apply_lock: RwLock::new(()),
            interrupted: AtomicBool::new(false),
            #[cfg(test)]
            fail_next_apply: AtomicBool::new(false),
        };
        vault.recover()?;
        Ok(vault)
    }

    /// The configuration the vault was opened with.
    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    /// Finishes applying ingests that reached their commit point, drops the staging trees of
    /// the others.
    fn recover(&self) -> Result<(), VaultError> {
        for name in self.db.tree_names() {
            let Some(id) = name
                .strip_prefix(STAGE_PREFIX.as_bytes())
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let stage = self.db.open_tree(&name)?;
            match self.ingest_record_raw(id)? {
                Some(record) if record.state == IngestState::Committed => {
                    tracing::debug!(target: "sphr::vault", ingest_id = id, "dropping the staging tree of a committed ingest");
                }
                Some(mut record) => {
                    tracing::warn!(target: "sphr::vault", ingest_id = id, "finishing an ingest interrupted after its commit point");
                    self.apply_stage(&stage, &record.report)?;
                    record.state = IngestState::Committed;
                    self.ingests.insert(id.to_be_bytes(), encode(&record)?)?;
                    self.db.flush()?;
                }
                None => {
                    tracing::warn!(target: "sphr::vault", ingest_id = id, "discarding an ingest interrupted before its commit point");
                }
            }
            drop(stage);
            self.db.drop_tree(&name)?;
        }
        Ok(())
    }

    pub(crate) fn lock_ingest(&self) -> MutexGuard<'_, ()> {
        self.ingest_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lock_apply(&self) -> RwLockWriteGuard<'_, ()> {
        self.apply_lock.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A read guard: waits for an ingest being applied; refuses if an apply failed.
    pub(crate) fn read_guard(&self) -> Result<RwLockReadGuard<'_, ()>, VaultError> {
        let guard = self.apply_lock.read().unwrap_or_else(|e| e.into_inner());
        if self.interrupted.load(Ordering::Acquire) {
            return Err(VaultError::Corrupt {
                tree: TREE_INGESTS,
                detail: "an ingest failed while being applied; reopen the vault to finish it"
                    .to_string(),
            });
        }
        Ok(guard)
    }

    pub(crate) fn mark_interrupted(&self) {
        self.interrupted.store(true, Ordering::Release);
    }

    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        bytes: &[u8],
    ) -> Result<T, VaultError> {
        sphr_crypto::cbor::from_slice(bytes, self.config.limits.record_bytes_max())
            .map_err(|e| VaultError::corrupt(tree, &e))
    }

    /// A hub entry by hash key.
    pub fn hub(&self, key: &Hash32) -> Result<Option<HubRecord>, VaultError> {
        match self.hubs.get(key.as_bytes())? {
            Some(v) => Ok(Some(self.decode(TREE_HUBS, &v)?)),
            None => Ok(None),
        }
    }

    /// A link by hash key.
    pub fn link(&self, key: &Hash32) -> Result<Option<LinkRecord>, VaultError> {
        match self.links.get(key.as_bytes())? {
            Some(v) => Ok(Some(self.decode(TREE_LINKS, &v)?)),
            None => Ok(None),
        }
    }

    /// Whether the vault holds a Person hub entry for this business key (e.g. a CHI).
    pub fn has_patient(&self, patient_business_key: &str) -> Result<bool, VaultError> {
        let _guard = self.read_guard()?;
        Ok(self
            .hubs
            .contains_key(patient_key(patient_business_key).as_bytes())?)
    }

    /// All hub entries, in key order. For tools and tests: does not wait for an ingest being
    /// applied.
    pub fn iter_hubs(&self) -> impl Iterator<Item = Result<(Hash32, HubRecord), VaultError>> + '_ {
        self.hubs.iter().map(|item| {
            let (k, v) = item?;
            Ok((key32(TREE_HUBS, &k)?, self.decode(TREE_HUBS, &v)?))
        })
    }

    /// All links, in key order. As [`Vault::iter_hubs`].
    pub fn iter_links(
        &self,
    ) -> impl Iterator<Item = Result<(Hash32, LinkRecord), VaultError>> + '_ {
        self.links.iter().map(|item| {
            let (k, v) = item?;
            Ok((key32(TREE_LINKS, &k)?, self.decode(TREE_LINKS, &v)?))
        })
    }

    /// All satellite rows, in key order (by patient). As [`Vault::iter_hubs`].
    pub fn iter_satellite_rows(
        &self,
    ) -> impl Iterator<Item = Result<(SatKey, SatRecord), VaultError>> + '_ {
        self.sats.iter().map(|item| {
            let (k, v) = item?;
            Ok((SatKey::decode(&k)?, self.decode(TREE_SATS, &v)?))
        })
    }

    /// One patient's rows of one satellite of one source, at most
    /// [`Limits::max_bundle_rows`].
    pub fn patient_rows(
        &self,
        patient_business_key: &str,
        source: &str,
        satellite: &str,
    ) -> Result<Vec<SatRecord>, VaultError> {
        check_source_name(source)?;
        let _guard = self.read_guard()?;
        let patient = patient_key(patient_business_key);
        let mut out = Vec::new();
        self.scan_patient(&patient, source, satellite, |rec| {
            out.push(rec);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` on each of one patient's rows of a satellite; bounded by
    /// [`Limits::max_bundle_rows`] per call.
    pub(crate) fn scan_patient(
        &self,
        patient: &Hash32,
        source: &str,
        satellite: &str,
        mut f: impl FnMut(SatRecord) -> Result<(), VaultError>,
    ) -> Result<usize, VaultError> {
        let mut n = 0usize;
        for item in self
            .sats
            .scan_prefix(sat_prefix(patient, source, satellite))
        {
            let (_, v) = item?;
            n += 1;
            if n > self.config.limits.max_bundle_rows {
                return Err(VaultError::BundleTooLarge {
                    what: "rows",
                    limit: self.config.limits.max_bundle_rows as u64,
                });
            }
            f(self.decode(TREE_SATS, &v)?)?;
        }
        Ok(n)
    }

    /// The sources the vault has ingested, in name order.
    pub fn sources(&self) -> Result<Vec<String>, VaultError> {
        self.catalog
            .iter()
            .keys()
            .map(|k| {
                let k = k?;
                String::from_utf8(k.to_vec()).map_err(|_| VaultError::Corrupt {
                    tree: TREE_CATALOG,
                    detail: "source name is not UTF-8".to_string(),
                })
            })
            .collect()
    }

    /// What the vault knows of a source, if it has ingested from it.
    pub fn catalog(&self, source: &str) -> Result<Option<SourceCatalog>, VaultError> {
        check_source_name(source)?;
        match self.catalog.get(source.as_bytes())? {
            Some(v) => Ok(Some(self.decode(TREE_CATALOG, &v)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn ingest_record_raw(&self, id: u64) -> Result<Option<IngestRecord>, VaultError> {
        match self.ingests.get(id.to_be_bytes())? {
            Some(v) => Ok(Some(self.decode(TREE_INGESTS, &v)?)),
            None => Ok(None),
        }
    }

    /// The record of one ingest: its state and report (with the profile).
    pub fn ingest_record(&self, ingest_id: u64) -> Result<IngestRecord, VaultError> {
        self.ingest_record_raw(ingest_id)?
            .ok_or(VaultError::IngestNotFound(ingest_id))
    }

    /// All ingests, oldest first.
    pub fn ingests(&self) -> Result<Vec<IngestRecord>, VaultError> {
        self.ingests
            .iter()
            .values()
            .map(|v| self.decode(TREE_INGESTS, &v?))
            .collect()
    }

    /// The column profile of one ingest (the Assess step).
    pub fn profile(&self, ingest_id: u64) -> Result<IngestProfile, VaultError> {
        Ok(self.ingest_record(ingest_id)?.report.profile)
    }

    /// Writes the raw file of an ingest (the raw zone) to `out`, checking it against the
    /// SHA-256 recorded at ingest; returns the number of bytes.
    pub fn export_raw(&self, ingest_id: u64, mut out: impl Write) -> Result<u64, VaultError> {
        let record = self.ingest_record(ingest_id)?;
        if record.state != IngestState::Committed {
            return Err(VaultError::RawCorrupt {
                ingest_id,
                detail: "the ingest is not committed",
            });
        }
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        for (expected_chunk, item) in self.raw.scan_prefix(ingest_id.to_be_bytes()).enumerate() {
            let (k, v) = item?;
            let chunk_no = k
                .get(8..16)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            if k.len() != 16 || chunk_no != Some(expected_chunk as u64) {
                return Err(VaultError::RawCorrupt {
                    ingest_id,
                    detail: "raw chunks are missing or out of order",
                });
            }
            hasher.update(&v);
            out.write_all(&v).map_err(|source| VaultError::Io {
                what: "raw export".to_string(),
                source,
            })?;
            bytes += v.len() as u64;
        }
        let digest = Hash32(hasher.finalize().into());
        if digest != record.report.raw_sha256 || bytes != record.report.raw_bytes {
            return Err(VaultError::RawCorrupt {
                ingest_id,
                detail: "the stored bytes do not match the SHA-256 recorded at ingest",
            });
        }
        Ok(bytes)
    }
}
