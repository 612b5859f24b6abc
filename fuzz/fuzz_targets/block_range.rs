//! `BlockRange` (node/src/p2p.rs): the body of a block range request, decoded with a 1 KiB
//! limit, then clamped as `Dispatch::on_request` does before any block is read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_fuzz::cbor_stable;
use sphr_node::p2p::{BlockRange, MAX_BLOCKS_PER_REQUEST};

fuzz_target!(|data: &[u8]| {
    let Ok(range) = sphr_types::decode::<BlockRange>(data, 1024) else {
        return;
    };
    cbor_stable(&range);
    // The clamp of `Dispatch::on_request` for a few heights: never more than
    // MAX_BLOCKS_PER_REQUEST blocks, never past the height, and no overflow.
    for height in [0u64, 1, 1000, u64::MAX] {
        if range.from > range.to || range.from > height {
            continue;
        }
        let to = range
            .to
            .min(height)
            .min(range.from.saturating_add(MAX_BLOCKS_PER_REQUEST - 1));
        assert!(to >= range.from);
        assert!(to - range.from < MAX_BLOCKS_PER_REQUEST);
    }
});
