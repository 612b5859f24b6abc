//! Block 0 (`GenesisConfig::from_block`): read from `genesis.block` when a node starts and
//! when a data dir is opened.
//!
//! A random block never carries the SHA-256 of its own data, so the input is used twice: once
//! as a whole encoded block (the header checks), and once as the genesis configuration bytes
//! inside a block whose hash is right (the configuration decoder, its validation and the
//! endorsement policy parser).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_bytes::ByteBuf;
use sphr_crypto::hash::Hash32;
use sphr_fuzz::cbor_round_trip;
use sphr_types::{Block, BlockData, BlockHeader, GenesisConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(block) =
        sphr_types::decode::<Block>(data, sphr_node::genesis::MAX_GENESIS_BLOCK_BYTES)
    {
        cbor_round_trip(&block);
        if let Ok(cfg) = GenesisConfig::from_block(&block) {
            check(&cfg);
        }
    }
    let data = BlockData::Genesis(ByteBuf::from(data.to_vec()));
    let block = Block {
        header: BlockHeader {
            number: 0,
            previous_hash: Hash32::ZERO,
            data_hash: data.hash(),
            timestamp_ms: 0,
        },
        data,
    };
    if let Ok(cfg) = GenesisConfig::from_block(&block) {
        check(&cfg);
    }
});

/// A configuration that passed `from_block`: round trips, and the queries every node makes on
/// it do not panic.
fn check(cfg: &GenesisConfig) {
    cbor_round_trip(cfg);
    let block = cfg.to_block().expect("a valid genesis must encode");
    assert_eq!(GenesisConfig::from_block(&block).as_ref(), Ok(cfg));
    let orgs = cfg.org_names();
    for c in &cfg.contracts {
        let p = &c.policy;
        let text = p.to_string();
        assert_eq!(
            text.parse::<sphr_types::Policy>().as_ref(),
            Ok(p),
            "policy text round trip"
        );
        for local in &orgs {
            // The gateway asks these orgs: if all of them endorse, the policy must hold.
            let ask = p.orgs_to_ask(&orgs, local);
            assert!(
                p.is_satisfied(&orgs, ask.iter().map(String::as_str)),
                "{p} not satisfied by the orgs the gateway asks: {ask:?}"
            );
        }
        let _ = p.is_satisfied(&orgs, orgs.iter().map(String::as_str));
        let _ = cfg.policy(&c.name);
    }
    let _ = cfg.consenters().count();
    for n in &cfg.nodes {
        assert!(cfg.node(&n.org, &n.name).is_some());
        assert!(cfg.node_by_key(&n.public_key).is_some());
    }
}
