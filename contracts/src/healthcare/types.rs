//! The healthcare contract's wire types: one CBOR request struct per function, the responses,
//! the records kept in state, and their status machines. Clients build the requests and
//! encode them with `sphr_crypto::cbor` (or with [`super::client::call`]).
//!
//! Sealed fields (`notes`, `dosage`, `lab_report`, `amount`) are byte strings holding
//! [`sphr_crypto::pre::Sealed::to_bytes`]; re-encrypted ones in responses hold
//! [`sphr_crypto::pre::ReSealed::to_bytes`]. PRE public keys are
//! [`sphr_crypto::pre::PrePublicKey::to_bytes`] and re-encryption keys
//! [`sphr_crypto::pre::ReKey::to_bytes`]. The contract checks that each decodes (subgroup
//! checks included) and bounds its size; it never sees a plaintext.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;

pub use crate::consent::Identity;

/// Largest CBOR argument accepted by any function.
pub const MAX_ARG_BYTES: usize = 32 * 1024;
/// Longest org or subject id (the certificate limit).
pub const MAX_NAME_LEN: usize = sphr_crypto::cert::MAX_NAME_LEN;
/// Longest code (disease classification, plan type, allocated insurance id): 1 to this many
/// bytes of `A-Z a-z 0-9 . _ - :` (a code, not free text: free text goes in sealed notes).
pub const MAX_CODE_LEN: usize = 64;
/// Longest sealed appointment notes (bytes of `Sealed::to_bytes`).
pub const MAX_NOTES_LEN: usize = 2 * 1024;
/// Longest sealed dosage.
pub const MAX_DOSAGE_LEN: usize = 8 * 1024;
/// Longest sealed lab report.
pub const MAX_LAB_REPORT_LEN: usize = 16 * 1024;
/// Longest sealed bill amount.
pub const MAX_AMOUNT_LEN: usize = 256;
/// Most lab reports in one prescription.
pub const MAX_LAB_REPORTS: usize = 16;
/// Most bills against one prescription (lab, doctor and pharmacy bills together).
pub const MAX_BILLS: usize = 32;
/// Most requests for one prescription by others (`requestPrescriptionOthers`).
pub const MAX_DELEGATIONS: usize = 32;
/// Most bills one `payInsurancePaymentRequests` call pays (one event each, within the
/// per-transaction event limit).
pub const MAX_PAY_BATCH: usize = crate::MAX_EVENTS;
/// Most items one listing returns (the default page size).
pub const MAX_PAGE: u32 = 100;
/// Milliseconds in a day. Days are UTC days since the Unix epoch: `time_ms / MS_PER_DAY`.
pub const MS_PER_DAY: u64 = 86_400_000;
/// How far in the past an appointment may be requested (clock skew between clients).
pub const MAX_APPOINTMENT_PAST_MS: u64 = MS_PER_DAY;
/// How far ahead an appointment may be requested.
pub const MAX_APPOINTMENT_AHEAD_MS: u64 = 400 * MS_PER_DAY;

/// The UTC day (days since the Unix epoch) of a Unix time in milliseconds.
pub fn day_of(time_ms: u64) -> u64 {
    time_ms / MS_PER_DAY
}

// ---------------------------------------------------------------------------------------------
// Events: each payload is a CBOR [`HealthcareEvent`] of opaque ids (and an org), never a patient
// identity or a sealed field.
// ---------------------------------------------------------------------------------------------

/// `registerUser` recorded a user (payload: org only).
pub const EVENT_USER_REGISTERED: &str = "userRegistered";
/// An appointment was requested (payload: appointment id, the hospital's org).
pub const EVENT_APPOINTMENT_REQUESTED: &str = "appointmentRequested";
/// An appointment was accepted.
pub const EVENT_APPOINTMENT_ACCEPTED: &str = "appointmentAccepted";
/// An appointment was rejected.
pub const EVENT_APPOINTMENT_REJECTED: &str = "appointmentRejected";
/// A doctor generated an empty prescription.
pub const EVENT_PRESCRIPTION_GENERATED: &str = "prescriptionGenerated";
/// A lab added a report to a prescription.
pub const EVENT_LAB_REPORT_ADDED: &str = "labReportAdded";
/// A doctor added the dosage: the prescription is COMPLETE.
pub const EVENT_PRESCRIPTION_COMPLETED: &str = "prescriptionCompleted";
/// Every bill was received: the prescription is PAID (unlocked).
pub const EVENT_PRESCRIPTION_PAID: &str = "prescriptionPaid";
/// A bill was generated (payload: bill id, appointment id).
pub const EVENT_BILL_GENERATED: &str = "billGenerated";
/// A patient approved a bill for their insurer (Case II).
pub const EVENT_BILL_APPROVED: &str = "billApproved";
/// A payment request was added for an insurer (payload: bill id, the insurer's org).
pub const EVENT_PAYMENT_REQUESTED: &str = "paymentRequested";
/// A bill was marked PAYMENT SENT (by the patient or the insurer).
pub const EVENT_BILL_PAYMENT_SENT: &str = "billPaymentSent";
/// A bill's issuer confirmed the payment: PAYMENT RECEIVED.
pub const EVENT_BILL_PAYMENT_RECEIVED: &str = "billPaymentReceived";
/// A patient asked an insurer for a plan (payload: plan id, the insurer's org).
pub const EVENT_INSURANCE_REQUESTED: &str = "insuranceRequested";
/// An insurer accepted a plan.
pub const EVENT_INSURANCE_ACCEPTED: &str = "insuranceAccepted";
/// Someone asked for a prescription (payload: appointment id).
pub const EVENT_PRESCRIPTION_ACCESS_REQUESTED: &str = "prescriptionAccessRequested";
/// The patient allowed a requester (payload: appointment id).
pub const EVENT_PRESCRIPTION_ACCESS_ALLOWED: &str = "prescriptionAccessAllowed";
/// An allowed requester fetched the re-encrypted dosage (payload: appointment id).
pub const EVENT_PRESCRIPTION_FETCHED: &str = "prescriptionFetched";

/// The payload of every healthcare event: opaque ids and at most an org name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthcareEvent {
    /// The appointment (and prescription) concerned.
    pub appointment_id: Option<Hash32>,
    /// The bill concerned.
    pub bill_id: Option<Hash32>,
    /// The insurance plan concerned.
    pub plan_id: Option<Hash32>,
    /// The org to notify (the hospital of an appointment, the insurer of a plan or payment
    /// request, the org of a registered user).
    pub org: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Status machines
// ---------------------------------------------------------------------------------------------

/// A status with its legal transitions.
pub trait Status: Copy + Eq + fmt::Display {
    /// What the status belongs to ("appointment", "bill", ...), for messages.
    const ASSET: &'static str;
    /// Whether `self -> to` is a legal transition.
    fn can_become(self, to: Self) -> bool;
}

macro_rules! status_display {
    ($t:ty, $($v:ident => $s:literal),+ $(,)?) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$v => $s),+ })
            }
        }
    };
}

/// An appointment's status: `REQUESTED -> ACCEPTED | REJECTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppointmentStatus {
    /// Asked by the patient.
    Requested,
    /// Accepted by the doctor.
    Accepted,
    /// Rejected by the doctor (final).
    Rejected,
}
status_display!(AppointmentStatus, Requested => "REQUESTED", Accepted => "ACCEPTED", Rejected => "REJECTED");

impl Status for AppointmentStatus {
    const ASSET: &'static str = "appointment";
    fn can_become(self, to: Self) -> bool {
        use AppointmentStatus::*;
        matches!((self, to), (Requested, Accepted) | (Requested, Rejected))
    }
}

/// A prescription's status:
/// `EMPTY -> LAB_REPORTS_ADDED -> COMPLETE -> PAID`, with `EMPTY -> COMPLETE` (no lab test) and
/// `LAB_REPORTS_ADDED -> LAB_REPORTS_ADDED` (another report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PrescriptionStatus {
    /// Generated by the doctor when the patient arrives; nothing in it yet.
    Empty,
    /// One or more lab reports (each with its bill) added.
    LabReportsAdded,
    /// The doctor added the dosage (and its bill); no more reports.
    Complete,
    /// Every bill is PAYMENT RECEIVED: unlocked for the patient and allowed requesters.
    Paid,
}
status_display!(PrescriptionStatus, Empty => "EMPTY", LabReportsAdded => "LAB_REPORTS_ADDED", Complete => "COMPLETE", Paid => "PAID");

impl Status for PrescriptionStatus {
    const ASSET: &'static str = "prescription";
    fn can_become(self, to: Self) -> bool {
        use PrescriptionStatus::*;
        matches!(
            (self, to),
            (Empty, LabReportsAdded)
                | (LabReportsAdded, LabReportsAdded)
                | (Empty, Complete)
                | (LabReportsAdded, Complete)
                | (Complete, Paid)
        )
    }
}

/// A bill's status:
/// `GENERATED -> PAYMENT_SENT` (Case I, the patient pays) or
/// `GENERATED -> APPROVED -> PAYMENT_SENT` (Case II, the insurer pays), then
/// `PAYMENT_SENT -> PAYMENT_RECEIVED` (the issuer confirms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillStatus {
    /// Issued by a lab, doctor or pharmacy.
    Generated,
    /// Approved by the patient for payment by their insurer (Case II).
    Approved,
    /// The payer (patient or insurer) says the money was sent (off chain).
    PaymentSent,
    /// The issuer confirmed the money arrived (final).
    PaymentReceived,
}
status_display!(BillStatus, Generated => "GENERATED", Approved => "APPROVED", PaymentSent => "PAYMENT_SENT", PaymentReceived => "PAYMENT_RECEIVED");

impl Status for BillStatus {
    const ASSET: &'static str = "bill";
    fn can_become(self, to: Self) -> bool {
        use BillStatus::*;
        matches!(
            (self, to),
            (Generated, Approved)
                | (Generated, PaymentSent)
                | (Approved, PaymentSent)
                | (PaymentSent, PaymentReceived)
        )
    }
}

/// An insurance plan's status: `REQUESTED -> ACCEPTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlanStatus {
    /// Asked by the patient.
    Requested,
    /// Accepted by the insurer.
    Accepted,
}
status_display!(PlanStatus, Requested => "REQUESTED", Accepted => "ACCEPTED");

impl Status for PlanStatus {
    const ASSET: &'static str = "insurance plan";
    fn can_become(self, to: Self) -> bool {
        matches!((self, to), (PlanStatus::Requested, PlanStatus::Accepted))
    }
}

/// A request by someone else for a prescription: `REQUESTED -> ALLOWED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DelegationStatus {
    /// Asked by the requester.
    Requested,
    /// The patient supplied a re-encryption key to the requester's PRE key.
    Allowed,
}
status_display!(DelegationStatus, Requested => "REQUESTED", Allowed => "ALLOWED");

impl Status for DelegationStatus {
    const ASSET: &'static str = "prescription request";
    fn can_become(self, to: Self) -> bool {
        matches!(
            (self, to),
            (DelegationStatus::Requested, DelegationStatus::Allowed)
        )
    }
}

/// What a bill is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillKind {
    /// A lab report (`generateBillAndUpdatePrescriptionOthers` by a lab).
    LabReport,
    /// The doctor's prescription (`generateBillAndUpdatePrescriptionDoctor`).
    Prescription,
    /// Medicine dispensed by a pharmacy (`generateBillAndUpdatePrescriptionOthers` by a
    /// pharmacist, after the prescription is PAID). Does not lock the prescription again.
    Pharmacy,
}

/// Who sent a bill's payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Payer {
    /// The patient (Case I, `payBill`).
    Patient,
    /// The insurer (Case II, `payInsurancePaymentRequests`), by the officer who paid.
    Insurer(Identity),
}

// ---------------------------------------------------------------------------------------------
// Records kept in state (also returned by the functions)
// ---------------------------------------------------------------------------------------------

/// A registered user (`registerUser`), listed by `getOrgUsers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The certificate identity.
    pub user: Identity,
    /// The certificate role.
    pub role: Role,
    /// The user's PRE public key: the certificate's if it carries one, else the one the user
    /// registered in a transaction signed with that certificate.
    pub pre_public_key: Option<ByteBuf>,
    /// When first registered (tx time, ms).
    pub registered_ms: u64,
    /// When last registered (tx time, ms).
    pub updated_ms: u64,
}

/// The accepted insurance plan an appointment (and its bills) is covered by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// The plan.
    pub plan_id: Hash32,
    /// The insurer's org.
    pub insurer: String,
    /// The member id the insurer allocated.
    pub allocated_insurance_id: String,
}

/// An appointment (figure 5.1). Its id is also the prescription's id and the patient's token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appointment {
    /// `sha256_parts("sphr.healthcare.appointment", tx id)`.
    pub appointment_id: Hash32,
    /// The owner.
    pub patient: Identity,
    /// The doctor asked.
    pub doctor: Identity,
    /// The doctor's org (the hospital).
    pub hospital: String,
    /// When the patient would like to come (Unix ms).
    pub requested_time_ms: u64,
    /// A coarse code (department, ICD chapter), stored in clear: no free text.
    pub disease_classification: String,
    /// Notes, sealed by the patient (by convention to the doctor's PRE key).
    pub notes: Option<ByteBuf>,
    /// The insurance plan (the thesis's insurance flag, plan id and company id); `None`: the
    /// patient pays (Case I).
    pub coverage: Option<Coverage>,
    /// The key dosage and lab reports of this appointment are sealed to.
    pub patient_pre_public_key: ByteBuf,
    /// The key bill amounts of this appointment are sealed to.
    pub billing_pre_public_key: ByteBuf,
    /// REQUESTED, ACCEPTED or REJECTED.
    pub status: AppointmentStatus,
    /// When requested (tx time, ms).
    pub created_ms: u64,
    /// When accepted or rejected (tx time, ms).
    pub decided_ms: Option<u64>,
}

/// A lab report's place in a prescription (the body is kept apart, see [`LabReport`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabReportRef {
    /// Its index in the prescription (0, 1, ...).
    pub index: u32,
    /// The lab that added it (the thesis's report invoker).
    pub lab: Identity,
    /// The bill generated with it.
    pub bill_id: Hash32,
    /// When added (tx time, ms).
    pub added_ms: u64,
}

/// A prescription (figure 5.1), keyed by its appointment's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prescription {
    /// The appointment.
    pub appointment_id: Hash32,
    /// The owner.
    pub patient: Identity,
    /// The doctor who generated it and writes the dosage.
    pub doctor: Identity,
    /// Its status.
    pub status: PrescriptionStatus,
    /// The dosage, sealed to the appointment's patient key; set when COMPLETE.
    pub dosage: Option<ByteBuf>,
    /// The lab reports added, in order.
    pub lab_reports: Vec<LabReportRef>,
    /// Every bill against it, in the order generated.
    pub bill_ids: Vec<Hash32>,
    /// When generated (tx time, ms).
    pub created_ms: u64,
    /// When it became COMPLETE.
    pub completed_ms: Option<u64>,
    /// When it became PAID.
    pub paid_ms: Option<u64>,
}

/// A lab report's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabReport {
    /// The appointment.
    pub appointment_id: Hash32,
    /// Its index in the prescription.
    pub index: u32,
    /// The report, sealed to the appointment's patient key.
    pub report: ByteBuf,
}

/// The patient's approval of a bill for their insurer (Case II).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// When approved (tx time, ms).
    pub approved_ms: u64,
    /// The insurer's PRE key the re-encryption key is for.
    pub insurer_pre_public_key: ByteBuf,
    /// Re-encryption key from the appointment's billing key to the insurer's key: lets the
    /// contract re-encrypt the amount for the insurer.
    pub rekey: ByteBuf,
}

/// A bill (figure 5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    /// `sha256_parts("sphr.healthcare.bill", tx id)`.
    pub bill_id: Hash32,
    /// The appointment (prescription) it is against.
    pub appointment_id: Hash32,
    /// The owner, who pays or approves.
    pub patient: Identity,
    /// Who issued it (the lab, doctor or pharmacist), who confirms the payment.
    pub issuer: Identity,
    /// The issuer's role.
    pub issuer_role: Role,
    /// What it is for.
    pub kind: BillKind,
    /// The amount, sealed to the appointment's billing key.
    pub amount: ByteBuf,
    /// Its status.
    pub status: BillStatus,
    /// The plan that may pay it (copied from the appointment).
    pub coverage: Option<Coverage>,
    /// The patient's approval (the thesis's user approval), Case II.
    pub approval: Option<Approval>,
    /// Who sent the payment.
    pub paid_by: Option<Payer>,
    /// When issued (tx time, ms).
    pub created_ms: u64,
    /// When marked PAYMENT_SENT.
    pub payment_sent_ms: Option<u64>,
    /// When marked PAYMENT_RECEIVED.
    pub payment_received_ms: Option<u64>,
}

/// An insurance plan (figure 5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsurancePlan {
    /// `sha256_parts("sphr.healthcare.plan", tx id)`.
    pub plan_id: Hash32,
    /// The owner.
    pub patient: Identity,
    /// The insurance company's org.
    pub insurer: String,
    /// The plan type (a code).
    pub plan_type: String,
    /// REQUESTED or ACCEPTED.
    pub status: PlanStatus,
    /// The member id the insurer allocated on acceptance.
    pub allocated_insurance_id: Option<String>,
    /// The accepting officer's PRE key: bill approvals carry a re-encryption key to it.
    pub insurer_pre_public_key: Option<ByteBuf>,
    /// The officer who accepted.
    pub accepted_by: Option<Identity>,
    /// When requested (tx time, ms).
    pub requested_ms: u64,
    /// When accepted.
    pub accepted_ms: Option<u64>,
}

/// A payment request for an insurer, added when a patient approves a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequest {
    /// The bill.
    pub bill_id: Hash32,
    /// Its appointment.
    pub appointment_id: Hash32,
    /// The member (the insurer's customer).
    pub patient: Identity,
    /// The plan.
    pub plan_id: Hash32,
    /// The member id.
    pub allocated_insurance_id: String,
    /// The insurer's org.
    pub insurer: String,
    /// When the patient approved (tx time, ms); the request is listed under this day.
    pub approved_ms: u64,
    /// When the insurer paid.
    pub paid_ms: Option<u64>,
}

/// A request by someone other than the patient for a prescription, and the patient's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The appointment (prescription).
    pub appointment_id: Hash32,
    /// Who asked.
    pub requester: Identity,
    /// Their certificate role.
    pub requester_role: Role,
    /// Their PRE public key when they asked (the thesis's requestor public key).
    pub requester_pre_public_key: ByteBuf,
    /// REQUESTED or ALLOWED.
    pub status: DelegationStatus,
    /// Re-encryption key from the appointment's patient key to the requester's key.
    pub rekey: Option<ByteBuf>,
    /// When asked (tx time, ms).
    pub requested_ms: u64,
    /// When allowed.
    pub allowed_ms: Option<u64>,
    /// How many times the requester fetched the dosage (`getPrescriptionOthers`).
    pub fetches: u32,
    /// When last fetched.
    pub last_fetch_ms: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Requests and responses, in the order of table 5.2 (extras after their neighbours)
// ---------------------------------------------------------------------------------------------

/// `requestAppointment` (patient).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAppointment {
    /// A registered doctor.
    pub doctor: Identity,
    /// When (Unix ms); at most [`MAX_APPOINTMENT_PAST_MS`] before the tx time and at most
    /// [`MAX_APPOINTMENT_AHEAD_MS`] after it.
    pub requested_time_ms: u64,
    /// A code of 1 to [`MAX_CODE_LEN`] bytes (see [`MAX_CODE_LEN`]).
    pub disease_classification: String,
    /// Sealed notes (at most [`MAX_NOTES_LEN`] bytes).
    pub notes: Option<ByteBuf>,
    /// An ACCEPTED plan of the caller (Case II); `None` for Case I.
    pub insurance_plan_id: Option<Hash32>,
    /// The key to seal this appointment's dosage and lab reports to; default: the caller's.
    pub patient_pre_public_key: Option<ByteBuf>,
    /// The key to seal this appointment's bill amounts to; default: the patient key above.
    pub billing_pre_public_key: Option<ByteBuf>,
}

/// `getAllAppointment` (doctor): the caller's appointments requested for one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetAllAppointment {
    /// UTC day (see [`day_of`]).
    pub day: u64,
    /// Start after this appointment (the `next` of the previous page).
    pub after: Option<Hash32>,
    /// Page size, at most [`MAX_PAGE`] (the default).
    pub limit: Option<u32>,
}

/// The response of `getAllAppointment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentList {
    /// Appointments in id order.
    pub appointments: Vec<Appointment>,
    /// Where the next page starts, if there is more.
    pub next: Option<Hash32>,
}

/// `acceptAppointment` (the doctor asked). The response is the [`Appointment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptAppointment {
    /// The appointment.
    pub appointment_id: Hash32,
}

/// `rejectAppointment` (the doctor asked). The response is the [`Appointment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectAppointment {
    /// The appointment.
    pub appointment_id: Hash32,
}

/// `getAppointmentStatus` (the patient).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetAppointmentStatus {
    /// The appointment.
    pub appointment_id: Hash32,
}

/// Where a prescription stands, without its sealed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrescriptionSummary {
    /// Its status.
    pub status: PrescriptionStatus,
    /// The doctor.
    pub doctor: Identity,
    /// The lab reports added.
    pub lab_reports: Vec<LabReportRef>,
    /// Its bills.
    pub bill_ids: Vec<Hash32>,
}

/// The response of `getAppointmentStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentStatusResponse {
    /// The appointment.
    pub appointment: Appointment,
    /// Its prescription, once generated.
    pub prescription: Option<PrescriptionSummary>,
    /// Requests by others for the prescription (so the patient can answer them), by requester.
    pub delegations: Vec<Delegation>,
}

/// `generatePrescription` (the appointment's doctor). The response is the [`Prescription`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratePrescription {
    /// An ACCEPTED appointment.
    pub appointment_id: Hash32,
}

/// `generateBillAndUpdatePrescriptionOthers` (a lab, or a pharmacist allowed on a PAID
/// prescription).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateBillAndUpdatePrescriptionOthers {
    /// The prescription.
    pub appointment_id: Hash32,
    /// A lab: the report sealed to the appointment's patient key (required, at most
    /// [`MAX_LAB_REPORT_LEN`] bytes). A pharmacist: `None`.
    pub lab_report: Option<ByteBuf>,
    /// The amount sealed to the appointment's billing key (at most [`MAX_AMOUNT_LEN`] bytes).
    pub amount: ByteBuf,
}

/// `generateBillAndUpdatePrescriptionDoctor` (the prescription's doctor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateBillAndUpdatePrescriptionDoctor {
    /// The prescription.
    pub appointment_id: Hash32,
    /// The dosage sealed to the appointment's patient key (at most [`MAX_DOSAGE_LEN`] bytes).
    pub dosage: ByteBuf,
    /// The amount sealed to the appointment's billing key.
    pub amount: ByteBuf,
}

/// The response of both `generateBillAndUpdatePrescription*` functions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillGenerated {
    /// The new bill.
    pub bill: Bill,
    /// The prescription's status afterwards.
    pub prescription_status: PrescriptionStatus,
    /// The new lab report's index (labs only).
    pub lab_report_index: Option<u32>,
}

/// `getPendingPaymentRequests` (the patient): the appointment's bills not yet received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetPendingPaymentRequests {
    /// The appointment.
    pub appointment_id: Hash32,
}

/// A list of bills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillList {
    /// The bills, in the order they were generated (or asked for).
    pub bills: Vec<Bill>,
}

/// `registerInsurance` (patient). The response is the [`InsurancePlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterInsurance {
    /// The insurance company's org.
    pub insurer: String,
    /// The plan type, a code.
    pub plan_type: String,
}

/// `getInsuranceRegistrationRequests` (insurer): plans asked of the caller's org on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetInsuranceRegistrationRequests {
    /// UTC day of the request.
    pub day: u64,
    /// Start after this plan.
    pub after: Option<Hash32>,
    /// Page size, at most [`MAX_PAGE`].
    pub limit: Option<u32>,
}

/// A page of plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanList {
    /// Plans in id order.
    pub plans: Vec<InsurancePlan>,
    /// Where the next page starts.
    pub next: Option<Hash32>,
}

/// `registerInsuranceRequestStatus` (the plan's patient). The response is the
/// [`InsurancePlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterInsuranceRequestStatus {
    /// The plan.
    pub plan_id: Hash32,
}

/// `acceptInsuranceRegistrationRequest` (an insurer of the plan's org). The response is the
/// [`InsurancePlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptInsuranceRegistrationRequest {
    /// The plan.
    pub plan_id: Hash32,
    /// The member id the insurer allocates, a code.
    pub allocated_insurance_id: String,
}

/// `getBillStatus` (the bill's issuer). The response is the [`Bill`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetBillStatus {
    /// The bill.
    pub bill_id: Hash32,
}

/// `getBillStatusPatient` (the patient): every bill of an appointment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetBillStatusPatient {
    /// The appointment.
    pub appointment_id: Hash32,
}

/// `approvePaymentRequest` (the bill's patient, Case II). The response is the [`Bill`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovePaymentRequest {
    /// A GENERATED bill covered by an ACCEPTED plan.
    pub bill_id: Hash32,
    /// The insurer's PRE key the re-encryption key was made for; must be the plan's.
    pub insurer_pre_public_key: ByteBuf,
    /// Re-encryption key from the appointment's billing key to the insurer's key.
    pub rekey: ByteBuf,
}

/// `getBillStatusInsurance` (an insurer of the bill's plan, once approved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetBillStatusInsurance {
    /// The bill.
    pub bill_id: Hash32,
}

/// The response of `getBillStatusInsurance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsurerBill {
    /// The bill.
    pub bill: Bill,
    /// The amount re-encrypted to the insurer's key (`ReSealed::to_bytes`).
    pub amount: ByteBuf,
}

/// `getInsurancePaymentRequests` (insurer): payment requests of the caller's org approved on a
/// day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetInsurancePaymentRequests {
    /// UTC day of the approval.
    pub day: u64,
    /// Start after this bill.
    pub after: Option<Hash32>,
    /// Page size, at most [`MAX_PAGE`].
    pub limit: Option<u32>,
}

/// A page of payment requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequestList {
    /// Requests in bill id order.
    pub requests: Vec<PaymentRequest>,
    /// Where the next page starts.
    pub next: Option<Hash32>,
}

/// `payInsurancePaymentRequests` (an insurer of each bill's plan): marks APPROVED bills
/// PAYMENT_SENT, all or none. The response is a [`BillList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayInsurancePaymentRequests {
    /// 1 to [`MAX_PAY_BATCH`] distinct bills.
    pub bill_ids: Vec<Hash32>,
}

/// `payBill` (the bill's patient, Case I): GENERATED -> PAYMENT_SENT. The response is the
/// [`Bill`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayBill {
    /// The bill.
    pub bill_id: Hash32,
}

/// `confirmBillPayment` (the bill's issuer): PAYMENT_SENT -> PAYMENT_RECEIVED. The response is
/// the [`Bill`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmBillPayment {
    /// The bill.
    pub bill_id: Hash32,
}

/// `markPrescriptionPaid` (the prescription's doctor). The response is the [`Prescription`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkPrescriptionPaid {
    /// A COMPLETE prescription whose bills are all PAYMENT_RECEIVED.
    pub appointment_id: Hash32,
}

/// `getPrescriptionPatient` (the patient, once PAID). The response is the [`Prescription`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetPrescriptionPatient {
    /// The prescription.
    pub appointment_id: Hash32,
}

/// `requestPrescriptionOthers` (anyone registered but the patient, with a PRE key). The
/// response is the [`Delegation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPrescriptionOthers {
    /// The prescription (the patient's token).
    pub appointment_id: Hash32,
}

/// `allowPrescriptionOthers` (the patient). The response is the [`Delegation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowPrescriptionOthers {
    /// The prescription.
    pub appointment_id: Hash32,
    /// Who asked.
    pub requester: Identity,
    /// The requester's PRE key the re-encryption key was made for; must be the one recorded
    /// in the request.
    pub requester_pre_public_key: ByteBuf,
    /// Re-encryption key from the appointment's patient key to the requester's key.
    pub rekey: ByteBuf,
}

/// `getPrescriptionOthers` (an allowed requester, once PAID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetPrescriptionOthers {
    /// The prescription.
    pub appointment_id: Hash32,
}

/// The response of `getPrescriptionOthers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrescriptionForOthers {
    /// The prescription.
    pub appointment_id: Hash32,
    /// The prescribing doctor.
    pub doctor: Identity,
    /// PAID.
    pub status: PrescriptionStatus,
    /// The dosage re-encrypted to the caller's key (`ReSealed::to_bytes`).
    pub dosage: ByteBuf,
    /// When paid (tx time, ms).
    pub paid_ms: Option<u64>,
}

/// `getLabReports` (the patient, or an allowed requester): the reports whose bills are
/// PAYMENT_RECEIVED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetLabReports {
    /// The prescription.
    pub appointment_id: Hash32,
}

/// One unlocked lab report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabReportView {
    /// Where it is in the prescription.
    pub reference: LabReportRef,
    /// For the patient: `Sealed::to_bytes`; for a requester: `ReSealed::to_bytes`.
    pub report: ByteBuf,
}

/// The response of `getLabReports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabReports {
    /// Whether `report` fields are re-encrypted (a requester) or sealed (the patient).
    pub reencrypted: bool,
    /// Unlocked reports, in order.
    pub reports: Vec<LabReportView>,
    /// How many reports are still locked (their bill is not PAYMENT_RECEIVED).
    pub locked: u32,
}

/// `getOrgUsers` (anyone registered): registered users of an org, by subject id. Patients are
/// listed only to themselves and to their org's admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetOrgUsers {
    /// The org.
    pub org: String,
    /// Start after this subject id.
    pub after: Option<String>,
    /// Page size, at most [`MAX_PAGE`].
    pub limit: Option<u32>,
}

/// The response of `getOrgUsers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgUsers {
    /// Users in subject id order.
    pub users: Vec<UserRecord>,
    /// Where the next page starts.
    pub next: Option<String>,
}

/// `registerUser` (anyone with a certificate): records the caller. The response is the
/// [`UserRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterUser {
    /// A PRE public key, for a certificate that carries none; if the certificate carries one,
    /// this must be absent or equal to it.
    pub pre_public_key: Option<ByteBuf>,
}
