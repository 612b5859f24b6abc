//! ed25519 costs that bound the pipeline: sign, verify (ZIP-215), batch verify (per signature),
//! and CBOR encode/decode of a transaction.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sphr_crypto::keys::{SecretKey, Signature, verify_many};
use sphr_ledger::test_utils::TestNetwork;
use sphr_types::Transaction;

fn keys(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            SecretKey::from_bytes(&seed)
        })
        .collect()
}

fn ed25519(c: &mut Criterion) {
    let sk = SecretKey::from_bytes(&[1; 32]);
    let pk = sk.public_key();
    let msg = vec![0xabu8; 256];
    let sig = sk.sign(&msg);
    let mut g = c.benchmark_group("ed25519");
    g.bench_function("sign_256B", |b| {
        b.iter(|| sk.sign(std::hint::black_box(&msg)))
    });
    g.bench_function("verify_256B", |b| {
        b.iter(|| pk.verify(std::hint::black_box(&msg), &sig))
    });
    for n in [8usize, 34, 64, 500] {
        let ks = keys(n);
        let msgs: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 256]).collect();
        let sigs: Vec<Signature> = ks.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let pks: Vec<_> = ks.iter().map(|k| k.public_key()).collect();
        let items: Vec<(&[u8], &Signature, &_)> = msgs
            .iter()
            .zip(&sigs)
            .zip(&pks)
            .map(|((m, s), p)| (m.as_slice(), s, p))
            .collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("verify_batch", n), &items, |b, items| {
            b.iter(|| verify_many(std::hint::black_box(items)))
        });
    }
    g.finish();
}

fn cbor(c: &mut Criterion) {
    let net = TestNetwork::new(4, "ALL");
    let creator = net.user(0, "bench");
    let tx: Transaction = net.kv_put(&creator, b"key-000001", &[0x5a; 100]);
    let bytes = tx.to_bytes().expect("encode");
    let mut g = c.benchmark_group("cbor");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode_tx_4_endorsements", |b| {
        b.iter(|| std::hint::black_box(&tx).to_bytes())
    });
    g.bench_function("decode_tx_4_endorsements", |b| {
        b.iter(|| Transaction::from_bytes(std::hint::black_box(&bytes)))
    });
    g.finish();
}

criterion_group!(benches, ed25519, cbor);
criterion_main!(benches);
