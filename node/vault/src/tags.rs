//! Tags (seed 000, section 3.4.1): a patient's rule grants tags such as `OPERATION` or
//! `BASIC PERSONAL`; each source's tag map says which of its satellites a tag selects.
//!
//! ```text
//!  vault_tags  source -> TagMap (CBOR: tag -> satellites, both in sorted order)
//! ```
//!
//! Tags are compared after normalisation: surrounding spaces removed, inner runs of spaces made
//! one, ASCII letters upper-cased (`basic  personal` is `BASIC PERSONAL`). A tag is 1 to 64
//! bytes of letters, digits, spaces, `_`, `-` and `.`. A tag map may only name satellites the
//! source has (from its ingests). A granted tag that a source does not map selects nothing
//! there: a grant names tags across hospitals, and not every source holds every kind of data.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use crate::error::{ControlProblem, VaultError};
use crate::model::{SatelliteName, check_source_name};
use crate::vault::{Limits, Vault, encode};
use crate::{TREE_TAGS, model::MAX_NAME_LEN};

/// Tag -> satellites of one source.
pub type TagMap = BTreeMap<String, BTreeSet<String>>;

/// Most satellites one tag may select.
pub const MAX_SATELLITES_PER_TAG: usize = 64;

/// Normalises a tag (see the module docs), or says why it is not one.
pub fn normalise_tag(tag: &str) -> Result<String, VaultError> {
    let mut out = String::with_capacity(tag.len());
    for word in tag.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.make_ascii_uppercase();
    let invalid = |reason| VaultError::InvalidTag {
        tag: tag.to_string(),
        reason,
    };
    if out.is_empty() {
        return Err(invalid("empty"));
    }
    if out.len() > MAX_NAME_LEN {
        return Err(invalid("longer than 64 bytes"));
    }
    if !out
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'_' | b'-' | b'.'))
    {
        return Err(invalid("only letters, digits, spaces, '_', '-' and '.'"));
    }
    Ok(out)
}

/// Parses a tag file: CSV with header `tag,satellite`, one row per (tag, satellite). Checks
/// the shape only; [`Vault::set_tags`] checks the satellites against the source.
pub fn parse_tag_file(
    file: &str,
    reader: impl Read,
    limits: &Limits,
) -> Result<TagMap, VaultError> {
    let err = |line: Option<u64>, field: &str, problem| VaultError::Control {
        file: file.to_string(),
        line,
        field: field.to_string(),
        problem,
    };
    let mut bytes = Vec::new();
    reader
        .take(limits.max_control_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| VaultError::Io {
            what: file.to_string(),
            source,
        })?;
    if bytes.len() as u64 > limits.max_control_bytes {
        return Err(err(
            None,
            "file",
            ControlProblem::TooLong {
                limit: limits.max_control_bytes,
            },
        ));
    }
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice());
    let mut record = csv::StringRecord::new();
    let mut map = TagMap::new();
    let mut header_seen = false;
    loop {
        let more = csv.read_record(&mut record).map_err(|e| {
            err(
                e.position().map(|p| p.line()),
                "row",
                ControlProblem::NotCsv,
            )
        })?;
        if !more {
            break;
        }
        let line = record.position().map(|p| p.line());
        let fields: Vec<&str> = record
            .iter()
            .map(|f| f.trim_start_matches('\u{feff}').trim())
            .collect();
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        if !header_seen {
            header_seen = true;
            let ok = fields.len() == 2
                && fields[0].eq_ignore_ascii_case("tag")
                && fields[1].eq_ignore_ascii_case("satellite");
            if !ok {
                return Err(err(
                    line,
                    "header",
                    ControlProblem::BadHeader {
                        expected: "tag,satellite",
                    },
                ));
            }
            continue;
        }
        if fields.len() != 2 {
            return Err(err(
                line,
                "row",
                ControlProblem::FieldCount {
                    expected: 2,
                    found: fields.len(),
                },
            ));
        }
        let tag = normalise_tag(fields[0])
            .map_err(|_| err(line, "tag", ControlProblem::BadTag(fields[0].to_string())))?;
        SatelliteName::parse(fields[1]).map_err(|why| {
            err(
                line,
                "satellite",
                ControlProblem::BadSatelliteName {
                    name: fields[1].to_string(),
                    why,
                },
            )
        })?;
        map.entry(tag).or_default().insert(fields[1].to_string());
    }
    if !header_seen {
        return Err(err(
            None,
            "header",
            ControlProblem::BadHeader {
                expected: "tag,satellite",
            },
        ));
    }
    Ok(map)
}

impl Vault {
    /// Replaces the tag map of `source`. Refused: an unknown source, an invalid tag, two tags
    /// the same after normalisation, a satellite the source does not have, a tag with no
    /// satellite, more than [`Limits::max_tags`] tags or [`MAX_SATELLITES_PER_TAG`]
    /// satellites per tag.
    pub fn set_tags(&self, source: &str, map: &TagMap) -> Result<(), VaultError> {
        check_source_name(source)?;
        let catalog = self
            .catalog(source)?
            .ok_or_else(|| VaultError::UnknownSource(source.to_string()))?;
        let invalid = |reason: String| VaultError::InvalidTagMap {
            source_name: source.to_string(),
            reason,
        };
        if map.len() > self.config.limits.max_tags {
            return Err(invalid(format!(
                "more than {} tags",
                self.config.limits.max_tags
            )));
        }
        let mut normalised = TagMap::new();
        for (tag, satellites) in map {
            let norm = normalise_tag(tag)?;
            if satellites.is_empty() {
                return Err(invalid(format!("tag {norm} selects no satellite")));
            }
            if satellites.len() > MAX_SATELLITES_PER_TAG {
                return Err(invalid(format!(
                    "tag {norm} selects more than {MAX_SATELLITES_PER_TAG} satellites"
                )));
            }
            for s in satellites {
                if SatelliteName::parse(s).is_err() || !catalog.satellites.contains_key(s) {
                    return Err(VaultError::UnknownSatellite {
                        source_name: source.to_string(),
                        tag: norm,
                        satellite: s.clone(),
                    });
                }
            }
            if normalised
                .insert(norm.clone(), satellites.clone())
                .is_some()
            {
                return Err(invalid(format!(
                    "tag {norm} is given twice (tags are compared upper-cased)"
                )));
            }
        }
        self.tags.insert(source.as_bytes(), encode(&normalised)?)?;
        self.db.flush()?;
        Ok(())
    }

    /// The tag map of `source` (empty if none was set).
    pub fn tags(&self, source: &str) -> Result<TagMap, VaultError> {
        check_source_name(source)?;
        match self.tags.get(source.as_bytes())? {
            Some(v) => self.decode(TREE_TAGS, &v),
            None => Ok(TagMap::new()),
        }
    }

    /// The satellites of `source` that `tags` select: the union of what each tag maps to.
    /// Tags the source does not map select nothing; an invalid tag is refused.
    pub fn resolve(
        &self,
        source: &str,
        tags: &[impl AsRef<str>],
    ) -> Result<BTreeSet<String>, VaultError> {
        let map = self.tags(source)?;
        let mut out = BTreeSet::new();
        for t in tags {
            let t = normalise_tag(t.as_ref())?;
            if let Some(sats) = map.get(&t) {
                out.extend(sats.iter().cloned());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_normalisation() {
        assert_eq!(
            normalise_tag(" basic   personal ").unwrap(),
            "BASIC PERSONAL"
        );
        assert_eq!(normalise_tag("Operation").unwrap(), "OPERATION");
        assert!(normalise_tag("  ").is_err());
        assert!(normalise_tag("a;b").is_err());
        assert!(normalise_tag(&"x".repeat(65)).is_err());
    }

    #[test]
    fn tag_file() {
        let text = "tag,satellite\nOPERATION,sat_object_operations_details\nbasic personal,sat_person_demographic_details\nOperation,sat_event_admission_core\n";
        let map = parse_tag_file("tags.csv", text.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map["OPERATION"].len(), 2);
        assert!(map["BASIC PERSONAL"].contains("sat_person_demographic_details"));

        let bad = "tag,satellite\nOPERATION,sat_object_operations\n";
        let e = parse_tag_file("tags.csv", bad.as_bytes(), &Limits::default()).unwrap_err();
        assert!(
            matches!(&e, VaultError::Control { line: Some(2), field, .. } if field == "satellite"),
            "{e}"
        );
        let e = parse_tag_file("tags.csv", "tag\n".as_bytes(), &Limits::default()).unwrap_err();
        assert!(matches!(&e, VaultError::Control { field, .. } if field == "header"));
    }
}
