//! Block records in segment files: what sled holds, reopening, corruption, a torn tail, and
//! the upgrades of a layout-1 ledger (records inline in sled) and of a layout-2 ledger
//! (records in segment files, never compressed).

use sphr_ledger::test_utils::TestNetwork;
use sphr_ledger::{BLOCK_SEGMENTS_DIR, Ledger, LedgerError};
use sphr_segments::Location;
use sphr_types::BlockRecord;

use crate::commit;

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(BLOCK_SEGMENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// A ledger in `dir` with one committed block, and that block.
fn one_block(net: &TestNetwork, dir: &std::path::Path) -> (Ledger, BlockRecord) {
    let ledger = net.open_ledger(dir);
    commit(net, &ledger, &[net.kv_put(&net.user(0, "a"), b"k", b"v")]);
    let record = ledger.block(1).unwrap().unwrap();
    (ledger, record)
}

/// Makes the ledger look as layout `schema` left it: `value` under block 1, the schema mark.
fn rewrite_block_1(ledger: &Ledger, schema: u32, value: &[u8]) {
    let db = ledger.db();
    db.open_tree("blocks")
        .unwrap()
        .insert(1u64.to_be_bytes(), value)
        .unwrap();
    db.open_tree("meta")
        .unwrap()
        .insert("schema", &schema.to_be_bytes()[..])
        .unwrap();
    db.flush().unwrap();
}

/// The value under `key` in the ledger's sled tree `tree`.
fn stored(ledger: &Ledger, tree: &str, key: &[u8]) -> Vec<u8> {
    ledger
        .db()
        .open_tree(tree)
        .unwrap()
        .get(key)
        .unwrap()
        .unwrap_or_else(|| panic!("no {tree}/{key:?}"))
        .to_vec()
}

#[test]
fn blocks_live_in_segment_files_and_sled_holds_their_locations() {
    let net = TestNetwork::new(2, "ANY");
    let dir = tempfile::tempdir().unwrap();
    let records = {
        let ledger = net.open_ledger(dir.path());
        for i in 0..3u8 {
            commit(
                &net,
                &ledger,
                &[net.kv_put(&net.user(0, "a"), &[b'k', i], b"v")],
            );
        }
        let tree = ledger.db().open_tree("blocks").unwrap();
        // Genesis is inline; every committed block is a location.
        assert!(!Location::is_location(
            &tree.get(0u64.to_be_bytes()).unwrap().unwrap()
        ));
        for n in 1..=3u64 {
            let raw = tree.get(n.to_be_bytes()).unwrap().unwrap();
            assert!(
                Location::is_location(&raw),
                "block {n}: {} bytes",
                raw.len()
            );
        }
        (0..=3)
            .map(|n| ledger.block(n).unwrap().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(segment_files(dir.path()).len(), 1);
    let ledger = net.open_ledger(dir.path());
    assert_eq!(ledger.height(), 3);
    for (n, r) in records.iter().enumerate() {
        assert_eq!(&ledger.block(n as u64).unwrap().unwrap(), r);
    }
    // Blocks committed after a reopen go to a new segment.
    commit(&net, &ledger, &[net.kv_put(&net.user(0, "a"), b"k9", b"v")]);
    assert_eq!(ledger.block(4).unwrap().unwrap().block.header.number, 4);
    assert_eq!(segment_files(dir.path()).len(), 2);
}

#[test]
fn a_damaged_block_file_is_an_error_naming_the_checksum_and_reopen_refuses_a_damaged_tip() {
    let net = TestNetwork::new(1, "ANY");
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = net.open_ledger(dir.path());
        commit(&net, &ledger, &[net.kv_put(&net.user(0, "a"), b"k", b"v")]);
    }
    let file = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[10] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let err = Ledger::open(dir.path(), &net.genesis_block).unwrap_err();
    assert!(matches!(err, LedgerError::BlockFiles(_)), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn bytes_a_crash_left_after_the_last_block_are_ignored() {
    let net = TestNetwork::new(1, "ANY");
    let dir = tempfile::tempdir().unwrap();
    let block = {
        let ledger = net.open_ledger(dir.path());
        commit(&net, &ledger, &[net.kv_put(&net.user(0, "a"), b"k", b"v")]);
        ledger.block(1).unwrap().unwrap()
    };
    // A block appended to the file whose sled transaction never happened.
    let file = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(&block.to_bytes().unwrap()[..100]);
    std::fs::write(&file, &bytes).unwrap();
    let ledger = net.open_ledger(dir.path());
    assert_eq!(ledger.height(), 1);
    assert_eq!(ledger.block(1).unwrap().unwrap(), block);
    commit(&net, &ledger, &[net.kv_put(&net.user(0, "a"), b"k2", b"v")]);
    assert_eq!(ledger.height(), 2);
    drop(ledger);
    assert_eq!(net.open_ledger(dir.path()).height(), 2);
}

#[test]
fn a_layout_1_ledger_with_blocks_inline_opens_upgraded_and_keeps_its_blocks() {
    let net = TestNetwork::new(1, "ANY");
    let dir = tempfile::tempdir().unwrap();
    let old = {
        let (ledger, record) = one_block(&net, dir.path());
        // Rewrite it as layout 1 had it: the record inline, schema 1, no block files.
        rewrite_block_1(&ledger, 1, &record.to_bytes().unwrap());
        record
    };
    std::fs::remove_dir_all(dir.path().join(BLOCK_SEGMENTS_DIR)).unwrap();
    let ledger = net.open_ledger(dir.path());
    assert_eq!(ledger.block(1).unwrap().unwrap(), old);
    assert_eq!(stored(&ledger, "meta", b"schema"), 3u32.to_be_bytes());
    commit(&net, &ledger, &[net.kv_put(&net.user(0, "a"), b"k2", b"v")]);
    assert!(Location::is_location(&stored(
        &ledger,
        "blocks",
        &2u64.to_be_bytes()
    )));
    assert_eq!(ledger.height(), 2);
}

#[test]
fn a_layout_2_ledger_with_uncompressed_records_opens_upgraded_and_keeps_its_blocks() {
    let net = TestNetwork::new(1, "ANY");
    let dir = tempfile::tempdir().unwrap();
    let old = {
        let (ledger, record) = one_block(&net, dir.path());
        // Rewrite it as layout 2 had it: the record as written in a segment file, its 25-byte
        // location in sled, schema 2.
        let bytes = record.to_bytes().unwrap();
        let segment = 99;
        std::fs::write(
            dir.path()
                .join(BLOCK_SEGMENTS_DIR)
                .join(format!("{segment:020}.seg")),
            &bytes,
        )
        .unwrap();
        let location = Location {
            segment,
            offset: 0,
            len: bytes.len() as u32,
            crc: crc32fast::hash(&bytes),
            raw_len: None,
        };
        rewrite_block_1(&ledger, 2, &location.to_bytes());
        record
    };
    let ledger = net.open_ledger(dir.path());
    let raw = stored(&ledger, "blocks", &1u64.to_be_bytes());
    assert_eq!(raw.len(), Location::ENCODED_LEN);
    assert_eq!(ledger.block(1).unwrap().unwrap(), old);
    assert_eq!(stored(&ledger, "meta", b"schema"), 3u32.to_be_bytes());
    commit(&net, &ledger, &[net.kv_put(&net.user(0, "a"), b"k2", b"v")]);
    assert_eq!(ledger.height(), 2);
    drop(ledger);
    let ledger = net.open_ledger(dir.path());
    assert_eq!(ledger.block(1).unwrap().unwrap(), old);
    assert_eq!(ledger.block(2).unwrap().unwrap().block.header.number, 2);
}

#[test]
fn a_newer_layout_is_refused_naming_both_versions() {
    let net = TestNetwork::new(1, "ANY");
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = net.open_ledger(dir.path());
        ledger
            .db()
            .open_tree("meta")
            .unwrap()
            .insert("schema", &4u32.to_be_bytes()[..])
            .unwrap();
        ledger.db().flush().unwrap();
    }
    let err = Ledger::open(dir.path(), &net.genesis_block).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Schema {
                found: 4,
                supported: 3,
                ..
            }
        ),
        "{err}"
    );
}
