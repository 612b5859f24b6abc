//! Operating a node: metrics on the operations port, health that names the failing component,
//! graceful SIGTERM under load, bad configs refused by key, the systemd notify protocol and the
//! runtime log filter. Nodes run in-process or as real `sphr-node run` processes.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/prom.rs"]
mod prom;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{MultiNet, NetOpts, NodeProcess, TestNet, wait_for};
use sphr_node::client::make_proposal;
use sphr_node::health::HealthReport;
use sphr_types::Transaction;

async fn scrape(ops: SocketAddr) -> prom::Scrape {
    let (status, body) = prom::http(ops, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    prom::parse(&body)
}

async fn health(ops: SocketAddr) -> (u16, HealthReport) {
    let (status, body) = prom::http(ops, "GET", "/healthz", "").await;
    (status, serde_json::from_str(&body).unwrap())
}

/// Waits until `/healthz` on `ops` answers `status`; returns the report.
async fn wait_health(ops: SocketAddr, status: u16) -> HealthReport {
    wait_for(Duration::from_secs(30), || async {
        let (s, r) = health(ops).await;
        (s == status).then_some(r)
    })
    .await
}

fn reason(r: &HealthReport, component: &str) -> String {
    r.checks
        .iter()
        .find(|c| c.component == component)
        .and_then(|c| c.reason.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_the_ops_port_move_by_exactly_what_was_committed() {
    let net = TestNet::new(NetOpts::default());
    let node = net.start().await;
    let ops = node.ops_addr().unwrap();
    let client = net.client(node.api_addr());
    let before = scrape(ops).await;
    assert_eq!(before.get("sphr_ledger_height", &[]), 0.0);
    // The node runs on this test's runtime (two workers).
    assert_eq!(before.get("sphr_runtime_worker_threads", &[]), 2.0);

    // 10 valid transactions: 2 one after the other, 8 at once (sharing blocks).
    let mut blocks = BTreeSet::new();
    for i in 0..2 {
        let (_, sp) = net.proposal("alice", "put", &[&format!("seq{i}"), "v"]);
        let r = client.submit(&sp, true).await.unwrap();
        assert_eq!(r.code.as_deref(), Some("VALID"));
        blocks.insert(r.block.unwrap());
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (_, sp) = net.proposal("alice", "put", &[&format!("par{i}"), "v"]);
        let c = client.clone();
        tasks.push(tokio::spawn(async move { c.submit(&sp, true).await }));
    }
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.code.as_deref(), Some("VALID"));
        blocks.insert(r.block.unwrap());
    }
    // One transaction without endorsements: ordered, committed as ENDORSEMENT_POLICY_FAILURE.
    let (_, sp) = net.proposal("alice", "put", &["noendorsement", "v"]);
    let pr = client.endorse(&sp).await.unwrap();
    let tx = Transaction {
        signed_proposal: sp,
        response: pr.response,
        endorsements: vec![],
    };
    let r = client.broadcast(&tx, true).await.unwrap();
    assert_eq!(r.code.as_deref(), Some("ENDORSEMENT_POLICY_FAILURE"));
    blocks.insert(r.block.unwrap());
    // One malformed proposal: refused at the API.
    let (status, _) = client
        .request(
            hyper::Method::POST,
            "/v1/transactions",
            Some("application/cbor"),
            vec![0xff, 0x00],
        )
        .await
        .unwrap();
    assert_eq!(status, 400);

    let after = scrape(ops).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);
    let nblocks = blocks.len() as f64;
    assert_eq!(
        delta("sphr_ledger_txs_committed_total", &[("code", "VALID")]),
        10.0
    );
    assert_eq!(
        delta(
            "sphr_ledger_txs_committed_total",
            &[("code", "ENDORSEMENT_POLICY_FAILURE")]
        ),
        1.0
    );
    assert_eq!(delta("sphr_ledger_blocks_committed_total", &[]), nblocks);
    assert_eq!(
        after.get("sphr_ledger_height", &[]),
        *blocks.last().unwrap() as f64
    );
    assert_eq!(
        delta("sphr_ledger_block_validation_duration_seconds_count", &[]),
        nblocks
    );
    assert_eq!(
        delta("sphr_ledger_block_commit_duration_seconds_count", &[]),
        nblocks
    );
    assert!(after.get("sphr_ledger_block_commit_duration_seconds_sum", &[]) > 0.0);
    let route = |r: &'static str, s: &'static str| [("route", r), ("status", s)];
    assert_eq!(
        delta("sphr_api_requests_total", &route("/v1/transactions", "200")),
        10.0
    );
    assert_eq!(
        delta("sphr_api_requests_total", &route("/v1/transactions", "400")),
        1.0
    );
    assert_eq!(
        delta("sphr_api_requests_total", &route("/v1/endorse", "200")),
        1.0
    );
    assert_eq!(
        delta("sphr_api_requests_total", &route("/v1/broadcast", "200")),
        1.0
    );
    assert_eq!(
        delta(
            "sphr_api_request_duration_seconds_count",
            &[("route", "/v1/transactions")]
        ),
        11.0
    );
    assert_eq!(
        delta(
            "sphr_api_rejections_total",
            &[("kind", "malformed_proposal")]
        ),
        1.0
    );
    // 10 submissions and 1 endorse-only call were endorsed here.
    assert_eq!(
        delta(
            "sphr_endorser_endorsement_duration_seconds_count",
            &[("contract", "kv"), ("result", "ok")]
        ),
        11.0
    );
    assert_eq!(
        delta("sphr_gateway_submit_duration_seconds_count", &[]),
        10.0
    );
    for phase in ["endorse", "order"] {
        assert_eq!(
            delta(
                "sphr_gateway_phase_duration_seconds_count",
                &[("phase", phase)]
            ),
            10.0,
            "phase {phase}"
        );
    }
    assert_eq!(after.get("sphr_gateway_waiting_submissions", &[]), 0.0);
    // Raft, sampled when scraped: a single consenter leads.
    assert_eq!(after.get("sphr_raft_is_leader", &[]), 1.0);
    assert!(after.get("sphr_raft_term", &[]) >= 1.0);
    assert!(after.get("sphr_raft_leader_changes_total", &[]) >= 1.0);
    let committed = after.get("sphr_raft_committed_index", &[]);
    assert!(committed >= nblocks, "committed index {committed}");
    assert!(after.get("sphr_raft_applied_index", &[]) <= committed);
    for c in ["storage", "raft", "p2p"] {
        assert_eq!(
            after.get("sphr_node_healthy", &[("component", c)]),
            1.0,
            "{c}"
        );
    }
    assert_eq!(after.get("sphr_vault_bundles_served_total", &[]), 0.0);
    assert_eq!(after.get("sphr_p2p_peers_connected", &[]), 0.0);

    // Every family has help and a type, follows the naming rules and is in docs/metrics.md.
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"))
            .unwrap();
    for (name, f) in &after.families {
        assert!(name.starts_with("sphr_"), "{name}");
        assert!(!f.help.is_empty(), "{name} has no HELP");
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} not in docs/metrics.md"
        );
        for s in &f.samples {
            for l in s.labels.keys() {
                assert!(
                    [
                        "route",
                        "status",
                        "kind",
                        "code",
                        "contract",
                        "result",
                        // endorse, order: the gateway's two phases.
                        "phase",
                        "reason",
                        "topic",
                        "component",
                        "version",
                        // certificate expiry: node, tls or peer:<name@org>, never a patient
                        "subject",
                        "le"
                    ]
                    .contains(&l.as_str()),
                    "{name} has label {l}"
                );
            }
        }
    }

    // The client API serves the same text (its /metrics is in openapi.json).
    let (status, body) = client
        .request(hyper::Method::GET, "/metrics", None, vec![])
        .await
        .unwrap();
    assert_eq!(status, 200);
    let api = prom::parse(&String::from_utf8(body).unwrap());
    assert_eq!(
        api.get("sphr_ledger_txs_committed_total", &[("code", "VALID")]),
        after.get("sphr_ledger_txs_committed_total", &[("code", "VALID")])
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_storage_when_the_database_file_is_removed() {
    let net = TestNet::new(NetOpts::default());
    let node = net.start().await;
    let ops = node.ops_addr().unwrap();
    let ok = wait_health(ops, 200).await;
    assert_eq!(ok.status, "ok");
    assert!(ok.failing.is_empty());

    // An operator's `rm -rf /var/lib/sphr` while the node runs: sled goes on writing to the
    // unlinked file, and everything would be gone at the next restart.
    std::fs::remove_file(net.dir.path().join("data").join("db")).unwrap();
    let (status, r) = health(ops).await;
    assert_eq!(status, 503);
    assert_eq!(r.status, "unhealthy");
    assert_eq!(r.failing, vec!["storage".to_string()]);
    assert!(reason(&r, "storage").contains("removed"), "{r:?}");
    // The client API's /healthz says the same.
    let client = net.client(node.api_addr());
    let (status, body) = client
        .request(hyper::Method::GET, "/healthz", None, vec![])
        .await
        .unwrap();
    assert_eq!(status, 503);
    let api: HealthReport = serde_json::from_slice(&body).unwrap();
    assert_eq!(api.failing, vec!["storage".to_string()]);
    let m = scrape(ops).await;
    assert_eq!(m.get("sphr_node_healthy", &[("component", "storage")]), 0.0);
    assert_eq!(m.get("sphr_node_healthy", &[("component", "raft")]), 1.0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_names_raft_when_the_consenters_lose_their_majority_and_recovers() {
    let net = MultiNet::new(2, "ANY", 100, 500);
    let node0 = net.start(0).await;
    let node1 = net.start(1).await;
    let ops0 = node0.ops_addr().unwrap();
    wait_health(ops0, 200).await;
    wait_health(node1.ops_addr().unwrap(), 200).await;

    // One of two consenters stops: no majority, no leader (check_quorum makes a leader step
    // down), nothing can be ordered.
    node1.shutdown().await;
    let r = wait_for(Duration::from_secs(30), || async {
        let (s, r) = health(ops0).await;
        (s == 503 && r.failing.contains(&"raft".to_string())).then_some(r)
    })
    .await;
    assert!(r.failing.contains(&"raft".to_string()), "{r:?}");
    assert!(!r.failing.contains(&"storage".to_string()), "{r:?}");
    assert!(reason(&r, "raft").contains("no leader"), "{r:?}");
    let m = scrape(ops0).await;
    assert_eq!(m.get("sphr_node_healthy", &[("component", "raft")]), 0.0);
    assert_eq!(m.get("sphr_raft_is_leader", &[]), 0.0);

    // It comes back: healthy again.
    let node1 = net.start(1).await;
    let r = wait_health(ops0, 200).await;
    assert!(r.is_healthy());
    node1.shutdown().await;
    node0.shutdown().await;
}

/// The disk fills up: the file size limit (RLIMIT_FSIZE, `ulimit -f`) makes sled's writes
/// fail with EFBIG as a full disk makes them fail with ENOSPC. SIGXFSZ is ignored so that the
/// write fails instead of killing the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_storage_and_raft_when_the_disk_is_full() {
    let net = TestNet::new(NetOpts::default());
    let config = net.write_config("data");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -f 512 && trap '' XFSZ && exec \"$0\" run --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_sphr-node"))
        .arg(&config);
    let node = NodeProcess::from_command(cmd);
    let ops = node.ops.unwrap();
    let client = net.client(node.addr);
    wait_health(ops, 200).await;
    // One acknowledged commit before the disk fills, for the restart below.
    let (_, sp) = net.proposal("alice", "put", &["before", "full"]);
    let first = client.submit(&sp, true).await.unwrap();
    assert_eq!(first.code.as_deref(), Some("VALID"));

    let value = "x".repeat(4000);
    let mut report = None;
    for i in 0..400 {
        let (_, sp) = net.proposal("alice", "put", &[&format!("big{i}"), &value]);
        let _ = client.submit(&sp, false).await;
        if i % 4 == 3 {
            let (status, r) = health(ops).await;
            if status == 503 && r.failing.len() >= 2 {
                report = Some(r);
                break;
            }
        }
    }
    let r = report.expect("the node never noticed the full disk");
    assert!(r.failing.contains(&"storage".to_string()), "{r:?}");
    assert!(r.failing.contains(&"raft".to_string()), "{r:?}");
    // The reason is the storage error as sled or a segment file reports it (EFBIG surfaces
    // as "File too large" from a write, or as a failed flush or commit, depending on which
    // write hit the limit: the database, a block file or a Raft entry file).
    assert!(!reason(&r, "storage").is_empty(), "{r:?}");
    node.terminate();

    // With room on the disk again, the node restarts on what it had committed.
    let node = NodeProcess::spawn(&config);
    let client = net.client(node.addr);
    assert!(client.status().await.unwrap().height >= first.block.unwrap());
    assert_eq!(client.tx_status(&first.tx_id).await.unwrap().code, "VALID");
    wait_health(node.ops.unwrap(), 200).await;
    let status = node.terminate();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_exits_0_and_keeps_every_acknowledged_tx_on_one_worker_thread() {
    let net = TestNet::new(NetOpts {
        max_tx: 20,
        batch_timeout_ms: 10,
        ..NetOpts::default()
    });
    let config = net.write_config("data");
    // One worker thread, as testnet/up.sh gives each of four nodes on a 2-CPU machine: the
    // node must serve, commit and drain on SIGTERM with it.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("[node]\n"), "{text}");
    std::fs::write(
        &config,
        text.replacen("[node]\n", "[node]\nworker_threads = 1\n", 1),
    )
    .unwrap();
    let mut node = NodeProcess::spawn(&config);
    let client = net.client(node.addr);
    let workers = scrape(node.ops.unwrap()).await;
    assert_eq!(workers.get("sphr_runtime_worker_threads", &[]), 1.0);

    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let signalled = Arc::new(AtomicBool::new(false));
    let acked_after_signal = Arc::new(Mutex::new(0usize));
    let mut submitters = Vec::new();
    for w in 0..6 {
        let (client, acked, signalled, after) = (
            client.clone(),
            acked.clone(),
            signalled.clone(),
            acked_after_signal.clone(),
        );
        let (user, network_id) = (net.user("alice"), net.network_id());
        submitters.push(tokio::spawn(async move {
            for i in 0..2000 {
                let args = [format!("w{w}-{i}"), "v".to_string()];
                let (_, sp) = make_proposal(&user, network_id, "kv", "put", &args).unwrap();
                match client.submit(&sp, true).await {
                    Ok(r) => {
                        assert_eq!(r.code.as_deref(), Some("VALID"));
                        acked.lock().unwrap().push((r.tx_id, r.block.unwrap()));
                        if signalled.load(Ordering::SeqCst) {
                            *after.lock().unwrap() += 1;
                        }
                    }
                    // Refused (503 stopping) or the node is gone: not acknowledged.
                    Err(e) => {
                        assert!(
                            signalled.load(Ordering::SeqCst),
                            "error before SIGTERM: {e}"
                        );
                        return;
                    }
                }
            }
        }));
    }
    wait_for(Duration::from_secs(60), || async {
        (acked.lock().unwrap().len() >= 60).then_some(())
    })
    .await;
    signalled.store(true, Ordering::SeqCst);
    let at_signal = acked.lock().unwrap().len();
    let t0 = Instant::now();
    node.signal_term();
    let status = tokio::task::spawn_blocking(move || node.child.wait().unwrap())
        .await
        .unwrap();
    let stop_time = t0.elapsed();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    for s in submitters {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "SIGTERM under load: {} acknowledged ({at_signal} before the signal, {} after), \
         exit 0 in {stop_time:?}",
        acked.len(),
        acked_after_signal.lock().unwrap()
    );

    let node = NodeProcess::spawn(&config);
    let client = net.client(node.addr);
    let height = client.status().await.unwrap().height;
    for (tx_id, block) in &acked {
        let st = client.tx_status(tx_id).await.unwrap();
        assert_eq!((st.code.as_str(), st.block), ("VALID", *block), "{tx_id}");
        assert!(*block <= height);
    }
    let status = node.terminate();
    assert!(status.success());
}

/// Runs `sphr-node <args>` to its end (at most 30 s); returns (exit code, stdout, stderr).
fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sphr-node"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("sphr-node {args:?} did not exit: it started with a bad config");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configs_are_refused_by_key_and_the_node_does_not_start() {
    let net = TestNet::new(NetOpts::default());
    let good = net.config_text("data");
    let data = net.dir.path().join("data");
    let missing_key = net.dir.path().join("nowhere").join("tls.key");
    let n = &net.manifest.nodes[0];
    let real_key = net.net.join(&n.tls_key).display().to_string();
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "unknown key",
            good.replace(
                "commit_timeout_ms = 20000",
                "commit_timeout_ms = 20000\nlisten_adress = \"127.0.0.1:1\"",
            ),
            vec![],
            "api.listen_adress",
        ),
        (
            "wrong type",
            good.replace("commit_timeout_ms = 20000", "commit_timeout_ms = \"20s\""),
            vec![],
            "api.commit_timeout_ms",
        ),
        (
            "missing file",
            good.replace(&real_key, &missing_key.display().to_string()),
            vec![],
            "api.tls_key",
        ),
        (
            "impossible value",
            format!("{good}\n[orderer]\nqueue_capacity = 0\n"),
            vec![],
            "orderer.queue_capacity",
        ),
        (
            "impossible value from the environment",
            good.clone(),
            vec![("SPHR_OPS_LISTEN", "everywhere")],
            "ops.listen",
        ),
    ];
    for (what, text, env, key) in cases {
        let path = net.dir.path().join("bad.toml");
        std::fs::write(&path, &text).unwrap();
        let p = path.to_str().unwrap();
        let (code, stdout, stderr) = run_to_end(&["run", "--config", p], &env);
        assert_eq!(code, Some(78), "{what}: exit code; stderr: {stderr}");
        assert!(stderr.contains(key), "{what}: {stderr:?} should name {key}");
        assert!(!stdout.contains("serving"), "{what}: the node served");
        assert!(!data.exists(), "{what}: the node opened its data dir");
        for (var, _) in &env {
            assert!(stderr.contains(var), "{what}: {stderr:?} should name {var}");
        }
        let (code, _, check) = run_to_end(&["config", "check", p], &env);
        assert_eq!(code, Some(78), "{what}: config check exit code");
        assert!(check.contains(key), "{what}: config check said {check:?}");
    }
    // A config file that is not there.
    let nowhere = net.dir.path().join("absent.toml");
    let (code, _, stderr) = run_to_end(&["run", "--config", nowhere.to_str().unwrap()], &[]);
    assert_eq!(code, Some(78));
    assert!(stderr.contains("absent.toml"), "{stderr}");
    // The good config checks out.
    let path = net.write_config("data");
    let (code, stdout, _) = run_to_end(&["config", "check", path.to_str().unwrap()], &[]);
    assert_eq!((code, stdout.contains(": ok")), (Some(0), true));
    // Genesis: `block.max_tx = 0` is refused by name and no network is written.
    let spec = net.dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        "network = \"x\"\n[block]\nmax_tx = 0\n[[orgs]]\nname = \"A\"\n[[orgs.nodes]]\n\
         name = \"n\"\napi_port = 1\np2p_port = 2\nops_port = 3\n[[contracts]]\nname = \"kv\"\n\
         policy = \"ANY\"\n",
    )
    .unwrap();
    let out = net.dir.path().join("badnet");
    let (code, _, stderr) = run_to_end(
        &[
            "genesis",
            "--spec",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_ne!(code, Some(0));
    assert!(stderr.contains("block.max_tx"), "{stderr}");
    assert!(!out.join("genesis.block").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_ready_and_stopping_and_the_log_filter_changes_at_runtime() {
    let net = TestNet::new(NetOpts::default());
    let config = net.write_config("data");
    let sock_path = net.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut node = NodeProcess::spawn_with(&config, |cmd| {
        cmd.env("NOTIFY_SOCKET", &sock_path)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped());
    });
    // READY=1 once serving (the harness saw the "serving" line already).
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap();
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");

    let log = Arc::new(Mutex::new(String::new()));
    let stderr = node.child.stderr.take().unwrap();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let ops = node.ops.unwrap();
    let client = net.client(node.addr);

    let (status, body) = prom::http(ops, "GET", "/version", "").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["node"], "node0@OrgA");
    assert_eq!(v["network_id"], net.manifest.network_id.as_str());

    // The config says "warn": a commit logs nothing at info.
    let (status, body) = prom::http(ops, "GET", "/logspec", "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"spec":"warn"}"#));
    let (_, sp) = net.proposal("alice", "put", &["a", "diagnosis-of-patient-17"]);
    client.submit(&sp, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!log.lock().unwrap().contains("committed block"));

    // Switch to info at runtime: the next commit is logged.
    let (status, body) = prom::http(ops, "PUT", "/logspec", r#"{"spec":"info"}"#).await;
    assert_eq!((status, body.as_str()), (200, r#"{"spec":"info"}"#));
    let (_, sp) = net.proposal("alice", "put", &["b", "allergy-of-patient-17"]);
    client.submit(&sp, true).await.unwrap();
    wait_for(Duration::from_secs(10), || async {
        log.lock()
            .unwrap()
            .contains("committed block")
            .then_some(())
    })
    .await;
    // A bad filter is refused and changes nothing.
    let (status, body) = prom::http(ops, "PUT", "/logspec", r#"{"spec":"info,x=loud"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_filter"), "{body}");
    let (_, body) = prom::http(ops, "GET", "/logspec", "").await;
    assert_eq!(body, r#"{"spec":"info"}"#);
    let (status, _) = prom::http(ops, "GET", "/nothing", "").await;
    assert_eq!(status, 404);

    // SIGTERM: STOPPING=1, then exit 0.
    node.signal_term();
    let n = sock.recv(&mut buf).unwrap();
    let stopping = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let status = node.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // The shutdown was logged; the values written (patient data) never were.
    let log = log.lock().unwrap();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("patient-17"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_endpoint_serves_https_when_given_a_certificate() {
    let net = TestNet::new(NetOpts::default());
    let n = &net.manifest.nodes[0];
    let text = net.config_text("data").replace(
        "[ops]\nlisten = \"127.0.0.1:0\"\n",
        &format!(
            "[ops]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            net.net.join(&n.tls_cert).display(),
            net.net.join(&n.tls_key).display()
        ),
    );
    let path = net.dir.path().join("tls-ops.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = sphr_node::config::NodeConfig::load(&path).unwrap();
    let node = sphr_node::service::start(&cfg).await.unwrap();
    let ops = node.ops_addr().unwrap();
    assert!(node.ops_url().unwrap().starts_with("https://"));
    let client = net.client(ops);
    let (status, body) = wait_for(Duration::from_secs(30), || async {
        let r = client
            .request(hyper::Method::GET, "/healthz", None, vec![])
            .await
            .ok()?;
        (r.0 == 200).then_some(r)
    })
    .await;
    assert_eq!(status, 200);
    let r: HealthReport = serde_json::from_slice(&body).unwrap();
    assert!(r.is_healthy());
    node.shutdown().await;
}
