//! Nothing acknowledged is lost: commits acknowledged by a node survive `kill -9`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MultiNet, NetOpts, NodeProcess, TestNet, wait_for};

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

/// A follower stores what the leader tells it (the Raft log with a flush; a commit index
/// without one; each block with a flush before its events). Killed under load, and
/// restarted alone (nobody to learn anything from), it still shows every transaction it
/// acknowledged, from its first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_under_load_and_restarted_alone_shows_all_it_acknowledged() {
    let net = Arc::new(MultiNet::new(4, "MAJORITY", 50, 500));
    let (configs, mut procs) = net.spawn_all();
    let first = net.client(procs[0].as_ref().unwrap().addr);
    let leader = wait_for(Duration::from_secs(60), || async {
        first.status().await.ok()?.leader
    })
    .await;
    let l = net.node_index(&leader).unwrap();
    let f = (l + 1) % net.manifest.nodes.len();
    let client = net.client(procs[f].as_ref().unwrap().addr);
    // The first submission waits for the peers to connect.
    let sp = net.proposal(f, "put", &["first", "x"]);
    let r = wait_for(Duration::from_secs(60), || {
        let (c, sp) = (client.clone(), sp.clone());
        async move { c.submit(&sp, true).await.ok() }
    })
    .await;

    // Load through the follower's gateway until it is killed.
    let acked = Arc::new(Mutex::new(vec![r]));
    let mut load = Vec::new();
    for w in 0..8 {
        let (c, net, acked) = (client.clone(), net.clone(), acked.clone());
        load.push(tokio::spawn(async move {
            for n in 0.. {
                let sp = net.proposal(f, "put", &[&format!("w{w}-{n}"), "v"]);
                match c.submit(&sp, true).await {
                    Ok(r) => {
                        assert_eq!(r.code.as_deref(), Some("VALID"));
                        acked.lock().unwrap().push(r);
                    }
                    Err(_) => return, // the node is gone
                }
            }
        }));
    }
    wait_for(Duration::from_secs(60), || async {
        (acked.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    procs[f].take().unwrap().kill9();
    let acked = acked.lock().unwrap().clone();
    for t in load {
        t.await.unwrap();
    }
    for p in procs.iter_mut().filter_map(Option::take) {
        assert!(p.terminate().success());
    }
    let top = acked.iter().filter_map(|r| r.block).max().unwrap();

    let node = NodeProcess::spawn(&configs[f]);
    let client = net.client(node.addr);
    let st = client.status().await.unwrap();
    assert!(
        st.height >= top,
        "height {} after restart, acknowledged up to block {top}",
        st.height
    );
    for r in &acked {
        let s = client.tx_status(&r.tx_id).await.unwrap();
        assert_eq!(
            (s.code.as_str(), Some(s.block)),
            ("VALID", r.block),
            "{}",
            r.tx_id
        );
    }
    assert!(node.terminate().success());
}
