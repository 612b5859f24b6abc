//! Bad input at the API: each gets a 4xx naming what was wrong, a counter moves, nothing
//! changes, and the node keeps serving.

#![allow(clippy::unwrap_used)]

mod common;

use common::{NetOpts, TestNet};
use hyper::Method;
use sphr_crypto::cert::{Certificate, CertificateBody, Role};
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::SecretKey;
use sphr_node::client::{Client, ClientError, make_proposal};
use sphr_node::identity::Identity;

async fn expect_error(
    client: &Client,
    path: &str,
    ct: Option<&str>,
    body: Vec<u8>,
    want_status: u16,
    want_kind: &str,
    message_has: &str,
) {
    let (status, body) = client.request(Method::POST, path, ct, body).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
    assert_eq!(status, want_status, "{v}");
    assert_eq!(v["error"], want_kind, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.to_lowercase().contains(&message_has.to_lowercase()),
        "message {msg:?} should mention {message_has:?}"
    );
}

fn rejections(metrics: &str, kind: &str) -> u64 {
    let needle = format!("sphr_api_rejections_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_the_node_keeps_serving() {
    let net = TestNet::new(NetOpts::default());
    let node = net.start().await;
    let client = net.client(node.api_addr());
    let cbor = Some("application/cbor");

    // Malformed bodies.
    expect_error(
        &client,
        "/v1/transactions",
        cbor,
        vec![0xff, 0x00, 0x13],
        400,
        "malformed_proposal",
        "cbor",
    )
    .await;
    expect_error(
        &client,
        "/v1/transactions",
        cbor,
        b"{\"json\": true}".to_vec(),
        400,
        "malformed_proposal",
        "",
    )
    .await;
    expect_error(
        &client,
        "/v1/transactions",
        cbor,
        vec![],
        400,
        "empty_body",
        "empty",
    )
    .await;
    expect_error(
        &client,
        "/v1/query",
        cbor,
        vec![0x82, 0x01],
        400,
        "malformed_proposal",
        "",
    )
    .await;
    expect_error(
        &client,
        "/v1/broadcast",
        cbor,
        vec![0xa1, 0x61],
        400,
        "malformed_transaction",
        "",
    )
    .await;
    // A proposal whose inner bytes are garbage but whose envelope is fine.
    let (_, mut sp) = net.proposal("alice", "put", &["k", "v"]);
    sp.proposal.truncate(sp.proposal.len() / 2);
    expect_error(
        &client,
        "/v1/transactions",
        cbor,
        sp.to_bytes().unwrap(),
        400,
        "malformed_proposal",
        "proposal",
    )
    .await;
    // Wrong content type.
    expect_error(
        &client,
        "/v1/transactions",
        Some("application/json"),
        b"{}".to_vec(),
        415,
        "unsupported_media_type",
        "application/cbor",
    )
    .await;
    // Oversized body (the limit is 1 MiB).
    expect_error(
        &client,
        "/v1/transactions",
        cbor,
        vec![0u8; 2 * 1024 * 1024],
        413,
        "body_too_large",
        "limit",
    )
    .await;

    // Unknown identity: a certificate from a CA that is not in genesis.
    let rogue_ca = SecretKey::generate().unwrap();
    let key = SecretKey::generate().unwrap();
    let cert = Certificate::issue(
        &rogue_ca,
        CertificateBody {
            subject: "mallory".into(),
            org: "OrgA".into(),
            role: Role::Admin,
            public_key: key.public_key(),
            pre_public_key: None,
            not_before: 0,
            not_after: u64::MAX,
        },
    )
    .unwrap();
    let mallory = Identity::new(cert, key).unwrap();
    let (_, sp) = make_proposal(&mallory, net.network_id(), "kv", "put", ["k", "v"]).unwrap();
    expect_error(
        &client,
        "/v1/transactions",
        cbor,
        sp.to_bytes().unwrap(),
        403,
        "unknown_identity",
        "not signed by the CA of OrgA",
    )
    .await;
    // An org that does not exist.
    let rogue_org_cert = Certificate::issue(
        &rogue_ca,
        CertificateBody {
            subject: "eve".into(),
            org: "NoSuchOrg".into(),
            role: Role::Client,
            public_key: mallory.key.public_key(),
            pre_public_key: None,
            not_before: 0,
            not_after: u64::MAX,
        },
    )
    .unwrap();
    let eve = Identity::new(rogue_org_cert, mallory.key.clone()).unwrap();
    let (_, sp) = make_proposal(&eve, net.network_id(), "kv", "put", ["k", "v"]).unwrap();
    expect_error(
        &client,
        "/v1/query",
        cbor,
        sp.to_bytes().unwrap(),
        403,
        "unknown_identity",
        "NoSuchOrg",
    )
    .await;

    // Wrong network id.
    let (_, sp) =
        make_proposal(&net.user("alice"), Hash32([7; 32]), "kv", "put", ["k", "v"]).unwrap();
    expect_error(
        &client,
        "/v1/transactions",
        cbor,
        sp.to_bytes().unwrap(),
        400,
        "wrong_network",
        "network",
    )
    .await;
    // Unknown contract and function.
    let (_, sp) = make_proposal(
        &net.user("alice"),
        net.network_id(),
        "nope",
        "put",
        ["k", "v"],
    )
    .unwrap();
    expect_error(
        &client,
        "/v1/transactions",
        cbor,
        sp.to_bytes().unwrap(),
        404,
        "unknown_contract",
        "nope",
    )
    .await;
    let (_, sp) = net.proposal("alice", "explode", &[]);
    expect_error(
        &client,
        "/v1/transactions",
        cbor,
        sp.to_bytes().unwrap(),
        404,
        "unknown_function",
        "explode",
    )
    .await;
    let (_, sp) = net.proposal("alice", "put", &["only-key"]);
    expect_error(
        &client,
        "/v1/transactions",
        cbor,
        sp.to_bytes().unwrap(),
        400,
        "bad_arguments",
        "argument",
    )
    .await;

    // Bad paths and ids.
    let (status, _) = client
        .request(Method::GET, "/v1/transactions/xyz", None, vec![])
        .await
        .unwrap();
    assert_eq!(status, 400);
    let (status, _) = client
        .request(Method::GET, "/v1/blocks/-1", None, vec![])
        .await
        .unwrap();
    assert_eq!(status, 400);
    let (status, _) = client
        .request(Method::GET, "/v1/blocks/999999", None, vec![])
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, _) = client
        .request(Method::GET, "/v1/nowhere", None, vec![])
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, _) = client
        .request(Method::DELETE, "/v1/status", None, vec![])
        .await
        .unwrap();
    assert_eq!(status, 405);

    // Nothing was written, the chain did not move, and the node still serves.
    let st = client.status().await.unwrap();
    assert_eq!(st.height, 0);
    let (_, sp) = net.proposal("alice", "put", &["k", "v"]);
    let r = client.submit(&sp, true).await.unwrap();
    assert_eq!(r.code.as_deref(), Some("VALID"));

    // Each rejection was counted.
    let (_, metrics) = client
        .request(Method::GET, "/metrics", None, vec![])
        .await
        .unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    for (kind, n) in [
        ("malformed_proposal", 4),
        ("empty_body", 1),
        ("malformed_transaction", 1),
        ("unsupported_media_type", 1),
        ("body_too_large", 1),
        ("unknown_identity", 2),
        ("wrong_network", 1),
        ("unknown_contract", 1),
        ("unknown_function", 1),
        ("bad_arguments", 1),
    ] {
        assert_eq!(rejections(&metrics, kind), n, "{kind}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_http_and_untrusted_clients_get_nothing() {
    let net = TestNet::new(NetOpts::default());
    let node = net.start().await;
    // Plain HTTP on the TLS port: no HTTP answer.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(node.api_addr())
        .await
        .unwrap();
    s.write_all(b"GET /v1/status HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .map(|r| r.unwrap_or(0))
        .unwrap_or(0);
    assert!(
        !buf[..n].starts_with(b"HTTP/"),
        "plaintext HTTP was answered"
    );
    // A client that trusts another network's CA refuses the node's certificate.
    let other = TestNet::new(NetOpts::default());
    let c = other.client(node.api_addr());
    assert!(matches!(
        c.status().await,
        Err(ClientError::Http { .. }) | Err(ClientError::Tls { .. }) | Err(_)
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    let net = TestNet::new(NetOpts::default());
    let node = net.start().await;
    let client = net.client(node.api_addr());
    let (_, doc) = client
        .request(Method::GET, "/openapi.json", None, vec![])
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{tx_id}", &"0".repeat(64))
            .replace("{number}", "0");
        for method in item.as_object().unwrap().keys() {
            if method == "get" && concrete == "/v1/events" {
                continue; // a stream: never ends
            }
            let m: Method = method.to_uppercase().parse().unwrap();
            let (status, body) = client.request(m, &concrete, None, vec![]).await.unwrap();
            let kind = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_default();
            assert!(
                kind != "no_route" && kind != "method_not_allowed",
                "{method} {path}: {status} {kind}"
            );
        }
    }
    node.shutdown().await;
}
