//! `sphr-node hc` against a three-org network (PatientOrg, HospitalOrg, PharmacyOrg; one node
//! each, healthcare endorsed by a majority): the built binary is run as each person would run
//! it, through their own org's node. The doctor's CLI seals the dosage, the patient's CLI opens
//! it, the pharmacy's CLI opens it re-encrypted only after allow and payment; the refusals of
//! issue #4 exit non-zero with the node's message, and change nothing on any node.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use common::{converge, free_port};
use sphr_node::client::Client;
use sphr_node::service::RunningNode;

struct Net {
    _dir: tempfile::TempDir,
    net: PathBuf,
    nodes: Vec<RunningNode>,
    clients: Vec<Client>,
}

impl Net {
    async fn start() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = String::from(
            "network = \"hc-cli\"\n[block]\nbatch_timeout_ms = 5\n\
             [raft]\ntick_ms = 20\nelection_ticks = 10\nheartbeat_ticks = 2\n",
        );
        for (org, users) in [
            (
                "PatientOrg",
                &[("patient1", "patient"), ("patient2", "patient")][..],
            ),
            (
                "HospitalOrg",
                &[("doctor1", "doctor"), ("nurse1", "nurse")][..],
            ),
            ("PharmacyOrg", &[("pharmacist1", "pharmacist")][..]),
        ] {
            spec.push_str(&format!(
                "[[orgs]]\nname = \"{org}\"\n[[orgs.nodes]]\nname = \"node0\"\napi_port = {}\np2p_port = {}\nops_port = {}\n",
                free_port(),
                free_port(),
                free_port()
            ));
            for (name, role) in users {
                spec.push_str(&format!(
                    "[[orgs.users]]\nname = \"{name}\"\nrole = \"{role}\"\n"
                ));
            }
        }
        spec.push_str("[[contracts]]\nname = \"healthcare\"\npolicy = \"MAJORITY\"\n");
        let (net, m) = common::generate_network(dir.path(), &spec, "hc-cli.toml");
        let (nodes, clients) = common::start_all(dir.path(), &net, &m, true, 2).await;
        Net {
            _dir: dir,
            net,
            nodes,
            clients,
        }
    }

    /// Runs `sphr-node hc <sub> --network .. --user <user> <args>`.
    async fn hc(&self, user: &str, sub: &str, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sphr-node"));
        cmd.arg("hc")
            .arg(sub)
            .arg("--network")
            .arg(&self.net)
            .arg("--user")
            .arg(user)
            .args(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    /// Like [`Net::hc`], and it must succeed; its stdout.
    async fn ok(&self, user: &str, sub: &str, args: &[&str]) -> String {
        let o = self.hc(user, sub, args).await;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{user} hc {sub} {args:?} failed: {}\n{out}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }

    /// `--json` answer of a command that must succeed.
    async fn json(&self, user: &str, sub: &str, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(user, sub, &a).await).unwrap()
    }

    /// Every node's height and tip, once they agree.
    async fn tips(&self) -> (u64, String) {
        let h = self.clients[0].status().await.unwrap().height;
        converge(&self.clients, h, Duration::from_secs(20)).await
    }

    /// The command must exit non-zero, say `expect` on stderr, and change nothing anywhere.
    async fn refused(&self, user: &str, sub: &str, args: &[&str], expect: &str) {
        let before = self.tips().await;
        let o = self.hc(user, sub, args).await;
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{user} hc {sub} was not refused");
        assert!(
            err.contains(expect),
            "{user} hc {sub}: expected {expect:?} in {err}"
        );
        assert!(err.contains("refused by the node"), "{err}");
        assert_eq!(
            self.tips().await,
            before,
            "{user} hc {sub} changed the chain"
        );
    }

    async fn stop(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}

const P: &str = "patient1@PatientOrg";
const D: &str = "doctor1@HospitalOrg";
const F: &str = "pharmacist1@PharmacyOrg";
const N: &str = "nurse1@HospitalOrg";

fn id(v: &serde_json::Value, path: &[&str]) -> String {
    let mut x = v;
    for p in path {
        x = &x[p];
    }
    x.as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_seals_opens_delegates_and_refuses() {
    let net = Net::start().await;

    // An unregistered identity is refused, whatever it calls.
    net.refused(
        "patient2@PatientOrg",
        "request-appointment",
        &["--doctor", D, "--disease", "cardiology"],
        "not registered",
    )
    .await;
    for u in [P, D, F, N] {
        net.ok(u, "register-user", &[]).await;
    }

    let tok = net.net.parent().unwrap().join("token.json");
    let a = net
        .json(
            P,
            "request-appointment",
            &[
                "--doctor",
                D,
                "--disease",
                "endocrinology",
                "--notes",
                "tired and thirsty",
                "--token-out",
                tok.to_str().unwrap(),
            ],
        )
        .await;
    assert_eq!(a["code"], "VALID");
    assert_eq!(a["response"]["status"], "REQUESTED");
    let appt = id(&a, &["response", "appointment_id"]);

    // The patient cannot accept their own appointment; the doctor can.
    net.refused(
        P,
        "accept-appointment",
        &["--appointment", &appt],
        "only the doctor the appointment asks",
    )
    .await;
    let out = net
        .ok(D, "accept-appointment", &["--appointment", &appt])
        .await;
    assert!(out.contains("ACCEPTED"), "{out}");
    // A pharmacy cannot generate a prescription.
    net.refused(
        F,
        "generate-prescription",
        &["--appointment", &appt],
        "only a doctor may generate a prescription",
    )
    .await;
    net.ok(D, "generate-prescription", &["--appointment", &appt])
        .await;

    // The doctor's CLI seals the dosage to the patient's key (found among the doctor's
    // appointments) and the amount to the billing key.
    let bill = net
        .json(
            D,
            "prescribe",
            &[
                "--appointment",
                &appt,
                "--dosage",
                "metformin 500 mg",
                "--amount",
                "50.00",
            ],
        )
        .await;
    assert_eq!(bill["response"]["prescription_status"], "COMPLETE");
    let bill = id(&bill, &["response", "bill", "bill_id"]);

    // The pharmacy asks; the pharmacy and the doctor cannot make the re-encryption key.
    net.ok(F, "request-prescription-others", &["--appointment", &appt])
        .await;
    for who in [F, D] {
        net.refused(
            who,
            "allow-prescription-others",
            &["--appointment", &appt, "--requester", F],
            "only the prescription's patient",
        )
        .await;
    }
    // Unpaid: nobody fetches the prescription, not even an allowed pharmacy.
    net.ok(
        P,
        "allow-prescription-others",
        &["--appointment", &appt, "--requester", F],
    )
    .await;
    net.refused(
        P,
        "get-prescription-patient",
        &["--appointment", &appt],
        "locked",
    )
    .await;
    net.refused(
        F,
        "get-prescription-others",
        &["--appointment", &appt],
        "locked",
    )
    .await;

    // The patient sees the amount (opened with their key), pays; the doctor confirms, unlocks.
    let pending = net
        .ok(P, "get-pending-payment-requests", &["--appointment", &appt])
        .await;
    assert!(pending.contains("50.00 EUR"), "{pending}");
    net.ok(P, "pay-bill", &["--bill", &bill]).await;
    net.ok(D, "confirm-bill-payment", &["--bill", &bill]).await;
    let out = net
        .ok(D, "mark-prescription-paid", &["--appointment", &appt])
        .await;
    assert!(out.contains("PAID"), "{out}");

    // The patient's CLI opens the dosage the doctor's CLI sealed.
    let rx = net
        .json(P, "get-prescription-patient", &["--appointment", &appt])
        .await;
    assert_eq!(rx["opened"]["dosage"], "metformin 500 mg");
    let text = net
        .ok(P, "get-prescription-patient", &["--appointment", &appt])
        .await;
    assert!(text.contains("dosage: metformin 500 mg"), "{text}");
    // The pharmacy's CLI opens it re-encrypted to the pharmacy's key.
    let got = net
        .json(F, "get-prescription-others", &["--appointment", &appt])
        .await;
    assert_eq!(got["opened"]["dosage"], "metformin 500 mg");
    // The nurse has a certificate but no delegation.
    net.refused(
        N,
        "get-prescription-others",
        &["--appointment", &appt],
        "refused by the node (403",
    )
    .await;
    // A pharmacy bill, sealed with the patient's token.
    let pb = net
        .json(
            F,
            "bill-others",
            &["--token", tok.to_str().unwrap(), "--amount", "12.5"],
        )
        .await;
    assert_eq!(pb["response"]["bill"]["kind"], "PHARMACY");
    let bills = net
        .ok(P, "get-bill-status-patient", &["--appointment", &appt])
        .await;
    assert!(bills.contains("12.50 EUR"), "{bills}");

    // No plaintext of a sealed field in any block, on any node.
    let (tip, _) = net.tips().await;
    for node in &net.nodes {
        for n in 1..=tip {
            let raw = node.ledger().block(n).unwrap().unwrap().to_bytes().unwrap();
            for secret in [&b"metformin"[..], b"thirsty"] {
                assert!(
                    !raw.windows(secret.len()).any(|w| w == secret),
                    "plaintext in block {n}"
                );
            }
        }
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_refused_before_anything_is_sent() {
    let net = Net::start().await;
    let before = net.tips().await;
    for (args, expect) in [
        (
            vec!["--appointment", "zz", "--dosage", "x", "--amount", "1"],
            "--appointment: expected 64 hex characters",
        ),
        (
            vec![
                "--appointment",
                &"ab".repeat(32),
                "--dosage",
                "x",
                "--amount",
                "1.234",
            ],
            "at most two decimals",
        ),
        (
            vec![
                "--appointment",
                &"ab".repeat(32),
                "--dosage",
                "x",
                "--amount",
                "1",
                "--currency",
                "euro",
            ],
            "ISO 4217",
        ),
    ] {
        let o = net.hc(D, "prescribe", &args).await;
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{err}");
    }
    // A lab or pharmacy without the patient's token is told where the keys come from.
    let o = net
        .hc(
            F,
            "bill-others",
            &["--appointment", &"ab".repeat(32), "--amount", "1"],
        )
        .await;
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--token-out"));
    assert_eq!(net.tips().await, before);
    net.stop().await;
}
