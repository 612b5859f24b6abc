//! Garbage in the vault's trees gives errors, not panics; interrupted ingests are cleaned up
//! on open.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sphr_crypto::hash::Hash32;
use sphr_vault::{SourceFilter, Vault, VaultConfig, VaultError, patient_key};

use crate::common::*;

#[test]
fn garbage_values_and_keys_give_errors() {
    let env = env();
    ingest_smr01(&env.vault);
    let mut tags = sphr_vault::TagMap::new();
    tags.insert(
        "OPERATION".into(),
        std::collections::BTreeSet::from(["sat_object_operations_details".into()]),
    );
    env.vault.set_tags("smr01", &tags).unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(
            &(0usize..7, proptest::collection::vec(any::<u8>(), 0..200)),
            |(which, garbage)| {
                let tree = |name: &str| env.db.open_tree(name).unwrap();
                match which {
                    0 => {
                        // A garbage value under a real patient's satellite prefix.
                        let mut key = patient_key(CHI_A).0.to_vec();
                        key.extend_from_slice(b"smr01\0sat_object_operations_details\0");
                        key.extend_from_slice(&[0xAB; 64]);
                        let t = tree("vault_sats");
                        t.insert(&key, garbage.clone()).unwrap();
                        let r = env.vault.package(CHI_A, &["OPERATION"], &SourceFilter::All);
                        // Only a value that happens to be a valid record would decode.
                        if let Err(e) = r {
                            let corrupt = matches!(e, VaultError::Corrupt { .. });
                            prop_assert!(corrupt, "{}", e);
                        }
                        t.remove(&key).unwrap();
                    }
                    1 => {
                        let t = tree("vault_hubs");
                        t.insert(&garbage, garbage.clone()).unwrap();
                        let n = env.vault.iter_hubs().filter(|r| r.is_err()).count();
                        prop_assert!(n <= 1);
                        t.remove(&garbage).unwrap();
                    }
                    2 => {
                        let t = tree("vault_sats");
                        t.insert(&garbage, vec![0xFF]).unwrap();
                        prop_assert!(env.vault.iter_satellite_rows().any(|r| r.is_err()));
                        t.remove(&garbage).unwrap();
                    }
                    3 => {
                        let t = tree("vault_tags");
                        let old = t.insert("smr01", garbage.clone()).unwrap().unwrap();
                        let _ = env.vault.tags("smr01");
                        let _ = env.vault.resolve("smr01", &["OPERATION"]);
                        t.insert("smr01", old).unwrap();
                    }
                    4 => {
                        let t = tree("vault_consumer");
                        t.insert([7u8; 32], garbage.clone()).unwrap();
                        let _ = env.vault.load_sealed(&Hash32([7; 32]));
                        t.remove([7u8; 32]).unwrap();
                    }
                    5 => {
                        let t = tree("vault_catalog");
                        let old = t.insert("smr01", garbage.clone()).unwrap().unwrap();
                        let _ = env.vault.catalog("smr01");
                        let _ = env.vault.package(CHI_A, &["OPERATION"], &SourceFilter::All);
                        t.insert("smr01", old).unwrap();
                    }
                    _ => {
                        let t = tree("vault_ingests");
                        t.insert(u64::MAX.to_be_bytes(), garbage.clone()).unwrap();
                        let _ = env.vault.ingests();
                        let _ = env.vault.profile(u64::MAX);
                        let _ = env.vault.export_raw(u64::MAX, std::io::sink());
                        t.remove(u64::MAX.to_be_bytes()).unwrap();
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    // Everything restored: the vault still answers.
    let b = env
        .vault
        .package(CHI_A, &["OPERATION"], &SourceFilter::All)
        .unwrap();
    assert_eq!(b.row_count(), 3);
}

#[test]
fn a_stage_left_by_a_crash_before_commit_is_dropped_on_open() {
    let env = env();
    ingest_smr01(&env.vault);
    let before = dump(&env.db);
    // What a crash in the middle of streaming leaves: a staging tree, no ingest record.
    let stage = env
        .db
        .open_tree("vault_stage_00000000000000000777")
        .unwrap();
    stage.insert(b"Hxxxx", b"half a row".to_vec()).unwrap();
    drop(stage);
    let vault = Vault::open(&env.db, VaultConfig::new("ustan")).unwrap();
    assert_eq!(dump(&env.db), before);
    assert!(vault.has_patient(CHI_A).unwrap());
}
