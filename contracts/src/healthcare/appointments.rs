//! Appointments: `requestAppointment` (table 5.2, 1), `getAllAppointment` (2),
//! `acceptAppointment` (3) and `rejectAppointment` (+), `getAppointmentStatus` (4).

use serde_bytes::ByteBuf;
use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;

use super::{
    Appointment, AppointmentList, AppointmentStatus, AppointmentStatusResponse, Coverage,
    Delegation, GetAllAppointment, GetAppointmentStatus, MAX_APPOINTMENT_AHEAD_MS,
    MAX_APPOINTMENT_PAST_MS, MAX_DELEGATIONS, MAX_NOTES_LEN, PlanStatus, PrescriptionSummary,
    RequestAppointment, UserRecord, bad, check_code, check_identity, check_pre_key, check_sealed,
    day_of, denied, emit, event, keys, load, load_all, load_appointment, load_plan, me, new_id,
    page, refused, require_role, store, transition,
};
use crate::{ContractError, Ctx};

/// A patient asks a doctor for an appointment.
pub(super) fn request(
    ctx: &mut dyn Ctx,
    req: RequestAppointment,
) -> Result<Appointment, ContractError> {
    let me = me(ctx)?;
    require_role(&me, Role::Patient, "request an appointment")?;
    check_identity("doctor", &req.doctor)?;
    check_code("disease_classification", &req.disease_classification)?;
    if let Some(n) = &req.notes {
        check_sealed("notes", n, MAX_NOTES_LEN)?;
    }
    let now = ctx.tx_time_ms();
    if req.requested_time_ms < now.saturating_sub(MAX_APPOINTMENT_PAST_MS)
        || req.requested_time_ms > now.saturating_add(MAX_APPOINTMENT_AHEAD_MS)
    {
        return Err(bad(format!(
            "requested_time_ms must be at most {MAX_APPOINTMENT_PAST_MS} ms before and \
             {MAX_APPOINTMENT_AHEAD_MS} ms after the transaction time"
        )));
    }
    let patient_key = match req.patient_pre_public_key {
        Some(k) => k,
        None => ByteBuf::from(me.pre_key.clone().ok_or_else(|| {
            refused(
                "the caller has no PRE public key (certificate or registerUser) and the \
                 request names none: dosage and reports could not be sealed to the patient",
            )
        })?),
    };
    check_pre_key("patient_pre_public_key", &patient_key)?;
    let billing_key = match req.billing_pre_public_key {
        Some(k) => {
            check_pre_key("billing_pre_public_key", &k)?;
            k
        }
        None => patient_key.clone(),
    };
    let doctor: Option<UserRecord> = load(ctx, &keys::user(&req.doctor), "user")?;
    if doctor.is_none_or(|d| d.role != Role::Doctor) {
        return Err(refused("the doctor named is not a registered doctor"));
    }
    let coverage = match req.insurance_plan_id {
        None => None,
        Some(plan_id) => {
            let plan = load_plan(ctx, &plan_id)?;
            if plan.patient != me.who {
                return Err(denied("the insurance plan belongs to another patient"));
            }
            if plan.status != PlanStatus::Accepted {
                return Err(refused(format!(
                    "the insurance plan is {}; it must be ACCEPTED by the insurer",
                    plan.status
                )));
            }
            Some(Coverage {
                plan_id,
                insurer: plan.insurer,
                allocated_insurance_id: plan.allocated_insurance_id.unwrap_or_default(),
            })
        }
    };
    let appointment_id = new_id(ctx, b"sphr.healthcare.appointment");
    let key = keys::appointment(&appointment_id);
    if ctx.get(&key)?.is_some() {
        return Err(refused("an appointment with this transaction's id exists"));
    }
    let appointment = Appointment {
        appointment_id,
        patient: me.who,
        hospital: req.doctor.org.clone(),
        doctor: req.doctor,
        requested_time_ms: req.requested_time_ms,
        disease_classification: req.disease_classification,
        notes: req.notes,
        coverage,
        patient_pre_public_key: patient_key,
        billing_pre_public_key: billing_key,
        status: AppointmentStatus::Requested,
        created_ms: now,
        decided_ms: None,
    };
    store(ctx, &key, &appointment)?;
    store(
        ctx,
        &keys::appointment_day(
            &appointment.doctor,
            day_of(appointment.requested_time_ms),
            &appointment_id,
        ),
        &appointment_id,
    )?;
    let mut e = event();
    e.appointment_id = Some(appointment_id);
    e.org = Some(appointment.hospital.clone());
    emit(ctx, super::EVENT_APPOINTMENT_REQUESTED, e)?;
    Ok(appointment)
}

/// A doctor's appointments requested for one day.
pub(super) fn get_all(
    ctx: &mut dyn Ctx,
    req: GetAllAppointment,
) -> Result<AppointmentList, ContractError> {
    let me = me(ctx)?;
    require_role(&me, Role::Doctor, "list their appointments")?;
    let prefix = keys::appointment_day_prefix(&me.who, req.day);
    let (ids, more) = page::<Hash32>(
        ctx,
        &prefix,
        req.after.as_ref().map(|h| h.as_bytes().as_slice()),
        req.limit,
        "appointment index",
    )?;
    let mut appointments = Vec::with_capacity(ids.len());
    for id in &ids {
        let a: Appointment = load(ctx, &keys::appointment(id), "appointment")?
            .ok_or_else(|| ContractError::State("an indexed appointment is missing".into()))?;
        appointments.push(a);
    }
    let next = if more { ids.last().copied() } else { None };
    Ok(AppointmentList { appointments, next })
}

/// The doctor asked accepts (`accept`) or rejects an appointment.
pub(super) fn decide(
    ctx: &mut dyn Ctx,
    id: &Hash32,
    accept: bool,
) -> Result<Appointment, ContractError> {
    let me = me(ctx)?;
    let mut a = load_appointment(ctx, id)?;
    if !me.is(&a.doctor, Role::Doctor) {
        return Err(denied(
            "only the doctor the appointment asks may accept or reject it",
        ));
    }
    let (to, name) = if accept {
        (
            AppointmentStatus::Accepted,
            super::EVENT_APPOINTMENT_ACCEPTED,
        )
    } else {
        (
            AppointmentStatus::Rejected,
            super::EVENT_APPOINTMENT_REJECTED,
        )
    };
    transition(a.status, to)?;
    a.status = to;
    a.decided_ms = Some(ctx.tx_time_ms());
    store(ctx, &keys::appointment(id), &a)?;
    let mut e = event();
    e.appointment_id = Some(*id);
    emit(ctx, name, e)?;
    Ok(a)
}

/// The patient's view of an appointment, its prescription and the requests for it.
pub(super) fn status(
    ctx: &mut dyn Ctx,
    req: GetAppointmentStatus,
) -> Result<AppointmentStatusResponse, ContractError> {
    let me = me(ctx)?;
    let appointment = load_appointment(ctx, &req.appointment_id)?;
    if !me.is(&appointment.patient, Role::Patient) {
        return Err(denied(
            "only the appointment's patient may check its status",
        ));
    }
    let prescription = load::<super::Prescription>(
        ctx,
        &keys::prescription(&req.appointment_id),
        "prescription",
    )?
    .map(|p| PrescriptionSummary {
        status: p.status,
        doctor: p.doctor,
        lab_reports: p.lab_reports,
        bill_ids: p.bill_ids,
    });
    let delegations: Vec<Delegation> = load_all(
        ctx,
        &keys::delegation_prefix(&req.appointment_id),
        MAX_DELEGATIONS,
        "prescription request",
    )?;
    Ok(AppointmentStatusResponse {
        appointment,
        prescription,
        delegations,
    })
}
