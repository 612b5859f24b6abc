//! Each way a transaction is invalid gives its code and changes no state.

use serde_bytes::ByteBuf;
use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;
use sphr_ledger::test_utils::{
    TEST_TIME_MS, TestIdentity, TestNetwork, endorse, issue, put, seeded_key,
};
use sphr_ledger::{CommitOutcome, Ledger};
use sphr_types::{ResponsePayload, Transaction, ValidationCode, decode, encode, namespaced_key};

use crate::{codes, commit, open, tx_id};

/// Commits `tx` alone and checks its code, that it wrote nothing under `kv/k`, and whether its
/// id was indexed.
fn expect_code(net: &TestNetwork, ledger: &Ledger, tx: Transaction, code: ValidationCode) {
    let before = ledger.get_state(&namespaced_key("kv", b"k")).unwrap();
    let b = commit(net, ledger, std::slice::from_ref(&tx));
    assert_eq!(codes(&b), vec![code]);
    assert!(b.txs[0].events.is_empty());
    assert_eq!(
        ledger.get_state(&namespaced_key("kv", b"k")).unwrap(),
        before
    );
    // The block is stored with the code.
    assert_eq!(ledger.block(b.number).unwrap().unwrap().codes, vec![code]);
}

fn write_k(net: &TestNetwork, creator: &TestIdentity) -> Transaction {
    net.tx(creator)
        .writes(vec![put("kv", b"k", b"evil")])
        .build()
}

#[test]
fn forged_creator_signature() {
    let net = TestNetwork::new(2, "ALL");
    let (_d, ledger) = open(&net);
    let mut tx = write_k(&net, &net.user(0, "alice"));
    tx.signed_proposal.signature.0[10] ^= 0x40;
    let id = tx_id(&tx);
    expect_code(&net, &ledger, tx, ValidationCode::BadSignature);
    // A forged copy does not spend the id.
    assert!(ledger.tx_location(&id).unwrap().is_none());
}

#[test]
fn policy_and_needs_both_orgs() {
    let net = TestNetwork::new(2, "AND(Org1, Org2)");
    let (_d, ledger) = open(&net);
    let alice = net.user(0, "alice");
    let only_a = net
        .tx(&alice)
        .endorsers(vec![net.node(0, 0)])
        .writes(vec![put("kv", b"k", b"x")])
        .build();
    expect_code(
        &net,
        &ledger,
        only_a,
        ValidationCode::EndorsementPolicyFailure,
    );
    // Twice the same org is still one org.
    let a_twice = net
        .tx(&alice)
        .endorsers(vec![net.node(0, 0), net.node(0, 0)])
        .writes(vec![put("kv", b"k", b"x")])
        .build();
    expect_code(
        &net,
        &ledger,
        a_twice,
        ValidationCode::EndorsementPolicyFailure,
    );
    let none = net
        .tx(&alice)
        .endorsers(vec![])
        .writes(vec![put("kv", b"k", b"x")])
        .build();
    expect_code(
        &net,
        &ledger,
        none,
        ValidationCode::EndorsementPolicyFailure,
    );
    // Both: valid.
    let both = net.tx(&alice).writes(vec![put("kv", b"k", b"x")]).build();
    assert_eq!(
        codes(&commit(&net, &ledger, &[both])),
        vec![ValidationCode::Valid]
    );
}

#[test]
fn duplicate_tx_id_in_same_block_and_later_block() {
    let net = TestNetwork::new(1, "ANY");
    let (_d, ledger) = open(&net);
    let alice = net.user(0, "alice");
    let nonce = Hash32([9; 32]);
    let t1 = net
        .tx(&alice)
        .nonce(nonce)
        .writes(vec![put("kv", b"a", b"1")])
        .build();
    // Same creator and nonce, different content: same id.
    let t2 = net
        .tx(&alice)
        .nonce(nonce)
        .writes(vec![put("kv", b"k", b"2")])
        .build();
    assert_eq!(tx_id(&t1), tx_id(&t2));
    let b = commit(&net, &ledger, &[t1.clone(), t2.clone()]);
    assert_eq!(
        codes(&b),
        vec![ValidationCode::Valid, ValidationCode::DuplicateTxid]
    );
    assert!(
        ledger
            .get_state(&namespaced_key("kv", b"k"))
            .unwrap()
            .is_none()
    );
    // The index keeps the first.
    let loc = ledger.tx_location(&tx_id(&t1)).unwrap().unwrap();
    assert_eq!(
        (loc.block, loc.position, loc.code),
        (1, 0, ValidationCode::Valid)
    );
    // A replay in a later block.
    expect_code(&net, &ledger, t2, ValidationCode::DuplicateTxid);
    let id1 = tx_id(&t1);
    expect_code(&net, &ledger, t1, ValidationCode::DuplicateTxid);
    assert_eq!(ledger.tx_location(&id1).unwrap(), Some(loc));
}

#[test]
fn unknown_ca_and_expired_or_early_certificates() {
    let net = TestNetwork::new(2, "ANY");
    let (_d, ledger) = open(&net);
    // Claims Org1 but signed by another CA.
    let mallory = net.foreign_identity("Org1", "mallory", Role::Client);
    expect_code(
        &net,
        &ledger,
        write_k(&net, &mallory),
        ValidationCode::BadCreator,
    );
    // An org that is not in genesis.
    let nobody = net.foreign_identity("Org9", "nobody", Role::Client);
    expect_code(
        &net,
        &ledger,
        write_k(&net, &nobody),
        ValidationCode::BadCreator,
    );
    let now_s = TEST_TIME_MS / 1000;
    // Expired one second before the block time (not_after is exclusive).
    let expired = net.identity(0, "old", Role::Client, 0, now_s);
    expect_code(
        &net,
        &ledger,
        write_k(&net, &expired),
        ValidationCode::BadCreator,
    );
    let early = net.identity(0, "early", Role::Client, now_s + 1, u64::MAX);
    expect_code(
        &net,
        &ledger,
        write_k(&net, &early),
        ValidationCode::BadCreator,
    );
    // Valid exactly from the block time.
    let fresh = net.identity(0, "fresh", Role::Client, now_s, now_s + 1);
    assert_eq!(
        codes(&commit(&net, &ledger, &[write_k(&net, &fresh)])),
        vec![ValidationCode::Valid]
    );
}

#[test]
fn wrong_network() {
    let net = TestNetwork::new(1, "ANY");
    let (_d, ledger) = open(&net);
    let tx = net
        .tx(&net.user(0, "alice"))
        .network_id(Hash32([1; 32]))
        .writes(vec![put("kv", b"k", b"x")])
        .build();
    expect_code(&net, &ledger, tx, ValidationCode::WrongNetwork);
}

#[test]
fn endorsements_by_keys_not_in_genesis() {
    let net = TestNetwork::new(2, "ANY");
    let (_d, ledger) = open(&net);
    let alice = net.user(0, "alice");
    let org1 = &net.orgs[0];
    // CA-signed, role node, named peer0, but not peer0's key.
    let rogue_key = seeded_key("rogue");
    let rogue = TestIdentity {
        cert: issue(
            &org1.ca,
            &org1.name,
            "peer0",
            Role::Node,
            &rogue_key,
            0,
            u64::MAX,
        ),
        key: rogue_key,
    };
    // peer0's key but with role client.
    let wrong_role = TestIdentity {
        cert: issue(
            &org1.ca,
            &org1.name,
            "peer0",
            Role::Client,
            &net.node(0, 0).key,
            0,
            u64::MAX,
        ),
        key: net.node(0, 0).key.clone(),
    };
    // A node name that genesis does not have.
    let unknown_name = TestIdentity {
        cert: issue(
            &org1.ca,
            &org1.name,
            "peer7",
            Role::Node,
            &net.node(0, 0).key,
            0,
            u64::MAX,
        ),
        key: net.node(0, 0).key.clone(),
    };
    // A node certificate from a CA outside genesis.
    let foreign = net.foreign_identity("Org1", "peer0", Role::Node);
    for bad in [&rogue, &wrong_role, &unknown_name, &foreign] {
        // One good endorsement plus a bad one: any bad endorsement fails the tx.
        let tx = net
            .tx(&alice)
            .endorsers(vec![net.node(1, 0), bad])
            .writes(vec![put("kv", b"k", b"x")])
            .build();
        expect_code(&net, &ledger, tx, ValidationCode::BadEndorsementSignature);
    }
    // A genuine endorser whose signature is over other bytes.
    let mut tx = net.tx(&alice).writes(vec![put("kv", b"k", b"x")]).build();
    tx.endorsements[1] = endorse(net.node(1, 0), b"something else");
    expect_code(&net, &ledger, tx, ValidationCode::BadEndorsementSignature);
}

#[test]
fn writes_and_reads_outside_the_namespace_and_mismatched_responses() {
    let net = TestNetwork::new(1, "ANY");
    let (_d, ledger) = open(&net);
    let alice = net.user(0, "alice");
    let tx = net
        .tx(&alice)
        .writes(vec![put("kv", b"k", b"x"), put("other", b"k", b"x")])
        .build();
    expect_code(&net, &ledger, tx, ValidationCode::BadPayload);
    // A raw key without the namespace separator.
    let tx = net
        .tx(&alice)
        .writes(vec![sphr_types::Write {
            key: b"kvk".to_vec(),
            value: Some(b"x".to_vec()),
        }])
        .build();
    expect_code(&net, &ledger, tx, ValidationCode::BadPayload);

    // A response for another proposal (re-signed by the endorser, so only the ids differ).
    let mut tx = net.tx(&alice).writes(vec![put("kv", b"k", b"x")]).build();
    let mut resp: ResponsePayload = decode(&tx.response, 1 << 20).unwrap();
    resp.tx_id = Hash32([3; 32]);
    tx.response = encode(&resp).unwrap();
    tx.endorsements = vec![endorse(net.node(0, 0), &tx.response)];
    expect_code(&net, &ledger, tx, ValidationCode::BadPayload);
    let mut tx = net.tx(&alice).writes(vec![put("kv", b"k", b"x")]).build();
    let mut resp: ResponsePayload = decode(&tx.response, 1 << 20).unwrap();
    resp.proposal_hash = Hash32([3; 32]);
    tx.response = encode(&resp).unwrap();
    tx.endorsements = vec![endorse(net.node(0, 0), &tx.response)];
    expect_code(&net, &ledger, tx, ValidationCode::BadPayload);
}

#[test]
fn unknown_contract() {
    let net = TestNetwork::new(1, "ANY");
    let (_d, ledger) = open(&net);
    let tx = net
        .tx(&net.user(0, "alice"))
        .contract("nosuch")
        .writes(vec![put("nosuch", b"k", b"x")])
        .build();
    expect_code(&net, &ledger, tx, ValidationCode::UnknownContract);
}

#[test]
fn undecodable_transactions_are_bad_payload_and_the_rest_commit() {
    let net = TestNetwork::new(1, "ANY");
    let (_d, ledger) = open(&net);
    let alice = net.user(0, "alice");
    let good = net.kv_put(&alice, b"g", b"1");
    let raw = vec![
        ByteBuf::from(vec![0xff, 0x00, 0x13]),
        ByteBuf::from(Vec::new()),
        ByteBuf::from(good.to_bytes().unwrap()),
    ];
    let batch = net.batch_raw(raw, TEST_TIME_MS, 0, &net.node(0, 0).key);
    let CommitOutcome::Committed(b) = ledger.commit_batch(1, &batch).unwrap() else {
        panic!("expected a block");
    };
    assert_eq!(
        codes(&b),
        vec![
            ValidationCode::BadPayload,
            ValidationCode::BadPayload,
            ValidationCode::Valid
        ]
    );
    assert_eq!(b.txs[0].tx_id, None);
    assert_eq!(b.txs[2].position, 2);
    assert_eq!(
        ledger
            .get_state(&namespaced_key("kv", b"g"))
            .unwrap()
            .unwrap()
            .0,
        sphr_types::Version { block: 1, tx: 2 }
    );
}
