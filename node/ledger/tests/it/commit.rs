//! Valid commits: state, versions, tip, index, events; MVCC across and within blocks.

use sphr_ledger::test_utils::{TestNetwork, delete, put, read};
use sphr_ledger::{StateReader, TxIndexReader};
use sphr_types::{Event, ValidationCode, Version, namespaced_key};

use crate::{codes, commit, open, tx_id};

#[test]
fn valid_tx_commits_and_everything_reloads() {
    let net = TestNetwork::new(4, "ALL");
    let (dir, ledger) = open(&net);
    assert_eq!(ledger.height(), 0);
    assert_eq!(ledger.applied_raft_index(), 0);
    assert_eq!(ledger.network_id(), net.network_id());
    assert_eq!(ledger.tip(), net.genesis_block.header);

    let alice = net.user(0, "alice");
    let tx = net
        .tx(&alice)
        .args(vec![b"k".to_vec(), b"v".to_vec()])
        .writes(vec![put("kv", b"k", b"v")])
        .events(vec![Event {
            name: "put".into(),
            payload: vec![1],
        }])
        .build();
    let id = tx_id(&tx);
    let block = commit(&net, &ledger, std::slice::from_ref(&tx));
    assert_eq!(block.number, 1);
    assert_eq!(block.raft_index, 1);
    assert_eq!(codes(&block), vec![ValidationCode::Valid]);
    let t = &block.txs[0];
    assert_eq!(t.tx_id, Some(id));
    assert!(t.id_verified);
    assert_eq!(t.contract.as_deref(), Some("kv"));
    assert_eq!(t.function.as_deref(), Some("put"));
    assert_eq!(t.events.len(), 1);

    let key = namespaced_key("kv", b"k");
    let v1 = Version { block: 1, tx: 0 };
    assert_eq!(ledger.get_state(&key).unwrap(), Some((v1, b"v".to_vec())));
    assert_eq!(StateReader::version(&ledger, &key).unwrap(), Some(v1));
    assert_eq!(ledger.height(), 1);
    assert_eq!(ledger.applied_raft_index(), 1);
    assert_eq!(ledger.tip().hash(), block.hash);
    let loc = ledger.tx_location(&id).unwrap().unwrap();
    assert_eq!(
        (loc.block, loc.position, loc.code),
        (1, 0, ValidationCode::Valid)
    );
    assert!(ledger.contains_tx(&id).unwrap());
    let rec = ledger.block(1).unwrap().unwrap();
    assert_eq!(rec.codes, vec![ValidationCode::Valid]);
    assert_eq!(rec.raft_index, 1);
    assert!(rec.block.check_link(&net.genesis_block.header).is_ok());
    assert!(ledger.block(2).unwrap().is_none());

    let tip = ledger.tip();
    drop(ledger);
    let ledger = net.open_ledger(dir.path());
    assert_eq!(ledger.tip(), tip);
    assert_eq!(ledger.height(), 1);
    assert_eq!(ledger.applied_raft_index(), 1);
    assert_eq!(ledger.get_state(&key).unwrap(), Some((v1, b"v".to_vec())));
    assert_eq!(ledger.tx_location(&id).unwrap(), Some(loc));
    assert_eq!(ledger.block(1).unwrap(), Some(rec));
    // The genesis block is block 0.
    assert_eq!(ledger.block(0).unwrap().unwrap().block, net.genesis_block);
}

#[test]
fn same_key_read_and_written_twice_in_one_block() {
    let net = TestNetwork::new(2, "ANY");
    let (_dir, ledger) = open(&net);
    let alice = net.user(0, "alice");
    commit(&net, &ledger, &[net.kv_put(&alice, b"k", b"0")]);
    let v1 = Version { block: 1, tx: 0 };

    let t1 = net
        .tx(&alice)
        .reads(vec![read("kv", b"k", Some(v1))])
        .writes(vec![put("kv", b"k", b"first")])
        .build();
    let t2 = net
        .tx(&alice)
        .reads(vec![read("kv", b"k", Some(v1))])
        .writes(vec![put("kv", b"k", b"second")])
        .build();
    let b = commit(&net, &ledger, &[t1, t2.clone()]);
    assert_eq!(
        codes(&b),
        vec![ValidationCode::Valid, ValidationCode::MvccReadConflict]
    );
    assert!(b.txs[1].events.is_empty());
    let key = namespaced_key("kv", b"k");
    assert_eq!(
        ledger.get_state(&key).unwrap(),
        Some((Version { block: 2, tx: 0 }, b"first".to_vec()))
    );
    // The conflicting tx is indexed with its code: its id is spent.
    let loc = ledger.tx_location(&tx_id(&t2)).unwrap().unwrap();
    assert_eq!(loc.code, ValidationCode::MvccReadConflict);

    // A read of the stale version in a later block conflicts too.
    let t3 = net
        .tx(&alice)
        .reads(vec![read("kv", b"k", Some(v1))])
        .writes(vec![put("kv", b"k", b"third")])
        .build();
    let b = commit(&net, &ledger, &[t3]);
    assert_eq!(codes(&b), vec![ValidationCode::MvccReadConflict]);
    assert_eq!(ledger.get_state(&key).unwrap().unwrap().1, b"first");
}

#[test]
fn deletes_reads_of_absent_keys_and_ranges() {
    let net = TestNetwork::new(1, "ANY");
    let (_dir, ledger) = open(&net);
    let alice = net.user(0, "alice");
    commit(
        &net,
        &ledger,
        &[
            net.kv_put(&alice, b"a", b"1"),
            net.kv_put(&alice, b"b", b"2"),
            net.kv_put(&alice, b"c", b"3"),
        ],
    );
    let t = net
        .tx(&alice)
        .reads(vec![
            read("kv", b"b", Some(Version { block: 1, tx: 1 })),
            read("kv", b"z", None),
        ])
        .writes(vec![delete("kv", b"b"), put("kv", b"z", b"26")])
        .build();
    let b = commit(&net, &ledger, &[t]);
    assert_eq!(codes(&b), vec![ValidationCode::Valid]);
    assert_eq!(ledger.get_state(&namespaced_key("kv", b"b")).unwrap(), None);

    let all = ledger
        .range_state(
            &namespaced_key("kv", b""),
            &namespaced_key("kv", b"\xff"),
            100,
        )
        .unwrap();
    let keys: Vec<&[u8]> = all.iter().map(|(k, _, _)| &k[3..]).collect();
    assert_eq!(keys, vec![b"a".as_slice(), b"c", b"z"]);
    assert_eq!(all[2].1, Version { block: 2, tx: 0 });
    let limited = ledger
        .range_state(
            &namespaced_key("kv", b""),
            &namespaced_key("kv", b"\xff"),
            1,
        )
        .unwrap();
    assert_eq!(limited.len(), 1);
    assert!(
        ledger
            .range_state(&namespaced_key("kv", b"z"), &namespaced_key("kv", b"a"), 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn many_blocks_chain_and_empty_batches() {
    let net = TestNetwork::new(2, "MAJORITY");
    let (_dir, ledger) = open(&net);
    let alice = net.user(1, "alice");
    for i in 0..5u8 {
        let b = commit(&net, &ledger, &[net.kv_put(&alice, &[i], &[i])]);
        assert_eq!(b.valid_count(), 1);
    }
    let empty = commit(&net, &ledger, &[]);
    assert!(empty.txs.is_empty());
    assert_eq!(ledger.height(), 6);
    let mut prev = ledger.block(0).unwrap().unwrap().block.header;
    for n in 1..=6 {
        let rec = ledger.block(n).unwrap().unwrap();
        assert!(rec.block.check_link(&prev).is_ok());
        prev = rec.block.header;
    }
}

#[test]
fn ledger_is_shared_between_threads_and_reads_never_go_back() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<sphr_ledger::Ledger>();

    let net = TestNetwork::new(2, "ANY");
    let (_dir, ledger) = open(&net);
    let ledger = std::sync::Arc::new(ledger);
    let alice = net.user(0, "alice");
    let key = namespaced_key("kv", b"counter");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (ledger, key, stop) = (ledger.clone(), key.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut last = None;
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = ledger.get_state(&key).unwrap().map(|(v, _)| v);
                assert!(got >= last, "version went back: {got:?} after {last:?}");
                // State may run ahead of the tip by the block being committed (see `tip`).
                let seen = got.map_or(0, |v| v.block);
                assert!(ledger.tip().number + 1 >= seen);
                last = got;
                reads += 1;
            }
            reads
        })
    };
    for i in 0..20u8 {
        commit(&net, &ledger, &[net.kv_put(&alice, b"counter", &[i])]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(
        ledger.get_state(&key).unwrap(),
        Some((Version { block: 20, tx: 0 }, vec![19]))
    );
}
