//! Intruders at the API, the items of the bad-input list that bad_input.rs and pipeline.rs do
//! not count: certificates issued by the right CA but expired or not yet valid, a missing
//! (zeroed) signature, replays of a committed transaction (submitted again and broadcast
//! again), and a transaction whose endorsement is not by a node. Each gets a clear 4xx (or,
//! for what only the committer can judge, its validation code), a counter moves, and the state
//! does not change.

#![allow(clippy::unwrap_used)]

mod common;

use common::{NetOpts, TestNet};
use hyper::Method;
use sphr_crypto::cert::{Certificate, CertificateBody, Role};
use sphr_crypto::keys::{SecretKey, Signature};
use sphr_node::client::{Client, make_proposal};
use sphr_node::identity::Identity;
use sphr_types::{Endorsement, SignedProposal, Transaction};

const CBOR: Option<&str> = Some("application/cbor");

async fn expect(client: &Client, path: &str, body: Vec<u8>, status: u16, kind: &str, has: &str) {
    let (s, b) = client
        .request(Method::POST, path, CBOR, body)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&b)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&b)));
    assert_eq!((s, v["error"].as_str().unwrap()), (status, kind), "{v}");
    let msg = v["message"].as_str().unwrap().to_lowercase();
    assert!(
        msg.contains(&has.to_lowercase()),
        "{msg:?} should mention {has:?}"
    );
}

async fn rejections(client: &Client, kind: &str) -> u64 {
    let (_, m) = client
        .request(Method::GET, "/metrics", None, vec![])
        .await
        .unwrap();
    let needle = format!("sphr_api_rejections_total{{kind=\"{kind}\"}} ");
    String::from_utf8(m)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

/// A client identity of OrgA issued by OrgA's real CA, valid from `not_before` to `not_after`.
fn issued(net: &TestNet, subject: &str, not_before: u64, not_after: u64) -> Identity {
    let ca = sphr_node::genesis::load_ca_key(&net.net.join("orgs/OrgA/ca.key")).unwrap();
    let key = SecretKey::generate().unwrap();
    let cert = Certificate::issue(
        &ca,
        CertificateBody {
            subject: subject.into(),
            org: "OrgA".into(),
            role: Role::Client,
            public_key: key.public_key(),
            pre_public_key: None,
            not_before,
            not_after,
        },
    )
    .unwrap();
    Identity::new(cert, key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_early_unsigned_replayed_and_forged_input_changes_nothing() {
    let net = TestNet::new(NetOpts::default());
    let node = net.start().await;
    let client = net.client(node.api_addr());
    let now = sphr_node::now_ms() / 1000;

    // A certificate of the right CA that expired an hour ago.
    let expired = issued(&net, "old", now - 86_400, now - 3600);
    let (_, sp) = make_proposal(&expired, net.network_id(), "kv", "put", ["k", "v"]).unwrap();
    expect(
        &client,
        "/v1/transactions",
        sp.to_bytes().unwrap(),
        403,
        "unknown_identity",
        "expired",
    )
    .await;
    // One that starts tomorrow.
    let early = issued(&net, "early", now + 86_400, now + 2 * 86_400);
    let (_, sp) = make_proposal(&early, net.network_id(), "kv", "put", ["k", "v"]).unwrap();
    expect(
        &client,
        "/v1/endorse",
        sp.to_bytes().unwrap(),
        403,
        "unknown_identity",
        "not valid before",
    )
    .await;

    // A proposal with its signature missing (all zero bytes).
    let (_, sp) = net.proposal("alice", "put", &["k", "v"]);
    let unsigned = SignedProposal {
        proposal: sp.proposal.clone(),
        signature: Signature([0; 64]),
    };
    expect(
        &client,
        "/v1/transactions",
        unsigned.to_bytes().unwrap(),
        403,
        "bad_signature",
        "signature",
    )
    .await;
    assert_eq!(client.status().await.unwrap().height, 0, "nothing ordered");

    // The good proposal commits once; replays are refused, by submit and by broadcast.
    let first = client.submit(&sp, true).await.unwrap();
    assert_eq!(first.code.as_deref(), Some("VALID"));
    let height = client.status().await.unwrap().height;
    expect(
        &client,
        "/v1/transactions",
        sp.to_bytes().unwrap(),
        409,
        "already_committed",
        &first.tx_id,
    )
    .await;

    // A transaction whose only endorsement is signed by a user (alice), not a node: the
    // committer gives it ENDORSEMENT_POLICY_FAILURE and it writes nothing.
    let (_, sp2) = net.proposal("alice", "put", &["forged", "v"]);
    let pr = client.endorse(&sp2).await.unwrap();
    let alice = net.user("alice");
    let forged = Transaction {
        signed_proposal: sp2.clone(),
        response: pr.response.clone(),
        endorsements: vec![Endorsement::single(
            alice.cert.clone(),
            alice.key.sign(&pr.response),
        )],
    };
    let r = client.broadcast(&forged, true).await.unwrap();
    assert_ne!(r.code.as_deref(), Some("VALID"), "{r:?}");
    let q = client
        .query(&net.proposal("alice", "get", &["forged"]).1)
        .await;
    assert!(
        q.is_err() || q.as_ref().is_ok_and(|q| q.response_hex.is_empty()),
        "the forged write is not in the state: {q:?}"
    );
    // Broadcast of the committed tx again is a replay too.
    let again = client.broadcast(&forged, false).await.unwrap_err();
    assert!(again.to_string().contains("already"), "{again}");
    let after = client.status().await.unwrap().height;
    assert_eq!(after, height + 1, "only the forged tx's block was added");

    for (kind, n) in [
        ("unknown_identity", 2),
        ("bad_signature", 1),
        ("already_committed", 2),
    ] {
        assert!(rejections(&client, kind).await >= n, "{kind}");
    }
    node.shutdown().await;
}
