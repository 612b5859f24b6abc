//! Block records (`BlockRecord::from_bytes`): what the block store holds, what range sync
//! answers carry and what is gossiped to nodes that are not consenters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_fuzz::cbor_round_trip;
use sphr_types::{BlockData, BlockRecord, GenesisConfig, Transaction};

fuzz_target!(|data: &[u8]| {
    let Ok(rec) = BlockRecord::from_bytes(data) else {
        return;
    };
    cbor_round_trip(&rec);
    let block = &rec.block;
    let _ = block.hash();
    // What sync does with a block it received: link it to a header (here its own: the number
    // check must not overflow at u64::MAX) ...
    let _ = block.check_link(&block.header);
    match &block.data {
        // ... decode the batch and its transactions ...
        BlockData::Batch(sb) => {
            if let Ok(batch) = sb.decode_batch() {
                cbor_round_trip(&batch);
                for tx in &batch.txs {
                    let _ = Transaction::from_bytes(tx);
                }
            }
        }
        // ... or read a genesis configuration.
        BlockData::Genesis(_) => {
            let _ = GenesisConfig::from_block(block);
        }
    }
});
