//! Tags, bundles, sealing and the consumer zone.

use std::collections::{BTreeMap, BTreeSet};

use sphr_crypto::hash::Hash32;
use sphr_vault::{
    Bundle, SatRecord, SourceFilter, TagMap, VaultError, open_bundle, parse_tag_file, patient_key,
    seal_bundle,
};

use crate::common::*;

fn fixture_tags(env: &Env) -> TagMap {
    parse_tag_file(
        "smr01_tags.csv",
        read_fixture("smr01_tags.csv").as_slice(),
        &env.vault.config().limits,
    )
    .unwrap()
}

fn ready() -> Env {
    let env = env();
    ingest_smr01(&env.vault);
    let tags = fixture_tags(&env);
    env.vault.set_tags("smr01", &tags).unwrap();
    env
}

/// All satellite rows of the vault, by (patient, source, satellite).
fn all_rows(env: &Env) -> BTreeMap<(Hash32, String, String), Vec<SatRecord>> {
    let mut out: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for item in env.vault.iter_satellite_rows() {
        let (k, rec) = item.unwrap();
        out.entry((k.patient, k.source, k.satellite))
            .or_default()
            .push(rec);
    }
    out
}

#[test]
fn tag_maps_are_stored_checked_and_resolved() {
    let env = ready();
    let tags = env.vault.tags("smr01").unwrap();
    assert_eq!(tags, fixture_tags(&env));
    assert_eq!(tags.len(), 6);
    assert_eq!(
        env.vault.resolve("smr01", &["leg"]).unwrap(),
        BTreeSet::from([
            "sat_object_conditions_details".to_string(),
            "sat_object_operations_details".to_string()
        ])
    );
    assert_eq!(
        env.vault
            .resolve("smr01", &["OPERATION", "Basic  Personal", "NOT MAPPED"])
            .unwrap(),
        BTreeSet::from([
            "sat_object_operations_details".to_string(),
            "sat_person_demographic_details".to_string()
        ])
    );
    assert!(env.vault.resolve("smr01", &["bad;tag"]).is_err());

    // A tag naming a satellite the source does not have is refused; the map is unchanged.
    let mut bad = tags.clone();
    bad.entry("LEG".into())
        .or_default()
        .insert("sat_object_prescriptions_details".into());
    let e = env.vault.set_tags("smr01", &bad).unwrap_err();
    assert!(
        matches!(&e, VaultError::UnknownSatellite { tag, satellite, .. }
            if tag == "LEG" && satellite == "sat_object_prescriptions_details"),
        "{e}"
    );
    let mut bad = tags.clone();
    bad.entry("X".into())
        .or_default()
        .insert("not_a_satellite".into());
    assert!(matches!(
        env.vault.set_tags("smr01", &bad),
        Err(VaultError::UnknownSatellite { .. })
    ));
    let mut twice = TagMap::new();
    twice.insert(
        "leg".into(),
        BTreeSet::from(["sat_object_operations_details".into()]),
    );
    twice.insert(
        "LEG".into(),
        BTreeSet::from(["sat_object_conditions_details".into()]),
    );
    assert!(matches!(
        env.vault.set_tags("smr01", &twice),
        Err(VaultError::InvalidTagMap { .. })
    ));
    assert_eq!(env.vault.tags("smr01").unwrap(), tags);
    // Unknown source.
    assert!(matches!(
        env.vault.set_tags("other", &tags),
        Err(VaultError::UnknownSource(_))
    ));
    assert!(env.vault.tags("other").unwrap().is_empty());
}

#[test]
fn bundle_holds_exactly_the_tagged_satellites_of_one_patient() {
    let env = ready();
    let bundle = env
        .vault
        .package(CHI_C, &["OPERATION", "basic personal"], &SourceFilter::All)
        .unwrap();
    assert_eq!(bundle.patient, patient_key(CHI_C));
    assert_eq!(bundle.hospital, "ustan");
    assert_eq!(bundle.sources, ["smr01"]);
    assert_eq!(bundle.tags, ["BASIC PERSONAL", "OPERATION"]);
    assert!(bundle.rule_ids.is_empty());
    let sats: Vec<&str> = bundle
        .satellites
        .iter()
        .map(|s| s.satellite.as_str())
        .collect();
    assert_eq!(
        sats,
        [
            "sat_object_operations_details",
            "sat_person_demographic_details"
        ]
    );
    let rows = all_rows(&env);
    for s in &bundle.satellites {
        let stored = &rows[&(patient_key(CHI_C), s.source.clone(), s.satellite.clone())];
        assert_eq!(s.rows.len(), stored.len());
        for (row, rec) in s.rows.iter().zip(stored) {
            assert_eq!(row.parent, rec.parent);
            assert_eq!(row.fields, rec.fields);
            assert_eq!(row.load_time_ms, rec.load_time_ms);
        }
    }
    assert_eq!(bundle.row_count(), 5 + 2);

    // The patient's identifier never leaves; nor does any other patient's data.
    let json = bundle.to_json().unwrap();
    let cbor = bundle.to_cbor().unwrap();
    for chi in ALL_CHI {
        assert!(!json.contains(chi));
        assert!(!cbor.windows(chi.len()).any(|w| w == chi.as_bytes()));
    }
    for other in ["W40.1", "T20.1", "R17.2", "KY16 9AJ", "DD1 4HN", "EH8 9YL"] {
        assert!(!json.contains(other), "{other}");
    }
    assert!(json.contains("W19.1") && json.contains("G41 2TT"));
    assert!(json.contains(&patient_key(CHI_C).to_hex()));
}

#[test]
fn every_tag_set_for_every_patient_gives_exactly_its_satellites() {
    let env = ready();
    let rows = all_rows(&env);
    let tag_names: Vec<String> = env.vault.tags("smr01").unwrap().into_keys().collect();
    for chi in ALL_CHI {
        let patient = patient_key(chi);
        for mask in 0u32..(1 << tag_names.len()) {
            let tags: Vec<&str> = tag_names
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, t)| t.as_str())
                .collect();
            let bundle = env.vault.package(chi, &tags, &SourceFilter::All).unwrap();
            assert_eq!(bundle.patient, patient);
            let expected: BTreeSet<String> = env
                .vault
                .resolve("smr01", &tags)
                .unwrap()
                .into_iter()
                .filter(|s| rows.contains_key(&(patient, "smr01".to_string(), s.clone())))
                .collect();
            let got: BTreeSet<String> = bundle
                .satellites
                .iter()
                .map(|s| s.satellite.clone())
                .collect();
            assert_eq!(got, expected, "{chi} {tags:?}");
            for s in &bundle.satellites {
                let stored = &rows[&(patient, s.source.clone(), s.satellite.clone())];
                let got: Vec<_> = s
                    .rows
                    .iter()
                    .map(|r| (r.parent, r.fields.clone()))
                    .collect();
                let want: Vec<_> = stored
                    .iter()
                    .map(|r| (r.parent, r.fields.clone()))
                    .collect();
                assert_eq!(got, want, "{chi} {}", s.satellite);
            }
        }
    }
}

#[test]
fn unknown_patient_and_empty_grants() {
    let env = ready();
    let e = env
        .vault
        .package("9999999999", &["OPERATION"], &SourceFilter::All)
        .unwrap_err();
    assert!(matches!(e, VaultError::PatientNotFound));
    assert!(!e.to_string().contains("9999999999"));
    assert!(!env.vault.has_patient("9999999999").unwrap());
    assert!(env.vault.has_patient(CHI_A).unwrap());
    assert!(env.vault.has_patient(&format!("  {CHI_A} ")).unwrap());
    // A tag this hospital does not map: an empty bundle, not an error.
    let b = env
        .vault
        .package(CHI_A, &["PRESCRIPTIONS"], &SourceFilter::All)
        .unwrap();
    assert!(b.satellites.is_empty() && b.sources.is_empty());
    // Patient B had no operation in the mapped satellite's sense? B has one.
    let b = env
        .vault
        .package(CHI_B, &["OPERATION"], &SourceFilter::All)
        .unwrap();
    assert_eq!(b.row_count(), 1);
}

#[test]
fn source_filter_selects_sources() {
    let env = ready();
    ingest_fixture(&env.vault, "smr01b", "smr01.csv", &options("smr01.csv")).unwrap();
    let mut tags = TagMap::new();
    tags.insert(
        "OPERATION".into(),
        BTreeSet::from(["sat_object_operations_details".into()]),
    );
    env.vault.set_tags("smr01b", &tags).unwrap();
    let all = env
        .vault
        .package(CHI_A, &["OPERATION", "ADMISSIONS"], &SourceFilter::All)
        .unwrap();
    let got: Vec<(&str, &str)> = all
        .satellites
        .iter()
        .map(|s| (s.source.as_str(), s.satellite.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("smr01", "sat_event_admission_core"),
            ("smr01", "sat_object_operations_details"),
            ("smr01", "sat_time_admissions_date"),
            ("smr01b", "sat_object_operations_details"),
        ]
    );
    assert_eq!(all.sources, ["smr01", "smr01b"]);
    let only = env
        .vault
        .package(
            CHI_A,
            &["OPERATION", "ADMISSIONS"],
            &SourceFilter::Only(BTreeSet::from(["smr01b".to_string()])),
        )
        .unwrap();
    assert_eq!(only.sources, ["smr01b"]);
    assert_eq!(only.satellites.len(), 1);
}

#[test]
fn sealed_bundles_in_the_consumer_zone() {
    let env = ready();
    let mut bundle = env
        .vault
        .package(CHI_A, &["LEG", "ADMISSIONS"], &SourceFilter::All)
        .unwrap();
    bundle.rule_ids = vec!["rule-7".into(), "rule-9".into()];
    let (sealed, key) = seal_bundle(&bundle).unwrap();
    env.vault.store_sealed(&sealed).unwrap();
    let loaded = env.vault.load_sealed(&bundle.id).unwrap().unwrap();
    assert_eq!(loaded, sealed);
    let opened = open_bundle(&loaded, &key).unwrap();
    assert_eq!(opened, bundle);
    assert_eq!(opened.rule_ids, ["rule-7", "rule-9"]);
    // CBOR is deterministic and decodes back.
    let cbor = bundle.to_cbor().unwrap();
    assert_eq!(cbor, opened.to_cbor().unwrap());
    assert_eq!(Bundle::from_cbor(&cbor, cbor.len()).unwrap(), bundle);

    // A wrong key fails.
    let mut wrong = key;
    wrong[31] ^= 0x01;
    assert!(matches!(
        open_bundle(&loaded, &wrong),
        Err(VaultError::Unseal)
    ));
    // Any flipped bit of the ciphertext fails.
    for i in [0, loaded.ciphertext.len() / 2, loaded.ciphertext.len() - 1] {
        let mut t = loaded.clone();
        t.ciphertext[i] ^= 0x04;
        assert!(
            matches!(open_bundle(&t, &key), Err(VaultError::Unseal)),
            "byte {i}"
        );
    }
    // A bundle moved under another id fails.
    let mut t = loaded.clone();
    t.id = Hash32([9; 32]);
    assert!(matches!(open_bundle(&t, &key), Err(VaultError::Unseal)));
    // Tampered bytes in the consumer tree: an error on load or on open, never a bundle.
    let tree = env.db.open_tree("vault_consumer").unwrap();
    let stored = tree.get(bundle.id.as_bytes()).unwrap().unwrap().to_vec();
    for i in (0..stored.len()).step_by(97) {
        let mut t = stored.clone();
        t[i] ^= 0x10;
        tree.insert(bundle.id.as_bytes(), t).unwrap();
        match env.vault.load_sealed(&bundle.id) {
            Err(_) => {}
            Ok(Some(s)) => assert!(open_bundle(&s, &key).is_err(), "byte {i}"),
            Ok(None) => panic!("gone"),
        }
    }
    assert!(env.vault.remove_sealed(&bundle.id).unwrap());
    assert!(env.vault.load_sealed(&bundle.id).unwrap().is_none());
}
