//! sphr-pte against a real one-node network in this process (sled on disk, raft-rs, HTTPS on
//! loopback): every mode, both flows and a query run, asserting on counts only (never timing).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use sphr_bench::pte::config::{Flow, TransMode, TransType, WorkloadKind};
use sphr_bench::pte::{Progress, PteConfig, Report, run};
use sphr_contracts::healthcare as hc;
use sphr_node::client::{Client, make_proposal};
use sphr_node::config::NodeConfig;
use sphr_node::genesis::{GenesisSpec, NetworkManifest, generate};
use sphr_node::identity::Identity;

struct Net {
    _dir: tempfile::TempDir,
    net: PathBuf,
    node_cfg: PathBuf,
}

/// One org (OrgA), one consenter node, a `loadgen` client user, kv under ANY.
fn make_net() -> Net {
    make_net_from(&spec("pte-test", 0, "", "kv"))
}

/// One org (OrgA), one node, a patient, a doctor and a `loadgen` user, healthcare under ANY.
fn make_healthcare_net() -> Net {
    let people = "[[orgs.users]]\nname = \"patient1\"\nrole = \"patient\"\n\
                  [[orgs.users]]\nname = \"doctor1\"\nrole = \"doctor\"\n";
    make_net_from(&spec("pte-healthcare-test", 1, people, "healthcare"))
}

/// A one-org, one-node genesis spec with a `loadgen` user, `more_users` (TOML), and
/// `contract` under ANY; `port_offset` keeps the genesis ports of tests apart.
fn spec(network: &str, port_offset: u16, more_users: &str, contract: &str) -> String {
    format!(
        r#"
network = "{network}"
[block]
max_tx = 100
batch_timeout_ms = 10
[raft]
tick_ms = 20
election_ticks = 10
heartbeat_ticks = 2
snapshot_interval = 50
[[orgs]]
name = "OrgA"
[[orgs.nodes]]
name = "node0"
api_port = {api}
p2p_port = {p2p}
ops_port = {ops}
[[orgs.users]]
name = "loadgen"
role = "client"
{more_users}[[contracts]]
name = "{contract}"
policy = "ANY"
"#,
        api = 17943 + port_offset,
        p2p = 17900 + port_offset,
        ops = 19943 + port_offset,
    )
}

fn make_net_from(spec: &str) -> Net {
    let dir = tempfile::tempdir().unwrap();
    let spec = GenesisSpec::from_toml_str(spec, Path::new("pte-test.toml")).unwrap();
    let net = dir.path().join("network");
    generate(&spec, &net, sphr_node::now_ms()).unwrap();
    let m = NetworkManifest::load(&net.join("network.json")).unwrap();
    let n = &m.nodes[0];
    let text = format!(
        "[node]\ngenesis = \"{g}\"\nidentity = \"{i}\"\ndata_dir = \"{d}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{c}\"\ntls_key = \"{k}\"\ncommit_timeout_ms = 20000\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n[log]\nfilter = \"warn\"\n",
        g = net.join(&m.genesis_block).display(),
        i = net.join(&n.identity).display(),
        d = dir.path().join("data").display(),
        c = net.join(&n.tls_cert).display(),
        k = net.join(&n.tls_key).display(),
    );
    let node_cfg = dir.path().join("node.toml");
    std::fs::write(&node_cfg, text).unwrap();
    Net {
        _dir: dir,
        net,
        node_cfg,
    }
}

fn base(net: &Path, addr: std::net::SocketAddr) -> PteConfig {
    let mut cfg = PteConfig {
        network: net.to_path_buf(),
        proc_per_org: 2,
        n_request: Some(100),
        max_inflight: 32,
        event_timeout_ms: 30_000,
        seed: Some(7),
        ..PteConfig::default()
    };
    cfg.endpoints
        .insert("node0@OrgA".into(), format!("https://{addr}"));
    cfg
}

fn assert_clean(what: &str, r: &Report, expected: u64) {
    assert_eq!(r.sent, expected, "{what}: sent\n{}", r.summary_text());
    assert_eq!(r.received, r.sent, "{what}: received\n{}", r.summary_text());
    assert_eq!(r.failures(), 0, "{what}: failures\n{}", r.summary_text());
    assert_eq!(
        r.event_timeouts,
        0,
        "{what}: timeouts\n{}",
        r.summary_text()
    );
    assert_eq!(r.processes.len(), 2, "{what}");
    for p in &r.processes {
        assert_eq!(p.received, p.sent, "{what}: process {}", p.index);
        assert!(p.line("x").contains("completed Rcvd(sent)="));
    }
    let event = r.event.unwrap();
    assert_eq!(event.count, r.received, "{what}");
    // The timeline accounts for every send and every commit, in some interval.
    let sent: u64 = r.timeline.iter().map(|t| t.sent).sum();
    let committed: u64 = r.timeline.iter().map(|t| t.committed).sum();
    assert_eq!((sent, committed), (r.sent, r.received), "{what}: timeline");
    assert!(
        r.timeline.iter().any(|t| t.p99_ms.is_some()),
        "{what}: timeline"
    );
    let json = r.to_json();
    assert_eq!(json["sent"], expected, "{what}");
    assert_eq!(json["failures"], 0, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_and_flow_commits_everything_it_sends() {
    let net = make_net();
    let node = sphr_node::service::start(&NodeConfig::load(&net.node_cfg).unwrap())
        .await
        .unwrap();
    let addr = node.api_addr();
    let cfg = base(&net.net, addr);

    // Constant, gateway flow: event latency only.
    let mut c = cfg.clone();
    c.trans_mode = TransMode::Constant;
    c.constant.const_freq_ms = 1.0;
    c.constant.dev_freq_ms = 0.5;
    let r = run(&c, Progress::new()).await.unwrap();
    assert_clean("constant/gateway", &r, 200);
    assert!(r.peer.is_none() && r.orderer.is_none());
    assert!(r.to_json()["peer_latency_ms"].is_null());

    // Constant, client flow: peer, orderer and event latencies for every tx.
    c.flow = Flow::Client;
    let r = run(&c, Progress::new()).await.unwrap();
    assert_clean("constant/client", &r, 200);
    assert_eq!(r.peer.unwrap().count, 200);
    assert_eq!(r.orderer.unwrap().count, 200);

    // Burst, client flow, short phases.
    let mut b = cfg.clone();
    b.flow = Flow::Client;
    b.trans_mode = TransMode::Burst;
    b.burst.burst_freq_ms = vec![1.0, 5.0];
    b.burst.burst_dur_ms = vec![50.0, 20.0];
    let r = run(&b, Progress::new()).await.unwrap();
    assert_clean("burst/client", &r, 200);

    // Latency: one outstanding per process.
    let mut l = cfg.clone();
    l.trans_mode = TransMode::Latency;
    l.n_request = Some(25);
    let r = run(&l, Progress::new()).await.unwrap();
    assert_clean("latency/gateway", &r, 50);

    // Mix: each committed invoke is read back.
    let mut m = cfg.clone();
    m.trans_mode = TransMode::Mix;
    m.mix.mix_freq_ms = 2.0;
    m.flow = Flow::Client;
    let r = run(&m, Progress::new()).await.unwrap();
    assert_clean("mix/client", &r, 200);
    let q = r.queries.clone().unwrap();
    assert_eq!((q.sent, q.received, q.failures), (200, 200, 0));

    // Rate: 400 tx/s offered across both processes.
    let mut rt = cfg.clone();
    rt.trans_mode = TransMode::Rate;
    rt.rate.tps = 400.0;
    let r = run(&rt, Progress::new()).await.unwrap();
    assert_clean("rate/gateway", &r, 200);
    assert_eq!(r.offered_tps, Some(400.0));

    // Inflight: closed loop, 8 outstanding per process, random payload sizes.
    let mut i = cfg.clone();
    i.trans_mode = TransMode::Inflight;
    i.inflight.n = 8;
    i.flow = Flow::Client;
    i.workload.payload_type = sphr_bench::pte::config::PayloadType::Random;
    i.workload.payload_min = 10;
    i.workload.payload_max = 1000;
    let r = run(&i, Progress::new()).await.unwrap();
    assert_clean("inflight/client", &r, 200);

    // A timed run stops by itself.
    let mut t = cfg.clone();
    t.trans_mode = TransMode::Inflight;
    t.inflight.n = 4;
    t.n_request = None;
    t.run_dur_s = Some(0.5);
    let r = run(&t, Progress::new()).await.unwrap();
    assert!(r.sent > 0);
    assert_eq!(r.received, r.sent, "{}", r.summary_text());
    assert_eq!(r.failures() + r.event_timeouts, 0);

    // Queries of preloaded keys.
    let mut q = cfg.clone();
    q.trans_type = TransType::Query;
    q.trans_mode = TransMode::Constant;
    q.constant.const_freq_ms = 0.5;
    q.workload.preload = 20;
    let r = run(&q, Progress::new()).await.unwrap();
    assert_clean("query", &r, 200);

    // Bad targets are refused before anything is sent, naming the key.
    let mut bad = cfg.clone();
    bad.user = "nobody".into();
    let e = run(&bad, Progress::new()).await.unwrap_err().to_string();
    assert!(e.contains("user") && e.contains("nobody"), "{e}");
    let mut bad = cfg.clone();
    bad.orgs = vec!["OrgZ".into()];
    let e = run(&bad, Progress::new()).await.unwrap_err().to_string();
    assert!(e.contains("orgs") && e.contains("OrgZ"), "{e}");
    let mut hc = cfg.clone();
    hc.workload.kind = WorkloadKind::HealthcareAppointment;
    let e = run(&hc, Progress::new()).await.unwrap_err().to_string();
    assert!(
        e.contains("workload.kind") && e.contains("role patient"),
        "{e}"
    );

    node.shutdown().await;
}

/// Appointments of the doctor on the ledger, by status, over the days `from..=to`.
async fn appointments_by_status(
    net: &Path,
    addr: std::net::SocketAddr,
    doctor: &Identity,
    days: std::ops::RangeInclusive<u64>,
) -> std::collections::BTreeMap<String, u64> {
    let m = NetworkManifest::load(&net.join("network.json")).unwrap();
    let tls = sphr_node::tls::client_config(&net.join(&m.tls_ca)).unwrap();
    let client = Client::new(&format!("https://{addr}"), tls).unwrap();
    let network_id = sphr_crypto::hash::Hash32::from_hex(&m.network_id).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for day in days {
        let mut after = None;
        loop {
            let req = hc::GetAllAppointment {
                day,
                after,
                limit: None,
            };
            let (f, args) = hc::client::call(&req).unwrap();
            let (_, sp) = make_proposal(doctor, network_id, hc::NAME, f, &args).unwrap();
            let r = client.query(&sp).await.unwrap();
            let list = hc::client::response::<hc::GetAllAppointment>(
                &hex::decode(&r.response_hex).unwrap(),
            )
            .unwrap();
            for a in &list.appointments {
                *out.entry(a.status.to_string()).or_default() += 1;
            }
            match list.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcare_flow_books_appointments_and_the_doctor_accepts_them() {
    let net = make_healthcare_net();
    let node = sphr_node::service::start(&NodeConfig::load(&net.node_cfg).unwrap())
        .await
        .unwrap();
    let addr = node.api_addr();
    let mut cfg = base(&net.net, addr);
    cfg.workload.kind = WorkloadKind::HealthcareAppointment;
    let first_day = hc::day_of(sphr_node::now_ms());

    // Gateway flow, constant mode: requests, then acceptances as the requests commit.
    let mut c = cfg.clone();
    c.trans_mode = TransMode::Constant;
    c.constant.const_freq_ms = 2.0;
    let r = run(&c, Progress::new()).await.unwrap();
    assert_clean("healthcare constant/gateway", &r, 200);

    // Client flow, mix mode: each committed invoke is followed by the patient's status query
    // of its appointment (the id comes from the request's response).
    let mut m = cfg.clone();
    m.trans_mode = TransMode::Mix;
    m.mix.mix_freq_ms = 2.0;
    m.flow = Flow::Client;
    let r = run(&m, Progress::new()).await.unwrap();
    assert_clean("healthcare mix/client", &r, 200);
    let q = r.queries.clone().unwrap();
    assert_eq!((q.sent, q.received, q.failures), (200, 200, 0));

    // Query run: the patient reads the status of appointments booked beforehand.
    let mut qr = cfg.clone();
    qr.trans_type = TransType::Query;
    qr.trans_mode = TransMode::Constant;
    qr.constant.const_freq_ms = 0.5;
    qr.workload.preload = 10;
    let r = run(&qr, Progress::new()).await.unwrap();
    assert_clean("healthcare query", &r, 200);

    // On the ledger: every committed tx was a request (one appointment each) or the
    // acceptance of one, and only requested appointments were accepted. 400 invokes plus
    // 2 x 10 preloaded requests.
    let doctor_path = net.net.join("orgs/OrgA/users/doctor1/identity.json");
    let doctor = Identity::load(&doctor_path).unwrap();
    let last_day = hc::day_of(sphr_node::now_ms() + 3_600_000);
    let by = appointments_by_status(&net.net, addr, &doctor, first_day..=last_day).await;
    let accepted = by.get("ACCEPTED").copied().unwrap_or(0);
    let requested = by.get("REQUESTED").copied().unwrap_or(0);
    assert_eq!(
        by.len(),
        by.keys()
            .filter(|k| *k == "ACCEPTED" || *k == "REQUESTED")
            .count(),
        "{by:?}"
    );
    assert!(accepted > 0, "{by:?}");
    assert_eq!(requested + 2 * accepted, 400 + 20, "{by:?}");

    node.shutdown().await;
}
