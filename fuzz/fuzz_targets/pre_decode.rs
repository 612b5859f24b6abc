//! Proxy re-encryption decoders (sphr_crypto::pre): secret and public keys, re-encryption keys,
//! sealed and re-sealed ciphertexts, from their byte encodings and through serde (CBOR). These
//! arrive in certificates, in contract arguments and in ledger state, and feed blst, so each
//! decode must check every group element. The first byte picks the decoder.
//!
//! Properties: what decodes re-encodes to the very same bytes (one element, one encoding: no
//! malleable ciphertexts or keys), and what decodes can be used (sealed to, re-encrypted,
//! opened) without a panic; opening with a key that is not the recipient's fails.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sphr_crypto::cbor;
use sphr_crypto::pre::{
    PrePublicKey, PreSecretKey, ReKey, ReSealed, Sealed, open, open_reencrypted, reencrypt, seal,
};

/// A fixed key pair (scalars 1..=64 and 65..=128 as bytes are below r).
static SK: LazyLock<PreSecretKey> = LazyLock::new(|| {
    let mut b = [0u8; 64];
    for (i, x) in b.iter_mut().enumerate() {
        *x = if i % 32 == 0 { 0x11 } else { i as u8 };
    }
    PreSecretKey::from_bytes(&b).expect("fixed PRE key")
});
static RK: LazyLock<ReKey> = LazyLock::new(|| SK.rekey_to(SK.public_key()));
static SEALED: LazyLock<Sealed> =
    LazyLock::new(|| seal(SK.public_key(), b"fixed", b"aad").expect("seal"));

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else {
        return;
    };
    match sel % 10 {
        0 => {
            if let Ok(sk) = PreSecretKey::from_bytes(b) {
                assert_eq!(&sk.to_bytes()[..], b, "secret key round trip");
                let _ = PrePublicKey::from_bytes(&sk.public_key().to_bytes())
                    .expect("a derived public key must decode");
            }
        }
        1 => {
            if let Ok(pk) = PrePublicKey::from_bytes(b) {
                assert_eq!(&pk.to_bytes()[..], b, "public key round trip");
                let s = seal(&pk, b"m", b"").expect("seal to a checked key");
                // Not our key: opening must fail, not panic or succeed.
                if pk != *SK.public_key() {
                    assert!(open(&SK, &s, b"").is_err());
                }
                let _ = SK.rekey_to(&pk);
            }
        }
        2 => {
            if let Ok(rk) = ReKey::from_bytes(b) {
                assert_eq!(&rk.to_bytes()[..], b, "rekey round trip");
                if let Ok(rs) = reencrypt(&SEALED, &rk) {
                    let _ = open_reencrypted(&SK, &rs, b"aad");
                }
            }
        }
        3 => {
            if let Ok(s) = Sealed::from_bytes(b) {
                assert_eq!(s.to_bytes(), b, "sealed round trip");
                let _ = open(&SK, &s, b"aad");
                if let Ok(rs) = reencrypt(&s, &RK) {
                    let _ = open_reencrypted(&SK, &rs, b"aad");
                }
            }
        }
        4 => {
            if let Ok(rs) = ReSealed::from_bytes(b) {
                assert_eq!(rs.to_bytes(), b, "re-sealed round trip");
                let _ = open_reencrypted(&SK, &rs, b"aad");
            }
        }
        // The serde paths: what a contract argument or a stored record holds.
        5 => {
            if let Ok(pk) = cbor::from_slice::<PrePublicKey>(b, 4096) {
                let again: PrePublicKey =
                    cbor::from_slice(&cbor::to_vec(&pk).expect("encode"), 4096)
                        .expect("own encoding");
                assert_eq!(again, pk);
            }
        }
        6 => {
            if let Ok(rk) = cbor::from_slice::<ReKey>(b, 4096) {
                let again: ReKey = cbor::from_slice(&cbor::to_vec(&rk).expect("encode"), 4096)
                    .expect("own encoding");
                assert_eq!(again, rk);
            }
        }
        7 => {
            if let Ok(s) = cbor::from_slice::<Sealed>(b, 1 << 16) {
                let again: Sealed = cbor::from_slice(&cbor::to_vec(&s).expect("encode"), 1 << 17)
                    .expect("own encoding");
                assert_eq!(again.to_bytes(), s.to_bytes());
            }
        }
        8 => {
            if let Ok(rs) = cbor::from_slice::<ReSealed>(b, 1 << 16) {
                let again: ReSealed =
                    cbor::from_slice(&cbor::to_vec(&rs).expect("encode"), 1 << 17)
                        .expect("own encoding");
                assert_eq!(again, rs);
            }
        }
        _ => {
            // A certificate's PRE key field is opaque bytes to the certificate code; whatever a
            // certificate holds must be refused or accepted by the key decoder without a panic.
            let _ = PrePublicKey::from_bytes(b);
        }
    }
});
