//! The explorer on a three-org network: every node serves the page and its JSON endpoints,
//! sees every node with its height, and shows blocks with contract, function, orgs and
//! validation codes. Transactions whose arguments carry a known patient id (a kv key and
//! value, and a consent `registerPatient` by a patient whose certificate subject is that id)
//! are committed, and no explorer response from any node contains the id or the plaintext.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{free_port, wait_for};
use hyper::Method;
use sphr_contracts::consent::RegisterPatient;
use sphr_crypto::hash::Hash32;
use sphr_node::client::{Client, make_proposal};
use sphr_node::explorer::{BlockPage, NetworkView};
use sphr_node::genesis::NetworkManifest;
use sphr_node::identity::Identity;
use sphr_node::service::RunningNode;

const PATIENT: &str = "CHI-1234567890";
const PLAINTEXT: &str = "diagnosis-type-2-diabetes-secret";

struct Net {
    _dir: tempfile::TempDir,
    net: std::path::PathBuf,
    manifest: NetworkManifest,
    nodes: Vec<RunningNode>,
    clients: Vec<Client>,
}

async fn start() -> Net {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = String::from(
        "network = \"explorer-test\"\n[block]\nmax_tx = 50\nbatch_timeout_ms = 10\n\
         [raft]\ntick_ms = 20\nelection_ticks = 10\nheartbeat_ticks = 2\nsnapshot_interval = 500\n",
    );
    for i in 1..=3 {
        spec.push_str(&format!(
            "[[orgs]]\nname = \"Org{i}\"\n[[orgs.nodes]]\nname = \"node\"\napi_port = {}\np2p_port = {}\nops_port = {}\n[[orgs.users]]\nname = \"user\"\nrole = \"client\"\n",
            free_port(),
            free_port(),
            free_port()
        ));
        if i == 1 {
            spec.push_str(&format!(
                "[[orgs.users]]\nname = \"{PATIENT}\"\nrole = \"patient\"\n"
            ));
        }
    }
    spec.push_str("[[contracts]]\nname = \"kv\"\npolicy = \"ALL\"\n[[contracts]]\nname = \"consent\"\npolicy = \"MAJORITY\"\n");
    let (net, manifest) = common::generate_network(dir.path(), &spec, "explorer.toml");
    let (nodes, clients) = common::start_all(dir.path(), &net, &manifest, true, 2).await;
    Net {
        _dir: dir,
        net,
        manifest,
        nodes,
        clients,
    }
}

impl Net {
    fn user(&self, name: &str, org: &str) -> Identity {
        common::user_identity(&self.net, &self.manifest, name, org)
    }
    fn network_id(&self) -> Hash32 {
        Hash32::from_hex(&self.manifest.network_id).unwrap()
    }
}

async fn get(c: &Client, path: &str) -> (u16, String) {
    let (status, body) = c
        .request(Method::GET, path, None, Vec::new())
        .await
        .unwrap();
    (status, String::from_utf8(body).unwrap())
}

fn assert_no_patient_data(what: &str, body: &str) {
    for needle in [PATIENT, "1234567890", PLAINTEXT] {
        assert!(
            !body.contains(needle),
            "{what} shows patient data ({needle:?}): {body}"
        );
    }
    // Nor hex of them (argument bytes shown as hex would be a leak too).
    for needle in [PATIENT, PLAINTEXT] {
        assert!(
            !body.contains(&hex::encode(needle)),
            "{what} shows patient data as hex"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_shows_the_network_and_no_patient_data() {
    let net = start().await;
    let nid = net.network_id();

    // Transactions that carry the patient id and a plaintext in their arguments.
    let user = net.user("user", "Org1");
    let (_, sp) = make_proposal(&user, nid, "kv", "put", [PATIENT, PLAINTEXT]).unwrap();
    let put = net.clients[0].submit(&sp, true).await.unwrap();
    assert_eq!(put.code.as_deref(), Some("VALID"));
    let patient = net.user(PATIENT, "Org1");
    let arg = sphr_crypto::cbor::to_vec(&RegisterPatient {
        patient_id: Some(PATIENT.into()),
    })
    .unwrap();
    let (_, sp) = make_proposal(&patient, nid, "consent", "registerPatient", [arg]).unwrap();
    let reg = net.clients[0].submit(&sp, true).await.unwrap();
    assert_eq!(reg.code.as_deref(), Some("VALID"));
    // Some load, and two puts of one key at once (kv put may or may not read the key: if it
    // does, one of them fails MVCC and shows an invalid code).
    let (_, a) = make_proposal(&user, nid, "kv", "put", ["k", "1"]).unwrap();
    let (_, b) = make_proposal(&user, nid, "kv", "put", ["k", "2"]).unwrap();
    for i in 0..5 {
        let (_, sp) =
            make_proposal(&user, nid, "kv", "put", [format!("load{i}"), "v".into()]).unwrap();
        net.clients[i % 3].submit(&sp, true).await.unwrap();
    }
    let (ra, rb) = tokio::join!(
        net.clients[1].submit(&a, true),
        net.clients[2].submit(&b, true)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let height = rb.block.unwrap().max(ra.block.unwrap());

    // Every node serves the page, and its JSON endpoints see all three nodes at that height.
    for c in &net.clients {
        let (status, html) = get(c, "/explorer").await;
        assert_eq!(status, 200);
        assert!(html.contains("<title>sphr explorer</title>"));
        assert_no_patient_data("/explorer", &html);

        let view: NetworkView = wait_for(Duration::from_secs(20), || async {
            let (s, body) = get(c, "/v1/explorer/network").await;
            assert_eq!(s, 200);
            assert_no_patient_data("/v1/explorer/network", &body);
            let v: NetworkView = serde_json::from_str(&body).unwrap();
            let all = v.nodes.len() == 3
                && v.nodes
                    .iter()
                    .all(|n| n.reachable && n.height.unwrap_or(0) >= height);
            all.then_some(v)
        })
        .await;
        assert_eq!(view.network, "explorer-test");
        assert_eq!(view.orgs.len(), 3);
        assert_eq!(view.nodes.iter().filter(|n| n.this_node).count(), 1);
        assert_eq!(view.nodes.iter().filter(|n| n.is_leader).count(), 1);
        assert!(view.nodes.iter().all(|n| n.peers == Some(2)));
        assert!(
            view.contracts
                .iter()
                .any(|k| k.name == "consent" && k.policy == "MAJORITY")
        );

        let (s, body) = get(c, "/v1/explorer/blocks?limit=100").await;
        assert_eq!(s, 200);
        assert_no_patient_data("/v1/explorer/blocks", &body);
        let page: BlockPage = serde_json::from_str(&body).unwrap();
        assert!(page.height >= height);
        assert_eq!(page.blocks.first().unwrap().number, page.height);
        assert_eq!(page.blocks.last().unwrap().number, 0);
        let txs: usize = page.blocks.iter().map(|b| b.tx_count).sum();
        assert_eq!(txs, 9);
        assert_eq!(
            page.blocks.iter().map(|b| b.valid_count).sum::<usize>(),
            if ra.code == rb.code { 9 } else { 8 }
        );

        // Block and transaction details, as the page reads them.
        for b in &page.blocks {
            let (s, body) = get(c, &format!("/v1/blocks/{}", b.number)).await;
            assert_eq!(s, 200);
            assert_no_patient_data("/v1/blocks/{n}", &body);
            let view: serde_json::Value = serde_json::from_str(&body).unwrap();
            for tx in view["txs"].as_array().unwrap() {
                assert!(!tx["code"].as_str().unwrap().is_empty());
                let id = tx["tx_id"].as_str().unwrap();
                let (s, body) = get(c, &format!("/v1/transactions/{id}")).await;
                assert_eq!(s, 200);
                assert_no_patient_data("/v1/transactions/{id}", &body);
            }
        }
        let (_, reg_block) = get(c, &format!("/v1/blocks/{}", reg.block.unwrap())).await;
        assert!(reg_block.contains("\"registerPatient\""));
        assert!(reg_block.contains("\"creator_org\":\"Org1\""));
    }

    // Pages: from and limit, bounded.
    let c = &net.clients[0];
    let (s, body) = get(c, "/v1/explorer/blocks?from=2&limit=2").await;
    assert_eq!(s, 200);
    let page: BlockPage = serde_json::from_str(&body).unwrap();
    let numbers: Vec<u64> = page.blocks.iter().map(|b| b.number).collect();
    assert_eq!(numbers, [2, 1]);
    for bad in [
        "/v1/explorer/blocks?limit=0",
        "/v1/explorer/blocks?limit=101",
        "/v1/explorer/blocks?limit=x",
        "/v1/explorer/blocks?from=-1",
    ] {
        let (s, body) = get(c, bad).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(body.contains("\"error\""), "{bad}: {body}");
    }
    let (s, body) = get(c, "/v1/explorer/blocks?from=999999").await;
    assert_eq!(s, 200, "{body}");

    for n in net.nodes {
        n.shutdown().await;
    }
}
