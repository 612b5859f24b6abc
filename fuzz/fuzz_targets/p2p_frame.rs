//! p2p frames: a u32 big-endian length, then a CBOR envelope, as read from each libp2p stream.
//!
//! `sphr_p2p`'s codec (`FrameCodec::read_frame`, crate-private) runs on an async stream; this
//! target reproduces its steps on a byte slice (refuse a length over the kind's limit before
//! reading, refuse a short frame, then decode the envelope or response), and checks that
//! `encode_frame` output reads back. If the codec's frame reader is ever made public, call it
//! here instead.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_fuzz::NET;
use sphr_p2p::wire::{
    ENVELOPE_OVERHEAD, Envelope, Kind, decode_envelope, decode_response, encode_frame,
};

/// What `read_frame` returns for `stream`: the frame bytes, or `None` (refused or short).
fn read_frame(stream: &[u8], body_limit: usize) -> Option<&[u8]> {
    let (len, rest) = stream.split_first_chunk::<4>()?;
    let len = u64::from(u32::from_be_bytes(*len));
    let limit = body_limit.saturating_add(ENVELOPE_OVERHEAD);
    if len > u64::try_from(limit).unwrap_or(u64::MAX) {
        return None;
    }
    rest.get(..usize::try_from(len).ok()?)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let kind = Kind::ALL[usize::from(sel) % Kind::ALL.len()];
    // Small limits make the fuzzer meet the refusals; the real ones are MiBs.
    let body_limit = [64usize, 1024, 1 << 20][usize::from(sel >> 4) % 3];
    let Some(frame) = read_frame(stream, body_limit) else {
        return;
    };
    if let Ok(body) = decode_envelope(frame, &NET, kind.code(), body_limit) {
        let framed = encode_frame(&Envelope {
            network_id: NET,
            kind: kind.code(),
            body: body.clone(),
        })
        .expect("encode");
        let again = read_frame(&framed, body_limit).expect("own frame must fit the limit");
        assert_eq!(again.len() + 4, framed.len());
        assert_eq!(
            decode_envelope(again, &NET, kind.code(), body_limit).expect("own frame"),
            body
        );
    }
    let _ = decode_response(frame, &NET, kind.code(), body_limit);
});
