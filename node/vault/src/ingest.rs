//! Ingestion: Retrieve, Assess and Process (seed 000, chapter 5) of one CSV table, streaming.
//!
//! ```text
//!  table (impl Read) ──> Tee: SHA-256, byte and record-length limits, raw chunks (64 KiB)
//!      │                      │
//!      v                      v
//!  csv reader, one record at a time         staging tree vault_stage_<id>
//!      │ shape: field count, UTF-8,           'R' raw chunks
//!      │        business keys present         'H' new hubs      (keys are the target keys,
//!      v                                      'L' new links      so staging dedups rows)
//!  first `infer_rows` rows held ──> types     'S' new satellite rows
//!      │ (bounded buffer)        fixed              │
//!      v                                            │
//!  each row: parse to its column's type ─ bad ─> listed (line, reason); by policy refuse all
//!      │ ok: profile, hubs, link, satellites ───────┘
//!      v
//!  end of file, policy passed
//!      │ commit point: vault_ingests[id] = Applying + report (one insert), flush
//!      v
//!  apply the staging tree to vault_hubs / _links / _sats / _raw in batches of 1024,
//!  catalog; vault_ingests[id] = Committed; flush; drop the staging tree
//! ```
//!
//! Why a staging tree and a commit record rather than one sled transaction: a sled transaction
//! keeps all its writes in memory until it commits, and a table may be larger than memory.
//! Rows are staged as they stream (bounded memory), nothing outside the staging tree changes
//! until the whole file has passed, and the commit point is one atomic insert. A crash before
//! it leaves only a staging tree, which [`crate::Vault::open`] drops; a crash after it is
//! finished on open (applying is idempotent: staged keys are the final keys). While an ingest
//! is being applied, the reads that assemble a patient's data wait (a read-write lock), so no
//! bundle ever holds half an ingest. Ingests run one at a time.
//!
//! Why one pass (`impl Read`, no `Seek`): tables arrive from files, pipes and HTTP bodies
//! alike, and the raw zone's SHA-256 and copy are taken on the same pass. Types are inferred
//! from the first rows (see [`crate::infer`]), so the only rows held in memory are those
//! first `infer_rows` rows: memory is bounded by `infer_rows * max_line_bytes` plus the
//! profilers' fixed bounds, whatever the file size. [`IngestReport::peak_buffered_rows`]
//! reports the most rows held.

use std::collections::VecDeque;
use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sphr_crypto::hash::Hash32;

use crate::TREE_CATALOG;
use crate::control::{ColumnControl, HubControl, Plan};
use crate::error::{BadRow, BadRowReason, ControlProblem, VaultError};
use crate::infer::{ColumnType, Inference};
use crate::model::{
    Field, HubKind, HubRecord, HubRef, LinkRecord, SatKey, SatRecord, check_source_name, hash_diff,
    hub_key, key_serde, link_key, normalise_business_key,
};
use crate::profile::{ColumnProfiler, IngestProfile};
use crate::vault::{SatelliteDef, SourceCatalog, Vault, encode};

/// Staging trees are named `vault_stage_<ingest id, 20 digits>`.
pub(crate) const STAGE_PREFIX: &str = "vault_stage_";
/// Raw zone chunk size.
pub const RAW_CHUNK_BYTES: usize = 64 << 10;
/// Progress is reported every this many rows.
pub const PROGRESS_EVERY_ROWS: u64 = 1024;
/// Entries per batch when applying a staging tree.
const APPLY_BATCH: usize = 1024;

const TAG_RAW: u8 = b'R';
const TAG_HUB: u8 = b'H';
const TAG_LINK: u8 = b'L';
const TAG_SAT: u8 = b'S';

/// How to ingest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestOptions {
    /// Skip bad rows (each listed in the report) instead of refusing the file (the default).
    pub allow_bad_rows: bool,
    /// Names the table in errors and the report (a path, say).
    pub table_name: String,
    /// Load time of the hubs, links and satellites; now if `None`.
    pub load_time_ms: Option<u64>,
    /// The table's size, if known, passed on to the progress callback.
    pub size_hint: Option<u64>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            allow_bad_rows: false,
            table_name: "table".to_string(),
            load_time_ms: None,
            size_hint: None,
        }
    }
}

/// Progress of an ingest, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Rows read so far (bad rows included).
    pub rows: u64,
    /// Bytes of the table parsed so far.
    pub bytes: u64,
    /// [`IngestOptions::size_hint`].
    pub total_bytes: Option<u64>,
    /// The last call: the file is read.
    pub done: bool,
}

/// New hub entries of one hub kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubCount {
    pub hub: HubKind,
    pub new: u64,
}

/// What an ingest did. Holds no patient data but in `profile`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    pub ingest_id: u64,
    pub source: String,
    pub table_name: String,
    /// SHA-256 of the raw file, as kept in the raw zone.
    #[serde(with = "key_serde")]
    pub raw_sha256: Hash32,
    pub raw_bytes: u64,
    pub load_time_ms: u64,
    /// Data rows read (the header not counted).
    pub rows_read: u64,
    pub rows_ingested: u64,
    /// Rows skipped under `allow_bad_rows`, each with its line and reason.
    pub bad_rows: Vec<BadRow>,
    pub hubs_new: Vec<HubCount>,
    pub links_new: u64,
    pub satellite_rows_new: u64,
    pub satellites: Vec<SatelliteDef>,
    /// Most rows held in memory at once (the inference sample).
    pub peak_buffered_rows: u64,
    /// The Assess step's column profiles (patient data: stays in the vault).
    pub profile: IngestProfile,
}

impl IngestReport {
    /// Pretty JSON.
    pub fn to_json(&self) -> Result<String, VaultError> {
        serde_json::to_string_pretty(self).map_err(|e| VaultError::Json(e.to_string()))
    }
}

impl std::fmt::Display for IngestReport {
    /// A summary with no patient data (print the profile on its own).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "ingest {} of {} from {}: {} of {} rows ingested, {} bytes, sha256 {}",
            self.ingest_id,
            self.source,
            self.table_name,
            self.rows_ingested,
            self.rows_read,
            self.raw_bytes,
            self.raw_sha256
        )?;
        let hubs: Vec<String> = self
            .hubs_new
            .iter()
            .map(|h| format!("{} {}", h.hub, h.new))
            .collect();
        writeln!(
            f,
            "new: {}; links {}; satellite rows {}",
            hubs.join(", "),
            self.links_new,
            self.satellite_rows_new
        )?;
        for s in &self.satellites {
            writeln!(
                f,
                "satellite {} ({}): {}",
                s.name,
                s.hub,
                s.columns.join(", ")
            )?;
        }
        for b in &self.bad_rows {
            writeln!(f, "skipped {b}")?;
        }
        Ok(())
    }
}

/// Where an ingest stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngestState {
    /// Past its commit point, being applied (finished on open after a crash).
    Applying,
    /// Applied: visible.
    Committed,
}

/// An ingest as stored in `vault_ingests`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IngestRecord {
    pub state: IngestState,
    pub report: IngestReport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TeeFailure {
    TooLarge,
    RecordTooLong { line: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// Reads the table once for everyone: hashes it, counts it, keeps its raw chunks, and enforces
/// the size and record-length limits before the CSV reader buffers anything past them. Follows
/// quoting as the CSV reader does (a quote opens a quoted field only at a field's start), so a
/// quoted newline does not end a record.
struct Tee<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    max_bytes: u64,
    keep: bool,
    chunk: Vec<u8>,
    ready: Vec<Vec<u8>>,
    quote: QuoteState,
    record_bytes: u64,
    max_record_bytes: u64,
    line: u64,
    record_line: u64,
    /// Between records (blank lines are skipped, as the CSV reader skips them).
    between_records: bool,
    /// The line each record read ahead starts on, oldest first: the CSV reader's own
    /// positions point at the blank lines before a record, not at the record. Holds at most
    /// the records in the reader's buffer.
    starts: VecDeque<u64>,
    failure: Option<TeeFailure>,
}

impl<R: Read> Tee<R> {
    fn new(inner: R, max_bytes: u64, max_record_bytes: u64) -> Self {
        Tee {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            max_bytes,
            keep: true,
            chunk: Vec::with_capacity(RAW_CHUNK_BYTES),
            ready: Vec::new(),
            quote: QuoteState::FieldStart,
            record_bytes: 0,
            max_record_bytes,
            line: 1,
            record_line: 1,
            between_records: true,
            starts: VecDeque::new(),
            failure: None,
        }
    }

    fn fail(&mut self, f: TeeFailure) -> io::Error {
        self.failure = Some(f);
        io::Error::other("vault input limit")
    }

    fn scan(&mut self, data: &[u8]) -> Result<(), TeeFailure> {
        for &b in data {
            if self.between_records && b != b'\n' && b != b'\r' {
                self.between_records = false;
                self.starts.push_back(self.line);
            }
            let ends_record = matches!(b, b'\n' | b'\r')
                && matches!(
                    self.quote,
                    QuoteState::FieldStart | QuoteState::Unquoted | QuoteState::QuoteInQuoted
                );
            self.quote = match (self.quote, b) {
                (_, b'\n' | b'\r') if ends_record => QuoteState::FieldStart,
                (QuoteState::FieldStart, b'"') => QuoteState::Quoted,
                (QuoteState::FieldStart | QuoteState::Unquoted, b',') => QuoteState::FieldStart,
                (QuoteState::FieldStart | QuoteState::Unquoted, _) => QuoteState::Unquoted,
                (QuoteState::Quoted, b'"') => QuoteState::QuoteInQuoted,
                (QuoteState::Quoted, _) => QuoteState::Quoted,
                (QuoteState::QuoteInQuoted, b'"') => QuoteState::Quoted,
                (QuoteState::QuoteInQuoted, b',') => QuoteState::FieldStart,
                (QuoteState::QuoteInQuoted, _) => QuoteState::Unquoted,
            };
            if b == b'\n' {
                self.line += 1;
            }
            if ends_record {
                self.between_records = true;
                self.record_bytes = 0;
                self.record_line = self.line;
                continue;
            }
            self.record_bytes += 1;
            if self.record_bytes > self.max_record_bytes {
                return Err(TeeFailure::RecordTooLong {
                    line: self.record_line,
                });
            }
        }
        Ok(())
    }

    /// The last partial chunk and the file's digest and size.
    fn finish(&mut self) -> (Option<Vec<u8>>, Hash32, u64) {
        let digest = Hash32(std::mem::take(&mut self.hasher).finalize().into());
        let rest = (!self.chunk.is_empty()).then(|| std::mem::take(&mut self.chunk));
        (rest, digest, self.bytes)
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::other("vault input limit"));
        }
        let n = self.inner.read(buf)?;
        let data = &buf[..n];
        self.bytes += n as u64;
        if self.bytes > self.max_bytes {
            return Err(self.fail(TeeFailure::TooLarge));
        }
        if let Err(f) = self.scan(data) {
            return Err(self.fail(f));
        }
        self.hasher.update(data);
        if self.keep {
            self.chunk.extend_from_slice(data);
            while self.chunk.len() >= RAW_CHUNK_BYTES {
                let rest = self.chunk.split_off(RAW_CHUNK_BYTES);
                self.ready.push(std::mem::replace(&mut self.chunk, rest));
            }
        }
        Ok(n)
    }
}

/// One ingest in progress.
struct Run<'v> {
    vault: &'v Vault,
    source: String,
    table_name: String,
    ingest_id: u64,
    load_time_ms: u64,
    stage: sled::Tree,
    plan: Plan,
    types: Vec<ColumnType>,
    profilers: Vec<ColumnProfiler>,
    allow_bad_rows: bool,
    refused: bool,
    bad_rows: Vec<BadRow>,
    bad_count: u64,
    rows_read: u64,
    rows_ingested: u64,
    hubs_new: [u64; 5],
    links_new: u64,
    sats_new: u64,
    raw_chunks: u64,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn staged(tag: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(tag);
    k.extend_from_slice(key);
    k
}

impl Run<'_> {
    /// Field count, UTF-8, business keys present: what can be checked before types are known.
    fn shape(&self, record: &csv::ByteRecord) -> Result<Vec<String>, BadRowReason> {
        let expected = self.plan.header.len();
        if record.len() != expected {
            return Err(BadRowReason::FieldCount {
                expected: expected as u64,
                found: record.len() as u64,
            });
        }
        let mut fields = Vec::with_capacity(expected);
        for (i, raw) in record.iter().enumerate() {
            let text = std::str::from_utf8(raw).map_err(|_| BadRowReason::NotUtf8 {
                column: self.plan.header[i].clone(),
            })?;
            fields.push(text.trim().to_string());
        }
        for &(hub, col) in &self.plan.hub_keys {
            if fields[col].is_empty() {
                return Err(BadRowReason::MissingBusinessKey {
                    column: self.plan.header[col].clone(),
                    hub,
                });
            }
        }
        Ok(fields)
    }

    fn bad(&mut self, line: u64, reason: BadRowReason) -> Result<(), VaultError> {
        self.bad_count += 1;
        if !self.allow_bad_rows {
            self.refused = true;
        } else if self.bad_rows.len() >= self.vault.config.limits.max_bad_rows {
            return Err(VaultError::TooManyBadRows {
                file: self.table_name.clone(),
                limit: self.vault.config.limits.max_bad_rows,
            });
        }
        if self.bad_rows.len() < self.vault.config.limits.max_bad_rows {
            self.bad_rows.push(BadRow { line, reason });
        }
        Ok(())
    }

    fn infer(&mut self, sample: &[(u64, Vec<String>)]) {
        let mut inf = vec![Inference::default(); self.plan.header.len()];
        for (_, fields) in sample {
            for (i, v) in fields.iter().enumerate() {
                inf[i].observe(v);
            }
        }
        self.types = inf.into_iter().map(Inference::finish).collect();
        self.profilers = self
            .plan
            .header
            .iter()
            .zip(&self.types)
            .map(|(name, t)| ColumnProfiler::new(name.clone(), *t))
            .collect();
    }

    /// Parses a well-shaped row to its types, then profiles and stages it.
    fn process(&mut self, line: u64, fields: &[String]) -> Result<(), VaultError> {
        let mut values = Vec::with_capacity(fields.len());
        for (i, raw) in fields.iter().enumerate() {
            if raw.is_empty() {
                values.push(crate::model::Value::Null);
                continue;
            }
            match self.types[i].parse(raw) {
                Some(v) => values.push(v),
                None => {
                    return self.bad(
                        line,
                        BadRowReason::NotOfType {
                            column: self.plan.header[i].clone(),
                            expected: self.types[i],
                        },
                    );
                }
            }
        }
        if self.refused {
            // The file is refused already: only keep looking for bad rows.
            return Ok(());
        }
        self.rows_ingested += 1;
        for (p, v) in self.profilers.iter_mut().zip(&values) {
            p.observe(v);
        }
        // Hubs.
        let mut refs: Vec<HubRef> = Vec::with_capacity(self.plan.hub_keys.len());
        let mut patient = None;
        for &(hub, col) in &self.plan.hub_keys {
            let key = hub_key(hub, &fields[col]);
            if hub == HubKind::Person {
                patient = Some(key);
            }
            refs.push(HubRef { kind: hub, key });
            let skey = staged(TAG_HUB, key.as_bytes());
            if !self.stage.contains_key(&skey)? && !self.vault.hubs.contains_key(key.as_bytes())? {
                let rec = HubRecord {
                    kind: hub,
                    business_key: normalise_business_key(&fields[col]),
                    record_source: self.source.clone(),
                    load_time_ms: self.load_time_ms,
                    ingest_id: self.ingest_id,
                };
                self.stage.insert(skey, encode(&rec)?)?;
                self.hubs_new[hub as usize] += 1;
            }
        }
        let Some(patient) = patient else {
            return Err(VaultError::Control {
                file: self.table_name.clone(),
                line: None,
                field: "hub".to_string(),
                problem: ControlProblem::NoPersonHub,
            });
        };
        // The row's link: the hubs it touches (its unit of work).
        let link = if refs.len() >= 2 {
            let key = link_key(&refs);
            let skey = staged(TAG_LINK, key.as_bytes());
            if !self.stage.contains_key(&skey)? && !self.vault.links.contains_key(key.as_bytes())? {
                let rec = LinkRecord {
                    hubs: refs.clone(),
                    record_source: self.source.clone(),
                    load_time_ms: self.load_time_ms,
                    ingest_id: self.ingest_id,
                };
                self.stage.insert(skey, encode(&rec)?)?;
                self.links_new += 1;
            }
            Some(key)
        } else {
            None
        };
        // Satellites: one row per satellite with at least one value.
        for sat in &self.plan.satellites {
            if sat.columns.iter().all(|&c| values[c].is_null()) {
                continue;
            }
            let fields: Vec<Field> = sat
                .columns
                .iter()
                .map(|&c| Field {
                    name: self.plan.header[c].clone(),
                    value: values[c].clone(),
                })
                .collect();
            let parent = refs
                .iter()
                .find(|r| r.kind == sat.name.hub())
                .map(|r| r.key)
                .ok_or_else(|| VaultError::Control {
                    file: self.table_name.clone(),
                    line: None,
                    field: "destination".to_string(),
                    problem: ControlProblem::HubNotDeclared {
                        satellite: sat.name.to_string(),
                        hub: sat.name.hub(),
                    },
                })?;
            let key = SatKey {
                patient,
                source: self.source.clone(),
                satellite: sat.name.to_string(),
                parent,
                hash_diff: hash_diff(&fields)?,
            }
            .encode();
            let skey = staged(TAG_SAT, &key);
            if !self.stage.contains_key(&skey)? && !self.vault.sats.contains_key(&key)? {
                let rec = SatRecord {
                    hub: sat.name.hub(),
                    parent,
                    link,
                    load_time_ms: self.load_time_ms,
                    ingest_id: self.ingest_id,
                    line,
                    fields,
                };
                self.stage.insert(skey, encode(&rec)?)?;
                self.sats_new += 1;
            }
        }
        Ok(())
    }

    fn stage_raw(&mut self, chunk: Vec<u8>) -> Result<(), VaultError> {
        if self.refused {
            return Ok(());
        }
        let mut key = Vec::with_capacity(17);
        key.push(TAG_RAW);
        key.extend_from_slice(&self.ingest_id.to_be_bytes());
        key.extend_from_slice(&self.raw_chunks.to_be_bytes());
        self.stage.insert(key, chunk)?;
        self.raw_chunks += 1;
        Ok(())
    }
}

/// A CSV reader error, with the tee's limit failure if that is what caused it.
fn csv_error(
    table_name: &str,
    limits: &crate::Limits,
    e: csv::Error,
    failure: Option<TeeFailure>,
) -> VaultError {
    match failure {
        Some(TeeFailure::TooLarge) => VaultError::Limit {
            what: format!("{table_name}: file size"),
            line: None,
            limit: limits.max_table_bytes,
        },
        Some(TeeFailure::RecordTooLong { line }) => VaultError::Limit {
            what: format!("{table_name}: record length"),
            line: Some(line),
            limit: limits.max_line_bytes,
        },
        None => match e.into_kind() {
            csv::ErrorKind::Io(source) => VaultError::Io {
                what: table_name.to_string(),
                source,
            },
            _ => VaultError::Csv {
                file: table_name.to_string(),
                line: None,
                detail: "not CSV the reader can follow".to_string(),
            },
        },
    }
}

impl Vault {
    /// Tests: fails the apply before its third tree when asked to, as a disk error would.
    #[cfg(test)]
    fn injected_failure(&self, step: usize) -> Result<(), VaultError> {
        use std::sync::atomic::Ordering;
        if step == 2 && self.fail_next_apply.swap(false, Ordering::SeqCst) {
            return Err(VaultError::Corrupt {
                tree: "vault_stage",
                detail: "injected failure".to_string(),
            });
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn injected_failure(&self, _step: usize) -> Result<(), VaultError> {
        Ok(())
    }

    /// Ingests one CSV table from `source` (a name such as `smr01`) into the vault: Retrieve
    /// (raw zone, SHA-256), Assess (types, profile, bad rows) and Process (hubs, links,
    /// satellites), streaming, all or nothing. `progress` is called every
    /// [`PROGRESS_EVERY_ROWS`] rows and once at the end.
    ///
    /// Refused, with nothing written: a bad control file or a table header that does not match
    /// it ([`VaultError::Control`], naming file, line and field); any bad row unless
    /// `options.allow_bad_rows` ([`VaultError::BadRows`], each with its line and reason);
    /// more bad rows than [`crate::Limits::max_bad_rows`]; any limit passed.
    pub fn ingest(
        &self,
        source: &str,
        table: impl Read,
        columns: &ColumnControl,
        hubs: &HubControl,
        options: &IngestOptions,
        mut progress: impl FnMut(Progress),
    ) -> Result<IngestReport, VaultError> {
        check_source_name(source)?;
        let _one_at_a_time = self.lock_ingest();
        let limits = self.config.limits.clone();
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(64 << 10)
            .from_reader(Tee::new(
                table,
                limits.max_table_bytes,
                limits.max_line_bytes,
            ));
        let mut record = csv::ByteRecord::new();

        // Header, then the plan: all control checks before anything is written.
        let read_header = csv.read_byte_record(&mut record);
        let table_name = options.table_name.clone();
        let header_failure = csv.get_ref().failure;
        let has_header = match read_header {
            Ok(more) => more,
            Err(e) => return Err(csv_error(&table_name, &limits, e, header_failure)),
        };
        if !has_header {
            return Err(VaultError::EmptyTable { file: table_name });
        }
        let header_line = csv.get_mut().starts.pop_front().unwrap_or(1);
        let mut header = Vec::with_capacity(record.len());
        for raw in record.iter() {
            let name = std::str::from_utf8(raw).map_err(|_| VaultError::Control {
                file: table_name.clone(),
                line: Some(1),
                field: "header".to_string(),
                problem: ControlProblem::NotUtf8,
            })?;
            header.push(name.trim().trim_start_matches('\u{feff}').to_string());
        }
        let plan = Plan::build(&table_name, header_line, header, columns, hubs, &limits)?;

        let ingest_id = self.db.generate_id()?;
        let stage_name = format!("{STAGE_PREFIX}{ingest_id:020}");
        let stage = self.db.open_tree(&stage_name)?;
        let mut run = Run {
            vault: self,
            source: source.to_string(),
            table_name: table_name.clone(),
            ingest_id,
            load_time_ms: options.load_time_ms.unwrap_or_else(now_ms),
            stage,
            plan,
            types: Vec::new(),
            profilers: Vec::new(),
            allow_bad_rows: options.allow_bad_rows,
            refused: false,
            bad_rows: Vec::new(),
            bad_count: 0,
            rows_read: 0,
            rows_ingested: 0,
            hubs_new: [0; 5],
            links_new: 0,
            sats_new: 0,
            raw_chunks: 0,
        };
        let result = self.stream(&mut run, &mut csv, &mut record, options, &mut progress);
        let result = match result {
            Ok(report) => self.commit(&run.stage, report),
            Err(e) => Err(e),
        };
        let stage = run.stage;
        drop(stage);
        match result {
            Ok(report) => {
                if let Err(e) = self.db.drop_tree(stage_name.as_bytes()) {
                    // Harmless: dropped on the next open.
                    tracing::warn!(target: "sphr::vault", ingest_id, error = %e, "could not drop a staging tree");
                }
                tracing::info!(
                    target: "sphr::vault",
                    ingest_id,
                    source,
                    rows = report.rows_ingested,
                    skipped = report.bad_rows.len(),
                    satellite_rows = report.satellite_rows_new,
                    sha256 = %report.raw_sha256,
                    "ingest committed"
                );
                Ok(report)
            }
            Err(e) => {
                // Committed ingests are finished by recovery; anything else is discarded.
                let committed = matches!(
                    self.ingest_record_raw(ingest_id),
                    Ok(Some(r)) if r.state == IngestState::Applying
                );
                if committed {
                    self.mark_interrupted();
                } else if let Err(drop_err) = self.db.drop_tree(stage_name.as_bytes()) {
                    tracing::warn!(target: "sphr::vault", ingest_id, error = %drop_err, "could not drop a staging tree");
                }
                tracing::info!(target: "sphr::vault", ingest_id, source, error = %e, "ingest refused");
                Err(e)
            }
        }
    }

    fn stream<R: Read>(
        &self,
        run: &mut Run<'_>,
        csv: &mut csv::Reader<Tee<R>>,
        record: &mut csv::ByteRecord,
        options: &IngestOptions,
        progress: &mut impl FnMut(Progress),
    ) -> Result<IngestReport, VaultError> {
        let infer_rows = self.config.limits.infer_rows;
        let mut sample: Vec<(u64, Vec<String>)> = Vec::new();
        let mut inferred = false;
        let mut peak_buffered = 0usize;
        loop {
            let more = match csv.read_byte_record(record) {
                Ok(more) => more,
                Err(e) => {
                    let failure = csv.get_ref().failure;
                    return Err(csv_error(&run.table_name, &self.config.limits, e, failure));
                }
            };
            let ready = std::mem::take(&mut csv.get_mut().ready);
            for chunk in ready {
                run.stage_raw(chunk)?;
            }
            if !more {
                break;
            }
            run.rows_read += 1;
            let fallback = record.position().map_or(0, |p| p.line());
            let line = csv.get_mut().starts.pop_front().unwrap_or(fallback);
            match run.shape(record) {
                Err(reason) => run.bad(line, reason)?,
                Ok(fields) if inferred => run.process(line, &fields)?,
                Ok(fields) => {
                    sample.push((line, fields));
                    peak_buffered = peak_buffered.max(sample.len());
                    if sample.len() >= infer_rows {
                        run.infer(&sample);
                        inferred = true;
                        for (line, fields) in std::mem::take(&mut sample) {
                            run.process(line, &fields)?;
                        }
                    }
                }
            }
            if run.refused {
                csv.get_mut().keep = false;
            }
            if run.rows_read.is_multiple_of(PROGRESS_EVERY_ROWS) {
                progress(Progress {
                    rows: run.rows_read,
                    bytes: csv.position().byte(),
                    total_bytes: options.size_hint,
                    done: false,
                });
            }
        }
        if !inferred {
            run.infer(&sample);
            for (line, fields) in std::mem::take(&mut sample) {
                run.process(line, &fields)?;
            }
        }
        let (rest, raw_sha256, raw_bytes) = csv.get_mut().finish();
        if let Some(chunk) = rest {
            run.stage_raw(chunk)?;
        }
        progress(Progress {
            rows: run.rows_read,
            bytes: csv.position().byte(),
            total_bytes: options.size_hint,
            done: true,
        });
        if run.refused {
            return Err(VaultError::BadRows {
                file: run.table_name.clone(),
                count: run.bad_count,
                rows: std::mem::take(&mut run.bad_rows),
            });
        }
        let profilers = std::mem::take(&mut run.profilers);
        let satellites = run
            .plan
            .satellites
            .iter()
            .map(|s| SatelliteDef {
                name: s.name.to_string(),
                hub: s.name.hub(),
                columns: s
                    .columns
                    .iter()
                    .map(|&c| run.plan.header[c].clone())
                    .collect(),
            })
            .collect();
        Ok(IngestReport {
            ingest_id: run.ingest_id,
            source: run.source.clone(),
            table_name: run.table_name.clone(),
            raw_sha256,
            raw_bytes,
            load_time_ms: run.load_time_ms,
            rows_read: run.rows_read,
            rows_ingested: run.rows_ingested,
            bad_rows: std::mem::take(&mut run.bad_rows),
            hubs_new: run
                .plan
                .hub_keys
                .iter()
                .map(|&(hub, _)| HubCount {
                    hub,
                    new: run.hubs_new[hub as usize],
                })
                .collect(),
            links_new: run.links_new,
            satellite_rows_new: run.sats_new,
            satellites,
            peak_buffered_rows: peak_buffered as u64,
            profile: IngestProfile {
                source: run.source.clone(),
                ingest_id: run.ingest_id,
                rows: run.rows_ingested,
                columns: profilers.into_iter().map(ColumnProfiler::finish).collect(),
            },
        })
    }

    /// The commit point, then the apply.
    fn commit(&self, stage: &sled::Tree, report: IngestReport) -> Result<IngestReport, VaultError> {
        let id = report.ingest_id.to_be_bytes();
        let mut record = IngestRecord {
            state: IngestState::Applying,
            report,
        };
        self.ingests.insert(id, encode(&record)?)?;
        self.db.flush()?;
        {
            let _writer = self.lock_apply();
            self.apply_stage(stage, &record.report)?;
            record.state = IngestState::Committed;
            self.ingests.insert(id, encode(&record)?)?;
        }
        self.db.flush()?;
        Ok(record.report)
    }

    /// Copies a staging tree into the vault trees in batches and merges the source's catalog.
    /// Idempotent: run again after a crash, it writes the same keys with the same values.
    pub(crate) fn apply_stage(
        &self,
        stage: &sled::Tree,
        report: &IngestReport,
    ) -> Result<(), VaultError> {
        let targets = [
            (TAG_HUB, &self.hubs),
            (TAG_LINK, &self.links),
            (TAG_SAT, &self.sats),
            (TAG_RAW, &self.raw),
        ];
        let mut batches: Vec<sled::Batch> =
            targets.iter().map(|_| sled::Batch::default()).collect();
        let mut pending = 0usize;
        for item in stage.iter() {
            let (k, v) = item?;
            let Some((&tag, key)) = k.split_first() else {
                continue;
            };
            let Some(slot) = targets.iter().position(|(t, _)| *t == tag) else {
                return Err(VaultError::Corrupt {
                    tree: "vault_stage",
                    detail: "unknown staging tag".to_string(),
                });
            };
            batches[slot].insert(key, v);
            pending += 1;
            if pending >= APPLY_BATCH {
                for (batch, (_, tree)) in batches.iter_mut().zip(&targets) {
                    tree.apply_batch(std::mem::take(batch))?;
                }
                pending = 0;
            }
        }
        for (i, (batch, (_, tree))) in batches.iter_mut().zip(&targets).enumerate() {
            self.injected_failure(i)?;
            tree.apply_batch(std::mem::take(batch))?;
        }
        // Catalog: the union of the source's satellites and columns, and the ingest.
        let mut catalog: SourceCatalog = match self.catalog.get(report.source.as_bytes())? {
            Some(v) => self.decode(TREE_CATALOG, &v)?,
            None => SourceCatalog::default(),
        };
        for s in &report.satellites {
            let def = catalog
                .satellites
                .entry(s.name.clone())
                .or_insert_with(|| SatelliteDef {
                    name: s.name.clone(),
                    hub: s.hub,
                    columns: Vec::new(),
                });
            for c in &s.columns {
                if !def.columns.contains(c) {
                    def.columns.push(c.clone());
                }
            }
        }
        if !catalog.ingests.contains(&report.ingest_id) {
            catalog.ingests.push(report.ingest_id);
        }
        self.catalog
            .insert(report.source.as_bytes(), encode(&catalog)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::VaultConfig;
    use crate::{Limits, model::patient_key};
    use std::collections::BTreeMap;
    use std::path::Path;

    type Dump = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

    fn dump(db: &sled::Db) -> Dump {
        let mut out = Dump::new();
        for name in db.tree_names() {
            if name.starts_with(b"vault_") {
                let entries = db
                    .open_tree(&name)
                    .unwrap()
                    .iter()
                    .map(|e| {
                        let (k, v) = e.unwrap();
                        (k.to_vec(), v.to_vec())
                    })
                    .collect();
                out.insert(name.to_vec(), entries);
            }
        }
        out
    }

    /// Ingests the SMR01 fixture into a fresh database; with `fail`, the apply fails half way
    /// (after the commit point) and the vault is reopened, which must finish it.
    fn ingest_fixture(fail: bool) -> Dump {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let read = |n: &str| std::fs::read(fixtures.join(n)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let vault = Vault::open(&db, VaultConfig::new("ustan")).unwrap();
        let limits = Limits::default();
        let c = ColumnControl::parse("c", read("smr01_columns.csv").as_slice(), &limits).unwrap();
        let h = HubControl::parse("h", read("smr01_hubs.csv").as_slice(), &limits).unwrap();
        let opts = IngestOptions {
            load_time_ms: Some(1),
            ..IngestOptions::default()
        };
        vault
            .fail_next_apply
            .store(fail, std::sync::atomic::Ordering::SeqCst);
        let result = vault.ingest("smr01", read("smr01.csv").as_slice(), &c, &h, &opts, |_| {});
        if fail {
            assert!(result.is_err());
            // Half applied: reads that assemble patient data refuse rather than see it.
            assert!(vault.has_patient("0101501234").is_err());
            let record = vault.ingests().unwrap().pop().unwrap();
            assert_eq!(record.state, IngestState::Applying);
            drop(vault);
            let vault = Vault::open(&db, VaultConfig::new("ustan")).unwrap();
            assert!(vault.has_patient("0101501234").unwrap());
            let record = vault.ingests().unwrap().pop().unwrap();
            assert_eq!(record.state, IngestState::Committed);
        } else {
            let report = result.unwrap();
            assert_eq!(report.rows_ingested, 20);
            assert!(vault.hub(&patient_key("0101501234")).unwrap().is_some());
        }
        dump(&db)
    }

    #[test]
    fn an_apply_interrupted_after_the_commit_point_is_finished_on_open() {
        let clean = ingest_fixture(false);
        let recovered = ingest_fixture(true);
        assert!(clean.keys().all(|k| !k.starts_with(b"vault_stage_")));
        assert_eq!(recovered, clean);
    }

    fn tee_read(data: &[u8], max_bytes: u64, max_record: u64) -> (Result<Vec<u8>, ()>, Tee<&[u8]>) {
        let mut tee = Tee::new(data, max_bytes, max_record);
        let mut out = Vec::new();
        let r = tee.read_to_end(&mut out).map(|_| out).map_err(|_| ());
        (r, tee)
    }

    #[test]
    fn tee_hashes_and_chunks() {
        let data = vec![b'a'; RAW_CHUNK_BYTES * 2 + 10]
            .chunks(100)
            .flat_map(|c| {
                let mut v = c.to_vec();
                v.push(b'\n');
                v
            })
            .collect::<Vec<u8>>();
        let (r, mut tee) = tee_read(&data, u64::MAX, 1000);
        assert_eq!(r.unwrap(), data);
        let (rest, digest, bytes) = tee.finish();
        let mut all: Vec<u8> = tee.ready.concat();
        all.extend(rest.unwrap_or_default());
        assert_eq!(all, data);
        assert_eq!(bytes, data.len() as u64);
        assert_eq!(digest, sphr_crypto::hash::sha256(&data));
    }

    #[test]
    fn tee_knows_where_records_start() {
        let (r, mut tee) = tee_read(b"h\r\n\r\na,\"x\ny\"\n\n\nb\nc", 1000, 100);
        assert!(r.is_ok());
        assert_eq!(tee.starts.drain(..).collect::<Vec<_>>(), [1, 3, 7, 8]);
    }

    #[test]
    fn tee_limits() {
        let (r, tee) = tee_read(b"a,b\nc,d\n", 5, 100);
        assert!(r.is_err());
        assert_eq!(tee.failure, Some(TeeFailure::TooLarge));
        // The third line is too long.
        let (r, tee) = tee_read(b"a,b\nc,d\neeeeeeeeee\n", 100, 5);
        assert!(r.is_err());
        assert_eq!(tee.failure, Some(TeeFailure::RecordTooLong { line: 3 }));
        // A quoted newline does not end the record; a quote inside an unquoted field is literal.
        let (r, tee) = tee_read(b"a,\"b\nbbbb\"\nc\n", 100, 5);
        assert!(r.is_err());
        assert_eq!(tee.failure, Some(TeeFailure::RecordTooLong { line: 1 }));
        let (r, _) = tee_read(b"5'11\",x\nab\ncd\n", 100, 8);
        assert!(r.is_ok());
        let (r, _) = tee_read(b"\"a\"\"b\",c\r\nd\n", 100, 8);
        assert!(r.is_ok());
    }
}
