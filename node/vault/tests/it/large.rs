//! A generated file of 200,000 rows ingests with bounded memory: only the inference sample is
//! ever held, and the raw zone and profile come out right.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};

use sha2::{Digest, Sha256};
use sphr_crypto::hash::Hash32;
use sphr_vault::{
    ColumnControl, Distinct, HubControl, HubKind, IngestOptions, Limits, Progress, hub_key,
    patient_key,
};

use crate::common::*;

const ROWS: u64 = 200_000;
const PATIENTS: u64 = 1_000;

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn large_file_ingests_in_bounded_memory() {
    let env = env();
    let path = env.dir.path().join("large.csv");
    {
        let mut w = BufWriter::new(File::create(&path).unwrap());
        writeln!(w, "episode_id,chi,admission_date,specialty,length_of_stay").unwrap();
        let specialties = ["A1", "C8", "C1", "F2", "AB"];
        for i in 0..ROWS {
            let chi = 1_000_000_000 + (i % PATIENTS);
            let day = 1 + (i % 28);
            let month = 1 + (i / 28) % 12;
            writeln!(
                w,
                "E{i:07},{chi},2023-{month:02}-{day:02},{},{}",
                specialties[(i % 5) as usize],
                i % 30
            )
            .unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    let file_hash = {
        let mut h = Sha256::new();
        let mut f = File::open(&path).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Hash32(h.finalize().into())
    };

    let limits = Limits::default();
    let columns = ColumnControl::parse(
        "large_columns.csv",
        "name,destination,foreign_key\n\
         episode_id,hub_event,\n\
         chi,hub_person,\n\
         admission_date,sat_event_admission_core,episode_id_hub_event\n\
         specialty,sat_event_admission_core,episode_id_hub_event\n\
         length_of_stay,sat_event_admission_core,episode_id_hub_event\n"
            .as_bytes(),
        &limits,
    )
    .unwrap();
    let hubs = HubControl::parse(
        "large_hubs.csv",
        "hub,primary_key\nhub_person,chi\nhub_event,episode_id\n".as_bytes(),
        &limits,
    )
    .unwrap();
    let mut calls: Vec<Progress> = Vec::new();
    let report = env
        .vault
        .ingest(
            "large",
            BufReader::new(File::open(&path).unwrap()),
            &columns,
            &hubs,
            &IngestOptions {
                table_name: "large.csv".into(),
                size_hint: Some(size),
                ..IngestOptions::default()
            },
            |p| calls.push(p),
        )
        .unwrap();

    // Bounded memory: never more than the inference sample held.
    assert_eq!(report.peak_buffered_rows, limits.infer_rows as u64);
    assert_eq!(report.rows_read, ROWS);
    assert_eq!(report.rows_ingested, ROWS);
    let new: Vec<(HubKind, u64)> = report.hubs_new.iter().map(|h| (h.hub, h.new)).collect();
    assert_eq!(new, [(HubKind::Person, PATIENTS), (HubKind::Event, ROWS)]);
    assert_eq!(report.links_new, ROWS);
    assert_eq!(report.satellite_rows_new, ROWS);

    // Progress: every 1024 rows, then a final call with everything.
    assert_eq!(calls.len() as u64, ROWS / 1024 + 1);
    assert!(
        calls
            .windows(2)
            .all(|w| w[0].rows < w[1].rows && w[0].bytes <= w[1].bytes)
    );
    let last = calls.last().unwrap();
    assert!(last.done);
    assert_eq!(
        (last.rows, last.bytes, last.total_bytes),
        (ROWS, size, Some(size))
    );

    // Raw zone: the whole file, with its hash.
    assert_eq!(report.raw_sha256, file_hash);
    assert_eq!(report.raw_bytes, size);
    let mut w = HashWriter(Sha256::new());
    assert_eq!(
        env.vault.export_raw(report.ingest_id, &mut w).unwrap(),
        size
    );
    assert_eq!(Hash32(w.0.finalize().into()), file_hash);

    // Profile: exact where small, estimated (and saying so) where not.
    let col = |n: &str| {
        report
            .profile
            .columns
            .iter()
            .find(|c| c.column == n)
            .unwrap()
    };
    assert_eq!(col("chi").distinct, Distinct::Exact(PATIENTS));
    assert_eq!(col("specialty").distinct, Distinct::Exact(5));
    assert!(col("specialty").top_exact);
    let Distinct::Estimate(est) = col("episode_id").distinct else {
        panic!("episode_id distinct should be an estimate");
    };
    let err = (est as f64 - ROWS as f64).abs() / ROWS as f64;
    assert!(err < 0.15, "estimate {est}");
    assert!(!col("episode_id").top_exact);

    // A patient's rows: 200 episodes each.
    let rows = env
        .vault
        .patient_rows("1000000007", "large", "sat_event_admission_core")
        .unwrap();
    assert_eq!(rows.len() as u64, ROWS / PATIENTS);
    assert!(
        rows.iter()
            .any(|r| r.parent == hub_key(HubKind::Event, "E0000007"))
    );
    assert!(env.vault.hub(&patient_key("1000000007")).unwrap().is_some());
    // No staging tree is left behind.
    assert!(
        env.db
            .tree_names()
            .iter()
            .all(|n| !n.starts_with(b"vault_stage_"))
    );
}
