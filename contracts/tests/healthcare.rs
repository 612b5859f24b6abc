//! The healthcare contract through its public API only (the registry, the request types and
//! `healthcare::client`), on a small ledger double that applies a transaction's writes and
//! events only when the call succeeds (as the committer does), with real PRE keys: Case I and
//! Case II of seed 003 (section 5.2.1) end to end, the refusals of the acceptance criteria,
//! delegation to a pharmacy, and determinism across two state copies.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_bytes::ByteBuf;
use sphr_contracts::healthcare::client::{self, BillAmount, Field, Request};
use sphr_contracts::healthcare::*;
use sphr_contracts::{Caller, Contract, ContractError, Ctx, KvPairs, MAX_RANGE_LEN, Registry};
use sphr_crypto::cert::Role;
use sphr_crypto::hash::{Hash32, sha256, sha256_parts};
use sphr_crypto::keys::SecretKey;
use sphr_crypto::pre::{self, PreSecretKey, ReSealed, Sealed};

const T0: u64 = 1_700_000_000_000;
const DAY: u64 = 86_400_000;

type State = BTreeMap<Vec<u8>, Vec<u8>>;
type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Committed state and events; each call runs in a [`Tx`] and commits only on success.
struct Ledger {
    contract: Arc<dyn Contract>,
    state: State,
    events: Vec<(String, Vec<u8>)>,
    txs: u64,
    now: u64,
    /// The messages of the errors [`Ledger::err`] saw.
    errors: Vec<String>,
}

struct Tx<'a> {
    committed: &'a State,
    writes: WriteSet,
    events: Vec<(String, Vec<u8>)>,
    caller: Caller,
    tx_id: Hash32,
    now: u64,
}

impl Ctx for Tx<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError> {
        Ok(match self.writes.get(key) {
            Some(w) => w.clone(),
            None => self.committed.get(key).cloned(),
        })
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ContractError> {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), ContractError> {
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }
    fn range(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<KvPairs, ContractError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let mut merged: WriteSet = self
            .committed
            .range(start.to_vec()..end.to_vec())
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        for (k, w) in self.writes.range(start.to_vec()..end.to_vec()) {
            merged.insert(k.clone(), w.clone());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .take(limit.min(MAX_RANGE_LEN))
            .collect())
    }
    fn caller(&self) -> &Caller {
        &self.caller
    }
    fn tx_id(&self) -> Hash32 {
        self.tx_id
    }
    fn tx_time_ms(&self) -> u64 {
        self.now
    }
    fn emit(&mut self, name: &str, payload: &[u8]) -> Result<(), ContractError> {
        self.events.push((name.to_string(), payload.to_vec()));
        Ok(())
    }
}

/// A certificate holder, as the contract sees it, with a fresh PRE key pair.
struct Person {
    org: &'static str,
    id: &'static str,
    role: Role,
    pre: PreSecretKey,
}

impl Person {
    fn new(role: Role, org: &'static str, id: &'static str) -> Self {
        Person {
            org,
            id,
            role,
            pre: PreSecretKey::generate().unwrap(),
        }
    }

    fn caller(&self) -> Caller {
        Caller {
            id: self.id.into(),
            org: self.org.into(),
            role: self.role,
            public_key: SecretKey::from_bytes(&sha256(self.id.as_bytes()).0).public_key(),
            pre_public_key: Some(self.pre.public_key().to_bytes().to_vec()),
        }
    }

    fn who(&self) -> Identity {
        Identity::new(self.org, self.id)
    }

    fn pk(&self) -> ByteBuf {
        ByteBuf::from(self.pre.public_key().to_bytes().to_vec())
    }
}

/// The four orgs of seed 003 (table 5.1) and one outsider with a valid certificate.
struct Net {
    patient: Person,
    doctor: Person,
    lab: Person,
    insurer: Person,
    pharmacy: Person,
    third: Person,
}

impl Net {
    fn new() -> Self {
        Net {
            patient: Person::new(Role::Patient, "PatientOrg", "patient1"),
            doctor: Person::new(Role::Doctor, "HospitalOrg", "doctor1"),
            lab: Person::new(Role::Lab, "HospitalOrg", "lab1"),
            insurer: Person::new(Role::Insurer, "InsuranceOrg", "insurer1"),
            pharmacy: Person::new(Role::Pharmacist, "PharmacyOrg", "pharmacist1"),
            third: Person::new(Role::Pharmacist, "PharmacyOrg", "pharmacist2"),
        }
    }

    fn everyone(&self) -> [&Person; 6] {
        [
            &self.patient,
            &self.doctor,
            &self.lab,
            &self.insurer,
            &self.pharmacy,
            &self.third,
        ]
    }
}

impl Ledger {
    fn new() -> Self {
        Ledger {
            contract: Registry::with_builtin().get("healthcare").unwrap().clone(),
            state: BTreeMap::new(),
            events: Vec::new(),
            txs: 0,
            now: T0,
            errors: Vec::new(),
        }
    }

    /// Runs one transaction; returns the response and the write set, committing on success.
    fn run(
        &mut self,
        who: &Person,
        function: &str,
        args: &[Vec<u8>],
    ) -> Result<(Vec<u8>, WriteSet), ContractError> {
        self.txs += 1;
        let mut tx = Tx {
            committed: &self.state,
            writes: BTreeMap::new(),
            events: Vec::new(),
            caller: who.caller(),
            tx_id: sha256_parts(&[b"test tx", &self.txs.to_be_bytes()]),
            now: self.now,
        };
        let out = self.contract.invoke(&mut tx, function, args)?;
        let (writes, events) = (tx.writes, tx.events);
        for (k, w) in &writes {
            match w {
                Some(v) => self.state.insert(k.clone(), v.clone()),
                None => self.state.remove(k),
            };
        }
        self.events.extend(events);
        Ok((out, writes))
    }

    fn try_call<R: Request>(
        &mut self,
        who: &Person,
        req: &R,
    ) -> Result<R::Response, ContractError> {
        let (f, args) = client::call(req).unwrap();
        let (out, _) = self.run(who, f, &args)?;
        Ok(client::response::<R>(&out).unwrap())
    }

    fn call<R: Request>(&mut self, who: &Person, req: &R) -> R::Response {
        self.try_call(who, req)
            .unwrap_or_else(|e| panic!("{} by {} failed: {e}", R::FUNCTION, who.id))
    }

    /// The call's error; asserts that the state and the events are as before.
    fn err<R: Request>(&mut self, who: &Person, req: &R) -> ContractError {
        let (state, events) = (self.state.clone(), self.events.len());
        let e = match self.try_call(who, req) {
            Ok(_) => panic!("{} by {} succeeded", R::FUNCTION, who.id),
            Err(e) => e,
        };
        assert_eq!(self.state, state, "{} changed state", R::FUNCTION);
        assert_eq!(self.events.len(), events);
        self.errors.push(e.to_string());
        e
    }
}

/// A ledger where everyone in `net` is registered.
fn registered(net: &Net) -> Ledger {
    let mut l = Ledger::new();
    for p in net.everyone() {
        l.call(
            p,
            &RegisterUser {
                pre_public_key: None,
            },
        );
    }
    l
}

fn appointment(l: &mut Ledger, net: &Net, plan: Option<Hash32>) -> Appointment {
    let doctor_key = client::pre_key(&net.doctor.pk()).unwrap();
    let a = l.call(
        &net.patient,
        &RequestAppointment {
            doctor: net.doctor.who(),
            requested_time_ms: T0 + DAY,
            disease_classification: "endocrinology".into(),
            notes: Some(client::seal_notes(&doctor_key, b"tired, thirsty").unwrap()),
            insurance_plan_id: plan,
            patient_pre_public_key: None,
            billing_pre_public_key: None,
        },
    );
    let a = l.call(
        &net.doctor,
        &AcceptAppointment {
            appointment_id: a.appointment_id,
        },
    );
    l.call(
        &net.doctor,
        &GeneratePrescription {
            appointment_id: a.appointment_id,
        },
    );
    a
}

fn sealed_amount(a: &Appointment, cents: u64) -> ByteBuf {
    client::seal_amount(
        &client::pre_key(&a.billing_pre_public_key).unwrap(),
        &a.appointment_id,
        &BillAmount {
            minor_units: cents,
            currency: "EUR".into(),
        },
    )
    .unwrap()
}

fn add_lab_report(l: &mut Ledger, net: &Net, a: &Appointment, text: &[u8]) -> Bill {
    let key = client::pre_key(&a.patient_pre_public_key).unwrap();
    l.call(
        &net.lab,
        &GenerateBillAndUpdatePrescriptionOthers {
            appointment_id: a.appointment_id,
            lab_report: Some(client::seal_lab_report(&key, &a.appointment_id, text).unwrap()),
            amount: sealed_amount(a, 3_000),
        },
    )
    .bill
}

fn add_dosage(l: &mut Ledger, net: &Net, a: &Appointment, dosage: &[u8]) -> Bill {
    let key = client::pre_key(&a.patient_pre_public_key).unwrap();
    l.call(
        &net.doctor,
        &GenerateBillAndUpdatePrescriptionDoctor {
            appointment_id: a.appointment_id,
            dosage: client::seal_dosage(&key, &a.appointment_id, dosage).unwrap(),
            amount: sealed_amount(a, 5_000),
        },
    )
    .bill
}

fn ask_and_allow(l: &mut Ledger, net: &Net, a: &Appointment, who: &Person) {
    let d = l.call(
        who,
        &RequestPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    l.call(
        &net.patient,
        &AllowPrescriptionOthers {
            appointment_id: a.appointment_id,
            requester: who.who(),
            requester_pre_public_key: d.requester_pre_public_key.clone(),
            rekey: client::rekey(&net.patient.pre, &d.requester_pre_public_key).unwrap(),
        },
    );
}

fn pays_and_confirms(l: &mut Ledger, net: &Net, bill: &Bill, issuer: &Person) {
    l.call(
        &net.patient,
        &PayBill {
            bill_id: bill.bill_id,
        },
    );
    l.call(
        issuer,
        &ConfirmBillPayment {
            bill_id: bill.bill_id,
        },
    );
}

#[test]
fn case_one_patient_without_insurance() {
    let net = Net::new();
    let mut l = registered(&net);
    // 1-2: appointment requested and accepted; empty prescription.
    let a = appointment(&mut l, &net, None);
    assert_eq!(a.status, AppointmentStatus::Accepted);
    // 3: lab report + bill.
    let lab_bill = add_lab_report(&mut l, &net, &a, b"glucose 7.9 mmol/L");
    // 4: the doctor gets access to the reports; they unlock when the lab bill is paid.
    ask_and_allow(&mut l, &net, &a, &net.doctor);
    pays_and_confirms(&mut l, &net, &lab_bill, &net.lab);
    let reports = l.call(
        &net.doctor,
        &GetLabReports {
            appointment_id: a.appointment_id,
        },
    );
    let text = client::open_field_reencrypted(
        &net.doctor.pre,
        Field::LabReport,
        &a.appointment_id,
        &reports.reports[0].report,
    )
    .unwrap();
    assert_eq!(text, b"glucose 7.9 mmol/L");
    // 5: dosage + bill: COMPLETE.
    let dosage_bill = add_dosage(&mut l, &net, &a, b"metformin 500 mg, twice a day");
    let pending = l.call(
        &net.patient,
        &GetPendingPaymentRequests {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(pending.bills.len(), 1);
    let amount = client::open_amount(
        &net.patient.pre,
        &a.appointment_id,
        &pending.bills[0].amount,
    )
    .unwrap();
    assert_eq!(amount.minor_units, 5_000);
    // 6: paid, received, unlocked.
    pays_and_confirms(&mut l, &net, &dosage_bill, &net.doctor);
    let rx = l.call(
        &net.doctor,
        &MarkPrescriptionPaid {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(rx.status, PrescriptionStatus::Paid);
    // 7: the patient fetches it.
    let rx = l.call(
        &net.patient,
        &GetPrescriptionPatient {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(
        client::open_dosage(
            &net.patient.pre,
            &a.appointment_id,
            rx.dosage.as_ref().unwrap()
        )
        .unwrap(),
        b"metformin 500 mg, twice a day"
    );
    // 8-9: the pharmacy, with the token, asks; the patient allows; the pharmacy reads.
    ask_and_allow(&mut l, &net, &a, &net.pharmacy);
    let got = l.call(
        &net.pharmacy,
        &GetPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(
        client::open_dosage_reencrypted(&net.pharmacy.pre, &a.appointment_id, &got.dosage).unwrap(),
        b"metformin 500 mg, twice a day"
    );
    // 10-12: pharmacy bill, paid by the patient, confirmed: the medicine ships.
    let pb = l
        .call(
            &net.pharmacy,
            &GenerateBillAndUpdatePrescriptionOthers {
                appointment_id: a.appointment_id,
                lab_report: None,
                amount: sealed_amount(&a, 850),
            },
        )
        .bill;
    pays_and_confirms(&mut l, &net, &pb, &net.pharmacy);
    let bills = l.call(
        &net.patient,
        &GetBillStatusPatient {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(bills.bills.len(), 3);
    assert!(
        bills
            .bills
            .iter()
            .all(|b| b.status == BillStatus::PaymentReceived && b.paid_by == Some(Payer::Patient))
    );
    // No plaintext anywhere in state or events.
    for v in l.state.values().chain(l.events.iter().map(|(_, p)| p)) {
        let s = String::from_utf8_lossy(v);
        assert!(!s.contains("metformin") && !s.contains("glucose") && !s.contains("thirsty"));
    }
}

#[test]
fn case_two_patient_with_insurance() {
    let net = Net::new();
    let mut l = registered(&net);
    // Insurance registration, seen by the insurer on the day's list, accepted.
    let plan = l.call(
        &net.patient,
        &RegisterInsurance {
            insurer: "InsuranceOrg".into(),
            plan_type: "FAMILY".into(),
        },
    );
    let asked = l.call(
        &net.insurer,
        &GetInsuranceRegistrationRequests {
            day: day_of(T0),
            after: None,
            limit: None,
        },
    );
    assert_eq!(asked.plans.len(), 1);
    l.call(
        &net.insurer,
        &AcceptInsuranceRegistrationRequest {
            plan_id: plan.plan_id,
            allocated_insurance_id: "FAM-42".into(),
        },
    );
    let plan = l.call(
        &net.patient,
        &RegisterInsuranceRequestStatus {
            plan_id: plan.plan_id,
        },
    );
    assert_eq!(plan.status, PlanStatus::Accepted);

    // The appointment carries the plan; bills from the lab and the doctor.
    let a = appointment(&mut l, &net, Some(plan.plan_id));
    let lab_bill = add_lab_report(&mut l, &net, &a, b"ferritin low");
    let dosage_bill = add_dosage(&mut l, &net, &a, b"iron 65 mg daily");

    // 6': the patient approves each bill with a re-encryption key to the insurer.
    let insurer_key = plan.insurer_pre_public_key.clone().unwrap();
    for b in [&lab_bill, &dosage_bill] {
        let approved = l.call(
            &net.patient,
            &ApprovePaymentRequest {
                bill_id: b.bill_id,
                insurer_pre_public_key: insurer_key.clone(),
                rekey: client::rekey(&net.patient.pre, &insurer_key).unwrap(),
            },
        );
        assert_eq!(approved.status, BillStatus::Approved);
    }
    // 7': the insurer lists the day's payment requests, reads each amount, pays them all.
    let reqs = l.call(
        &net.insurer,
        &GetInsurancePaymentRequests {
            day: day_of(T0),
            after: None,
            limit: None,
        },
    );
    assert_eq!(reqs.requests.len(), 2);
    let mut total = 0;
    for r in &reqs.requests {
        assert_eq!(r.allocated_insurance_id, "FAM-42");
        let ib = l.call(&net.insurer, &GetBillStatusInsurance { bill_id: r.bill_id });
        total += client::open_amount_reencrypted(&net.insurer.pre, &a.appointment_id, &ib.amount)
            .unwrap()
            .minor_units;
    }
    assert_eq!(total, 8_000);
    l.call(
        &net.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: reqs.requests.iter().map(|r| r.bill_id).collect(),
        },
    );
    // The rest as in Case I.
    for (b, issuer) in [(&lab_bill, &net.lab), (&dosage_bill, &net.doctor)] {
        let s = l.call(issuer, &GetBillStatus { bill_id: b.bill_id });
        assert_eq!(s.status, BillStatus::PaymentSent);
        l.call(issuer, &ConfirmBillPayment { bill_id: b.bill_id });
    }
    l.call(
        &net.doctor,
        &MarkPrescriptionPaid {
            appointment_id: a.appointment_id,
        },
    );
    ask_and_allow(&mut l, &net, &a, &net.pharmacy);
    let got = l.call(
        &net.pharmacy,
        &GetPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(
        client::open_dosage_reencrypted(&net.pharmacy.pre, &a.appointment_id, &got.dosage).unwrap(),
        b"iron 65 mg daily"
    );
    let names: Vec<&str> = l.events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&EVENT_PAYMENT_REQUESTED) && names.contains(&EVENT_INSURANCE_ACCEPTED));
}

#[test]
fn refusals_change_nothing() {
    let net = Net::new();
    let mut l = registered(&net);
    let plan = l.call(
        &net.patient,
        &RegisterInsurance {
            insurer: "InsuranceOrg".into(),
            plan_type: "BASIC".into(),
        },
    );
    l.call(
        &net.insurer,
        &AcceptInsuranceRegistrationRequest {
            plan_id: plan.plan_id,
            allocated_insurance_id: "B-1".into(),
        },
    );
    // A patient accepts their own appointment.
    let req = l.call(
        &net.patient,
        &RequestAppointment {
            doctor: net.doctor.who(),
            requested_time_ms: T0,
            disease_classification: "GP".into(),
            notes: None,
            insurance_plan_id: Some(plan.plan_id),
            patient_pre_public_key: None,
            billing_pre_public_key: None,
        },
    );
    let e = l.err(
        &net.patient,
        &AcceptAppointment {
            appointment_id: req.appointment_id,
        },
    );
    assert!(matches!(e, ContractError::Denied(_)), "{e}");
    l.call(
        &net.doctor,
        &AcceptAppointment {
            appointment_id: req.appointment_id,
        },
    );
    // A pharmacy generates a prescription.
    let e = l.err(
        &net.pharmacy,
        &GeneratePrescription {
            appointment_id: req.appointment_id,
        },
    );
    assert!(matches!(e, ContractError::Denied(_)), "{e}");
    l.call(
        &net.doctor,
        &GeneratePrescription {
            appointment_id: req.appointment_id,
        },
    );
    let a = req;
    let lab_bill = add_lab_report(&mut l, &net, &a, b"ok");
    add_dosage(&mut l, &net, &a, b"rest");
    // An insurer pays a bill the patient did not approve.
    let e = l.err(
        &net.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![lab_bill.bill_id],
        },
    );
    assert!(matches!(e, ContractError::Refused(_)), "{e}");
    // A doctor or a pharmacy makes a re-encryption key for the pharmacy.
    let d = l.call(
        &net.pharmacy,
        &RequestPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    for p in [&net.doctor, &net.pharmacy] {
        let e = l.err(
            p,
            &AllowPrescriptionOthers {
                appointment_id: a.appointment_id,
                requester: net.pharmacy.who(),
                requester_pre_public_key: d.requester_pre_public_key.clone(),
                rekey: client::rekey(&p.pre, &d.requester_pre_public_key).unwrap(),
            },
        );
        assert!(matches!(e, ContractError::Denied(_)), "{e}");
    }
    // Anyone fetches the unpaid prescription.
    let e = l.err(
        &net.patient,
        &GetPrescriptionPatient {
            appointment_id: a.appointment_id,
        },
    );
    assert!(e.to_string().contains("locked"), "{e}");
    for p in [&net.pharmacy, &net.third, &net.doctor, &net.insurer] {
        let e = l.err(
            p,
            &GetPrescriptionOthers {
                appointment_id: a.appointment_id,
            },
        );
        assert!(
            matches!(e, ContractError::Denied(_) | ContractError::Refused(_)),
            "{e}"
        );
    }
    // An unregistered identity calls anything.
    let stranger = Person::new(Role::Patient, "PatientOrg", "stranger");
    let e = l.err(
        &stranger,
        &GetAppointmentStatus {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(
        e.to_string(),
        "access denied: the caller is not registered: call registerUser first"
    );
    let e = l.err(
        &stranger,
        &RegisterInsurance {
            insurer: "InsuranceOrg".into(),
            plan_type: "BASIC".into(),
        },
    );
    assert!(matches!(e, ContractError::Denied(_)), "{e}");
    // No error message names the patient or an org-qualified identity.
    assert!(l.errors.len() >= 10);
    for msg in &l.errors {
        assert!(
            !msg.contains("patient1") && !msg.contains("PatientOrg"),
            "{msg}"
        );
    }
}

#[test]
fn only_an_allowed_pharmacy_decrypts_and_only_after_payment() {
    let net = Net::new();
    let mut l = registered(&net);
    let a = appointment(&mut l, &net, None);
    let dosage_bill = add_dosage(&mut l, &net, &a, b"atorvastatin 20 mg");
    let id = a.appointment_id;

    // Before the patient allows: refused (no delegation).
    l.call(
        &net.pharmacy,
        &RequestPrescriptionOthers { appointment_id: id },
    );
    let e = l.err(&net.pharmacy, &GetPrescriptionOthers { appointment_id: id });
    assert!(matches!(e, ContractError::Denied(_)), "{e}");
    // Allowed, but not paid: refused (locked).
    let d = l.call(
        &net.patient,
        &AllowPrescriptionOthers {
            appointment_id: id,
            requester: net.pharmacy.who(),
            requester_pre_public_key: net.pharmacy.pk(),
            rekey: client::rekey(&net.patient.pre, &net.pharmacy.pk()).unwrap(),
        },
    );
    assert_eq!(d.status, DelegationStatus::Allowed);
    let e = l.err(&net.pharmacy, &GetPrescriptionOthers { appointment_id: id });
    assert!(matches!(e, ContractError::Refused(_)), "{e}");
    // Paid: the pharmacy decrypts.
    pays_and_confirms(&mut l, &net, &dosage_bill, &net.doctor);
    l.call(&net.doctor, &MarkPrescriptionPaid { appointment_id: id });
    let got = l.call(&net.pharmacy, &GetPrescriptionOthers { appointment_id: id });
    let plain = client::open_dosage_reencrypted(&net.pharmacy.pre, &id, &got.dosage).unwrap();
    assert_eq!(plain, b"atorvastatin 20 mg");

    // A third identity with a valid certificate and no delegation: the contract refuses it,
    // asked or not ...
    let e = l.err(&net.third, &GetPrescriptionOthers { appointment_id: id });
    assert!(matches!(e, ContractError::Denied(_)), "{e}");
    l.call(
        &net.third,
        &RequestPrescriptionOthers { appointment_id: id },
    );
    let e = l.err(&net.third, &GetPrescriptionOthers { appointment_id: id });
    assert!(matches!(e, ContractError::Denied(_)), "{e}");
    // ... and with the ciphertexts in hand (the sealed dosage the patient fetched, the
    // re-encrypted one the pharmacy got), its key opens neither.
    let rx = l.call(&net.patient, &GetPrescriptionPatient { appointment_id: id });
    let sealed = rx.dosage.unwrap();
    assert!(client::open_dosage(&net.third.pre, &id, &sealed).is_err());
    assert!(client::open_dosage_reencrypted(&net.third.pre, &id, &got.dosage).is_err());
    // A re-encryption key made by the doctor or the pharmacy (not the patient) for the third
    // identity does not work even if a node applied it: only the patient's secret can make one.
    let s = Sealed::from_bytes(&sealed).unwrap();
    for maker in [&net.doctor, &net.pharmacy] {
        let rk = maker.pre.rekey_to(net.third.pre.public_key());
        let re = pre::reencrypt(&s, &rk).unwrap();
        assert!(client::open_dosage_reencrypted(&net.third.pre, &id, &re.to_bytes()).is_err());
    }
    // Moving the ciphertext to another field or appointment fails to open too.
    assert!(
        client::open_field_reencrypted(&net.pharmacy.pre, Field::LabReport, &id, &got.dosage)
            .is_err()
    );
    let other = Hash32([9; 32]);
    assert!(client::open_dosage_reencrypted(&net.pharmacy.pre, &other, &got.dosage).is_err());
    assert!(ReSealed::from_bytes(&got.dosage).is_ok());
}

#[test]
fn the_same_transaction_on_two_state_copies_is_byte_identical() {
    let net = Net::new();
    let mut l = registered(&net);
    let a = appointment(&mut l, &net, None);
    let b = add_dosage(&mut l, &net, &a, b"x");
    pays_and_confirms(&mut l, &net, &b, &net.doctor);
    l.call(
        &net.doctor,
        &MarkPrescriptionPaid {
            appointment_id: a.appointment_id,
        },
    );
    ask_and_allow(&mut l, &net, &a, &net.pharmacy);

    // Two endorsing nodes hold the same committed state and simulate the same proposal.
    let mut node2 = Ledger::new();
    node2.state = l.state.clone();
    node2.txs = l.txs;
    node2.now = l.now;
    let (f, args) = client::call(&GetPrescriptionOthers {
        appointment_id: a.appointment_id,
    })
    .unwrap();
    let (r1, w1) = l.run(&net.pharmacy, f, &args).unwrap();
    let (r2, w2) = node2.run(&net.pharmacy, f, &args).unwrap();
    assert_eq!(r1, r2);
    assert_eq!(w1, w2);
    assert_eq!(l.state, node2.state);
    assert!(!w1.is_empty());
    let got = client::response::<GetPrescriptionOthers>(&r1).unwrap();
    assert_eq!(
        client::open_dosage_reencrypted(&net.pharmacy.pre, &a.appointment_id, &got.dosage).unwrap(),
        b"x"
    );
}
