//! Signed proposals (`SignedProposal::from_bytes`, `decode_proposal`, the signature and
//! certificate checks): the body of `POST /v1/transactions`, `/v1/query`, `/v1/endorse` and of
//! every p2p endorse request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_crypto::keys::SecretKey;
use sphr_fuzz::cbor_round_trip;
use sphr_types::SignedProposal;

fuzz_target!(|data: &[u8]| {
    let Ok(sp) = SignedProposal::from_bytes(data) else {
        return;
    };
    cbor_round_trip(&sp);
    let _ = sp.proposal_hash();
    let Ok(p) = sp.decode_proposal() else {
        return;
    };
    cbor_round_trip(&p);
    // decode_proposal checked the shape; the check must agree with itself.
    p.check_shape()
        .expect("decode_proposal returned a proposal that fails check_shape");
    let _ = sp.verify_signature(&p);
    let _ = p.tx_id();
    let creator = &p.header.creator;
    let _ = creator.verify(
        &SecretKey::from_bytes(&[1; 32]).public_key(),
        p.header.timestamp_ms / 1000,
    );
    let _ = creator.check_validity(p.header.timestamp_ms / 1000);

    // Signing what decoded gives a proposal that decodes to the same thing and verifies.
    let key = SecretKey::from_bytes(&[2; 32]);
    let resigned = p.sign(&key).expect("a decoded proposal must encode");
    let again = SignedProposal::from_bytes(&resigned.to_bytes().expect("encode"))
        .expect("re-signed proposal must decode");
    assert_eq!(again, resigned);
    let p2 = again
        .decode_proposal()
        .expect("re-signed proposal must decode");
    assert_eq!(p2, p);
    assert_eq!(p2.tx_id(), p.tx_id());
    key.public_key()
        .verify(&again.proposal, &again.signature)
        .expect("own signature must verify");
});
