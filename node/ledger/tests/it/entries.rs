//! Raft entries: replays, unusable entries, entries without a batch; blocks from peers.

use sphr_crypto::keys::SecretKey;
use sphr_ledger::test_utils::{TEST_TIME_MS, TestNetwork, put, read};
use sphr_ledger::{CommitOutcome, LedgerError, SkipReason};
use sphr_types::{SignedBatch, ValidationCode, Version, namespaced_key};

use crate::{codes, commit, open};

#[test]
fn old_raft_index_is_a_no_op() {
    let net = TestNetwork::new(1, "ANY");
    let (_d, ledger) = open(&net);
    let alice = net.user(0, "alice");
    let batch = net.batch(&[net.kv_put(&alice, b"k", b"1")]);
    assert!(matches!(
        ledger.commit_batch(5, &batch).unwrap(),
        CommitOutcome::Committed(_)
    ));
    let tip = ledger.tip();
    for idx in [0, 1, 5] {
        let again = net.batch(&[net.kv_put(&alice, b"k", b"2")]);
        assert_eq!(
            ledger.commit_batch(idx, &again).unwrap(),
            CommitOutcome::AlreadyApplied {
                raft_index: idx,
                applied: 5
            }
        );
    }
    assert_eq!(ledger.tip(), tip);
    assert_eq!(
        ledger
            .get_state(&namespaced_key("kv", b"k"))
            .unwrap()
            .unwrap()
            .1,
        b"1"
    );
}

#[test]
fn unusable_entries_make_no_block_but_are_applied() {
    let net = TestNetwork::with_contracts(2, 2, &[("kv", "ANY")]);
    let (_d, ledger) = open(&net);
    let alice = net.user(0, "alice");
    let tx = net.kv_put(&alice, b"k", b"1");
    let raw = vec![serde_bytes::ByteBuf::from(tx.to_bytes().unwrap())];

    // Signed by a key that is not the proposer's.
    let forged = net.batch_raw(
        raw.clone(),
        TEST_TIME_MS,
        0,
        &SecretKey::from_bytes(&[5; 32]),
    );
    // peer0 of Org2 signing as itself is fine, but signed by Org1's key is not.
    let swapped = net.batch_raw(raw.clone(), TEST_TIME_MS, 1, &net.node(0, 0).key);
    // Not a batch at all.
    let garbage = SignedBatch {
        batch: vec![1, 2, 3],
        signature: forged.signature,
    };
    type Case = (SignedBatch, fn(&SkipReason) -> bool);
    let cases: Vec<Case> = vec![
        (forged, |r| matches!(r, SkipReason::BadProposerSignature(_))),
        (swapped, |r| {
            matches!(r, SkipReason::BadProposerSignature(_))
        }),
        (garbage, |r| matches!(r, SkipReason::Undecodable(_))),
    ];
    for (i, (batch, expect)) in cases.into_iter().enumerate() {
        let idx = i as u64 + 1;
        match ledger.commit_batch(idx, &batch).unwrap() {
            CommitOutcome::Skipped { raft_index, reason } => {
                assert_eq!(raft_index, idx);
                assert!(expect(&reason), "{reason}");
            }
            other => panic!("expected a skip, got {other:?}"),
        }
        assert_eq!(ledger.height(), 0);
        assert_eq!(ledger.applied_raft_index(), idx);
        assert!(
            ledger
                .get_state(&namespaced_key("kv", b"k"))
                .unwrap()
                .is_none()
        );
        // Replaying the same entry is a no-op.
        assert!(matches!(
            ledger.commit_batch(idx, &batch).unwrap(),
            CommitOutcome::AlreadyApplied { .. }
        ));
    }
    // A node of the network that is not a consenter (peer1 of Org1).
    let mut b = sphr_types::Batch {
        proposer: sphr_types::NodeRef {
            org: "Org1".into(),
            name: "peer1".into(),
        },
        timestamp_ms: TEST_TIME_MS,
        txs: raw.clone(),
    };
    let not_consenter = SignedBatch::seal(&b, &net.node(0, 1).key).unwrap();
    assert!(matches!(
        ledger.commit_batch(10, &not_consenter).unwrap(),
        CommitOutcome::Skipped {
            reason: SkipReason::NotConsenter(_),
            ..
        }
    ));
    b.proposer.name = "peer9".into();
    let unknown = SignedBatch::seal(&b, &net.node(0, 1).key).unwrap();
    assert!(matches!(
        ledger.commit_batch(11, &unknown).unwrap(),
        CommitOutcome::Skipped {
            reason: SkipReason::UnknownProposer(_),
            ..
        }
    ));
    // Org2's peer0 is a consenter too.
    let ok = net.batch_raw(raw, TEST_TIME_MS, 1, &net.node(1, 0).key);
    assert!(matches!(
        ledger.commit_batch(12, &ok).unwrap(),
        CommitOutcome::Committed(_)
    ));
    assert_eq!(ledger.height(), 1);
    assert_eq!(ledger.block(1).unwrap().unwrap().raft_index, 12);
}

#[test]
fn entries_without_batches_are_marked_applied() {
    let net = TestNetwork::new(1, "ANY");
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = net.open_ledger(dir.path());
        assert!(ledger.mark_applied(3).unwrap());
        assert!(!ledger.mark_applied(2).unwrap());
        assert!(!ledger.mark_applied(3).unwrap());
        assert_eq!(ledger.applied_raft_index(), 3);
        assert_eq!(ledger.height(), 0);
    }
    let ledger = net.open_ledger(dir.path());
    assert_eq!(ledger.applied_raft_index(), 3);
}

#[test]
fn too_many_txs_is_skipped() {
    let mut net = TestNetwork::new(1, "ANY");
    net.genesis.block.max_tx = 2;
    net.genesis_block = net.genesis.to_block().unwrap();
    let (_d, ledger) = open(&net);
    let alice = net.user(0, "alice");
    let txs: Vec<_> = (0..3u8).map(|i| net.kv_put(&alice, &[i], b"1")).collect();
    assert!(matches!(
        ledger.commit_batch(1, &net.batch(&txs)).unwrap(),
        CommitOutcome::Skipped {
            reason: SkipReason::TooManyTxs { count: 3, max: 2 },
            ..
        }
    ));
}

#[test]
fn append_blocks_from_a_peer() {
    let net = TestNetwork::new(2, "ANY");
    let (_d1, source) = open(&net);
    let alice = net.user(0, "alice");
    commit(&net, &source, &[net.kv_put(&alice, b"k", b"1")]);
    source.mark_applied(2).unwrap();
    let t_ok = net
        .tx(&alice)
        .reads(vec![read("kv", b"k", Some(Version { block: 1, tx: 0 }))])
        .writes(vec![put("kv", b"k", b"2")])
        .build();
    let t_conflict = net
        .tx(&alice)
        .reads(vec![read("kv", b"k", Some(Version { block: 1, tx: 0 }))])
        .writes(vec![put("kv", b"k", b"3")])
        .build();
    let b2 = commit(&net, &source, &[t_ok, t_conflict]);
    assert_eq!(
        codes(&b2),
        vec![ValidationCode::Valid, ValidationCode::MvccReadConflict]
    );
    assert_eq!(b2.raft_index, 3);

    let (_d2, dest) = open(&net);
    let r1 = source.block(1).unwrap().unwrap();
    let r2 = source.block(2).unwrap().unwrap();
    // Out of order: block 2 does not follow genesis.
    assert!(matches!(
        dest.append_block(&r2),
        Err(LedgerError::BlockRejected { number: 2, .. })
    ));
    // Codes that validation here does not give.
    let mut lying = r1.clone();
    lying.codes = vec![ValidationCode::MvccReadConflict];
    let err = dest.append_block(&lying).unwrap_err();
    assert!(err.to_string().contains("tx 0"), "{err}");
    // A tampered batch breaks the data hash.
    let mut tampered = r1.clone();
    if let sphr_types::BlockData::Batch(sb) = &mut tampered.block.data {
        sb.signature.0[0] ^= 1;
    }
    let tampered_hash = tampered.block.data.hash();
    tampered.block.header.data_hash = tampered_hash;
    // The data hash now matches but the proposer signature does not.
    let err = dest.append_block(&tampered).unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    assert_eq!(dest.height(), 0);

    let c1 = dest.append_block(&r1).unwrap();
    let c2 = dest.append_block(&r2).unwrap();
    assert_eq!(c1.hash, r1.block.hash());
    assert_eq!(codes(&c2), r2.codes);
    assert_eq!(dest.tip(), source.tip());
    assert_eq!(dest.applied_raft_index(), 3);
    let key = namespaced_key("kv", b"k");
    assert_eq!(
        dest.get_state(&key).unwrap(),
        source.get_state(&key).unwrap()
    );
    // The same block again no longer follows the tip.
    assert!(dest.append_block(&r2).is_err());
}

#[test]
fn raft_entries_as_bytes_and_health() {
    let net = TestNetwork::new(1, "ANY");
    let (_d, ledger) = open(&net);
    ledger.check_health().unwrap();
    let alice = net.user(0, "alice");
    let entry = net
        .batch(&[net.kv_put(&alice, b"k", b"1")])
        .to_bytes()
        .unwrap();
    let out = ledger.commit_entry(1, &entry).unwrap();
    assert_eq!(out.block().map(|b| b.number), Some(1));
    assert_eq!(ledger.commit_entry(1, &entry).unwrap().block(), None);
    assert!(matches!(
        ledger.commit_entry(2, b"not cbor").unwrap(),
        CommitOutcome::Skipped {
            raft_index: 2,
            reason: SkipReason::Undecodable(_)
        }
    ));
    assert!(matches!(
        ledger.commit_entry(2, b"not cbor").unwrap(),
        CommitOutcome::AlreadyApplied {
            raft_index: 2,
            applied: 2
        }
    ));
    ledger.check_health().unwrap();
    // Blocks removed behind the ledger's back: unhealthy.
    ledger
        .db()
        .open_tree("blocks")
        .unwrap()
        .remove(1u64.to_be_bytes())
        .unwrap();
    assert!(matches!(
        ledger.check_health(),
        Err(LedgerError::Corrupt(_))
    ));
}
