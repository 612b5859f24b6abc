//! Proxy re-encryption: sphr's AFGH (BLS12-381, blst) next to umbral-pre 0.11 (secp256k1), in
//! the same run, one core per figure.
//!
//! `cargo bench -p sphr-bench --bench pre`
//!
//! The payload is 64 bytes for both (a sealed field or a bundle key). "Delegation" is what it
//! costs to let one more reader open one ciphertext: for AFGH the re-encryption key, the
//! re-encryption (with the key's Miller lines computed on first use) and the delegatee's
//! decryption; for umbral the key fragment (1 of 1), the re-encryption, the check of the
//! capsule fragment and the delegatee's decryption.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sphr_crypto::pre::{
    PreSecretKey, ReKey, ReSealed, Sealed, open, open_reencrypted, reencrypt, seal, seal_prepared,
};

const PLAINTEXT: [u8; 64] = [0x5a; 64];
const AAD: &[u8] = b"record 42 / dosage";

fn afgh(c: &mut Criterion) {
    let alice = PreSecretKey::generate().expect("os randomness");
    let bob = PreSecretKey::generate().expect("os randomness");
    let alice_pk = alice.public_key().clone();
    let alice_prepared = alice_pk.prepare();
    let sealed = seal_prepared(&alice_prepared, &PLAINTEXT, AAD).expect("seal");
    let rk = alice.rekey_to(bob.public_key());
    let resealed = reencrypt(&sealed, &rk).expect("reencrypt"); // also computes rk's lines
    let sealed_bytes = sealed.to_bytes();
    let rk_bytes = rk.to_bytes();
    let resealed_bytes = resealed.to_bytes();
    let alice_bytes = alice.to_bytes();

    let mut g = c.benchmark_group("pre/afgh");
    g.bench_function("keygen (from 64 bytes: lines, 1/a2, public key)", |b| {
        b.iter(|| PreSecretKey::from_bytes(black_box(&alice_bytes[..])).expect("key"))
    });
    g.bench_function("rk", |b| {
        b.iter(|| alice.rekey_to(black_box(bob.public_key())))
    });
    g.bench_function("prepare public key (tables)", |b| {
        b.iter(|| black_box(&alice_pk).prepare())
    });
    g.bench_function("encrypt (prepared key)", |b| {
        b.iter(|| seal_prepared(black_box(&alice_prepared), &PLAINTEXT, AAD).expect("seal"))
    });
    g.bench_function("encrypt (one-shot key)", |b| {
        b.iter(|| seal(black_box(&alice_pk), &PLAINTEXT, AAD).expect("seal"))
    });
    g.bench_function("re-encrypt", |b| {
        b.iter(|| reencrypt(black_box(&sealed), black_box(&rk)).expect("reencrypt"))
    });
    g.bench_function(
        "re-encrypt from bytes (decode c1 and rk, rk lines, encode)",
        |b| {
            b.iter(|| {
                let s = Sealed::from_bytes(black_box(&sealed_bytes)).expect("sealed");
                let k = ReKey::from_bytes(black_box(&rk_bytes)).expect("rk");
                reencrypt(&s, &k).expect("reencrypt").to_bytes()
            })
        },
    );
    g.bench_function("owner decrypt", |b| {
        b.iter(|| open(black_box(&alice), black_box(&sealed), AAD).expect("open"))
    });
    g.bench_function("delegatee decrypt", |b| {
        b.iter(|| open_reencrypted(black_box(&bob), black_box(&resealed), AAD).expect("open"))
    });
    g.bench_function("decode re-encrypted (c1, c1' checks)", |b| {
        b.iter(|| ReSealed::from_bytes(black_box(&resealed_bytes)).expect("resealed"))
    });
    g.bench_function("delegation (rk + re-encrypt + delegatee decrypt)", |b| {
        b.iter(|| {
            let rk = alice.rekey_to(black_box(bob.public_key()));
            let r = reencrypt(black_box(&sealed), &rk).expect("reencrypt");
            open_reencrypted(&bob, &r, AAD).expect("open")
        })
    });
    g.finish();
}

fn umbral(c: &mut Criterion) {
    use umbral_pre::{SecretKey, Signer, decrypt_reencrypted, encrypt, generate_kfrags, reencrypt};

    let alice = SecretKey::random();
    let alice_pk = alice.public_key();
    let bob = SecretKey::random();
    let bob_pk = bob.public_key();
    let signer = Signer::new(SecretKey::random());
    let verifying_pk = signer.verifying_key();
    let (capsule, ciphertext) = encrypt(&alice_pk, &PLAINTEXT).expect("encrypt");
    let kfrags = generate_kfrags(&alice, &bob_pk, &signer, 1, 1, true, true);
    let kfrag = kfrags[0].clone();
    let cfrag = reencrypt(&capsule, kfrag.clone());

    let mut g = c.benchmark_group("pre/umbral");
    g.bench_function("encrypt", |b| {
        b.iter(|| encrypt(black_box(&alice_pk), &PLAINTEXT).expect("encrypt"))
    });
    g.bench_function("generate_kfrags (1 of 1)", |b| {
        b.iter(|| generate_kfrags(black_box(&alice), &bob_pk, &signer, 1, 1, true, true))
    });
    g.bench_function("re-encrypt", |b| {
        b.iter_batched(
            || kfrag.clone(),
            |k| reencrypt(black_box(&capsule), k),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("verify cfrag", |b| {
        b.iter_batched(
            || cfrag.clone().unverify(),
            |cf| {
                cf.verify(black_box(&capsule), &verifying_pk, &alice_pk, &bob_pk)
                    .map_err(|(e, _)| e)
                    .expect("verify")
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decrypt_reencrypted", |b| {
        b.iter_batched(
            || cfrag.clone(),
            |cf| {
                decrypt_reencrypted(black_box(&bob), &alice_pk, &capsule, [cf], &ciphertext)
                    .expect("decrypt")
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("delegation (kfrag + re-encrypt + verify + decrypt)", |b| {
        b.iter(|| {
            let kfrags = generate_kfrags(&alice, black_box(&bob_pk), &signer, 1, 1, true, true);
            let Some(k) = kfrags.first() else {
                panic!("one kfrag")
            };
            let cf = reencrypt(&capsule, k.clone())
                .unverify()
                .verify(&capsule, &verifying_pk, &alice_pk, &bob_pk)
                .map_err(|(e, _)| e)
                .expect("verify");
            decrypt_reencrypted(&bob, &alice_pk, &capsule, [cf], &ciphertext).expect("decrypt")
        })
    });
    g.finish();
}

criterion_group!(benches, afgh, umbral);
criterion_main!(benches);
