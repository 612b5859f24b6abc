//! Opening: other genesis refused; reopening after drops; garbage on disk gives errors.

use proptest::prelude::*;
use sphr_ledger::test_utils::TestNetwork;
use sphr_ledger::{Ledger, LedgerError, TxIndexReader};
use sphr_types::{ValidationCode, Version, namespaced_key};

use crate::{commit, open, tx_id};

#[test]
fn another_genesis_is_refused_with_both_ids_and_the_path() {
    let net = TestNetwork::new(2, "ANY");
    let other = TestNetwork::new(3, "ANY");
    let dir = tempfile::tempdir().unwrap();
    drop(net.open_ledger(dir.path()));
    let err = Ledger::open(dir.path(), &other.genesis_block).unwrap_err();
    assert!(matches!(err, LedgerError::WrongGenesis { .. }));
    let msg = err.to_string();
    assert!(msg.contains(&net.network_id().to_hex()), "{msg}");
    assert!(msg.contains(&other.network_id().to_hex()), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    // The right genesis still opens.
    assert_eq!(net.open_ledger(dir.path()).height(), 0);
}

#[test]
fn a_block_0_that_is_not_genesis_is_refused() {
    let net = TestNetwork::new(1, "ANY");
    let dir = tempfile::tempdir().unwrap();
    let mut bad = net.genesis_block.clone();
    bad.header.number = 1;
    assert!(matches!(
        Ledger::open(dir.path(), &bad),
        Err(LedgerError::Genesis(_))
    ));
}

#[test]
fn a_ledger_in_use_is_refused_after_a_short_wait_naming_the_path() {
    let net = TestNetwork::new(1, "ANY");
    let dir = tempfile::tempdir().unwrap();
    let held = net.open_ledger(dir.path());
    let started = std::time::Instant::now();
    let err = Ledger::open(dir.path(), &net.genesis_block).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, LedgerError::Open { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("lock"), "{msg}");
    // It waited for the lock (2 s) rather than failing at once, and then gave up.
    assert!(waited >= std::time::Duration::from_secs(2), "{waited:?}");
    drop(held);
    // Released: the next open succeeds (waiting, if need be, for sled's threads to let go).
    assert_eq!(net.open_ledger(dir.path()).height(), 0);
}

#[test]
fn drop_without_close_then_reopen_is_consistent() {
    let net = TestNetwork::new(4, "ALL");
    let dir = tempfile::tempdir().unwrap();
    let alice = net.user(2, "alice");
    let mut ids = Vec::new();
    for round in 0..3u8 {
        let ledger = net.open_ledger(dir.path());
        for i in 0..4u8 {
            let txs: Vec<_> = (0..5u8)
                .map(|j| net.kv_put(&alice, &[round, i, j], &[round]))
                .collect();
            ids.extend(txs.iter().map(tx_id));
            commit(&net, &ledger, &txs);
        }
        // No close, no explicit flush: the ledger flushed after each commit.
        drop(ledger);
    }
    let ledger = net.open_ledger(dir.path());
    assert_eq!(ledger.height(), 12);
    assert_eq!(ledger.applied_raft_index(), 12);
    let mut prev = ledger.block(0).unwrap().unwrap().block.header;
    for n in 1..=12 {
        let rec = ledger.block(n).unwrap().unwrap();
        assert!(rec.block.check_link(&prev).is_ok());
        assert_eq!(rec.codes, vec![ValidationCode::Valid; 5]);
        prev = rec.block.header;
    }
    assert_eq!(prev, ledger.tip());
    for (n, id) in ids.iter().enumerate() {
        let loc = ledger.tx_location(id).unwrap().unwrap();
        assert_eq!(loc.block, n as u64 / 5 + 1);
        assert_eq!(loc.position, n as u32 % 5);
    }
    assert_eq!(
        ledger.get_state(&namespaced_key("kv", &[2, 3, 4])).unwrap(),
        Some((Version { block: 12, tx: 4 }, vec![2]))
    );
    let all = ledger.range_state(b"kv\0", b"kv\x01", 1000).unwrap();
    assert_eq!(all.len(), 60);
}

#[test]
fn disagreeing_trees_are_reported_as_corrupt() {
    let net = TestNetwork::new(1, "ANY");
    let dir = tempfile::tempdir().unwrap();
    {
        let (_d, _l) = open(&net); // an unrelated ledger does not interfere
        let ledger = net.open_ledger(dir.path());
        commit(&net, &ledger, &[net.kv_put(&net.user(0, "a"), b"k", b"v")]);
        // Remove the last block behind the ledger's back.
        ledger
            .db()
            .open_tree("blocks")
            .unwrap()
            .remove(1u64.to_be_bytes())
            .unwrap();
        ledger.db().flush().unwrap();
    }
    let err = Ledger::open(dir.path(), &net.genesis_block).unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("tip"), "{err}");
}

#[test]
fn garbage_tip_is_an_error() {
    let net = TestNetwork::new(1, "ANY");
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = net.open_ledger(dir.path());
        ledger
            .db()
            .open_tree("meta")
            .unwrap()
            .insert("tip", &b"short"[..])
            .unwrap();
        ledger.db().flush().unwrap();
    }
    assert!(matches!(
        Ledger::open(dir.path(), &net.genesis_block),
        Err(LedgerError::Corrupt(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever bytes sit in the state, index or block trees, reads give a value or an
    /// error, never a panic.
    #[test]
    fn garbage_on_disk_gives_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        thread_local! {
            static LEDGER: (tempfile::TempDir, Ledger) = open(&TestNetwork::new(1, "ANY"));
        }
        LEDGER.with(|(_d, ledger)| {
            let db = ledger.db();
            db.open_tree("state").unwrap().insert(b"kv\0g", bytes.as_slice()).unwrap();
            let got = ledger.get_state(b"kv\0g");
            prop_assert_eq!(got.is_err(), bytes.len() < 12);
            let _ = ledger.range_state(b"kv\0", b"kv\x01", 10);
            db.open_tree("txindex").unwrap().insert([7u8; 32], bytes.as_slice()).unwrap();
            let _ = ledger.tx_location(&sphr_crypto::hash::Hash32([7; 32]));
            let _ = ledger.contains_tx(&sphr_crypto::hash::Hash32([7; 32]));
            db.open_tree("blocks").unwrap().insert(99u64.to_be_bytes(), bytes.as_slice()).unwrap();
            prop_assert!(ledger.block(99).is_err());
            Ok(())
        })?;
    }
}

#[test]
fn the_state_hash_follows_the_writes_survives_reopen_and_matches_a_synced_copy() {
    let net = TestNetwork::new(2, "ANY");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice = net.user(1, "alice");
    let a = net.open_ledger(dir_a.path());
    let (_, h0) = a.tip_and_state_hash();
    assert_eq!(h0, sphr_ledger::genesis_state_hash(&net.network_id()));
    commit(&net, &a, &[net.kv_put(&alice, b"k1", b"v1")]);
    let (tip1, h1) = a.tip_and_state_hash();
    assert_eq!(tip1.number, 1);
    assert_ne!(h1, h0);
    // The next block's writes move the hash on; each height keeps its own.
    let tx = net.kv_put(&alice, b"k2", b"v2");
    commit(&net, &a, std::slice::from_ref(&tx));
    let (_, h2) = a.tip_and_state_hash();
    assert_ne!(h2, h1);
    assert_eq!(a.state_hash_at(1).unwrap(), Some(h1));
    assert_eq!(a.state_hash_at(2).unwrap(), Some(h2));
    assert_eq!(a.state_hash_at(3).unwrap(), None);

    // A copy fed the same blocks by sync has the same hashes at every height.
    let b = net.open_ledger(dir_b.path());
    for n in 1..=2 {
        b.append_block(&a.block(n).unwrap().unwrap()).unwrap();
        assert_eq!(b.state_hash_at(n).unwrap(), a.state_hash_at(n).unwrap());
    }
    assert_eq!(b.tip_and_state_hash(), a.tip_and_state_hash());

    // Reopened, the ledger reports the same hash.
    drop(a);
    let a = net.open_ledger(dir_a.path());
    assert_eq!(a.tip_and_state_hash().1, h2);

    // Same height, different writes: different hash.
    let dir_c = tempfile::tempdir().unwrap();
    let c = net.open_ledger(dir_c.path());
    commit(&net, &c, &[net.kv_put(&alice, b"k1", b"other")]);
    commit(&net, &c, &[net.kv_put(&alice, b"k2", b"v2")]);
    assert_eq!(c.height(), 2);
    assert_ne!(c.tip_and_state_hash().1, h2);
}

/// Copies a closed ledger's directory (sled's files and the block segment files).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_block_write_cut_short_at_any_point_is_finished_when_the_ledger_opens() {
    use sphr_ledger::codec::{META_REDO, RedoTree, decode_redo};
    use sphr_ledger::ledger::{
        TREE_BLOCKS, TREE_META, TREE_STATE, TREE_STATE_HASHES, TREE_TXINDEX,
    };

    let net = TestNetwork::new(2, "ANY");
    let alice = net.user(1, "alice");
    let full = tempfile::tempdir().unwrap();
    let after_1 = tempfile::tempdir().unwrap();
    let a = net.open_ledger(full.path());
    let block_1: Vec<_> = (0..4u8)
        .map(|i| net.kv_put(&alice, &[b'k', i], b"one"))
        .collect();
    commit(&net, &a, &block_1);
    drop(a);
    copy_dir(full.path(), after_1.path());

    // Block 2 overwrites two keys of block 1 and adds two.
    let a = net.open_ledger(full.path());
    let block_2: Vec<_> = [1u8, 2, 8, 9]
        .iter()
        .map(|i| net.kv_put(&alice, &[b'k', *i], b"two"))
        .collect();
    commit(&net, &a, &block_2);
    let want_head = a.tip_and_state_hash();
    let want_applied = a.applied_raft_index();
    let want_state = a.range_state(b"kv\0", b"kv\x01", 100).unwrap();
    let want_block = a.block(2).unwrap().unwrap();
    let want_locations: Vec<_> = block_1
        .iter()
        .chain(&block_2)
        .map(|t| a.tx_location(&tx_id(t)).unwrap().unwrap())
        .collect();
    assert_eq!(want_head.0.number, 2);
    assert_eq!(want_state.len(), 6);
    drop(a);

    // What block 2's write stored first: its redo record.
    let (redo, ops) = {
        let db = sled::open(full.path()).unwrap();
        let raw = db
            .open_tree(TREE_META)
            .unwrap()
            .get(META_REDO)
            .unwrap()
            .unwrap();
        let (number, ops) = decode_redo(&raw).unwrap();
        assert_eq!(number, 2);
        let owned: Vec<(RedoTree, Vec<u8>, Option<Vec<u8>>)> = ops
            .into_iter()
            .map(|(t, k, v)| (t, k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        (raw.to_vec(), owned)
    };
    // The block's location, its state hash, 4 state writes, 4 index entries, applied, tip.
    assert_eq!(ops.len(), 12);

    // A crash after the record and any number of the writes after it: sled gives back a
    // prefix of its log, which is what each case below has on disk.
    for cut in 0..=ops.len() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(after_1.path(), dir.path());
        // The block's record was appended to its segment file and synced before the redo
        // record was written.
        copy_dir(
            &full.path().join(sphr_ledger::BLOCK_SEGMENTS_DIR),
            &dir.path().join(sphr_ledger::BLOCK_SEGMENTS_DIR),
        );
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree(TREE_META)
                .unwrap()
                .insert(META_REDO, redo.as_slice())
                .unwrap();
            for (tree, key, value) in &ops[..cut] {
                let name = match tree {
                    RedoTree::Blocks => TREE_BLOCKS,
                    RedoTree::StateHashes => TREE_STATE_HASHES,
                    RedoTree::State => TREE_STATE,
                    RedoTree::TxIndex => TREE_TXINDEX,
                    RedoTree::Meta => TREE_META,
                };
                let t = db.open_tree(name).unwrap();
                match value {
                    Some(v) => t.insert(key.as_slice(), v.as_slice()).unwrap(),
                    None => t.remove(key.as_slice()).unwrap(),
                };
            }
            db.flush().unwrap();
        }
        for _ in 0..2 {
            // Opened twice: the second open finds the block written and has nothing to do.
            let l = net.open_ledger(dir.path());
            assert_eq!(l.tip_and_state_hash(), want_head, "cut after {cut} writes");
            assert_eq!(
                l.applied_raft_index(),
                want_applied,
                "cut after {cut} writes"
            );
            assert_eq!(l.range_state(b"kv\0", b"kv\x01", 100).unwrap(), want_state);
            assert_eq!(l.block(2).unwrap().unwrap(), want_block);
            let locations: Vec<_> = block_1
                .iter()
                .chain(&block_2)
                .map(|t| l.tx_location(&tx_id(t)).unwrap().unwrap())
                .collect();
            assert_eq!(locations, want_locations, "cut after {cut} writes");
        }
    }
}
