//! The two control files of seed 000, section 3.3.3, parsed strictly, and the ingest plan they
//! make with a table's header.
//!
//! Column control file (table 3.2), header `name,destination,foreign_key`, one row per table
//! column:
//!
//! | destination | meaning | foreign_key |
//! | --- | --- | --- |
//! | `sat_<hub>_<major>_<minor>` | a descriptive column, stored in that satellite, which hangs off `<hub>` | empty, or the hub key it hangs off in the seed's spelling `<primary key>_hub_<hub>` (`chi_hub_person`) or `hub_<hub>`: checked against the satellite's hub and the hub control file |
//! | empty or `hub_<hub>` | a business key column: the primary key of a hub in the hub control file | empty, or that hub's key as above |
//!
//! Hub control file (table 3.3), header `hub,primary_key`: the hub (`hub_person` as in the
//! seed, or `Person`) and the table column holding its business key. The Person hub is
//! required (the patient's business key, e.g. `chi`, links every row to it). Several hubs may
//! share a key column, as the seed's `hub_time` and `hub_object` share `id`.
//!
//! Every error names the file, the line and the field. Nothing is written before the plan is
//! complete.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use crate::Limits;
use crate::error::{ControlProblem, VaultError};
use crate::model::{HubKind, SatelliteName};

/// Longest column name in bytes.
pub const MAX_COLUMN_NAME_LEN: usize = 128;

/// Where a column goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A business key column (destination empty, or the hub it keys).
    Key(Option<HubKind>),
    /// A descriptive column stored in this satellite.
    Satellite(SatelliteName),
}

/// A foreign key as written in the column control file: the hub, and the key column if the
/// seed's `<primary key>_hub_<hub>` spelling was used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignKey {
    pub raw: String,
    pub key_column: Option<String>,
    pub hub: HubKind,
}

impl ForeignKey {
    fn parse(s: &str) -> Option<ForeignKey> {
        for hub in HubKind::ALL {
            let table = hub.table_name();
            if s == table {
                return Some(ForeignKey {
                    raw: s.to_string(),
                    key_column: None,
                    hub,
                });
            }
            if let Some(prefix) = s.strip_suffix(&table).and_then(|p| p.strip_suffix('_'))
                && !prefix.is_empty()
            {
                return Some(ForeignKey {
                    raw: s.to_string(),
                    key_column: Some(prefix.to_string()),
                    hub,
                });
            }
        }
        None
    }
}

/// One row of the column control file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnEntry {
    pub line: u64,
    pub name: String,
    pub destination: Destination,
    pub foreign_key: Option<ForeignKey>,
}

/// A parsed column control file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnControl {
    file: String,
    entries: Vec<ColumnEntry>,
}

/// One row of the hub control file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubEntry {
    pub line: u64,
    pub hub: HubKind,
    pub primary_key: String,
}

/// A parsed hub control file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubControl {
    file: String,
    entries: Vec<HubEntry>,
}

fn control_err(file: &str, line: Option<u64>, field: &str, problem: ControlProblem) -> VaultError {
    VaultError::Control {
        file: file.to_string(),
        line,
        field: field.to_string(),
        problem,
    }
}

/// Line numbers of records in a CSV text held in memory. The CSV reader's own positions point
/// at the blank lines before a record; this finds the record's first byte and counts the
/// newlines before it, incrementally.
pub(crate) struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The line of the record the reader places at byte `at` (records in order).
    pub(crate) fn line_of(&mut self, at: u64) -> u64 {
        let mut start = usize::try_from(at)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.offset {
            self.line += self.bytes[self.offset..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.offset = start;
        }
        self.line
    }
}

/// Reads a whole control file (bounded) as CSV rows of trimmed fields, with their line numbers;
/// checks the header.
fn read_rows(
    file: &str,
    reader: impl Read,
    header: &[&str],
    expected_header: &'static str,
    limits: &Limits,
) -> Result<Vec<(u64, Vec<String>)>, VaultError> {
    let max = limits.max_control_bytes;
    let mut bytes = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| VaultError::Io {
            what: file.to_string(),
            source,
        })?;
    if bytes.len() as u64 > max {
        return Err(control_err(
            file,
            None,
            "file",
            ControlProblem::TooLong { limit: max },
        ));
    }
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice());
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    let mut lines = LineCounter::new(&bytes);
    loop {
        let more = csv
            .read_byte_record(&mut record)
            .map_err(|_| control_err(file, None, "row", ControlProblem::NotCsv))?;
        if !more {
            break;
        }
        let line = lines.line_of(record.position().map_or(0, |p| p.byte()));
        let mut fields = Vec::with_capacity(record.len());
        for (i, raw) in record.iter().enumerate() {
            let field = header.get(i).copied().unwrap_or("row");
            let text = std::str::from_utf8(raw)
                .map_err(|_| control_err(file, Some(line), field, ControlProblem::NotUtf8))?;
            // A byte order mark (spreadsheet exports) is not part of the first name.
            fields.push(text.trim_start_matches('\u{feff}').trim().to_string());
        }
        // A line of only separators or spaces is a blank line.
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        if first {
            first = false;
            let ok = fields.len() == header.len()
                && fields
                    .iter()
                    .zip(header)
                    .all(|(f, h)| f.eq_ignore_ascii_case(h));
            if !ok {
                return Err(control_err(
                    file,
                    Some(line),
                    "header",
                    ControlProblem::BadHeader {
                        expected: expected_header,
                    },
                ));
            }
            continue;
        }
        if fields.len() != header.len() {
            return Err(control_err(
                file,
                Some(line),
                "row",
                ControlProblem::FieldCount {
                    expected: header.len(),
                    found: fields.len(),
                },
            ));
        }
        rows.push((line, fields));
    }
    if first {
        return Err(control_err(
            file,
            None,
            "header",
            ControlProblem::BadHeader {
                expected: expected_header,
            },
        ));
    }
    Ok(rows)
}

impl ColumnControl {
    /// Parses a column control file; `file` names it in errors.
    pub fn parse(file: &str, reader: impl Read, limits: &Limits) -> Result<Self, VaultError> {
        const HEADER: [&str; 3] = ["name", "destination", "foreign_key"];
        let rows = read_rows(
            file,
            reader,
            &HEADER,
            "name,destination,foreign_key",
            limits,
        )?;
        if rows.len() > limits.max_columns {
            return Err(control_err(
                file,
                rows.get(limits.max_columns).map(|r| r.0),
                "name",
                ControlProblem::TooMany {
                    what: "columns",
                    limit: limits.max_columns as u64,
                },
            ));
        }
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut entries = Vec::with_capacity(rows.len());
        for (line, fields) in rows {
            let [name, destination, foreign_key] =
                <[String; 3]>::try_from(fields).map_err(|_| {
                    control_err(
                        file,
                        Some(line),
                        "row",
                        ControlProblem::FieldCount {
                            expected: 3,
                            found: 0,
                        },
                    )
                })?;
            if name.is_empty() {
                return Err(control_err(file, Some(line), "name", ControlProblem::Empty));
            }
            if name.len() > MAX_COLUMN_NAME_LEN {
                return Err(control_err(
                    file,
                    Some(line),
                    "name",
                    ControlProblem::TooLong {
                        limit: MAX_COLUMN_NAME_LEN as u64,
                    },
                ));
            }
            if let Some(&first_line) = seen.get(&name) {
                return Err(control_err(
                    file,
                    Some(line),
                    "name",
                    ControlProblem::DuplicateColumn {
                        column: name,
                        first_line,
                    },
                ));
            }
            seen.insert(name.clone(), line);
            let destination = if destination.is_empty() {
                Destination::Key(None)
            } else if destination.starts_with("sat_") {
                let sat = SatelliteName::parse(&destination).map_err(|why| {
                    control_err(
                        file,
                        Some(line),
                        "destination",
                        ControlProblem::BadSatelliteName {
                            name: destination.clone(),
                            why,
                        },
                    )
                })?;
                Destination::Satellite(sat)
            } else if let Some(hub) = destination
                .strip_prefix("hub_")
                .and_then(HubKind::from_lowercase)
            {
                Destination::Key(Some(hub))
            } else {
                return Err(control_err(
                    file,
                    Some(line),
                    "destination",
                    ControlProblem::BadDestination(destination),
                ));
            };
            let foreign_key = if foreign_key.is_empty() {
                None
            } else {
                Some(ForeignKey::parse(&foreign_key).ok_or_else(|| {
                    control_err(
                        file,
                        Some(line),
                        "foreign_key",
                        ControlProblem::BadForeignKey(foreign_key.clone()),
                    )
                })?)
            };
            entries.push(ColumnEntry {
                line,
                name,
                destination,
                foreign_key,
            });
        }
        let satellites: std::collections::BTreeSet<&str> = entries
            .iter()
            .filter_map(|e| match &e.destination {
                Destination::Satellite(s) => Some(s.as_str()),
                Destination::Key(_) => None,
            })
            .collect();
        if satellites.len() > limits.max_satellites {
            return Err(control_err(
                file,
                None,
                "destination",
                ControlProblem::TooMany {
                    what: "satellites",
                    limit: limits.max_satellites as u64,
                },
            ));
        }
        Ok(ColumnControl {
            file: file.to_string(),
            entries,
        })
    }

    /// The file name given to [`ColumnControl::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The rows, in file order.
    pub fn entries(&self) -> &[ColumnEntry] {
        &self.entries
    }
}

impl HubControl {
    /// Parses a hub control file; `file` names it in errors.
    pub fn parse(file: &str, reader: impl Read, limits: &Limits) -> Result<Self, VaultError> {
        const HEADER: [&str; 2] = ["hub", "primary_key"];
        let rows = read_rows(file, reader, &HEADER, "hub,primary_key", limits)?;
        let mut entries: Vec<HubEntry> = Vec::with_capacity(rows.len());
        for (line, fields) in rows {
            let [hub, primary_key] = <[String; 2]>::try_from(fields).map_err(|_| {
                control_err(
                    file,
                    Some(line),
                    "row",
                    ControlProblem::FieldCount {
                        expected: 2,
                        found: 0,
                    },
                )
            })?;
            let kind = HubKind::parse_control(&hub).ok_or_else(|| {
                control_err(file, Some(line), "hub", ControlProblem::UnknownHub(hub))
            })?;
            if let Some(first) = entries.iter().find(|e| e.hub == kind) {
                return Err(control_err(
                    file,
                    Some(line),
                    "hub",
                    ControlProblem::DuplicateHub {
                        hub: kind,
                        first_line: first.line,
                    },
                ));
            }
            if primary_key.is_empty() {
                return Err(control_err(
                    file,
                    Some(line),
                    "primary_key",
                    ControlProblem::Empty,
                ));
            }
            entries.push(HubEntry {
                line,
                hub: kind,
                primary_key,
            });
        }
        if !entries.iter().any(|e| e.hub == HubKind::Person) {
            return Err(control_err(file, None, "hub", ControlProblem::NoPersonHub));
        }
        Ok(HubControl {
            file: file.to_string(),
            entries,
        })
    }

    /// The file name given to [`HubControl::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The rows, in file order.
    pub fn entries(&self) -> &[HubEntry] {
        &self.entries
    }
}

/// One satellite of the plan: its name, hub, and the table columns it holds (in control-file
/// order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SatPlan {
    pub name: SatelliteName,
    pub columns: Vec<usize>,
}

/// What to do with each column of a table: checked against both control files.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub header: Vec<String>,
    /// (hub, key column index), in [`HubKind`] order.
    pub hub_keys: Vec<(HubKind, usize)>,
    /// Satellites by name.
    pub satellites: Vec<SatPlan>,
}

impl Plan {
    /// Checks the table header against the control files.
    pub fn build(
        table_file: &str,
        header_line: u64,
        header: Vec<String>,
        columns: &ColumnControl,
        hubs: &HubControl,
        limits: &Limits,
    ) -> Result<Plan, VaultError> {
        if header.len() > limits.max_columns {
            return Err(VaultError::Limit {
                what: format!("{table_file}: column count"),
                line: Some(header_line),
                limit: limits.max_columns as u64,
            });
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            if name.is_empty() {
                return Err(control_err(
                    table_file,
                    Some(header_line),
                    &format!("column {}", i + 1),
                    ControlProblem::Empty,
                ));
            }
            if index.insert(name.as_str(), i).is_some() {
                return Err(control_err(
                    table_file,
                    Some(header_line),
                    name,
                    ControlProblem::DuplicateColumn {
                        column: name.clone(),
                        first_line: header_line,
                    },
                ));
            }
        }
        // Hubs: their key columns must be in the table.
        let mut hub_keys = Vec::new();
        let mut key_of: BTreeMap<HubKind, &str> = BTreeMap::new();
        for h in hubs.entries() {
            let Some(&col) = index.get(h.primary_key.as_str()) else {
                return Err(control_err(
                    hubs.file(),
                    Some(h.line),
                    "primary_key",
                    ControlProblem::NotInTable {
                        column: h.primary_key.clone(),
                    },
                ));
            };
            hub_keys.push((h.hub, col));
            key_of.insert(h.hub, h.primary_key.as_str());
        }
        hub_keys.sort();
        // Columns: every control row names a table column, and every table column is listed.
        for e in columns.entries() {
            if !index.contains_key(e.name.as_str()) {
                return Err(control_err(
                    columns.file(),
                    Some(e.line),
                    "name",
                    ControlProblem::NotInTable {
                        column: e.name.clone(),
                    },
                ));
            }
        }
        for name in &header {
            if !columns.entries().iter().any(|e| &e.name == name) {
                return Err(control_err(
                    table_file,
                    Some(header_line),
                    name,
                    ControlProblem::NotInControl {
                        column: name.clone(),
                        control_file: columns.file().to_string(),
                    },
                ));
            }
        }
        let check_fk = |e: &ColumnEntry, expected: &[HubKind]| -> Result<(), VaultError> {
            let Some(fk) = &e.foreign_key else {
                return Ok(());
            };
            if !expected.contains(&fk.hub) {
                return Err(control_err(
                    columns.file(),
                    Some(e.line),
                    "foreign_key",
                    ControlProblem::ForeignKeyHub {
                        foreign_key: fk.raw.clone(),
                        named: fk.hub,
                        expected: expected.first().copied().unwrap_or(HubKind::Person),
                    },
                ));
            }
            let primary_key = key_of.get(&fk.hub).copied().unwrap_or_default();
            if let Some(col) = &fk.key_column
                && col != primary_key
            {
                return Err(control_err(
                    columns.file(),
                    Some(e.line),
                    "foreign_key",
                    ControlProblem::ForeignKeyColumn {
                        foreign_key: fk.raw.clone(),
                        hub: fk.hub,
                        primary_key: primary_key.to_string(),
                    },
                ));
            }
            Ok(())
        };
        let mut satellites: BTreeMap<SatelliteName, Vec<usize>> = BTreeMap::new();
        for e in columns.entries() {
            let keyed: Vec<HubKind> = hubs
                .entries()
                .iter()
                .filter(|h| h.primary_key == e.name)
                .map(|h| h.hub)
                .collect();
            match &e.destination {
                Destination::Satellite(sat) => {
                    if let Some(&hub) = keyed.first() {
                        return Err(control_err(
                            columns.file(),
                            Some(e.line),
                            "destination",
                            ControlProblem::KeyColumnInSatellite {
                                column: e.name.clone(),
                                hub,
                            },
                        ));
                    }
                    if !key_of.contains_key(&sat.hub()) {
                        return Err(control_err(
                            columns.file(),
                            Some(e.line),
                            "destination",
                            ControlProblem::HubNotDeclared {
                                satellite: sat.to_string(),
                                hub: sat.hub(),
                            },
                        ));
                    }
                    check_fk(e, &[sat.hub()])?;
                    let col = index.get(e.name.as_str()).copied().unwrap_or_default();
                    satellites.entry(sat.clone()).or_default().push(col);
                }
                Destination::Key(named) => {
                    if keyed.is_empty() {
                        return Err(control_err(
                            columns.file(),
                            Some(e.line),
                            "destination",
                            ControlProblem::NotAKeyColumn {
                                column: e.name.clone(),
                            },
                        ));
                    }
                    if let Some(hub) = named
                        && !keyed.contains(hub)
                    {
                        return Err(control_err(
                            columns.file(),
                            Some(e.line),
                            "destination",
                            ControlProblem::WrongKeyHub {
                                column: e.name.clone(),
                                hub: *hub,
                            },
                        ));
                    }
                    check_fk(e, &keyed)?;
                }
            }
        }
        Ok(Plan {
            header,
            hub_keys,
            satellites: satellites
                .into_iter()
                .map(|(name, columns)| SatPlan { name, columns })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(text: &str) -> Result<ColumnControl, VaultError> {
        ColumnControl::parse("columns.csv", text.as_bytes(), &Limits::default())
    }

    fn hubs(text: &str) -> Result<HubControl, VaultError> {
        HubControl::parse("hubs.csv", text.as_bytes(), &Limits::default())
    }

    fn problem(e: VaultError) -> (String, Option<u64>, String, ControlProblem) {
        match e {
            VaultError::Control {
                file,
                line,
                field,
                problem,
            } => (file, line, field, problem),
            other => panic!("not a control error: {other}"),
        }
    }

    #[test]
    fn parses_the_seed_tables() {
        let c = cols(
            "name,destination,foreign_key\n\
             chi,,\n\
             admission_date,sat_time_admissions_date,id_hub_time\n\
             sex,sat_person_demographic_details,chi_hub_person\n",
        )
        .unwrap();
        assert_eq!(c.entries().len(), 3);
        assert_eq!(c.entries()[1].line, 3);
        assert_eq!(
            c.entries()[1]
                .foreign_key
                .as_ref()
                .unwrap()
                .key_column
                .as_deref(),
            Some("id")
        );
        let h = hubs("hub,primary_key\nhub_person,chi\nhub_time,id\nhub_object,id\n").unwrap();
        assert_eq!(h.entries().len(), 3);
        // A spreadsheet's byte order mark, blank lines and spaces are tolerated.
        let h = hubs("\u{feff}hub,primary_key\n\n Person , chi \n").unwrap();
        assert_eq!(h.entries()[0].primary_key, "chi");
        assert_eq!(h.entries()[0].line, 3);
    }

    #[test]
    fn refuses_bad_control_files() {
        let (file, line, field, p) = problem(hubs("hub,primary_key\nhub_time,id\n").unwrap_err());
        assert_eq!(
            (file.as_str(), line, field.as_str()),
            ("hubs.csv", None, "hub")
        );
        assert_eq!(p, ControlProblem::NoPersonHub);

        let (_, line, field, p) =
            problem(hubs("hub,primary_key\nhub_person,chi\nhub_people,x\n").unwrap_err());
        assert_eq!((line, field.as_str()), (Some(3), "hub"));
        assert!(matches!(p, ControlProblem::UnknownHub(_)));

        let (_, line, _, p) =
            problem(hubs("hub,primary_key\nhub_person,chi\nPerson,x\n").unwrap_err());
        assert_eq!(line, Some(3));
        assert!(matches!(
            p,
            ControlProblem::DuplicateHub { first_line: 2, .. }
        ));

        let (_, line, field, p) = problem(hubs("hub,key\nhub_person,chi\n").unwrap_err());
        assert_eq!((line, field.as_str()), (Some(1), "header"));
        assert!(matches!(p, ControlProblem::BadHeader { .. }));

        let (_, line, field, p) = problem(
            cols("name,destination,foreign_key\nsex,sat_person_demographics,\n").unwrap_err(),
        );
        assert_eq!((line, field.as_str()), (Some(2), "destination"));
        assert!(matches!(p, ControlProblem::BadSatelliteName { .. }));

        let (_, line, field, p) = problem(
            cols("name,destination,foreign_key\nsex,sat_person_a_b,\nage,sat_person_a_b,\nsex,sat_person_a_b,\n")
                .unwrap_err(),
        );
        assert_eq!((line, field.as_str()), (Some(4), "name"));
        assert!(matches!(
            p,
            ControlProblem::DuplicateColumn { first_line: 2, .. }
        ));

        let (_, line, field, p) = problem(
            cols("name,destination,foreign_key\nsex,sat_person_a_b,person_id\n").unwrap_err(),
        );
        assert_eq!((line, field.as_str()), (Some(2), "foreign_key"));
        assert!(matches!(p, ControlProblem::BadForeignKey(_)));

        let (_, line, _, p) =
            problem(cols("name,destination,foreign_key\nsex,sat_person_a_b\n").unwrap_err());
        assert_eq!(line, Some(2));
        assert!(matches!(
            p,
            ControlProblem::FieldCount {
                expected: 3,
                found: 2
            }
        ));

        let (_, line, field, p) =
            problem(cols("name,destination,foreign_key\nsex,table_x,\n").unwrap_err());
        assert_eq!((line, field.as_str()), (Some(2), "destination"));
        assert!(matches!(p, ControlProblem::BadDestination(_)));

        let (_, _, field, p) = problem(cols("").unwrap_err());
        assert_eq!(field, "header");
        assert!(matches!(p, ControlProblem::BadHeader { .. }));

        let (_, line, _, p) =
            problem(cols("name,destination,foreign_key\n\"x,sat_person_a_b,\n").unwrap_err());
        // An unterminated quote swallows the rest: one field, not three.
        assert!(line.is_some());
        assert!(matches!(p, ControlProblem::FieldCount { .. }));
    }

    #[test]
    fn control_file_limits() {
        let limits = Limits {
            max_control_bytes: 10,
            ..Limits::default()
        };
        let e = ColumnControl::parse(
            "c.csv",
            "name,destination,foreign_key\n".as_bytes(),
            &limits,
        )
        .unwrap_err();
        assert!(matches!(
            problem(e).3,
            ControlProblem::TooLong { limit: 10 }
        ));
        let limits = Limits {
            max_satellites: 1,
            ..Limits::default()
        };
        let e = ColumnControl::parse(
            "c.csv",
            "name,destination,foreign_key\na,sat_person_a_b,\nb,sat_person_a_c,\n".as_bytes(),
            &limits,
        )
        .unwrap_err();
        assert!(matches!(
            problem(e).3,
            ControlProblem::TooMany {
                what: "satellites",
                ..
            }
        ));
    }

    fn plan(header: &[&str], c: &str, h: &str) -> Result<Plan, VaultError> {
        Plan::build(
            "table.csv",
            1,
            header.iter().map(|s| s.to_string()).collect(),
            &cols(c)?,
            &hubs(h)?,
            &Limits::default(),
        )
    }

    #[test]
    fn plan_checks_columns_against_table_and_hubs() {
        let c = "name,destination,foreign_key\nchi,,\nepisode,hub_event,\nsex,sat_person_demo_core,chi_hub_person\nadm,sat_event_adm_core,episode_hub_event\n";
        let h = "hub,primary_key\nhub_person,chi\nhub_event,episode\n";
        let p = plan(&["chi", "episode", "sex", "adm"], c, h).unwrap();
        assert_eq!(p.hub_keys, vec![(HubKind::Person, 0), (HubKind::Event, 1)]);
        assert_eq!(p.satellites.len(), 2);
        assert_eq!(p.satellites[0].name.as_str(), "sat_event_adm_core");
        assert_eq!(p.satellites[0].columns, vec![3]);

        // A table column missing from the control file.
        let (file, line, field, p) =
            problem(plan(&["chi", "episode", "sex", "adm", "extra"], c, h).unwrap_err());
        assert_eq!(
            (file.as_str(), line, field.as_str()),
            ("table.csv", Some(1), "extra")
        );
        assert!(matches!(p, ControlProblem::NotInControl { .. }));

        // A control column missing from the table.
        let (file, line, field, p) = problem(plan(&["chi", "episode", "sex"], c, h).unwrap_err());
        assert_eq!(
            (file.as_str(), line, field.as_str()),
            ("columns.csv", Some(5), "name")
        );
        assert!(matches!(p, ControlProblem::NotInTable { .. }));

        // A hub key not in the table.
        let (file, line, field, _) = problem(
            plan(
                &["chi", "episode", "sex", "adm"],
                c,
                "hub,primary_key\nhub_person,chi\nhub_event,episode\nhub_location,loc\n",
            )
            .unwrap_err(),
        );
        assert_eq!(
            (file.as_str(), line, field.as_str()),
            ("hubs.csv", Some(4), "primary_key")
        );

        // A satellite on a hub the hub file does not list.
        let (_, line, _, p) = problem(
            plan(
                &["chi", "episode", "sex", "adm"],
                "name,destination,foreign_key\nchi,,\nepisode,,\nsex,sat_location_a_b,\nadm,sat_event_adm_core,\n",
                h,
            )
            .unwrap_err(),
        );
        assert_eq!(line, Some(4));
        assert!(matches!(p, ControlProblem::HubNotDeclared { .. }));

        // A foreign key naming another hub, or another key column.
        let (_, line, _, p) = problem(
            plan(
                &["chi", "episode", "sex", "adm"],
                "name,destination,foreign_key\nchi,,\nepisode,,\nsex,sat_person_demo_core,episode_hub_event\nadm,sat_event_adm_core,\n",
                h,
            )
            .unwrap_err(),
        );
        assert_eq!(line, Some(4));
        assert!(matches!(p, ControlProblem::ForeignKeyHub { .. }));
        let (_, _, _, p) = problem(
            plan(
                &["chi", "episode", "sex", "adm"],
                "name,destination,foreign_key\nchi,,\nepisode,,\nsex,sat_person_demo_core,id_hub_person\nadm,sat_event_adm_core,\n",
                h,
            )
            .unwrap_err(),
        );
        assert!(matches!(p, ControlProblem::ForeignKeyColumn { .. }));

        // A key column sent to a satellite; a non-key column with no satellite.
        let (_, _, _, p) = problem(
            plan(
                &["chi", "episode", "sex", "adm"],
                "name,destination,foreign_key\nchi,sat_person_demo_core,\nepisode,,\nsex,sat_person_demo_core,\nadm,sat_event_adm_core,\n",
                h,
            )
            .unwrap_err(),
        );
        assert!(matches!(p, ControlProblem::KeyColumnInSatellite { .. }));
        let (_, _, _, p) = problem(
            plan(
                &["chi", "episode", "sex", "adm"],
                "name,destination,foreign_key\nchi,,\nepisode,,\nsex,,\nadm,sat_event_adm_core,\n",
                h,
            )
            .unwrap_err(),
        );
        assert!(matches!(p, ControlProblem::NotAKeyColumn { .. }));

        // Duplicate table header.
        let (file, line, _, p) = problem(plan(&["chi", "chi", "sex", "adm"], c, h).unwrap_err());
        assert_eq!((file.as_str(), line), ("table.csv", Some(1)));
        assert!(matches!(p, ControlProblem::DuplicateColumn { .. }));
    }
}
