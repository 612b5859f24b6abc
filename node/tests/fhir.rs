//! FHIR R4 export on a one-node network: rules created with the CLI come back from `sphr-node
//! fhir consent` as Consent resources stating the same permit/deny, actor, period, classes and
//! purpose, field by field; every access record comes back from `sphr-node fhir audit` as
//! exactly one AuditEvent with the right outcome; the JSON endpoints answer the patient and an
//! auditor only, and only to signed requests; a bundle packaged from the SMR01 fixtures
//! converts to a collection Bundle with stable ids.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sphr_contracts::consent::{
    AccessRecord, Action, AuditTrail, GetAuditTrail, Grantee, Identity as Party, ListRules,
    RegisterHospital, RegisterPatient, RegisterStaff, RequestAccess, Rule, RuleList,
};
use sphr_crypto::hash::Hash32;
use sphr_node::client::{Client, make_proposal};
use sphr_node::fhir::instant;
use sphr_node::genesis::NetworkManifest;
use sphr_node::identity::Identity;
use sphr_node::service::RunningNode;

const SPEC: &str = r#"
network = "fhir-test"
[block]
max_tx = 50
batch_timeout_ms = 10
[raft]
tick_ms = 20
election_ticks = 10
heartbeat_ticks = 2
[[orgs]]
name = "HospitalOrg"
[[orgs.nodes]]
name = "node0"
api_port = 17443
p2p_port = 17000
ops_port = 19443
[[orgs.users]]
name = "admin"
role = "admin"
[[orgs.users]]
name = "doctor1"
role = "doctor"
[[orgs.users]]
name = "clerk"
role = "client"
[[orgs]]
name = "PatientOrg"
[[orgs.users]]
name = "patient1"
role = "patient"
[[orgs.users]]
name = "auditor1"
role = "auditor"
[[contracts]]
name = "consent"
policy = "ANY"
"#;

struct Net {
    dir: tempfile::TempDir,
    net: PathBuf,
    manifest: NetworkManifest,
    node: Option<RunningNode>,
    client: Client,
    url: String,
}

impl Net {
    async fn start() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let (net, manifest) = common::generate_network(dir.path(), SPEC, "fhir.toml");
        let n = &manifest.nodes[0];
        let cfg = format!(
            "[node]\ngenesis = \"{g}\"\nidentity = \"{i}\"\ndata_dir = \"{d}\"\n[api]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{c}\"\ntls_key = \"{k}\"\n[ops]\nlisten = \"127.0.0.1:0\"\n[log]\nfilter = \"warn\"\n",
            g = net.join(&manifest.genesis_block).display(),
            i = net.join(&n.identity).display(),
            d = dir.path().join("data").display(),
            c = net.join(&n.tls_cert).display(),
            k = net.join(&n.tls_key).display(),
        );
        let p = dir.path().join("node.toml");
        std::fs::write(&p, cfg).unwrap();
        let cfg = sphr_node::config::NodeConfig::load(&p).unwrap();
        let node = sphr_node::service::start(&cfg).await.unwrap();
        let url = format!("https://{}", node.api_addr());
        let tls = sphr_node::tls::client_config(&net.join("tls-ca.pem")).unwrap();
        let client = Client::new(&url, tls).unwrap();
        common::wait_for(Duration::from_secs(20), || async {
            client.status().await.ok()?.leader.map(|_| ())
        })
        .await;
        Net {
            dir,
            net,
            manifest,
            node: Some(node),
            client,
            url,
        }
    }

    fn user(&self, name: &str) -> Identity {
        let u = self.manifest.users.iter().find(|u| u.name == name).unwrap();
        Identity::load(&self.net.join(&u.identity)).unwrap()
    }

    fn network_id(&self) -> Hash32 {
        Hash32::from_hex(&self.manifest.network_id).unwrap()
    }

    async fn submit<A: Serialize>(&self, user: &str, function: &str, arg: &A) -> Vec<u8> {
        let arg = sphr_crypto::cbor::to_vec(arg).unwrap();
        let (_, sp) = make_proposal(
            &self.user(user),
            self.network_id(),
            "consent",
            function,
            [arg],
        )
        .unwrap();
        let r = self.client.submit(&sp, true).await.unwrap();
        assert_eq!(r.code.as_deref(), Some("VALID"), "{function} by {user}");
        hex::decode(r.response_hex).unwrap()
    }

    async fn query<A: Serialize, R: DeserializeOwned>(
        &self,
        user: &str,
        function: &str,
        arg: &A,
    ) -> R {
        let arg = sphr_crypto::cbor::to_vec(arg).unwrap();
        let (_, sp) = make_proposal(
            &self.user(user),
            self.network_id(),
            "consent",
            function,
            [arg],
        )
        .unwrap();
        let r = self.client.query(&sp).await.unwrap();
        sphr_crypto::cbor::from_slice(&hex::decode(r.response_hex).unwrap(), 1 << 24).unwrap()
    }

    /// Runs the sphr-node CLI as `user@org`; returns stdout, or panics with stderr.
    async fn cli(&self, user: &str, args: &[&str]) -> String {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sphr-node"));
        cmd.args(args);
        if !user.is_empty() {
            cmd.args(["--network"])
                .arg(&self.net)
                .args(["--node", &self.url, "--user", user]);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "sphr-node {args:?} as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A GET signed by `user` (none: unsigned).
    async fn signed_get(&self, user: Option<&str>, path: &str) -> (u16, String) {
        let headers = match user {
            Some(u) => sphr_node::signed_request::sign(
                &self.user(u),
                self.network_id(),
                "GET",
                path,
                sphr_node::now_ms(),
            )
            .unwrap(),
            None => vec![],
        };
        let (status, body) = self
            .client
            .request_with_headers(Method::GET, path, None, &headers, Vec::new())
            .await
            .unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

fn entries(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect()
}

fn codes(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["code"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_and_audit_export_round_trip() {
    let mut net = Net::start().await;
    let patient = Party::new("PatientOrg", "patient1");

    // The hospital, its doctor, the patient.
    net.submit(
        "admin",
        "registerHospital",
        &RegisterHospital {
            hospital: "HospitalOrg".into(),
            departments: vec!["cardiology".into()],
            allowed_tags: vec!["ADMISSIONS".into(), "CONDITIONS".into(), "OPERATION".into()],
            max_rule_days: 365,
        },
    )
    .await;
    net.submit(
        "admin",
        "registerStaff",
        &RegisterStaff {
            id: "doctor1".into(),
            department: "cardiology".into(),
        },
    )
    .await;
    net.submit(
        "patient1",
        "registerPatient",
        &RegisterPatient { patient_id: None },
    )
    .await;

    // Rules, with the CLI: an ALLOW to the doctor, a DENY to the department, and one revoked.
    let now = sphr_node::now_ms();
    let from = (now - 60_000).to_string();
    let until = (now + 20 * 86_400_000).to_string();
    net.cli(
        "patient1@PatientOrg",
        &[
            "consent",
            "rule",
            "create",
            "--grantee",
            "doctor1@HospitalOrg",
            "--tags",
            "ADMISSIONS,CONDITIONS",
            "--purpose",
            "follow-up care",
            "--days",
            "30",
        ],
    )
    .await;
    net.cli(
        "patient1@PatientOrg",
        &[
            "consent",
            "rule",
            "create",
            "--department",
            "cardiology@HospitalOrg",
            "--deny",
            "--tags",
            "OPERATION",
            "--purpose",
            "no surgery data",
            "--from-ms",
            &from,
            "--until-ms",
            &until,
        ],
    )
    .await;
    net.cli(
        "patient1@PatientOrg",
        &[
            "consent",
            "rule",
            "create",
            "--grantee",
            "doctor1@HospitalOrg",
            "--tags",
            "OPERATION",
            "--days",
            "7",
        ],
    )
    .await;
    let list: RuleList = net
        .query("patient1", "listRules", &ListRules { patient: None })
        .await;
    assert_eq!(list.rules.len(), 3);
    let to_revoke = list
        .rules
        .iter()
        .find(|r| r.action == Action::Allow && r.tags == ["OPERATION"])
        .unwrap()
        .rule_id
        .to_hex();
    net.cli(
        "patient1@PatientOrg",
        &["consent", "rule", "revoke", &to_revoke],
    )
    .await;
    let rules: Vec<Rule> = net
        .query::<_, RuleList>("patient1", "listRules", &ListRules { patient: None })
        .await
        .rules;

    // Round trip: every rule is one Consent stating the same things, field by field.
    let out = net
        .cli(
            "patient1@PatientOrg",
            &["fhir", "consent", "--patient", "patient1@PatientOrg"],
        )
        .await;
    let bundle: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    let consents = entries(&bundle);
    assert_eq!(consents.len(), rules.len());
    let by_id: BTreeMap<&str, &Value> = consents
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), *c))
        .collect();
    assert_eq!(by_id.len(), rules.len(), "consent ids are not unique");
    for r in &rules {
        let c = by_id[r.rule_id.to_hex().as_str()];
        assert_eq!(c["resourceType"], "Consent");
        assert_eq!(c["identifier"][0]["value"], r.rule_id.to_hex());
        assert_eq!(c["patient"]["identifier"]["value"], "patient1@PatientOrg");
        let p = &c["provision"];
        let want_type = match r.action {
            Action::Allow => "permit",
            Action::Deny => "deny",
        };
        assert_eq!(p["type"], want_type);
        let want_actor = match &r.grantee {
            Grantee::Professional { org, id } => ("urn:sphr:identity", format!("{id}@{org}")),
            Grantee::Department { org, department } => {
                ("urn:sphr:department", format!("{department}@{org}"))
            }
        };
        let actor = &p["actor"][0]["reference"]["identifier"];
        assert_eq!(actor["system"], want_actor.0);
        assert_eq!(actor["value"], want_actor.1);
        assert_eq!(p["period"]["start"], instant(r.valid_from_ms));
        assert_eq!(p["period"]["end"], instant(r.valid_until_ms));
        assert_eq!(codes(&p["class"]), r.tags);
        if r.purpose.is_empty() {
            assert!(p.get("purpose").is_none());
        } else {
            assert_eq!(p["purpose"][0]["display"], r.purpose.as_str());
        }
        let want_status = if r.revoked_ms.is_some() {
            "inactive"
        } else {
            "active"
        };
        assert_eq!(c["status"], want_status, "rule {}", r.rule_id);
    }
    // The DENY to the department, with the window given on the command line.
    let deny = rules.iter().find(|r| r.action == Action::Deny).unwrap();
    assert_eq!(deny.valid_from_ms.to_string(), from);
    assert_eq!(
        by_id[deny.rule_id.to_hex().as_str()]["provision"]["period"]["end"],
        instant(until.parse().unwrap())
    );
    // Stable: the same rules export to the same resources.
    let again: Value = serde_json::from_str(
        &net.cli(
            "patient1@PatientOrg",
            &["fhir", "consent", "--patient", "patient1@PatientOrg"],
        )
        .await,
    )
    .unwrap();
    assert_eq!(again["id"], bundle["id"]);
    assert_eq!(again["entry"], bundle["entry"]);

    // Access requests: granted, denied by the DENY rule, and by someone who is no professional.
    let request = |tags: &[&str]| RequestAccess {
        patient: patient.clone(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        hospitals: vec!["HospitalOrg".into()],
        purpose: "ward round".into(),
    };
    let mut made: Vec<AccessRecord> = Vec::new();
    for (user, tags) in [
        ("doctor1", &["ADMISSIONS"][..]),
        ("doctor1", &["OPERATION"][..]),
        ("clerk", &["ADMISSIONS"][..]),
        ("doctor1", &["ADMISSIONS", "OPERATION"][..]),
    ] {
        let resp = net.submit(user, "requestAccess", &request(tags)).await;
        made.push(sphr_crypto::cbor::from_slice(&resp, 1 << 20).unwrap());
    }
    let trail: AuditTrail = net
        .query(
            "patient1",
            "getAuditTrail",
            &GetAuditTrail {
                patient: patient.clone(),
                after: None,
                limit: None,
            },
        )
        .await;
    assert_eq!(trail.records.len(), made.len());

    for who in ["patient1@PatientOrg", "auditor1@PatientOrg"] {
        let out = net
            .cli(who, &["fhir", "audit", "--patient", "patient1@PatientOrg"])
            .await;
        let bundle: Value = serde_json::from_str(&out).unwrap();
        let events = entries(&bundle);
        assert_eq!(
            events.len(),
            trail.records.len(),
            "one AuditEvent per record"
        );
        for rec in &trail.records {
            let id = rec.request_id.to_hex();
            let matching: Vec<&&Value> = events.iter().filter(|e| e["id"] == id).collect();
            assert_eq!(matching.len(), 1, "record {id}");
            let e = matching[0];
            assert_eq!(e["resourceType"], "AuditEvent");
            assert_eq!(e["recorded"], instant(rec.time_ms));
            assert_eq!(
                e["agent"][0]["who"]["identifier"]["value"],
                rec.requester.to_string()
            );
            assert_eq!(codes(&e["entity"][0]["securityLabel"]), rec.tags);
            let desc = e["outcomeDesc"].as_str().unwrap();
            match &rec.decision {
                sphr_contracts::consent::Decision::Granted { .. } => {
                    assert_eq!(e["outcome"], "0");
                    assert!(desc.starts_with("granted"), "{desc}");
                }
                sphr_contracts::consent::Decision::Denied { reason, .. } => {
                    let want = if rec.requester.id == "clerk" {
                        "8"
                    } else {
                        "4"
                    };
                    assert_eq!(e["outcome"], want, "{desc}");
                    assert!(desc.contains(reason.as_str()), "{desc} lacks {reason}");
                }
            }
        }
        let outcomes: Vec<&str> = made
            .iter()
            .map(|m| {
                events
                    .iter()
                    .find(|e| e["id"] == m.request_id.to_hex())
                    .unwrap()["outcome"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(outcomes, ["0", "4", "8", "0"]);
    }

    // The endpoints: signed by the patient or an auditor only.
    let path = "/v1/fhir/Consent?patient=patient1%40PatientOrg";
    let (s, body) = net.signed_get(Some("auditor1"), path).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["entry"], bundle_entries_of(&net, "patient1").await);
    for (user, want) in [(None, 401), (Some("doctor1"), 403), (Some("clerk"), 403)] {
        let (s, body) = net.signed_get(user, path).await;
        assert_eq!(s, want, "{user:?}: {body}");
        assert!(
            !body.contains("follow-up care"),
            "refusal leaks data: {body}"
        );
    }
    let (s, _) = net
        .signed_get(
            Some("patient1"),
            "/v1/fhir/AuditEvent?patient=patient1%40PatientOrg",
        )
        .await;
    assert_eq!(s, 200);
    for bad in [
        "/v1/fhir/AuditEvent",
        "/v1/fhir/AuditEvent?patient=nobody",
        "/v1/fhir/AuditEvent?patient=a%ZZ%40B",
    ] {
        let (s, body) = net.signed_get(Some("patient1"), bad).await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    // A signature for one path does not open another.
    let headers = sphr_node::signed_request::sign(
        &net.user("patient1"),
        net.network_id(),
        "GET",
        "/v1/fhir/AuditEvent?patient=patient1%40PatientOrg",
        sphr_node::now_ms(),
    )
    .unwrap();
    let (s, _) = net
        .client
        .request_with_headers(Method::GET, path, None, &headers, Vec::new())
        .await
        .unwrap();
    assert_eq!(s, 401);

    net.node.take().unwrap().shutdown().await;
    drop(net.dir);
}

async fn bundle_entries_of(net: &Net, user: &str) -> Value {
    let (s, body) = net
        .signed_get(Some(user), "/v1/fhir/Consent?patient=patient1%40PatientOrg")
        .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["entry"].clone()
}

/// A bundle packaged from the SMR01 fixtures, converted with `sphr-node fhir bundle`.
#[test]
fn fixture_bundle_converts_to_a_collection() {
    use sphr_vault::{ColumnControl, HubControl, IngestOptions, SourceFilter, Vault, VaultConfig};
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("vault/tests/fixtures");
    let read = |n: &str| std::fs::read(fixtures.join(n)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .open()
        .unwrap();
    let vault = Vault::open(&db, VaultConfig::new("HospitalOrg")).unwrap();
    let limits = vault.config().limits.clone();
    let c = ColumnControl::parse(
        "smr01_columns.csv",
        read("smr01_columns.csv").as_slice(),
        &limits,
    )
    .unwrap();
    let h =
        HubControl::parse("smr01_hubs.csv", read("smr01_hubs.csv").as_slice(), &limits).unwrap();
    let opts = IngestOptions {
        table_name: "smr01.csv".into(),
        ..IngestOptions::default()
    };
    vault
        .ingest("smr01", read("smr01.csv").as_slice(), &c, &h, &opts, |_| {})
        .unwrap();
    let tags =
        sphr_vault::parse_tag_file("smr01_tags.csv", read("smr01_tags.csv").as_slice(), &limits)
            .unwrap();
    vault.set_tags("smr01", &tags).unwrap();
    let all = [
        "ADMISSIONS",
        "OPERATION",
        "CONDITIONS",
        "BASIC PERSONAL",
        "LOCATION",
    ];
    // Patient A: 6 episodes, 2 demographic versions, operations on 4 of them.
    let bundle = vault
        .package("0101501234", &all, &SourceFilter::All)
        .unwrap();
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, bundle.to_json().unwrap()).unwrap();
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sphr-node"))
            .args(["fhir", "bundle", "--in"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let fb = run();
    assert_eq!(fb["resourceType"], "Bundle");
    assert_eq!(fb["type"], "collection");
    assert_eq!(fb["identifier"]["value"], bundle.id.to_hex());
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for r in entries(&fb) {
        *count
            .entry(r["resourceType"].as_str().unwrap().to_string())
            .or_default() += 1;
        // Every resource is about the patient's hub key, never the CHI.
        assert!(!r.to_string().contains("0101501234"));
    }
    let rows = |sat: &str| {
        bundle
            .satellites
            .iter()
            .filter(|s| s.satellite == sat)
            .map(|s| s.rows.len())
            .sum::<usize>()
    };
    assert_eq!(count["Patient"], rows("sat_person_demographic_details"));
    assert_eq!(
        count["Encounter"],
        rows("sat_time_admissions_date") + rows("sat_event_admission_core")
    );
    assert_eq!(count["Basic"], rows("sat_location_ward_details"));
    let coded = |sat: &str| {
        bundle
            .satellites
            .iter()
            .filter(|s| s.satellite == sat)
            .flat_map(|s| s.rows.iter())
            .map(|r| r.fields.iter().filter(|f| !f.value.is_null()).count())
            .sum::<usize>()
    };
    assert_eq!(count["Condition"], coded("sat_object_conditions_details"));
    assert_eq!(count["Procedure"], coded("sat_object_operations_details"));
    // Stable ids.
    assert_eq!(run(), fb);
    // A file that is not a bundle is refused with a message naming it.
    std::fs::write(&file, "{\"version\": 1}").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sphr-node"))
        .args(["fhir", "bundle", "--in"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bundle.json"));
}
