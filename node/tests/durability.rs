//! Nothing acknowledged is lost: commits acknowledged by a node survive `kill -9`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{NetOpts, NodeProcess, TestNet, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_sigkill_and_the_node_goes_on() {
    let net = TestNet::new(NetOpts::default());
    let config = net.write_config("data");
    let node = NodeProcess::spawn(&config);
    let client = net.client(node.addr);

    // N acknowledged commits, some concurrent so several share a block.
    const N: usize = 40;
    let mut acked = Vec::new();
    for round in 0..(N / 8) {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (_, sp) = net.proposal(
                "alice",
                "put",
                &[&format!("key-{round}-{i}"), &format!("v{i}")],
            );
            let c = client.clone();
            tasks.push(tokio::spawn(async move { c.submit(&sp, true).await }));
        }
        for t in tasks {
            let r = t.await.unwrap().unwrap();
            assert_eq!(r.code.as_deref(), Some("VALID"));
            acked.push(r);
        }
    }
    assert_eq!(acked.len(), N);
    let before = client.status().await.unwrap();

    node.kill9();

    let node = NodeProcess::spawn(&config);
    let client = net.client(node.addr);
    let after = client.status().await.unwrap();
    assert_eq!(after.height, before.height, "height after restart");
    assert_eq!(after.tip, before.tip, "tip hash after restart");
    for r in &acked {
        let st = client.tx_status(&r.tx_id).await.unwrap();
        assert_eq!(st.code, "VALID");
        assert_eq!(Some(st.block), r.block);
    }
    let (_, sp) = net.proposal("alice", "get", &["key-0-3"]);
    let q = client.query(&sp).await.unwrap();
    assert_eq!(hex::decode(q.response_hex).unwrap(), b"v3");

    // New transactions commit after the restart.
    let (_, sp) = net.proposal("alice", "put", &["after", "restart"]);
    let r = wait_for(Duration::from_secs(20), || {
        let c = client.clone();
        let sp = sp.clone();
        async move { c.submit(&sp, true).await.ok() }
    })
    .await;
    assert_eq!(r.code.as_deref(), Some("VALID"));
    assert!(r.block.unwrap() > before.height);

    let status = node.terminate();
    assert!(status.success(), "SIGTERM exit status {status:?}");
}
