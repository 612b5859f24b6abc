//! sphr-vault: the node's off-chain SPHR data vault (seed 000, chapters 2 to 5), on trees of
//! the node's sled database.
//!
//! A hospital's tables become a data vault with the five T-P-O-L-E hubs (Time, Person, Object,
//! Location, Event), links and satellites named `sat_<hub>_<major>_<minor>`; a granted access
//! request becomes a sealed bundle of exactly the satellites the granted tags select, for that
//! patient only. The steps of the Rapid Information Factory (seed 000, chapter 5), as
//! implemented here:
//!
//! ```text
//!  table.csv + column control file + hub control file        (seed 000, tables 3.2 and 3.3)
//!     │
//!  R  Retrieve   stream the table once (impl Read): raw bytes chunked into the raw zone
//!     │          (vault_raw) with their SHA-256; limits on size, record length, columns
//!  A  Assess     control files checked against the header; types inferred from the first
//!     │          rows; every row checked (bad rows: line + reason, refuse or skip by
//!     │          policy); each column profiled (type, count, missing, distinct, min/max,
//!     │          top 5), stored with the ingest (vault_ingests)
//!  P  Process    hubs by business-key hash (vault_hubs), one link per row over the hubs it
//!     │          touches (vault_links), satellite rows keyed by patient (vault_sats); staged,
//!     │          then committed all or nothing
//!     │ ...... access request granted on chain (the node) ......
//!  T  Transform  package(patient, tags, sources): tags -> satellites (vault_tags) -> the
//!     │          patient's rows -> Bundle (CBOR, JSON export)
//!  O  Organise   seal_bundle (fresh ChaCha20-Poly1305 key) -> store_sealed in the consumer
//!     │          zone (vault_consumer); the key goes on chain, sealed to the requester
//!  R  Report     (the node) the requester fetches the sealed bundle over HTTPS: key and data
//!                travel by two paths (seed 000, section 3.4.1)
//! ```
//!
//! Trees (all prefixed `vault_`): [`TREE_HUBS`], [`TREE_LINKS`], [`TREE_SATS`], [`TREE_RAW`],
//! [`TREE_INGESTS`], [`TREE_CATALOG`], [`TREE_TAGS`], [`TREE_CONSUMER`], and one
//! `vault_stage_<id>` per ingest in progress. Values are deterministic CBOR, decoded with a
//! size limit; a corrupt entry is an error, never a panic.
//!
//! Patient data (values, business keys, profiles) never reaches a log line or an error
//! message: rows are named by line and column. Logs go to target `sphr::vault`.
//!
//! ```no_run
//! # fn main() -> Result<(), sphr_vault::VaultError> {
//! use sphr_vault::*;
//! let db = sled::open("/tmp/node-db")?;
//! let vault = Vault::open(&db, VaultConfig::new("ustan"))?;
//! let limits = vault.config().limits.clone();
//! let columns = ColumnControl::parse("cols.csv", std::fs::File::open("cols.csv").map_err(|e| VaultError::Io { what: "cols.csv".into(), source: e })?, &limits)?;
//! let hubs = HubControl::parse("hubs.csv", &b"hub,primary_key\nhub_person,chi\n"[..], &limits)?;
//! let table = std::fs::File::open("smr01.csv").map_err(|e| VaultError::Io { what: "smr01.csv".into(), source: e })?;
//! let report = vault.ingest("smr01", table, &columns, &hubs, &IngestOptions::default(), |_p| {})?;
//! println!("{report}");
//! let bundle = vault.package("0101501234", &["OPERATION"], &SourceFilter::All)?;
//! let (sealed, key) = seal_bundle(&bundle)?;
//! vault.store_sealed(&sealed)?;
//! assert_eq!(open_bundle(&sealed, &key)?, bundle);
//! # Ok(()) }
//! ```

pub mod bundle;
pub mod control;
pub mod error;
pub mod infer;
pub mod ingest;
pub mod model;
pub mod profile;
pub mod tags;
pub mod vault;

pub use bundle::{
    BUNDLE_VERSION, Bundle, SatRow, SatelliteRows, SealedBundle, SourceFilter, open_bundle,
    seal_bundle,
};
pub use control::{ColumnControl, ColumnEntry, Destination, ForeignKey, HubControl, HubEntry};
pub use error::{BadRow, BadRowReason, ControlProblem, VaultError};
pub use infer::ColumnType;
pub use ingest::{HubCount, IngestOptions, IngestRecord, IngestReport, IngestState, Progress};
pub use model::{
    Date, Field, HubKind, HubRecord, HubRef, LinkRecord, SatKey, SatRecord, SatelliteName, Value,
    hub_key, link_key, normalise_business_key, patient_key,
};
pub use profile::{ColumnProfile, Distinct, IngestProfile, ValueCount};
pub use tags::{TagMap, normalise_tag, parse_tag_file};
pub use vault::{Limits, SatelliteDef, SourceCatalog, Vault, VaultConfig};

/// Hub entries: hub key -> [`HubRecord`].
pub const TREE_HUBS: &str = "vault_hubs";
/// Links: link key -> [`LinkRecord`].
pub const TREE_LINKS: &str = "vault_links";
/// Satellite rows: [`SatKey`] (patient first) -> [`SatRecord`].
pub const TREE_SATS: &str = "vault_sats";
/// Raw zone: ingest id ‖ chunk number -> raw bytes (64 KiB chunks).
pub const TREE_RAW: &str = "vault_raw";
/// Ingests: ingest id -> [`IngestRecord`] (state, report, profile).
pub const TREE_INGESTS: &str = "vault_ingests";
/// Sources: source name -> [`SourceCatalog`].
pub const TREE_CATALOG: &str = "vault_catalog";
/// Tag maps: source name -> [`TagMap`].
pub const TREE_TAGS: &str = "vault_tags";
/// Consumer zone: bundle id -> [`SealedBundle`].
pub const TREE_CONSUMER: &str = "vault_consumer";
