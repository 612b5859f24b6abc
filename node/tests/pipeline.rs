//! The whole execute-order-validate pipeline on a real node: sled on disk, raft-rs, HTTPS on
//! loopback, real keys and certificates.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{NetOpts, TestNet, wait_for};
use sphr_node::client::{Client, ClientError};
use sphr_types::Transaction;

async fn code_of(client: &Client, tx_id: &str) -> String {
    wait_for(Duration::from_secs(20), || async {
        client.tx_status(tx_id).await.ok().map(|s| s.code)
    })
    .await
}

async fn get(net: &TestNet, client: &Client, key: &str) -> Result<String, ClientError> {
    let (_, sp) = net.proposal("alice", "get", &[key]);
    let r = client.query(&sp).await?;
    Ok(String::from_utf8(hex::decode(r.response_hex).unwrap()).unwrap())
}

/// Endorse at the node and assemble the transaction, as a client of Fabric's gateway would.
async fn endorsed_tx(net: &TestNet, client: &Client, f: &str, args: &[&str]) -> Transaction {
    let (_, sp) = net.proposal("alice", f, args);
    let pr = client.endorse(&sp).await.unwrap();
    Transaction {
        signed_proposal: sp,
        response: pr.response,
        endorsements: vec![pr.endorsement],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_goes_the_whole_way_and_is_queryable() {
    let net = TestNet::new(NetOpts::default());
    let node = net.start().await;
    let client = net.client(node.api_addr());

    let (p, sp) = net.proposal("alice", "put", &["greeting", "hello"]);
    let r = client.submit(&sp, true).await.unwrap();
    assert_eq!(r.status, "COMMITTED");
    assert_eq!(r.code.as_deref(), Some("VALID"));
    assert_eq!(r.tx_id, p.tx_id().to_hex());
    let block = r.block.unwrap();
    assert!(block >= 1);

    assert_eq!(get(&net, &client, "greeting").await.unwrap(), "hello");

    let st = client.tx_status(&r.tx_id).await.unwrap();
    assert_eq!((st.block, st.code.as_str()), (block, "VALID"));

    let b = client.block(block).await.unwrap();
    let tx = b.txs.iter().find(|t| t.tx_id == r.tx_id).unwrap();
    assert_eq!(
        (tx.contract.as_str(), tx.function.as_str(), tx.code.as_str()),
        ("kv", "put", "VALID")
    );
    assert_eq!(tx.endorsing_orgs, vec!["OrgA".to_string()]);
    assert_eq!(tx.creator_org, "OrgA");
    let prev = client.block(block - 1).await.unwrap();
    assert_eq!(b.previous_hash, prev.hash);

    let status = client.status().await.unwrap();
    assert_eq!(status.height, block);
    assert_eq!(status.tip, b.hash);
    assert!(status.is_leader);
    assert_eq!(status.network_id, net.manifest.network_id);

    // A read-modify-write on the committed value.
    let (_, sp) = net.proposal("alice", "put", &["acct-a", "100"]);
    client.submit(&sp, true).await.unwrap();
    let (_, sp) = net.proposal("bob", "transfer", &["acct-a", "acct-b", "30"]);
    let r = client.submit(&sp, true).await.unwrap();
    assert_eq!(r.code.as_deref(), Some("VALID"));
    assert_eq!(get(&net, &client, "acct-a").await.unwrap(), "70");
    assert_eq!(get(&net, &client, "acct-b").await.unwrap(), "30");

    // A contract refusal is an error to the client and changes nothing.
    let (_, sp) = net.proposal("bob", "transfer", &["acct-a", "acct-b", "1000"]);
    match client.submit(&sp, true).await {
        Err(ClientError::Api { status, error, .. }) => {
            assert_eq!((status, error.as_str()), (422, "refused"))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(get(&net, &client, "acct-a").await.unwrap(), "70");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_of_two_conflicting_txs_in_one_block_gets_mvcc_read_conflict() {
    // Blocks of two, so the two transfers below land in the same block.
    let net = TestNet::new(NetOpts {
        max_tx: 2,
        batch_timeout_ms: 200,
        ..NetOpts::default()
    });
    let node = net.start().await;
    let client = net.client(node.api_addr());
    let (_, sp) = net.proposal("alice", "put", &["k", "10"]);
    assert_eq!(
        client.submit(&sp, true).await.unwrap().code.as_deref(),
        Some("VALID")
    );

    // Both are simulated on the same committed state: both read k at the same version.
    let t1 = endorsed_tx(&net, &client, "transfer", &["k", "a", "1"]).await;
    let t2 = endorsed_tx(&net, &client, "transfer", &["k", "b", "2"]).await;
    let r1 = client.broadcast(&t1, false).await.unwrap();
    let r2 = client.broadcast(&t2, false).await.unwrap();
    assert_eq!(code_of(&client, &r1.tx_id).await, "VALID");
    assert_eq!(code_of(&client, &r2.tx_id).await, "MVCC_READ_CONFLICT");
    let s1 = client.tx_status(&r1.tx_id).await.unwrap();
    let s2 = client.tx_status(&r2.tx_id).await.unwrap();
    assert_eq!(s1.block, s2.block, "both in one block");

    // State is as the first left it.
    assert_eq!(get(&net, &client, "k").await.unwrap(), "9");
    assert_eq!(get(&net, &client, "a").await.unwrap(), "1");
    assert!(matches!(
        get(&net, &client, "b").await,
        Err(ClientError::Api { status: 404, .. })
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_creator_signature_is_refused_at_endorsement() {
    let net = TestNet::new(NetOpts::default());
    let node = net.start().await;
    let client = net.client(node.api_addr());
    let (_, mut sp) = net.proposal("alice", "put", &["x", "1"]);
    sp.signature.0[10] ^= 0x40;
    for result in [
        client.submit(&sp, true).await.map(|_| ()),
        client.query(&sp).await.map(|_| ()),
        client.endorse(&sp).await.map(|_| ()),
    ] {
        match result {
            Err(ClientError::Api {
                status,
                error,
                message,
            }) => {
                assert_eq!((status, error.as_str()), (403, "bad_signature"));
                assert!(message.contains("signature"), "{message}");
            }
            other => panic!("expected 403 bad_signature, got {other:?}"),
        }
    }
    // Signed by someone else's key, with alice's certificate.
    let (p, _) = net.proposal("alice", "put", &["x", "1"]);
    let forged = p.sign(&net.user("bob").key).unwrap();
    assert!(matches!(
        client.submit(&forged, true).await,
        Err(ClientError::Api { status: 403, .. })
    ));
    assert!(matches!(
        get(&net, &client, "x").await,
        Err(ClientError::Api { status: 404, .. })
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endorsements_that_miss_the_policy_fail_and_change_nothing() {
    // kv needs both orgs; only OrgA has a node.
    let net = TestNet::new(NetOpts {
        policy: "AND(OrgA, OrgB)",
        second_org: true,
        ..NetOpts::default()
    });
    let node = net.start().await;
    let client = net.client(node.api_addr());

    // The gateway knows it cannot satisfy the policy.
    let (_, sp) = net.proposal("alice", "put", &["p", "1"]);
    match client.submit(&sp, true).await {
        Err(ClientError::Api { status, error, .. }) => {
            assert_eq!((status, error.as_str()), (503, "policy_unreachable"))
        }
        other => panic!("expected policy_unreachable, got {other:?}"),
    }
    // A client that assembles the tx with OrgA's endorsement alone gets it ordered, and every
    // committer marks it ENDORSEMENT_POLICY_FAILURE.
    let tx = endorsed_tx(&net, &client, "put", &["p", "1"]).await;
    let r = client.broadcast(&tx, true).await.unwrap();
    assert_eq!(r.code.as_deref(), Some("ENDORSEMENT_POLICY_FAILURE"));
    assert_eq!(
        client.tx_status(&r.tx_id).await.unwrap().code,
        "ENDORSEMENT_POLICY_FAILURE"
    );
    assert!(matches!(
        get(&net, &client, "p").await,
        Err(ClientError::Api { status: 404, .. })
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_tx_id_gets_duplicate_txid() {
    let net = TestNet::new(NetOpts {
        max_tx: 2,
        batch_timeout_ms: 200,
        ..NetOpts::default()
    });
    let node = net.start().await;
    let client = net.client(node.api_addr());
    let tx = endorsed_tx(&net, &client, "put", &["d", "1"]).await;
    let r1 = client.broadcast(&tx, false).await.unwrap();
    let r2 = client.broadcast(&tx, false).await.unwrap();
    assert_eq!(r1.tx_id, r2.tx_id);
    let st = wait_for(Duration::from_secs(20), || async {
        client.tx_status(&r1.tx_id).await.ok()
    })
    .await;
    assert_eq!(st.code, "VALID");
    let b = client.block(st.block).await.unwrap();
    let codes: Vec<&str> = b
        .txs
        .iter()
        .filter(|t| t.tx_id == r1.tx_id)
        .map(|t| t.code.as_str())
        .collect();
    assert_eq!(codes, vec!["VALID", "DUPLICATE_TXID"]);

    // Once committed, a replay is refused up front.
    match client.broadcast(&tx, true).await {
        Err(ClientError::Api { status, error, .. }) => {
            assert_eq!((status, error.as_str()), (409, "already_committed"))
        }
        other => panic!("expected already_committed, got {other:?}"),
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_events_are_streamed_to_subscribers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let net = TestNet::new(NetOpts::default());
    let node = net.start().await;
    let client = net.client(node.api_addr());

    // Subscribe over TLS and read the server-sent event stream as it comes.
    let tls = sphr_node::tls::client_config(&net.net.join("tls-ca.pem")).unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls);
    let tcp = tokio::net::TcpStream::connect(node.api_addr())
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    stream
        .write_all(
            b"GET /v1/events HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    // Wait for the response head, so the subscription exists before the commit.
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("text/event-stream"));

    let (_, sp) = net.proposal("alice", "transfer", &["from", "to", "0"]);
    let r = client.submit(&sp, true).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some(line) = text
            .lines()
            .find(|l| l.starts_with("data:") && l.contains(&r.tx_id))
        {
            let ev: serde_json::Value =
                serde_json::from_str(line.trim_start_matches("data:").trim()).unwrap();
            assert_eq!(ev["code"], "VALID");
            assert_eq!(ev["block"], r.block.unwrap());
            assert_eq!(ev["contract"], "kv");
            assert_eq!(ev["events"], serde_json::json!(["transfer"]));
            assert!(text.contains("event: commit"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no commit event: {text}"
        );
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stream);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_network_is_refused_with_the_reason() {
    let a = TestNet::new(NetOpts::default());
    let b = TestNet::new(NetOpts::default());
    let node = a.start().await;
    let data_dir = a.dir.path().join("data");
    node.shutdown().await;

    // Network b's node pointed at network a's data dir.
    let text = b.config_text("unused").replace(
        &b.dir.path().join("unused").display().to_string(),
        &data_dir.display().to_string(),
    );
    let path = b.dir.path().join("cross.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = sphr_node::config::NodeConfig::load(&path).unwrap();
    let err = match sphr_node::service::start(&cfg).await {
        Ok(_) => panic!("a data dir of another network was opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&a.manifest.network_id), "{err}");
    assert!(err.contains(&b.manifest.network_id), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_height_reads_a_committed_write_and_a_height_not_reached_is_refused() {
    let net = TestNet::new(NetOpts::default());
    let node = net.start().await;
    let client = net.client(node.api_addr());

    let (_, sp) = net.proposal("alice", "put", &["seen", "yes"]);
    let r = client.submit(&sp, true).await.unwrap();
    let block = r.block.unwrap();

    // At (or below) the node's height: answered as without the parameter, and the
    // simulation sees the committed write.
    let (_, q) = net.proposal("alice", "get", &["seen"]);
    let a = client.query_after(&q, Some(block)).await.unwrap();
    assert_eq!(hex::decode(a.response_hex).unwrap(), b"yes");
    let (_, e) = net.proposal("alice", "put", &["seen", "again"]);
    let pr = client.endorse_after(&e, Some(0)).await.unwrap();
    assert!(!pr.response.is_empty());

    // A height the node does not reach: 503 `behind`, naming both heights, after the wait.
    let far = block + 1_000;
    let (_, q) = net.proposal("alice", "get", &["seen"]);
    match client.query_after(&q, Some(far)).await {
        Err(ClientError::Api {
            status,
            error,
            message,
        }) => {
            assert_eq!((status, error.as_str()), (503, "behind"));
            assert!(message.contains(&far.to_string()), "{message}");
            assert!(message.contains(&format!("height {block}")), "{message}");
        }
        other => panic!("expected 503 behind, got {other:?}"),
    }
    // Not a number: 400 naming the query string.
    let (status, body) = client
        .request(
            hyper::Method::POST,
            "/v1/endorse?min_height=soon",
            Some("application/cbor"),
            e.to_bytes().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("bad_query"));
    // Nothing was ordered by any of this: the key still holds the first write.
    assert_eq!(get(&net, &client, "seen").await.unwrap(), "yes");
}
