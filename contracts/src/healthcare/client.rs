//! Client side of the healthcare contract: which function each request goes to, encoding of
//! requests and responses, and sealing and opening of the sealed fields. Used by the CLI,
//! the testnet scenarios and the tests; the contract itself never calls the sealing helpers
//! (they draw randomness).
//!
//! ```text
//!   let (function, args) = client::call(&RequestAppointment { .. })?;   // -> the gateway
//!   let appointment = client::response::<RequestAppointment>(&payload)?;
//!   let dosage = client::seal_dosage(&patient_key, &appointment_id, b"...")?;  // lab, doctor
//!   let rk = client::rekey(&patient_sk, &delegation.requester_pre_public_key)?; // patient
//!   let text = client::open_dosage_reencrypted(&pharmacy_sk, &appointment_id, &resp.dosage)?;
//! ```
//!
//! # Associated data
//!
//! Every sealed field binds `sphr.healthcare.v1 \0 <field> \0 <appointment id>` (32 raw bytes)
//! as associated data, so a ciphertext cannot be moved to another field or appointment
//! without failing to open. Notes are sealed before the appointment id exists: they bind
//! `sphr.healthcare.v1 \0 notes` only.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sphr_crypto::cbor::{self, CborError};
use sphr_crypto::hash::Hash32;
use sphr_crypto::pre::{self, PreError, PrePublicKey, PreSecretKey, ReSealed, Sealed};

use super::types::*;

/// Largest response [`response`] decodes.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Why a client helper failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Sealing, opening or a key failed (wrong key, altered data, bad encoding).
    #[error("proxy re-encryption: {0}")]
    Pre(#[from] PreError),
    /// A request, response or amount could not be encoded or decoded.
    #[error("CBOR: {0}")]
    Cbor(#[from] CborError),
}

/// A request struct, with the function it goes to and the type it gets back.
pub trait Request: Serialize + DeserializeOwned {
    /// The contract function.
    const FUNCTION: &'static str;
    /// The response type.
    type Response: Serialize + DeserializeOwned;
}

macro_rules! requests {
    ($($req:ty => $f:literal, $resp:ty;)+) => {
        $(impl Request for $req {
            const FUNCTION: &'static str = $f;
            type Response = $resp;
        })+
    };
}

requests! {
    RequestAppointment => "requestAppointment", Appointment;
    GetAllAppointment => "getAllAppointment", AppointmentList;
    AcceptAppointment => "acceptAppointment", Appointment;
    RejectAppointment => "rejectAppointment", Appointment;
    GetAppointmentStatus => "getAppointmentStatus", AppointmentStatusResponse;
    GeneratePrescription => "generatePrescription", Prescription;
    GenerateBillAndUpdatePrescriptionOthers => "generateBillAndUpdatePrescriptionOthers", BillGenerated;
    GenerateBillAndUpdatePrescriptionDoctor => "generateBillAndUpdatePrescriptionDoctor", BillGenerated;
    GetPendingPaymentRequests => "getPendingPaymentRequests", BillList;
    RegisterInsurance => "registerInsurance", InsurancePlan;
    GetInsuranceRegistrationRequests => "getInsuranceRegistrationRequests", PlanList;
    RegisterInsuranceRequestStatus => "registerInsuranceRequestStatus", InsurancePlan;
    AcceptInsuranceRegistrationRequest => "acceptInsuranceRegistrationRequest", InsurancePlan;
    GetBillStatus => "getBillStatus", Bill;
    GetBillStatusPatient => "getBillStatusPatient", BillList;
    ApprovePaymentRequest => "approvePaymentRequest", Bill;
    GetBillStatusInsurance => "getBillStatusInsurance", InsurerBill;
    GetInsurancePaymentRequests => "getInsurancePaymentRequests", PaymentRequestList;
    PayInsurancePaymentRequests => "payInsurancePaymentRequests", BillList;
    PayBill => "payBill", Bill;
    ConfirmBillPayment => "confirmBillPayment", Bill;
    MarkPrescriptionPaid => "markPrescriptionPaid", Prescription;
    GetPrescriptionPatient => "getPrescriptionPatient", Prescription;
    RequestPrescriptionOthers => "requestPrescriptionOthers", Delegation;
    AllowPrescriptionOthers => "allowPrescriptionOthers", Delegation;
    GetPrescriptionOthers => "getPrescriptionOthers", PrescriptionForOthers;
    GetLabReports => "getLabReports", LabReports;
    GetOrgUsers => "getOrgUsers", OrgUsers;
    RegisterUser => "registerUser", UserRecord;
}

/// The function name and the argument list of a request.
pub fn call<R: Request>(req: &R) -> Result<(&'static str, Vec<Vec<u8>>), ClientError> {
    Ok((R::FUNCTION, vec![cbor::to_vec(req)?]))
}

/// Decodes the response payload of a request of type `R`.
pub fn response<R: Request>(payload: &[u8]) -> Result<R::Response, ClientError> {
    Ok(cbor::from_slice(payload, MAX_RESPONSE_BYTES)?)
}

/// A sealed field, for its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Appointment notes (sealed by the patient, by convention to the doctor's key).
    Notes,
    /// The dosage (sealed by the doctor to the appointment's patient key).
    Dosage,
    /// A lab report (sealed by the lab to the appointment's patient key).
    LabReport,
    /// A bill amount (sealed by the issuer to the appointment's billing key).
    Amount,
}

impl Field {
    fn label(self) -> &'static [u8] {
        match self {
            Field::Notes => b"notes",
            Field::Dosage => b"dosage",
            Field::LabReport => b"labReport",
            Field::Amount => b"amount",
        }
    }
}

/// The associated data of `field` of appointment `appointment_id` (ignored for notes).
pub fn aad(field: Field, appointment_id: &Hash32) -> Vec<u8> {
    let mut out = b"sphr.healthcare.v1\0".to_vec();
    out.extend_from_slice(field.label());
    if field != Field::Notes {
        out.push(0);
        out.extend_from_slice(appointment_id.as_bytes());
    }
    out
}

/// A PRE public key from its bytes (as stored in appointments, plans and requests).
pub fn pre_key(bytes: &[u8]) -> Result<PrePublicKey, ClientError> {
    Ok(PrePublicKey::from_bytes(bytes)?)
}

/// Seals `plaintext` as `field` of `appointment_id` to `key`; the bytes go in the request.
pub fn seal_field(
    key: &PrePublicKey,
    field: Field,
    appointment_id: &Hash32,
    plaintext: &[u8],
) -> Result<ByteBuf, ClientError> {
    let s = pre::seal(key, plaintext, &aad(field, appointment_id))?;
    Ok(ByteBuf::from(s.to_bytes()))
}

/// Opens `field` sealed to `sk` (the patient's key, or the doctor's for notes).
pub fn open_field(
    sk: &PreSecretKey,
    field: Field,
    appointment_id: &Hash32,
    sealed: &[u8],
) -> Result<Vec<u8>, ClientError> {
    let s = Sealed::from_bytes(sealed)?;
    Ok(pre::open(sk, &s, &aad(field, appointment_id))?)
}

/// Opens `field` re-encrypted by the contract to `sk` (a delegate's key).
pub fn open_field_reencrypted(
    sk: &PreSecretKey,
    field: Field,
    appointment_id: &Hash32,
    resealed: &[u8],
) -> Result<Vec<u8>, ClientError> {
    let r = ReSealed::from_bytes(resealed)?;
    Ok(pre::open_reencrypted(sk, &r, &aad(field, appointment_id))?)
}

/// Notes for `requestAppointment`, sealed to the doctor's key.
pub fn seal_notes(doctor_key: &PrePublicKey, text: &[u8]) -> Result<ByteBuf, ClientError> {
    seal_field(doctor_key, Field::Notes, &Hash32::ZERO, text)
}

/// The dosage for `generateBillAndUpdatePrescriptionDoctor`, sealed to the appointment's
/// patient key.
pub fn seal_dosage(
    patient_key: &PrePublicKey,
    appointment_id: &Hash32,
    dosage: &[u8],
) -> Result<ByteBuf, ClientError> {
    seal_field(patient_key, Field::Dosage, appointment_id, dosage)
}

/// A lab report for `generateBillAndUpdatePrescriptionOthers`, sealed to the appointment's
/// patient key.
pub fn seal_lab_report(
    patient_key: &PrePublicKey,
    appointment_id: &Hash32,
    report: &[u8],
) -> Result<ByteBuf, ClientError> {
    seal_field(patient_key, Field::LabReport, appointment_id, report)
}

/// The dosage of a prescription the patient fetched (`getPrescriptionPatient`).
pub fn open_dosage(
    patient_sk: &PreSecretKey,
    appointment_id: &Hash32,
    sealed: &[u8],
) -> Result<Vec<u8>, ClientError> {
    open_field(patient_sk, Field::Dosage, appointment_id, sealed)
}

/// The dosage a delegate fetched (`getPrescriptionOthers`).
pub fn open_dosage_reencrypted(
    delegate_sk: &PreSecretKey,
    appointment_id: &Hash32,
    resealed: &[u8],
) -> Result<Vec<u8>, ClientError> {
    open_field_reencrypted(delegate_sk, Field::Dosage, appointment_id, resealed)
}

/// A bill amount, the plaintext of a sealed `amount` (CBOR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillAmount {
    /// The amount in the currency's minor unit (cents).
    pub minor_units: u64,
    /// ISO 4217 currency code.
    pub currency: String,
}

/// A bill amount sealed to the appointment's billing key.
pub fn seal_amount(
    billing_key: &PrePublicKey,
    appointment_id: &Hash32,
    amount: &BillAmount,
) -> Result<ByteBuf, ClientError> {
    seal_field(
        billing_key,
        Field::Amount,
        appointment_id,
        &cbor::to_vec(amount)?,
    )
}

/// A bill amount opened by the patient (billing key).
pub fn open_amount(
    billing_sk: &PreSecretKey,
    appointment_id: &Hash32,
    sealed: &[u8],
) -> Result<BillAmount, ClientError> {
    let bytes = open_field(billing_sk, Field::Amount, appointment_id, sealed)?;
    Ok(cbor::from_slice(&bytes, MAX_AMOUNT_LEN)?)
}

/// A bill amount opened by the insurer (`getBillStatusInsurance`).
pub fn open_amount_reencrypted(
    insurer_sk: &PreSecretKey,
    appointment_id: &Hash32,
    resealed: &[u8],
) -> Result<BillAmount, ClientError> {
    let bytes = open_field_reencrypted(insurer_sk, Field::Amount, appointment_id, resealed)?;
    Ok(cbor::from_slice(&bytes, MAX_AMOUNT_LEN)?)
}

/// The patient's re-encryption key from `patient_sk` to the delegate key `to` (bytes as
/// recorded in a [`Delegation`] or an [`InsurancePlan`]), for `allowPrescriptionOthers` and
/// `approvePaymentRequest`.
pub fn rekey(patient_sk: &PreSecretKey, to: &[u8]) -> Result<ByteBuf, ClientError> {
    let to = PrePublicKey::from_bytes(to)?;
    Ok(ByteBuf::from(patient_sk.rekey_to(&to).to_bytes().to_vec()))
}
