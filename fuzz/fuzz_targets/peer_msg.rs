//! `PeerMsg` (node/src/p2p.rs): the body of every message on the Raft protocol, a raft-rs
//! message or transactions a follower forwards to the leader. Decoded as the dispatcher does
//! (`Dispatch::on_raft`): size-limited CBOR, then the raft message or each transaction.
//! The same bytes are also read as the two bodies of the endorse protocol: a batched
//! `EndorseRequest` (each proposal decoded as `Dispatch::on_endorse` does) and its
//! `EndorseAnswer` (each endorsement decoded as the gateway does).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_fuzz::cbor_stable;
use sphr_node::p2p::{EndorseAnswer, EndorseRequest, EndorseResult, PeerMsg};
use sphr_p2p::P2pLimits;
use sphr_types::{ProposalResponse, SignedProposal, Transaction};

fuzz_target!(|data: &[u8]| {
    let max_raft_bytes = P2pLimits::default().max_message_bytes;
    if let Ok(req) = sphr_types::decode::<EndorseRequest>(data, max_raft_bytes + 1024) {
        cbor_stable(&req);
        for p in &req.proposals {
            let _ = SignedProposal::from_bytes(p);
        }
    }
    if let Ok(answer) = sphr_types::decode::<EndorseAnswer>(data, max_raft_bytes) {
        cbor_stable(&answer);
        for r in &answer.results {
            if let EndorseResult::Endorsed(b) = r
                && let Ok(pr) = ProposalResponse::from_bytes(b)
            {
                let _ = pr.endorsement.signed_message(&pr.response);
            }
        }
    }
    let Ok(msg) = sphr_types::decode::<PeerMsg>(data, max_raft_bytes + 1024) else {
        return;
    };
    cbor_stable(&msg);
    match &msg {
        PeerMsg::Raft(bytes) => {
            if let Ok(m) = sphr_orderer::decode_message(bytes, max_raft_bytes) {
                // Compared as in the raft_message target (unknown fields come back in a
                // random order).
                let enc = sphr_orderer::encode_message(&m).expect("encode");
                let back = sphr_orderer::decode_message(&enc, usize::MAX).expect("own message");
                assert_eq!(format!("{back:?}"), format!("{m:?}"));
            }
        }
        PeerMsg::Txs(txs) => {
            for tx in txs {
                let _ = Transaction::from_bytes(tx);
            }
        }
    }
});
