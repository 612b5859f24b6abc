//! `BlockBatch` (node/src/p2p.rs): a peer's answer to a block range request, decoded by
//! `Peers::fetch_blocks` with an 8 MiB + 64 KiB limit, then each block record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_fuzz::{cbor_round_trip, cbor_stable};
use sphr_node::p2p::{BlockBatch, MAX_BLOCKS_BYTES};
use sphr_types::BlockRecord;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = sphr_types::decode::<BlockBatch>(data, MAX_BLOCKS_BYTES + 64 * 1024) else {
        return;
    };
    cbor_stable(&batch);
    for raw in &batch.blocks {
        match BlockRecord::from_bytes(raw) {
            Ok(rec) => cbor_round_trip(&rec),
            Err(_) => break,
        }
    }
});
