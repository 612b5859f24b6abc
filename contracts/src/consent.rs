//! `consent`: the patient's consent rules, audited access requests and bundle key delivery
//! (seed 000, section 3.4.1).
//!
//! ```text
//!  1 admin:   registerHospital {departments, allowed_tags (its law), max_rule_days}
//!             registerStaff {id, department}          (who belongs to which department)
//!  2 patient: registerPatient
//!  3 patient: createRule {grantee, ALLOW|DENY, tags, purpose, valid from/until} ─> rule id
//!  4-5 professional: requestAccess {patient, tags, hospitals, purpose}
//!             ─> access record GRANTED|DENIED, always written; event accessGranted(request id)
//!  6-7 node of each granted hospital: packages the granted tags, seals the bundle with a fresh
//!             key, deliverBundleKey {sealed key, bundle hash, lineage}; event bundleKeyDelivered
//!  8 professional: getBundleKeys ─> sealed key (path 1: the chain)
//!  9-10 professional: downloads the sealed bundle from that node over HTTPS (path 2, off chain)
//! ```
//!
//! Every function takes one argument, a CBOR request struct from [`types`] (at most
//! [`MAX_ARG_BYTES`]), and answers with a CBOR response struct:
//!
//! | function | request | response | who may call |
//! | --- | --- | --- | --- |
//! | `registerHospital` | [`RegisterHospital`] | [`Hospital`] | `admin` of that org |
//! | `registerStaff` | [`RegisterStaff`] | [`StaffMember`] | `admin` of the staff's org |
//! | `removeStaff` | [`RemoveStaff`] | [`Done`] | `admin` of the staff's org |
//! | `registerPatient` | [`RegisterPatient`] | [`Patient`] | a `patient` (registers itself) |
//! | `createRule` | [`CreateRule`] | [`CreateRuleResponse`] | a registered `patient` |
//! | `revokeRule` | [`RevokeRule`] | [`Rule`] | the rule's grantor |
//! | `listRules` (query) | [`ListRules`] | [`RuleList`] | the patient, an `auditor` |
//! | `requestAccess` | [`RequestAccess`] | [`AccessRecord`] | anyone (non-professionals are denied, on record) |
//! | `getRequest` (query) | [`GetRequest`] | [`AccessRecord`] | patient, requester, `auditor`, `node` of a named hospital |
//! | `getAuditTrail` (query) | [`GetAuditTrail`] | [`AuditTrail`] | the patient, an `auditor` |
//! | `deliverBundleKey` | [`DeliverBundleKey`] | [`BundleKey`] | a `node` of that hospital |
//! | `getBundleKeys` (query) | [`GetBundleKeys`] | [`BundleKeys`] | the requester, the patient |
//! | `getLineage` (query) | [`GetLineage`] | [`Lineage`] | patient, requester, `auditor` |
//! | `getHospital` (query) | [`GetHospital`] | [`Hospital`] | anyone |
//!
//! # Rule evaluation (`requestAccess`)
//!
//! The requester is a *registered professional* when their certificate role is `doctor`,
//! `nurse`, `lab` or `pharmacist` and their org's admin has placed them in a department with
//! `registerStaff` (certificates carry no department, so the hospital attests it on chain).
//! Their department counts only while the hospital still lists it. Then, with `now` the tx
//! time:
//!
//! 1. requester not a registered professional: DENIED; patient not registered: DENIED;
//!    the patient holding more rules than one range read returns: DENIED (fail closed).
//! 2. A hospital named in the request that is not registered is refused as a whole.
//! 3. A rule *covers* the requester if its grantee is them (org and id) or their department
//!    (org and department). A rule is *live* if not revoked and `valid_from <= now <
//!    valid_until`; a revoked rule is dead from its revocation on, whatever the tx time of a
//!    later request (tx times may skew by minutes). Dead rules count for nothing.
//! 4. For each requested tag: a live covering DENY refuses it ("rule R denies tag X"); else
//!    with no live covering ALLOW it is refused with the reason of the first dead covering
//!    ALLOW ("rule R expired", "... not valid yet", "... was revoked") or "no rule grants tag
//!    X"; else, for each registered hospital asked, the tag is granted from that hospital if
//!    its law (`allowed_tags`) lists it, otherwise refused ("hospital H's law does not allow
//!    tag X"). The live ALLOW rules behind each granted tag are the rule ids used.
//! 5. Anything granted: GRANTED with the per-hospital tags, the rule ids used, the refusals of
//!    the rest, and the requester's PRE public key (to seal bundle keys to); an
//!    `accessGranted` event carries the request id (32 raw bytes). Nothing granted: DENIED with
//!    the refusals and a one-line reason.
//!
//! Either way the record is written and returned: a denial is a successful transaction. Only
//! malformed input is an error. The request id is `sha256_parts("sphr.consent.request", tx id)`.
//!
//! # Decisions
//!
//! - `createRule` stores the patient's wish as stated. It refuses an unknown grantee hospital
//!   or department, an empty or already-ended window, and an ALLOW rule longer than the grantee
//!   hospital's `max_rule_days` (a DENY only restricts, so it may last longer). Tags outside the
//!   grantee hospital's law are accepted and reported as `limited_tags`: the rule is not tied
//!   to the hospital holding the data, so the law that applies is only known per request and is
//!   enforced there (step 4), also after a hospital changes its law.
//! - A professional grantee need not be on staff yet when the rule is made; they must be when
//!   they ask. Insurers, admins, nodes, auditors and clients are never granted access.
//! - Rule id: `sha256_parts("sphr.consent.rule", tx id, 0u32)`.
//! - Only the grantor can revoke: rules are looked up under the caller's own identity, so
//!   anyone else gets "not found" (which reveals nothing about other patients' rules).
//! - A patient holds at most [`MAX_RULES_PER_PATIENT`] rules; when full, `createRule` prunes
//!   the revoked and expired ones (their history stays in the blocks) or refuses.
//! - `deliverBundleKey` lineage must be within the grant: rule ids among those used, hospitals
//!   among those granted, and it must name the delivering hospital.
//! - Events: `accessGranted` carries only the request id (32 raw bytes); a hospital node reads
//!   the record with `getRequest`. `bundleKeyDelivered` carries a CBOR
//!   [`BundleKeyDeliveredEvent`] (request id, hospital, bundle id). No patient id in either.
//! - Tags are compared byte for byte. Lists in requests are sorted and deduplicated. Every
//!   list, string and byte field has a limit (see [`types`]).
//! - No patient data goes into error messages: they name fields, never values.
//!
//! # State layout (keys inside the contract's namespace; values CBOR)
//!
//! | key | value |
//! | --- | --- |
//! | `hospital\0<org>` | [`Hospital`] |
//! | `staff\0<org>\0<id>` | [`StaffMember`] |
//! | `patient\0<org>\0<id>` | [`Patient`] |
//! | `rule\0<patient org>\0<patient id>\0<rule id>` | [`Rule`] |
//! | `audit\0<patient org>\0<patient id>\0<time ms, u64 BE><request id>` | [`AccessRecord`] |
//! | `request\0<request id>` | the patient and time of the record (an index) |
//! | `bundle\0<request id>\0<hospital>` | [`BundleKey`] |
//!
//! The audit trail of a patient is one range read in time order, with no shared counter
//! (concurrent requests do not conflict). `requestAccess` reads every rule of the patient, so a
//! revocation committed first makes a concurrent request fail MVCC rather than use the rule.

mod eval;
mod keys;
pub mod types;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use sphr_crypto::cbor::{self, CborError};
use sphr_crypto::cert::Role;
use sphr_crypto::hash::{Hash32, sha256_parts};

use crate::{Caller, Contract, ContractError, Ctx, MAX_RANGE_LEN, expect_args};
use keys::RequestIndex;
pub use types::*;

/// The contract's name (its namespace and its name in genesis).
pub const NAME: &str = "consent";

/// Roles that may be granted access (with a staff registration by their hospital).
pub const PROFESSIONAL_ROLES: &[Role] = &[Role::Doctor, Role::Nurse, Role::Lab, Role::Pharmacist];

const FUNCTIONS: &[&str] = &[
    "registerHospital",
    "registerStaff",
    "removeStaff",
    "registerPatient",
    "createRule",
    "revokeRule",
    "listRules",
    "requestAccess",
    "getRequest",
    "getAuditTrail",
    "deliverBundleKey",
    "getBundleKeys",
    "getLineage",
    "getHospital",
];

const QUERIES: &[&str] = &[
    "listRules",
    "getRequest",
    "getAuditTrail",
    "getBundleKeys",
    "getLineage",
    "getHospital",
];

/// The `consent` contract.
pub struct ConsentContract;

impl Contract for ConsentContract {
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
        match function {
            "registerHospital" => respond(&register_hospital(ctx, decode(function, args)?)?),
            "registerStaff" => respond(&register_staff(ctx, decode(function, args)?)?),
            "removeStaff" => respond(&remove_staff(ctx, decode(function, args)?)?),
            "registerPatient" => respond(&register_patient(ctx, decode(function, args)?)?),
            "createRule" => respond(&create_rule(ctx, decode(function, args)?)?),
            "revokeRule" => respond(&revoke_rule(ctx, decode(function, args)?)?),
            "listRules" => respond(&list_rules(ctx, decode(function, args)?)?),
            "requestAccess" => respond(&request_access(ctx, decode(function, args)?)?),
            "getRequest" => respond(&get_request(ctx, decode(function, args)?)?),
            "getAuditTrail" => respond(&get_audit_trail(ctx, decode(function, args)?)?),
            "deliverBundleKey" => respond(&deliver_bundle_key(ctx, decode(function, args)?)?),
            "getBundleKeys" => respond(&get_bundle_keys(ctx, decode(function, args)?)?),
            "getLineage" => respond(&get_lineage(ctx, decode(function, args)?)?),
            "getHospital" => respond(&get_hospital(ctx, decode(function, args)?)?),
            other => Err(ContractError::UnknownFunction {
                contract: NAME.into(),
                function: other.into(),
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding, state access and input checks
// ---------------------------------------------------------------------------------------------

/// Decodes the single CBOR argument. The message never repeats the input (it could hold an
/// identity).
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

fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ContractError> {
    cbor::from_slice(bytes, crate::MAX_VALUE_LEN)
        .map_err(|_| ContractError::State(format!("a stored {what} is not valid CBOR")))
}

fn store<T: Serialize>(ctx: &mut dyn Ctx, key: &[u8], value: &T) -> Result<(), ContractError> {
    let bytes = cbor::to_vec(value)
        .map_err(|e| ContractError::State(format!("encoding a state value: {e}")))?;
    ctx.put(key, &bytes)
}

/// Every value under `prefix`, in key order (at most [`MAX_RANGE_LEN`]).
fn load_all<T: DeserializeOwned>(
    ctx: &mut dyn Ctx,
    prefix: &[u8],
    what: &str,
) -> Result<Vec<T>, ContractError> {
    ctx.range(prefix, &keys::prefix_end(prefix), MAX_RANGE_LEN)?
        .iter()
        .map(|(_, v)| parse(v, what))
        .collect()
}

fn bad(msg: impl Into<String>) -> ContractError {
    ContractError::BadArgs(msg.into())
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

fn check_tag(what: &str, s: &str) -> Result<(), ContractError> {
    if s.is_empty() || s.len() > MAX_TAG_LEN {
        return Err(bad(format!("{what} must be 1 to {MAX_TAG_LEN} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(bad(format!("{what} holds a control character")));
    }
    Ok(())
}

fn check_purpose(s: &str) -> Result<(), ContractError> {
    if s.len() > MAX_PURPOSE_LEN {
        return Err(bad(format!(
            "purpose must be at most {MAX_PURPOSE_LEN} bytes"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(bad("purpose holds a control character"));
    }
    Ok(())
}

/// Checks each item, then sorts and deduplicates.
fn normalize(
    what: &str,
    mut items: Vec<String>,
    max: usize,
    required: bool,
    check: fn(&str, &str) -> Result<(), ContractError>,
) -> Result<Vec<String>, ContractError> {
    if items.len() > max {
        return Err(ContractError::Limit(format!(
            "{} {what}s, at most {max}",
            items.len()
        )));
    }
    if required && items.is_empty() {
        return Err(bad(format!("at least one {what} is required")));
    }
    for (i, s) in items.iter().enumerate() {
        check(&format!("{what} {i}"), s)?;
    }
    items.sort();
    items.dedup();
    Ok(items)
}

fn identity_of(c: &Caller) -> Identity {
    Identity::new(c.org.clone(), c.id.clone())
}

/// Whether the caller is `who` holding `role`.
fn is(c: &Caller, who: &Identity, role: Role) -> bool {
    c.role == role && c.org == who.org && c.id == who.id
}

fn rule_id(tx_id: &Hash32) -> Hash32 {
    sha256_parts(&[b"sphr.consent.rule", tx_id.as_bytes(), &0u32.to_be_bytes()])
}

fn request_id(tx_id: &Hash32) -> Hash32 {
    sha256_parts(&[b"sphr.consent.request", tx_id.as_bytes()])
}

fn load_hospital(ctx: &mut dyn Ctx, org: &str) -> Result<Option<Hospital>, ContractError> {
    load(ctx, &keys::hospital(org), "hospital")
}

/// The record of `request_id` (not found: [`ContractError::NotFound`]).
fn load_record(ctx: &mut dyn Ctx, request_id: &Hash32) -> Result<AccessRecord, ContractError> {
    let index: RequestIndex = load(ctx, &keys::request(request_id), "request index")?
        .ok_or_else(|| ContractError::NotFound("no access request with that id".into()))?;
    load(
        ctx,
        &keys::audit(&index.patient, index.time_ms, request_id),
        "access record",
    )?
    .ok_or_else(|| ContractError::State("an indexed access record is missing".into()))
}

// ---------------------------------------------------------------------------------------------
// Hospitals, staff, patients
// ---------------------------------------------------------------------------------------------

fn register_hospital(ctx: &mut dyn Ctx, req: RegisterHospital) -> Result<Hospital, ContractError> {
    check_name("hospital", &req.hospital)?;
    let c = ctx.caller();
    if c.role != Role::Admin || c.org != req.hospital {
        return Err(ContractError::Denied(
            "only an admin of the hospital's own org may register it".into(),
        ));
    }
    let departments = normalize(
        "department",
        req.departments,
        MAX_DEPARTMENTS,
        false,
        check_name,
    )?;
    let allowed_tags = normalize(
        "allowed tag",
        req.allowed_tags,
        MAX_ALLOWED_TAGS,
        false,
        check_tag,
    )?;
    if req.max_rule_days == 0 || req.max_rule_days > MAX_RULE_DAYS_LIMIT {
        return Err(bad(format!(
            "max_rule_days must be 1 to {MAX_RULE_DAYS_LIMIT}"
        )));
    }
    let now = ctx.tx_time_ms();
    let registered_ms =
        load_hospital(ctx, &req.hospital)?.map_or(now, |h: Hospital| h.registered_ms);
    let h = Hospital {
        hospital: req.hospital,
        departments,
        allowed_tags,
        max_rule_days: req.max_rule_days,
        registered_ms,
        updated_ms: now,
    };
    store(ctx, &keys::hospital(&h.hospital), &h)?;
    Ok(h)
}

fn register_staff(ctx: &mut dyn Ctx, req: RegisterStaff) -> Result<StaffMember, ContractError> {
    check_name("id", &req.id)?;
    check_name("department", &req.department)?;
    let c = ctx.caller();
    if c.role != Role::Admin {
        return Err(ContractError::Denied(
            "only an admin of the staff member's org may register staff".into(),
        ));
    }
    let member = Identity::new(c.org.clone(), req.id);
    let h = load_hospital(ctx, &member.org)?.ok_or_else(|| {
        ContractError::Refused("the caller's org is not a registered hospital".into())
    })?;
    if !h.departments.contains(&req.department) {
        return Err(ContractError::Refused(
            "the department is not one of the hospital's departments".into(),
        ));
    }
    let s = StaffMember {
        member,
        department: req.department,
        updated_ms: ctx.tx_time_ms(),
    };
    store(ctx, &keys::staff(&s.member), &s)?;
    Ok(s)
}

fn remove_staff(ctx: &mut dyn Ctx, req: RemoveStaff) -> Result<Done, ContractError> {
    check_name("id", &req.id)?;
    let c = ctx.caller();
    if c.role != Role::Admin {
        return Err(ContractError::Denied(
            "only an admin of the staff member's org may remove staff".into(),
        ));
    }
    let key = keys::staff(&Identity::new(c.org.clone(), req.id));
    if ctx.get(&key)?.is_none() {
        return Err(ContractError::NotFound(
            "no staff member with that id in the caller's org".into(),
        ));
    }
    ctx.delete(&key)?;
    Ok(Done {})
}

fn register_patient(ctx: &mut dyn Ctx, req: RegisterPatient) -> Result<Patient, ContractError> {
    let c = ctx.caller();
    if c.role != Role::Patient {
        return Err(ContractError::Denied(
            "only a patient certificate may register as a patient".into(),
        ));
    }
    if let Some(id) = &req.patient_id
        && *id != c.id
    {
        return Err(bad("patient_id does not match the caller's certificate"));
    }
    let patient = identity_of(c);
    let pre_public_key = c.pre_public_key.clone().map(ByteBuf::from);
    let now = ctx.tx_time_ms();
    let key = keys::patient(&patient);
    let registered_ms = load(ctx, &key, "patient")?.map_or(now, |p: Patient| p.registered_ms);
    let p = Patient {
        patient,
        pre_public_key,
        registered_ms,
    };
    store(ctx, &key, &p)?;
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

/// The caller as a registered patient.
fn registered_patient(ctx: &mut dyn Ctx, action: &str) -> Result<Identity, ContractError> {
    let c = ctx.caller();
    if c.role != Role::Patient {
        return Err(ContractError::Denied(format!(
            "only a patient may {action}"
        )));
    }
    let me = identity_of(c);
    if ctx.get(&keys::patient(&me))?.is_none() {
        return Err(ContractError::Refused(
            "the caller is not a registered patient".into(),
        ));
    }
    Ok(me)
}

fn create_rule(ctx: &mut dyn Ctx, req: CreateRule) -> Result<CreateRuleResponse, ContractError> {
    match &req.grantee {
        Grantee::Professional { org, id } => {
            check_name("grantee org", org)?;
            check_name("grantee id", id)?;
        }
        Grantee::Department { org, department } => {
            check_name("grantee org", org)?;
            check_name("grantee department", department)?;
        }
    }
    let tags = normalize("tag", req.tags, MAX_RULE_TAGS, true, check_tag)?;
    check_purpose(&req.purpose)?;
    let grantor = registered_patient(ctx, "create rules")?;
    let now = ctx.tx_time_ms();
    let h = load_hospital(ctx, req.grantee.org())?
        .ok_or_else(|| ContractError::Refused("the grantee's hospital is not registered".into()))?;
    if let Grantee::Department { department, .. } = &req.grantee
        && !h.departments.contains(department)
    {
        return Err(ContractError::Refused(
            "the grantee hospital has no such department".into(),
        ));
    }
    if req.valid_from_ms >= req.valid_until_ms {
        return Err(ContractError::Refused(
            "the validity window is empty: valid_from_ms must be before valid_until_ms".into(),
        ));
    }
    if req.valid_until_ms <= now {
        return Err(ContractError::Refused(
            "the validity window has already ended".into(),
        ));
    }
    let max_ms = u64::from(h.max_rule_days).saturating_mul(MS_PER_DAY);
    let len_ms = req.valid_until_ms.saturating_sub(req.valid_from_ms);
    if req.action == Action::Allow && len_ms > max_ms {
        return Err(ContractError::Refused(format!(
            "the validity window of {len_ms} ms is longer than the grantee hospital's maximum of {} days",
            h.max_rule_days
        )));
    }
    let id = rule_id(&ctx.tx_id());
    let existing: Vec<Rule> = load_all(ctx, &keys::rule_prefix(&grantor), "rule")?;
    if existing.iter().any(|r| r.rule_id == id) {
        return Err(ContractError::Refused(
            "a rule with this transaction's id exists".into(),
        ));
    }
    if existing.len() >= MAX_RULES_PER_PATIENT {
        let dead: Vec<&Rule> = existing
            .iter()
            .filter(|r| {
                matches!(
                    eval::status(r, now),
                    eval::Status::Revoked | eval::Status::Expired
                )
            })
            .collect();
        if existing.len() - dead.len() >= MAX_RULES_PER_PATIENT {
            return Err(ContractError::Refused(format!(
                "the patient holds {MAX_RULES_PER_PATIENT} rules in force or pending; revoke some first"
            )));
        }
        for r in dead {
            ctx.delete(&keys::rule(&grantor, &r.rule_id))?;
        }
    }
    let limited_tags = match req.action {
        Action::Allow => tags
            .iter()
            .filter(|t| !h.allowed_tags.contains(t))
            .cloned()
            .collect(),
        Action::Deny => Vec::new(),
    };
    let rule = Rule {
        rule_id: id,
        grantor,
        grantee: req.grantee,
        action: req.action,
        tags,
        purpose: req.purpose,
        valid_from_ms: req.valid_from_ms,
        valid_until_ms: req.valid_until_ms,
        created_ms: now,
        revoked_ms: None,
    };
    store(ctx, &keys::rule(&rule.grantor, &id), &rule)?;
    Ok(CreateRuleResponse {
        rule_id: id,
        limited_tags,
    })
}

fn revoke_rule(ctx: &mut dyn Ctx, req: RevokeRule) -> Result<Rule, ContractError> {
    let me = registered_patient(ctx, "revoke rules")?;
    let key = keys::rule(&me, &req.rule_id);
    let mut rule: Rule = load(ctx, &key, "rule")?.ok_or_else(|| {
        ContractError::NotFound("no rule with that id among the caller's rules".into())
    })?;
    if rule.revoked_ms.is_some() {
        return Err(ContractError::Refused("the rule is already revoked".into()));
    }
    rule.revoked_ms = Some(ctx.tx_time_ms());
    store(ctx, &key, &rule)?;
    Ok(rule)
}

fn list_rules(ctx: &mut dyn Ctx, req: ListRules) -> Result<RuleList, ContractError> {
    let c = ctx.caller();
    let patient = req.patient.unwrap_or_else(|| identity_of(c));
    check_identity("patient", &patient)?;
    if !(is(c, &patient, Role::Patient) || c.role == Role::Auditor) {
        return Err(ContractError::Denied(
            "only the patient or an auditor may list a patient's rules".into(),
        ));
    }
    let rules = load_all(ctx, &keys::rule_prefix(&patient), "rule")?;
    Ok(RuleList { rules })
}

// ---------------------------------------------------------------------------------------------
// Access requests and the audit trail
// ---------------------------------------------------------------------------------------------

fn request_access(ctx: &mut dyn Ctx, req: RequestAccess) -> Result<AccessRecord, ContractError> {
    check_identity("patient", &req.patient)?;
    let tags = normalize("tag", req.tags, MAX_REQUEST_TAGS, true, check_tag)?;
    let hospitals = normalize(
        "hospital",
        req.hospitals,
        MAX_REQUEST_HOSPITALS,
        true,
        check_name,
    )?;
    check_purpose(&req.purpose)?;

    let c = ctx.caller().clone();
    let requester = identity_of(&c);
    let now = ctx.tx_time_ms();
    let request_id = request_id(&ctx.tx_id());
    if ctx.get(&keys::request(&request_id))?.is_some() {
        return Err(ContractError::Refused(
            "an access request with this transaction's id exists".into(),
        ));
    }

    // Who is asking: a professional role, placed in a department of a registered hospital.
    let staff: Option<StaffMember> = if PROFESSIONAL_ROLES.contains(&c.role) {
        load(ctx, &keys::staff(&requester), "staff member")?
    } else {
        None
    };
    let (professional, department) = match staff {
        None => (false, None),
        Some(s) => match load_hospital(ctx, &requester.org)? {
            None => (false, None),
            Some(h) => {
                let d = h
                    .departments
                    .contains(&s.department)
                    .then_some(s.department);
                (true, d)
            }
        },
    };

    let decision = if !professional {
        eval::denied(vec![Refusal::RequesterNotProfessional])
    } else if ctx.get(&keys::patient(&req.patient))?.is_none() {
        eval::denied(vec![Refusal::PatientNotRegistered])
    } else {
        let rules: Vec<Rule> = load_all(ctx, &keys::rule_prefix(&req.patient), "rule")?;
        if rules.len() >= MAX_RANGE_LEN {
            eval::denied(vec![Refusal::TooManyRules])
        } else {
            let mut held = Vec::with_capacity(hospitals.len());
            for name in &hospitals {
                held.push((name.clone(), load_hospital(ctx, name)?));
            }
            eval::decide(&eval::Facts {
                now_ms: now,
                requester: &requester,
                department: department.as_deref(),
                rules: &rules,
                hospitals: &held,
                tags: &tags,
                requester_pre_key: c.pre_public_key.as_deref(),
            })
        }
    };

    let record = AccessRecord {
        request_id,
        time_ms: now,
        patient: req.patient,
        requester,
        requester_role: c.role,
        requester_department: department,
        tags,
        hospitals,
        purpose: req.purpose,
        decision,
    };
    store(
        ctx,
        &keys::audit(&record.patient, now, &request_id),
        &record,
    )?;
    store(
        ctx,
        &keys::request(&request_id),
        &RequestIndex {
            patient: record.patient.clone(),
            time_ms: now,
        },
    )?;
    if record.decision.is_granted() {
        ctx.emit(EVENT_ACCESS_GRANTED, request_id.as_bytes())?;
    }
    Ok(record)
}

fn get_request(ctx: &mut dyn Ctx, req: GetRequest) -> Result<AccessRecord, ContractError> {
    let record = load_record(ctx, &req.request_id)?;
    let c = ctx.caller();
    let allowed = is(c, &record.patient, Role::Patient)
        || is(c, &record.requester, record.requester_role)
        || c.role == Role::Auditor
        || (c.role == Role::Node && record.hospitals.contains(&c.org));
    if !allowed {
        return Err(ContractError::Denied(
            "only the patient, the requester, an auditor or a node of a named hospital may read an access record"
                .into(),
        ));
    }
    Ok(record)
}

fn get_audit_trail(ctx: &mut dyn Ctx, req: GetAuditTrail) -> Result<AuditTrail, ContractError> {
    check_identity("patient", &req.patient)?;
    let c = ctx.caller();
    if !(is(c, &req.patient, Role::Patient) || c.role == Role::Auditor) {
        return Err(ContractError::Denied(
            "only the patient or an auditor may read an audit trail".into(),
        ));
    }
    let limit = req.limit.unwrap_or(MAX_AUDIT_PAGE).clamp(1, MAX_AUDIT_PAGE) as usize;
    let prefix = keys::audit_prefix(&req.patient);
    let start = match &req.after {
        None => prefix.clone(),
        Some(a) => {
            let mut k = keys::audit(&req.patient, a.time_ms, &a.request_id);
            k.push(0);
            k
        }
    };
    let rows = ctx.range(&start, &keys::prefix_end(&prefix), limit + 1)?;
    let more = rows.len() > limit;
    let records = rows
        .iter()
        .take(limit)
        .map(|(_, v)| parse::<AccessRecord>(v, "access record"))
        .collect::<Result<Vec<_>, _>>()?;
    let next = if more {
        records.last().map(|r| AuditCursor {
            time_ms: r.time_ms,
            request_id: r.request_id,
        })
    } else {
        None
    };
    Ok(AuditTrail { records, next })
}

// ---------------------------------------------------------------------------------------------
// Bundle keys and lineage
// ---------------------------------------------------------------------------------------------

fn deliver_bundle_key(
    ctx: &mut dyn Ctx,
    req: DeliverBundleKey,
) -> Result<BundleKey, ContractError> {
    check_name("hospital", &req.hospital)?;
    check_name("bundle_id", &req.bundle_id)?;
    if req.sealed_key.is_empty() || req.sealed_key.len() > MAX_SEALED_KEY_LEN {
        return Err(bad(format!(
            "sealed_key must be 1 to {MAX_SEALED_KEY_LEN} bytes"
        )));
    }
    let mut rule_ids = req.lineage.rule_ids;
    if rule_ids.is_empty() || rule_ids.len() > MAX_LINEAGE_RULES {
        return Err(bad(format!(
            "lineage must name 1 to {MAX_LINEAGE_RULES} rule ids"
        )));
    }
    rule_ids.sort();
    rule_ids.dedup();
    let contributing = normalize(
        "contributing hospital",
        req.lineage.contributing_hospitals,
        MAX_REQUEST_HOSPITALS,
        true,
        check_name,
    )?;

    let c = ctx.caller();
    if c.role != Role::Node || c.org != req.hospital {
        return Err(ContractError::Denied(
            "only a node of that hospital may deliver its bundle key".into(),
        ));
    }
    let node = identity_of(c);
    let record = load_record(ctx, &req.request_id)?;
    let (granted_rules, granted_hospitals): (&[Hash32], Vec<&str>) = match &record.decision {
        Decision::Denied { .. } => {
            return Err(ContractError::Refused(
                "the access request was denied".into(),
            ));
        }
        Decision::Granted {
            grants, rule_ids, ..
        } => (
            rule_ids,
            grants.iter().map(|g| g.hospital.as_str()).collect(),
        ),
    };
    if !granted_hospitals.contains(&req.hospital.as_str()) {
        return Err(ContractError::Refused(
            "the access request grants nothing from that hospital".into(),
        ));
    }
    if rule_ids.iter().any(|r| !granted_rules.contains(r)) {
        return Err(ContractError::Refused(
            "the lineage names a rule the grant did not use".into(),
        ));
    }
    if contributing
        .iter()
        .any(|h| !granted_hospitals.contains(&h.as_str()))
    {
        return Err(ContractError::Refused(
            "the lineage names a hospital the grant does not include".into(),
        ));
    }
    if !contributing.contains(&req.hospital) {
        return Err(ContractError::Refused(
            "the lineage must name the delivering hospital".into(),
        ));
    }
    let key = keys::bundle(&req.request_id, &req.hospital);
    if ctx.get(&key)?.is_some() {
        return Err(ContractError::Refused(
            "a bundle key was already delivered for this request and hospital".into(),
        ));
    }
    let delivered = BundleKey {
        request_id: req.request_id,
        hospital: req.hospital,
        bundle_id: req.bundle_id,
        sealed_key: req.sealed_key,
        bundle_hash: req.bundle_hash,
        lineage: PackageLineage {
            rule_ids,
            contributing_hospitals: contributing,
        },
        node,
        delivered_ms: ctx.tx_time_ms(),
    };
    store(ctx, &key, &delivered)?;
    let event = BundleKeyDeliveredEvent {
        request_id: delivered.request_id,
        hospital: delivered.hospital.clone(),
        bundle_id: delivered.bundle_id.clone(),
    };
    ctx.emit(EVENT_BUNDLE_KEY_DELIVERED, &respond(&event)?)?;
    Ok(delivered)
}

fn get_bundle_keys(ctx: &mut dyn Ctx, req: GetBundleKeys) -> Result<BundleKeys, ContractError> {
    let record = load_record(ctx, &req.request_id)?;
    let c = ctx.caller();
    if !(is(c, &record.requester, record.requester_role) || is(c, &record.patient, Role::Patient)) {
        return Err(ContractError::Denied(
            "only the requester or the patient may read the bundle keys of a request".into(),
        ));
    }
    let keys = load_all(ctx, &keys::bundle_prefix(&req.request_id), "bundle key")?;
    Ok(BundleKeys { keys })
}

fn get_lineage(ctx: &mut dyn Ctx, req: GetLineage) -> Result<Lineage, ContractError> {
    let record = load_record(ctx, &req.request_id)?;
    let c = ctx.caller();
    if !(is(c, &record.requester, record.requester_role)
        || is(c, &record.patient, Role::Patient)
        || c.role == Role::Auditor)
    {
        return Err(ContractError::Denied(
            "only the patient, the requester or an auditor may read a request's lineage".into(),
        ));
    }
    let (rule_ids, hospitals) = match &record.decision {
        Decision::Granted {
            grants, rule_ids, ..
        } => (
            rule_ids.clone(),
            grants.iter().map(|g| g.hospital.clone()).collect(),
        ),
        Decision::Denied { .. } => (Vec::new(), Vec::new()),
    };
    let delivered: Vec<BundleKey> =
        load_all(ctx, &keys::bundle_prefix(&req.request_id), "bundle key")?;
    Ok(Lineage {
        request_id: req.request_id,
        rule_ids,
        hospitals,
        packages: delivered
            .into_iter()
            .map(|k| PackageRecord {
                hospital: k.hospital,
                bundle_id: k.bundle_id,
                bundle_hash: k.bundle_hash,
                lineage: k.lineage,
            })
            .collect(),
    })
}

fn get_hospital(ctx: &mut dyn Ctx, req: GetHospital) -> Result<Hospital, ContractError> {
    check_name("hospital", &req.hospital)?;
    load_hospital(ctx, &req.hospital)?
        .ok_or_else(|| ContractError::NotFound("no hospital of that name".into()))
}

#[cfg(test)]
mod tests;
