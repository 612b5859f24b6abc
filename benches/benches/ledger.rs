//! Ledger benchmarks: validation and commit of 100-transaction blocks on sled.
//!
//! The network is the seed's shape: 4 orgs, contract `kv` under policy `ALL`, so every
//! transaction carries a creator signature and 4 endorsements (5 signatures, 5 certificates).
//!
//! - `ledger/validate_100tx`: every stage of validation (decode, certificates from the cache,
//!   the block's 500 signatures in batches, policy, MVCC) of a block whose 100 txs each read
//!   one committed key and write it;
//! - `ledger/mvcc_100tx`: the MVCC stage alone on the same block (100 reads against sled);
//! - `ledger/commit_100tx`: `Ledger::commit_batch` of a block of 100 `kv` puts, validation,
//!   the sled transaction and the flush included, on a ledger in a temporary directory.
//!
//! Run: `cargo bench -p sphr-bench --bench ledger`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sphr_ledger::test_utils::{TEST_TIME_MS, TestNetwork, put, read};
use sphr_ledger::validate::Received;
use sphr_ledger::{CommitOutcome, Ledger, Validator};
use sphr_types::{BlockHeader, Transaction, Version};

const TXS: usize = 100;

fn header(number: u64) -> BlockHeader {
    BlockHeader {
        number,
        previous_hash: Default::default(),
        data_hash: Default::default(),
        timestamp_ms: TEST_TIME_MS,
    }
}

fn commit(net: &TestNetwork, ledger: &Ledger, txs: &[Transaction]) {
    let index = ledger.applied_raft_index() + 1;
    match ledger.commit_batch(index, &net.batch(txs)) {
        Ok(CommitOutcome::Committed(b)) => assert_eq!(b.valid_count(), txs.len()),
        other => panic!("commit failed: {other:?}"),
    }
}

fn validation(c: &mut Criterion) {
    let net = TestNetwork::new(4, "ALL");
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = net.open_ledger(dir.path());
    let alice = net.user(0, "alice");
    let keys: Vec<Vec<u8>> = (0..TXS)
        .map(|i| format!("key{i:04}").into_bytes())
        .collect();
    let seed: Vec<Transaction> = keys.iter().map(|k| net.kv_put(&alice, k, b"0")).collect();
    commit(&net, &ledger, &seed);
    // Block 2: tx i reads key i at (1, i) and writes it.
    let txs: Vec<Vec<u8>> = (0u32..)
        .zip(&keys)
        .map(|(i, k)| {
            net.tx(&alice)
                .reads(vec![read("kv", k, Some(Version { block: 1, tx: i }))])
                .writes(vec![put("kv", k, b"1")])
                .build()
                .to_bytes()
                .expect("tx bytes")
        })
        .collect();
    let mut validator = Validator::new(&net.genesis, net.network_id());
    let h = header(2);
    // Warm the certificate cache, as a running node has it.
    let warm = validator.validate(&h, &txs, &ledger).expect("validate");
    assert_eq!(warm.valid_count(), TXS);

    let mut g = c.benchmark_group("ledger");
    g.sample_size(20);
    g.throughput(Throughput::Elements(TXS as u64));
    g.bench_function("validate_100tx", |b| {
        b.iter(|| {
            let out = validator
                .validate(&h, black_box(&txs), &ledger)
                .expect("validate");
            black_box(out.valid_count())
        })
    });
    let policy_checked = Received::decode(&validator, &h, &txs)
        .check_signatures(&mut validator, &ledger)
        .expect("signatures")
        .check_policy(&validator);
    g.bench_function("mvcc_100tx", |b| {
        b.iter_batched(
            || policy_checked.clone(),
            |p| {
                let out = p.check_mvcc(&ledger).expect("mvcc");
                assert_eq!(out.valid_count(), TXS);
                out
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn commit_block(c: &mut Criterion) {
    let net = TestNetwork::new(4, "ALL");
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = net.open_ledger(dir.path());
    let users: Vec<_> = (0..4).map(|o| net.user(o, "loadgen")).collect();
    let mut n: u64 = 0;
    let mut next_batch = || {
        let txs: Vec<Transaction> = (0..TXS)
            .map(|i| {
                n += 1;
                let key = format!("k{n:010}");
                net.kv_put(&users[i % users.len()], key.as_bytes(), &[7u8; 64])
            })
            .collect();
        net.batch(&txs)
    };

    let mut g = c.benchmark_group("ledger");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(TXS as u64));
    g.bench_function("commit_100tx", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Building and signing the batch is not timed.
                let batch = next_batch();
                let index = ledger.applied_raft_index() + 1;
                let started = Instant::now();
                let out = ledger.commit_batch(index, &batch).expect("commit");
                total += started.elapsed();
                match out {
                    CommitOutcome::Committed(b) => assert_eq!(b.valid_count(), TXS),
                    other => panic!("expected a block: {other:?}"),
                }
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, validation, commit_block);
criterion_main!(benches);
