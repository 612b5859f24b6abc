//! Many organisations: real nodes over real libp2p sockets on loopback, Raft across them,
//! endorsement by every org, leader loss, long downtime and strangers.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{MultiNet, NodeProcess, converge, wait_for};
use sphr_node::client::{Client, ClientError};
use tokio::sync::Mutex;

async fn wait_connected(clients: &[Client], peers: usize) {
    wait_for(Duration::from_secs(30), || async {
        for c in clients {
            let s = c.status().await.ok()?;
            if s.peers < peers || s.leader.is_none() {
                return None;
            }
        }
        Some(())
    })
    .await;
}

fn metric(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name_and_labels} ")))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_orgs_endorse_every_tx_and_all_tips_are_equal() {
    let net = MultiNet::new(4, "ALL", 100, 500);
    let mut nodes = Vec::new();
    for i in 0..4 {
        nodes.push(net.start(i).await);
    }
    let clients: Vec<Client> = nodes.iter().map(|n| net.client(n.api_addr())).collect();
    wait_connected(&clients, 3).await;

    // Submit through every node's gateway; each tx needs all four orgs' endorsements.
    let mut ids = Vec::new();
    for round in 0..5 {
        for (i, c) in clients.iter().enumerate() {
            let sp = net.proposal(i, "put", &[&format!("k{round}-{i}"), "v"]);
            let r = c.submit(&sp, true).await.unwrap();
            assert_eq!(r.code.as_deref(), Some("VALID"));
            ids.push((r.tx_id, r.block.unwrap()));
        }
    }
    let (height, _) = converge(&clients, ids.last().unwrap().1, Duration::from_secs(30)).await;
    assert!(height >= 1);
    for c in &clients {
        for (id, block) in &ids {
            let st = c.tx_status(id).await.unwrap();
            assert_eq!((st.code.as_str(), st.block), ("VALID", *block));
        }
        let b = c.block(ids[0].1).await.unwrap();
        let tx = b.txs.iter().find(|t| t.tx_id == ids[0].0).unwrap();
        assert_eq!(tx.endorsing_orgs, vec!["Org1", "Org2", "Org3", "Org4"]);
    }
    // Every node's committer found, for each of the 20 txs, the creator's signature (checked
    // when the node endorsed) and the node's own endorsement in its verified-signature cache.
    for c in &clients {
        let (_, m) = c
            .request(hyper::Method::GET, "/metrics", None, vec![])
            .await
            .unwrap();
        let m = String::from_utf8(m).unwrap();
        assert!(metric(&m, "sphr_sigcache_hits_total") >= 40, "{m}");
    }
    // Every node answers queries from its own state.
    for (i, c) in clients.iter().enumerate() {
        let q = c.query(&net.proposal(i, "get", &["k4-3"])).await.unwrap();
        assert_eq!(hex::decode(q.response_hex).unwrap(), b"v");
    }
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_share_endorse_requests_and_all_commit() {
    let net = Arc::new(MultiNet::new(2, "ALL", 100, 500));
    let a = net.start(0).await;
    let b = net.start(1).await;
    let clients = vec![net.client(a.api_addr()), net.client(b.api_addr())];
    wait_connected(&clients, 1).await;

    // 200 submissions at once through one gateway: each needs Org2's endorsement.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let net = net.clone();
        let c = clients[0].clone();
        tasks.spawn(async move {
            let sp = net.proposal(0, "put", &[&format!("batch-{i}"), "v"]);
            c.submit(&sp, true).await
        });
    }
    let mut last_block = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap().unwrap();
        assert_eq!(r.code.as_deref(), Some("VALID"));
        last_block = last_block.max(r.block.unwrap());
    }
    converge(&clients, last_block, Duration::from_secs(30)).await;
    let q = clients[1]
        .query(&net.proposal(1, "get", &["batch-199"]))
        .await
        .unwrap();
    assert_eq!(hex::decode(q.response_hex).unwrap(), b"v");

    // Every proposal went to Org2 once, in fewer requests than proposals.
    let (requests, proposals) = endorse_counters(&clients[0]).await;
    assert!(proposals >= 200, "{proposals} proposals sent");
    assert!(
        requests < proposals,
        "{requests} requests for {proposals} proposals"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A node's Prometheus text.
async fn metrics_text(c: &Client) -> String {
    let (_, m) = c
        .request(hyper::Method::GET, "/metrics", None, vec![])
        .await
        .unwrap();
    String::from_utf8(m).unwrap()
}

/// The endorse counters of a node's metrics: (requests, proposals).
async fn endorse_counters(c: &Client) -> (u64, u64) {
    let m = metrics_text(c).await;
    (
        metric(&m, "sphr_p2p_endorse_requests_total"),
        metric(&m, "sphr_p2p_endorse_proposals_sent_total"),
    )
}

async fn sigcache_misses(c: &Client) -> u64 {
    metric(&metrics_text(c).await, "sphr_sigcache_misses_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn steady_submissions_are_paced_into_shared_requests_and_sparse_ones_are_not() {
    let net = Arc::new(MultiNet::new(2, "ALL", 100, 500));
    // Org1's gateway sends Org2 at most one endorse request per 200 ms under steady load.
    let a = net
        .start_with(0, |cfg| cfg.p2p.endorse_batch_interval_ms = 200)
        .await;
    let b = net.start(1).await;
    let clients = vec![net.client(a.api_addr()), net.client(b.api_addr())];
    wait_connected(&clients, 1).await;

    // Sparse: submissions further apart than the interval each go at once, alone.
    let (r0, p0) = endorse_counters(&clients[0]).await;
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let sp = net.proposal(0, "put", &[&format!("sparse-{i}"), "v"]);
        let r = clients[0].submit(&sp, true).await.unwrap();
        assert_eq!(r.code.as_deref(), Some("VALID"));
    }
    let (r1, p1) = endorse_counters(&clients[0]).await;
    assert_eq!(
        (r1 - r0, p1 - p0),
        (3, 3),
        "one request per sparse submission"
    );

    // Steady: 40 submissions 10 ms apart (about 400 ms) share a handful of requests, and
    // every one commits.
    let misses_before = sigcache_misses(&clients[1]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let net = net.clone();
        let c = clients[0].clone();
        tasks.spawn(async move {
            let sp = net.proposal(0, "put", &[&format!("steady-{i}"), "v"]);
            c.submit(&sp, true).await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut last_block = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap().unwrap();
        assert_eq!(r.code.as_deref(), Some("VALID"));
        last_block = last_block.max(r.block.unwrap());
    }
    let (r2, p2) = endorse_counters(&clients[0]).await;
    assert_eq!(p2 - p1, 40, "each steady proposal went to Org2 once");
    assert!(
        r2 - r1 <= 10,
        "{} requests carried the 40 steady proposals; pacing at 200 ms allows about 3",
        r2 - r1
    );
    converge(&clients, last_block, Duration::from_secs(30)).await;
    let q = clients[1]
        .query(&net.proposal(1, "get", &["steady-39"]))
        .await
        .unwrap();
    assert_eq!(hex::decode(q.response_hex).unwrap(), b"v");
    // Org2 checked each creator's signature once (when it endorsed) and Org1's endorsement
    // signatures at commit: Org1 signed its own endorsements in paced batches too, so far
    // fewer than one per transaction (40 + 40 if each were signed alone).
    let misses = sigcache_misses(&clients[1]).await - misses_before;
    assert!(
        (40..60).contains(&misses),
        "Org2 checked {misses} signatures for 40 transactions"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_under_load_loses_nothing_and_it_catches_up() {
    // A majority of orgs endorses, so txs go on with one node down.
    let net = Arc::new(MultiNet::new(4, "MAJORITY", 50, 500));
    let (configs, mut procs) = net.spawn_all();
    let clients: Vec<Client> = procs
        .iter()
        .map(|p| {
            // Longer than the node's 30 s commit timeout, so a stranded tx shows as its 504.
            net.client(p.as_ref().unwrap().addr)
                .with_timeout(Duration::from_secs(40))
        })
        .collect();
    wait_connected(&clients, 3).await;
    let status = clients[0].status().await.unwrap();
    let leader_name = status.leader.unwrap();
    let leader = net.node_index(&leader_name).unwrap();

    // Load from the three other nodes' gateways, all the way through the kill.
    let acked = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    // Submissions handed to ordering that never committed (504 commit_timeout): a follower
    // forwards txs to the leader best effort, so the gateway must hand them to the orderer
    // again when the leader dies with them; none may be left behind.
    let stranded = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (i, c) in clients.iter().enumerate().filter(|(i, _)| *i != leader) {
        for w in 0..2 {
            let (c, net, acked, stranded, stop) = (
                c.clone(),
                net.clone(),
                acked.clone(),
                stranded.clone(),
                stop.clone(),
            );
            load.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let sp = net.proposal(i, "put", &[&format!("n{i}-w{w}-{n}"), "x"]);
                    match c.submit(&sp, true).await {
                        Ok(r) if r.code.as_deref() == Some("VALID") => {
                            acked.lock().await.push((r.tx_id, r.block.unwrap()));
                        }
                        Err(ClientError::Api {
                            status: 504,
                            message,
                            ..
                        }) => {
                            stranded.lock().await.push(message);
                        }
                        _ => {}
                    }
                }
            }));
        }
    }
    wait_for(Duration::from_secs(60), || async {
        (acked.lock().await.len() >= 40).then_some(())
    })
    .await;
    procs[leader].take().unwrap().kill9();
    let at_kill = acked.lock().await.len();

    // A new leader is elected and txs keep committing.
    let survivors: Vec<Client> = clients
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, c)| c.clone())
        .collect();
    wait_for(Duration::from_secs(60), || async {
        let s = survivors[0].status().await.ok()?;
        (s.leader.is_some() && s.leader.as_deref() != Some(leader_name.as_str())).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(60), || async {
        (acked.lock().await.len() >= at_kill + 40).then_some(())
    })
    .await;

    // The killed node restarts and catches up while load goes on.
    let restarted = NodeProcess::spawn(&configs[leader]);
    let mut all = survivors.clone();
    all.insert(leader, net.client(restarted.addr));
    procs[leader] = Some(restarted);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.unwrap();
    }
    let stranded = stranded.lock().await.clone();
    assert!(
        stranded.is_empty(),
        "ordered but never committed: {stranded:?}"
    );
    let acked = acked.lock().await.clone();
    let max_block = acked.iter().map(|(_, b)| *b).max().unwrap();
    converge(&all, max_block, Duration::from_secs(60)).await;
    for c in &all {
        for (id, block) in &acked {
            let st = c.tx_status(id).await.unwrap();
            assert_eq!((st.code.as_str(), st.block), ("VALID", *block), "{id}");
        }
    }
    for p in procs.into_iter().flatten() {
        assert!(p.terminate().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_down_for_over_a_thousand_blocks_catches_up_past_a_snapshot() {
    // One tx per block; snapshots every 50 entries, so the log the node missed is compacted.
    let net = Arc::new(MultiNet::new(3, "ANY", 1, 50));
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Some(net.start(i).await));
    }
    let clients: Vec<Client> = nodes
        .iter()
        .map(|n| net.client(n.as_ref().unwrap().api_addr()))
        .collect();
    wait_connected(&clients, 2).await;
    // Take down a node that is not the leader.
    let leader_name = clients[0].status().await.unwrap().leader.unwrap();
    let down = (0..3)
        .find(|i| {
            let n = &net.manifest.nodes[*i];
            format!("{}@{}", n.name, n.org) != leader_name
        })
        .unwrap();
    let up = (0..3).find(|i| *i != down).unwrap();
    nodes[down].take().unwrap().shutdown().await;
    let height_at_stop = clients[up].status().await.unwrap().height;

    let mut tasks = Vec::new();
    for w in 0..16 {
        let (c, net) = (clients[up].clone(), net.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..66 {
                let sp = net.proposal(up, "put", &[&format!("w{w}-{n}"), "v"]);
                let r = c.submit(&sp, true).await.unwrap();
                assert_eq!(r.code.as_deref(), Some("VALID"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let target = clients[up].status().await.unwrap().height;
    assert!(
        target >= height_at_stop + 1000,
        "made {} blocks",
        target - height_at_stop
    );
    let leader_snapshot = nodes
        .iter()
        .flatten()
        .filter_map(|n| n.raft_status())
        .map(|s| s.snapshot_index)
        .max()
        .unwrap();
    assert!(
        leader_snapshot > height_at_stop + 50,
        "the log was compacted"
    );

    let back = net.start(down).await;
    let mut all = clients.clone();
    all[down] = net.client(back.api_addr());
    let (h, _) = converge(&all, target, Duration::from_secs(120)).await;
    assert!(h >= target);
    let st = back.raft_status().unwrap();
    assert!(
        st.snapshots_restored_total >= 1,
        "caught up through a snapshot: {st:?}"
    );
    back.shutdown().await;
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strangers_are_refused_and_bad_peer_messages_are_dropped_and_counted() {
    let net = MultiNet::new(2, "ANY", 100, 500);
    let node0 = net.start(0).await;
    let c0 = net.client(node0.api_addr());
    let p2p0 = node0.p2p_addr().unwrap();
    let key0 = hex::decode(&net.manifest.nodes[0].public_key).unwrap();
    let key0: [u8; 32] = key0.try_into().unwrap();

    // A stranger: a valid key that genesis does not list.
    let stranger = sphr_crypto::keys::SecretKey::generate().unwrap();
    let (sh, _rx) = sphr_p2p::P2p::start(sphr_p2p::P2pConfig {
        key_seed: stranger.to_bytes(),
        listen: "127.0.0.1:0".into(),
        network_id: net.network_id().0,
        peers: vec![sphr_p2p::PeerInfo {
            name: "node0".into(),
            public_key: key0,
            addr: p2p0.to_string(),
        }],
        limits: Default::default(),
    })
    .await
    .unwrap();
    let metrics = || async {
        let (_, m) = c0
            .request(hyper::Method::GET, "/metrics", None, vec![])
            .await
            .unwrap();
        String::from_utf8(m).unwrap()
    };
    wait_for(Duration::from_secs(30), || async {
        (metric(&metrics().await, "sphr_p2p_peers_refused_total") >= 1).then_some(())
    })
    .await;
    assert!(!sh.is_connected(&key0));
    assert!(sh.send_raft(key0, vec![1, 2, 3]).is_err());
    sh.shutdown().await;

    // A genesis member (node 1's key) that sends garbage, a Raft message claiming another
    // sender, and forwarded junk: dropped and counted; node 0 keeps committing.
    let id1 = sphr_node::identity::Identity::load(&net.net.join(&net.manifest.nodes[1].identity))
        .unwrap();
    let (h1, _rx1) = sphr_p2p::P2p::start(sphr_p2p::P2pConfig {
        key_seed: id1.key.to_bytes(),
        listen: net.manifest.nodes[1].p2p_addr.clone(),
        network_id: net.network_id().0,
        peers: vec![sphr_p2p::PeerInfo {
            name: "node0".into(),
            public_key: key0,
            addr: p2p0.to_string(),
        }],
        limits: Default::default(),
    })
    .await
    .unwrap();
    wait_for(Duration::from_secs(30), || async {
        h1.is_connected(&key0).then_some(())
    })
    .await;
    h1.send_raft(key0, vec![0xff, 0x00, 0x13]).unwrap();
    // Raft id 1 is node 0's own: not the sender's.
    let m = sphr_orderer::RaftMessage {
        from: 1,
        to: 1,
        ..Default::default()
    };
    let bytes = sphr_orderer::encode_message(&m).unwrap();
    let spoof = sphr_node::p2p::PeerMsg::Raft(serde_bytes::ByteBuf::from(bytes));
    h1.send_raft(key0, sphr_types::encode(&spoof).unwrap())
        .unwrap();
    let junk = sphr_node::p2p::PeerMsg::Raft(serde_bytes::ByteBuf::from(vec![0xde, 0xad]));
    h1.send_raft(key0, sphr_types::encode(&junk).unwrap())
        .unwrap();
    let range = h1
        .request(
            key0,
            sphr_p2p::Kind::Blocks,
            sphr_types::encode(&sphr_node::p2p::BlockRange { from: 10, to: 5 }).unwrap(),
            Duration::from_secs(5),
        )
        .await;
    assert!(range.is_err(), "an absurd range is refused");
    wait_for(Duration::from_secs(30), || async {
        let m = metrics().await;
        let ok = metric(
            &m,
            "sphr_p2p_node_dropped_total{reason=\"undecodable_peer_msg\"}",
        ) >= 1
            && metric(
                &m,
                "sphr_p2p_node_dropped_total{reason=\"raft_sender_mismatch\"}",
            ) >= 1
            && metric(
                &m,
                "sphr_p2p_node_dropped_total{reason=\"undecodable_raft\"}",
            ) >= 1
            && metric(
                &m,
                "sphr_p2p_node_dropped_total{reason=\"absurd_block_range\"}",
            ) >= 1;
        ok.then_some(())
    })
    .await;
    h1.shutdown().await;

    // Node 0 (with node 1 down, a 2-consenter Raft cannot commit) is alive and answering.
    let s = c0.status().await.unwrap();
    assert_eq!(s.network_id, net.manifest.network_id);
    node0.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_is_not_a_consenter_follows_by_gossip_and_range_fetch() {
    // Org1..Org3 order; Org4's node only follows. Any org may endorse.
    let net = MultiNet::with_observers(4, 1, "ANY", 100, 500);
    let mut nodes = Vec::new();
    for i in 0..4 {
        nodes.push(Some(net.start(i).await));
    }
    let clients: Vec<Client> = nodes
        .iter()
        .map(|n| net.client(n.as_ref().unwrap().api_addr()))
        .collect();
    wait_connected(&clients[..3], 3).await;
    assert!(nodes[3].as_ref().unwrap().raft_status().is_none());

    // Committed at a consenter: the follower gets it.
    let r = clients[0]
        .submit(&net.proposal(0, "put", &["a", "1"]), true)
        .await
        .unwrap();
    converge(&clients, r.block.unwrap(), Duration::from_secs(30)).await;
    // Submitted at the follower: forwarded to a consenter, and the follower's client is told
    // when the block reaches the follower.
    let r = clients[3]
        .submit(&net.proposal(3, "put", &["b", "2"]), true)
        .await
        .unwrap();
    assert_eq!(r.code.as_deref(), Some("VALID"));
    let q = clients[3]
        .query(&net.proposal(3, "get", &["b"]))
        .await
        .unwrap();
    assert_eq!(hex::decode(q.response_hex).unwrap(), b"2");

    // Down while 30 blocks commit, then back: it fills the gap by range fetch.
    nodes[3].take().unwrap().shutdown().await;
    let mut last = 0;
    for k in 0..30 {
        let r = clients[k % 3]
            .submit(&net.proposal(k % 3, "put", &[&format!("g{k}"), "x"]), true)
            .await
            .unwrap();
        last = r.block.unwrap();
    }
    let back = net.start(3).await;
    let mut all = clients[..3].to_vec();
    all.push(net.client(back.api_addr()));
    converge(&all, last, Duration::from_secs(60)).await;
    back.shutdown().await;
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}
