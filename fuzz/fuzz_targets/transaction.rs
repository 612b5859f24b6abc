//! Transactions (`Transaction::from_bytes`, `decode_response`) and proposal responses
//! (`ProposalResponse::from_bytes`): the body of `POST /v1/broadcast`, what a follower forwards
//! to the Raft leader, what every block carries, and what an endorsing peer answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_crypto::keys::verify_many;
use sphr_fuzz::cbor_round_trip;
use sphr_types::{
    MAX_ENDORSEMENTS, MAX_RESPONSE_BYTES, ProposalResponse, ResponsePayload, Transaction,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = Transaction::from_bytes(data) {
        cbor_round_trip(&tx);
        assert!(tx.endorsements.len() <= MAX_ENDORSEMENTS);
        if let Ok(payload) = tx.decode_response() {
            cbor_round_trip(&payload);
        }
        if let Ok(p) = tx.signed_proposal.decode_proposal() {
            let _ = tx.signed_proposal.verify_signature(&p);
        }
        // The committer's batched check of endorsement signatures, with whatever keys came.
        let msgs: Vec<_> = tx
            .endorsements
            .iter()
            .map(|e| e.signed_message(&tx.response))
            .collect();
        let items: Vec<_> = tx
            .endorsements
            .iter()
            .zip(&msgs)
            .map(|(e, m)| (m.as_ref(), &e.signature, &e.endorser.body.public_key))
            .collect();
        let verdicts = verify_many(&items);
        assert_eq!(verdicts.len(), items.len());
        for (ok, (m, s, k)) in verdicts.iter().zip(&items) {
            assert_eq!(
                *ok,
                k.verify(m, s).is_ok(),
                "batch verdict differs from the single verdict"
            );
        }
    }
    if let Ok(pr) = ProposalResponse::from_bytes(data) {
        cbor_round_trip(&pr);
        if let Ok(payload) = sphr_types::decode::<ResponsePayload>(&pr.response, MAX_RESPONSE_BYTES)
        {
            cbor_round_trip(&payload);
        }
        let _ = pr
            .endorsement
            .endorser
            .body
            .public_key
            .verify(
                &pr.endorsement.signed_message(&pr.response),
                &pr.endorsement.signature,
            );
    }
});
