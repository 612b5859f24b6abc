//! Prescriptions, lab reports and delegation: `generatePrescription` (table 5.2, 5),
//! `generateBillAndUpdatePrescriptionOthers` (6), `generateBillAndUpdatePrescriptionDoctor`
//! (7), `markPrescriptionPaid` (19), `getPrescriptionPatient` (20),
//! `requestPrescriptionOthers` (21), `allowPrescriptionOthers` (22), `getPrescriptionOthers`
//! (23) and `getLabReports` (+).

use serde_bytes::ByteBuf;
use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;
use sphr_crypto::pre::{self, ReKey, Sealed};

use super::{
    AllowPrescriptionOthers, Appointment, Bill, BillGenerated, BillKind, BillStatus, Delegation,
    DelegationStatus, GenerateBillAndUpdatePrescriptionDoctor,
    GenerateBillAndUpdatePrescriptionOthers, GeneratePrescription, GetLabReports,
    GetPrescriptionOthers, GetPrescriptionPatient, LabReport, LabReportRef, LabReportView,
    LabReports, MAX_AMOUNT_LEN, MAX_BILLS, MAX_DELEGATIONS, MAX_DOSAGE_LEN, MAX_LAB_REPORT_LEN,
    MAX_LAB_REPORTS, MarkPrescriptionPaid, Me, Prescription, PrescriptionForOthers,
    PrescriptionStatus, RequestPrescriptionOthers, bad, check_identity, check_pre_key, check_rekey,
    check_sealed, denied, emit, event, keys, load, load_appointment, load_bills, load_prescription,
    me, new_id, refused, store, transition,
};
use crate::{ContractError, Ctx};

/// The appointment's doctor generates its empty prescription when the patient arrives.
pub(super) fn generate(
    ctx: &mut dyn Ctx,
    req: GeneratePrescription,
) -> Result<Prescription, ContractError> {
    let me = me(ctx)?;
    if me.role != Role::Doctor {
        return Err(denied("only a doctor may generate a prescription"));
    }
    let a = load_appointment(ctx, &req.appointment_id)?;
    if !me.is(&a.doctor, Role::Doctor) {
        return Err(denied(
            "only the doctor of the appointment may generate its prescription",
        ));
    }
    if a.status != super::AppointmentStatus::Accepted {
        return Err(refused(format!(
            "the appointment is {}; a prescription needs it ACCEPTED",
            a.status
        )));
    }
    let key = keys::prescription(&req.appointment_id);
    if ctx.get(&key)?.is_some() {
        return Err(refused("the appointment already has a prescription"));
    }
    let rx = Prescription {
        appointment_id: req.appointment_id,
        patient: a.patient,
        doctor: a.doctor,
        status: PrescriptionStatus::Empty,
        dosage: None,
        lab_reports: Vec::new(),
        bill_ids: Vec::new(),
        created_ms: ctx.tx_time_ms(),
        completed_ms: None,
        paid_ms: None,
    };
    store(ctx, &key, &rx)?;
    let mut e = event();
    e.appointment_id = Some(req.appointment_id);
    emit(ctx, super::EVENT_PRESCRIPTION_GENERATED, e)?;
    Ok(rx)
}

/// A new GENERATED bill of `kind` by the caller against `a`'s prescription (not stored yet).
fn new_bill(
    ctx: &mut dyn Ctx,
    me: &Me,
    a: &Appointment,
    rx: &Prescription,
    kind: BillKind,
    amount: ByteBuf,
) -> Result<Bill, ContractError> {
    if rx.bill_ids.len() >= MAX_BILLS {
        return Err(ContractError::Limit(format!(
            "the prescription already has {MAX_BILLS} bills"
        )));
    }
    let bill_id = new_id(ctx, b"sphr.healthcare.bill");
    if ctx.get(&keys::bill(&bill_id))?.is_some() {
        return Err(refused("a bill with this transaction's id exists"));
    }
    Ok(Bill {
        bill_id,
        appointment_id: a.appointment_id,
        patient: a.patient.clone(),
        issuer: me.who.clone(),
        issuer_role: me.role,
        kind,
        amount,
        status: BillStatus::Generated,
        coverage: a.coverage.clone(),
        approval: None,
        paid_by: None,
        created_ms: ctx.tx_time_ms(),
        payment_sent_ms: None,
        payment_received_ms: None,
    })
}

fn emit_bill(ctx: &mut dyn Ctx, bill: &Bill) -> Result<(), ContractError> {
    let mut e = event();
    e.appointment_id = Some(bill.appointment_id);
    e.bill_id = Some(bill.bill_id);
    emit(ctx, super::EVENT_BILL_GENERATED, e)
}

/// A lab adds a sealed report and its bill; an allowed pharmacy bills a PAID prescription.
pub(super) fn bill_others(
    ctx: &mut dyn Ctx,
    req: GenerateBillAndUpdatePrescriptionOthers,
) -> Result<BillGenerated, ContractError> {
    let me = me(ctx)?;
    if !matches!(me.role, Role::Lab | Role::Pharmacist) {
        return Err(denied(
            "only a lab or a pharmacist may call generateBillAndUpdatePrescriptionOthers \
             (doctors use generateBillAndUpdatePrescriptionDoctor)",
        ));
    }
    check_sealed("amount", &req.amount, MAX_AMOUNT_LEN)?;
    let a = load_appointment(ctx, &req.appointment_id)?;
    let mut rx = load_prescription(ctx, &req.appointment_id)?;
    if me.role == Role::Pharmacist {
        if req.lab_report.is_some() {
            return Err(bad("a pharmacy bill carries no lab_report"));
        }
        if rx.status != PrescriptionStatus::Paid {
            return Err(refused(format!(
                "the prescription is {}; a pharmacy bills only a PAID prescription",
                rx.status
            )));
        }
        let d: Option<Delegation> = load(
            ctx,
            &keys::delegation(&rx.appointment_id, &me.who),
            "request",
        )?;
        if d.is_none_or(|d| d.status != DelegationStatus::Allowed) {
            return Err(denied(
                "only a pharmacy the patient allowed on this prescription may bill it",
            ));
        }
        let bill = new_bill(ctx, &me, &a, &rx, BillKind::Pharmacy, req.amount)?;
        rx.bill_ids.push(bill.bill_id);
        store(ctx, &keys::bill(&bill.bill_id), &bill)?;
        store(ctx, &keys::prescription(&rx.appointment_id), &rx)?;
        emit_bill(ctx, &bill)?;
        return Ok(BillGenerated {
            bill,
            prescription_status: rx.status,
            lab_report_index: None,
        });
    }
    let report = req
        .lab_report
        .ok_or_else(|| bad("a lab must send its report in lab_report"))?;
    check_sealed("lab_report", &report, MAX_LAB_REPORT_LEN)?;
    transition(rx.status, PrescriptionStatus::LabReportsAdded)?;
    if rx.lab_reports.len() >= MAX_LAB_REPORTS {
        return Err(ContractError::Limit(format!(
            "the prescription already has {MAX_LAB_REPORTS} lab reports"
        )));
    }
    let index = u32::try_from(rx.lab_reports.len())
        .map_err(|_| ContractError::State("lab report count overflows".into()))?;
    let bill = new_bill(ctx, &me, &a, &rx, BillKind::LabReport, req.amount)?;
    rx.status = PrescriptionStatus::LabReportsAdded;
    rx.lab_reports.push(LabReportRef {
        index,
        lab: me.who.clone(),
        bill_id: bill.bill_id,
        added_ms: ctx.tx_time_ms(),
    });
    rx.bill_ids.push(bill.bill_id);
    store(
        ctx,
        &keys::lab_report(&rx.appointment_id, index),
        &LabReport {
            appointment_id: rx.appointment_id,
            index,
            report,
        },
    )?;
    store(ctx, &keys::bill(&bill.bill_id), &bill)?;
    store(ctx, &keys::prescription(&rx.appointment_id), &rx)?;
    let mut e = event();
    e.appointment_id = Some(rx.appointment_id);
    emit(ctx, super::EVENT_LAB_REPORT_ADDED, e)?;
    emit_bill(ctx, &bill)?;
    Ok(BillGenerated {
        bill,
        prescription_status: rx.status,
        lab_report_index: Some(index),
    })
}

/// The prescription's doctor adds the sealed dosage and its bill: COMPLETE.
pub(super) fn bill_doctor(
    ctx: &mut dyn Ctx,
    req: GenerateBillAndUpdatePrescriptionDoctor,
) -> Result<BillGenerated, ContractError> {
    let me = me(ctx)?;
    if me.role != Role::Doctor {
        return Err(denied(
            "only a doctor may call generateBillAndUpdatePrescriptionDoctor",
        ));
    }
    check_sealed("dosage", &req.dosage, MAX_DOSAGE_LEN)?;
    check_sealed("amount", &req.amount, MAX_AMOUNT_LEN)?;
    let a = load_appointment(ctx, &req.appointment_id)?;
    let mut rx = load_prescription(ctx, &req.appointment_id)?;
    if !me.is(&rx.doctor, Role::Doctor) {
        return Err(denied(
            "only the doctor of the prescription may add its dosage",
        ));
    }
    transition(rx.status, PrescriptionStatus::Complete)?;
    let bill = new_bill(ctx, &me, &a, &rx, BillKind::Prescription, req.amount)?;
    rx.status = PrescriptionStatus::Complete;
    rx.dosage = Some(req.dosage);
    rx.completed_ms = Some(ctx.tx_time_ms());
    rx.bill_ids.push(bill.bill_id);
    store(ctx, &keys::bill(&bill.bill_id), &bill)?;
    store(ctx, &keys::prescription(&rx.appointment_id), &rx)?;
    let mut e = event();
    e.appointment_id = Some(rx.appointment_id);
    emit(ctx, super::EVENT_PRESCRIPTION_COMPLETED, e)?;
    emit_bill(ctx, &bill)?;
    Ok(BillGenerated {
        bill,
        prescription_status: rx.status,
        lab_report_index: None,
    })
}

/// The doctor marks a COMPLETE prescription PAID once every bill is PAYMENT_RECEIVED.
pub(super) fn mark_paid(
    ctx: &mut dyn Ctx,
    req: MarkPrescriptionPaid,
) -> Result<Prescription, ContractError> {
    let me = me(ctx)?;
    let mut rx = load_prescription(ctx, &req.appointment_id)?;
    if !me.is(&rx.doctor, Role::Doctor) {
        return Err(denied(
            "only the doctor of the prescription may mark it paid",
        ));
    }
    transition(rx.status, PrescriptionStatus::Paid)?;
    let bills = load_bills(ctx, &rx)?;
    let unpaid = bills
        .iter()
        .filter(|b| b.status != BillStatus::PaymentReceived)
        .count();
    if unpaid > 0 {
        return Err(refused(format!(
            "{unpaid} of the prescription's {} bills are not PAYMENT_RECEIVED",
            bills.len()
        )));
    }
    rx.status = PrescriptionStatus::Paid;
    rx.paid_ms = Some(ctx.tx_time_ms());
    store(ctx, &keys::prescription(&rx.appointment_id), &rx)?;
    let mut e = event();
    e.appointment_id = Some(rx.appointment_id);
    emit(ctx, super::EVENT_PRESCRIPTION_PAID, e)?;
    Ok(rx)
}

fn locked(status: PrescriptionStatus) -> ContractError {
    refused(format!(
        "the prescription is locked until every bill is PAYMENT_RECEIVED and it is marked PAID \
         (it is {status})"
    ))
}

/// The patient fetches their PAID prescription (the dosage sealed to them).
pub(super) fn for_patient(
    ctx: &mut dyn Ctx,
    req: GetPrescriptionPatient,
) -> Result<Prescription, ContractError> {
    let me = me(ctx)?;
    let rx = load_prescription(ctx, &req.appointment_id)?;
    if !me.is(&rx.patient, Role::Patient) {
        return Err(denied(
            "only the prescription's patient may fetch it with getPrescriptionPatient",
        ));
    }
    if rx.status != PrescriptionStatus::Paid {
        return Err(locked(rx.status));
    }
    Ok(rx)
}

/// Anyone registered with a PRE key (but the patient) asks for a prescription; recorded.
pub(super) fn request_others(
    ctx: &mut dyn Ctx,
    req: RequestPrescriptionOthers,
) -> Result<Delegation, ContractError> {
    let me = me(ctx)?;
    let rx = load_prescription(ctx, &req.appointment_id)?;
    if me.who == rx.patient {
        return Err(refused(
            "the patient reads their prescription with getPrescriptionPatient",
        ));
    }
    let key = me.pre_key.clone().ok_or_else(|| {
        refused("the caller has no PRE public key (certificate or registerUser) to re-encrypt to")
    })?;
    check_pre_key("the caller's PRE public key", &key)?;
    let k = keys::delegation(&req.appointment_id, &me.who);
    match load::<Delegation>(ctx, &k, "request")? {
        Some(d) if d.requester_pre_public_key.as_slice() == key.as_slice() => {
            return Err(refused(format!(
                "the caller has already asked for this prescription (the request is {})",
                d.status
            )));
        }
        // Asked before with another key (since rotated): the new request replaces it, and the
        // patient must allow the new key.
        Some(_) => {}
        None => {
            let prefix = keys::delegation_prefix(&req.appointment_id);
            let n = ctx
                .range(&prefix, &keys::prefix_end(&prefix), MAX_DELEGATIONS)?
                .len();
            if n >= MAX_DELEGATIONS {
                return Err(ContractError::Limit(format!(
                    "the prescription already has {MAX_DELEGATIONS} requests"
                )));
            }
        }
    }
    let d = Delegation {
        appointment_id: req.appointment_id,
        requester: me.who,
        requester_role: me.role,
        requester_pre_public_key: ByteBuf::from(key),
        status: DelegationStatus::Requested,
        rekey: None,
        requested_ms: ctx.tx_time_ms(),
        allowed_ms: None,
        fetches: 0,
        last_fetch_ms: None,
    };
    store(ctx, &k, &d)?;
    let mut e = event();
    e.appointment_id = Some(req.appointment_id);
    emit(ctx, super::EVENT_PRESCRIPTION_ACCESS_REQUESTED, e)?;
    Ok(d)
}

/// The patient allows a requester, supplying the re-encryption key to the requester's key.
pub(super) fn allow_others(
    ctx: &mut dyn Ctx,
    req: AllowPrescriptionOthers,
) -> Result<Delegation, ContractError> {
    let me = me(ctx)?;
    let rx = load_prescription(ctx, &req.appointment_id)?;
    if !me.is(&rx.patient, Role::Patient) {
        return Err(denied(
            "only the prescription's patient may allow others to read it (a re-encryption key \
             needs the patient's secret key)",
        ));
    }
    check_identity("requester", &req.requester)?;
    check_rekey("rekey", &req.rekey)?;
    let k = keys::delegation(&req.appointment_id, &req.requester);
    let mut d: Delegation = load(ctx, &k, "request")?.ok_or_else(|| {
        ContractError::NotFound("no request for this prescription by that requester".into())
    })?;
    transition(d.status, DelegationStatus::Allowed)?;
    if d.requester_pre_public_key != req.requester_pre_public_key {
        return Err(refused(
            "requester_pre_public_key is not the key recorded in the request",
        ));
    }
    d.status = DelegationStatus::Allowed;
    d.rekey = Some(req.rekey);
    d.allowed_ms = Some(ctx.tx_time_ms());
    store(ctx, &k, &d)?;
    let mut e = event();
    e.appointment_id = Some(req.appointment_id);
    emit(ctx, super::EVENT_PRESCRIPTION_ACCESS_ALLOWED, e)?;
    Ok(d)
}

/// The caller's ALLOWED request for `appointment_id`, with its key still the caller's.
fn allowed_delegation(
    ctx: &mut dyn Ctx,
    me: &Me,
    appointment_id: &Hash32,
) -> Result<(Delegation, ReKey), ContractError> {
    let d = load::<Delegation>(ctx, &keys::delegation(appointment_id, &me.who), "request")?
        .filter(|d| d.status == DelegationStatus::Allowed && d.requester_role == me.role)
        .ok_or_else(|| {
            denied("the caller has no request for this prescription allowed by the patient")
        })?;
    if me.pre_key.as_deref() != Some(d.requester_pre_public_key.as_slice()) {
        return Err(refused(
            "the caller's PRE public key changed since the request: ask again",
        ));
    }
    let rk = d
        .rekey
        .as_deref()
        .ok_or_else(|| ContractError::State("an allowed request has no re-encryption key".into()))
        .and_then(|b| {
            ReKey::from_bytes(b).map_err(|_| {
                ContractError::State("a stored re-encryption key does not decode".into())
            })
        })?;
    Ok((d, rk))
}

/// `reencrypt(sealed, rk)` of stored bytes, as `ReSealed::to_bytes`.
fn reencrypt_stored(sealed: &[u8], rk: &ReKey, what: &str) -> Result<ByteBuf, ContractError> {
    let s = Sealed::from_bytes(sealed)
        .map_err(|_| ContractError::State(format!("a stored {what} does not decode")))?;
    let r = pre::reencrypt(&s, rk)
        .map_err(|_| ContractError::State(format!("re-encrypting a stored {what} failed")))?;
    Ok(ByteBuf::from(r.to_bytes()))
}

/// An allowed requester fetches the PAID prescription's dosage, re-encrypted to them.
pub(super) fn for_others(
    ctx: &mut dyn Ctx,
    req: GetPrescriptionOthers,
) -> Result<PrescriptionForOthers, ContractError> {
    let me = me(ctx)?;
    let rx = load_prescription(ctx, &req.appointment_id)?;
    let (mut d, rk) = allowed_delegation(ctx, &me, &req.appointment_id)?;
    if rx.status != PrescriptionStatus::Paid {
        return Err(locked(rx.status));
    }
    let dosage = rx
        .dosage
        .as_deref()
        .ok_or_else(|| ContractError::State("a PAID prescription has no dosage".into()))?;
    let dosage = reencrypt_stored(dosage, &rk, "dosage")?;
    d.fetches = d.fetches.saturating_add(1);
    d.last_fetch_ms = Some(ctx.tx_time_ms());
    store(ctx, &keys::delegation(&req.appointment_id, &me.who), &d)?;
    let mut e = event();
    e.appointment_id = Some(req.appointment_id);
    emit(ctx, super::EVENT_PRESCRIPTION_FETCHED, e)?;
    Ok(PrescriptionForOthers {
        appointment_id: rx.appointment_id,
        doctor: rx.doctor,
        status: rx.status,
        dosage,
        paid_ms: rx.paid_ms,
    })
}

/// The lab reports whose bills are PAYMENT_RECEIVED: sealed for the patient, re-encrypted for
/// an allowed requester.
pub(super) fn lab_reports(
    ctx: &mut dyn Ctx,
    req: GetLabReports,
) -> Result<LabReports, ContractError> {
    let me = me(ctx)?;
    let rx = load_prescription(ctx, &req.appointment_id)?;
    let rk = if me.is(&rx.patient, Role::Patient) {
        None
    } else {
        Some(allowed_delegation(ctx, &me, &req.appointment_id)?.1)
    };
    let mut reports = Vec::new();
    let mut locked = 0u32;
    for r in &rx.lab_reports {
        let bill = super::load_bill(ctx, &r.bill_id)?;
        if bill.status != BillStatus::PaymentReceived {
            locked = locked.saturating_add(1);
            continue;
        }
        let body: LabReport = load(
            ctx,
            &keys::lab_report(&rx.appointment_id, r.index),
            "report",
        )?
        .ok_or_else(|| ContractError::State("a lab report is missing".into()))?;
        let report = match &rk {
            None => body.report,
            Some(rk) => reencrypt_stored(&body.report, rk, "lab report")?,
        };
        reports.push(LabReportView {
            reference: r.clone(),
            report,
        });
    }
    Ok(LabReports {
        reencrypted: rk.is_some(),
        reports,
        locked,
    })
}
