//! p2p envelopes (`sphr_p2p::wire::decode_envelope`, `decode_response`): the CBOR around every
//! request, answer and gossip message between nodes. The first input byte picks the kind the
//! receiver expects and the body limit, the rest is the envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_fuzz::NET;
use sphr_p2p::wire::{
    ENVELOPE_OVERHEAD, Envelope, ResponseEnvelope, decode_envelope, decode_response,
    encode_envelope, encode_response_frame,
};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let kind = sel & 0x1f;
    // Small limits so the fuzzer also meets the oversized paths.
    let body_limit = [0usize, 16, 256, 4096, 1 << 20][usize::from(sel >> 5) % 5];

    if let Ok(body) = decode_envelope(bytes, &NET, kind, body_limit) {
        assert!(body.len() <= body_limit);
        assert!(bytes.len() <= body_limit + ENVELOPE_OVERHEAD);
        let env = Envelope {
            network_id: NET,
            kind,
            body: body.clone(),
        };
        let enc = encode_envelope(&env).expect("encode");
        // An envelope this node encodes fits its own limit and decodes to the same body.
        assert!(
            enc.len() <= body_limit + ENVELOPE_OVERHEAD,
            "{} bytes of envelope overhead",
            enc.len() - body.len()
        );
        assert_eq!(
            decode_envelope(&enc, &NET, kind, body_limit).expect("own envelope"),
            body
        );
    }
    if let Ok(reply) = decode_response(bytes, &NET, kind, body_limit) {
        let env = ResponseEnvelope {
            network_id: NET,
            kind,
            reply: reply.clone(),
        };
        let frame = encode_response_frame(&env).expect("encode");
        let back = decode_response(&frame[4..], &NET, kind, body_limit.max(frame.len()));
        assert_eq!(back.expect("own response"), reply);
    }
});
