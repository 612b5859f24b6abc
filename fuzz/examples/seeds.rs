//! Writes the seed corpora under `fuzz/seeds/<target>/`: one or a few valid inputs per target,
//! so the fuzzer starts from well-formed messages (field names, nesting, real signatures and
//! group elements it could never find alone) and mutates from there.
//!
//! ```text
//! cd fuzz && cargo run --release --example seeds
//! ```
//!
//! Deterministic (keys come from fixed seeds) except the sealed PRE ciphertexts, which draw a
//! fresh random k as sealing must. The fuzz smoke run and docs/fuzzing.md use these folders as
//! read-only seed corpora. `seeds/raft_message/rustsec_2024_0437_nested_groups` is written by
//! hand (see docs/fuzzing.md), not by this program.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use serde_bytes::ByteBuf;
use sphr_crypto::cbor;
use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;
use sphr_crypto::pre::{PreSecretKey, ReSealed, reencrypt, seal};
use sphr_fuzz::NET;
use sphr_ledger::codec::{TxLocation, encode_header, encode_state_value};
use sphr_ledger::test_utils::{TestNetwork, put, read};
use sphr_node::p2p::{BlockBatch, BlockRange, PeerMsg};
use sphr_p2p::wire::{
    Envelope, Kind, Reply, ResponseEnvelope, encode_envelope, encode_frame, encode_response_frame,
};
use sphr_types::{Block, BlockRecord, ProposalResponse, ValidationCode, Version, encode};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let net = TestNetwork::with_contracts(2, 1, &[("kv", "ANY"), ("consent", "MAJORITY")]);
    let alice = net.user(0, "alice");
    let doc = net.identity(1, "doc", Role::Doctor, 0, u64::MAX);

    // Certificates.
    write(&root, "cert", "user", &alice.cert.to_bytes().unwrap());
    write(
        &root,
        "cert",
        "node",
        &net.node(0, 0).cert.to_bytes().unwrap(),
    );

    // Proposals and transactions.
    let tx1 = net.kv_put(&alice, b"greeting", b"hello");
    let tx2 = net
        .tx(&doc)
        .contract("consent")
        .function("registerPatient")
        .args(vec![b"\xa0".to_vec()])
        .reads(vec![read(
            "consent",
            b"p/1",
            Some(Version { block: 1, tx: 0 }),
        )])
        .writes(vec![
            put("consent", b"p/1", b"x"),
            put("consent", b"p/2", b"y"),
        ])
        .build();
    write(
        &root,
        "signed_proposal",
        "kv_put",
        &tx1.signed_proposal.to_bytes().unwrap(),
    );
    write(
        &root,
        "signed_proposal",
        "consent",
        &tx2.signed_proposal.to_bytes().unwrap(),
    );
    write(&root, "transaction", "kv_put", &tx1.to_bytes().unwrap());
    write(&root, "transaction", "consent", &tx2.to_bytes().unwrap());
    let pr = ProposalResponse {
        response: tx2.response.clone(),
        endorsement: tx2.endorsements[0].clone(),
    };
    write(
        &root,
        "transaction",
        "proposal_response",
        &pr.to_bytes().unwrap(),
    );

    // Batches and blocks.
    let batch = net.batch(&[tx1.clone(), tx2.clone()]);
    let batch_bytes = batch.to_bytes().unwrap();
    write(&root, "signed_batch", "two_txs", &batch_bytes);
    write(
        &root,
        "signed_batch",
        "empty",
        &net.batch(&[]).to_bytes().unwrap(),
    );
    let b1 = Block::next(&net.genesis_block.header, batch, 1_700_000_000_000);
    let rec0 = BlockRecord {
        block: net.genesis_block.clone(),
        codes: vec![],
        raft_index: 0,
    };
    let rec1 = BlockRecord {
        block: b1,
        codes: vec![ValidationCode::Valid, ValidationCode::MvccReadConflict],
        raft_index: 5,
    };
    write(&root, "block_record", "genesis", &rec0.to_bytes().unwrap());
    write(&root, "block_record", "block1", &rec1.to_bytes().unwrap());

    // Genesis: a whole block 0, and the configuration bytes alone.
    write(
        &root,
        "genesis_block",
        "block0",
        &encode(&net.genesis_block).unwrap(),
    );
    write(
        &root,
        "genesis_block",
        "config",
        &encode(&net.genesis).unwrap(),
    );

    // p2p envelopes and frames (first byte: the target's selector).
    let env = Envelope {
        network_id: NET,
        kind: Kind::Endorse.code(),
        body: tx1.signed_proposal.to_bytes().unwrap(),
    };
    // Selector: kind in the low 5 bits, limit index in the top 3 (4 = 1 MiB).
    write(
        &root,
        "p2p_envelope",
        "endorse",
        &[&[(4 << 5) | 1], &encode_envelope(&env).unwrap()[..]].concat(),
    );
    let resp = ResponseEnvelope {
        network_id: NET,
        kind: 3,
        reply: Reply::Ok(vec![1, 2, 3]),
    };
    write(
        &root,
        "p2p_envelope",
        "response_ok",
        &[&[(4 << 5) | 3], &encode_response_frame(&resp).unwrap()[4..]].concat(),
    );
    let resp = ResponseEnvelope {
        network_id: NET,
        kind: 1,
        reply: Reply::Err("busy".into()),
    };
    write(
        &root,
        "p2p_envelope",
        "response_err",
        &[&[(4 << 5) | 1], &encode_response_frame(&resp).unwrap()[4..]].concat(),
    );
    // p2p_frame selector: kind index (0 endorse, 1 raft, 2 blocks) + 16 * limit index (2 = 1 MiB).
    write(
        &root,
        "p2p_frame",
        "endorse",
        &[&[0x20], &encode_frame(&env).unwrap()[..]].concat(),
    );
    let raft_env = Envelope {
        network_id: NET,
        kind: Kind::Raft.code(),
        body: vec![0xa0],
    };
    write(
        &root,
        "p2p_frame",
        "raft",
        &[&[0x21], &encode_frame(&raft_env).unwrap()[..]].concat(),
    );

    // Raft messages.
    let mut append = Message::default();
    append.set_msg_type(MessageType::MsgAppend);
    append.from = 1;
    append.to = 2;
    append.term = 3;
    append.index = 7;
    append.log_term = 3;
    append.commit = 6;
    let mut e = Entry::default();
    e.set_entry_type(EntryType::EntryNormal);
    e.index = 8;
    e.term = 3;
    e.data = batch_bytes.clone().into();
    append.mut_entries().push(e);
    let mut snap = Message::default();
    snap.set_msg_type(MessageType::MsgSnapshot);
    let mut s = Snapshot::default();
    s.mut_metadata().index = 100;
    s.mut_metadata().term = 4;
    let mut cs = ConfState::default();
    cs.voters = vec![1, 2, 3];
    s.mut_metadata().set_conf_state(cs);
    s.data = b"blocks up to 100".to_vec().into();
    snap.set_snapshot(s);
    let mut vote = Message::default();
    vote.set_msg_type(MessageType::MsgRequestVote);
    vote.term = 9;
    for (name, m) in [("append", &append), ("snapshot", &snap), ("vote", &vote)] {
        let bytes = sphr_orderer::encode_message(m).unwrap();
        write(&root, "raft_message", name, &bytes);
        let pm = PeerMsg::Raft(ByteBuf::from(bytes));
        write(
            &root,
            "peer_msg",
            &format!("raft_{name}"),
            &encode(&pm).unwrap(),
        );
    }
    let pm = PeerMsg::Txs(vec![ByteBuf::from(tx1.to_bytes().unwrap())]);
    write(&root, "peer_msg", "txs", &encode(&pm).unwrap());

    // Block range requests and answers.
    write(
        &root,
        "block_range",
        "range",
        &encode(&BlockRange { from: 1, to: 300 }).unwrap(),
    );
    let bb = BlockBatch {
        blocks: vec![
            ByteBuf::from(rec0.to_bytes().unwrap()),
            ByteBuf::from(rec1.to_bytes().unwrap()),
        ],
        height: 2,
    };
    write(&root, "block_batch", "two", &encode(&bb).unwrap());

    // Ledger storage records (first byte: the decoder).
    let loc = TxLocation {
        block: 3,
        position: 1,
        code: ValidationCode::BadSignature,
    };
    write(
        &root,
        "ledger_codec",
        "tx_location",
        &[&[0u8][..], &loc.to_bytes()].concat(),
    );
    write(
        &root,
        "ledger_codec",
        "state_value",
        &[
            &[1u8][..],
            &encode_state_value(Version { block: 2, tx: 5 }, b"v"),
        ]
        .concat(),
    );
    write(
        &root,
        "ledger_codec",
        "header",
        &[&[2u8][..], &encode_header(&rec1.block.header)].concat(),
    );
    write(
        &root,
        "ledger_codec",
        "u64",
        &[&[3u8][..], &7u64.to_be_bytes()].concat(),
    );
    write(
        &root,
        "ledger_codec",
        "hash",
        &[&[4u8][..], &Hash32([9; 32]).0].concat(),
    );

    // TOML: the shipped specs and config.
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for (name, path) in [
        ("dev", "genesis/dev.toml"),
        ("four_orgs", "genesis/four-orgs.toml"),
    ] {
        write(
            &root,
            "genesis_spec",
            name,
            &std::fs::read(repo.join(path)).unwrap(),
        );
    }
    write(
        &root,
        "node_config",
        "node",
        &std::fs::read(repo.join("configs/node.toml")).unwrap(),
    );

    // Proxy re-encryption (first byte: the decoder).
    let mut skb = [0u8; 64];
    for (i, x) in skb.iter_mut().enumerate() {
        *x = if i % 32 == 0 { 0x22 } else { (i * 7) as u8 };
    }
    let sk = PreSecretKey::from_bytes(&skb).unwrap();
    let pk = sk.public_key().clone();
    let rk = sk.rekey_to(&pk);
    let sealed = seal(&pk, b"dosage 5mg", b"aad").unwrap();
    let resealed: ReSealed = reencrypt(&sealed, &rk).unwrap();
    write(
        &root,
        "pre_decode",
        "sk",
        &[&[0u8][..], &sk.to_bytes()[..]].concat(),
    );
    write(
        &root,
        "pre_decode",
        "pk",
        &[&[1u8][..], &pk.to_bytes()[..]].concat(),
    );
    write(
        &root,
        "pre_decode",
        "rk",
        &[&[2u8][..], &rk.to_bytes()[..]].concat(),
    );
    write(
        &root,
        "pre_decode",
        "sealed",
        &[&[3u8][..], &sealed.to_bytes()[..]].concat(),
    );
    write(
        &root,
        "pre_decode",
        "resealed",
        &[&[4u8][..], &resealed.to_bytes()[..]].concat(),
    );
    write(
        &root,
        "pre_decode",
        "pk_cbor",
        &[&[5u8][..], &cbor::to_vec(&pk).unwrap()[..]].concat(),
    );
    write(
        &root,
        "pre_decode",
        "rk_cbor",
        &[&[6u8][..], &cbor::to_vec(&rk).unwrap()[..]].concat(),
    );
    write(
        &root,
        "pre_decode",
        "sealed_cbor",
        &[&[7u8][..], &cbor::to_vec(&sealed).unwrap()[..]].concat(),
    );
    write(
        &root,
        "pre_decode",
        "resealed_cbor",
        &[&[8u8][..], &cbor::to_vec(&resealed).unwrap()[..]].concat(),
    );

    // Vault: the SMR01 fixtures (first byte: flags for vault_csv, the decoder for
    // vault_control).
    let fx = |name: &str| std::fs::read(repo.join("node/vault/tests/fixtures").join(name)).unwrap();
    let sep = sphr_fuzz::PART_SEPARATOR;
    write(
        &root,
        "vault_csv",
        "smr01",
        &[&[0u8][..], &fx("smr01.csv")].concat(),
    );
    write(
        &root,
        "vault_csv",
        "smr01_bad_rows_allowed",
        &[&[1u8][..], &fx("smr01_bad_rows.csv")].concat(),
    );
    let three = [
        &[0u8][..],
        &fx("smr01_columns.csv"),
        sep,
        &fx("smr01_hubs.csv"),
        sep,
        &fx("smr01.csv"),
    ]
    .concat();
    write(&root, "vault_csv", "smr01_three_parts", &three);
    write(
        &root,
        "vault_control",
        "columns",
        &[&[0u8][..], &fx("smr01_columns.csv")].concat(),
    );
    write(
        &root,
        "vault_control",
        "hubs",
        &[&[1u8][..], &fx("smr01_hubs.csv")].concat(),
    );
    write(
        &root,
        "vault_control",
        "tags",
        &[&[2u8][..], &fx("smr01_tags.csv")].concat(),
    );
    write(
        &root,
        "vault_control",
        "satellite_name",
        b"\x03sat_time_admissions_date",
    );
    write(&root, "vault_control", "date_iso", b"\x042022-03-02");
    write(&root, "vault_control", "date_dmy", b"\x0409/03/2022");
    write(&root, "vault_control", "float", b"\x04-1.5e3");
}

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}
