//! The thesis's two payment scenarios (seed 003, section 5.2.1) end to end on the four-org
//! network (PatientOrg, HospitalOrg, InsuranceOrg, PharmacyOrg), each person submitting through
//! their own org's node, a majority of orgs endorsing every healthcare transaction, with real
//! proxy re-encryption keys from genesis. Sealed fields are opened only by the patient and by
//! those the patient delegated to.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{converge, free_port, wait_for};
use serde_bytes::ByteBuf;
use sphr_contracts::Registry;
use sphr_contracts::healthcare::client::{self as hc, BillAmount, Request};
use sphr_contracts::healthcare::*;
use sphr_crypto::hash::Hash32;
use sphr_node::client::{Client, ClientError, make_proposal};
use sphr_node::genesis::NetworkManifest;
use sphr_node::identity::Identity as Id;
use sphr_node::service::RunningNode;

const DAY: u64 = 86_400_000;

struct Net {
    _dir: tempfile::TempDir,
    net: std::path::PathBuf,
    manifest: NetworkManifest,
    nodes: Vec<RunningNode>,
    clients: Vec<Client>,
}

/// A person: identity, and the client of their org's node.
struct P {
    id: Id,
    client: Client,
}

impl P {
    fn who(&self) -> sphr_contracts::healthcare::Identity {
        sphr_contracts::healthcare::Identity::new(
            &self.id.cert.body.org,
            &self.id.cert.body.subject,
        )
    }
    fn pk(&self) -> ByteBuf {
        ByteBuf::from(self.id.cert.body.pre_public_key.clone().unwrap())
    }
    fn pre(&self) -> &sphr_crypto::pre::PreSecretKey {
        self.id.pre.as_ref().unwrap()
    }
}

impl Net {
    async fn start() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../genesis/four-orgs.toml"),
        )
        .unwrap();
        // Free loopback ports instead of the shipped ones, so tests run side by side.
        let text: String = text
            .lines()
            .map(|l| {
                let t = l.trim_start();
                if t.starts_with("api_port")
                    || t.starts_with("p2p_port")
                    || t.starts_with("ops_port")
                {
                    let key = t.split('=').next().unwrap().trim();
                    format!("{key} = {}", free_port())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let (net, manifest) = common::generate_network(dir.path(), &text, "four-orgs.toml");
        let (nodes, clients) = common::start_all(dir.path(), &net, &manifest, false, 3).await;
        Net {
            _dir: dir,
            net,
            manifest,
            nodes,
            clients,
        }
    }

    fn person(&self, name: &str) -> P {
        let (n, org) = name.split_once('@').unwrap();
        let u = self.manifest.user(org, n).unwrap();
        let id = Id::load(&self.net.join(&u.identity)).unwrap();
        let node = self
            .manifest
            .nodes
            .iter()
            .position(|x| x.org == org)
            .unwrap();
        P {
            id,
            client: self.clients[node].clone(),
        }
    }

    fn network_id(&self) -> Hash32 {
        Hash32::from_hex(&self.manifest.network_id).unwrap()
    }

    /// Runs a request as `who` through their org's node: evaluated if it is a query,
    /// submitted (and waited for) otherwise.
    async fn try_call<R: Request>(&self, who: &P, req: &R) -> Result<R::Response, ClientError> {
        let (f, args) = hc::call(req).unwrap();
        let (_, sp) = make_proposal(&who.id, self.network_id(), "healthcare", f, &args).unwrap();
        let is_query = Registry::with_builtin()
            .get("healthcare")
            .unwrap()
            .is_query(f);
        let hex_out = if is_query {
            who.client.query(&sp).await?.response_hex
        } else {
            let r = who.client.submit(&sp, true).await?;
            assert_eq!(r.code.as_deref(), Some("VALID"), "{f}");
            // The next person may use another org's node: let every node commit this block
            // first (an acknowledgement comes from the submitter's node only).
            let block = r.block.unwrap();
            wait_for(Duration::from_secs(20), || async {
                for c in &self.clients {
                    if c.status().await.ok()?.height < block {
                        return None;
                    }
                }
                Some(())
            })
            .await;
            r.response_hex
        };
        Ok(hc::response::<R>(&hex::decode(hex_out).unwrap()).unwrap())
    }

    async fn call<R: Request>(&self, who: &P, req: &R) -> R::Response {
        self.try_call(who, req)
            .await
            .unwrap_or_else(|e| panic!("{} by {} failed: {e}", R::FUNCTION, who.id.name()))
    }

    async fn stop(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}

struct Cast {
    patient: P,
    doctor: P,
    lab: P,
    insurer: P,
    pharmacy: P,
    nurse: P,
}

async fn cast(net: &Net) -> Cast {
    let c = Cast {
        patient: net.person("patient1@PatientOrg"),
        doctor: net.person("doctor1@HospitalOrg"),
        lab: net.person("lab1@HospitalOrg"),
        insurer: net.person("insurer1@InsuranceOrg"),
        pharmacy: net.person("pharmacist1@PharmacyOrg"),
        nurse: net.person("nurse1@HospitalOrg"),
    };
    for p in [
        &c.patient,
        &c.doctor,
        &c.lab,
        &c.insurer,
        &c.pharmacy,
        &c.nurse,
    ] {
        net.call(
            p,
            &RegisterUser {
                pre_public_key: None,
            },
        )
        .await;
    }
    c
}

async fn appointment(net: &Net, c: &Cast, plan: Option<Hash32>) -> Appointment {
    let a = net
        .call(
            &c.patient,
            &RequestAppointment {
                doctor: c.doctor.who(),
                requested_time_ms: sphr_node::now_ms() + DAY,
                disease_classification: "endocrinology".into(),
                notes: Some(
                    hc::seal_notes(&hc::pre_key(&c.doctor.pk()).unwrap(), b"tired and thirsty")
                        .unwrap(),
                ),
                insurance_plan_id: plan,
                patient_pre_public_key: None,
                billing_pre_public_key: None,
            },
        )
        .await;
    let a = net
        .call(
            &c.doctor,
            &AcceptAppointment {
                appointment_id: a.appointment_id,
            },
        )
        .await;
    net.call(
        &c.doctor,
        &GeneratePrescription {
            appointment_id: a.appointment_id,
        },
    )
    .await;
    a
}

fn amount(a: &Appointment, cents: u64) -> ByteBuf {
    hc::seal_amount(
        &hc::pre_key(&a.billing_pre_public_key).unwrap(),
        &a.appointment_id,
        &BillAmount {
            minor_units: cents,
            currency: "EUR".into(),
        },
    )
    .unwrap()
}

async fn lab_and_dosage(net: &Net, c: &Cast, a: &Appointment, dosage: &[u8]) -> (Bill, Bill) {
    let key = hc::pre_key(&a.patient_pre_public_key).unwrap();
    let lab = net
        .call(
            &c.lab,
            &GenerateBillAndUpdatePrescriptionOthers {
                appointment_id: a.appointment_id,
                lab_report: Some(
                    hc::seal_lab_report(&key, &a.appointment_id, b"glucose 7.9 mmol/L").unwrap(),
                ),
                amount: amount(a, 3_000),
            },
        )
        .await
        .bill;
    let doc = net
        .call(
            &c.doctor,
            &GenerateBillAndUpdatePrescriptionDoctor {
                appointment_id: a.appointment_id,
                dosage: hc::seal_dosage(&key, &a.appointment_id, dosage).unwrap(),
                amount: amount(a, 5_000),
            },
        )
        .await
        .bill;
    (lab, doc)
}

async fn delegate_and_read(net: &Net, c: &Cast, a: &Appointment, dosage: &[u8]) {
    // Before payment: even an allowed pharmacy gets nothing.
    let d = net
        .call(
            &c.pharmacy,
            &RequestPrescriptionOthers {
                appointment_id: a.appointment_id,
            },
        )
        .await;
    net.call(
        &c.patient,
        &AllowPrescriptionOthers {
            appointment_id: a.appointment_id,
            requester: c.pharmacy.who(),
            requester_pre_public_key: d.requester_pre_public_key.clone(),
            rekey: hc::rekey(c.patient.pre(), &d.requester_pre_public_key).unwrap(),
        },
    )
    .await;
    let got = net
        .call(
            &c.pharmacy,
            &GetPrescriptionOthers {
                appointment_id: a.appointment_id,
            },
        )
        .await;
    assert_eq!(
        hc::open_dosage_reencrypted(c.pharmacy.pre(), &a.appointment_id, &got.dosage).unwrap(),
        dosage
    );
    // A third identity with a valid certificate and no delegation: refused by the contract,
    // and the pharmacy's ciphertext in its hands opens to nothing.
    match net
        .try_call(
            &c.nurse,
            &GetPrescriptionOthers {
                appointment_id: a.appointment_id,
            },
        )
        .await
    {
        Err(ClientError::Api { status, .. }) => assert!(status == 403 || status == 404, "{status}"),
        other => panic!("the nurse got the prescription: {:?}", other.is_ok()),
    }
    assert!(hc::open_dosage_reencrypted(c.nurse.pre(), &a.appointment_id, &got.dosage).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn case_one_and_case_two_on_the_four_org_network() {
    let net = Net::start().await;
    let c = cast(&net).await;

    // Case I: the patient pays every bill.
    let a = appointment(&net, &c, None).await;
    let (lab, doc) = lab_and_dosage(&net, &c, &a, b"metformin 500 mg").await;
    // Unpaid: nobody gets the prescription.
    assert!(
        net.try_call(
            &c.patient,
            &GetPrescriptionPatient {
                appointment_id: a.appointment_id
            }
        )
        .await
        .is_err()
    );
    for (b, issuer) in [(&lab, &c.lab), (&doc, &c.doctor)] {
        net.call(&c.patient, &PayBill { bill_id: b.bill_id }).await;
        net.call(issuer, &ConfirmBillPayment { bill_id: b.bill_id })
            .await;
    }
    let rx = net
        .call(
            &c.doctor,
            &MarkPrescriptionPaid {
                appointment_id: a.appointment_id,
            },
        )
        .await;
    assert_eq!(rx.status, PrescriptionStatus::Paid);
    delegate_and_read(&net, &c, &a, b"metformin 500 mg").await;

    // Case II: the insurer pays the bills the patient approved.
    let plan = net
        .call(
            &c.patient,
            &RegisterInsurance {
                insurer: "InsuranceOrg".into(),
                plan_type: "FAMILY".into(),
            },
        )
        .await;
    net.call(
        &c.insurer,
        &AcceptInsuranceRegistrationRequest {
            plan_id: plan.plan_id,
            allocated_insurance_id: "FAM-42".into(),
        },
    )
    .await;
    let plan = net
        .call(
            &c.patient,
            &RegisterInsuranceRequestStatus {
                plan_id: plan.plan_id,
            },
        )
        .await;
    let a = appointment(&net, &c, Some(plan.plan_id)).await;
    let (lab, doc) = lab_and_dosage(&net, &c, &a, b"iron 65 mg").await;
    // An insurer cannot pay a bill the patient did not approve.
    assert!(
        net.try_call(
            &c.insurer,
            &PayInsurancePaymentRequests {
                bill_ids: vec![lab.bill_id]
            }
        )
        .await
        .is_err()
    );
    let insurer_key = plan.insurer_pre_public_key.clone().unwrap();
    for b in [&lab, &doc] {
        net.call(
            &c.patient,
            &ApprovePaymentRequest {
                bill_id: b.bill_id,
                insurer_pre_public_key: insurer_key.clone(),
                rekey: hc::rekey(c.patient.pre(), &insurer_key).unwrap(),
            },
        )
        .await;
    }
    let mut total = 0;
    for b in [&lab, &doc] {
        let ib = net
            .call(&c.insurer, &GetBillStatusInsurance { bill_id: b.bill_id })
            .await;
        total += hc::open_amount_reencrypted(c.insurer.pre(), &a.appointment_id, &ib.amount)
            .unwrap()
            .minor_units;
    }
    assert_eq!(total, 8_000);
    net.call(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![lab.bill_id, doc.bill_id],
        },
    )
    .await;
    for (b, issuer) in [(&lab, &c.lab), (&doc, &c.doctor)] {
        net.call(issuer, &ConfirmBillPayment { bill_id: b.bill_id })
            .await;
    }
    net.call(
        &c.doctor,
        &MarkPrescriptionPaid {
            appointment_id: a.appointment_id,
        },
    )
    .await;
    delegate_and_read(&net, &c, &a, b"iron 65 mg").await;

    // Every node holds the same chain, and no plaintext of a sealed field is in any block.
    let tip = net.clients[0].status().await.unwrap().height;
    converge(&net.clients, tip, Duration::from_secs(30)).await;
    for n in 1..=tip {
        let rec = net.nodes[0].ledger().block(n).unwrap().unwrap();
        let raw = rec.to_bytes().unwrap();
        for secret in [&b"metformin"[..], b"iron 65", b"glucose", b"thirsty"] {
            assert!(
                !raw.windows(secret.len()).any(|w| w == secret),
                "plaintext in block {n}"
            );
        }
    }
    net.stop().await;
}
