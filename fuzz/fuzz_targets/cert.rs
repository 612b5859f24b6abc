//! Certificates (`Certificate::from_bytes`): the creator of every proposal and the endorser of
//! every endorsement carries one, so every peer and API client can send one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_crypto::cert::{Certificate, Role};
use sphr_crypto::keys::SecretKey;
use sphr_fuzz::cbor_round_trip;

fuzz_target!(|data: &[u8]| {
    let Ok(cert) = Certificate::from_bytes(data) else {
        return;
    };
    cbor_round_trip(&cert);
    // Every check a node runs on a certificate it received, none of which may panic.
    let _ = cert.body.check_shape();
    let ca = SecretKey::from_bytes(&[1; 32]).public_key();
    let _ = cert.verify(&ca, cert.body.not_before);
    let _ = cert.verify(&cert.body.public_key, cert.body.not_after);
    let _ = cert.check_validity(u64::MAX);
    let _ = cert.check_validity(0);
    let _ = cert.fingerprint();
    let _ = cert.name();
    let role = cert.body.role;
    assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
});
