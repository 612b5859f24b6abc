//! Unit tests of the healthcare contract on an in-memory `Ctx` with real PRE keys.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use sphr_crypto::hash::{sha256, sha256_parts};
use sphr_crypto::pre::PreSecretKey;

use super::client::{self, BillAmount, Request};
use super::*;
use crate::test_ctx::MemCtx;
use crate::{Caller, KvPairs};

const T0: u64 = 1_700_000_000_000;
const DAY: u64 = MS_PER_DAY;

// ---------------------------------------------------------------------------------------------
// The test double and the cast
// ---------------------------------------------------------------------------------------------

type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// `MemCtx` with a settable caller and time, a tx id that changes on every call, and the write
/// set of the last call.
struct TestCtx {
    mem: MemCtx,
    tx: u64,
    now: u64,
    writes: Writes,
    /// Events emitted by the current call (the node refuses more than `MAX_EVENTS`).
    tx_events: usize,
}

impl Ctx for TestCtx {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError> {
        self.mem.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ContractError> {
        self.writes.push((key.to_vec(), Some(value.to_vec())));
        self.mem.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), ContractError> {
        self.writes.push((key.to_vec(), None));
        self.mem.delete(key)
    }
    fn range(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<KvPairs, ContractError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.mem.range(start, end, limit.min(crate::MAX_RANGE_LEN))
    }
    fn caller(&self) -> &Caller {
        &self.mem.caller
    }
    fn tx_id(&self) -> Hash32 {
        sha256(&self.tx.to_be_bytes())
    }
    fn tx_time_ms(&self) -> u64 {
        self.now
    }
    fn emit(&mut self, name: &str, payload: &[u8]) -> Result<(), ContractError> {
        if self.tx_events >= crate::MAX_EVENTS {
            return Err(ContractError::Limit("too many events".into()));
        }
        self.tx_events += 1;
        self.mem.emit(name, payload)
    }
}

/// A certificate holder with a deterministic PRE key pair.
#[derive(Clone)]
struct Person {
    role: Role,
    org: &'static str,
    id: &'static str,
    pre: Option<PreSecretKey>,
}

/// A PRE key pair derived from `name` (both scalars below the group order: top bits cleared).
fn pre_key(name: &str) -> PreSecretKey {
    let mut b = [0u8; 64];
    b[..32].copy_from_slice(&sha256_parts(&[b"a1", name.as_bytes()]).0);
    b[32..].copy_from_slice(&sha256_parts(&[b"a2", name.as_bytes()]).0);
    b[0] &= 0x3f;
    b[32] &= 0x3f;
    PreSecretKey::from_bytes(&b).unwrap()
}

impl Person {
    fn new(role: Role, org: &'static str, id: &'static str) -> Self {
        Person {
            role,
            org,
            id,
            pre: Some(pre_key(&format!("{id}@{org}"))),
        }
    }
    fn without_pre_key(mut self) -> Self {
        self.pre = None;
        self
    }
    fn caller(&self) -> Caller {
        Caller {
            id: self.id.into(),
            org: self.org.into(),
            role: self.role,
            public_key: sphr_crypto::keys::SecretKey::from_bytes(&sha256(self.id.as_bytes()).0)
                .public_key(),
            pre_public_key: self
                .pre
                .as_ref()
                .map(|k| k.public_key().to_bytes().to_vec()),
        }
    }
    fn who(&self) -> Identity {
        Identity::new(self.org, self.id)
    }
    fn sk(&self) -> &PreSecretKey {
        self.pre.as_ref().unwrap()
    }
    fn pk(&self) -> ByteBuf {
        ByteBuf::from(self.sk().public_key().to_bytes().to_vec())
    }
}

/// Everyone in the tests. Built once (key derivation costs a few milliseconds each).
#[derive(Clone)]
struct Cast {
    patient: Person,
    patient2: Person,
    doctor: Person,
    doctor2: Person,
    lab: Person,
    pharmacy: Person,
    insurer: Person,
    /// A doctor of another hospital: a valid certificate, never delegated to.
    third: Person,
    patients_admin: Person,
    /// Never registered.
    stranger: Person,
}

fn cast() -> &'static Cast {
    static CAST: OnceLock<Cast> = OnceLock::new();
    CAST.get_or_init(|| Cast {
        patient: Person::new(Role::Patient, "PatientOrg", "alice"),
        patient2: Person::new(Role::Patient, "PatientOrg", "bob"),
        doctor: Person::new(Role::Doctor, "HospitalOrg", "dr-house"),
        doctor2: Person::new(Role::Doctor, "HospitalOrg", "dr-wilson"),
        lab: Person::new(Role::Lab, "HospitalOrg", "lab-1"),
        pharmacy: Person::new(Role::Pharmacist, "PharmacyOrg", "pharm-1"),
        insurer: Person::new(Role::Insurer, "InsuranceOrg", "officer-1"),
        third: Person::new(Role::Doctor, "OtherOrg", "dr-eve"),
        patients_admin: Person::new(Role::Admin, "PatientOrg", "admin").without_pre_key(),
        stranger: Person::new(Role::Pharmacist, "PharmacyOrg", "mallory"),
    })
}

type Snapshot = (BTreeMap<Vec<u8>, Vec<u8>>, usize);

impl TestCtx {
    fn new() -> Self {
        TestCtx {
            mem: MemCtx::new(Role::Client),
            tx: 0,
            now: T0,
            writes: Vec::new(),
            tx_events: 0,
        }
    }

    fn raw(&mut self, p: &Person, f: &str, args: &[Vec<u8>]) -> Result<Vec<u8>, ContractError> {
        self.mem.caller = p.caller();
        self.tx += 1;
        self.writes.clear();
        self.tx_events = 0;
        HealthcareContract.invoke(self, f, args)
    }

    fn try_call<R: Request>(&mut self, p: &Person, req: &R) -> Result<R::Response, ContractError> {
        let (f, args) = client::call(req).unwrap();
        let out = self.raw(p, f, &args)?;
        Ok(client::response::<R>(&out).unwrap())
    }

    fn call<R: Request>(&mut self, p: &Person, req: &R) -> R::Response {
        match self.try_call(p, req) {
            Ok(r) => r,
            Err(e) => panic!("{} by {} failed: {e}", R::FUNCTION, p.id),
        }
    }

    /// The call's error; asserts that it changed no state and emitted nothing.
    fn err<R: Request>(&mut self, p: &Person, req: &R) -> ContractError {
        let before = self.snapshot();
        let e = match self.try_call(p, req) {
            Ok(_) => panic!("{} by {} succeeded, expected an error", R::FUNCTION, p.id),
            Err(e) => e,
        };
        assert_eq!(
            self.snapshot(),
            before,
            "{} failed and changed state",
            R::FUNCTION
        );
        assert!(
            self.writes.is_empty(),
            "{} failed after writing",
            R::FUNCTION
        );
        e
    }

    fn snapshot(&self) -> Snapshot {
        (self.mem.state.clone(), self.mem.events.len())
    }

    fn event_names(&self) -> Vec<String> {
        self.mem.events.iter().map(|(n, _)| n.clone()).collect()
    }
}

fn is_denied(e: &ContractError) -> bool {
    matches!(e, ContractError::Denied(_))
}

fn is_refused(e: &ContractError) -> bool {
    matches!(e, ContractError::Refused(_))
}

/// A ledger where everyone in the cast but the stranger is registered.
fn world() -> TestCtx {
    let c = cast();
    let mut t = TestCtx::new();
    for p in [
        &c.patient,
        &c.patient2,
        &c.doctor,
        &c.doctor2,
        &c.lab,
        &c.pharmacy,
        &c.insurer,
        &c.third,
        &c.patients_admin,
    ] {
        let u = t.call(
            p,
            &RegisterUser {
                pre_public_key: None,
            },
        );
        assert_eq!(u.user, p.who());
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Flows: the steps of section 5.2.1, reused by the tests
// ---------------------------------------------------------------------------------------------

mod flows {
    use super::*;

    /// Patient asks the doctor; the doctor accepts and generates the empty prescription.
    pub fn book(t: &mut TestCtx, plan: Option<Hash32>) -> Appointment {
        let c = cast();
        let a = t.call(&c.patient, &request(plan));
        t.call(
            &c.doctor,
            &AcceptAppointment {
                appointment_id: a.appointment_id,
            },
        );
        let rx = t.call(
            &c.doctor,
            &GeneratePrescription {
                appointment_id: a.appointment_id,
            },
        );
        assert_eq!(rx.status, PrescriptionStatus::Empty);
        a
    }

    pub fn request(plan: Option<Hash32>) -> RequestAppointment {
        let c = cast();
        RequestAppointment {
            doctor: c.doctor.who(),
            requested_time_ms: T0 + DAY,
            disease_classification: "cardiology".into(),
            notes: Some(
                client::seal_notes(c.doctor.sk().public_key(), b"chest pain at night").unwrap(),
            ),
            insurance_plan_id: plan,
            patient_pre_public_key: None,
            billing_pre_public_key: None,
        }
    }

    pub fn amount(a: &Appointment, cents: u64) -> ByteBuf {
        let key = client::pre_key(&a.billing_pre_public_key).unwrap();
        client::seal_amount(
            &key,
            &a.appointment_id,
            &BillAmount {
                minor_units: cents,
                currency: "EUR".into(),
            },
        )
        .unwrap()
    }

    /// The lab adds a report and its bill.
    pub fn lab_report(t: &mut TestCtx, a: &Appointment, text: &[u8], cents: u64) -> Bill {
        let key = client::pre_key(&a.patient_pre_public_key).unwrap();
        let report = client::seal_lab_report(&key, &a.appointment_id, text).unwrap();
        t.call(
            &cast().lab,
            &GenerateBillAndUpdatePrescriptionOthers {
                appointment_id: a.appointment_id,
                lab_report: Some(report),
                amount: amount(a, cents),
            },
        )
        .bill
    }

    /// The doctor adds the dosage and its bill: COMPLETE.
    pub fn prescribe(t: &mut TestCtx, a: &Appointment, dosage: &[u8], cents: u64) -> Bill {
        let key = client::pre_key(&a.patient_pre_public_key).unwrap();
        let r = t.call(
            &cast().doctor,
            &GenerateBillAndUpdatePrescriptionDoctor {
                appointment_id: a.appointment_id,
                dosage: client::seal_dosage(&key, &a.appointment_id, dosage).unwrap(),
                amount: amount(a, cents),
            },
        );
        assert_eq!(r.prescription_status, PrescriptionStatus::Complete);
        r.bill
    }

    /// Case I: the patient pays, the issuer confirms.
    pub fn patient_pays(t: &mut TestCtx, bill: &Bill, issuer: &Person) {
        let c = cast();
        let b = t.call(
            &c.patient,
            &PayBill {
                bill_id: bill.bill_id,
            },
        );
        assert_eq!(b.status, BillStatus::PaymentSent);
        let b = t.call(
            issuer,
            &ConfirmBillPayment {
                bill_id: bill.bill_id,
            },
        );
        assert_eq!(b.status, BillStatus::PaymentReceived);
    }

    /// Case II: the patient approves with a re-encryption key to the insurer.
    pub fn approve(t: &mut TestCtx, bill: &Bill) -> Bill {
        let c = cast();
        t.call(
            &c.patient,
            &ApprovePaymentRequest {
                bill_id: bill.bill_id,
                insurer_pre_public_key: c.insurer.pk(),
                rekey: client::rekey(c.patient.sk(), &c.insurer.pk()).unwrap(),
            },
        )
    }

    /// A patient registers a plan and the insurer accepts it.
    pub fn insure(t: &mut TestCtx) -> InsurancePlan {
        let c = cast();
        let p = t.call(
            &c.patient,
            &RegisterInsurance {
                insurer: "InsuranceOrg".into(),
                plan_type: "GOLD".into(),
            },
        );
        t.call(
            &c.insurer,
            &AcceptInsuranceRegistrationRequest {
                plan_id: p.plan_id,
                allocated_insurance_id: "INS-0001".into(),
            },
        )
    }

    /// `requester` asks for the prescription and the patient allows it.
    pub fn delegate(t: &mut TestCtx, a: &Appointment, requester: &Person) -> Delegation {
        let c = cast();
        let d = t.call(
            requester,
            &RequestPrescriptionOthers {
                appointment_id: a.appointment_id,
            },
        );
        assert_eq!(d.status, DelegationStatus::Requested);
        t.call(
            &c.patient,
            &AllowPrescriptionOthers {
                appointment_id: a.appointment_id,
                requester: requester.who(),
                requester_pre_public_key: d.requester_pre_public_key.clone(),
                rekey: client::rekey(c.patient.sk(), &d.requester_pre_public_key).unwrap(),
            },
        )
    }

    /// The doctor marks the prescription PAID.
    pub fn mark_paid(t: &mut TestCtx, a: &Appointment) -> Prescription {
        t.call(
            &cast().doctor,
            &MarkPrescriptionPaid {
                appointment_id: a.appointment_id,
            },
        )
    }

    /// A PAID prescription with one lab report, Case I, with the pharmacy allowed.
    pub fn paid_with_pharmacy(t: &mut TestCtx) -> Appointment {
        let c = cast();
        let a = book(t, None);
        let lb = lab_report(t, &a, b"HbA1c 6.1%", 4_000);
        let db = prescribe(t, &a, b"metformin 500 mg twice daily", 6_000);
        patient_pays(t, &lb, &c.lab);
        patient_pays(t, &db, &c.doctor);
        mark_paid(t, &a);
        delegate(t, &a, &c.pharmacy);
        a
    }
}

use flows::*;

// ---------------------------------------------------------------------------------------------
// The function list
// ---------------------------------------------------------------------------------------------

#[test]
fn all_25_functions_of_table_5_2_and_the_extras_are_served() {
    let mut names: Vec<&str> = TABLE_5_2.to_vec();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 25);
    let all = HealthcareContract.functions();
    assert_eq!(all.len(), 25 + EXTRA_FUNCTIONS.len());
    for f in TABLE_5_2.iter().chain(EXTRA_FUNCTIONS.iter()) {
        assert!(all.contains(f), "{f} not listed");
    }
    let mut t = world();
    for f in all {
        let e = t.raw(&cast().patient, f, &[]).unwrap_err();
        assert!(matches!(e, ContractError::BadArgs(_)), "{f}: {e}");
    }
    assert!(matches!(
        t.raw(&cast().patient, "explode", &[]),
        Err(ContractError::UnknownFunction { .. })
    ));
    for q in QUERIES {
        assert!(HealthcareContract.is_query(q) && all.contains(q));
    }
    assert!(!HealthcareContract.is_query("getPrescriptionOthers"));
    assert!(!HealthcareContract.is_query("requestAppointment"));
}

#[test]
fn status_machines_allow_exactly_the_documented_moves() {
    fn moves<S: Status + std::fmt::Debug>(all: &[S]) -> Vec<(S, S)> {
        let mut out = Vec::new();
        for &a in all {
            for &b in all {
                if a.can_become(b) {
                    out.push((a, b));
                }
            }
        }
        out
    }
    use AppointmentStatus as A;
    use BillStatus as B;
    use PrescriptionStatus as P;
    assert_eq!(
        moves(&[A::Requested, A::Accepted, A::Rejected]),
        vec![(A::Requested, A::Accepted), (A::Requested, A::Rejected)]
    );
    assert_eq!(
        moves(&[P::Empty, P::LabReportsAdded, P::Complete, P::Paid]),
        vec![
            (P::Empty, P::LabReportsAdded),
            (P::Empty, P::Complete),
            (P::LabReportsAdded, P::LabReportsAdded),
            (P::LabReportsAdded, P::Complete),
            (P::Complete, P::Paid),
        ]
    );
    assert_eq!(
        moves(&[
            B::Generated,
            B::Approved,
            B::PaymentSent,
            B::PaymentReceived
        ]),
        vec![
            (B::Generated, B::Approved),
            (B::Generated, B::PaymentSent),
            (B::Approved, B::PaymentSent),
            (B::PaymentSent, B::PaymentReceived),
        ]
    );
    assert_eq!(
        moves(&[PlanStatus::Requested, PlanStatus::Accepted]),
        vec![(PlanStatus::Requested, PlanStatus::Accepted)]
    );
    assert_eq!(
        moves(&[DelegationStatus::Requested, DelegationStatus::Allowed]),
        vec![(DelegationStatus::Requested, DelegationStatus::Allowed)]
    );
    assert_eq!(BillStatus::PaymentSent.to_string(), "PAYMENT_SENT");
    assert_eq!(
        cbor::to_vec(&BillStatus::PaymentReceived).unwrap(),
        cbor::to_vec(&"PAYMENT_RECEIVED").unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Case I and Case II end to end
// ---------------------------------------------------------------------------------------------

#[test]
fn case_one_without_insurance() {
    let c = cast();
    let mut t = world();

    // 1-2. Appointment, accepted; the doctor sees it on the day's list and reads the notes.
    let a = t.call(&c.patient, &request(None));
    assert_eq!(a.status, AppointmentStatus::Requested);
    assert_eq!(a.patient_pre_public_key, c.patient.pk());
    assert_eq!(a.billing_pre_public_key, c.patient.pk());
    let list = t.call(
        &c.doctor,
        &GetAllAppointment {
            day: day_of(T0 + DAY),
            after: None,
            limit: None,
        },
    );
    assert_eq!(list.appointments, vec![a.clone()]);
    let notes = client::open_field(
        c.doctor.sk(),
        client::Field::Notes,
        &Hash32::ZERO,
        a.notes.as_ref().unwrap(),
    )
    .unwrap();
    assert_eq!(notes, b"chest pain at night");
    let acc = t.call(
        &c.doctor,
        &AcceptAppointment {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(acc.status, AppointmentStatus::Accepted);
    assert_eq!(acc.decided_ms, Some(T0));
    t.call(
        &c.doctor,
        &GeneratePrescription {
            appointment_id: a.appointment_id,
        },
    );

    // 3. The lab adds a report and its bill.
    let lab_bill = lab_report(&mut t, &a, b"HbA1c 6.1%", 4_000);
    assert_eq!(lab_bill.kind, BillKind::LabReport);
    assert_eq!(lab_bill.status, BillStatus::Generated);
    assert_eq!(lab_bill.coverage, None);

    // 4. The doctor asks to read it; the patient allows; once the lab bill is paid the doctor
    //    reads the report.
    delegate(&mut t, &a, &c.doctor);
    let r = t.call(
        &c.doctor,
        &GetLabReports {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!((r.reports.len(), r.locked), (0, 1));
    patient_pays(&mut t, &lab_bill, &c.lab);
    let r = t.call(
        &c.doctor,
        &GetLabReports {
            appointment_id: a.appointment_id,
        },
    );
    assert!(r.reencrypted);
    assert_eq!((r.reports.len(), r.locked), (1, 0));
    let text = client::open_field_reencrypted(
        c.doctor.sk(),
        client::Field::LabReport,
        &a.appointment_id,
        &r.reports[0].report,
    )
    .unwrap();
    assert_eq!(text, b"HbA1c 6.1%");

    // 5. Dosage and its bill: COMPLETE.
    let dosage_bill = prescribe(&mut t, &a, b"metformin 500 mg twice daily", 6_000);
    let pending = t.call(
        &c.patient,
        &GetPendingPaymentRequests {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(pending.bills, vec![dosage_bill.clone()]);
    assert_eq!(
        client::open_amount(c.patient.sk(), &a.appointment_id, &dosage_bill.amount).unwrap(),
        BillAmount {
            minor_units: 6_000,
            currency: "EUR".into()
        }
    );

    // 6. The patient pays; the doctor cannot mark it paid before receiving.
    let b = t.call(
        &c.patient,
        &PayBill {
            bill_id: dosage_bill.bill_id,
        },
    );
    assert_eq!(b.paid_by, Some(Payer::Patient));
    let e = t.err(
        &c.doctor,
        &MarkPrescriptionPaid {
            appointment_id: a.appointment_id,
        },
    );
    assert!(is_refused(&e) && e.to_string().contains("1 of the prescription's 2 bills"));
    t.call(
        &c.doctor,
        &ConfirmBillPayment {
            bill_id: dosage_bill.bill_id,
        },
    );
    let status = t.call(
        &c.doctor,
        &GetBillStatus {
            bill_id: dosage_bill.bill_id,
        },
    );
    assert_eq!(status.status, BillStatus::PaymentReceived);
    let rx = mark_paid(&mut t, &a);
    assert_eq!(rx.status, PrescriptionStatus::Paid);

    // 7. The patient fetches and opens the prescription.
    let rx = t.call(
        &c.patient,
        &GetPrescriptionPatient {
            appointment_id: a.appointment_id,
        },
    );
    let dosage = client::open_dosage(
        c.patient.sk(),
        &a.appointment_id,
        rx.dosage.as_ref().unwrap(),
    )
    .unwrap();
    assert_eq!(dosage, b"metformin 500 mg twice daily");

    // 8-9. The pharmacy asks, the patient allows, the pharmacy fetches and opens the dosage.
    delegate(&mut t, &a, &c.pharmacy);
    let got = t.call(
        &c.pharmacy,
        &GetPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    let dosage =
        client::open_dosage_reencrypted(c.pharmacy.sk(), &a.appointment_id, &got.dosage).unwrap();
    assert_eq!(dosage, b"metformin 500 mg twice daily");

    // 10-12. The pharmacy bills; the patient pays; the pharmacy confirms. PAID stays.
    let pb = t.call(
        &c.pharmacy,
        &GenerateBillAndUpdatePrescriptionOthers {
            appointment_id: a.appointment_id,
            lab_report: None,
            amount: amount(&a, 1_250),
        },
    );
    assert_eq!(pb.bill.kind, BillKind::Pharmacy);
    assert_eq!(pb.prescription_status, PrescriptionStatus::Paid);
    patient_pays(&mut t, &pb.bill, &c.pharmacy);
    let all = t.call(
        &c.patient,
        &GetBillStatusPatient {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(all.bills.len(), 3);
    assert!(
        all.bills
            .iter()
            .all(|b| b.status == BillStatus::PaymentReceived)
    );

    // The patient sees who asked and how often they fetched.
    let st = t.call(
        &c.patient,
        &GetAppointmentStatus {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(st.prescription.unwrap().status, PrescriptionStatus::Paid);
    let fetches: Vec<(Identity, u32)> = st
        .delegations
        .iter()
        .map(|d| (d.requester.clone(), d.fetches))
        .collect();
    assert_eq!(fetches, vec![(c.doctor.who(), 0), (c.pharmacy.who(), 1)]);

    // Events carry ids, never a patient identity or a sealed field.
    for (name, payload) in &t.mem.events {
        let ev: HealthcareEvent = cbor::from_slice(payload, 1024).unwrap();
        assert_ne!(ev.org.as_deref(), Some("alice"), "{name}");
        let raw = String::from_utf8_lossy(payload);
        assert!(
            !raw.contains("alice") && !raw.contains("metformin"),
            "{name}"
        );
    }
    let names = t.event_names();
    for n in [
        EVENT_APPOINTMENT_REQUESTED,
        EVENT_APPOINTMENT_ACCEPTED,
        EVENT_PRESCRIPTION_GENERATED,
        EVENT_LAB_REPORT_ADDED,
        EVENT_BILL_GENERATED,
        EVENT_PRESCRIPTION_ACCESS_REQUESTED,
        EVENT_PRESCRIPTION_ACCESS_ALLOWED,
        EVENT_BILL_PAYMENT_SENT,
        EVENT_BILL_PAYMENT_RECEIVED,
        EVENT_PRESCRIPTION_COMPLETED,
        EVENT_PRESCRIPTION_PAID,
        EVENT_PRESCRIPTION_FETCHED,
    ] {
        assert!(names.iter().any(|x| x == n), "no {n} event");
    }
}

#[test]
fn case_two_with_insurance() {
    let c = cast();
    let mut t = world();

    // Insurance registration and acceptance.
    let plan = t.call(
        &c.patient,
        &RegisterInsurance {
            insurer: "InsuranceOrg".into(),
            plan_type: "GOLD".into(),
        },
    );
    assert_eq!(plan.status, PlanStatus::Requested);
    let e = t.err(&c.patient, &request(Some(plan.plan_id)));
    assert!(is_refused(&e), "{e}");
    let asked = t.call(
        &c.insurer,
        &GetInsuranceRegistrationRequests {
            day: day_of(T0),
            after: None,
            limit: None,
        },
    );
    assert_eq!(asked.plans, vec![plan.clone()]);
    let accepted = t.call(
        &c.insurer,
        &AcceptInsuranceRegistrationRequest {
            plan_id: plan.plan_id,
            allocated_insurance_id: "INS-0001".into(),
        },
    );
    assert_eq!(accepted.status, PlanStatus::Accepted);
    assert_eq!(accepted.insurer_pre_public_key, Some(c.insurer.pk()));
    let st = t.call(
        &c.patient,
        &RegisterInsuranceRequestStatus {
            plan_id: plan.plan_id,
        },
    );
    assert_eq!(st, accepted);

    // The appointment names the plan; bills are covered.
    let a = book(&mut t, Some(plan.plan_id));
    let cov = a.coverage.clone().unwrap();
    assert_eq!(
        (cov.insurer.as_str(), cov.allocated_insurance_id.as_str()),
        ("InsuranceOrg", "INS-0001")
    );
    let lb = lab_report(&mut t, &a, b"X-ray: clear", 9_900);
    let db = prescribe(&mut t, &a, b"ibuprofen 400 mg", 2_500);
    assert_eq!(lb.coverage, Some(cov.clone()));

    // The insurer sees nothing before approval and cannot pay.
    let e = t.err(
        &c.insurer,
        &GetBillStatusInsurance {
            bill_id: lb.bill_id,
        },
    );
    assert!(is_refused(&e), "{e}");

    // 6'. The patient approves both: payment requests for the insurer.
    for b in [&lb, &db] {
        let ap = approve(&mut t, b);
        assert_eq!(ap.status, BillStatus::Approved);
        assert!(ap.approval.is_some());
    }
    let reqs = t.call(
        &c.insurer,
        &GetInsurancePaymentRequests {
            day: day_of(T0),
            after: None,
            limit: None,
        },
    );
    let mut ids: Vec<Hash32> = reqs.requests.iter().map(|r| r.bill_id).collect();
    let mut want = vec![lb.bill_id, db.bill_id];
    ids.sort();
    want.sort();
    assert_eq!(ids, want);
    assert!(reqs.requests.iter().all(|r| r.paid_ms.is_none()));

    // 7'. The insurer reads the amounts (re-encrypted to it) and pays both at once.
    let ib = t.call(
        &c.insurer,
        &GetBillStatusInsurance {
            bill_id: lb.bill_id,
        },
    );
    let amt =
        client::open_amount_reencrypted(c.insurer.sk(), &a.appointment_id, &ib.amount).unwrap();
    assert_eq!(amt.minor_units, 9_900);
    let paid = t.call(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![lb.bill_id, db.bill_id],
        },
    );
    assert!(
        paid.bills
            .iter()
            .all(|b| b.status == BillStatus::PaymentSent
                && b.paid_by == Some(Payer::Insurer(c.insurer.who())))
    );
    let reqs = t.call(
        &c.insurer,
        &GetInsurancePaymentRequests {
            day: day_of(T0),
            after: None,
            limit: None,
        },
    );
    assert!(reqs.requests.iter().all(|r| r.paid_ms == Some(T0)));

    // The issuers confirm; the doctor unlocks; the patient and the pharmacy read.
    for (b, issuer) in [(&lb, &c.lab), (&db, &c.doctor)] {
        t.call(issuer, &ConfirmBillPayment { bill_id: b.bill_id });
    }
    mark_paid(&mut t, &a);
    delegate(&mut t, &a, &c.pharmacy);
    let got = t.call(
        &c.pharmacy,
        &GetPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(
        client::open_dosage_reencrypted(c.pharmacy.sk(), &a.appointment_id, &got.dosage).unwrap(),
        b"ibuprofen 400 mg"
    );
    // The pharmacy's bill is covered too and goes the insurer's way.
    let pb = t
        .call(
            &c.pharmacy,
            &GenerateBillAndUpdatePrescriptionOthers {
                appointment_id: a.appointment_id,
                lab_report: None,
                amount: amount(&a, 700),
            },
        )
        .bill;
    approve(&mut t, &pb);
    t.call(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![pb.bill_id],
        },
    );
    let b = t.call(
        &c.pharmacy,
        &ConfirmBillPayment {
            bill_id: pb.bill_id,
        },
    );
    assert_eq!(b.status, BillStatus::PaymentReceived);
    assert!(t.event_names().iter().any(|n| n == EVENT_PAYMENT_REQUESTED));
}

#[test]
fn a_separate_billing_key_keeps_the_insurer_out_of_the_dosage() {
    let c = cast();
    let mut t = world();
    let plan = insure(&mut t);
    let billing = pre_key("alice billing key for appointment 1");
    let mut req = request(Some(plan.plan_id));
    req.billing_pre_public_key = Some(ByteBuf::from(billing.public_key().to_bytes().to_vec()));
    let a = t.call(&c.patient, &req);
    t.call(
        &c.doctor,
        &AcceptAppointment {
            appointment_id: a.appointment_id,
        },
    );
    t.call(
        &c.doctor,
        &GeneratePrescription {
            appointment_id: a.appointment_id,
        },
    );
    let db = prescribe(&mut t, &a, b"amoxicillin", 1_000);
    // The patient approves with a key from the billing key, not their own.
    t.call(
        &c.patient,
        &ApprovePaymentRequest {
            bill_id: db.bill_id,
            insurer_pre_public_key: c.insurer.pk(),
            rekey: client::rekey(&billing, &c.insurer.pk()).unwrap(),
        },
    );
    let ib = t.call(
        &c.insurer,
        &GetBillStatusInsurance {
            bill_id: db.bill_id,
        },
    );
    let amt =
        client::open_amount_reencrypted(c.insurer.sk(), &a.appointment_id, &ib.amount).unwrap();
    assert_eq!(amt.minor_units, 1_000);
    // The same re-encryption key applied to the dosage (sealed to the patient key) opens
    // nothing for the insurer.
    let rx: Prescription = load(&mut t, &keys::prescription(&a.appointment_id), "rx")
        .unwrap()
        .unwrap();
    let sealed = Sealed::from_bytes(rx.dosage.as_ref().unwrap()).unwrap();
    let rk = ReKey::from_bytes(&ib.bill.approval.unwrap().rekey).unwrap();
    let re = sphr_crypto::pre::reencrypt(&sealed, &rk).unwrap();
    assert!(
        client::open_dosage_reencrypted(c.insurer.sk(), &a.appointment_id, &re.to_bytes()).is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// The refusals of the acceptance criteria: clear error, no state change
// ---------------------------------------------------------------------------------------------

#[test]
fn a_pharmacy_cannot_generate_a_prescription() {
    let c = cast();
    let mut t = world();
    let a = t.call(&c.patient, &request(None));
    t.call(
        &c.doctor,
        &AcceptAppointment {
            appointment_id: a.appointment_id,
        },
    );
    let e = t.err(
        &c.pharmacy,
        &GeneratePrescription {
            appointment_id: a.appointment_id,
        },
    );
    assert!(is_denied(&e));
    assert_eq!(
        e.to_string(),
        "access denied: only a doctor may generate a prescription"
    );
    // Nor another doctor than the one asked, nor the patient.
    for p in [&c.doctor2, &c.patient] {
        let e = t.err(
            p,
            &GeneratePrescription {
                appointment_id: a.appointment_id,
            },
        );
        assert!(is_denied(&e), "{e}");
    }
    // Nor the right doctor twice.
    t.call(
        &c.doctor,
        &GeneratePrescription {
            appointment_id: a.appointment_id,
        },
    );
    let e = t.err(
        &c.doctor,
        &GeneratePrescription {
            appointment_id: a.appointment_id,
        },
    );
    assert!(is_refused(&e));
}

#[test]
fn only_the_patient_can_allow_others() {
    let c = cast();
    let mut t = world();
    let a = paid_with_pharmacy(&mut t);
    let d = t.call(
        &c.third,
        &RequestPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    // A doctor or a pharmacy "allows" the third identity with a key of their own making.
    for p in [&c.doctor, &c.pharmacy, &c.lab, &c.patient2] {
        let e = t.err(
            p,
            &AllowPrescriptionOthers {
                appointment_id: a.appointment_id,
                requester: c.third.who(),
                requester_pre_public_key: d.requester_pre_public_key.clone(),
                rekey: client::rekey(p.sk(), &d.requester_pre_public_key).unwrap(),
            },
        );
        assert!(is_denied(&e), "{}: {e}", p.id);
        assert!(e.to_string().contains("only the prescription's patient"));
    }
    let e = t.err(
        &c.third,
        &GetPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    assert!(is_denied(&e), "{e}");
}

#[test]
fn nobody_fetches_an_unpaid_prescription() {
    let c = cast();
    let mut t = world();
    let a = book(&mut t, None);
    delegate(&mut t, &a, &c.pharmacy);
    let lb = lab_report(&mut t, &a, b"ok", 100);
    // EMPTY / LAB_REPORTS_ADDED / COMPLETE with unpaid bills / COMPLETE all paid, not marked.
    let check = |t: &mut TestCtx, status: &str| {
        let e = t.err(
            &c.patient,
            &GetPrescriptionPatient {
                appointment_id: a.appointment_id,
            },
        );
        assert!(is_refused(&e) && e.to_string().contains(status), "{e}");
        assert!(e.to_string().contains("locked"), "{e}");
        let e = t.err(
            &c.pharmacy,
            &GetPrescriptionOthers {
                appointment_id: a.appointment_id,
            },
        );
        assert!(is_refused(&e) && e.to_string().contains("locked"), "{e}");
        for p in [&c.third, &c.doctor2] {
            let e = t.err(
                p,
                &GetPrescriptionOthers {
                    appointment_id: a.appointment_id,
                },
            );
            assert!(is_denied(&e), "{e}");
        }
        let e = t.err(
            &c.pharmacy,
            &GetPrescriptionPatient {
                appointment_id: a.appointment_id,
            },
        );
        assert!(is_denied(&e), "{e}");
    };
    check(&mut t, "LAB_REPORTS_ADDED");
    let db = prescribe(&mut t, &a, b"rest", 100);
    check(&mut t, "COMPLETE");
    patient_pays(&mut t, &lb, &c.lab);
    patient_pays(&mut t, &db, &c.doctor);
    check(&mut t, "COMPLETE");
    mark_paid(&mut t, &a);
    t.call(
        &c.pharmacy,
        &GetPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    t.call(
        &c.patient,
        &GetPrescriptionPatient {
            appointment_id: a.appointment_id,
        },
    );
}

#[test]
fn an_insurer_cannot_pay_an_unapproved_bill() {
    let c = cast();
    let mut t = world();
    let plan = insure(&mut t);
    let a = book(&mut t, Some(plan.plan_id));
    let lb = lab_report(&mut t, &a, b"ok", 100);
    let e = t.err(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![lb.bill_id],
        },
    );
    assert!(is_refused(&e));
    assert!(e.to_string().contains("not approved"), "{e}");
    // All or none: an approved bill in the same batch is not paid either.
    let db = prescribe(&mut t, &a, b"rest", 100);
    approve(&mut t, &db);
    let e = t.err(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![db.bill_id, lb.bill_id],
        },
    );
    assert!(e.to_string().contains("bill 1 of the batch"), "{e}");
    // An uninsured bill is not the insurer's at all.
    let b2 = book(&mut t, None);
    let ub = lab_report(&mut t, &b2, b"ok", 100);
    let e = t.err(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![ub.bill_id],
        },
    );
    assert!(is_denied(&e), "{e}");
    // Nor can another role pay, nor the same bill twice, nor an empty or repeated batch.
    let e = t.err(
        &c.patient,
        &PayInsurancePaymentRequests {
            bill_ids: vec![db.bill_id],
        },
    );
    assert!(is_denied(&e), "{e}");
    t.call(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![db.bill_id],
        },
    );
    let e = t.err(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![db.bill_id],
        },
    );
    assert!(is_refused(&e), "{e}");
    let too_many = vec![Hash32::ZERO; MAX_PAY_BATCH + 1];
    for ids in [vec![], vec![lb.bill_id, lb.bill_id], too_many] {
        let e = t.err(&c.insurer, &PayInsurancePaymentRequests { bill_ids: ids });
        assert!(matches!(e, ContractError::BadArgs(_)), "{e}");
    }
}

#[test]
fn a_full_batch_is_paid_in_one_transaction() {
    let c = cast();
    let mut t = world();
    let plan = insure(&mut t);
    let a = book(&mut t, Some(plan.plan_id));
    let mut bills: Vec<Bill> = (0..MAX_PAY_BATCH - 1)
        .map(|i| lab_report(&mut t, &a, format!("r{i}").as_bytes(), 1))
        .collect();
    bills.push(prescribe(&mut t, &a, b"d", 1));
    for b in &bills {
        approve(&mut t, b);
    }
    let paid = t.call(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: bills.iter().map(|b| b.bill_id).collect(),
        },
    );
    assert_eq!(paid.bills.len(), MAX_PAY_BATCH);
    assert_eq!(t.tx_events, MAX_PAY_BATCH);
}

#[test]
fn a_patient_cannot_accept_their_own_appointment() {
    let c = cast();
    let mut t = world();
    let a = t.call(&c.patient, &request(None));
    for p in [&c.patient, &c.doctor2, &c.lab, &c.patient2] {
        let e = t.err(
            p,
            &AcceptAppointment {
                appointment_id: a.appointment_id,
            },
        );
        assert!(is_denied(&e), "{e}");
        assert_eq!(
            e.to_string(),
            "access denied: only the doctor the appointment asks may accept or reject it"
        );
        let e = t.err(
            p,
            &RejectAppointment {
                appointment_id: a.appointment_id,
            },
        );
        assert!(is_denied(&e), "{e}");
    }
    // The doctor rejects; then nothing more moves it.
    let r = t.call(
        &c.doctor,
        &RejectAppointment {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(r.status, AppointmentStatus::Rejected);
    for accept in [true, false] {
        let e = if accept {
            t.err(
                &c.doctor,
                &AcceptAppointment {
                    appointment_id: a.appointment_id,
                },
            )
        } else {
            t.err(
                &c.doctor,
                &RejectAppointment {
                    appointment_id: a.appointment_id,
                },
            )
        };
        assert!(is_refused(&e) && e.to_string().contains("REJECTED"), "{e}");
    }
    let e = t.err(
        &c.doctor,
        &GeneratePrescription {
            appointment_id: a.appointment_id,
        },
    );
    assert!(is_refused(&e), "{e}");
}

/// One valid request of each function, for a call by anyone.
fn one_of_each(a: &Appointment, bill: Hash32, plan: Hash32) -> Vec<(&'static str, Vec<u8>)> {
    let c = cast();
    let id = a.appointment_id;
    let sealed = amount(a, 1);
    vec![
        e(request(None)),
        e(GetAllAppointment {
            day: 0,
            after: None,
            limit: None,
        }),
        e(AcceptAppointment { appointment_id: id }),
        e(RejectAppointment { appointment_id: id }),
        e(GetAppointmentStatus { appointment_id: id }),
        e(GeneratePrescription { appointment_id: id }),
        e(GenerateBillAndUpdatePrescriptionOthers {
            appointment_id: id,
            lab_report: Some(sealed.clone()),
            amount: sealed.clone(),
        }),
        e(GenerateBillAndUpdatePrescriptionDoctor {
            appointment_id: id,
            dosage: sealed.clone(),
            amount: sealed.clone(),
        }),
        e(GetPendingPaymentRequests { appointment_id: id }),
        e(RegisterInsurance {
            insurer: "InsuranceOrg".into(),
            plan_type: "GOLD".into(),
        }),
        e(GetInsuranceRegistrationRequests {
            day: 0,
            after: None,
            limit: None,
        }),
        e(RegisterInsuranceRequestStatus { plan_id: plan }),
        e(AcceptInsuranceRegistrationRequest {
            plan_id: plan,
            allocated_insurance_id: "X".into(),
        }),
        e(GetBillStatus { bill_id: bill }),
        e(GetBillStatusPatient { appointment_id: id }),
        e(ApprovePaymentRequest {
            bill_id: bill,
            insurer_pre_public_key: c.insurer.pk(),
            rekey: client::rekey(c.patient.sk(), &c.insurer.pk()).unwrap(),
        }),
        e(GetBillStatusInsurance { bill_id: bill }),
        e(GetInsurancePaymentRequests {
            day: 0,
            after: None,
            limit: None,
        }),
        e(PayInsurancePaymentRequests {
            bill_ids: vec![bill],
        }),
        e(PayBill { bill_id: bill }),
        e(ConfirmBillPayment { bill_id: bill }),
        e(MarkPrescriptionPaid { appointment_id: id }),
        e(GetPrescriptionPatient { appointment_id: id }),
        e(RequestPrescriptionOthers { appointment_id: id }),
        e(AllowPrescriptionOthers {
            appointment_id: id,
            requester: c.pharmacy.who(),
            requester_pre_public_key: c.pharmacy.pk(),
            rekey: client::rekey(c.patient.sk(), &c.pharmacy.pk()).unwrap(),
        }),
        e(GetPrescriptionOthers { appointment_id: id }),
        e(GetLabReports { appointment_id: id }),
        e(GetOrgUsers {
            org: "HospitalOrg".into(),
            after: None,
            limit: None,
        }),
    ]
}

#[test]
fn an_unregistered_identity_can_call_nothing_but_register_user() {
    let c = cast();
    let mut t = world();
    let plan = insure(&mut t);
    let a = book(&mut t, Some(plan.plan_id));
    let bill = lab_report(&mut t, &a, b"ok", 1);
    let calls = one_of_each(&a, bill.bill_id, plan.plan_id);
    assert_eq!(calls.len(), HealthcareContract.functions().len() - 1);
    // The stranger, and registered people whose certificate now holds another role.
    let mut as_patient = c.stranger.clone();
    as_patient.role = Role::Patient;
    let mut promoted = c.lab.clone();
    promoted.role = Role::Doctor;
    for who in [&c.stranger, &as_patient, &promoted] {
        for (f, arg) in &calls {
            let before = t.snapshot();
            let e = t.raw(who, f, std::slice::from_ref(arg)).unwrap_err();
            assert!(is_denied(&e), "{f}: {e}");
            assert!(e.to_string().contains("registerUser"), "{f}: {e}");
            assert_eq!(t.snapshot(), before, "{f}");
        }
    }
    // Once registered, the stranger is an ordinary pharmacist.
    t.call(
        &c.stranger,
        &RegisterUser {
            pre_public_key: None,
        },
    );
    let d = t.call(
        &c.stranger,
        &RequestPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!(d.requester, c.stranger.who());
}

// ---------------------------------------------------------------------------------------------
// Status machines through the functions
// ---------------------------------------------------------------------------------------------

#[test]
fn illegal_transitions_are_refused_and_change_nothing() {
    let c = cast();
    let mut t = world();
    let plan = insure(&mut t);
    let a = book(&mut t, Some(plan.plan_id));
    let id = a.appointment_id;

    // Appointment: accepting twice.
    let e = t.err(&c.doctor, &AcceptAppointment { appointment_id: id });
    assert!(is_refused(&e) && e.to_string().contains("ACCEPTED"), "{e}");

    // Prescription: paid while EMPTY; dosage twice; report after COMPLETE.
    let e = t.err(&c.doctor, &MarkPrescriptionPaid { appointment_id: id });
    assert_eq!(
        e.to_string(),
        "refused: the prescription is EMPTY and cannot become PAID"
    );
    let lb = lab_report(&mut t, &a, b"r1", 10);
    let lb2 = lab_report(&mut t, &a, b"r2", 10);
    let db = prescribe(&mut t, &a, b"d", 10);
    let key = client::pre_key(&a.patient_pre_public_key).unwrap();
    let e = t.err(
        &c.doctor,
        &GenerateBillAndUpdatePrescriptionDoctor {
            appointment_id: id,
            dosage: client::seal_dosage(&key, &id, b"d2").unwrap(),
            amount: amount(&a, 1),
        },
    );
    assert!(
        e.to_string()
            .contains("COMPLETE and cannot become COMPLETE"),
        "{e}"
    );
    let e = t.err(
        &c.lab,
        &GenerateBillAndUpdatePrescriptionOthers {
            appointment_id: id,
            lab_report: Some(client::seal_lab_report(&key, &id, b"late").unwrap()),
            amount: amount(&a, 1),
        },
    );
    assert!(is_refused(&e), "{e}");

    // Bills: confirm before payment; pay an approved bill as the patient; approve twice;
    // insurer pays; confirm twice.
    let e = t.err(
        &c.lab,
        &ConfirmBillPayment {
            bill_id: lb.bill_id,
        },
    );
    assert!(
        e.to_string()
            .contains("GENERATED and cannot become PAYMENT_RECEIVED"),
        "{e}"
    );
    approve(&mut t, &lb);
    let e = t.err(
        &c.patient,
        &PayBill {
            bill_id: lb.bill_id,
        },
    );
    assert!(e.to_string().contains("APPROVED for the insurer"), "{e}");
    let e = t.err(
        &c.patient,
        &ApprovePaymentRequest {
            bill_id: lb.bill_id,
            insurer_pre_public_key: c.insurer.pk(),
            rekey: client::rekey(c.patient.sk(), &c.insurer.pk()).unwrap(),
        },
    );
    assert!(
        e.to_string()
            .contains("APPROVED and cannot become APPROVED"),
        "{e}"
    );
    t.call(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![lb.bill_id],
        },
    );
    t.call(
        &c.lab,
        &ConfirmBillPayment {
            bill_id: lb.bill_id,
        },
    );
    let e = t.err(
        &c.lab,
        &ConfirmBillPayment {
            bill_id: lb.bill_id,
        },
    );
    assert!(is_refused(&e), "{e}");
    // A covered bill may still be paid by the patient while GENERATED.
    patient_pays(&mut t, &lb2, &c.lab);
    let e = t.err(
        &c.patient,
        &PayBill {
            bill_id: lb2.bill_id,
        },
    );
    assert!(is_refused(&e), "{e}");
    // Only the issuer confirms.
    t.call(
        &c.patient,
        &PayBill {
            bill_id: db.bill_id,
        },
    );
    for p in [&c.lab, &c.doctor2, &c.patient] {
        let e = t.err(
            p,
            &ConfirmBillPayment {
                bill_id: db.bill_id,
            },
        );
        assert!(is_denied(&e), "{e}");
    }
    t.call(
        &c.doctor,
        &ConfirmBillPayment {
            bill_id: db.bill_id,
        },
    );
    mark_paid(&mut t, &a);
    let e = t.err(&c.doctor, &MarkPrescriptionPaid { appointment_id: id });
    assert!(e.to_string().contains("PAID and cannot become PAID"), "{e}");

    // Plans: accepting twice.
    let e = t.err(
        &c.insurer,
        &AcceptInsuranceRegistrationRequest {
            plan_id: plan.plan_id,
            allocated_insurance_id: "INS-2".into(),
        },
    );
    assert!(is_refused(&e), "{e}");
}

#[test]
fn uninsured_bills_cannot_be_approved_and_plans_must_be_accepted_and_owned() {
    let c = cast();
    let mut t = world();
    let a = book(&mut t, None);
    let lb = lab_report(&mut t, &a, b"r", 1);
    let e = t.err(
        &c.patient,
        &ApprovePaymentRequest {
            bill_id: lb.bill_id,
            insurer_pre_public_key: c.insurer.pk(),
            rekey: client::rekey(c.patient.sk(), &c.insurer.pk()).unwrap(),
        },
    );
    assert!(e.to_string().contains("not covered"), "{e}");
    // Bob cannot use Alice's plan; an insurer of another company cannot accept it.
    let plan = insure(&mut t);
    let mut req = request(Some(plan.plan_id));
    req.notes = None;
    let e = t.err(&c.patient2, &req);
    assert!(is_denied(&e), "{e}");
    let p2 = t.call(
        &c.patient,
        &RegisterInsurance {
            insurer: "InsuranceOrg".into(),
            plan_type: "SILVER".into(),
        },
    );
    let mut other_insurer = c.insurer.clone();
    other_insurer.org = "OtherInsurance";
    t.call(
        &other_insurer,
        &RegisterUser {
            pre_public_key: None,
        },
    );
    let e = t.err(
        &other_insurer,
        &AcceptInsuranceRegistrationRequest {
            plan_id: p2.plan_id,
            allocated_insurance_id: "Z".into(),
        },
    );
    assert!(is_denied(&e), "{e}");
    // An insurer without a PRE key cannot accept (amounts could not reach it).
    let mut keyless = c.insurer.clone().without_pre_key();
    keyless.id = "officer-2";
    t.call(
        &keyless,
        &RegisterUser {
            pre_public_key: None,
        },
    );
    let e = t.err(
        &keyless,
        &AcceptInsuranceRegistrationRequest {
            plan_id: p2.plan_id,
            allocated_insurance_id: "Z".into(),
        },
    );
    assert!(e.to_string().contains("no PRE public key"), "{e}");
    // Approving with a key to someone other than the plan's insurer.
    let a2 = book(&mut t, Some(plan.plan_id));
    let b2 = lab_report(&mut t, &a2, b"r", 1);
    let e = t.err(
        &c.patient,
        &ApprovePaymentRequest {
            bill_id: b2.bill_id,
            insurer_pre_public_key: c.third.pk(),
            rekey: client::rekey(c.patient.sk(), &c.third.pk()).unwrap(),
        },
    );
    assert!(
        e.to_string()
            .contains("not the PRE key of the plan's insurer"),
        "{e}"
    );
    // Only the patient approves.
    let e = t.err(
        &c.lab,
        &ApprovePaymentRequest {
            bill_id: b2.bill_id,
            insurer_pre_public_key: c.insurer.pk(),
            rekey: client::rekey(c.patient.sk(), &c.insurer.pk()).unwrap(),
        },
    );
    assert!(is_denied(&e), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Access to reads
// ---------------------------------------------------------------------------------------------

#[test]
fn reads_are_for_their_parties_only() {
    let c = cast();
    let mut t = world();
    let plan = insure(&mut t);
    let a = book(&mut t, Some(plan.plan_id));
    let id = a.appointment_id;
    let lb = lab_report(&mut t, &a, b"r", 1);
    for p in [&c.patient2, &c.doctor, &c.lab, &c.insurer] {
        assert!(is_denied(
            &t.err(p, &GetAppointmentStatus { appointment_id: id })
        ));
        assert!(is_denied(
            &t.err(p, &GetBillStatusPatient { appointment_id: id })
        ));
        assert!(is_denied(
            &t.err(p, &GetPendingPaymentRequests { appointment_id: id })
        ));
        assert!(is_denied(&t.err(
            p,
            &RegisterInsuranceRequestStatus {
                plan_id: plan.plan_id
            }
        )));
    }
    for p in [&c.patient, &c.doctor, &c.doctor2, &c.insurer] {
        assert!(is_denied(&t.err(
            p,
            &GetBillStatus {
                bill_id: lb.bill_id
            }
        )));
    }
    for p in [&c.patient, &c.doctor, &c.lab] {
        assert!(is_denied(&t.err(
            p,
            &GetBillStatusInsurance {
                bill_id: lb.bill_id
            }
        )));
        assert!(is_denied(&t.err(
            p,
            &GetInsurancePaymentRequests {
                day: day_of(T0),
                after: None,
                limit: None
            }
        )));
        assert!(is_denied(&t.err(
            p,
            &GetInsuranceRegistrationRequests {
                day: day_of(T0),
                after: None,
                limit: None
            }
        )));
    }
    for p in [&c.patient, &c.lab, &c.insurer] {
        assert!(is_denied(&t.err(
            p,
            &GetAllAppointment {
                day: day_of(T0 + DAY),
                after: None,
                limit: None
            }
        )));
    }
    // Another doctor's day is empty; lab reports are for the patient and allowed requesters.
    let other = t.call(
        &c.doctor2,
        &GetAllAppointment {
            day: day_of(T0 + DAY),
            after: None,
            limit: None,
        },
    );
    assert!(other.appointments.is_empty());
    for p in [&c.doctor, &c.lab, &c.patient2] {
        assert!(is_denied(&t.err(p, &GetLabReports { appointment_id: id })));
    }
    let mine = t.call(&c.patient, &GetLabReports { appointment_id: id });
    assert!(!mine.reencrypted && mine.reports.is_empty() && mine.locked == 1);
    // Unknown ids are not found.
    let e = t.err(
        &c.patient,
        &GetAppointmentStatus {
            appointment_id: Hash32::ZERO,
        },
    );
    assert!(matches!(e, ContractError::NotFound(_)), "{e}");
}

#[test]
fn patient_reads_own_lab_reports_once_paid() {
    let c = cast();
    let mut t = world();
    let a = book(&mut t, None);
    let b1 = lab_report(&mut t, &a, b"first", 1);
    lab_report(&mut t, &a, b"second", 1);
    patient_pays(&mut t, &b1, &c.lab);
    let r = t.call(
        &c.patient,
        &GetLabReports {
            appointment_id: a.appointment_id,
        },
    );
    assert_eq!((r.reports.len(), r.locked), (1, 1));
    let text = client::open_field(
        c.patient.sk(),
        client::Field::LabReport,
        &a.appointment_id,
        &r.reports[0].report,
    )
    .unwrap();
    assert_eq!(text, b"first");
    assert_eq!(r.reports[0].reference.lab, c.lab.who());
}

// ---------------------------------------------------------------------------------------------
// Delegation details
// ---------------------------------------------------------------------------------------------

#[test]
fn delegation_rules() {
    let c = cast();
    let mut t = world();
    let a = paid_with_pharmacy(&mut t);
    let id = a.appointment_id;
    // The patient cannot request their own prescription; a repeated request is refused.
    let e = t.err(
        &c.patient,
        &RequestPrescriptionOthers { appointment_id: id },
    );
    assert!(is_refused(&e), "{e}");
    let e = t.err(
        &c.pharmacy,
        &RequestPrescriptionOthers { appointment_id: id },
    );
    assert!(e.to_string().contains("already asked"), "{e}");
    // Allowing twice, allowing someone who never asked, with the wrong key.
    let e = t.err(
        &c.patient,
        &AllowPrescriptionOthers {
            appointment_id: id,
            requester: c.pharmacy.who(),
            requester_pre_public_key: c.pharmacy.pk(),
            rekey: client::rekey(c.patient.sk(), &c.pharmacy.pk()).unwrap(),
        },
    );
    assert!(
        e.to_string().contains("ALLOWED and cannot become ALLOWED"),
        "{e}"
    );
    let e = t.err(
        &c.patient,
        &AllowPrescriptionOthers {
            appointment_id: id,
            requester: c.third.who(),
            requester_pre_public_key: c.third.pk(),
            rekey: client::rekey(c.patient.sk(), &c.third.pk()).unwrap(),
        },
    );
    assert!(matches!(e, ContractError::NotFound(_)), "{e}");
    t.call(&c.third, &RequestPrescriptionOthers { appointment_id: id });
    let e = t.err(
        &c.patient,
        &AllowPrescriptionOthers {
            appointment_id: id,
            requester: c.third.who(),
            requester_pre_public_key: c.doctor.pk(),
            rekey: client::rekey(c.patient.sk(), &c.doctor.pk()).unwrap(),
        },
    );
    assert!(e.to_string().contains("not the key recorded"), "{e}");
    // A garbage re-encryption key.
    let e = t.err(
        &c.patient,
        &AllowPrescriptionOthers {
            appointment_id: id,
            requester: c.third.who(),
            requester_pre_public_key: c.third.pk(),
            rekey: ByteBuf::from(vec![1u8; 96]),
        },
    );
    assert!(matches!(e, ContractError::BadArgs(_)), "{e}");

    // A requester without a PRE key cannot ask.
    let mut keyless = c.doctor2.clone().without_pre_key();
    keyless.id = "dr-keyless";
    t.call(
        &keyless,
        &RegisterUser {
            pre_public_key: None,
        },
    );
    let e = t.err(&keyless, &RequestPrescriptionOthers { appointment_id: id });
    assert!(e.to_string().contains("no PRE public key"), "{e}");
    // ... unless it registers one; then it asks with it.
    let k = pre_key("keyless");
    let pk = ByteBuf::from(k.public_key().to_bytes().to_vec());
    t.call(
        &keyless,
        &RegisterUser {
            pre_public_key: Some(pk.clone()),
        },
    );
    let d = t.call(&keyless, &RequestPrescriptionOthers { appointment_id: id });
    assert_eq!(d.requester_pre_public_key, pk);

    // The pharmacy's certificate is renewed with a new PRE key: its allowed request no longer
    // matches, and it must ask again and be allowed again.
    let mut renewed = c.pharmacy.clone();
    renewed.pre = Some(pre_key("pharmacy key 2"));
    let e = t.err(&renewed, &GetPrescriptionOthers { appointment_id: id });
    assert!(e.to_string().contains("changed since the request"), "{e}");
    let d = t.call(&renewed, &RequestPrescriptionOthers { appointment_id: id });
    assert_eq!(d.status, DelegationStatus::Requested);
    assert_eq!(d.requester_pre_public_key, renewed.pk());
    let e = t.err(&renewed, &GetPrescriptionOthers { appointment_id: id });
    assert!(is_denied(&e), "{e}");
    t.call(
        &c.patient,
        &AllowPrescriptionOthers {
            appointment_id: id,
            requester: renewed.who(),
            requester_pre_public_key: renewed.pk(),
            rekey: client::rekey(c.patient.sk(), &renewed.pk()).unwrap(),
        },
    );
    let got = t.call(&renewed, &GetPrescriptionOthers { appointment_id: id });
    assert!(client::open_dosage_reencrypted(renewed.sk(), &id, &got.dosage).is_ok());
    assert!(client::open_dosage_reencrypted(c.pharmacy.sk(), &id, &got.dosage).is_err());
}

#[test]
fn pharmacy_bills_need_payment_and_permission() {
    let c = cast();
    let mut t = world();
    let a = book(&mut t, None);
    delegate(&mut t, &a, &c.pharmacy);
    let bill = |a: &Appointment| GenerateBillAndUpdatePrescriptionOthers {
        appointment_id: a.appointment_id,
        lab_report: None,
        amount: amount(a, 5),
    };
    let e = t.err(&c.pharmacy, &bill(&a));
    assert!(e.to_string().contains("only a PAID prescription"), "{e}");
    let a2 = paid_with_pharmacy(&mut t);
    let mut other_pharmacy = c.pharmacy.clone();
    other_pharmacy.id = "pharm-2";
    t.call(
        &other_pharmacy,
        &RegisterUser {
            pre_public_key: None,
        },
    );
    let e = t.err(&other_pharmacy, &bill(&a2));
    assert!(is_denied(&e), "{e}");
    // Doctors use their own function; a pharmacy sends no report.
    let e = t.err(&c.doctor, &bill(&a2));
    assert!(is_denied(&e), "{e}");
    let mut with_report = bill(&a2);
    with_report.lab_report = Some(amount(&a2, 1));
    let e = t.err(&c.pharmacy, &with_report);
    assert!(matches!(e, ContractError::BadArgs(_)), "{e}");
    // A lab must send one.
    let mut no_report = bill(&a);
    no_report.lab_report = None;
    let e = t.err(&c.lab, &no_report);
    assert!(matches!(e, ContractError::BadArgs(_)), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Input checks and limits
// ---------------------------------------------------------------------------------------------

#[test]
fn sealed_fields_keys_and_codes_are_checked() {
    let c = cast();
    let mut t = world();
    let a = book(&mut t, None);
    let id = a.appointment_id;
    let good = amount(&a, 1);
    let mut flipped = good.to_vec();
    flipped[0] ^= 0x40; // the infinity flag on a non-zero x: not a valid compressed point
    let cases: Vec<(ByteBuf, &str)> = vec![
        (ByteBuf::from(vec![]), "not a valid PRE ciphertext"),
        (ByteBuf::from(vec![0u8; 100]), "not a valid PRE ciphertext"),
        (ByteBuf::from(flipped), "not a valid PRE ciphertext"),
        (ByteBuf::from(vec![0u8; MAX_DOSAGE_LEN + 1]), "at most"),
    ];
    for (bad_bytes, msg) in cases {
        let e = t.err(
            &c.doctor,
            &GenerateBillAndUpdatePrescriptionDoctor {
                appointment_id: id,
                dosage: bad_bytes.clone(),
                amount: good.clone(),
            },
        );
        assert!(
            e.to_string().contains(msg) && e.to_string().contains("dosage"),
            "{e}"
        );
        let e = t.err(
            &c.lab,
            &GenerateBillAndUpdatePrescriptionOthers {
                appointment_id: id,
                lab_report: Some(good.clone()),
                amount: bad_bytes,
            },
        );
        assert!(e.to_string().contains("amount"), "{e}");
    }
    // Appointment fields.
    let mut r = request(None);
    r.disease_classification = "chest pain, since Tuesday".into();
    assert!(
        t.err(&c.patient, &r)
            .to_string()
            .contains("disease_classification")
    );
    let mut r = request(None);
    r.requested_time_ms = T0 - 2 * DAY;
    assert!(
        t.err(&c.patient, &r)
            .to_string()
            .contains("requested_time_ms")
    );
    let mut r = request(None);
    r.requested_time_ms = T0 + 401 * DAY;
    assert!(
        t.err(&c.patient, &r)
            .to_string()
            .contains("requested_time_ms")
    );
    let mut r = request(None);
    r.patient_pre_public_key = Some(ByteBuf::from(vec![7u8; 672]));
    assert!(
        t.err(&c.patient, &r)
            .to_string()
            .contains("patient_pre_public_key")
    );
    let mut r = request(None);
    r.billing_pre_public_key = Some(ByteBuf::from(vec![7u8; 10]));
    assert!(
        t.err(&c.patient, &r)
            .to_string()
            .contains("billing_pre_public_key")
    );
    let mut r = request(None);
    r.doctor = c.lab.who();
    assert!(
        t.err(&c.patient, &r)
            .to_string()
            .contains("not a registered doctor")
    );
    let mut r = request(None);
    r.doctor = Identity::new("HospitalOrg", "bad\nname");
    assert!(matches!(t.err(&c.patient, &r), ContractError::BadArgs(_)));
    // Only patients request appointments and plans.
    assert!(is_denied(&t.err(&c.doctor, &request(None))));
    assert!(is_denied(&t.err(
        &c.doctor,
        &RegisterInsurance {
            insurer: "InsuranceOrg".into(),
            plan_type: "GOLD".into()
        }
    )));
    // Oversized arguments and garbage.
    let big = vec![0u8; MAX_ARG_BYTES + 1];
    assert!(matches!(
        t.raw(&c.patient, "requestAppointment", &[big]),
        Err(ContractError::Limit(_))
    ));
    assert!(matches!(
        t.raw(&c.patient, "requestAppointment", &[vec![0xff, 0x00]]),
        Err(ContractError::BadArgs(_))
    ));
}

#[test]
fn a_patient_without_a_pre_key_must_name_one_per_appointment() {
    let c = cast();
    let mut t = world();
    let mut keyless = c.patient2.clone().without_pre_key();
    keyless.id = "carol";
    t.call(
        &keyless,
        &RegisterUser {
            pre_public_key: None,
        },
    );
    let mut r = request(None);
    r.notes = None;
    let e = t.err(&keyless, &r);
    assert!(e.to_string().contains("no PRE public key"), "{e}");
    let k = pre_key("carol appointment key");
    r.patient_pre_public_key = Some(ByteBuf::from(k.public_key().to_bytes().to_vec()));
    let a = t.call(&keyless, &r);
    assert_eq!(a.billing_pre_public_key, a.patient_pre_public_key);
}

#[test]
fn limits_on_reports_bills_and_requests() {
    let c = cast();
    let mut t = world();
    let a = book(&mut t, None);
    for i in 0..MAX_LAB_REPORTS {
        lab_report(&mut t, &a, format!("r{i}").as_bytes(), 1);
    }
    let key = client::pre_key(&a.patient_pre_public_key).unwrap();
    let e = t.err(
        &c.lab,
        &GenerateBillAndUpdatePrescriptionOthers {
            appointment_id: a.appointment_id,
            lab_report: Some(client::seal_lab_report(&key, &a.appointment_id, b"x").unwrap()),
            amount: amount(&a, 1),
        },
    );
    assert!(matches!(e, ContractError::Limit(_)), "{e}");
    // Requests by others are bounded per prescription.
    for i in 0..MAX_DELEGATIONS {
        let id: &'static str = Box::leak(format!("ph-{i}").into_boxed_str());
        let mut p = c.pharmacy.clone();
        p.id = id;
        t.call(
            &p,
            &RegisterUser {
                pre_public_key: None,
            },
        );
        t.call(
            &p,
            &RequestPrescriptionOthers {
                appointment_id: a.appointment_id,
            },
        );
    }
    let e = t.err(
        &c.pharmacy,
        &RequestPrescriptionOthers {
            appointment_id: a.appointment_id,
        },
    );
    assert!(matches!(e, ContractError::Limit(_)), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Users and listings
// ---------------------------------------------------------------------------------------------

#[test]
fn register_user_and_org_listing() {
    let c = cast();
    let mut t = world();
    // Re-registration keeps the first time; a declared key must match the certificate's.
    t.now = T0 + 5;
    let u = t.call(
        &c.doctor,
        &RegisterUser {
            pre_public_key: Some(c.doctor.pk()),
        },
    );
    assert_eq!((u.registered_ms, u.updated_ms), (T0, T0 + 5));
    assert_eq!(u.pre_public_key, Some(c.doctor.pk()));
    let e = t.err(
        &c.doctor,
        &RegisterUser {
            pre_public_key: Some(c.lab.pk()),
        },
    );
    assert!(matches!(e, ContractError::BadArgs(_)), "{e}");
    let mut bad_key = c.doctor.clone().without_pre_key();
    bad_key.id = "dr-bad";
    let e = t.err(
        &bad_key,
        &RegisterUser {
            pre_public_key: Some(ByteBuf::from(vec![1, 2, 3])),
        },
    );
    assert!(matches!(e, ContractError::BadArgs(_)), "{e}");

    // Professionals are listed to anyone registered; patients only to themselves and their
    // org's admin.
    let list = |t: &mut TestCtx, who: &Person, org: &str| -> Vec<String> {
        t.call(
            who,
            &GetOrgUsers {
                org: org.into(),
                after: None,
                limit: None,
            },
        )
        .users
        .into_iter()
        .map(|u| u.user.id)
        .collect()
    };
    assert_eq!(
        list(&mut t, &c.patient, "HospitalOrg"),
        vec!["dr-house", "dr-wilson", "lab-1"]
    );
    assert_eq!(list(&mut t, &c.doctor, "PatientOrg"), vec!["admin"]);
    assert_eq!(
        list(&mut t, &c.patient, "PatientOrg"),
        vec!["admin", "alice"]
    );
    assert_eq!(
        list(&mut t, &c.patients_admin, "PatientOrg"),
        vec!["admin", "alice", "bob"]
    );
    assert!(list(&mut t, &c.doctor, "NoSuchOrg").is_empty());
    // Paging.
    let p1 = t.call(
        &c.patient,
        &GetOrgUsers {
            org: "HospitalOrg".into(),
            after: None,
            limit: Some(2),
        },
    );
    assert_eq!(p1.users.len(), 2);
    assert_eq!(p1.next.as_deref(), Some("dr-wilson"));
    let p2 = t.call(
        &c.patient,
        &GetOrgUsers {
            org: "HospitalOrg".into(),
            after: p1.next,
            limit: Some(2),
        },
    );
    assert_eq!(p2.users.len(), 1);
    assert_eq!(p2.next, None);
    assert!(t.event_names().iter().all(|n| n == EVENT_USER_REGISTERED));
}

#[test]
fn day_listings_page_and_stay_apart() {
    let c = cast();
    let mut t = world();
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let mut r = request(None);
        r.requested_time_ms = T0 + DAY + i;
        ids.push(t.call(&c.patient, &r).appointment_id);
    }
    let mut r = request(None);
    r.requested_time_ms = T0 + 2 * DAY;
    t.call(&c.patient, &r);
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = t.call(
            &c.doctor,
            &GetAllAppointment {
                day: day_of(T0 + DAY),
                after,
                limit: Some(2),
            },
        );
        seen.extend(page.appointments.iter().map(|a| a.appointment_id));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let next_day = t.call(
        &c.doctor,
        &GetAllAppointment {
            day: day_of(T0 + 2 * DAY),
            after: None,
            limit: Some(0),
        },
    );
    assert_eq!(next_day.appointments.len(), 1);
    // Plans of another day or insurer are not listed.
    insure(&mut t);
    let other_day = t.call(
        &c.insurer,
        &GetInsuranceRegistrationRequests {
            day: day_of(T0) + 1,
            after: None,
            limit: None,
        },
    );
    assert!(other_day.plans.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Determinism
// ---------------------------------------------------------------------------------------------

#[test]
fn the_same_call_on_two_state_copies_is_byte_identical() {
    let c = cast();
    let mut t = world();
    let plan = insure(&mut t);
    let a = book(&mut t, Some(plan.plan_id));
    let lb = lab_report(&mut t, &a, b"r", 1);
    approve(&mut t, &lb);
    let db = prescribe(&mut t, &a, b"dose", 2);
    patient_pays(&mut t, &db, &c.doctor);
    t.call(
        &c.insurer,
        &PayInsurancePaymentRequests {
            bill_ids: vec![lb.bill_id],
        },
    );
    t.call(
        &c.lab,
        &ConfirmBillPayment {
            bill_id: lb.bill_id,
        },
    );
    mark_paid(&mut t, &a);
    delegate(&mut t, &a, &c.pharmacy);

    // Two endorsers: independent copies of the state, the same tx (id, time, caller).
    let copy = |t: &TestCtx| TestCtx {
        mem: MemCtx {
            state: t.mem.state.clone(),
            caller: t.mem.caller.clone(),
            events: Vec::new(),
        },
        tx: t.tx,
        now: t.now + 1,
        writes: Vec::new(),
        tx_events: 0,
    };
    let mut e1 = copy(&t);
    let mut e2 = copy(&t);
    let calls: Vec<(&Person, &str, Vec<u8>)> = vec![
        (
            &c.pharmacy,
            "getPrescriptionOthers",
            cbor::to_vec(&GetPrescriptionOthers {
                appointment_id: a.appointment_id,
            })
            .unwrap(),
        ),
        (
            &c.insurer,
            "getBillStatusInsurance",
            cbor::to_vec(&GetBillStatusInsurance {
                bill_id: lb.bill_id,
            })
            .unwrap(),
        ),
        (
            &c.pharmacy,
            "getLabReports",
            cbor::to_vec(&GetLabReports {
                appointment_id: a.appointment_id,
            })
            .unwrap(),
        ),
        (
            &c.pharmacy,
            "generateBillAndUpdatePrescriptionOthers",
            cbor::to_vec(&GenerateBillAndUpdatePrescriptionOthers {
                appointment_id: a.appointment_id,
                lab_report: None,
                amount: amount(&a, 3),
            })
            .unwrap(),
        ),
        (
            &c.patient,
            "requestAppointment",
            cbor::to_vec(&request(Some(plan.plan_id))).unwrap(),
        ),
    ];
    for (who, f, arg) in calls {
        let r1 = e1.raw(who, f, std::slice::from_ref(&arg)).unwrap();
        let r2 = e2.raw(who, f, std::slice::from_ref(&arg)).unwrap();
        assert_eq!(r1, r2, "{f}: responses differ");
        assert_eq!(e1.writes, e2.writes, "{f}: write sets differ");
        assert_eq!(e1.mem.events, e2.mem.events, "{f}: events differ");
    }
    assert_eq!(e1.mem.state, e2.mem.state);
    // getPrescriptionOthers wrote the fetch count; the re-encrypted dosage opens.
    let got: PrescriptionForOthers = {
        let arg = cbor::to_vec(&GetPrescriptionOthers {
            appointment_id: a.appointment_id,
        })
        .unwrap();
        let out = e1
            .raw(&c.pharmacy, "getPrescriptionOthers", &[arg])
            .unwrap();
        assert_eq!(e1.writes.len(), 1);
        cbor::from_slice(&out, 1 << 20).unwrap()
    };
    assert_eq!(
        client::open_dosage_reencrypted(c.pharmacy.sk(), &a.appointment_id, &got.dosage).unwrap(),
        b"dose"
    );
}

// ---------------------------------------------------------------------------------------------
// Encodings and robustness
// ---------------------------------------------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 ._-]{1,12}"
}

fn hash() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn bytes() -> impl Strategy<Value = ByteBuf> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(ByteBuf::from)
}

fn opt_bytes() -> impl Strategy<Value = Option<ByteBuf>> {
    proptest::option::of(bytes())
}

fn identity() -> impl Strategy<Value = Identity> {
    (name(), name()).prop_map(|(org, id)| Identity { org, id })
}

fn role() -> impl Strategy<Value = Role> {
    proptest::sample::select(Role::ALL.to_vec())
}

fn coverage() -> impl Strategy<Value = Option<Coverage>> {
    proptest::option::of((hash(), name(), name()).prop_map(
        |(plan_id, insurer, allocated_insurance_id)| Coverage {
            plan_id,
            insurer,
            allocated_insurance_id,
        },
    ))
}

fn appointment() -> impl Strategy<Value = Appointment> {
    (
        (hash(), identity(), identity(), name(), any::<u64>(), name()),
        (
            opt_bytes(),
            coverage(),
            bytes(),
            bytes(),
            proptest::sample::select(vec![
                AppointmentStatus::Requested,
                AppointmentStatus::Accepted,
                AppointmentStatus::Rejected,
            ]),
            any::<u64>(),
            any::<Option<u64>>(),
        ),
    )
        .prop_map(
            |(
                (appointment_id, patient, doctor, hospital, requested_time_ms, disease),
                (notes, coverage, pk, bk, status, created_ms, decided_ms),
            )| Appointment {
                appointment_id,
                patient,
                doctor,
                hospital,
                requested_time_ms,
                disease_classification: disease,
                notes,
                coverage,
                patient_pre_public_key: pk,
                billing_pre_public_key: bk,
                status,
                created_ms,
                decided_ms,
            },
        )
}

fn report_ref() -> impl Strategy<Value = LabReportRef> {
    (any::<u32>(), identity(), hash(), any::<u64>()).prop_map(|(index, lab, bill_id, added_ms)| {
        LabReportRef {
            index,
            lab,
            bill_id,
            added_ms,
        }
    })
}

fn prescription() -> impl Strategy<Value = Prescription> {
    (
        (hash(), identity(), identity()),
        proptest::sample::select(vec![
            PrescriptionStatus::Empty,
            PrescriptionStatus::LabReportsAdded,
            PrescriptionStatus::Complete,
            PrescriptionStatus::Paid,
        ]),
        opt_bytes(),
        proptest::collection::vec(report_ref(), 0..3),
        proptest::collection::vec(hash(), 0..3),
        (any::<u64>(), any::<Option<u64>>(), any::<Option<u64>>()),
    )
        .prop_map(
            |(
                (appointment_id, patient, doctor),
                status,
                dosage,
                lab_reports,
                bill_ids,
                (created_ms, completed_ms, paid_ms),
            )| Prescription {
                appointment_id,
                patient,
                doctor,
                status,
                dosage,
                lab_reports,
                bill_ids,
                created_ms,
                completed_ms,
                paid_ms,
            },
        )
}

fn bill() -> impl Strategy<Value = Bill> {
    (
        (hash(), hash(), identity(), identity(), role()),
        (
            proptest::sample::select(vec![
                BillKind::LabReport,
                BillKind::Prescription,
                BillKind::Pharmacy,
            ]),
            bytes(),
            proptest::sample::select(vec![
                BillStatus::Generated,
                BillStatus::Approved,
                BillStatus::PaymentSent,
                BillStatus::PaymentReceived,
            ]),
            coverage(),
            proptest::option::of(
                (any::<u64>(), bytes(), bytes()).prop_map(|(t, k, r)| Approval {
                    approved_ms: t,
                    insurer_pre_public_key: k,
                    rekey: r,
                }),
            ),
            proptest::option::of(prop_oneof![
                Just(Payer::Patient),
                identity().prop_map(Payer::Insurer)
            ]),
            (any::<u64>(), any::<Option<u64>>(), any::<Option<u64>>()),
        ),
    )
        .prop_map(
            |(
                (bill_id, appointment_id, patient, issuer, issuer_role),
                (kind, amount, status, coverage, approval, paid_by, (c, s, r)),
            )| Bill {
                bill_id,
                appointment_id,
                patient,
                issuer,
                issuer_role,
                kind,
                amount,
                status,
                coverage,
                approval,
                paid_by,
                created_ms: c,
                payment_sent_ms: s,
                payment_received_ms: r,
            },
        )
}

fn plan() -> impl Strategy<Value = InsurancePlan> {
    (
        (hash(), identity(), name(), name()),
        (
            proptest::sample::select(vec![PlanStatus::Requested, PlanStatus::Accepted]),
            proptest::option::of(name()),
            opt_bytes(),
            proptest::option::of(identity()),
            any::<u64>(),
            any::<Option<u64>>(),
        ),
    )
        .prop_map(
            |(
                (plan_id, patient, insurer, plan_type),
                (status, allocated_insurance_id, insurer_pre_public_key, accepted_by, r, a),
            )| InsurancePlan {
                plan_id,
                patient,
                insurer,
                plan_type,
                status,
                allocated_insurance_id,
                insurer_pre_public_key,
                accepted_by,
                requested_ms: r,
                accepted_ms: a,
            },
        )
}

fn delegation() -> impl Strategy<Value = Delegation> {
    (
        (hash(), identity(), role(), bytes()),
        (
            proptest::sample::select(vec![DelegationStatus::Requested, DelegationStatus::Allowed]),
            opt_bytes(),
            any::<u64>(),
            any::<Option<u64>>(),
            any::<u32>(),
            any::<Option<u64>>(),
        ),
    )
        .prop_map(
            |(
                (appointment_id, requester, requester_role, key),
                (status, rekey, requested_ms, allowed_ms, fetches, last_fetch_ms),
            )| Delegation {
                appointment_id,
                requester,
                requester_role,
                requester_pre_public_key: key,
                status,
                rekey,
                requested_ms,
                allowed_ms,
                fetches,
                last_fetch_ms,
            },
        )
}

fn payment_request() -> impl Strategy<Value = PaymentRequest> {
    (
        (hash(), hash(), identity(), hash()),
        (name(), name(), any::<u64>(), any::<Option<u64>>()),
    )
        .prop_map(
            |(
                (bill_id, appointment_id, patient, plan_id),
                (allocated_insurance_id, insurer, approved_ms, paid_ms),
            )| PaymentRequest {
                bill_id,
                appointment_id,
                patient,
                plan_id,
                allocated_insurance_id,
                insurer,
                approved_ms,
                paid_ms,
            },
        )
}

fn user() -> impl Strategy<Value = UserRecord> {
    (identity(), role(), opt_bytes(), any::<u64>(), any::<u64>()).prop_map(
        |(user, role, pre_public_key, registered_ms, updated_ms)| UserRecord {
            user,
            role,
            pre_public_key,
            registered_ms,
            updated_ms,
        },
    )
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = cbor::to_vec(v).unwrap();
    assert_eq!(cbor::to_vec(v).unwrap(), bytes, "deterministic");
    let back: T = cbor::from_slice(&bytes, usize::MAX).unwrap();
    assert_eq!(&back, v);
}

use serde::Serialize;
use serde::de::DeserializeOwned;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn requests_round_trip(
        h in hash(), h2 in hash(), p in identity(), t in any::<u64>(), code in name(),
        b1 in bytes(), b2 in bytes(), ob in opt_bytes(), ob2 in opt_bytes(), oh in proptest::option::of(hash()),
        limit in any::<Option<u32>>(), ids in proptest::collection::vec(hash(), 0..4),
        after in proptest::option::of(name()),
    ) {
        round_trip(&RequestAppointment { doctor: p.clone(), requested_time_ms: t, disease_classification: code.clone(), notes: ob.clone(), insurance_plan_id: oh, patient_pre_public_key: ob2.clone(), billing_pre_public_key: ob.clone() });
        round_trip(&GetAllAppointment { day: t, after: oh, limit });
        round_trip(&AcceptAppointment { appointment_id: h });
        round_trip(&RejectAppointment { appointment_id: h });
        round_trip(&GetAppointmentStatus { appointment_id: h });
        round_trip(&GeneratePrescription { appointment_id: h });
        round_trip(&GenerateBillAndUpdatePrescriptionOthers { appointment_id: h, lab_report: ob.clone(), amount: b1.clone() });
        round_trip(&GenerateBillAndUpdatePrescriptionDoctor { appointment_id: h, dosage: b1.clone(), amount: b2.clone() });
        round_trip(&GetPendingPaymentRequests { appointment_id: h });
        round_trip(&RegisterInsurance { insurer: code.clone(), plan_type: code.clone() });
        round_trip(&GetInsuranceRegistrationRequests { day: t, after: oh, limit });
        round_trip(&RegisterInsuranceRequestStatus { plan_id: h2 });
        round_trip(&AcceptInsuranceRegistrationRequest { plan_id: h2, allocated_insurance_id: code.clone() });
        round_trip(&GetBillStatus { bill_id: h });
        round_trip(&GetBillStatusPatient { appointment_id: h });
        round_trip(&ApprovePaymentRequest { bill_id: h, insurer_pre_public_key: b1.clone(), rekey: b2.clone() });
        round_trip(&GetBillStatusInsurance { bill_id: h });
        round_trip(&GetInsurancePaymentRequests { day: t, after: oh, limit });
        round_trip(&PayInsurancePaymentRequests { bill_ids: ids });
        round_trip(&PayBill { bill_id: h });
        round_trip(&ConfirmBillPayment { bill_id: h });
        round_trip(&MarkPrescriptionPaid { appointment_id: h });
        round_trip(&GetPrescriptionPatient { appointment_id: h });
        round_trip(&RequestPrescriptionOthers { appointment_id: h });
        round_trip(&AllowPrescriptionOthers { appointment_id: h, requester: p, requester_pre_public_key: b1, rekey: b2 });
        round_trip(&GetPrescriptionOthers { appointment_id: h });
        round_trip(&GetLabReports { appointment_id: h });
        round_trip(&GetOrgUsers { org: code, after, limit });
        round_trip(&RegisterUser { pre_public_key: ob });
    }

    #[test]
    fn records_and_responses_round_trip(
        a in appointment(), rx in prescription(), b in bill(), pl in plan(), d in delegation(),
        pr in payment_request(), u in user(), h in hash(), oh in proptest::option::of(hash()),
        by in bytes(), t in any::<Option<u64>>(), n in any::<u32>(), flag in any::<bool>(),
        next in proptest::option::of(name()), ev in (proptest::option::of(hash()), proptest::option::of(hash()), proptest::option::of(name())),
    ) {
        round_trip(&a);
        round_trip(&rx);
        round_trip(&b);
        round_trip(&pl);
        round_trip(&d);
        round_trip(&pr);
        round_trip(&u);
        round_trip(&AppointmentList { appointments: vec![a.clone()], next: oh });
        round_trip(&AppointmentStatusResponse {
            appointment: a,
            prescription: Some(PrescriptionSummary { status: rx.status, doctor: rx.doctor.clone(), lab_reports: rx.lab_reports.clone(), bill_ids: rx.bill_ids.clone() }),
            delegations: vec![d],
        });
        round_trip(&LabReport { appointment_id: h, index: n, report: by.clone() });
        round_trip(&BillGenerated { bill: b.clone(), prescription_status: rx.status, lab_report_index: Some(n) });
        round_trip(&BillList { bills: vec![b.clone(), b.clone()] });
        round_trip(&PlanList { plans: vec![pl], next: oh });
        round_trip(&InsurerBill { bill: b, amount: by.clone() });
        round_trip(&PaymentRequestList { requests: vec![pr], next: oh });
        round_trip(&PrescriptionForOthers { appointment_id: h, doctor: rx.doctor.clone(), status: rx.status, dosage: by.clone(), paid_ms: t });
        round_trip(&LabReports { reencrypted: flag, reports: rx.lab_reports.iter().map(|r| LabReportView { reference: r.clone(), report: by.clone() }).collect(), locked: n });
        round_trip(&OrgUsers { users: vec![u], next });
        round_trip(&HealthcareEvent { appointment_id: ev.0, bill_id: ev.1, plan_id: oh, org: ev.2 });
        round_trip(&BillAmount { minor_units: n.into(), currency: "EUR".into() });
        round_trip(&rx);
    }

    #[test]
    fn arbitrary_argument_bytes_never_panic(
        f in proptest::sample::select(FUNCTIONS.to_vec()),
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..96), 0..3),
        who in 0usize..10,
    ) {
        let c = cast();
        let cast = [&c.patient, &c.patient2, &c.doctor, &c.doctor2, &c.lab, &c.pharmacy, &c.insurer, &c.third, &c.patients_admin, &c.stranger];
        let mut t = world();
        let before = t.snapshot();
        if t.raw(cast[who], f, &args).is_err() {
            prop_assert_eq!(t.snapshot(), before);
        }
    }

    #[test]
    fn arbitrary_requests_never_panic_nor_half_apply(
        who in 0usize..10, now in any::<u64>(), h in hash(), pick in any::<proptest::sample::Index>(),
        by in bytes(), ob in opt_bytes(), code in "[ -~]{0,20}", ids in proptest::collection::vec(hash(), 0..3),
        t_req in any::<u64>(), limit in any::<Option<u32>>(),
    ) {
        let c = cast();
        let people = [&c.patient, &c.patient2, &c.doctor, &c.doctor2, &c.lab, &c.pharmacy, &c.insurer, &c.third, &c.patients_admin, &c.stranger];
        let mut t = world();
        let plan = insure(&mut t);
        let a = book(&mut t, Some(plan.plan_id));
        let lb = lab_report(&mut t, &a, b"r", 1);
        t.now = now;
        // Real ids of this ledger, or random ones; real sealed bytes, or random ones.
        let id = *pick.get(&[a.appointment_id, h]);
        let bill_id = *pick.get(&[lb.bill_id, h]);
        let plan_id = *pick.get(&[plan.plan_id, h]);
        let sealed = pick.get(&[lb.amount.clone(), by.clone()]).clone();
        let mut calls = one_of_each(&a, bill_id, plan_id);
        calls.push(e(RequestAppointment { doctor: c.doctor.who(), requested_time_ms: t_req, disease_classification: code.clone(), notes: ob.clone(), insurance_plan_id: Some(plan_id), patient_pre_public_key: ob.clone(), billing_pre_public_key: None }));
        calls.push(e(GenerateBillAndUpdatePrescriptionOthers { appointment_id: id, lab_report: ob.clone(), amount: sealed.clone() }));
        calls.push(e(GenerateBillAndUpdatePrescriptionDoctor { appointment_id: id, dosage: sealed.clone(), amount: by.clone() }));
        calls.push(e(AllowPrescriptionOthers { appointment_id: id, requester: c.third.who(), requester_pre_public_key: by.clone(), rekey: sealed }));
        calls.push(e(ApprovePaymentRequest { bill_id, insurer_pre_public_key: by.clone(), rekey: by.clone() }));
        calls.push(e(PayInsurancePaymentRequests { bill_ids: ids }));
        calls.push(e(AcceptInsuranceRegistrationRequest { plan_id, allocated_insurance_id: code.clone() }));
        calls.push(e(RegisterInsurance { insurer: code.clone(), plan_type: code.clone() }));
        calls.push(e(GetOrgUsers { org: code.clone(), after: Some(code), limit }));
        calls.push(e(RegisterUser { pre_public_key: ob }));
        for (f, arg) in calls {
            let before = t.snapshot();
            if let Err(err) = t.raw(people[who], f, std::slice::from_ref(&arg)) {
                prop_assert!(!matches!(err, ContractError::State(_)), "{}: {}", f, err);
                prop_assert_eq!(t.snapshot(), before, "{} failed and changed state", f);
            }
        }
    }
}

fn e<R: Request>(r: R) -> (&'static str, Vec<u8>) {
    let (f, mut args) = client::call(&r).unwrap();
    (f, args.remove(0))
}
