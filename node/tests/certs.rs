//! Certificates: a network whose certificates expire within the warning window raises
//! `sphr_cert_expiring` for the node, its TLS certificate and its peers; `sphr-node cert renew`
//! and SIGHUP rotate one node's certificates while the network keeps committing (policy ALL:
//! every tx needs the rotating node's endorsement), and the metrics follow; a reload of a
//! certificate that is not the node's is refused and changes nothing.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/prom.rs"]
mod prom;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{NodeProcess, free_port, wait_for};
use sphr_crypto::hash::Hash32;
use sphr_node::client::{Client, make_proposal};
use sphr_node::genesis::NetworkManifest;
use sphr_node::identity::Identity;

const DAY: f64 = 86_400.0;

struct Net {
    dir: tempfile::TempDir,
    net: PathBuf,
    manifest: NetworkManifest,
}

/// Three orgs, one consenter each, kv under `ALL`, certificates valid `days` days.
fn network(days: u32) -> Net {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = format!(
        "network = \"certs\"\ncert_validity_days = {days}\n[block]\nmax_tx = 50\nbatch_timeout_ms = 10\n\
         [raft]\ntick_ms = 20\nelection_ticks = 10\nheartbeat_ticks = 2\n"
    );
    for i in 1..=3 {
        spec.push_str(&format!(
            "[[orgs]]\nname = \"Org{i}\"\n[[orgs.nodes]]\nname = \"node\"\napi_port = {}\np2p_port = {}\nops_port = {}\n[[orgs.users]]\nname = \"user\"\nrole = \"client\"\n",
            free_port(),
            free_port(),
            free_port()
        ));
    }
    spec.push_str("[[contracts]]\nname = \"kv\"\npolicy = \"ALL\"\n");
    let (net, manifest) = common::generate_network(dir.path(), &spec, "certs.toml");
    Net { dir, net, manifest }
}

impl Net {
    fn config(&self, i: usize) -> PathBuf {
        let n = &self.manifest.nodes[i];
        let text = format!(
            "[node]\ngenesis = \"{g}\"\nidentity = \"{id}\"\ndata_dir = \"{d}\"\ncert_warn_days = 30\n\n[api]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{c}\"\ntls_key = \"{k}\"\ncommit_timeout_ms = 20000\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n[log]\nfilter = \"warn,sphr::certs=info\"\n",
            g = self.net.join(&self.manifest.genesis_block).display(),
            id = self.net.join(&n.identity).display(),
            d = self.dir.path().join(format!("data{i}")).display(),
            c = self.net.join(&n.tls_cert).display(),
            k = self.net.join(&n.tls_key).display(),
        );
        let p = self.dir.path().join(format!("node{i}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn client(&self, addr: SocketAddr) -> Client {
        let tls = sphr_node::tls::client_config(&self.net.join("tls-ca.pem")).unwrap();
        Client::new(&format!("https://{addr}"), tls).unwrap()
    }

    fn put(&self, org: usize, key: &str) -> sphr_types::SignedProposal {
        let u = &self.manifest.users[org];
        let id = Identity::load(&self.net.join(&u.identity)).unwrap();
        let nid = Hash32::from_hex(&self.manifest.network_id).unwrap();
        make_proposal(&id, nid, "kv", "put", &[key, "v"]).unwrap().1
    }
}

async fn scrape(ops: SocketAddr) -> prom::Scrape {
    let (status, body) = prom::http(ops, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    prom::parse(&body)
}

fn hup(p: &NodeProcess) {
    let ok = Command::new("kill")
        .arg("-HUP")
        .arg(p.child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn renew(net: &Path, node: &str, days: u32) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sphr-node"))
        .args(["cert", "renew", "--network"])
        .arg(net)
        .args(["--node", node, "--days", &days.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiring_certificates_warn_and_rotate_without_downtime() {
    let net = network(10);
    let procs: Vec<NodeProcess> = (0..3).map(|i| NodeProcess::spawn(&net.config(i))).collect();
    let clients: Vec<Client> = procs.iter().map(|p| net.client(p.addr)).collect();
    let ops: Vec<SocketAddr> = procs.iter().map(|p| p.ops.unwrap()).collect();
    wait_for(Duration::from_secs(30), || async {
        for c in &clients {
            let s = c.status().await.ok()?;
            (s.peers == 2 && s.leader.is_some()).then_some(())?;
        }
        Some(())
    })
    .await;

    // A tx through node 1: every org endorses, so every node meets every node certificate.
    let r = clients[1].submit(&net.put(1, "first"), true).await.unwrap();
    assert_eq!(r.code.as_deref(), Some("VALID"));

    // Valid 10 days, warned 30 days ahead: every subject is expiring.
    let s = wait_for(Duration::from_secs(20), || async {
        let s = scrape(ops[0]).await;
        s.value("sphr_cert_expiring", &[("subject", "peer:node@Org2")])
            .is_some()
            .then_some(s)
    })
    .await;
    for subject in ["node", "tls", "peer:node@Org2", "peer:node@Org3"] {
        assert_eq!(
            s.get("sphr_cert_expiring", &[("subject", subject)]),
            1.0,
            "{subject}"
        );
        let left = s.get("sphr_cert_expiry_seconds", &[("subject", subject)]);
        assert!(left > 9.0 * DAY && left <= 10.0 * DAY, "{subject}: {left}");
    }
    // A node is not its own peer.
    assert_eq!(
        s.value("sphr_cert_expiring", &[("subject", "peer:node@Org1")]),
        None
    );

    // Load through node 1 (ALL: each tx needs node 0's endorsement) during the rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let c = clients[1].clone();
        let sps: Vec<_> = (0..400).map(|k| net.put(1, &format!("k{k}"))).collect();
        tokio::spawn(async move {
            for sp in sps {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match c.submit(&sp, true).await {
                    Ok(r) if r.code.as_deref() == Some("VALID") => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    wait_for(Duration::from_secs(30), || async {
        (ok.load(Ordering::Relaxed) >= 10).then_some(())
    })
    .await;

    // A reload of another node's identity is refused; node 0 keeps its certificates.
    let id0 = net.net.join(&net.manifest.nodes[0].identity);
    let saved = std::fs::read(&id0).unwrap();
    std::fs::remove_file(&id0).unwrap();
    std::fs::copy(net.net.join(&net.manifest.nodes[1].identity), &id0).unwrap();
    hup(&procs[0]);
    wait_for(Duration::from_secs(20), || async {
        let s = scrape(ops[0]).await;
        (s.get("sphr_cert_reloads_total", &[("result", "refused")]) == 1.0).then_some(())
    })
    .await;
    std::fs::remove_file(&id0).unwrap();
    std::fs::write(&id0, &saved).unwrap();
    let mut perms = std::fs::metadata(&id0).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&id0, perms).unwrap();
    assert_eq!(
        scrape(ops[0])
            .await
            .get("sphr_cert_expiring", &[("subject", "node")]),
        1.0
    );

    // Renew node 0 for a year and SIGHUP it: no restart.
    let out = renew(&net.net, "node@Org1", 365);
    assert!(out.contains("renewed node@Org1"), "{out}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&id0).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the renewed identity is written 0600");
    let id = Identity::load(&id0).unwrap();
    assert!(id.cert.body.not_after > sphr_node::now_ms() / 1000 + 300 * 86_400);
    let pid_before = procs[0].child.id();
    hup(&procs[0]);
    wait_for(Duration::from_secs(20), || async {
        let s = scrape(ops[0]).await;
        (s.get("sphr_cert_reloads_total", &[("result", "ok")]) == 1.0).then_some(())
    })
    .await;
    // A scrape samples the certificates' gauges first and reads the counters after: one that
    // ran while the reload finished can show the new count beside the old expiry. The next
    // scrape starts after the reload and must show the renewed certificates.
    let s = scrape(ops[0]).await;
    for subject in ["node", "tls"] {
        assert_eq!(
            s.get("sphr_cert_expiring", &[("subject", subject)]),
            0.0,
            "{subject}"
        );
        let left = s.get("sphr_cert_expiry_seconds", &[("subject", subject)]);
        assert!(left > 364.0 * DAY, "{subject}: {left}");
    }
    // The peers see the new certificate in node 0's next endorsements.
    for o in &ops[1..] {
        wait_for(Duration::from_secs(30), || async {
            let s = scrape(*o).await;
            (s.get("sphr_cert_expiring", &[("subject", "peer:node@Org1")]) == 0.0
                && s.get("sphr_cert_expiry_seconds", &[("subject", "peer:node@Org1")])
                    > 364.0 * DAY)
                .then_some(())
        })
        .await;
    }
    // A new TLS connection gets the new certificate and verifies against the same CA bundle.
    let fresh = net.client(procs[0].addr);
    fresh.status().await.unwrap();

    let before = ok.load(Ordering::Relaxed);
    wait_for(Duration::from_secs(30), || async {
        (ok.load(Ordering::Relaxed) >= before + 10).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no submission failed during the rotation"
    );
    assert_eq!(procs[0].child.id(), pid_before);
    let st = clients[0].status().await.unwrap();
    assert!(st.height >= 2);
    for p in procs {
        assert!(p.terminate().success());
    }
}
