//! The SMR01 fixture gives exactly the expected hubs, links and satellites, checked on values.

use std::collections::{BTreeMap, BTreeSet};

use sphr_crypto::hash::{Hash32, sha256};
use sphr_vault::{
    ColumnType, Date, Distinct, HubKind, HubRef, SatRecord, Value, hub_key, link_key, patient_key,
};

use crate::common::*;

fn date(s: &str) -> Value {
    Value::Date(Date::parse(s).unwrap())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn values(rec: &SatRecord) -> Vec<Value> {
    rec.fields.iter().map(|f| f.value.clone()).collect()
}

fn names(rec: &SatRecord) -> Vec<&str> {
    rec.fields.iter().map(|f| f.name.as_str()).collect()
}

/// (episode, chi, location) of each fixture row, read with a plain split.
fn episodes() -> Vec<(String, String, String)> {
    let text = String::from_utf8(read_fixture("smr01.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[17].to_string())
        })
        .collect()
}

#[test]
fn smr01_gives_exactly_the_expected_vault() {
    let env = env();
    let report = ingest_smr01(&env.vault);
    let raw = read_fixture("smr01.csv");

    // The report.
    assert_eq!(report.source, "smr01");
    assert_eq!(report.rows_read, 20);
    assert_eq!(report.rows_ingested, 20);
    assert!(report.bad_rows.is_empty());
    assert_eq!(report.raw_sha256, sha256(&raw));
    assert_eq!(report.raw_bytes, raw.len() as u64);
    let hubs_new: BTreeMap<HubKind, u64> = report.hubs_new.iter().map(|h| (h.hub, h.new)).collect();
    assert_eq!(
        hubs_new,
        BTreeMap::from([
            (HubKind::Time, 20),
            (HubKind::Person, 4),
            (HubKind::Object, 20),
            (HubKind::Location, 3),
            (HubKind::Event, 20),
        ])
    );
    assert_eq!(report.links_new, 20);
    assert_eq!(report.satellite_rows_new, 89);

    // Hubs: exactly these business keys, keyed by their hash.
    let mut expected_hubs = BTreeSet::new();
    for chi in ALL_CHI {
        expected_hubs.insert((HubKind::Person, chi.to_string()));
    }
    for i in 1..=20 {
        for kind in [HubKind::Time, HubKind::Object, HubKind::Event] {
            expected_hubs.insert((kind, format!("E{i:04}")));
        }
    }
    for loc in ["N101H", "G107H", "S116H"] {
        expected_hubs.insert((HubKind::Location, loc.to_string()));
    }
    let mut hubs = BTreeSet::new();
    for item in env.vault.iter_hubs() {
        let (key, rec) = item.unwrap();
        assert_eq!(key, hub_key(rec.kind, &rec.business_key));
        assert_eq!(rec.record_source, "smr01");
        assert_eq!(rec.load_time_ms, LOAD_TIME_MS);
        assert_eq!(rec.ingest_id, report.ingest_id);
        hubs.insert((rec.kind, rec.business_key));
    }
    assert_eq!(hubs, expected_hubs);

    // Links: one per row, over the five hubs that row touches, in T-P-O-L-E order.
    let mut expected_links = BTreeMap::new();
    for (episode, chi, loc) in episodes() {
        let refs = vec![
            HubRef {
                kind: HubKind::Time,
                key: hub_key(HubKind::Time, &episode),
            },
            HubRef {
                kind: HubKind::Person,
                key: patient_key(&chi),
            },
            HubRef {
                kind: HubKind::Object,
                key: hub_key(HubKind::Object, &episode),
            },
            HubRef {
                kind: HubKind::Location,
                key: hub_key(HubKind::Location, &loc),
            },
            HubRef {
                kind: HubKind::Event,
                key: hub_key(HubKind::Event, &episode),
            },
        ];
        expected_links.insert(link_key(&refs), refs);
    }
    assert_eq!(expected_links.len(), 20);
    let links: BTreeMap<Hash32, Vec<HubRef>> = env
        .vault
        .iter_links()
        .map(|l| {
            let (k, rec) = l.unwrap();
            (k, rec.hubs)
        })
        .collect();
    assert_eq!(links, expected_links);

    // Satellites: rows per satellite, and every row under its own patient.
    let mut per_sat: BTreeMap<String, usize> = BTreeMap::new();
    let chi_of_episode: BTreeMap<String, String> =
        episodes().into_iter().map(|(e, c, _)| (e, c)).collect();
    for item in env.vault.iter_satellite_rows() {
        let (key, rec) = item.unwrap();
        *per_sat.entry(key.satellite.clone()).or_default() += 1;
        assert_eq!(key.source, "smr01");
        assert_eq!(rec.hub.as_str(), key.satellite.split('_').nth(1).unwrap());
        // The row's link names the row's patient.
        let link = env.vault.link(&rec.link.unwrap()).unwrap().unwrap();
        assert!(link.hubs.contains(&HubRef {
            kind: HubKind::Person,
            key: key.patient
        }));
        assert!(link.hubs.contains(&HubRef {
            kind: rec.hub,
            key: rec.parent
        }));
        // The line it came from is that patient's.
        let line = rec.line as usize;
        let episode = format!("E{:04}", line - 1);
        assert_eq!(patient_key(&chi_of_episode[&episode]), key.patient);
    }
    assert_eq!(
        per_sat,
        BTreeMap::from([
            ("sat_event_admission_core".to_string(), 20),
            ("sat_location_ward_details".to_string(), 9),
            ("sat_object_conditions_details".to_string(), 20),
            ("sat_object_operations_details".to_string(), 12),
            ("sat_person_demographic_details".to_string(), 8),
            ("sat_time_admissions_date".to_string(), 20),
        ])
    );

    // Patient A's admissions: ISO and DD/MM/YYYY dates both stored as dates, one row per
    // episode, under that episode's Time hub.
    let rows = env
        .vault
        .patient_rows(CHI_A, "smr01", "sat_time_admissions_date")
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| names(r) == ["admission_date", "discharge_date", "length_of_stay"])
    );
    let expected = [
        ("E0001", "2022-03-02", "2022-03-09", 7),
        ("E0005", "2022-09-14", "2022-09-16", 2),
        ("E0009", "2023-02-15", "2023-03-03", 16),
        ("E0012", "2023-06-22", "2023-06-29", 7),
        ("E0016", "2023-11-01", "2023-11-02", 1),
        ("E0020", "2024-04-09", "2024-04-12", 3),
    ];
    assert_eq!(rows.len(), expected.len());
    for (episode, admitted, discharged, stay) in expected {
        let row = rows
            .iter()
            .find(|r| r.parent == hub_key(HubKind::Time, episode))
            .unwrap_or_else(|| panic!("no admission row for {episode}"));
        assert_eq!(
            values(row),
            vec![date(admitted), date(discharged), Value::Int(stay)],
            "{episode}"
        );
        assert_eq!(row.hub, HubKind::Time);
        assert_eq!(row.load_time_ms, LOAD_TIME_MS);
    }

    // Patient A's demographics: two versions (age 72, then 73), under the Person hub.
    let rows = env
        .vault
        .patient_rows(CHI_A, "smr01", "sat_person_demographic_details")
        .unwrap();
    let mut demo: Vec<Vec<Value>> = rows.iter().map(values).collect();
    demo.sort_by_key(|v| format!("{v:?}"));
    assert_eq!(
        demo,
        vec![
            vec![
                Value::Int(2),
                Value::Int(72),
                text("1A"),
                text("B"),
                text("KY16 9AJ")
            ],
            vec![
                Value::Int(2),
                Value::Int(73),
                text("1A"),
                text("B"),
                text("KY16 9AJ")
            ],
        ]
    );
    assert!(rows.iter().all(|r| r.parent == patient_key(CHI_A)));
    // Patient C moved: the new postcode is a new version, the old one stays (history).
    let rows = env
        .vault
        .patient_rows(CHI_C, "smr01", "sat_person_demographic_details")
        .unwrap();
    let postcodes: BTreeSet<String> = rows.iter().map(|r| r.fields[4].value.to_string()).collect();
    assert_eq!(
        postcodes,
        BTreeSet::from(["G12 8QQ".to_string(), "G41 2TT".to_string()])
    );

    // Patient C's operations: five episodes with one, missing values kept as Null.
    let rows = env
        .vault
        .patient_rows(CHI_C, "smr01", "sat_object_operations_details")
        .unwrap();
    let expected = [
        ("E0003", text("W19.1"), text("W28.1")),
        ("E0006", text("W37.1"), Value::Null),
        ("E0011", text("K75.4"), Value::Null),
        ("E0015", text("W28.3"), Value::Null),
        ("E0019", text("W46.1"), Value::Null),
    ];
    assert_eq!(rows.len(), expected.len());
    for (episode, a, b) in expected {
        let row = rows
            .iter()
            .find(|r| r.parent == hub_key(HubKind::Object, episode))
            .unwrap_or_else(|| panic!("no operation row for {episode}"));
        assert_eq!(names(row), ["main_operation_a", "main_operation_b"]);
        assert_eq!(values(row), vec![a, b], "{episode}");
    }
    // Patient B had no operation with a code in the first episode: no row for it.
    let rows = env
        .vault
        .patient_rows(CHI_B, "smr01", "sat_object_operations_details")
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(values(&rows[0]), vec![text("T20.1"), Value::Null]);

    // Patient C's wards hang off the Location hub G107H.
    let rows = env
        .vault
        .patient_rows(CHI_C, "smr01", "sat_location_ward_details")
        .unwrap();
    let wards: BTreeSet<String> = rows.iter().map(|r| r.fields[0].value.to_string()).collect();
    assert_eq!(
        wards,
        BTreeSet::from([
            "ccu".to_string(),
            "day unit".to_string(),
            "ward 12".to_string()
        ])
    );
    assert!(
        rows.iter()
            .all(|r| r.parent == hub_key(HubKind::Location, "G107H"))
    );

    // Patient D's conditions: the event's specialty is in another satellite.
    let rows = env
        .vault
        .patient_rows(CHI_D, "smr01", "sat_event_admission_core")
        .unwrap();
    let mut core: Vec<Vec<Value>> = rows.iter().map(values).collect();
    core.sort_by_key(|v| format!("{v:?}"));
    assert_eq!(
        core,
        vec![
            vec![text("C1"), text("elective")],
            vec![text("C1"), text("emergency")],
            vec![text("F2"), text("elective")],
            vec![text("F2"), text("emergency")],
        ]
    );

    // The catalog of the source.
    let catalog = env.vault.catalog("smr01").unwrap().unwrap();
    assert_eq!(catalog.ingests, vec![report.ingest_id]);
    assert_eq!(
        catalog.satellites["sat_object_conditions_details"].columns,
        ["main_condition", "other_condition_1", "other_condition_2"]
    );
    assert_eq!(
        catalog.satellites["sat_location_ward_details"].hub,
        HubKind::Location
    );
    assert_eq!(env.vault.sources().unwrap(), ["smr01"]);
}

#[test]
fn smr01_profile() {
    let env = env();
    let report = ingest_smr01(&env.vault);
    let profile = env.vault.profile(report.ingest_id).unwrap();
    assert_eq!(profile, report.profile);
    assert_eq!(profile.rows, 20);
    let col = |name: &str| {
        profile
            .columns
            .iter()
            .find(|c| c.column == name)
            .unwrap_or_else(|| panic!("no profile for {name}"))
    };
    let types: Vec<(&str, ColumnType)> = profile
        .columns
        .iter()
        .map(|c| (c.column.as_str(), c.column_type))
        .collect();
    assert_eq!(
        types,
        vec![
            ("episode_id", ColumnType::Text),
            // Leading zeros: CHI numbers stay text.
            ("chi", ColumnType::Text),
            ("admission_date", ColumnType::Date),
            ("discharge_date", ColumnType::Date),
            ("length_of_stay", ColumnType::Integer),
            ("sex", ColumnType::Integer),
            ("age_in_years", ColumnType::Integer),
            ("ethnic_group", ColumnType::Text),
            ("marital_status", ColumnType::Text),
            ("postcode", ColumnType::Text),
            ("specialty", ColumnType::Text),
            ("admission_type", ColumnType::Text),
            ("main_condition", ColumnType::Text),
            ("other_condition_1", ColumnType::Text),
            ("other_condition_2", ColumnType::Text),
            ("main_operation_a", ColumnType::Text),
            ("main_operation_b", ColumnType::Text),
            ("location_code", ColumnType::Text),
            ("ward", ColumnType::Text),
        ]
    );
    let chi = col("chi");
    assert_eq!((chi.count, chi.missing), (20, 0));
    assert_eq!(chi.distinct, Distinct::Exact(4));
    assert_eq!(chi.top[0].value, CHI_A);
    assert_eq!(chi.top[0].count, 6);
    assert!(chi.top_exact);
    let stay = col("length_of_stay");
    assert_eq!(stay.min, Some(Value::Int(0)));
    assert_eq!(stay.max, Some(Value::Int(16)));
    let discharged = col("discharge_date");
    assert_eq!(discharged.min, Some(date("2022-03-09")));
    assert_eq!(discharged.max, Some(date("2024-04-12")));
    let oc2 = col("other_condition_2");
    assert_eq!((oc2.count, oc2.missing), (20, 16));
    assert_eq!(oc2.distinct, Distinct::Exact(4));
    let spec = col("specialty");
    assert_eq!(spec.top.len(), 4);
    assert_eq!((spec.top[0].value.as_str(), spec.top[0].count), ("A1", 8));
    assert_eq!((spec.top[1].value.as_str(), spec.top[1].count), ("C8", 7));

    let table = profile.to_string();
    assert!(table.contains("length_of_stay"), "{table}");
    assert!(table.contains("integer"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&profile.to_json().unwrap()).unwrap();
    assert_eq!(json["columns"][1]["distinct"]["exact"], 4);

    // The report's summary holds no patient data.
    let summary = report.to_string();
    for chi in ALL_CHI {
        assert!(!summary.contains(chi));
    }
}

#[test]
fn re_ingesting_the_same_file_adds_nothing_but_its_record() {
    let env = env();
    let first = ingest_smr01(&env.vault);
    let trees = |db: &sled::Db| {
        let d = dump(db);
        ["vault_hubs", "vault_links", "vault_sats"]
            .map(|t| d.get(t.as_bytes()).cloned().unwrap_or_default())
    };
    let before = trees(&env.db);
    let second = ingest_smr01(&env.vault);
    assert_ne!(first.ingest_id, second.ingest_id);
    assert_eq!(second.rows_ingested, 20);
    assert!(second.hubs_new.iter().all(|h| h.new == 0));
    assert_eq!((second.links_new, second.satellite_rows_new), (0, 0));
    assert_eq!(trees(&env.db), before);
    assert_eq!(env.vault.ingests().unwrap().len(), 2);
    assert_eq!(
        env.vault.catalog("smr01").unwrap().unwrap().ingests,
        vec![first.ingest_id, second.ingest_id]
    );
    // The raw zone holds each file, checked against its hash on the way out.
    let raw = read_fixture("smr01.csv");
    for id in [first.ingest_id, second.ingest_id] {
        let mut out = Vec::new();
        assert_eq!(
            env.vault.export_raw(id, &mut out).unwrap(),
            raw.len() as u64
        );
        assert_eq!(out, raw);
    }
}
