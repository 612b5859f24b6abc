//! Issue #5 end to end, on a three-org network (PatientOrg, HospA, HospB; consent endorsed by a
//! majority) with real nodes, mostly through the `sphr-node` CLI:
//!
//! - both hospitals ingest SMR01-like tables into their vaults (CLI), set tag maps and link the
//!   patient's identity to the CHI; a bad table is refused with line numbers, nothing written;
//! - the patient grants doctor1 two tags; HospB's node is down when doctor1 asks, so its
//!   grant is picked up from its cursor after a restart; HospA's vault is held (as by an
//!   ingest) at that time, so HospA defers and delivers once it is free;
//! - both nodes package, seal and deliver; `bundle fetch` downloads, verifies and decrypts both
//!   bundles, which hold exactly the granted satellites' rows of that patient (values checked);
//! - the lineage names both hospitals and the rule; another identity's download is refused
//!   (403, counted); a tampered bundle does not open; a non-grantee's request is DENIED on
//!   chain with its reason.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::wait_for;
use sphr_contracts::consent::{self, BundleKey, BundleKeys, GetBundleKeys};
use sphr_crypto::hash::Hash32;
use sphr_node::client::{Client, make_proposal};
use sphr_node::config::NodeConfig;
use sphr_node::genesis::NetworkManifest;
use sphr_node::identity::Identity;
use sphr_node::service::RunningNode;
use sphr_vault::{Bundle, HubKind, hub_key, patient_key};

const CHI_A: &str = "0101501234";

struct Net {
    dir: tempfile::TempDir,
    net: PathBuf,
    manifest: NetworkManifest,
    configs: Vec<PathBuf>,
}

impl Net {
    fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = String::from(
            "network = \"sphr-vault\"\n[block]\nmax_tx = 100\nbatch_timeout_ms = 10\n\
             [raft]\ntick_ms = 20\nelection_ticks = 10\nheartbeat_ticks = 2\nsnapshot_interval = 1000\n",
        );
        let orgs: [(&str, &[(&str, &str)]); 3] = [
            ("PatientOrg", &[("patient1", "patient")]),
            (
                "HospA",
                &[
                    ("admin", "admin"),
                    ("doctor1", "doctor"),
                    ("nurse1", "nurse"),
                ],
            ),
            ("HospB", &[("admin", "admin")]),
        ];
        // Nine distinct free ports (held together while chosen).
        let held: Vec<std::net::TcpListener> = (0..9)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(held);
        for (i, (org, users)) in orgs.into_iter().enumerate() {
            spec.push_str(&format!(
                "[[orgs]]\nname = \"{org}\"\n[[orgs.nodes]]\nname = \"node0\"\napi_port = {}\np2p_port = {}\nops_port = {}\n",
                ports[3 * i],
                ports[3 * i + 1],
                ports[3 * i + 2]
            ));
            for (name, role) in users {
                spec.push_str(&format!(
                    "[[orgs.users]]\nname = \"{name}\"\nrole = \"{role}\"\n"
                ));
            }
        }
        spec.push_str("[[contracts]]\nname = \"consent\"\npolicy = \"MAJORITY\"\n");
        let (net, manifest) = common::generate_network(dir.path(), &spec, "sphr-vault.toml");
        let mut configs = Vec::new();
        for (i, n) in manifest.nodes.iter().enumerate() {
            let text = format!(
                "[node]\ngenesis = \"{g}\"\nidentity = \"{id}\"\ndata_dir = \"{d}\"\n[api]\nlisten = \"{a}\"\ntls_cert = \"{c}\"\ntls_key = \"{k}\"\ncommit_timeout_ms = 20000\n[ops]\nlisten = \"127.0.0.1:0\"\n[log]\nfilter = \"warn\"\n",
                g = net.join(&manifest.genesis_block).display(),
                id = net.join(&n.identity).display(),
                d = dir.path().join(format!("data{i}")).display(),
                a = n.api_addr,
                c = net.join(&n.tls_cert).display(),
                k = net.join(&n.tls_key).display(),
            );
            let p = dir.path().join(format!("node{i}.toml"));
            std::fs::write(&p, text).unwrap();
            configs.push(p);
        }
        Net {
            dir,
            net,
            manifest,
            configs,
        }
    }

    /// Index of the node of `org`.
    fn node(&self, org: &str) -> usize {
        self.manifest
            .nodes
            .iter()
            .position(|n| n.org == org)
            .unwrap()
    }

    async fn start(&self, i: usize) -> RunningNode {
        let cfg = NodeConfig::load(&self.configs[i]).unwrap();
        sphr_node::service::start(&cfg).await.unwrap()
    }

    fn client(&self, i: usize) -> Client {
        let tls = sphr_node::tls::client_config(&self.net.join("tls-ca.pem")).unwrap();
        Client::new(&format!("https://{}", self.manifest.nodes[i].api_addr), tls).unwrap()
    }

    fn user(&self, name: &str, org: &str) -> Identity {
        common::user_identity(&self.net, &self.manifest, name, org)
    }

    fn network_id(&self) -> Hash32 {
        Hash32::from_hex(&self.manifest.network_id).unwrap()
    }

    /// Runs the CLI as `user@org` against that org's node; returns (success, stdout, stderr).
    async fn cli(&self, user: &str, org: &str, args: &[&str]) -> (bool, String, String) {
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        full.extend([
            "--network".to_string(),
            self.net.display().to_string(),
            "--user".to_string(),
            format!("{user}@{org}"),
            "--node".to_string(),
            format!("node0@{org}"),
        ]);
        run(full).await
    }

    /// Runs a `vault` command against the node of `org`.
    async fn vault(&self, org: &str, args: &[&str]) -> (bool, String, String) {
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        full.extend([
            "--config".to_string(),
            self.configs[self.node(org)].display().to_string(),
        ]);
        run(full).await
    }
}

async fn run(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_sphr-node"))
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn ok(what: &str, r: (bool, String, String)) -> String {
    assert!(r.0, "{what} failed:\nstdout: {}\nstderr: {}", r.1, r.2);
    r.1
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vault/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// HospB's table: two episodes of patient A, one of patient B.
const HOSP_B_ROWS: &str = "E9001,0101501234,2024-05-01,03/05/2024,2,2,74,1A,B,KY16 9AJ,C8,elective,M17.1,,,W40.2,,X200H,ward 1\n\
E9002,0101501234,2024-07-10,12/07/2024,2,2,74,1A,B,KY16 9AJ,C8,emergency,I10,,,,,X200H,ward 3\n\
E9003,1203851235,2024-08-01,05/08/2024,4,1,39,3F,A,DD1 4HN,A1,emergency,J18.9,,,T12.3,,X200H,ward 2\n";

/// (satellite, parent hub key) -> field -> value, for the fields the granted tags select,
/// from the rows of `table` whose CHI is `chi`.
fn expected(table: &str, chi: &str) -> BTreeMap<(String, Hash32), BTreeMap<String, String>> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut out = BTreeMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        if f[col("chi")] != chi {
            continue;
        }
        let ep = f[col("episode_id")];
        let pick = |names: &[&str]| -> BTreeMap<String, String> {
            names
                .iter()
                .map(|n| (n.to_string(), f[col(n)].to_string()))
                .collect()
        };
        out.insert(
            (
                "sat_time_admissions_date".to_string(),
                hub_key(HubKind::Time, ep),
            ),
            pick(&["admission_date", "length_of_stay"]),
        );
        out.insert(
            (
                "sat_event_admission_core".to_string(),
                hub_key(HubKind::Event, ep),
            ),
            pick(&["specialty", "admission_type"]),
        );
        let ops = pick(&["main_operation_a", "main_operation_b"]);
        if ops.values().any(|v| !v.is_empty()) {
            out.insert(
                (
                    "sat_object_operations_details".to_string(),
                    hub_key(HubKind::Object, ep),
                ),
                ops,
            );
        }
    }
    out
}

/// The same shape from a bundle, keeping only the fields `expected` names.
fn actual(
    b: &Bundle,
    want: &BTreeMap<(String, Hash32), BTreeMap<String, String>>,
) -> BTreeMap<(String, Hash32), BTreeMap<String, String>> {
    let names: BTreeSet<&String> = want.values().flat_map(|m| m.keys()).collect();
    let mut out = BTreeMap::new();
    for s in &b.satellites {
        for r in &s.rows {
            let fields = r
                .fields
                .iter()
                .filter(|f| names.contains(&f.name))
                .map(|f| (f.name.clone(), f.value.to_string()))
                .collect();
            assert!(
                out.insert((s.satellite.clone(), r.parent), fields)
                    .is_none(),
                "two rows for one parent in {}",
                s.satellite
            );
        }
    }
    out
}

async fn bundle_keys(
    net: &Net,
    client: &Client,
    who: &Identity,
    request: Hash32,
) -> Vec<BundleKey> {
    let arg = sphr_crypto::cbor::to_vec(&GetBundleKeys {
        request_id: request,
    })
    .unwrap();
    let (_, sp) =
        make_proposal(who, net.network_id(), consent::NAME, "getBundleKeys", [arg]).unwrap();
    let r = client.query(&sp).await.unwrap();
    let k: BundleKeys =
        sphr_crypto::cbor::from_slice(&hex::decode(r.response_hex).unwrap(), 1 << 20).unwrap();
    k.keys
}

fn delivered(node: &RunningNode) -> u64 {
    node.metrics()
        .vault_grants_total
        .with_label_values(&["delivered"])
        .get()
}

fn first_hex_after(text: &str, marker: &str) -> Hash32 {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in {text}"));
    Hash32::from_hex(&text[at + marker.len()..at + marker.len() + 64]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grant_package_deliver_fetch() {
    let net = Net::new();
    let (ha, hb) = (net.node("HospA"), net.node("HospB"));
    let mut nodes: Vec<Option<RunningNode>> = Vec::new();
    for i in 0..3 {
        nodes.push(Some(net.start(i).await));
    }
    let clients: Vec<Client> = (0..3).map(|i| net.client(i)).collect();
    wait_for(Duration::from_secs(30), || async {
        for c in &clients {
            let s = c.status().await.ok()?;
            if s.peers < 2 || s.leader.is_none() {
                return None;
            }
        }
        Some(())
    })
    .await;

    // Registration on chain, by the CLI.
    ok(
        "register HospA",
        net.cli(
            "admin",
            "HospA",
            &[
                "consent",
                "register-hospital",
                "--departments",
                "surgery,cardiology",
                "--allowed-tags",
                "OPERATION,ADMISSIONS,CONDITIONS",
                "--max-rule-days",
                "365",
            ],
        )
        .await,
    );
    ok(
        "register HospB",
        net.cli(
            "admin",
            "HospB",
            &[
                "consent",
                "register-hospital",
                "--departments",
                "general",
                "--allowed-tags",
                "OPERATION,ADMISSIONS",
            ],
        )
        .await,
    );
    for (id, dept) in [("doctor1", "surgery"), ("nurse1", "cardiology")] {
        ok(
            "register staff",
            net.cli(
                "admin",
                "HospA",
                &[
                    "consent",
                    "register-staff",
                    "--id",
                    id,
                    "--department",
                    dept,
                ],
            )
            .await,
        );
    }
    ok(
        "register patient",
        net.cli("patient1", "PatientOrg", &["consent", "register-patient"])
            .await,
    );

    // Vaults: HospA ingests the SMR01 fixture, HospB a table of its own.
    let profile_json = net.dir.path().join("profile.json");
    let out = ok(
        "ingest at HospA",
        net.vault(
            "HospA",
            &[
                "vault",
                "ingest",
                "--source",
                "smr01",
                "--table",
                &fixture("smr01.csv"),
                "--columns",
                &fixture("smr01_columns.csv"),
                "--hubs",
                &fixture("smr01_hubs.csv"),
                "--profile-json",
                &profile_json.display().to_string(),
            ],
        )
        .await,
    );
    assert!(out.contains("20 of 20 rows ingested"), "{out}");
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&profile_json).unwrap()).unwrap();
    assert_eq!(profile["rows"], 20);
    let smr01 = std::fs::read_to_string(fixture("smr01.csv")).unwrap();
    let header = smr01.lines().next().unwrap();
    let hosp_b_table = format!("{header}\n{HOSP_B_ROWS}");
    let hosp_b_path = net.dir.path().join("hospb.csv");
    std::fs::write(&hosp_b_path, &hosp_b_table).unwrap();
    // A bad table is refused with its line numbers, and nothing is written.
    let bad = net
        .vault(
            "HospB",
            &[
                "vault",
                "ingest",
                "--source",
                "smr01",
                "--table",
                &fixture("smr01_bad_rows.csv"),
                "--columns",
                &fixture("smr01_columns.csv"),
                "--hubs",
                &fixture("smr01_hubs.csv"),
            ],
        )
        .await;
    assert!(!bad.0, "a bad table was accepted: {}", bad.1);
    assert!(
        bad.2.contains("line 7: expected 19 fields, found 18"),
        "{}",
        bad.2
    );
    assert!(bad.2.contains("nothing written"), "{}", bad.2);
    let listed = ok("ingests", net.vault("HospB", &["vault", "ingests"]).await);
    assert!(listed.trim().is_empty(), "{listed}");
    let out = ok(
        "ingest at HospB",
        net.vault(
            "HospB",
            &[
                "vault",
                "ingest",
                "--source",
                "smr01",
                "--table",
                &hosp_b_path.display().to_string(),
                "--columns",
                &fixture("smr01_columns.csv"),
                "--hubs",
                &fixture("smr01_hubs.csv"),
            ],
        )
        .await,
    );
    assert!(out.contains("3 of 3 rows ingested"), "{out}");
    for org in ["HospA", "HospB"] {
        ok(
            "set tags",
            net.vault(
                org,
                &[
                    "vault",
                    "tags",
                    "--source",
                    "smr01",
                    "--set",
                    &fixture("smr01_tags.csv"),
                ],
            )
            .await,
        );
        let tags = ok("tags", net.vault(org, &["vault", "tags"]).await);
        assert!(
            tags.contains("smr01\tOPERATION\tsat_object_operations_details"),
            "{tags}"
        );
        ok(
            "link patient",
            net.vault(
                org,
                &[
                    "vault",
                    "link-patient",
                    "--patient",
                    "patient1@PatientOrg",
                    "--chi",
                    CHI_A,
                ],
            )
            .await,
        );
    }
    let prof = ok("profile", net.vault("HospA", &["vault", "profile"]).await);
    assert!(
        prof.contains("source smr01") && prof.contains("length_of_stay"),
        "{prof}"
    );

    // The patient's rule: doctor1 may see OPERATION and ADMISSIONS for 30 days.
    let out = ok(
        "rule create",
        net.cli(
            "patient1",
            "PatientOrg",
            &[
                "consent",
                "rule",
                "create",
                "--grantee",
                "doctor1@HospA",
                "--tags",
                "OPERATION,ADMISSIONS",
                "--purpose",
                "surgery follow-up",
                "--days",
                "30",
            ],
        )
        .await,
    );
    let rule_id = first_hex_after(&out, "rule ");

    // HospB's node is down when the grant commits.
    let held = sphr_node::vault::VaultDb::open(
        &sphr_node::vault::vault_path(&net.dir.path().join(format!("data{ha}"))),
        "HospA",
        Duration::from_secs(5),
    )
    .unwrap();
    nodes[hb].take().unwrap().shutdown().await;
    // The two others agree on a leader that is up before anyone submits.
    wait_for(Duration::from_secs(30), || async {
        let mut leaders = BTreeSet::new();
        for (i, c) in clients.iter().enumerate() {
            if i != hb {
                leaders.insert(c.status().await.ok()?.leader?);
            }
        }
        (leaders.len() == 1 && !leaders.contains("node0@HospB")).then_some(())
    })
    .await;
    let out = ok(
        "request",
        net.cli(
            "doctor1",
            "HospA",
            &[
                "consent",
                "request",
                "--patient",
                "patient1@PatientOrg",
                "--tags",
                "OPERATION,ADMISSIONS,CONDITIONS",
                "--hospitals",
                "HospA,HospB",
                "--purpose",
                "pre-op review",
            ],
        )
        .await,
    );
    assert!(out.contains("GRANTED"), "{out}");
    assert!(out.contains("no rule grants tag CONDITIONS"), "{out}");
    let request_id = first_hex_after(&out, "request ");
    {
        // HospA's vault is held (as by a long ingest): the node defers, then delivers once
        // it is free.
        let a = nodes[ha].as_ref().unwrap();
        let count = |r: &str| a.metrics().vault_grants_total.with_label_values(&[r]).get();
        wait_for(Duration::from_secs(30), || async {
            (count("deferred") >= 1).then_some(())
        })
        .await;
        assert_eq!(delivered(a), 0);
        drop(held);
        wait_for(Duration::from_secs(30), || async {
            (delivered(a) == 1).then_some(())
        })
        .await;
    }
    // HospB comes back: it catches up and finds the grant from its cursor.
    nodes[hb] = Some(net.start(hb).await);
    {
        let b = nodes[hb].as_ref().unwrap();
        wait_for(Duration::from_secs(60), || async {
            (delivered(b) == 1).then_some(())
        })
        .await;
    }

    // doctor1 fetches both bundles: keys from the chain, sealed bundles over HTTPS.
    let out_dir = net.dir.path().join("bundles");
    let out = ok(
        "bundle fetch",
        net.cli(
            "doctor1",
            "HospA",
            &[
                "bundle",
                "fetch",
                "--request",
                &request_id.to_hex(),
                "--out",
                &out_dir.display().to_string(),
                "--wait-secs",
                "30",
            ],
        )
        .await,
    );
    assert!(
        out.contains("HospA: bundle") && out.contains("HospB: bundle"),
        "{out}"
    );
    let granted_sats: BTreeSet<&str> = [
        "sat_time_admissions_date",
        "sat_event_admission_core",
        "sat_object_operations_details",
    ]
    .into();
    for (org, table) in [("HospA", smr01.as_str()), ("HospB", hosp_b_table.as_str())] {
        let json = std::fs::read_to_string(out_dir.join(format!("{org}.json"))).unwrap();
        let b: Bundle = serde_json::from_str(&json).unwrap();
        assert_eq!(b.hospital, org);
        assert_eq!(b.patient, patient_key(CHI_A));
        assert_eq!(
            b.tags,
            vec!["ADMISSIONS".to_string(), "OPERATION".to_string()]
        );
        assert_eq!(b.rule_ids, vec![rule_id.to_hex()]);
        let sats: BTreeSet<&str> = b.satellites.iter().map(|s| s.satellite.as_str()).collect();
        assert_eq!(sats, granted_sats, "{org}: exactly the granted satellites");
        let want = expected(table, CHI_A);
        assert!(!want.is_empty());
        assert_eq!(
            actual(&b, &want),
            want,
            "{org}: exactly patient A's rows, by value"
        );
        // No other patient's value anywhere (patient B's operation at HospB).
        assert!(
            !json.contains("T12.3") && !json.contains("1203851235"),
            "{org}"
        );
    }

    // The lineage names both hospitals and the rule.
    let out = ok(
        "lineage",
        net.cli(
            "patient1",
            "PatientOrg",
            &["consent", "lineage", &request_id.to_hex()],
        )
        .await,
    );
    assert!(out.contains("hospitals granted: HospA,HospB"), "{out}");
    assert!(
        out.contains("package from HospA") && out.contains("package from HospB"),
        "{out}"
    );
    assert!(
        out.contains(&format!("rules: {}", rule_id.to_hex())),
        "{out}"
    );

    // Another identity's download is refused and counted; an unsigned one too.
    let doctor = net.user("doctor1", "HospA");
    let nurse = net.user("nurse1", "HospA");
    let keys = bundle_keys(&net, &clients[ha], &doctor, request_id).await;
    assert_eq!(keys.len(), 2);
    let key_a = keys.iter().find(|k| k.hospital == "HospA").unwrap();
    let node_a = nodes[ha].as_ref().unwrap();
    let refused = |reason: &str| {
        node_a
            .metrics()
            .vault_bundles_refused_total
            .with_label_values(&[reason])
            .get()
    };
    let before = refused("not_grantee");
    let (status, body) = sphr_node::cli::consent::download_sealed(
        &clients[ha],
        &nurse,
        net.network_id(),
        &key_a.bundle_id,
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(refused("not_grantee"), before + 1);
    let (status, _) = clients[ha]
        .request(
            hyper::Method::GET,
            &format!("/v1/bundles/{}", key_a.bundle_id),
            None,
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(status, 401);
    assert_eq!(refused("unsigned"), 1);

    // The grantee's download opens; a tampered one does not.
    let (status, sealed) = sphr_node::cli::consent::download_sealed(
        &clients[ha],
        &doctor,
        net.network_id(),
        &key_a.bundle_id,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(node_a.metrics().vault_bundles_served_total.get() >= 2);
    sphr_node::cli::consent::open_delivered(&doctor, key_a, &sealed).unwrap();
    let mut tampered = sealed.clone();
    let last = tampered.len() - 20;
    tampered[last] ^= 0x01;
    let e = sphr_node::cli::consent::open_delivered(&doctor, key_a, &tampered).unwrap_err();
    assert!(e.to_string().contains("SHA-256"), "{e}");
    // Even past the hash check, the AEAD refuses a changed ciphertext.
    let aad = sphr_node::vault::bundle_key_aad(
        &key_a.request_id,
        &key_a.hospital,
        &key_a.bundle_id,
        &key_a.bundle_hash,
    );
    let raw = sphr_crypto::pre::open(
        doctor.pre.as_ref().unwrap(),
        &sphr_crypto::pre::Sealed::from_bytes(&key_a.sealed_key).unwrap(),
        &aad,
    )
    .unwrap();
    let bundle_key: [u8; 32] = raw.as_slice().try_into().unwrap();
    let mut sb = sphr_vault::SealedBundle::from_bytes(&sealed, sealed.len()).unwrap();
    assert!(sphr_vault::open_bundle(&sb, &bundle_key).is_ok());
    sb.ciphertext[7] ^= 0x80;
    assert!(matches!(
        sphr_vault::open_bundle(&sb, &bundle_key),
        Err(sphr_vault::VaultError::Unseal)
    ));
    // The nurse cannot open the doctor's key either.
    assert!(
        sphr_crypto::pre::open(
            nurse.pre.as_ref().unwrap(),
            &sphr_crypto::pre::Sealed::from_bytes(&key_a.sealed_key).unwrap(),
            &aad,
        )
        .is_err()
    );

    // A registered professional without a rule is DENIED, with the reason on chain.
    let out = ok(
        "nurse request",
        net.cli(
            "nurse1",
            "HospA",
            &[
                "consent",
                "request",
                "--patient",
                "patient1@PatientOrg",
                "--tags",
                "OPERATION",
                "--hospitals",
                "HospA",
            ],
        )
        .await,
    );
    assert!(out.contains("DENIED"), "{out}");
    let denied_id = first_hex_after(&out, "request ");
    let audit = ok(
        "audit",
        net.cli("patient1", "PatientOrg", &["consent", "audit"])
            .await,
    );
    assert!(audit.contains("2 access record(s)"), "{audit}");
    let line = audit
        .lines()
        .find(|l| l.contains(&denied_id.to_hex()))
        .unwrap();
    assert!(
        line.contains("DENIED to nurse1@HospA") && line.contains("no rule grants tag OPERATION"),
        "{line}"
    );
    // Nothing was packaged for the denial.
    assert_eq!(delivered(nodes[ha].as_ref().unwrap()), 1);

    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}
