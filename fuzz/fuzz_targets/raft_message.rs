//! raft-rs messages (`sphr_orderer::decode_message`, protobuf): what consenters exchange, inside
//! `PeerMsg::Raft`. The limit is the node's default `max_message_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_p2p::P2pLimits;

fuzz_target!(|data: &[u8]| {
    let max = P2pLimits::default().max_message_bytes;
    let Ok(m) = sphr_orderer::decode_message(data, max) else {
        return;
    };
    // Round trip. protobuf 2 keeps unknown fields in a HashMap, so it writes them back in a
    // random order, and its `PartialEq` also tells an emptied unknown-field map from none; so
    // the known fields are compared (the Debug text, protobuf's text format) and the unknown
    // ones by encoded size. (Harmless to sphr: nothing hashes or signs a raft message's
    // encoding; blocks come from the entry's data bytes.)
    let enc = sphr_orderer::encode_message(&m).expect("a decoded message must encode");
    let back = sphr_orderer::decode_message(&enc, usize::MAX).expect("own message must decode");
    assert_eq!(
        format!("{back:?}"),
        format!("{m:?}"),
        "decode(encode(m)) != m"
    );
    let again = sphr_orderer::encode_message(&back).expect("encode");
    assert_eq!(again.len(), enc.len(), "re-encoding changed the size");
    // The fields the dispatcher and driver read.
    let _ = (
        m.get_msg_type(),
        m.from,
        m.to,
        m.term,
        m.get_entries().len(),
    );
    let _ = m.get_snapshot().get_metadata().get_conf_state();
});
