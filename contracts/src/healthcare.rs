//! `healthcare`: appointments, prescriptions, lab reports, bills, insurance plans and payments,
//! and the pharmacy (seed 003, chapter 5: the assets of figure 5.1, the two payment scenarios
//! of section 5.2.1, the 25 contracts of table 5.2), with the sensitive fields sealed to the
//! patient by AFGH proxy re-encryption (chapter 4, [`sphr_crypto::pre`]).
//!
//! ```text
//!  Case I (no insurance)                              Case II (insurance) differs at 6-7:
//!  1  patient  requestAppointment ─> appointment id (the token)   0 registerInsurance,
//!  2  doctor   acceptAppointment | rejectAppointment                 acceptInsurance-
//!     doctor   generatePrescription ─> EMPTY                         RegistrationRequest;
//!  3  lab      generateBillAndUpdatePrescriptionOthers                 requestAppointment
//!              {sealed report, sealed amount} ─> LAB_REPORTS_ADDED     names the plan
//!  4  doctor   requestPrescriptionOthers; patient allowPrescriptionOthers {rk};
//!              (lab bill paid) doctor getLabReports ─> re-encrypted reports
//!  5  doctor   generateBillAndUpdatePrescriptionDoctor {sealed dosage, amount} ─> COMPLETE
//!  6  patient  payBill ─> PAYMENT_SENT            6' patient approvePaymentRequest {rk to
//!                                                    insurer} ─> APPROVED + payment request
//!                                                 7' insurer getInsurancePaymentRequests,
//!                                                    getBillStatusInsurance (re-encrypted
//!                                                    amount), payInsurancePaymentRequests
//!                                                    ─> PAYMENT_SENT
//!     issuer   confirmBillPayment ─> PAYMENT_RECEIVED (every bill)
//!     doctor   markPrescriptionPaid ─> PAID (unlocked)
//!  7  patient  getPrescriptionPatient
//!  8-9 pharmacy requestPrescriptionOthers; patient allowPrescriptionOthers {rk to pharmacy};
//!              pharmacy getPrescriptionOthers ─> dosage re-encrypted by the contract
//!  10-12 pharmacy generateBillAndUpdatePrescriptionOthers {amount}; paid and confirmed as above
//! ```
//!
//! Every function takes one argument, a CBOR request struct from [`types`] (at most
//! [`MAX_ARG_BYTES`]), and answers with a CBOR response struct. [`client`] maps each request
//! type to its function and response and seals and opens the sealed fields.
//!
//! # Functions and access policies
//!
//! Everything but `registerUser` requires the caller to be registered (`registerUser`) with the
//! role of its current certificate; "the patient", "the doctor", "the issuer", "the insurer"
//! are decided from the caller's certificate (role, org, id) against the asset's recorded
//! parties. Numbers are those of table 5.2; the four functions marked + are not in the table
//! but the scenarios of section 5.2.1 need them.
//!
//! | # | function | request | response | who may call |
//! | --- | --- | --- | --- | --- |
//! | 1 | `requestAppointment` | [`RequestAppointment`] | [`Appointment`] | a `patient`; the doctor must be a registered `doctor`; a plan must be the caller's and ACCEPTED |
//! | 2 | `getAllAppointment` (query) | [`GetAllAppointment`] | [`AppointmentList`] | a `doctor`: their own appointments of one day |
//! | 3 | `acceptAppointment` | [`AcceptAppointment`] | [`Appointment`] | the `doctor` the appointment asks (not the patient) |
//! | + | `rejectAppointment` | [`RejectAppointment`] | [`Appointment`] | the `doctor` the appointment asks |
//! | 4 | `getAppointmentStatus` (query) | [`GetAppointmentStatus`] | [`AppointmentStatusResponse`] | the appointment's `patient` |
//! | 5 | `generatePrescription` | [`GeneratePrescription`] | [`Prescription`] | the appointment's `doctor`, once ACCEPTED |
//! | 6 | `generateBillAndUpdatePrescriptionOthers` | [`GenerateBillAndUpdatePrescriptionOthers`] | [`BillGenerated`] | a `lab` (report + bill, before COMPLETE); a `pharmacist` the patient allowed (bill only, once PAID) |
//! | 7 | `generateBillAndUpdatePrescriptionDoctor` | [`GenerateBillAndUpdatePrescriptionDoctor`] | [`BillGenerated`] | the prescription's `doctor` |
//! | 8 | `getPendingPaymentRequests` (query) | [`GetPendingPaymentRequests`] | [`BillList`] | the appointment's `patient` |
//! | 9 | `registerInsurance` | [`RegisterInsurance`] | [`InsurancePlan`] | a `patient` |
//! | 10 | `getInsuranceRegistrationRequests` (query) | [`GetInsuranceRegistrationRequests`] | [`PlanList`] | an `insurer`: its org's plans of one day |
//! | 11 | `registerInsuranceRequestStatus` (query) | [`RegisterInsuranceRequestStatus`] | [`InsurancePlan`] | the plan's `patient` |
//! | 12 | `acceptInsuranceRegistrationRequest` | [`AcceptInsuranceRegistrationRequest`] | [`InsurancePlan`] | an `insurer` of the plan's org, with a PRE key |
//! | 13 | `getBillStatus` (query) | [`GetBillStatus`] | [`Bill`] | the bill's issuer (`lab`, `doctor`, `pharmacist`) |
//! | 14 | `getBillStatusPatient` (query) | [`GetBillStatusPatient`] | [`BillList`] | the appointment's `patient` |
//! | 15 | `approvePaymentRequest` | [`ApprovePaymentRequest`] | [`Bill`] | the bill's `patient` (Case II, covered bills) |
//! | 16 | `getBillStatusInsurance` (query) | [`GetBillStatusInsurance`] | [`InsurerBill`] | an `insurer` of the bill's plan, once approved |
//! | 17 | `getInsurancePaymentRequests` (query) | [`GetInsurancePaymentRequests`] | [`PaymentRequestList`] | an `insurer`: its org's requests of one day |
//! | 18 | `payInsurancePaymentRequests` | [`PayInsurancePaymentRequests`] | [`BillList`] | an `insurer` of each bill's plan; APPROVED bills only |
//! | + | `payBill` | [`PayBill`] | [`Bill`] | the bill's `patient` (Case I; a GENERATED bill) |
//! | + | `confirmBillPayment` | [`ConfirmBillPayment`] | [`Bill`] | the bill's issuer |
//! | 19 | `markPrescriptionPaid` | [`MarkPrescriptionPaid`] | [`Prescription`] | the prescription's `doctor`; every bill PAYMENT_RECEIVED |
//! | 20 | `getPrescriptionPatient` (query) | [`GetPrescriptionPatient`] | [`Prescription`] | the `patient`, once PAID |
//! | 21 | `requestPrescriptionOthers` | [`RequestPrescriptionOthers`] | [`Delegation`] | anyone registered with a PRE key, but the patient (recorded) |
//! | 22 | `allowPrescriptionOthers` | [`AllowPrescriptionOthers`] | [`Delegation`] | the `patient` only (supplies the re-encryption key) |
//! | 23 | `getPrescriptionOthers` | [`GetPrescriptionOthers`] | [`PrescriptionForOthers`] | an allowed requester, once PAID (each fetch is recorded) |
//! | + | `getLabReports` (query) | [`GetLabReports`] | [`LabReports`] | the `patient` (sealed) or an allowed requester (re-encrypted); reports whose bill is PAYMENT_RECEIVED |
//! | 24 | `getOrgUsers` (query) | [`GetOrgUsers`] | [`OrgUsers`] | anyone registered; patients are listed only to themselves and their org's `admin` |
//! | 25 | `registerUser` (the thesis's `registerUserFabric`) | [`RegisterUser`] | [`UserRecord`] | anyone with a certificate: registers the caller |
//!
//! # Status machines
//!
//! Every change of status goes through [`Status::can_become`]; any other move is refused
//! ([`ContractError::Refused`]) and changes nothing.
//!
//! ```text
//!  appointment   REQUESTED ──acceptAppointment──> ACCEPTED
//!                    └──────rejectAppointment──> REJECTED
//!
//!  prescription  EMPTY ──lab report + bill──> LAB_REPORTS_ADDED ─┐ (more reports)
//!                  │                               │  <──────────┘
//!                  └──────dosage + bill (doctor)───┴──> COMPLETE ──markPrescriptionPaid──> PAID
//!                                           (every bill PAYMENT_RECEIVED)
//!
//!  bill          GENERATED ──payBill (patient, Case I)──────────────────> PAYMENT_SENT
//!                    │                                                      ▲        │
//!                    └──approvePaymentRequest──> APPROVED ──payInsurance────┘        │
//!                       (patient, Case II,       (+ payment  PaymentRequests         │
//!                        rk to the insurer)       request)   (insurer)               │
//!                                   PAYMENT_RECEIVED <──confirmBillPayment (issuer)──┘
//!
//!  insurance plan  REQUESTED ──acceptInsuranceRegistrationRequest──> ACCEPTED
//!  request by others (delegation)  REQUESTED ──allowPrescriptionOthers──> ALLOWED
//! ```
//!
//! # Sealed fields and delegation
//!
//! Dosage, lab reports and bill amounts arrive sealed by the client ([`client::seal_dosage`],
//! ...); the contract checks that each decodes as a [`sphr_crypto::pre::Sealed`] (subgroup
//! checks included) within its size limit, stores it as it is, and never sees a plaintext.
//! Each appointment records the two keys its fields are sealed to: `patient_pre_public_key`
//! (dosage, lab reports) and `billing_pre_public_key` (amounts); both default to the patient's
//! own key. A patient may give each appointment fresh keys, so that what a delegate learns is
//! limited to that appointment (see the security notes of [`sphr_crypto::pre`]: a
//! re-encryption key and the delegatee's secret key open everything sealed to that key pair).
//! A separate billing key keeps the insurer (who receives a re-encryption key for amounts) out
//! of dosages and reports.
//!
//! `allowPrescriptionOthers` stores the patient's re-encryption key for a requester;
//! `getPrescriptionOthers` and `getLabReports` compute `c1' = e(c1, rk)`
//! ([`sphr_crypto::pre::reencrypt`]), which is deterministic: every endorser returns the same
//! bytes. Only the patient's secret key makes a working re-encryption key, and the contract
//! refuses `allowPrescriptionOthers` from anyone but the patient.
//!
//! # Decisions
//!
//! - Ids come from the tx id: appointment `sha256_parts("sphr.healthcare.appointment", tx id)`,
//!   bill `sha256_parts("sphr.healthcare.bill", tx id)`, plan `"sphr.healthcare.plan"` likewise. The appointment id is the
//!   patient's token (section 5.2.4) and the prescription's id.
//! - A PRE key is the certificate's; a certificate without one may register one with
//!   `registerUser` (the transaction is signed by that certificate). A requester's key is
//!   recorded when they ask, and the patient's re-encryption key must name that key.
//! - Labs hold the token as the thesis's patient gives it to them: any registered `lab` may add
//!   a report (with its bill) to an open prescription. Pharmacies bill only a PAID
//!   prescription the patient allowed them on; their bills do not lock it again.
//! - The lock (objective 5): the dosage is released only when PAID, to the patient
//!   (`getPrescriptionPatient`) and allowed requesters (`getPrescriptionOthers`); before that
//!   both are refused. A lab report is released (`getLabReports`) once its own bill is
//!   PAYMENT_RECEIVED, so that the doctor can read it before writing the dosage (step 4).
//! - PAID is set by the doctor (`markPrescriptionPaid`, table 5.2) and only when every bill is
//!   PAYMENT_RECEIVED; payment itself is off chain (section 5.2.1). The payer marks
//!   PAYMENT_SENT, the issuer PAYMENT_RECEIVED. A patient may pay a GENERATED bill themself
//!   even when insured; an APPROVED bill is the insurer's to pay.
//! - The insurer's key is that of the officer who accepted the plan (the thesis's insurance
//!   public key): approvals carry a re-encryption key to it.
//! - `registerUser` registers the caller only: the contract sees no other certificate, so an
//!   admin cannot vouch for someone else's role or key. Re-registering updates the PRE key.
//! - `getPrescriptionOthers` is a transaction: it counts the requester's fetches (the patient
//!   sees them in `getAppointmentStatus`). All other reads are queries.
//! - Disease classification, plan type and member ids are codes (`A-Z a-z 0-9 . _ - :`), not
//!   free text; free text goes in sealed notes (by convention sealed to the doctor's key).
//! - Errors and events never carry a patient identity or a sealed field: messages name fields
//!   and statuses, events carry opaque ids (and an org). No plaintext reaches the contract.
//! - Every check runs before the first write, so a refused call changes no state.
//!
//! # State layout (keys inside the contract's namespace; values CBOR)
//!
//! | key | value |
//! | --- | --- |
//! | `user\0<org>\0<id>` | [`UserRecord`] |
//! | `appt\0<appointment id>` | [`Appointment`] |
//! | `apptDay\0<doctor org>\0<doctor id>\0<day u64 BE><appointment id>` | the id (index) |
//! | `rx\0<appointment id>` | [`Prescription`] |
//! | `report\0<appointment id><index u32 BE>` | [`LabReport`] |
//! | `bill\0<bill id>` | [`Bill`] |
//! | `deleg\0<appointment id><requester org>\0<requester id>` | [`Delegation`] |
//! | `plan\0<plan id>` | [`InsurancePlan`] |
//! | `planDay\0<insurer org>\0<day u64 BE><plan id>` | the id (index) |
//! | `payreq\0<insurer org>\0<day u64 BE><bill id>` | [`PaymentRequest`] |
//!
//! Bills, reports and requests by others live under their own keys, so a lab adding a report
//! and a pharmacy asking for the prescription touch different keys; the prescription record
//! stays small (at most [`MAX_LAB_REPORTS`] report references and [`MAX_BILLS`] bill ids).

mod appointments;
mod billing;
pub mod client;
mod keys;
mod prescriptions;
pub mod types;
mod users;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use sphr_crypto::cbor::{self, CborError};
use sphr_crypto::cert::Role;
use sphr_crypto::hash::{Hash32, sha256_parts};
use sphr_crypto::pre::{PrePublicKey, ReKey, Sealed};

use crate::{Contract, ContractError, Ctx, MAX_RANGE_LEN, expect_args};
pub use types::*;

/// The contract's name (its namespace and its name in genesis).
pub const NAME: &str = "healthcare";

/// The 25 functions of table 5.2, in the table's order (`registerUser` is the thesis's
/// `registerUserFabric`).
pub const TABLE_5_2: [&str; 25] = [
    "requestAppointment",
    "getAllAppointment",
    "acceptAppointment",
    "getAppointmentStatus",
    "generatePrescription",
    "generateBillAndUpdatePrescriptionOthers",
    "generateBillAndUpdatePrescriptionDoctor",
    "getPendingPaymentRequests",
    "registerInsurance",
    "getInsuranceRegistrationRequests",
    "registerInsuranceRequestStatus",
    "acceptInsuranceRegistrationRequest",
    "getBillStatus",
    "getBillStatusPatient",
    "approvePaymentRequest",
    "getBillStatusInsurance",
    "getInsurancePaymentRequests",
    "payInsurancePaymentRequests",
    "markPrescriptionPaid",
    "getPrescriptionPatient",
    "requestPrescriptionOthers",
    "allowPrescriptionOthers",
    "getPrescriptionOthers",
    "getOrgUsers",
    "registerUser",
];

/// Functions the scenarios of section 5.2.1 need that table 5.2 does not list.
pub const EXTRA_FUNCTIONS: [&str; 4] = [
    "rejectAppointment",
    "payBill",
    "confirmBillPayment",
    "getLabReports",
];

const FUNCTIONS: &[&str] = &[
    "requestAppointment",
    "getAllAppointment",
    "acceptAppointment",
    "getAppointmentStatus",
    "generatePrescription",
    "generateBillAndUpdatePrescriptionOthers",
    "generateBillAndUpdatePrescriptionDoctor",
    "getPendingPaymentRequests",
    "registerInsurance",
    "getInsuranceRegistrationRequests",
    "registerInsuranceRequestStatus",
    "acceptInsuranceRegistrationRequest",
    "getBillStatus",
    "getBillStatusPatient",
    "approvePaymentRequest",
    "getBillStatusInsurance",
    "getInsurancePaymentRequests",
    "payInsurancePaymentRequests",
    "markPrescriptionPaid",
    "getPrescriptionPatient",
    "requestPrescriptionOthers",
    "allowPrescriptionOthers",
    "getPrescriptionOthers",
    "getOrgUsers",
    "registerUser",
    "rejectAppointment",
    "payBill",
    "confirmBillPayment",
    "getLabReports",
];

const QUERIES: &[&str] = &[
    "getAllAppointment",
    "getAppointmentStatus",
    "getPendingPaymentRequests",
    "getInsuranceRegistrationRequests",
    "registerInsuranceRequestStatus",
    "getBillStatus",
    "getBillStatusPatient",
    "getBillStatusInsurance",
    "getInsurancePaymentRequests",
    "getPrescriptionPatient",
    "getLabReports",
    "getOrgUsers",
];

/// The `healthcare` contract.
pub struct HealthcareContract;

impl Contract for HealthcareContract {
    fn name(&self) -> &'static str {
        NAME
    }

    fn functions(&self) -> &'static [&'static str] {
        FUNCTIONS
    }

    fn is_query(&self, function: &str) -> bool {
        QUERIES.contains(&function)
    }

    fn invoke(
        &self,
        ctx: &mut dyn Ctx,
        function: &str,
        args: &[Vec<u8>],
    ) -> Result<Vec<u8>, ContractError> {
        use appointments as a;
        use billing as b;
        use prescriptions as p;
        use users as u;
        let f = function;
        match function {
            "requestAppointment" => respond(&a::request(ctx, decode(f, args)?)?),
            "getAllAppointment" => respond(&a::get_all(ctx, decode(f, args)?)?),
            "acceptAppointment" => {
                let r: AcceptAppointment = decode(f, args)?;
                respond(&a::decide(ctx, &r.appointment_id, true)?)
            }
            "rejectAppointment" => {
                let r: RejectAppointment = decode(f, args)?;
                respond(&a::decide(ctx, &r.appointment_id, false)?)
            }
            "getAppointmentStatus" => respond(&a::status(ctx, decode(f, args)?)?),
            "generatePrescription" => respond(&p::generate(ctx, decode(f, args)?)?),
            "generateBillAndUpdatePrescriptionOthers" => {
                respond(&p::bill_others(ctx, decode(f, args)?)?)
            }
            "generateBillAndUpdatePrescriptionDoctor" => {
                respond(&p::bill_doctor(ctx, decode(f, args)?)?)
            }
            "getPendingPaymentRequests" => {
                let r: GetPendingPaymentRequests = decode(f, args)?;
                respond(&b::patient_bills(ctx, &r.appointment_id, true)?)
            }
            "registerInsurance" => respond(&b::register_insurance(ctx, decode(f, args)?)?),
            "getInsuranceRegistrationRequests" => {
                respond(&b::registration_requests(ctx, decode(f, args)?)?)
            }
            "registerInsuranceRequestStatus" => {
                respond(&b::registration_status(ctx, decode(f, args)?)?)
            }
            "acceptInsuranceRegistrationRequest" => {
                respond(&b::accept_registration(ctx, decode(f, args)?)?)
            }
            "getBillStatus" => respond(&b::bill_status(ctx, decode(f, args)?)?),
            "getBillStatusPatient" => {
                let r: GetBillStatusPatient = decode(f, args)?;
                respond(&b::patient_bills(ctx, &r.appointment_id, false)?)
            }
            "approvePaymentRequest" => respond(&b::approve(ctx, decode(f, args)?)?),
            "getBillStatusInsurance" => respond(&b::bill_for_insurer(ctx, decode(f, args)?)?),
            "getInsurancePaymentRequests" => respond(&b::payment_requests(ctx, decode(f, args)?)?),
            "payInsurancePaymentRequests" => respond(&b::insurer_pays(ctx, decode(f, args)?)?),
            "payBill" => respond(&b::patient_pays(ctx, decode(f, args)?)?),
            "confirmBillPayment" => respond(&b::confirm(ctx, decode(f, args)?)?),
            "markPrescriptionPaid" => respond(&p::mark_paid(ctx, decode(f, args)?)?),
            "getPrescriptionPatient" => respond(&p::for_patient(ctx, decode(f, args)?)?),
            "requestPrescriptionOthers" => respond(&p::request_others(ctx, decode(f, args)?)?),
            "allowPrescriptionOthers" => respond(&p::allow_others(ctx, decode(f, args)?)?),
            "getPrescriptionOthers" => respond(&p::for_others(ctx, decode(f, args)?)?),
            "getLabReports" => respond(&p::lab_reports(ctx, decode(f, args)?)?),
            "getOrgUsers" => respond(&u::org_users(ctx, decode(f, args)?)?),
            "registerUser" => respond(&u::register(ctx, decode(f, args)?)?),
            other => Err(ContractError::UnknownFunction {
                contract: NAME.into(),
                function: other.into(),
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding and state access
// ---------------------------------------------------------------------------------------------

/// Decodes the single CBOR argument. The message never repeats the input.
fn decode<T: DeserializeOwned>(function: &str, args: &[Vec<u8>]) -> Result<T, ContractError> {
    expect_args(args, 1, "one CBOR-encoded request")?;
    let bytes = args
        .first()
        .ok_or_else(|| ContractError::BadArgs("missing the request argument".into()))?;
    let what = std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or("request");
    cbor::from_slice(bytes, MAX_ARG_BYTES).map_err(|e| match e {
        CborError::TooLarge { len, limit } => ContractError::Limit(format!(
            "the argument of {function} is {len} bytes, at most {limit}"
        )),
        _ => ContractError::BadArgs(format!(
            "the argument of {function} is not a CBOR-encoded {what}"
        )),
    })
}

fn respond<T: Serialize>(value: &T) -> Result<Vec<u8>, ContractError> {
    cbor::to_vec(value).map_err(|e| ContractError::State(format!("encoding the response: {e}")))
}

fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ContractError> {
    cbor::from_slice(bytes, crate::MAX_VALUE_LEN)
        .map_err(|_| ContractError::State(format!("a stored {what} is not valid CBOR")))
}

fn load<T: DeserializeOwned>(
    ctx: &mut dyn Ctx,
    key: &[u8],
    what: &str,
) -> Result<Option<T>, ContractError> {
    match ctx.get(key)? {
        None => Ok(None),
        Some(v) => parse(&v, what).map(Some),
    }
}

fn store<T: Serialize>(ctx: &mut dyn Ctx, key: &[u8], value: &T) -> Result<(), ContractError> {
    let bytes = cbor::to_vec(value)
        .map_err(|e| ContractError::State(format!("encoding a state value: {e}")))?;
    ctx.put(key, &bytes)
}

/// Every value under `prefix`, in key order (at most `max`).
fn load_all<T: DeserializeOwned>(
    ctx: &mut dyn Ctx,
    prefix: &[u8],
    max: usize,
    what: &str,
) -> Result<Vec<T>, ContractError> {
    ctx.range(prefix, &keys::prefix_end(prefix), max.min(MAX_RANGE_LEN))?
        .iter()
        .map(|(_, v)| parse(v, what))
        .collect()
}

/// One page of the values under `prefix`, starting after the key `prefix || after`. Returns
/// the values and whether more follow.
fn page<T: DeserializeOwned>(
    ctx: &mut dyn Ctx,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: Option<u32>,
    what: &str,
) -> Result<(Vec<T>, bool), ContractError> {
    let limit = limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE) as usize;
    let start = match after {
        None => prefix.to_vec(),
        Some(tail) => keys::after(&[prefix, tail].concat()),
    };
    let rows = ctx.range(&start, &keys::prefix_end(prefix), limit + 1)?;
    let more = rows.len() > limit;
    let items = rows
        .iter()
        .take(limit)
        .map(|(_, v)| parse(v, what))
        .collect::<Result<Vec<T>, _>>()?;
    Ok((items, more))
}

/// Emits `name` with a [`HealthcareEvent`] payload.
fn emit(ctx: &mut dyn Ctx, name: &str, event: HealthcareEvent) -> Result<(), ContractError> {
    let payload = respond(&event)?;
    ctx.emit(name, &payload)
}

/// An event about an appointment or bill or plan; fill in what applies.
fn event() -> HealthcareEvent {
    HealthcareEvent {
        appointment_id: None,
        bill_id: None,
        plan_id: None,
        org: None,
    }
}

/// A new id made in this transaction: `sha256_parts(domain, tx id)`.
fn new_id(ctx: &dyn Ctx, domain: &[u8]) -> Hash32 {
    sha256_parts(&[domain, ctx.tx_id().as_bytes()])
}

// ---------------------------------------------------------------------------------------------
// Input checks (messages name fields, never values)
// ---------------------------------------------------------------------------------------------

fn bad(msg: impl Into<String>) -> ContractError {
    ContractError::BadArgs(msg.into())
}

fn denied(msg: impl Into<String>) -> ContractError {
    ContractError::Denied(msg.into())
}

fn refused(msg: impl Into<String>) -> ContractError {
    ContractError::Refused(msg.into())
}

/// A certificate-style name: 1 to [`MAX_NAME_LEN`] bytes, no control character, no `@`.
fn check_name(what: &str, s: &str) -> Result<(), ContractError> {
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(bad(format!("{what} must be 1 to {MAX_NAME_LEN} bytes")));
    }
    if s.chars().any(|c| c.is_control() || c == '@') {
        return Err(bad(format!("{what} holds a control character or '@'")));
    }
    Ok(())
}

fn check_identity(what: &str, p: &Identity) -> Result<(), ContractError> {
    check_name(&format!("{what} org"), &p.org)?;
    check_name(&format!("{what} id"), &p.id)
}

/// A code: 1 to [`MAX_CODE_LEN`] bytes of `A-Z a-z 0-9 . _ - :`.
fn check_code(what: &str, s: &str) -> Result<(), ContractError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_CODE_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "{what} must be 1 to {MAX_CODE_LEN} characters of A-Z a-z 0-9 . _ - :"
        )))
    }
}

/// A sealed field: at most `max` bytes that decode as a [`Sealed`] (subgroup-checked `c1`).
fn check_sealed(what: &str, bytes: &[u8], max: usize) -> Result<Sealed, ContractError> {
    if bytes.len() > max {
        return Err(ContractError::Limit(format!(
            "{what} is {} bytes, at most {max}",
            bytes.len()
        )));
    }
    Sealed::from_bytes(bytes).map_err(|_| {
        bad(format!(
            "{what} is not a valid PRE ciphertext (Sealed bytes)"
        ))
    })
}

fn check_pre_key(what: &str, bytes: &[u8]) -> Result<PrePublicKey, ContractError> {
    PrePublicKey::from_bytes(bytes)
        .map_err(|_| bad(format!("{what} is not a valid PRE public key")))
}

fn check_rekey(what: &str, bytes: &[u8]) -> Result<ReKey, ContractError> {
    ReKey::from_bytes(bytes).map_err(|_| bad(format!("{what} is not a valid re-encryption key")))
}

/// Refuses a move the status machine does not allow.
fn transition<S: Status>(from: S, to: S) -> Result<(), ContractError> {
    if from.can_become(to) {
        Ok(())
    } else {
        Err(refused(format!(
            "the {} is {from} and cannot become {to}",
            S::ASSET
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// The caller
// ---------------------------------------------------------------------------------------------

/// The caller, registered.
struct Me {
    who: Identity,
    role: Role,
    /// The PRE key: the certificate's, else the registered one.
    pre_key: Option<Vec<u8>>,
}

impl Me {
    /// Whether the caller is `who` holding `role`.
    fn is(&self, who: &Identity, role: Role) -> bool {
        self.role == role && self.who == *who
    }
}

/// The caller, who must be registered with the role of its certificate.
fn me(ctx: &mut dyn Ctx) -> Result<Me, ContractError> {
    let c = ctx.caller().clone();
    let who = Identity::new(c.org, c.id);
    check_identity("the caller's certificate", &who)?;
    let user: UserRecord = load(ctx, &keys::user(&who), "user")?
        .ok_or_else(|| denied("the caller is not registered: call registerUser first"))?;
    if user.role != c.role {
        return Err(denied(
            "the caller's certificate role differs from its registration: call registerUser again",
        ));
    }
    let pre_key = c
        .pre_public_key
        .or_else(|| user.pre_public_key.map(ByteBuf::into_vec));
    Ok(Me {
        who,
        role: c.role,
        pre_key,
    })
}

fn require_role(me: &Me, role: Role, action: &str) -> Result<(), ContractError> {
    if me.role == role {
        Ok(())
    } else {
        Err(denied(format!("only a {} may {action}", role.as_str())))
    }
}

fn load_appointment(ctx: &mut dyn Ctx, id: &Hash32) -> Result<Appointment, ContractError> {
    load(ctx, &keys::appointment(id), "appointment")?
        .ok_or_else(|| ContractError::NotFound("no appointment with that id".into()))
}

fn load_prescription(ctx: &mut dyn Ctx, id: &Hash32) -> Result<Prescription, ContractError> {
    load(ctx, &keys::prescription(id), "prescription")?
        .ok_or_else(|| ContractError::NotFound("no prescription for that appointment".into()))
}

fn load_bill(ctx: &mut dyn Ctx, id: &Hash32) -> Result<Bill, ContractError> {
    load(ctx, &keys::bill(id), "bill")?
        .ok_or_else(|| ContractError::NotFound("no bill with that id".into()))
}

fn load_plan(ctx: &mut dyn Ctx, id: &Hash32) -> Result<InsurancePlan, ContractError> {
    load(ctx, &keys::plan(id), "insurance plan")?
        .ok_or_else(|| ContractError::NotFound("no insurance plan with that id".into()))
}

/// The bills of a prescription, in order.
fn load_bills(ctx: &mut dyn Ctx, rx: &Prescription) -> Result<Vec<Bill>, ContractError> {
    rx.bill_ids
        .iter()
        .map(|id| {
            load(ctx, &keys::bill(id), "bill")?
                .ok_or_else(|| ContractError::State("a bill of a prescription is missing".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
