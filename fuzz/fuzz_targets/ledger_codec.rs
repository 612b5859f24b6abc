//! The ledger's storage encodings (node/ledger/src/codec.rs): tx index entries, state values,
//! the tip header, u64/u32/hash records. Read back from sled on every start and every query; a
//! corrupt or hostile data dir must give an error, never a panic. The first byte picks the
//! decoder, the rest is the stored value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_ledger::codec::{
    HEADER_LEN, TX_LOCATION_LEN, TxLocation, VERSION_LEN, code_from_byte, code_to_byte,
    decode_hash, decode_header, decode_state_value, decode_state_version, decode_u32, decode_u64,
    encode_header, encode_state_value,
};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else {
        return;
    };
    match sel % 6 {
        0 => {
            if let Ok(loc) = TxLocation::from_bytes(b) {
                assert_eq!(b.len(), TX_LOCATION_LEN);
                assert_eq!(&loc.to_bytes()[..], b, "tx location round trip");
            }
        }
        1 => {
            if let Ok((v, value)) = decode_state_value(b) {
                assert!(b.len() >= VERSION_LEN);
                assert_eq!(encode_state_value(v, value), b, "state value round trip");
                assert_eq!(decode_state_version(b), Ok(v));
            } else {
                assert!(b.len() < VERSION_LEN);
            }
        }
        2 => {
            if let Ok(h) = decode_header(b) {
                assert_eq!(b.len(), HEADER_LEN);
                assert_eq!(&encode_header(&h)[..], b, "header round trip");
            }
        }
        3 => {
            if let Ok(n) = decode_u64("u64", b) {
                assert_eq!(&n.to_be_bytes()[..], b);
            }
            if let Ok(n) = decode_u32("u32", b) {
                assert_eq!(&n.to_be_bytes()[..], b);
            }
        }
        4 => {
            if let Ok(h) = decode_hash("hash", b) {
                assert_eq!(&h.0[..], b);
            }
        }
        _ => {
            if let Some(&c) = b.first()
                && let Ok(code) = code_from_byte(c)
            {
                assert_eq!(code_to_byte(code), c);
            }
        }
    }
});
