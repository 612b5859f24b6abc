//! Bills, insurance plans and payments: `getPendingPaymentRequests` (table 5.2, 8),
//! `registerInsurance` (9), `getInsuranceRegistrationRequests` (10),
//! `registerInsuranceRequestStatus` (11), `acceptInsuranceRegistrationRequest` (12),
//! `getBillStatus` (13), `getBillStatusPatient` (14), `approvePaymentRequest` (15),
//! `getBillStatusInsurance` (16), `getInsurancePaymentRequests` (17),
//! `payInsurancePaymentRequests` (18), `payBill` (+) and `confirmBillPayment` (+).

use serde_bytes::ByteBuf;
use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;
use sphr_crypto::pre::{self, Sealed};

use super::{
    AcceptInsuranceRegistrationRequest, Approval, ApprovePaymentRequest, Bill, BillList,
    BillStatus, ConfirmBillPayment, GetBillStatus, GetBillStatusInsurance,
    GetInsurancePaymentRequests, GetInsuranceRegistrationRequests, InsurancePlan, InsurerBill,
    MAX_PAY_BATCH, Me, PayBill, PayInsurancePaymentRequests, Payer, PaymentRequest,
    PaymentRequestList, PlanList, PlanStatus, RegisterInsurance, RegisterInsuranceRequestStatus,
    bad, check_code, check_name, check_pre_key, check_rekey, day_of, denied, emit, event, keys,
    load, load_appointment, load_bill, load_bills, load_plan, me, new_id, page, refused,
    require_role, store, transition,
};
use crate::{ContractError, Ctx};

/// The patient's bills of an appointment: all, or (`pending`) those not PAYMENT_RECEIVED.
pub(super) fn patient_bills(
    ctx: &mut dyn Ctx,
    appointment_id: &Hash32,
    pending: bool,
) -> Result<BillList, ContractError> {
    let me = me(ctx)?;
    let a = load_appointment(ctx, appointment_id)?;
    if !me.is(&a.patient, Role::Patient) {
        return Err(denied("only the appointment's patient may list its bills"));
    }
    let rx: Option<super::Prescription> =
        load(ctx, &keys::prescription(appointment_id), "prescription")?;
    let bills = match rx {
        None => Vec::new(),
        Some(rx) => load_bills(ctx, &rx)?,
    };
    let bills = bills
        .into_iter()
        .filter(|b| !pending || b.status != BillStatus::PaymentReceived)
        .collect();
    Ok(BillList { bills })
}

/// A patient asks an insurer for a plan.
pub(super) fn register_insurance(
    ctx: &mut dyn Ctx,
    req: RegisterInsurance,
) -> Result<InsurancePlan, ContractError> {
    let me = me(ctx)?;
    require_role(&me, Role::Patient, "register for an insurance plan")?;
    check_name("insurer", &req.insurer)?;
    check_code("plan_type", &req.plan_type)?;
    let plan_id = new_id(ctx, b"sphr.healthcare.plan");
    let key = keys::plan(&plan_id);
    if ctx.get(&key)?.is_some() {
        return Err(refused("a plan with this transaction's id exists"));
    }
    let now = ctx.tx_time_ms();
    let plan = InsurancePlan {
        plan_id,
        patient: me.who,
        insurer: req.insurer,
        plan_type: req.plan_type,
        status: PlanStatus::Requested,
        allocated_insurance_id: None,
        insurer_pre_public_key: None,
        accepted_by: None,
        requested_ms: now,
        accepted_ms: None,
    };
    store(ctx, &key, &plan)?;
    store(
        ctx,
        &keys::plan_day(&plan.insurer, day_of(now), &plan_id),
        &plan_id,
    )?;
    let mut e = event();
    e.plan_id = Some(plan_id);
    e.org = Some(plan.insurer.clone());
    emit(ctx, super::EVENT_INSURANCE_REQUESTED, e)?;
    Ok(plan)
}

/// An insurer's registration requests of one day.
pub(super) fn registration_requests(
    ctx: &mut dyn Ctx,
    req: GetInsuranceRegistrationRequests,
) -> Result<PlanList, ContractError> {
    let me = me(ctx)?;
    require_role(&me, Role::Insurer, "list insurance registration requests")?;
    let prefix = keys::plan_day_prefix(&me.who.org, req.day);
    let (ids, more) = page::<Hash32>(
        ctx,
        &prefix,
        req.after.as_ref().map(|h| h.as_bytes().as_slice()),
        req.limit,
        "plan index",
    )?;
    let mut plans = Vec::with_capacity(ids.len());
    for id in &ids {
        let p: InsurancePlan = load(ctx, &keys::plan(id), "insurance plan")?
            .ok_or_else(|| ContractError::State("an indexed plan is missing".into()))?;
        plans.push(p);
    }
    let next = if more { ids.last().copied() } else { None };
    Ok(PlanList { plans, next })
}

/// The patient checks their plan.
pub(super) fn registration_status(
    ctx: &mut dyn Ctx,
    req: RegisterInsuranceRequestStatus,
) -> Result<InsurancePlan, ContractError> {
    let me = me(ctx)?;
    let plan = load_plan(ctx, &req.plan_id)?;
    if !me.is(&plan.patient, Role::Patient) {
        return Err(denied("only the plan's patient may check its status"));
    }
    Ok(plan)
}

/// An insurer of the plan's org accepts it, allocating a member id; its PRE key becomes the
/// plan's insurer key.
pub(super) fn accept_registration(
    ctx: &mut dyn Ctx,
    req: AcceptInsuranceRegistrationRequest,
) -> Result<InsurancePlan, ContractError> {
    let me = me(ctx)?;
    check_code("allocated_insurance_id", &req.allocated_insurance_id)?;
    let mut plan = load_plan(ctx, &req.plan_id)?;
    if me.role != Role::Insurer || me.who.org != plan.insurer {
        return Err(denied(
            "only an insurer of the plan's insurance company may accept it",
        ));
    }
    transition(plan.status, PlanStatus::Accepted)?;
    let key = me.pre_key.clone().ok_or_else(|| {
        refused(
            "the insurer has no PRE public key (certificate or registerUser): bill amounts \
             could not be re-encrypted to it",
        )
    })?;
    check_pre_key("the insurer's PRE public key", &key)?;
    plan.status = PlanStatus::Accepted;
    plan.allocated_insurance_id = Some(req.allocated_insurance_id);
    plan.insurer_pre_public_key = Some(ByteBuf::from(key));
    plan.accepted_by = Some(me.who);
    plan.accepted_ms = Some(ctx.tx_time_ms());
    store(ctx, &keys::plan(&req.plan_id), &plan)?;
    let mut e = event();
    e.plan_id = Some(req.plan_id);
    e.org = Some(plan.insurer.clone());
    emit(ctx, super::EVENT_INSURANCE_ACCEPTED, e)?;
    Ok(plan)
}

fn is_issuer(me: &Me, bill: &Bill) -> bool {
    me.is(&bill.issuer, bill.issuer_role)
}

/// The issuer checks a bill.
pub(super) fn bill_status(ctx: &mut dyn Ctx, req: GetBillStatus) -> Result<Bill, ContractError> {
    let me = me(ctx)?;
    let bill = load_bill(ctx, &req.bill_id)?;
    if !is_issuer(&me, &bill) {
        return Err(denied(
            "only the bill's issuer may check it with getBillStatus",
        ));
    }
    Ok(bill)
}

fn emit_bill(ctx: &mut dyn Ctx, name: &str, bill: &Bill) -> Result<(), ContractError> {
    let mut e = event();
    e.appointment_id = Some(bill.appointment_id);
    e.bill_id = Some(bill.bill_id);
    emit(ctx, name, e)
}

/// The patient approves a covered bill for their insurer (Case II): APPROVED, with a
/// re-encryption key for the insurer, and a payment request for the insurer.
pub(super) fn approve(
    ctx: &mut dyn Ctx,
    req: ApprovePaymentRequest,
) -> Result<Bill, ContractError> {
    let me = me(ctx)?;
    let mut bill = load_bill(ctx, &req.bill_id)?;
    if !me.is(&bill.patient, Role::Patient) {
        return Err(denied("only the bill's patient may approve it"));
    }
    let coverage = bill.coverage.clone().ok_or_else(|| {
        refused("the bill is not covered by an insurance plan: the patient pays it with payBill")
    })?;
    transition(bill.status, BillStatus::Approved)?;
    check_rekey("rekey", &req.rekey)?;
    let plan = load_plan(ctx, &coverage.plan_id)?;
    if plan.status != PlanStatus::Accepted {
        return Err(refused(format!(
            "the insurance plan is {}; it must be ACCEPTED",
            plan.status
        )));
    }
    if plan.insurer_pre_public_key.as_ref() != Some(&req.insurer_pre_public_key) {
        return Err(refused(
            "insurer_pre_public_key is not the PRE key of the plan's insurer",
        ));
    }
    let now = ctx.tx_time_ms();
    bill.status = BillStatus::Approved;
    bill.approval = Some(Approval {
        approved_ms: now,
        insurer_pre_public_key: req.insurer_pre_public_key,
        rekey: req.rekey,
    });
    let request = PaymentRequest {
        bill_id: bill.bill_id,
        appointment_id: bill.appointment_id,
        patient: bill.patient.clone(),
        plan_id: coverage.plan_id,
        allocated_insurance_id: coverage.allocated_insurance_id,
        insurer: coverage.insurer,
        approved_ms: now,
        paid_ms: None,
    };
    store(ctx, &keys::bill(&bill.bill_id), &bill)?;
    store(
        ctx,
        &keys::payment_request(&request.insurer, day_of(now), &bill.bill_id),
        &request,
    )?;
    emit_bill(ctx, super::EVENT_BILL_APPROVED, &bill)?;
    let mut e = event();
    e.bill_id = Some(bill.bill_id);
    e.org = Some(request.insurer);
    emit(ctx, super::EVENT_PAYMENT_REQUESTED, e)?;
    Ok(bill)
}

/// Whether the caller is an insurer of the company covering `bill`.
fn is_bill_insurer(me: &Me, bill: &Bill) -> bool {
    me.role == Role::Insurer
        && bill
            .coverage
            .as_ref()
            .is_some_and(|c| c.insurer == me.who.org)
}

/// An insurer reads an approved bill, the amount re-encrypted to the plan's insurer key.
pub(super) fn bill_for_insurer(
    ctx: &mut dyn Ctx,
    req: GetBillStatusInsurance,
) -> Result<InsurerBill, ContractError> {
    let me = me(ctx)?;
    let bill = load_bill(ctx, &req.bill_id)?;
    if !is_bill_insurer(&me, &bill) {
        return Err(denied(
            "only an insurer of the bill's insurance company may read it",
        ));
    }
    let approval = bill
        .approval
        .as_ref()
        .ok_or_else(|| refused("the patient has not approved this bill for payment"))?;
    let amount = Sealed::from_bytes(&bill.amount)
        .map_err(|_| ContractError::State("a stored bill amount does not decode".into()))?;
    let rk = pre::ReKey::from_bytes(&approval.rekey)
        .map_err(|_| ContractError::State("a stored re-encryption key does not decode".into()))?;
    let amount = pre::reencrypt(&amount, &rk)
        .map_err(|_| ContractError::State("re-encrypting a bill amount failed".into()))?;
    Ok(InsurerBill {
        amount: ByteBuf::from(amount.to_bytes()),
        bill,
    })
}

/// An insurer's payment requests of one day.
pub(super) fn payment_requests(
    ctx: &mut dyn Ctx,
    req: GetInsurancePaymentRequests,
) -> Result<PaymentRequestList, ContractError> {
    let me = me(ctx)?;
    require_role(&me, Role::Insurer, "list payment requests")?;
    let prefix = keys::payment_request_prefix(&me.who.org, req.day);
    let (requests, more) = page::<PaymentRequest>(
        ctx,
        &prefix,
        req.after.as_ref().map(|h| h.as_bytes().as_slice()),
        req.limit,
        "payment request",
    )?;
    let next = if more {
        requests.last().map(|r| r.bill_id)
    } else {
        None
    };
    Ok(PaymentRequestList { requests, next })
}

/// An insurer pays approved bills (all or none): PAYMENT_SENT.
pub(super) fn insurer_pays(
    ctx: &mut dyn Ctx,
    req: PayInsurancePaymentRequests,
) -> Result<BillList, ContractError> {
    let me = me(ctx)?;
    require_role(&me, Role::Insurer, "pay insurance payment requests")?;
    if req.bill_ids.is_empty() || req.bill_ids.len() > MAX_PAY_BATCH {
        return Err(bad(format!(
            "bill_ids must name 1 to {MAX_PAY_BATCH} bills"
        )));
    }
    let mut seen = req.bill_ids.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != req.bill_ids.len() {
        return Err(bad("bill_ids names a bill twice"));
    }
    let mut bills = Vec::with_capacity(req.bill_ids.len());
    for (i, id) in req.bill_ids.iter().enumerate() {
        let bill: Bill = load(ctx, &keys::bill(id), "bill")?
            .ok_or_else(|| ContractError::NotFound(format!("bill {i} of the batch not found")))?;
        if !is_bill_insurer(&me, &bill) {
            return Err(denied(format!(
                "bill {i} of the batch is not covered by the caller's insurance company"
            )));
        }
        if bill.status == BillStatus::Generated {
            return Err(refused(format!(
                "bill {i} of the batch is GENERATED: the patient has not approved it"
            )));
        }
        transition(bill.status, BillStatus::PaymentSent)
            .map_err(|e| refused(format!("bill {i} of the batch: {}", inner(&e))))?;
        let approved_ms = bill
            .approval
            .as_ref()
            .map(|a| a.approved_ms)
            .ok_or_else(|| ContractError::State("an APPROVED bill has no approval".into()))?;
        let request_key = keys::payment_request(&me.who.org, day_of(approved_ms), id);
        let request: PaymentRequest =
            load(ctx, &request_key, "payment request")?.ok_or_else(|| {
                ContractError::State("an approved bill has no payment request".into())
            })?;
        bills.push((bill, request_key, request));
    }
    let now = ctx.tx_time_ms();
    let mut out = Vec::with_capacity(bills.len());
    for (mut bill, request_key, mut request) in bills {
        bill.status = BillStatus::PaymentSent;
        bill.paid_by = Some(Payer::Insurer(me.who.clone()));
        bill.payment_sent_ms = Some(now);
        request.paid_ms = Some(now);
        store(ctx, &keys::bill(&bill.bill_id), &bill)?;
        store(ctx, &request_key, &request)?;
        emit_bill(ctx, super::EVENT_BILL_PAYMENT_SENT, &bill)?;
        out.push(bill);
    }
    Ok(BillList { bills: out })
}

/// The message of a refusal, without its variant's prefix.
fn inner(e: &ContractError) -> String {
    match e {
        ContractError::Refused(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The patient pays a GENERATED bill themself (Case I): PAYMENT_SENT.
pub(super) fn patient_pays(ctx: &mut dyn Ctx, req: PayBill) -> Result<Bill, ContractError> {
    let me = me(ctx)?;
    let mut bill = load_bill(ctx, &req.bill_id)?;
    if !me.is(&bill.patient, Role::Patient) {
        return Err(denied("only the bill's patient may pay it with payBill"));
    }
    if bill.status == BillStatus::Approved {
        return Err(refused("the bill is APPROVED for the insurer, who pays it"));
    }
    transition(bill.status, BillStatus::PaymentSent)?;
    bill.status = BillStatus::PaymentSent;
    bill.paid_by = Some(Payer::Patient);
    bill.payment_sent_ms = Some(ctx.tx_time_ms());
    store(ctx, &keys::bill(&bill.bill_id), &bill)?;
    emit_bill(ctx, super::EVENT_BILL_PAYMENT_SENT, &bill)?;
    Ok(bill)
}

/// The issuer confirms the money arrived: PAYMENT_RECEIVED.
pub(super) fn confirm(ctx: &mut dyn Ctx, req: ConfirmBillPayment) -> Result<Bill, ContractError> {
    let me = me(ctx)?;
    let mut bill = load_bill(ctx, &req.bill_id)?;
    if !is_issuer(&me, &bill) {
        return Err(denied("only the bill's issuer may confirm its payment"));
    }
    transition(bill.status, BillStatus::PaymentReceived)?;
    bill.status = BillStatus::PaymentReceived;
    bill.payment_received_ms = Some(ctx.tx_time_ms());
    store(ctx, &keys::bill(&bill.bill_id), &bill)?;
    emit_bill(ctx, super::EVENT_BILL_PAYMENT_RECEIVED, &bill)?;
    Ok(bill)
}
