//! Errors of the vault. No message ever holds a value from a patient table: rows are named by
//! line and column, patients not at all. Control-file errors name the file, the line and the
//! field, and may quote the control file (column, hub and satellite names are metadata).

use std::fmt;

use serde::{Deserialize, Serialize};
use sphr_crypto::cbor::CborError;

use crate::infer::ColumnType;
use crate::model::HubKind;

/// Everything that can go wrong in the vault. Each variant says what follows: an ingest error
/// means nothing was written; a `Corrupt` or `Store` error means the node's disk needs care.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The sled database failed. Stop the node: the disk or the database needs care.
    #[error("vault storage: {0}")]
    Store(#[from] sled::Error),
    /// Reading an input failed (I/O). The ingest is refused, nothing written.
    #[error("reading {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A control file, or the table header checked against the control files, is wrong.
    /// The ingest is refused, nothing written.
    #[error("{file}{}, field {field}: {problem}", line_part(*line))]
    Control {
        file: String,
        line: Option<u64>,
        field: String,
        problem: ControlProblem,
    },
    /// The table is not CSV the reader can follow. The ingest is refused, nothing written.
    #[error("{file}{}: {detail}", line_part(*line))]
    Csv {
        file: String,
        line: Option<u64>,
        detail: String,
    },
    /// The table has no header line.
    #[error("{file}: empty table, no header line")]
    EmptyTable { file: String },
    /// Rows broke the rules and the policy refuses the file (the default): nothing written.
    /// `rows` lists the first of them (up to the bad-row limit).
    #[error(
        "{file}: {count} bad row(s), ingest refused, nothing written; first: {}",
        first_row(rows)
    )]
    BadRows {
        file: String,
        count: u64,
        rows: Vec<BadRow>,
    },
    /// More bad rows than the limit, even with `allow_bad_rows`: the file is refused.
    #[error("{file}: more than {limit} bad rows, ingest refused, nothing written")]
    TooManyBadRows { file: String, limit: usize },
    /// An input is over one of the [`crate::Limits`].
    #[error("{what}{}: over the limit of {limit}", line_part(*line))]
    Limit {
        what: String,
        line: Option<u64>,
        limit: u64,
    },
    /// The vault's configuration (hospital name, limits) makes no sense.
    #[error("invalid vault configuration: {0}")]
    InvalidConfig(&'static str),
    /// A source name breaks the naming rule.
    #[error("invalid source name: {reason}")]
    InvalidSource { reason: &'static str },
    /// No ingest has been made from this source.
    #[error("unknown source {0}")]
    UnknownSource(String),
    /// A tag is not a valid tag.
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag { tag: String, reason: &'static str },
    /// A tag map entry names a satellite this source does not have.
    #[error("tag {tag}: source {source_name} has no satellite {satellite}")]
    UnknownSatellite {
        source_name: String,
        tag: String,
        satellite: String,
    },
    /// A tag map is refused for another reason.
    #[error("tag map for {source_name}: {reason}")]
    InvalidTagMap { source_name: String, reason: String },
    /// The vault holds no Person hub entry for the patient asked for.
    #[error("the vault holds no data for this patient")]
    PatientNotFound,
    /// No ingest with this id.
    #[error("no ingest with id {0}")]
    IngestNotFound(u64),
    /// A stored value or key did not decode. The message never quotes the stored bytes.
    #[error("vault tree {tree}: stored entry is corrupt: {detail}")]
    Corrupt { tree: &'static str, detail: String },
    /// The raw file read back does not hash to the recorded SHA-256.
    #[error("raw file of ingest {ingest_id}: {detail}")]
    RawCorrupt {
        ingest_id: u64,
        detail: &'static str,
    },
    /// A value could not be encoded.
    #[error("encoding: {0}")]
    Encode(CborError),
    /// JSON export failed.
    #[error("JSON export: {0}")]
    Json(String),
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(String),
    /// A bundle or sealed bundle is not well formed (decode, version, sizes).
    #[error("bundle: {0}")]
    InvalidBundle(String),
    /// A sealed bundle did not open: wrong key, or the bytes were tampered with.
    #[error("sealed bundle did not open: wrong key or tampered data")]
    Unseal,
    /// A bundle would be larger than the limit.
    #[error("bundle of {what} is over the limit of {limit}")]
    BundleTooLarge { what: &'static str, limit: u64 },
}

fn line_part(line: Option<u64>) -> String {
    match line {
        Some(l) => format!(", line {l}"),
        None => String::new(),
    }
}

fn first_row(rows: &[BadRow]) -> String {
    match rows.first() {
        Some(r) => r.to_string(),
        None => "none listed".to_string(),
    }
}

impl VaultError {
    /// A decode failure of a stored entry, described without quoting it.
    pub(crate) fn corrupt(tree: &'static str, e: &CborError) -> VaultError {
        VaultError::Corrupt {
            tree,
            detail: describe_cbor(e),
        }
    }
}

/// Describes a CBOR error without its detail text: serde's messages may quote the value that
/// failed, and values here are patient data.
pub(crate) fn describe_cbor(e: &CborError) -> String {
    match e {
        CborError::TooLarge { len, limit } => format!("{len} bytes, over the limit of {limit}"),
        CborError::Malformed(_) => "malformed CBOR or wrong shape".to_string(),
        CborError::TrailingBytes(n) => format!("{n} trailing bytes"),
        CborError::Encode(_) => "could not be encoded".to_string(),
    }
}

/// What is wrong in a control file (or in the table header against it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlProblem {
    #[error("the header must be `{expected}`")]
    BadHeader { expected: &'static str },
    #[error("expected {expected} fields, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("empty")]
    Empty,
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("not CSV the reader can follow")]
    NotCsv,
    #[error("{0:?} is not a hub (time, person, object, location, event; `hub_person` or `Person`)")]
    UnknownHub(String),
    #[error("hub {hub} is listed twice (first on line {first_line})")]
    DuplicateHub { hub: HubKind, first_line: u64 },
    #[error("the hub control file has no Person hub: the patient's business key links rows to it")]
    NoPersonHub,
    #[error("{name:?} breaks the satellite naming convention sat_<hub>_<major>_<minor>: {why}")]
    BadSatelliteName { name: String, why: &'static str },
    #[error(
        "{0:?} is neither empty, a hub (hub_<hub>) nor a satellite (sat_<hub>_<major>_<minor>)"
    )]
    BadDestination(String),
    #[error(
        "{0:?} is not a hub key: write `<primary key>_hub_<hub>` (as `chi_hub_person`), `hub_<hub>`, or leave it empty"
    )]
    BadForeignKey(String),
    #[error("column {column} is named twice (first on line {first_line})")]
    DuplicateColumn { column: String, first_line: u64 },
    #[error("column {column} is not in the table")]
    NotInTable { column: String },
    #[error("column {column} of the table is not in the column control file {control_file}")]
    NotInControl {
        column: String,
        control_file: String,
    },
    #[error("satellite {satellite} hangs off {hub}, which the hub control file does not list")]
    HubNotDeclared { satellite: String, hub: HubKind },
    #[error("foreign key {foreign_key} names {named}, but the satellite hangs off {expected}")]
    ForeignKeyHub {
        foreign_key: String,
        named: HubKind,
        expected: HubKind,
    },
    #[error("foreign key {foreign_key}: the primary key of {hub} is {primary_key}")]
    ForeignKeyColumn {
        foreign_key: String,
        hub: HubKind,
        primary_key: String,
    },
    #[error("column {column} is the primary key of {hub}: its destination must be empty or {hub}")]
    KeyColumnInSatellite { column: String, hub: HubKind },
    #[error(
        "column {column} has no satellite, but it is not the primary key of any hub in the hub control file"
    )]
    NotAKeyColumn { column: String },
    #[error("destination {hub} does not have column {column} as its primary key")]
    WrongKeyHub { column: String, hub: HubKind },
    #[error("{0:?} is not a tag: 1 to 64 letters, digits, spaces, '_', '-' or '.'")]
    BadTag(String),
    #[error("more than {limit} {what}")]
    TooMany { what: &'static str, limit: u64 },
    #[error("longer than {limit} bytes")]
    TooLong { limit: u64 },
}

/// Why a table row was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BadRowReason {
    /// The row does not have as many fields as the header.
    FieldCount { expected: u64, found: u64 },
    /// A field is not valid UTF-8.
    NotUtf8 { column: String },
    /// A value does not parse as its column's inferred type.
    NotOfType {
        column: String,
        expected: ColumnType,
    },
    /// A hub's business key is empty.
    MissingBusinessKey { column: String, hub: HubKind },
}

impl fmt::Display for BadRowReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRowReason::FieldCount { expected, found } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            BadRowReason::NotUtf8 { column } => write!(f, "column {column}: not valid UTF-8"),
            BadRowReason::NotOfType { column, expected } => {
                write!(f, "column {column}: not {}", expected.with_article())
            }
            BadRowReason::MissingBusinessKey { column, hub } => {
                write!(f, "column {column}: missing business key of {hub}")
            }
        }
    }
}

/// A refused row: its line in the table (the header is line 1) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRow {
    pub line: u64,
    pub reason: BadRowReason,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}
