//! Transform and Organise (seed 000, chapter 5): package the satellites that granted tags
//! select, for one patient, into a [`Bundle`]; seal it with a fresh key; keep it in the
//! consumer zone until the requester fetches it.
//!
//! ```text
//!  package(patient business key, tags, sources)
//!     │ patient hub key = SHA-256(person, normalised key)   (the raw id never leaves)
//!     │ per source: resolve(tags) -> satellites
//!     │ per satellite: prefix scan vault_sats[patient ‖ source ‖ satellite]
//!     v
//!  Bundle { id, patient hub key, hospital, sources, tags, rule ids, satellites }
//!     │ seal_bundle: CBOR, ChaCha20-Poly1305, fresh random key and nonce,
//!     │              AAD = "sphr-vault/bundle/v1" ‖ bundle id
//!     v
//!  SealedBundle ──store_sealed──> vault_consumer[bundle id]      key ──> chain (sealed to
//!                                                                        the requester)
//! ```
//!
//! A bundle holds exactly the satellites the tags select, and only rows of that patient: the
//! patient's hub key is the first 32 bytes of every satellite row key, so one prefix scan
//! cannot reach another patient. Satellites with no row for the patient are left out.

use std::collections::BTreeSet;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use serde::{Deserialize, Serialize};
use sphr_crypto::hash::Hash32;

use crate::TREE_CONSUMER;
use crate::error::{VaultError, describe_cbor};
use crate::model::{
    Field, HubKind, SatelliteName, bytes_serde, check_source_name, key_serde, patient_key,
};
use crate::tags::normalise_tag;
use crate::vault::Vault;

/// Bundle format version.
pub const BUNDLE_VERSION: u16 = 1;
/// Sealed bundle format version.
pub const SEALED_VERSION: u16 = 1;
const AAD_DOMAIN: &[u8] = b"sphr-vault/bundle/v1";
/// ChaCha20-Poly1305 tag length.
const TAG_LEN: usize = 16;

/// Which sources a bundle draws from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum SourceFilter {
    /// Every source of the vault.
    #[default]
    All,
    /// Only these sources.
    Only(BTreeSet<String>),
}

impl SourceFilter {
    fn admits(&self, source: &str) -> bool {
        match self {
            SourceFilter::All => true,
            SourceFilter::Only(set) => set.contains(source),
        }
    }
}

/// One satellite row in a bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SatRow {
    /// The hub key the row hangs off (a hash, like the patient's).
    #[serde(with = "key_serde")]
    pub parent: Hash32,
    pub load_time_ms: u64,
    pub fields: Vec<Field>,
}

/// The rows of one satellite of one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SatelliteRows {
    pub source: String,
    pub satellite: String,
    pub hub: HubKind,
    pub rows: Vec<SatRow>,
}

/// A package of one patient's granted satellites from one hospital.
///
/// Its `Debug` shows ids, names and counts only, never values: a bundle logged by mistake
/// leaks no patient data.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub version: u16,
    /// Random unless the node sets it (to the access record's id, say) before sealing.
    #[serde(with = "key_serde")]
    pub id: Hash32,
    /// The patient's Person hub key, not the patient's identifier.
    #[serde(with = "key_serde")]
    pub patient: Hash32,
    /// The contributing hospital.
    pub hospital: String,
    /// The sources the satellites come from, sorted.
    pub sources: Vec<String>,
    /// The granted tags, normalised and sorted.
    pub tags: Vec<String>,
    /// The consent rules that granted them (lineage), set by the node.
    pub rule_ids: Vec<String>,
    pub created_ms: u64,
    /// Sorted by (source, satellite).
    pub satellites: Vec<SatelliteRows>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let satellites: Vec<String> = self
            .satellites
            .iter()
            .map(|s| format!("{}/{} ({} rows)", s.source, s.satellite, s.rows.len()))
            .collect();
        f.debug_struct("Bundle")
            .field("version", &self.version)
            .field("id", &self.id)
            .field("patient", &self.patient)
            .field("hospital", &self.hospital)
            .field("sources", &self.sources)
            .field("tags", &self.tags)
            .field("rule_ids", &self.rule_ids)
            .field("created_ms", &self.created_ms)
            .field("satellites", &satellites)
            .finish()
    }
}

impl Bundle {
    /// Deterministic CBOR.
    pub fn to_cbor(&self) -> Result<Vec<u8>, VaultError> {
        sphr_crypto::cbor::to_vec(self).map_err(VaultError::Encode)
    }

    /// Decodes CBOR of at most `limit` bytes and checks the bundle's shape.
    pub fn from_cbor(bytes: &[u8], limit: usize) -> Result<Bundle, VaultError> {
        let bundle: Bundle = sphr_crypto::cbor::from_slice(bytes, limit)
            .map_err(|e| VaultError::InvalidBundle(describe_cbor(&e)))?;
        bundle.check()?;
        Ok(bundle)
    }

    /// Pretty JSON: keys as hex, values tagged with their type (`{"Date": "2023-01-05"}`).
    pub fn to_json(&self) -> Result<String, VaultError> {
        serde_json::to_string_pretty(self).map_err(|e| VaultError::Json(e.to_string()))
    }

    /// Number of satellite rows.
    pub fn row_count(&self) -> usize {
        self.satellites.iter().map(|s| s.rows.len()).sum()
    }

    fn check(&self) -> Result<(), VaultError> {
        if self.version != BUNDLE_VERSION {
            return Err(VaultError::InvalidBundle(format!(
                "version {} is not {BUNDLE_VERSION}",
                self.version
            )));
        }
        for s in &self.satellites {
            check_source_name(&s.source)
                .map_err(|_| VaultError::InvalidBundle("a source name is not valid".into()))?;
            let name = SatelliteName::parse(&s.satellite)
                .map_err(|_| VaultError::InvalidBundle("a satellite name is not valid".into()))?;
            if name.hub() != s.hub {
                return Err(VaultError::InvalidBundle(
                    "a satellite's hub does not match its name".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A sealed bundle as kept in the consumer zone and sent to the requester.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBundle {
    pub version: u16,
    /// The bundle id, bound to the ciphertext as associated data.
    #[serde(with = "key_serde")]
    pub id: Hash32,
    #[serde(with = "nonce_serde")]
    pub nonce: [u8; 12],
    /// ChaCha20-Poly1305 ciphertext of the bundle's CBOR, tag at the end.
    #[serde(with = "bytes_serde")]
    pub ciphertext: Vec<u8>,
}

mod nonce_serde {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &[u8; 12], s: S) -> Result<S::Ok, S::Error> {
        super::bytes_serde::serialize(n, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 12], D::Error> {
        let v = super::bytes_serde::deserialize(d)?;
        <[u8; 12]>::try_from(v.as_slice())
            .map_err(|_| serde::de::Error::custom("a nonce is 12 bytes"))
    }
}

impl SealedBundle {
    /// CBOR.
    pub fn to_bytes(&self) -> Result<Vec<u8>, VaultError> {
        sphr_crypto::cbor::to_vec(self).map_err(VaultError::Encode)
    }

    /// Decodes CBOR of at most `limit` bytes.
    pub fn from_bytes(bytes: &[u8], limit: usize) -> Result<SealedBundle, VaultError> {
        let sealed: SealedBundle = sphr_crypto::cbor::from_slice(bytes, limit)
            .map_err(|e| VaultError::InvalidBundle(describe_cbor(&e)))?;
        if sealed.version != SEALED_VERSION {
            return Err(VaultError::InvalidBundle(format!(
                "sealed version {} is not {SEALED_VERSION}",
                sealed.version
            )));
        }
        Ok(sealed)
    }
}

fn aad(id: &Hash32) -> Vec<u8> {
    [AAD_DOMAIN, id.as_bytes()].concat()
}

/// Seals a bundle with a fresh random 32-byte key and 12-byte nonce; the bundle id is bound as
/// associated data. Returns the sealed bundle and its key (which goes to the chain, sealed to
/// the requester; never to a log).
pub fn seal_bundle(bundle: &Bundle) -> Result<(SealedBundle, [u8; 32]), VaultError> {
    let plaintext = bundle.to_cbor()?;
    let mut key = [0u8; 32];
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut key).map_err(|e| VaultError::Random(e.to_string()))?;
    getrandom::fill(&mut nonce).map_err(|e| VaultError::Random(e.to_string()))?;
    let cipher = ChaCha20Poly1305::new(&Key::from(key));
    let aad = aad(&bundle.id);
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::BundleTooLarge {
            what: "bytes (for the cipher)",
            limit: u64::MAX,
        })?;
    Ok((
        SealedBundle {
            version: SEALED_VERSION,
            id: bundle.id,
            nonce,
            ciphertext,
        },
        key,
    ))
}

/// Opens a sealed bundle. Any change to the id, nonce or ciphertext, or a wrong key, gives
/// [`VaultError::Unseal`]; a well-sealed but malformed bundle gives
/// [`VaultError::InvalidBundle`].
pub fn open_bundle(sealed: &SealedBundle, key: &[u8; 32]) -> Result<Bundle, VaultError> {
    if sealed.version != SEALED_VERSION {
        return Err(VaultError::InvalidBundle(format!(
            "sealed version {} is not {SEALED_VERSION}",
            sealed.version
        )));
    }
    if sealed.ciphertext.len() < TAG_LEN {
        return Err(VaultError::Unseal);
    }
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let aad = aad(&sealed.id);
    let plaintext = cipher
        .decrypt(
            &Nonce::from(sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::Unseal)?;
    let bundle = Bundle::from_cbor(&plaintext, plaintext.len())?;
    if bundle.id != sealed.id {
        return Err(VaultError::Unseal);
    }
    Ok(bundle)
}

impl Vault {
    /// Packages, for the patient with this business key (e.g. a CHI), exactly the satellites
    /// that `tags` select in each source that `sources` admits: only that patient's rows.
    /// The bundle gets a random id and no rule ids; the node sets `rule_ids` (and may set
    /// `id`) before sealing. [`VaultError::PatientNotFound`] if the vault has no Person hub
    /// entry for the patient.
    pub fn package(
        &self,
        patient_business_key: &str,
        tags: &[impl AsRef<str>],
        sources: &SourceFilter,
    ) -> Result<Bundle, VaultError> {
        let tags: BTreeSet<String> = tags
            .iter()
            .map(|t| normalise_tag(t.as_ref()))
            .collect::<Result<_, _>>()?;
        let tag_list: Vec<String> = tags.iter().cloned().collect();
        let _guard = self.read_guard()?;
        let patient = patient_key(patient_business_key);
        if !self.hubs.contains_key(patient.as_bytes())? {
            return Err(VaultError::PatientNotFound);
        }
        let limits = &self.config.limits;
        let mut satellites = Vec::new();
        let mut used_sources = BTreeSet::new();
        let mut rows_total = 0usize;
        let mut bytes_total = 0u64;
        for source in self.sources()? {
            if !sources.admits(&source) {
                continue;
            }
            let catalog = self.catalog(&source)?.unwrap_or_default();
            for satellite in self.resolve(&source, &tag_list)? {
                let Some(def) = catalog.satellites.get(&satellite) else {
                    continue;
                };
                let mut rows = Vec::new();
                self.scan_patient(&patient, &source, &satellite, |rec| {
                    rows_total += 1;
                    if rows_total > limits.max_bundle_rows {
                        return Err(VaultError::BundleTooLarge {
                            what: "rows",
                            limit: limits.max_bundle_rows as u64,
                        });
                    }
                    // A rough size bound while collecting; the exact one is checked encoded.
                    bytes_total += 80
                        + rec
                            .fields
                            .iter()
                            .map(|f| f.name.len() as u64 + f.value.to_string().len() as u64 + 8)
                            .sum::<u64>();
                    if bytes_total > limits.max_bundle_bytes {
                        return Err(VaultError::BundleTooLarge {
                            what: "bytes",
                            limit: limits.max_bundle_bytes,
                        });
                    }
                    rows.push(SatRow {
                        parent: rec.parent,
                        load_time_ms: rec.load_time_ms,
                        fields: rec.fields,
                    });
                    Ok(())
                })?;
                if !rows.is_empty() {
                    used_sources.insert(source.clone());
                    satellites.push(SatelliteRows {
                        source: source.clone(),
                        satellite,
                        hub: def.hub,
                        rows,
                    });
                }
            }
        }
        let mut id = [0u8; 32];
        getrandom::fill(&mut id).map_err(|e| VaultError::Random(e.to_string()))?;
        let bundle = Bundle {
            version: BUNDLE_VERSION,
            id: Hash32(id),
            patient,
            hospital: self.config.hospital.clone(),
            sources: used_sources.into_iter().collect(),
            tags: tag_list,
            rule_ids: Vec::new(),
            created_ms: crate::ingest::now_ms(),
            satellites,
        };
        tracing::debug!(
            target: "sphr::vault",
            bundle = %bundle.id,
            satellites = bundle.satellites.len(),
            rows = bundle.row_count(),
            "bundle packaged"
        );
        Ok(bundle)
    }

    /// Keeps a sealed bundle in the consumer zone (`vault_consumer`), by bundle id, durably:
    /// the key goes on chain only after this returns.
    pub fn store_sealed(&self, sealed: &SealedBundle) -> Result<(), VaultError> {
        let bytes = sealed.to_bytes()?;
        let limit = self.sealed_limit();
        if bytes.len() as u64 > limit {
            return Err(VaultError::BundleTooLarge {
                what: "sealed bytes",
                limit,
            });
        }
        self.consumer.insert(sealed.id.as_bytes(), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// A sealed bundle from the consumer zone.
    pub fn load_sealed(&self, id: &Hash32) -> Result<Option<SealedBundle>, VaultError> {
        let Some(bytes) = self.consumer.get(id.as_bytes())? else {
            return Ok(None);
        };
        let limit = usize::try_from(self.sealed_limit()).unwrap_or(usize::MAX);
        let sealed = SealedBundle::from_bytes(&bytes, limit).map_err(|_| VaultError::Corrupt {
            tree: TREE_CONSUMER,
            detail: "sealed bundle does not decode".to_string(),
        })?;
        if sealed.id != *id {
            return Err(VaultError::Corrupt {
                tree: TREE_CONSUMER,
                detail: "sealed bundle stored under another id".to_string(),
            });
        }
        Ok(Some(sealed))
    }

    /// Removes a sealed bundle from the consumer zone; true if it was there.
    pub fn remove_sealed(&self, id: &Hash32) -> Result<bool, VaultError> {
        let removed = self.consumer.remove(id.as_bytes())?.is_some();
        self.db.flush()?;
        Ok(removed)
    }

    /// Largest sealed bundle: the bundle limit plus the envelope.
    fn sealed_limit(&self) -> u64 {
        self.config.limits.max_bundle_bytes.saturating_add(1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Date, Value};

    fn sample() -> Bundle {
        Bundle {
            version: BUNDLE_VERSION,
            id: Hash32([1; 32]),
            patient: patient_key("0101501234"),
            hospital: "ustan".into(),
            sources: vec!["smr01".into()],
            tags: vec!["OPERATION".into()],
            rule_ids: vec!["rule-1".into()],
            created_ms: 5,
            satellites: vec![SatelliteRows {
                source: "smr01".into(),
                satellite: "sat_object_operations_details".into(),
                hub: HubKind::Object,
                rows: vec![SatRow {
                    parent: Hash32([2; 32]),
                    load_time_ms: 7,
                    fields: vec![
                        Field {
                            name: "main_operation_a".into(),
                            value: Value::Text("W19.1".into()),
                        },
                        Field {
                            name: "date".into(),
                            value: Value::Date(Date::new(2023, 1, 5).unwrap()),
                        },
                    ],
                }],
            }],
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let b = sample();
        let (sealed, key) = seal_bundle(&b).unwrap();
        assert_eq!(open_bundle(&sealed, &key).unwrap(), b);
        let bytes = sealed.to_bytes().unwrap();
        assert_eq!(SealedBundle::from_bytes(&bytes, 1 << 20).unwrap(), sealed);
        // Fresh key and nonce each time.
        let (again, key2) = seal_bundle(&b).unwrap();
        assert_ne!(key, key2);
        assert_ne!(sealed.nonce, again.nonce);
    }

    #[test]
    fn tampering_and_wrong_key_fail() {
        let (sealed, key) = seal_bundle(&sample()).unwrap();
        let mut wrong = key;
        wrong[0] ^= 1;
        assert!(matches!(
            open_bundle(&sealed, &wrong),
            Err(VaultError::Unseal)
        ));
        let mut t = sealed.clone();
        t.ciphertext[3] ^= 0x80;
        assert!(matches!(open_bundle(&t, &key), Err(VaultError::Unseal)));
        let mut t = sealed.clone();
        t.id.0[0] ^= 1;
        assert!(matches!(open_bundle(&t, &key), Err(VaultError::Unseal)));
        let mut t = sealed.clone();
        t.nonce[0] ^= 1;
        assert!(matches!(open_bundle(&t, &key), Err(VaultError::Unseal)));
        let mut t = sealed.clone();
        t.ciphertext.truncate(5);
        assert!(matches!(open_bundle(&t, &key), Err(VaultError::Unseal)));
    }

    #[test]
    fn json_export_uses_hex_keys() {
        let b = sample();
        let json = b.to_json().unwrap();
        assert!(json.contains(&b.patient.to_hex()));
        assert!(json.contains("\"Date\": \"2023-01-05\""));
        let back: Bundle = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn cbor_is_deterministic_and_checked() {
        let b = sample();
        let one = b.to_cbor().unwrap();
        assert_eq!(one, b.to_cbor().unwrap());
        assert_eq!(Bundle::from_cbor(&one, 1 << 20).unwrap(), b);
        assert!(Bundle::from_cbor(&one, 10).is_err());
        let mut wrong_hub = b.clone();
        wrong_hub.satellites[0].hub = HubKind::Person;
        assert!(Bundle::from_cbor(&wrong_hub.to_cbor().unwrap(), 1 << 20).is_err());
    }
}
