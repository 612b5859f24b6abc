//! Shared helpers: fixtures, a vault on a temporary sled database, tree dumps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sphr_vault::{
    ColumnControl, HubControl, IngestOptions, IngestReport, Limits, Vault, VaultConfig, VaultError,
};

/// The patients of the SMR01 fixture, by CHI.
pub const CHI_A: &str = "0101501234";
pub const CHI_B: &str = "1203851235";
pub const CHI_C: &str = "2507673456";
pub const CHI_D: &str = "0911924567";
pub const ALL_CHI: [&str; 4] = [CHI_A, CHI_B, CHI_C, CHI_D];

/// Load time used for fixture ingests.
pub const LOAD_TIME_MS: u64 = 1_700_000_000_000;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: sled::Db,
    pub vault: Vault,
}

pub fn open_db(dir: &Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .cache_capacity(32 << 20)
        .open()
        .unwrap()
}

pub fn env_with(limits: Limits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let vault = Vault::open(
        &db,
        VaultConfig {
            hospital: "ustan".to_string(),
            limits,
        },
    )
    .unwrap();
    Env { dir, db, vault }
}

pub fn env() -> Env {
    env_with(Limits::default())
}

pub fn columns(name: &str, limits: &Limits) -> Result<ColumnControl, VaultError> {
    ColumnControl::parse(name, read_fixture(name).as_slice(), limits)
}

pub fn hubs(name: &str, limits: &Limits) -> Result<HubControl, VaultError> {
    HubControl::parse(name, read_fixture(name).as_slice(), limits)
}

pub fn options(table_name: &str) -> IngestOptions {
    IngestOptions {
        table_name: table_name.to_string(),
        load_time_ms: Some(LOAD_TIME_MS),
        ..IngestOptions::default()
    }
}

/// Ingests a fixture table with the SMR01 control files.
pub fn ingest_fixture(
    vault: &Vault,
    source: &str,
    table: &str,
    opts: &IngestOptions,
) -> Result<IngestReport, VaultError> {
    let limits = vault.config().limits.clone();
    let c = columns("smr01_columns.csv", &limits)?;
    let h = hubs("smr01_hubs.csv", &limits)?;
    vault.ingest(source, read_fixture(table).as_slice(), &c, &h, opts, |_| {})
}

pub fn ingest_smr01(vault: &Vault) -> IngestReport {
    ingest_fixture(vault, "smr01", "smr01.csv", &options("smr01.csv")).unwrap()
}

pub type Dump = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

/// Every entry of every `vault_` tree (staging trees included).
pub fn dump(db: &sled::Db) -> Dump {
    let mut out = Dump::new();
    for name in db.tree_names() {
        if !name.starts_with(b"vault_") {
            continue;
        }
        let tree = db.open_tree(&name).unwrap();
        let entries = tree
            .iter()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect();
        out.insert(name.to_vec(), entries);
    }
    out
}
