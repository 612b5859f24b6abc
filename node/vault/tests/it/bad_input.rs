//! Malformed rows and bad control files: documented errors, and nothing half-ingested.

use sphr_vault::{
    BadRow, BadRowReason, ColumnControl, ColumnType, ControlProblem, HubControl, HubKind,
    IngestOptions, Limits, VaultError, hub_key,
};

use crate::common::*;

/// The bad rows of `smr01_bad_rows.csv` when types are fixed after 5 rows.
fn expected_bad_rows() -> Vec<BadRow> {
    vec![
        BadRow {
            line: 7,
            reason: BadRowReason::FieldCount {
                expected: 19,
                found: 18,
            },
        },
        BadRow {
            line: 9,
            reason: BadRowReason::MissingBusinessKey {
                column: "chi".into(),
                hub: HubKind::Person,
            },
        },
        BadRow {
            line: 11,
            reason: BadRowReason::NotOfType {
                column: "discharge_date".into(),
                expected: ColumnType::Date,
            },
        },
        BadRow {
            line: 12,
            reason: BadRowReason::NotOfType {
                column: "length_of_stay".into(),
                expected: ColumnType::Integer,
            },
        },
        BadRow {
            line: 13,
            reason: BadRowReason::NotUtf8 {
                column: "postcode".into(),
            },
        },
    ]
}

fn small_sample() -> Limits {
    Limits {
        infer_rows: 5,
        ..Limits::default()
    }
}

/// No value of the bad file in a message.
fn assert_no_patient_data(message: &str) {
    for secret in [
        CHI_A,
        CHI_B,
        CHI_C,
        CHI_D,
        "31/02/2024",
        "3.5",
        "KY16",
        "EH8",
        "E0110",
        "J18.9",
    ] {
        assert!(!message.contains(secret), "{secret} in: {message}");
    }
}

#[test]
fn malformed_rows_refuse_the_file_and_write_nothing() {
    let env = env_with(small_sample());
    ingest_smr01(&env.vault);
    let before = dump(&env.db);
    let mut calls = 0;
    let limits = small_sample();
    let e = env
        .vault
        .ingest(
            "smr01",
            read_fixture("smr01_bad_rows.csv").as_slice(),
            &columns("smr01_columns.csv", &limits).unwrap(),
            &hubs("smr01_hubs.csv", &limits).unwrap(),
            &options("smr01_bad_rows.csv"),
            |_| calls += 1,
        )
        .unwrap_err();
    match &e {
        VaultError::BadRows { file, count, rows } => {
            assert_eq!(file, "smr01_bad_rows.csv");
            assert_eq!(*count, 5);
            assert_eq!(rows, &expected_bad_rows());
        }
        other => panic!("expected BadRows, got {other}"),
    }
    let message = e.to_string();
    assert!(
        message.contains("line 7: expected 19 fields, found 18"),
        "{message}"
    );
    assert_no_patient_data(&message);
    for row in expected_bad_rows() {
        assert_no_patient_data(&row.to_string());
    }
    assert_eq!(
        expected_bad_rows()[2].to_string(),
        "line 11: column discharge_date: not a date (YYYY-MM-DD or DD/MM/YYYY)"
    );
    assert_eq!(calls, 1, "one final progress call");
    assert_eq!(dump(&env.db), before, "a refused ingest changes nothing");
}

#[test]
fn allow_bad_rows_skips_and_lists_each() {
    let env = env_with(small_sample());
    let opts = IngestOptions {
        allow_bad_rows: true,
        ..options("smr01_bad_rows.csv")
    };
    let report = ingest_fixture(&env.vault, "smr01", "smr01_bad_rows.csv", &opts).unwrap();
    assert_eq!(report.rows_read, 13);
    assert_eq!(report.rows_ingested, 8);
    assert_eq!(report.bad_rows, expected_bad_rows());
    for good in [
        "E0101", "E0102", "E0103", "E0104", "E0105", "E0107", "E0109", "E0113",
    ] {
        assert!(
            env.vault
                .hub(&hub_key(HubKind::Event, good))
                .unwrap()
                .is_some(),
            "{good}"
        );
    }
    for bad in ["E0106", "E0108", "E0110", "E0111", "E0112"] {
        assert!(
            env.vault
                .hub(&hub_key(HubKind::Event, bad))
                .unwrap()
                .is_none(),
            "{bad}"
        );
    }
    // The raw zone keeps the whole file, bad rows included.
    let mut out = Vec::new();
    env.vault.export_raw(report.ingest_id, &mut out).unwrap();
    assert_eq!(out, read_fixture("smr01_bad_rows.csv"));
    // The report's text lists each skipped row, without values.
    let text = report.to_string();
    assert!(
        text.contains("skipped line 12: column length_of_stay: not an integer"),
        "{text}"
    );
    assert_no_patient_data(&text);
    // Stored with the ingest.
    assert_eq!(
        env.vault
            .ingest_record(report.ingest_id)
            .unwrap()
            .report
            .bad_rows,
        expected_bad_rows()
    );
}

#[test]
fn too_many_bad_rows_refuse_even_when_allowed() {
    let env = env_with(Limits {
        max_bad_rows: 2,
        ..small_sample()
    });
    let before = dump(&env.db);
    let opts = IngestOptions {
        allow_bad_rows: true,
        ..options("smr01_bad_rows.csv")
    };
    let e = ingest_fixture(&env.vault, "smr01", "smr01_bad_rows.csv", &opts).unwrap_err();
    assert!(
        matches!(e, VaultError::TooManyBadRows { limit: 2, .. }),
        "{e}"
    );
    assert_eq!(dump(&env.db), before);
}

#[test]
fn with_the_whole_file_as_sample_types_widen_instead() {
    // Default limits: the 13 rows are all in the inference sample, so the odd values decide
    // the column types (as the seed's importer does) and only shape errors remain.
    let env = env();
    let opts = IngestOptions {
        allow_bad_rows: true,
        ..options("smr01_bad_rows.csv")
    };
    let report = ingest_fixture(&env.vault, "smr01", "smr01_bad_rows.csv", &opts).unwrap();
    let lines: Vec<u64> = report.bad_rows.iter().map(|b| b.line).collect();
    assert_eq!(lines, [7, 9, 13]);
    let ty = |name: &str| {
        report
            .profile
            .columns
            .iter()
            .find(|c| c.column == name)
            .unwrap()
            .column_type
    };
    assert_eq!(ty("discharge_date"), ColumnType::Text);
    assert_eq!(ty("length_of_stay"), ColumnType::Float);
}

fn refused_control(columns_file: &str, hubs_file: &str) -> (VaultError, bool) {
    let env = env();
    ingest_smr01(&env.vault);
    let before = dump(&env.db);
    let limits = Limits::default();
    let result = (|| {
        let c = columns(columns_file, &limits)?;
        let h = hubs(hubs_file, &limits)?;
        env.vault.ingest(
            "smr01",
            read_fixture("smr01.csv").as_slice(),
            &c,
            &h,
            &options("smr01.csv"),
            |_| {},
        )
    })();
    let unchanged = dump(&env.db) == before;
    (result.unwrap_err(), unchanged)
}

#[test]
fn bad_control_files_are_refused_with_file_line_and_field() {
    let (e, unchanged) = refused_control("bad_columns_satellite_name.csv", "smr01_hubs.csv");
    assert!(unchanged);
    match &e {
        VaultError::Control {
            file,
            line,
            field,
            problem,
        } => {
            assert_eq!(file, "bad_columns_satellite_name.csv");
            assert_eq!(*line, Some(7));
            assert_eq!(field, "destination");
            assert!(
                matches!(problem, ControlProblem::BadSatelliteName { name, .. } if name == "sat_person_demographics")
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        e.to_string(),
        "bad_columns_satellite_name.csv, line 7, field destination: \"sat_person_demographics\" breaks the satellite naming convention sat_<hub>_<major>_<minor>: not of the form sat_<hub>_<major>_<minor>"
    );

    let (e, unchanged) = refused_control("bad_columns_missing_ward.csv", "smr01_hubs.csv");
    assert!(unchanged);
    assert!(
        matches!(&e, VaultError::Control { file, line: Some(1), field, problem: ControlProblem::NotInControl { .. } }
            if file == "smr01.csv" && field == "ward"),
        "{e}"
    );

    let (e, unchanged) = refused_control("smr01_columns.csv", "bad_hubs_no_person.csv");
    assert!(unchanged);
    assert!(
        matches!(&e, VaultError::Control { file, line: None, field, problem: ControlProblem::NoPersonHub }
            if file == "bad_hubs_no_person.csv" && field == "hub"),
        "{e}"
    );
}

#[test]
fn more_control_file_errors() {
    let limits = Limits::default();
    let cases: [(&str, &str, Option<u64>, &str); 5] = [
        (
            "name,destination,foreign_key\nchi,hub_person,\nchi,hub_person,\n",
            "columns",
            Some(3),
            "name",
        ),
        (
            "name,destination,foreign_key\nchi,hub_person,chi_hub_event\n",
            "columns",
            Some(2),
            "foreign_key",
        ),
        (
            "hub,primary_key\nhub_person,chi\nhub_place,loc\n",
            "hubs",
            Some(3),
            "hub",
        ),
        (
            "hub,primary_key\nhub_person,\n",
            "hubs",
            Some(2),
            "primary_key",
        ),
        (
            "hub;primary_key\nhub_person;chi\n",
            "hubs",
            Some(1),
            "header",
        ),
    ];
    for (text, kind, want_line, want_field) in cases {
        let e = if kind == "columns" {
            let c = ColumnControl::parse("c.csv", text.as_bytes(), &limits).and_then(|c| {
                // Errors found against the hub file and table come from the ingest plan.
                let env = env();
                env.vault.ingest(
                    "s",
                    "chi\n1\n".as_bytes(),
                    &c,
                    &HubControl::parse(
                        "h.csv",
                        "hub,primary_key\nhub_person,chi\n".as_bytes(),
                        &limits,
                    )?,
                    &IngestOptions::default(),
                    |_| {},
                )
            });
            c.unwrap_err()
        } else {
            HubControl::parse("h.csv", text.as_bytes(), &limits).unwrap_err()
        };
        match e {
            VaultError::Control { line, field, .. } => {
                assert_eq!((line, field.as_str()), (want_line, want_field), "{text}")
            }
            other => panic!("{text}: {other}"),
        }
    }
}

#[test]
fn limits_refuse_without_writing() {
    // A record longer than the limit.
    let env = env_with(Limits {
        max_line_bytes: 250,
        ..Limits::default()
    });
    let before = dump(&env.db);
    let mut table = read_fixture("smr01.csv");
    let long = format!(
        "E0021,{CHI_A},2024-05-01,02/05/2024,1,2,74,1A,B,KY16 9AJ,A1,emergency,{},,,,,N101H,ward 2\n",
        "X".repeat(300)
    );
    table.extend_from_slice(long.as_bytes());
    let limits = env.vault.config().limits.clone();
    let c = columns("smr01_columns.csv", &limits).unwrap();
    let h = hubs("smr01_hubs.csv", &limits).unwrap();
    let e = env
        .vault
        .ingest("smr01", table.as_slice(), &c, &h, &options("t.csv"), |_| {})
        .unwrap_err();
    assert!(
        matches!(
            e,
            VaultError::Limit {
                line: Some(22),
                limit: 250,
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("XXX"));
    assert_eq!(dump(&env.db), before);

    // A file larger than the limit.
    let env = env_with(Limits {
        max_table_bytes: 1000,
        ..Limits::default()
    });
    let before = dump(&env.db);
    let e = ingest_fixture(&env.vault, "smr01", "smr01.csv", &options("smr01.csv")).unwrap_err();
    assert!(matches!(e, VaultError::Limit { limit: 1000, .. }), "{e}");
    assert_eq!(dump(&env.db), before);

    // Too many columns.
    let env = env_with(Limits {
        max_columns: 5,
        ..Limits::default()
    });
    let limits = env.vault.config().limits.clone();
    let e = columns("smr01_columns.csv", &limits).unwrap_err();
    assert!(
        matches!(
            &e,
            VaultError::Control {
                problem: ControlProblem::TooMany {
                    what: "columns",
                    ..
                },
                ..
            }
        ),
        "{e}"
    );

    // An empty table; a bad source name.
    let env = crate::common::env();
    let limits = Limits::default();
    let c = columns("smr01_columns.csv", &limits).unwrap();
    let h = hubs("smr01_hubs.csv", &limits).unwrap();
    let e = env
        .vault
        .ingest("smr01", &b""[..], &c, &h, &IngestOptions::default(), |_| {})
        .unwrap_err();
    assert!(matches!(e, VaultError::EmptyTable { .. }), "{e}");
    let e = env
        .vault
        .ingest(
            "../etc",
            &b"x"[..],
            &c,
            &h,
            &IngestOptions::default(),
            |_| {},
        )
        .unwrap_err();
    assert!(matches!(e, VaultError::InvalidSource { .. }), "{e}");
    assert!(matches!(
        sphr_vault::Vault::open(
            &env.db,
            sphr_vault::VaultConfig {
                hospital: "x".into(),
                limits: Limits {
                    infer_rows: 0,
                    ..Limits::default()
                }
            }
        ),
        Err(VaultError::InvalidConfig(_))
    ));
}

#[test]
fn line_numbers_count_blank_lines_crlf_and_quoted_newlines() {
    let env = env();
    let text = String::from_utf8(read_fixture("smr01.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Original line 10 (E0009): a ward with a quoted line break.
    lines[9] = lines[9].replace(",ward 7", ",\"ward\r\n7\"");
    // A blank line after original line 5.
    lines.insert(5, String::new());
    // A short row at the end: physical line 24 (21 lines + 1 blank + 1 quoted break + 1).
    lines.push(format!("E0021,{CHI_A},2024-05-01,02/05/2024,1"));
    let table = lines.join("\r\n") + "\r\n";
    let limits = Limits::default();
    let c = columns("smr01_columns.csv", &limits).unwrap();
    let h = hubs("smr01_hubs.csv", &limits).unwrap();
    let opts = IngestOptions {
        allow_bad_rows: true,
        ..options("crlf.csv")
    };
    let report = env
        .vault
        .ingest("smr01", table.as_bytes(), &c, &h, &opts, |_| {})
        .unwrap();
    assert_eq!(report.rows_ingested, 20);
    assert_eq!(
        report.bad_rows,
        vec![BadRow {
            line: 24,
            reason: BadRowReason::FieldCount {
                expected: 19,
                found: 5
            }
        }]
    );
    let rows = env
        .vault
        .patient_rows(CHI_A, "smr01", "sat_location_ward_details")
        .unwrap();
    let wards: Vec<String> = rows.iter().map(|r| r.fields[0].value.to_string()).collect();
    assert!(wards.contains(&"ward\r\n7".to_string()), "{wards:?}");
    // Satellite rows remember their line: E0020 moved from line 21 to line 23.
    let rows = env
        .vault
        .patient_rows(CHI_A, "smr01", "sat_time_admissions_date")
        .unwrap();
    let e20 = rows
        .iter()
        .find(|r| r.parent == hub_key(HubKind::Time, "E0020"))
        .unwrap();
    assert_eq!(e20.line, 23);
}
