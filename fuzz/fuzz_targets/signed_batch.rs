//! Signed batches (`SignedBatch::from_bytes`, `decode_batch`, `verify`): every Raft log entry
//! is one, read back from sled and from the leader's append messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::SecretKey;
use sphr_fuzz::cbor_round_trip;
use sphr_types::{Block, BlockHeader, SignedBatch, Transaction};

fuzz_target!(|data: &[u8]| {
    let Ok(sb) = SignedBatch::from_bytes(data) else {
        return;
    };
    cbor_round_trip(&sb);
    let _ = sb.verify(&SecretKey::from_bytes(&[3; 32]).public_key());
    if let Ok(batch) = sb.decode_batch() {
        cbor_round_trip(&batch);
        for tx in &batch.txs {
            let _ = Transaction::from_bytes(tx);
        }
        // Re-sealing what decoded gives a batch that verifies and decodes the same.
        let key = SecretKey::from_bytes(&[4; 32]);
        let sealed = SignedBatch::seal(&batch, &key).expect("seal");
        let digest = sealed
            .verify(&key.public_key())
            .expect("own seal must verify");
        assert_eq!(digest, sphr_crypto::hash::sha256(&sealed.batch));
        assert_eq!(sealed.decode_batch().expect("own batch must decode"), batch);
    }
    // Every node derives the next block from an entry the same way; it must link.
    for number in [0, 7, u64::MAX - 1] {
        let prev = BlockHeader {
            number,
            previous_hash: Hash32([5; 32]),
            data_hash: Hash32([6; 32]),
            timestamp_ms: 1,
        };
        let b = Block::next(&prev, sb.clone(), 2);
        b.check_link(&prev)
            .expect("Block::next must link to its previous header");
    }
});
