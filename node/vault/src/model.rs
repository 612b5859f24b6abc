//! The data vault model: the five T-P-O-L-E hubs, typed values, and the records kept in the
//! `vault_hubs`, `vault_links` and `vault_sats` trees, with their key encodings.
//!
//! ```text
//!  vault_hubs   hub_key(32)                                   -> HubRecord   (CBOR)
//!  vault_links  link_key(32)                                  -> LinkRecord  (CBOR)
//!  vault_sats   patient(32) source 0x00 satellite 0x00
//!               parent(32) hash_diff(32)                      -> SatRecord   (CBOR)
//! ```
//!
//! Hub keys are data vault 2.0 hash keys: SHA-256 over a domain tag, the hub kind and the
//! normalised business key, so the same CHI gives the same Person hub key at every hospital and
//! the same key column shared by two hubs (seed 000, table 3.3 keys `hub_time` and `hub_object`
//! both by `id`) still gives two different hubs. A satellite row is keyed by the patient first,
//! so all of one patient's rows for a (source, satellite) are one prefix scan: the key order is
//! the "index by patient hub key". The parent hub key and the hash of the row's values (the data
//! vault "hash diff") complete the key: loading the same values for the same parent twice stores
//! one row, and a changed value adds a row (satellites are insert-only history).
//!
//! Note: a hash key is a pseudonym, not anonymisation: the CHI space (10^10) can be searched.
//! Bundles carry it because the requester is entitled to know whose record it is.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sphr_crypto::hash::{Hash32, sha256_parts};

use crate::error::VaultError;

/// Domain tags: a hash of one kind can never be mistaken for another.
const HUB_DOMAIN: &[u8] = b"sphr-vault/hub/v1";
const LINK_DOMAIN: &[u8] = b"sphr-vault/link/v1";
const SAT_DOMAIN: &[u8] = b"sphr-vault/sat/v1";

/// Longest source or satellite name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The five hubs of the SPHR data vault (seed 000, chapter 2): Time, Person, Object, Location,
/// Event. Declaration order is the order of hubs inside a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HubKind {
    Time,
    Person,
    Object,
    Location,
    Event,
}

impl HubKind {
    /// All hubs, in link order.
    pub const ALL: [HubKind; 5] = [
        HubKind::Time,
        HubKind::Person,
        HubKind::Object,
        HubKind::Location,
        HubKind::Event,
    ];

    /// Lowercase name as used in satellite names (`sat_<hub>_...`).
    pub fn as_str(self) -> &'static str {
        match self {
            HubKind::Time => "time",
            HubKind::Person => "person",
            HubKind::Object => "object",
            HubKind::Location => "location",
            HubKind::Event => "event",
        }
    }

    /// The hub's table name in the seed's convention: `hub_person`.
    pub fn table_name(self) -> String {
        format!("hub_{}", self.as_str())
    }

    /// Parses a hub as written in a hub control file: the seed's `hub_person` or the plain
    /// `Person`, ASCII case-insensitively.
    pub fn parse_control(s: &str) -> Option<HubKind> {
        let lower = s.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("hub_").unwrap_or(&lower);
        Self::from_lowercase(name)
    }

    /// Parses the exact lowercase name (`person`).
    pub fn from_lowercase(s: &str) -> Option<HubKind> {
        HubKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for HubKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table_name())
    }
}

/// A satellite name following the seed's convention `sat_<hub>_<major>_<minor>`: four parts
/// split by `_`, `<hub>` one of the five hubs, `<major>` and `<minor>` non-empty runs of
/// lowercase ASCII letters and digits, at most [`MAX_NAME_LEN`] bytes in all.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SatelliteName {
    name: String,
    hub: HubKind,
}

impl SatelliteName {
    /// Checks `s` against the naming convention; the error says which rule it breaks.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.len() > MAX_NAME_LEN {
            return Err("longer than 64 bytes");
        }
        let parts: Vec<&str> = s.split('_').collect();
        if parts.len() != 4 || parts[0] != "sat" {
            return Err("not of the form sat_<hub>_<major>_<minor>");
        }
        let Some(hub) = HubKind::from_lowercase(parts[1]) else {
            return Err("<hub> is not one of time, person, object, location, event");
        };
        for part in &parts[2..] {
            if part.is_empty()
                || !part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err("<major> and <minor> must be lowercase letters and digits");
            }
        }
        Ok(SatelliteName {
            name: s.to_string(),
            hub,
        })
    }

    /// The full name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The hub the satellite hangs off.
    pub fn hub(&self) -> HubKind {
        self.hub
    }
}

impl fmt::Display for SatelliteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Checks a source name: 1 to 64 bytes of ASCII letters, digits, `_`, `-`, `.`.
pub fn check_source_name(source: &str) -> Result<(), VaultError> {
    let ok = !source.is_empty()
        && source.len() <= MAX_NAME_LEN
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(VaultError::InvalidSource {
            reason: "a source name is 1 to 64 ASCII letters, digits, '_', '-' or '.'",
        })
    }
}

/// A calendar date (proleptic Gregorian), stored and printed as ISO `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// A date if `year` is 1..=9999 and the day exists in that month.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if year == 0 || year > 9999 || month == 0 || month > 12 || day == 0 {
            return None;
        }
        (day <= days_in_month(year, month)).then_some(Date { year, month, day })
    }

    /// Parses ISO `YYYY-MM-DD` or the seed's `DD/MM/YYYY` (exactly these digit counts).
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 {
            return None;
        }
        let digits = |r: std::ops::Range<usize>| -> Option<u16> {
            let mut v: u16 = 0;
            for &c in &b[r] {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + u16::from(c - b'0');
            }
            Some(v)
        };
        let (y, m, d) = if b[4] == b'-' && b[7] == b'-' {
            (digits(0..4)?, digits(5..7)?, digits(8..10)?)
        } else if b[2] == b'/' && b[5] == b'/' {
            (digits(6..10)?, digits(3..5)?, digits(0..2)?)
        } else {
            return None;
        };
        Date::new(y, u8::try_from(m).ok()?, u8::try_from(d).ok()?)
    }

    /// Year, month, day.
    pub fn ymd(&self) -> (u16, u8, u8) {
        (self.year, self.month, self.day)
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            let leap =
                (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
            if leap { 29 } else { 28 }
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // ISO only on the way back in: stored dates are always written ISO.
        if s.as_bytes().get(4) != Some(&b'-') {
            return Err(serde::de::Error::custom("a stored date must be YYYY-MM-DD"));
        }
        Date::parse(&s).ok_or_else(|| serde::de::Error::custom("not a valid YYYY-MM-DD date"))
    }
}

/// A typed value of one column in one row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Missing (an empty field).
    Null,
    Int(i64),
    /// Always finite.
    Float(f64),
    Date(Date),
    Text(String),
}

impl Value {
    /// Orders two values of the same type; `None` across types or for `Null`.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Date(a), Value::Date(b)) => Some(a.cmp(b)),
            (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Date(v) => write!(f, "{v}"),
            Value::Text(v) => f.write_str(v),
        }
    }
}

/// One named value of a satellite row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub value: Value,
}

/// A hub entry: one business key of one hub kind, first seen at `load_time_ms` from
/// `record_source` (data vault hubs are insert-once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HubRecord {
    pub kind: HubKind,
    /// The normalised business key (see [`normalise_business_key`]).
    pub business_key: String,
    pub record_source: String,
    pub load_time_ms: u64,
    pub ingest_id: u64,
}

/// One hub taking part in a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubRef {
    pub kind: HubKind,
    pub key: Hash32,
}

/// A link: the hubs one source row touches (its unit of work), in [`HubKind`] order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub hubs: Vec<HubRef>,
    pub record_source: String,
    pub load_time_ms: u64,
    pub ingest_id: u64,
}

/// A satellite row: descriptive values hanging off hub `parent` (of kind `hub`), loaded from
/// line `line` of ingest `ingest_id`. `link` is the row's link, when the row touched two hubs
/// or more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SatRecord {
    pub hub: HubKind,
    pub parent: Hash32,
    pub link: Option<Hash32>,
    pub load_time_ms: u64,
    pub ingest_id: u64,
    pub line: u64,
    pub fields: Vec<Field>,
}

/// The key of a satellite row in `vault_sats`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SatKey {
    pub patient: Hash32,
    pub source: String,
    pub satellite: String,
    pub parent: Hash32,
    pub hash_diff: Hash32,
}

impl SatKey {
    /// `patient source 0x00 satellite 0x00 parent hash_diff`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = sat_prefix(&self.patient, &self.source, &self.satellite);
        out.extend_from_slice(self.parent.as_bytes());
        out.extend_from_slice(self.hash_diff.as_bytes());
        out
    }

    /// Decodes a key written by [`SatKey::encode`]; anything else is an error, not a panic.
    pub fn decode(bytes: &[u8]) -> Result<SatKey, VaultError> {
        let corrupt = |detail: &'static str| VaultError::Corrupt {
            tree: crate::TREE_SATS,
            detail: detail.to_string(),
        };
        let (patient, rest) = split32(bytes).ok_or_else(|| corrupt("key shorter than 32 bytes"))?;
        let (source, rest) = split_name(rest).ok_or_else(|| corrupt("key source not valid"))?;
        let (satellite, rest) =
            split_name(rest).ok_or_else(|| corrupt("key satellite not valid"))?;
        let (parent, rest) = split32(rest).ok_or_else(|| corrupt("key parent missing"))?;
        let hash_diff =
            Hash32::from_slice(rest).map_err(|_| corrupt("key hash diff not 32 bytes"))?;
        check_source_name(&source).map_err(|_| corrupt("key source not valid"))?;
        SatelliteName::parse(&satellite).map_err(|_| corrupt("key satellite not valid"))?;
        Ok(SatKey {
            patient,
            source,
            satellite,
            parent,
            hash_diff,
        })
    }
}

/// The prefix of all of one patient's rows of one satellite of one source.
pub fn sat_prefix(patient: &Hash32, source: &str, satellite: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + source.len() + satellite.len() + 2 + 64);
    out.extend_from_slice(patient.as_bytes());
    out.extend_from_slice(source.as_bytes());
    out.push(0);
    out.extend_from_slice(satellite.as_bytes());
    out.push(0);
    out
}

fn split32(bytes: &[u8]) -> Option<(Hash32, &[u8])> {
    if bytes.len() < 32 {
        return None;
    }
    let (head, rest) = bytes.split_at(32);
    Some((Hash32::from_slice(head).ok()?, rest))
}

fn split_name(bytes: &[u8]) -> Option<(String, &[u8])> {
    let end = bytes.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&bytes[..end]).ok()?.to_string();
    Some((name, &bytes[end + 1..]))
}

/// Normalises a business key before hashing: surrounding whitespace removed, inner runs of
/// whitespace made one space, ASCII letters upper-cased. The key is hashed as text, never as a
/// typed value, so leading zeros (CHI numbers) are kept.
pub fn normalise_business_key(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for word in raw.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.make_ascii_uppercase();
    out
}

/// The hash key of a hub entry: SHA-256 over a domain tag, the hub kind and the normalised
/// business key.
pub fn hub_key(kind: HubKind, business_key: &str) -> Hash32 {
    let normalised = normalise_business_key(business_key);
    sha256_parts(&[HUB_DOMAIN, kind.as_str().as_bytes(), normalised.as_bytes()])
}

/// The Person hub key of a patient's business key (e.g. a CHI): what bundles carry instead of
/// the identifier.
pub fn patient_key(business_key: &str) -> Hash32 {
    hub_key(HubKind::Person, business_key)
}

/// The hash key of a link over `hubs` (in [`HubKind`] order).
pub fn link_key(hubs: &[HubRef]) -> Hash32 {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + 2 * hubs.len());
    parts.push(LINK_DOMAIN);
    for h in hubs {
        parts.push(h.kind.as_str().as_bytes());
        parts.push(h.key.as_bytes());
    }
    sha256_parts(&parts)
}

/// The data vault "hash diff" of a satellite row's values.
pub fn hash_diff(fields: &[Field]) -> Result<Hash32, VaultError> {
    let bytes = sphr_crypto::cbor::to_vec(fields).map_err(VaultError::Encode)?;
    Ok(sha256_parts(&[SAT_DOMAIN, &bytes]))
}

/// Serde for [`Hash32`] fields of types exported as JSON: hex text in human-readable formats,
/// a 32-byte string in CBOR.
pub(crate) mod key_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use sphr_crypto::hash::Hash32;

    pub fn serialize<S: Serializer>(h: &Hash32, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&h.to_hex())
        } else {
            h.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash32, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Hash32::from_hex(&s).map_err(serde::de::Error::custom)
        } else {
            Hash32::deserialize(d)
        }
    }
}

/// Serde for byte vectors as CBOR byte strings (and hex in human-readable formats).
pub(crate) mod bytes_serde {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(v))
        } else {
            s.serialize_bytes(v)
        }
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
            Err(A::Error::custom("expected a byte string, not an array"))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            hex::decode(s).map_err(D::Error::custom)
        } else {
            d.deserialize_byte_buf(BytesVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_kind_parsing() {
        assert_eq!(HubKind::parse_control("hub_person"), Some(HubKind::Person));
        assert_eq!(HubKind::parse_control(" Person "), Some(HubKind::Person));
        assert_eq!(HubKind::parse_control("HUB_TIME"), Some(HubKind::Time));
        assert_eq!(HubKind::parse_control("hub_people"), None);
        assert_eq!(HubKind::parse_control(""), None);
        assert_eq!(HubKind::Location.to_string(), "hub_location");
    }

    #[test]
    fn satellite_names() {
        let s = SatelliteName::parse("sat_time_admissions_date").unwrap();
        assert_eq!(s.hub(), HubKind::Time);
        assert!(SatelliteName::parse("sat_person_demographics_core").is_ok());
        for bad in [
            "sat_person_demographics",
            "sat_people_a_b",
            "sat_person_a_b_c",
            "sat_person_A_b",
            "sat_person__b",
            "hub_person_a_b",
            "sat_person_a-b_c",
            "",
        ] {
            assert!(SatelliteName::parse(bad).is_err(), "{bad}");
        }
        let long = format!("sat_person_{}_b", "a".repeat(60));
        assert!(SatelliteName::parse(&long).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(Date::parse("2023-01-05"), Date::new(2023, 1, 5));
        assert_eq!(Date::parse("05/01/2023"), Date::new(2023, 1, 5));
        assert_eq!(
            Date::parse("29/02/2024").map(|d| d.to_string()).as_deref(),
            Some("2024-02-29")
        );
        for bad in [
            "29/02/2023",
            "2023-13-01",
            "2023-00-10",
            "31/04/2023",
            "2023-1-05",
            "5/1/2023",
            "2023/01/05",
            "0000-01-01",
            "2023-01-05 ",
            "１２/01/2023",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad}");
        }
        assert!(Date::parse("1900-02-29").is_none());
        assert!(Date::parse("2000-02-29").is_some());
    }

    #[test]
    fn business_key_normalisation() {
        assert_eq!(normalise_business_key("  ab  c\t d "), "AB C D");
        assert_eq!(
            hub_key(HubKind::Person, " 0101501234"),
            patient_key("0101501234")
        );
        assert_ne!(hub_key(HubKind::Time, "1"), hub_key(HubKind::Object, "1"));
        assert_ne!(patient_key("0101501234"), patient_key("101501234"));
    }

    #[test]
    fn sat_key_round_trip_and_garbage() {
        let k = SatKey {
            patient: patient_key("1"),
            source: "smr01".into(),
            satellite: "sat_time_admissions_date".into(),
            parent: hub_key(HubKind::Time, "e1"),
            hash_diff: Hash32([7; 32]),
        };
        let bytes = k.encode();
        assert_eq!(SatKey::decode(&bytes).unwrap(), k);
        assert!(bytes.starts_with(&sat_prefix(&k.patient, &k.source, &k.satellite)));
        assert!(SatKey::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(SatKey::decode(&[]).is_err());
        assert!(SatKey::decode(&[0u8; 40]).is_err());
    }
}
