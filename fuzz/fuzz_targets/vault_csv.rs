//! Vault ingestion of CSV tables (`sphr_vault::Vault::ingest`): the hospital tables a node
//! loads into its data vault, parsed row by row (types inferred, every row checked, hubs,
//! links and satellites written to sled).
//!
//! Input: either one part, a table ingested under the SMR01 control files of
//! node/vault/tests/fixtures (so most inputs reach the rows), or three parts separated by
//! `sphr_fuzz::PART_SEPARATOR`: column control file, hub control file, table. The first byte
//! says whether bad rows are skipped (`allow_bad_rows`) or refuse the file.
//!
//! Properties of an ingest that succeeds: the raw zone gives back the exact table bytes
//! (`export_raw`) with the reported SHA-256 and length; every stored hub, link and satellite row
//! decodes; rows read = rows ingested + bad rows; each patient's bundle packages, seals, and
//! opens to the same bundle. An ingest that fails leaves nothing behind (no catalog entry).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sphr_crypto::hash::sha256;
use sphr_fuzz::split_parts;
use sphr_vault::{
    ColumnControl, HubControl, HubKind, IngestOptions, SourceFilter, Vault, VaultConfig,
    open_bundle, parse_tag_file, seal_bundle,
};

const COLUMNS: &[u8] = include_bytes!("../../node/vault/tests/fixtures/smr01_columns.csv");
const HUBS: &[u8] = include_bytes!("../../node/vault/tests/fixtures/smr01_hubs.csv");
const TAGS: &[u8] = include_bytes!("../../node/vault/tests/fixtures/smr01_tags.csv");

/// One temporary sled database per process; the vault's trees are dropped after each input,
/// so every input starts from an empty vault.
static DB: LazyLock<sled::Db> = LazyLock::new(|| {
    sled::Config::new()
        .temporary(true)
        .cache_capacity(16 << 20)
        .flush_every_ms(None)
        .open()
        .expect("temporary sled")
});

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let parts = split_parts(rest, 3);
    let (columns, hubs, table) = match parts.as_slice() {
        [table] => (COLUMNS, HUBS, *table),
        [c, h, t] => (*c, *h, *t),
        _ => return,
    };
    let db = &*DB;
    {
        let vault = Vault::open(db, VaultConfig::new("FuzzHospital")).expect("open vault");
        run(&vault, columns, hubs, table, flags & 1 == 1);
    }
    for name in db.tree_names() {
        if name.starts_with(b"vault_") {
            db.drop_tree(&name).expect("drop tree");
        }
    }
});

fn run(vault: &Vault, columns: &[u8], hubs: &[u8], table: &[u8], allow_bad_rows: bool) {
    let limits = vault.config().limits.clone();
    let Ok(columns) = ColumnControl::parse("columns.csv", columns, &limits) else {
        return;
    };
    let Ok(hubs) = HubControl::parse("hubs.csv", hubs, &limits) else {
        return;
    };
    let options = IngestOptions {
        allow_bad_rows,
        table_name: "table.csv".into(),
        load_time_ms: Some(1_700_000_000_000),
        size_hint: Some(table.len() as u64),
    };
    let report = match vault.ingest("smr01", table, &columns, &hubs, &options, |_| {}) {
        Ok(r) => r,
        Err(_) => {
            // All or nothing: a refused table leaves no source behind.
            assert!(
                vault.catalog("smr01").expect("catalog").is_none(),
                "a refused ingest left a catalog entry"
            );
            return;
        }
    };
    assert_eq!(report.raw_bytes, table.len() as u64);
    assert_eq!(report.raw_sha256, sha256(table));
    assert_eq!(
        report.rows_read,
        report.rows_ingested + report.bad_rows.len() as u64,
        "rows read != rows ingested + bad rows"
    );
    if !allow_bad_rows {
        assert!(report.bad_rows.is_empty());
    }
    let mut raw = Vec::new();
    vault
        .export_raw(report.ingest_id, &mut raw)
        .expect("export raw");
    assert_eq!(raw, table, "the raw zone does not give back the table");
    let _ = report.to_json().expect("report json");

    let mut patients = Vec::new();
    for hub in vault.iter_hubs() {
        let (_, h) = hub.expect("a stored hub decodes");
        if h.kind == HubKind::Person {
            patients.push(h.business_key);
        }
    }
    for link in vault.iter_links() {
        link.expect("a stored link decodes");
    }
    for row in vault.iter_satellite_rows() {
        row.expect("a stored satellite row decodes");
    }
    let _ = vault.profile(report.ingest_id).expect("profile");

    // Tags (the fixture's, when the source has those satellites), then a bundle per patient.
    let Ok(tags) = parse_tag_file("tags.csv", TAGS, &limits) else {
        return;
    };
    if vault.set_tags("smr01", &tags).is_err() {
        return;
    }
    let wanted: Vec<&str> = tags.keys().map(String::as_str).collect();
    for p in patients.iter().take(4) {
        let bundle = vault
            .package(p, &wanted, &SourceFilter::All)
            .expect("a stored patient packages");
        let cbor = bundle.to_cbor().expect("bundle cbor");
        let back = sphr_vault::Bundle::from_cbor(&cbor, usize::MAX).expect("own bundle decodes");
        assert_eq!(back, bundle, "bundle CBOR round trip");
        let (sealed, key) = seal_bundle(&bundle).expect("seal");
        assert_eq!(
            open_bundle(&sealed, &key).expect("open"),
            bundle,
            "seal/open round trip"
        );
    }
}
