//! The committer's validation of a block's transactions (`sphr_ledger::Validator::validate`):
//! decode, certificates, batched signatures, tx ids, payload consistency, policy, MVCC. Every
//! node must reach the same codes for the same block, and no transaction may crash it.
//!
//! The fuzzer writes up to 12 transactions: raw bytes, copies of earlier ones (replays), or
//! transactions built from fuzzed parts (creator, network id, nonce, contract, read and write
//! sets, events, endorsers) and signed with the real keys of `sphr_fuzz::net`, so that the
//! checks after the signatures are reached. Blocks are validated one after another on an
//! in-memory state.
//!
//! Properties:
//! - a validator with a warm certificate cache gives the same codes as a fresh one;
//! - every VALID transaction has a creator signature and endorsement signatures that pass
//!   `PublicKey::verify` (ZIP-215) one by one, distinct tx ids within the block, and a tx id not committed.
#![no_main]

use std::collections::HashSet;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sphr_crypto::hash::Hash32;
use sphr_fuzz::net::{MemState, NET, NOW_MS, apply};
use sphr_ledger::Validator;
use sphr_ledger::test_utils::TestIdentity;
use sphr_types::{
    BlockHeader, Event, Read, Transaction, ValidationCode, Version, Write, namespaced_key,
};

#[derive(Arbitrary, Debug)]
enum TxSpec {
    Raw(Vec<u8>),
    Replay(u8),
    Built(Built),
}

#[derive(Arbitrary, Debug)]
struct Built {
    creator: u8,
    wrong_network: bool,
    nonce: u8,
    contract: u8,
    function: String,
    reads: Vec<(u8, Option<(u8, u8)>, bool)>,
    writes: Vec<(u8, Option<Vec<u8>>, bool)>,
    events: Vec<(String, Vec<u8>)>,
    endorsers: Vec<u8>,
}

const CONTRACTS: [&str; 3] = ["kv", "consent", "nope"];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut state = MemState::default();
    let mut warm = Validator::new(&NET.net.genesis, NET.network_id());
    let mut prev = NET.net.genesis_block.header.clone();
    for _ in 0..3 {
        let mut raws: Vec<Vec<u8>> = Vec::new();
        let n = u.int_in_range(0..=12).unwrap_or(0);
        for _ in 0..n {
            let Ok(spec) = TxSpec::arbitrary(&mut u) else {
                break;
            };
            let raw = match spec {
                TxSpec::Raw(b) => b,
                TxSpec::Replay(i) if !raws.is_empty() => raws[usize::from(i) % raws.len()].clone(),
                TxSpec::Replay(_) => continue,
                TxSpec::Built(b) => build(&b),
            };
            raws.push(raw);
        }
        let header = BlockHeader {
            number: prev.number + 1,
            previous_hash: prev.hash(),
            data_hash: Hash32::ZERO,
            timestamp_ms: NOW_MS,
        };
        let checked = warm
            .validate(&header, &raws, &state)
            .expect("in-memory store");
        let mut fresh = Validator::new(&NET.net.genesis, NET.network_id());
        let again = fresh
            .validate(&header, &raws, &state)
            .expect("in-memory store");
        assert_eq!(
            checked.codes(),
            again.codes(),
            "certificate cache changed a verdict"
        );
        assert_eq!(checked.len(), raws.len());

        let mut ids = HashSet::new();
        for (raw, code) in raws.iter().zip(checked.codes()) {
            if *code != ValidationCode::Valid {
                continue;
            }
            let tx = Transaction::from_bytes(raw).expect("a VALID tx decodes");
            let p = tx
                .signed_proposal
                .decode_proposal()
                .expect("a VALID proposal decodes");
            p.header
                .creator
                .body
                .public_key
                .verify(&tx.signed_proposal.proposal, &tx.signed_proposal.signature)
                .expect("a VALID tx has a good creator signature");
            for e in &tx.endorsements {
                e.endorser
                    .body
                    .public_key
                    .verify(&e.signed_message(&tx.response), &e.signature)
                    .expect("a VALID tx has good endorsement signatures");
            }
            assert!(
                ids.insert(p.tx_id()),
                "two VALID txs with one id in a block"
            );
            assert!(
                !state.index.contains_key(&p.tx_id()),
                "a VALID tx was committed before"
            );
        }
        apply(&mut state, &checked);
        prev = header;
        if u.is_empty() {
            break;
        }
    }
});

fn key(contract: &str, k: u8, foreign: bool) -> Vec<u8> {
    // A few keys, so reads meet earlier writes; `foreign` leaves the contract's namespace.
    namespaced_key(if foreign { "other" } else { contract }, &[b'k', k % 8])
}

fn build(b: &Built) -> Vec<u8> {
    let creator = NET.person(b.creator);
    let contract = CONTRACTS[usize::from(b.contract) % CONTRACTS.len()];
    let endorsers: Vec<&TestIdentity> = b
        .endorsers
        .iter()
        .take(4)
        .map(|&i| match i % 4 {
            0 => NET.net.node(0, 0),
            1 => NET.net.node(1, 0),
            _ => NET.person(i / 4),
        })
        .collect();
    let reads = b
        .reads
        .iter()
        .take(6)
        .map(|(k, v, f)| Read {
            key: key(contract, *k, *f),
            version: v.map(|(block, tx)| Version {
                block: u64::from(block % 4),
                tx: u32::from(tx % 4),
            }),
        })
        .collect();
    let writes = b
        .writes
        .iter()
        .take(6)
        .map(|(k, v, f)| Write {
            key: key(contract, *k, *f),
            value: v.clone(),
        })
        .collect();
    let events = b
        .events
        .iter()
        .take(3)
        .map(|(name, payload)| Event {
            name: name.clone(),
            payload: payload.clone(),
        })
        .collect();
    let mut tx = NET
        .net
        .tx(creator)
        .nonce(Hash32([b.nonce % 8; 32]))
        .contract(contract)
        .function(if b.function.is_empty() {
            "put"
        } else {
            &b.function
        })
        .reads(reads)
        .writes(writes)
        .events(events)
        .endorsers(endorsers);
    if b.wrong_network {
        tx = tx.network_id(Hash32([1; 32]));
    }
    tx.build().to_bytes().unwrap_or_default()
}
