//! Unit tests of the consent contract on an in-memory `Ctx`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sphr_crypto::hash::sha256;

use super::*;
use crate::KvPairs;
use crate::test_ctx::MemCtx;

const T0: u64 = 1_700_000_000_000;
const DAY: u64 = MS_PER_DAY;

/// `MemCtx` with a settable caller, a tx id that changes on every call, and a settable time.
struct TestCtx {
    mem: MemCtx,
    tx: u64,
    now: u64,
}

impl TestCtx {
    fn new() -> Self {
        TestCtx {
            mem: MemCtx::new(Role::Client),
            tx: 0,
            now: T0,
        }
    }

    fn who(&mut self, role: Role, org: &str, id: &str) -> &mut Self {
        self.mem.caller.role = role;
        self.mem.caller.org = org.into();
        self.mem.caller.id = id.into();
        self.mem.caller.pre_public_key = match role {
            Role::Patient | Role::Doctor | Role::Nurse | Role::Lab | Role::Pharmacist => {
                Some(format!("pre-key-of-{id}@{org}").into_bytes())
            }
            _ => None,
        };
        self
    }

    fn raw(&mut self, f: &str, args: &[Vec<u8>]) -> Result<Vec<u8>, ContractError> {
        self.tx += 1;
        ConsentContract.invoke(self, f, args)
    }

    fn try_call<Q: Serialize, R: DeserializeOwned>(
        &mut self,
        f: &str,
        req: &Q,
    ) -> Result<R, ContractError> {
        let out = self.raw(f, &[cbor::to_vec(req).unwrap()])?;
        Ok(cbor::from_slice(&out, usize::MAX).unwrap())
    }

    fn call<Q: Serialize, R: DeserializeOwned>(&mut self, f: &str, req: &Q) -> R {
        match self.try_call(f, req) {
            Ok(r) => r,
            Err(e) => panic!("{f} failed: {e}"),
        }
    }

    fn err<Q: Serialize>(&mut self, f: &str, req: &Q) -> ContractError {
        match self.try_call::<Q, serde::de::IgnoredAny>(f, req) {
            Ok(_) => panic!("{f} succeeded, expected an error"),
            Err(e) => e,
        }
    }

    fn snapshot(&self) -> (BTreeMap<Vec<u8>, Vec<u8>>, usize) {
        (self.mem.state.clone(), self.mem.events.len())
    }
}

impl Ctx for TestCtx {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError> {
        self.mem.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ContractError> {
        self.mem.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), ContractError> {
        self.mem.delete(key)
    }
    fn range(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<KvPairs, ContractError> {
        if start > end {
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
        self.mem.emit(name, payload)
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn alice() -> Identity {
    Identity::new("Patients", "alice")
}

fn pro(org: &str, id: &str) -> Grantee {
    Grantee::Professional {
        org: org.into(),
        id: id.into(),
    }
}

fn dept(org: &str, d: &str) -> Grantee {
    Grantee::Department {
        org: org.into(),
        department: d.into(),
    }
}

/// Two hospitals, their staff, and a registered patient alice.
///
/// - HospA: cardiology, radiology; law allows BASIC PERSONAL, CARDIO, LEG, OPERATION.
/// - HospB: oncology; law allows BASIC PERSONAL, GENETIC, LEG.
/// - Staff: who (doctor, HospA cardiology), nina (nurse, HospA cardiology),
///   rad (doctor, HospA radiology), onc (doctor, HospB oncology).
fn setup() -> TestCtx {
    let mut t = TestCtx::new();
    t.who(Role::Admin, "HospA", "admin");
    let _: Hospital = t.call(
        "registerHospital",
        &RegisterHospital {
            hospital: "HospA".into(),
            departments: s(&["radiology", "cardiology"]),
            allowed_tags: s(&["LEG", "OPERATION", "BASIC PERSONAL", "CARDIO"]),
            max_rule_days: 30,
        },
    );
    for (id, d) in [
        ("who", "cardiology"),
        ("nina", "cardiology"),
        ("rad", "radiology"),
    ] {
        let _: StaffMember = t.call(
            "registerStaff",
            &RegisterStaff {
                id: id.into(),
                department: d.into(),
            },
        );
    }
    t.who(Role::Admin, "HospB", "admin");
    let _: Hospital = t.call(
        "registerHospital",
        &RegisterHospital {
            hospital: "HospB".into(),
            departments: s(&["oncology"]),
            allowed_tags: s(&["LEG", "BASIC PERSONAL", "GENETIC"]),
            max_rule_days: 365,
        },
    );
    let _: StaffMember = t.call(
        "registerStaff",
        &RegisterStaff {
            id: "onc".into(),
            department: "oncology".into(),
        },
    );
    t.who(Role::Patient, "Patients", "alice");
    let _: Patient = t.call(
        "registerPatient",
        &RegisterPatient {
            patient_id: Some("alice".into()),
        },
    );
    t
}

/// Alice creates a rule valid for `[from, until)`.
fn rule(
    t: &mut TestCtx,
    grantee: Grantee,
    action: Action,
    tags: &[&str],
    from: u64,
    until: u64,
) -> Hash32 {
    t.who(Role::Patient, "Patients", "alice");
    let r: CreateRuleResponse = t.call(
        "createRule",
        &CreateRule {
            grantee,
            action,
            tags: s(tags),
            purpose: "follow-up of a leg operation".into(),
            valid_from_ms: from,
            valid_until_ms: until,
        },
    );
    r.rule_id
}

/// `role` `org`/`id` asks for `tags` of alice's record held at `hospitals`.
fn ask(
    t: &mut TestCtx,
    role: Role,
    org: &str,
    id: &str,
    tags: &[&str],
    hospitals: &[&str],
) -> AccessRecord {
    t.who(role, org, id);
    t.call(
        "requestAccess",
        &RequestAccess {
            patient: alice(),
            tags: s(tags),
            hospitals: s(hospitals),
            purpose: "second opinion".into(),
        },
    )
}

fn refusals(r: &AccessRecord) -> &[Refusal] {
    match &r.decision {
        Decision::Granted { refusals, .. } | Decision::Denied { refusals, .. } => refusals,
    }
}

fn granted_tags(r: &AccessRecord, hospital: &str) -> Vec<String> {
    r.decision
        .grant_of(hospital)
        .map(|g| g.tags.clone())
        .unwrap_or_default()
}

fn reason(r: &AccessRecord) -> String {
    match &r.decision {
        Decision::Denied { reason, .. } => reason.clone(),
        Decision::Granted { .. } => panic!("expected a denial, got {:?}", r.decision),
    }
}

fn trail(t: &mut TestCtx) -> Vec<AccessRecord> {
    t.who(Role::Auditor, "Audit", "aud");
    let a: AuditTrail = t.call(
        "getAuditTrail",
        &GetAuditTrail {
            patient: alice(),
            after: None,
            limit: None,
        },
    );
    a.records
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

#[test]
fn allow_grants_and_emits_the_request_id() {
    let mut t = setup();
    let r1 = rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG", "OPERATION"],
        T0,
        T0 + DAY,
    );
    let rec = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "who",
        &["LEG", "OPERATION"],
        &["HospA"],
    );
    assert_eq!(granted_tags(&rec, "HospA"), s(&["LEG", "OPERATION"]));
    let Decision::Granted {
        rule_ids,
        refusals,
        requester_pre_key,
        ..
    } = &rec.decision
    else {
        panic!("not granted: {:?}", rec.decision)
    };
    assert_eq!(rule_ids, &vec![r1]);
    assert!(refusals.is_empty());
    assert_eq!(
        requester_pre_key.as_deref().map(|k| k.as_slice()),
        Some(b"pre-key-of-who@HospA".as_slice())
    );
    assert_eq!(rec.requester_department.as_deref(), Some("cardiology"));
    let (name, payload) = t.mem.events.last().unwrap();
    assert_eq!(name, EVENT_ACCESS_GRANTED);
    assert_eq!(payload.as_slice(), rec.request_id.as_bytes());
    assert_eq!(trail(&mut t), vec![rec]);
}

#[test]
fn deny_overrides_allow() {
    let mut t = setup();
    rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG", "OPERATION"],
        T0,
        T0 + DAY,
    );
    let deny = rule(
        &mut t,
        dept("HospA", "cardiology"),
        Action::Deny,
        &["OPERATION"],
        T0,
        T0 + 1000 * DAY,
    );
    let rec = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "who",
        &["LEG", "OPERATION"],
        &["HospA"],
    );
    assert_eq!(granted_tags(&rec, "HospA"), s(&["LEG"]));
    assert_eq!(
        refusals(&rec),
        &[Refusal::RuleDenies {
            rule_id: deny,
            tag: "OPERATION".into()
        }]
    );
    // Only the denied tag asked: DENIED with the rule named.
    let rec = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "who",
        &["OPERATION"],
        &["HospA"],
    );
    assert_eq!(reason(&rec), format!("rule {deny} denies tag OPERATION"));
}

#[test]
fn expired_rule_denies() {
    let mut t = setup();
    let r = rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0,
        T0 + DAY,
    );
    t.now = T0 + DAY; // valid_until is exclusive
    let rec = ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["HospA"]);
    assert_eq!(reason(&rec), format!("rule {r} expired (tag LEG)"));
    assert_eq!(
        refusals(&rec),
        &[Refusal::RuleExpired {
            rule_id: r,
            tag: "LEG".into()
        }]
    );
    assert!(t.mem.events.is_empty(), "no accessGranted for a denial");
}

#[test]
fn expired_deny_counts_for_nothing() {
    let mut t = setup();
    rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0,
        T0 + 10 * DAY,
    );
    rule(
        &mut t,
        pro("HospA", "who"),
        Action::Deny,
        &["LEG"],
        T0,
        T0 + DAY,
    );
    assert!(
        !ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["HospA"])
            .decision
            .is_granted()
    );
    t.now = T0 + 2 * DAY;
    assert!(
        ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["HospA"])
            .decision
            .is_granted()
    );
}

#[test]
fn revoked_rule_denies() {
    let mut t = setup();
    let r = rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0,
        T0 + DAY,
    );
    assert!(
        ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["HospA"])
            .decision
            .is_granted()
    );
    t.now = T0 + 1000;
    t.who(Role::Patient, "Patients", "alice");
    let revoked: Rule = t.call("revokeRule", &RevokeRule { rule_id: r });
    assert_eq!(revoked.revoked_ms, Some(T0 + 1000));
    // Even a request whose (skewed) tx time is before the revocation gets nothing.
    t.now = T0 + 500;
    let rec = ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["HospA"]);
    assert_eq!(reason(&rec), format!("rule {r} was revoked (tag LEG)"));
    // Twice is refused; by anyone else it is not found.
    t.who(Role::Patient, "Patients", "alice");
    assert!(matches!(
        t.err("revokeRule", &RevokeRule { rule_id: r }),
        ContractError::Refused(_)
    ));
    t.who(Role::Patient, "Patients", "bob");
    let _: Patient = t.call("registerPatient", &RegisterPatient { patient_id: None });
    assert!(matches!(
        t.err("revokeRule", &RevokeRule { rule_id: r }),
        ContractError::NotFound(_)
    ));
}

#[test]
fn not_yet_valid_rule_denies() {
    let mut t = setup();
    let r = rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0 + DAY,
        T0 + 2 * DAY,
    );
    let rec = ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["HospA"]);
    assert_eq!(reason(&rec), format!("rule {r} is not valid yet (tag LEG)"));
    t.now = T0 + DAY;
    assert!(
        ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["HospA"])
            .decision
            .is_granted()
    );
}

#[test]
fn department_grant_covers_its_members_and_no_one_else() {
    let mut t = setup();
    let r = rule(
        &mut t,
        dept("HospA", "cardiology"),
        Action::Allow,
        &["CARDIO"],
        T0,
        T0 + DAY,
    );
    for (role, id) in [(Role::Doctor, "who"), (Role::Nurse, "nina")] {
        let rec = ask(&mut t, role, "HospA", id, &["CARDIO"], &["HospA"]);
        assert_eq!(granted_tags(&rec, "HospA"), s(&["CARDIO"]), "{id}");
        assert!(
            matches!(&rec.decision, Decision::Granted { rule_ids, .. } if *rule_ids == vec![r])
        );
    }
    // Another department of the same hospital, and a department of the same name elsewhere.
    let rec = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "rad",
        &["CARDIO"],
        &["HospA"],
    );
    assert_eq!(reason(&rec), "no rule grants tag CARDIO");
    // Moved out of the department: no longer covered.
    t.who(Role::Admin, "HospA", "admin");
    let _: StaffMember = t.call(
        "registerStaff",
        &RegisterStaff {
            id: "nina".into(),
            department: "radiology".into(),
        },
    );
    assert!(
        !ask(
            &mut t,
            Role::Nurse,
            "HospA",
            "nina",
            &["CARDIO"],
            &["HospA"]
        )
        .decision
        .is_granted()
    );
    // Removed from staff: not a registered professional any more.
    t.who(Role::Admin, "HospA", "admin");
    let _: Done = t.call("removeStaff", &RemoveStaff { id: "who".into() });
    let rec = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "who",
        &["CARDIO"],
        &["HospA"],
    );
    assert_eq!(reason(&rec), "requester is not a registered professional");
}

#[test]
fn department_dropped_by_the_hospital_no_longer_counts() {
    let mut t = setup();
    rule(
        &mut t,
        dept("HospA", "cardiology"),
        Action::Allow,
        &["CARDIO"],
        T0,
        T0 + DAY,
    );
    t.who(Role::Admin, "HospA", "admin");
    let _: Hospital = t.call(
        "registerHospital",
        &RegisterHospital {
            hospital: "HospA".into(),
            departments: s(&["radiology"]),
            allowed_tags: s(&["CARDIO"]),
            max_rule_days: 30,
        },
    );
    let rec = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "who",
        &["CARDIO"],
        &["HospA"],
    );
    assert_eq!(rec.requester_department, None);
    assert_eq!(reason(&rec), "no rule grants tag CARDIO");
}

#[test]
fn hospital_law_limits_grants() {
    let mut t = setup();
    let r = rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG", "GENETIC", "CARDIO"],
        T0,
        T0 + DAY,
    );
    let rec = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "who",
        &["LEG", "GENETIC", "CARDIO"],
        &["HospB", "HospA"],
    );
    assert_eq!(rec.hospitals, s(&["HospA", "HospB"]));
    assert_eq!(granted_tags(&rec, "HospA"), s(&["CARDIO", "LEG"]));
    assert_eq!(granted_tags(&rec, "HospB"), s(&["GENETIC", "LEG"]));
    assert_eq!(
        refusals(&rec),
        &[
            Refusal::LawForbids {
                hospital: "HospB".into(),
                tag: "CARDIO".into()
            },
            Refusal::LawForbids {
                hospital: "HospA".into(),
                tag: "GENETIC".into()
            },
        ]
    );
    assert!(matches!(&rec.decision, Decision::Granted { rule_ids, .. } if *rule_ids == vec![r]));
    // A tag no hospital asked may share: DENIED with the law named.
    let rec = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "who",
        &["GENETIC"],
        &["HospA"],
    );
    assert_eq!(
        reason(&rec),
        "hospital HospA's law does not allow tag GENETIC"
    );
    // A hospital that is not registered is refused as a whole.
    let rec = ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["Nowhere"]);
    assert_eq!(reason(&rec), "hospital Nowhere is not registered");
}

#[test]
fn law_change_applies_to_existing_rules() {
    let mut t = setup();
    rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0,
        T0 + DAY,
    );
    assert!(
        ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["HospA"])
            .decision
            .is_granted()
    );
    t.who(Role::Admin, "HospA", "admin");
    let _: Hospital = t.call(
        "registerHospital",
        &RegisterHospital {
            hospital: "HospA".into(),
            departments: s(&["cardiology", "radiology"]),
            allowed_tags: s(&["CARDIO"]),
            max_rule_days: 30,
        },
    );
    let rec = ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["HospA"]);
    assert_eq!(reason(&rec), "hospital HospA's law does not allow tag LEG");
}

#[test]
fn non_grantee_is_denied_with_its_reason_on_record() {
    let mut t = setup();
    rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0,
        T0 + DAY,
    );
    let before = t.mem.state.len();
    let rec = ask(&mut t, Role::Doctor, "HospB", "onc", &["LEG"], &["HospA"]);
    assert_eq!(reason(&rec), "no rule grants tag LEG");
    // The denial is a successful call that wrote the record and its index.
    assert_eq!(t.mem.state.len(), before + 2);
    assert!(t.mem.events.is_empty());
    let stored = trail(&mut t);
    assert_eq!(stored, vec![rec.clone()]);
    // ... and it can be read back by id.
    t.who(Role::Patient, "Patients", "alice");
    let back: AccessRecord = t.call(
        "getRequest",
        &GetRequest {
            request_id: rec.request_id,
        },
    );
    assert_eq!(back, rec);
}

#[test]
fn non_professionals_and_unknown_patients_are_denied_on_record() {
    let mut t = setup();
    rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0,
        T0 + DAY,
    );
    // A role that is not a professional one, even with the granted identity.
    let rec = ask(&mut t, Role::Client, "HospA", "who", &["LEG"], &["HospA"]);
    assert_eq!(reason(&rec), "requester is not a registered professional");
    assert_eq!(rec.requester_role, Role::Client);
    // A doctor their hospital never registered.
    let rec = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "stranger",
        &["LEG"],
        &["HospA"],
    );
    assert_eq!(reason(&rec), "requester is not a registered professional");
    // A patient nobody registered.
    t.who(Role::Doctor, "HospA", "who");
    let rec: AccessRecord = t.call(
        "requestAccess",
        &RequestAccess {
            patient: Identity::new("Patients", "ghost"),
            tags: s(&["LEG"]),
            hospitals: s(&["HospA"]),
            purpose: String::new(),
        },
    );
    assert_eq!(reason(&rec), "patient is not registered");
    assert_eq!(trail(&mut t).len(), 2);
}

#[test]
fn malformed_requests_are_errors_not_records() {
    let mut t = setup();
    t.who(Role::Doctor, "HospA", "who");
    let base = RequestAccess {
        patient: alice(),
        tags: s(&["LEG"]),
        hospitals: s(&["HospA"]),
        purpose: "x".into(),
    };
    let bad = vec![
        RequestAccess {
            tags: vec![],
            ..base.clone()
        },
        RequestAccess {
            hospitals: vec![],
            ..base.clone()
        },
        RequestAccess {
            purpose: "p".repeat(MAX_PURPOSE_LEN + 1),
            ..base.clone()
        },
        RequestAccess {
            tags: vec!["a\nb".into()],
            ..base.clone()
        },
        RequestAccess {
            tags: vec!["T".repeat(MAX_TAG_LEN + 1)],
            ..base.clone()
        },
        RequestAccess {
            hospitals: vec!["a@b".into()],
            ..base.clone()
        },
        RequestAccess {
            patient: Identity::new("", "alice"),
            ..base.clone()
        },
        RequestAccess {
            tags: (0..=MAX_REQUEST_TAGS).map(|i| i.to_string()).collect(),
            ..base.clone()
        },
    ];
    let before = t.snapshot();
    for b in &bad {
        let e = t.err("requestAccess", b);
        assert!(
            matches!(e, ContractError::BadArgs(_) | ContractError::Limit(_)),
            "{e}"
        );
        assert!(!e.to_string().contains("alice"), "{e}");
    }
    assert_eq!(t.snapshot(), before);
    // Garbage, several args, no args, an unknown function.
    for args in [vec![vec![0xff]], vec![vec![], vec![]], vec![]] {
        assert!(matches!(
            t.raw("requestAccess", &args),
            Err(ContractError::BadArgs(_))
        ));
    }
    assert!(matches!(
        t.raw("requestAccess", &[vec![0; MAX_ARG_BYTES + 1]]),
        Err(ContractError::Limit(_))
    ));
    assert!(matches!(
        t.raw("explode", &[]),
        Err(ContractError::UnknownFunction { .. })
    ));
    assert_eq!(t.snapshot(), before);
}

// ---------------------------------------------------------------------------------------------
// Registration and rules
// ---------------------------------------------------------------------------------------------

#[test]
fn register_hospital_is_for_its_own_admin_and_updates() {
    let mut t = setup();
    let req = RegisterHospital {
        hospital: "HospA".into(),
        departments: s(&["b", "a", "b"]),
        allowed_tags: s(&["Z", "Y"]),
        max_rule_days: 7,
    };
    let before = t.snapshot();
    t.who(Role::Doctor, "HospA", "who");
    assert!(matches!(
        t.err("registerHospital", &req),
        ContractError::Denied(_)
    ));
    t.who(Role::Admin, "HospB", "admin");
    assert!(matches!(
        t.err("registerHospital", &req),
        ContractError::Denied(_)
    ));
    t.who(Role::Admin, "HospA", "admin");
    for days in [0, MAX_RULE_DAYS_LIMIT + 1] {
        let e = t.err(
            "registerHospital",
            &RegisterHospital {
                max_rule_days: days,
                ..req.clone()
            },
        );
        assert!(matches!(e, ContractError::BadArgs(_)));
    }
    assert_eq!(t.snapshot(), before);
    t.now = T0 + 5;
    let h: Hospital = t.call("registerHospital", &req);
    assert_eq!(h.departments, s(&["a", "b"]));
    assert_eq!(h.allowed_tags, s(&["Y", "Z"]));
    assert_eq!((h.registered_ms, h.updated_ms), (T0, T0 + 5));
    t.who(Role::Client, "X", "y");
    let got: Hospital = t.call(
        "getHospital",
        &GetHospital {
            hospital: "HospA".into(),
        },
    );
    assert_eq!(got, h);
    assert!(matches!(
        t.err(
            "getHospital",
            &GetHospital {
                hospital: "HospZ".into()
            }
        ),
        ContractError::NotFound(_)
    ));
}

#[test]
fn staff_registration_rules() {
    let mut t = setup();
    let before = t.snapshot();
    t.who(Role::Doctor, "HospA", "who");
    let e = t.err(
        "registerStaff",
        &RegisterStaff {
            id: "x".into(),
            department: "cardiology".into(),
        },
    );
    assert!(matches!(e, ContractError::Denied(_)));
    t.who(Role::Admin, "HospA", "admin");
    let e = t.err(
        "registerStaff",
        &RegisterStaff {
            id: "x".into(),
            department: "oncology".into(),
        },
    );
    assert!(matches!(e, ContractError::Refused(_)));
    t.who(Role::Admin, "Unregistered", "admin");
    let e = t.err(
        "registerStaff",
        &RegisterStaff {
            id: "x".into(),
            department: "cardiology".into(),
        },
    );
    assert!(matches!(e, ContractError::Refused(_)));
    let e = t.err("removeStaff", &RemoveStaff { id: "who".into() });
    assert!(
        matches!(e, ContractError::NotFound(_)),
        "another org's admin cannot remove HospA staff"
    );
    assert_eq!(t.snapshot(), before);
}

#[test]
fn register_patient_rules() {
    let mut t = setup();
    let before = t.snapshot();
    t.who(Role::Doctor, "HospA", "who");
    assert!(matches!(
        t.err("registerPatient", &RegisterPatient { patient_id: None }),
        ContractError::Denied(_)
    ));
    t.who(Role::Patient, "Patients", "bob");
    let e = t.err(
        "registerPatient",
        &RegisterPatient {
            patient_id: Some("alice".into()),
        },
    );
    assert!(matches!(e, ContractError::BadArgs(_)));
    assert_eq!(t.snapshot(), before);
    let p: Patient = t.call("registerPatient", &RegisterPatient { patient_id: None });
    assert_eq!(p.patient, Identity::new("Patients", "bob"));
    assert_eq!(
        p.pre_public_key.as_deref().map(|k| k.as_slice()),
        Some(b"pre-key-of-bob@Patients".as_slice())
    );
    // Re-registering keeps the first registration time and takes the current key.
    t.now = T0 + 9;
    t.mem.caller.pre_public_key = Some(b"new".to_vec());
    let p: Patient = t.call("registerPatient", &RegisterPatient { patient_id: None });
    assert_eq!(p.registered_ms, T0);
    assert_eq!(
        p.pre_public_key.as_deref().map(|k| k.as_slice()),
        Some(b"new".as_slice())
    );
}

#[test]
fn create_rule_refusals_change_no_state() {
    let mut t = setup();
    let ok = CreateRule {
        grantee: pro("HospA", "who"),
        action: Action::Allow,
        tags: s(&["LEG"]),
        purpose: "p".into(),
        valid_from_ms: T0,
        valid_until_ms: T0 + DAY,
    };
    let before = t.snapshot();
    let cases: Vec<(Role, &str, CreateRule)> = vec![
        (Role::Doctor, "who", ok.clone()),
        (Role::Patient, "unregistered", ok.clone()),
        (
            Role::Patient,
            "alice",
            CreateRule {
                grantee: pro("Nowhere", "x"),
                ..ok.clone()
            },
        ),
        (
            Role::Patient,
            "alice",
            CreateRule {
                grantee: dept("HospA", "oncology"),
                ..ok.clone()
            },
        ),
        (
            Role::Patient,
            "alice",
            CreateRule {
                valid_until_ms: T0,
                ..ok.clone()
            },
        ),
        (
            Role::Patient,
            "alice",
            CreateRule {
                valid_from_ms: T0 - 2 * DAY,
                valid_until_ms: T0 - DAY,
                ..ok.clone()
            },
        ),
        (
            Role::Patient,
            "alice",
            CreateRule {
                valid_until_ms: T0 + 30 * DAY + 1,
                ..ok.clone()
            },
        ),
        (
            Role::Patient,
            "alice",
            CreateRule {
                tags: vec![],
                ..ok.clone()
            },
        ),
        (
            Role::Patient,
            "alice",
            CreateRule {
                tags: vec![String::new()],
                ..ok.clone()
            },
        ),
        (
            Role::Patient,
            "alice",
            CreateRule {
                purpose: "p".repeat(MAX_PURPOSE_LEN + 1),
                ..ok.clone()
            },
        ),
        (
            Role::Patient,
            "alice",
            CreateRule {
                grantee: pro("HospA", "a\u{0}b"),
                ..ok.clone()
            },
        ),
    ];
    for (i, (role, id, req)) in cases.iter().enumerate() {
        t.who(*role, "Patients", id);
        let e = t.err("createRule", req);
        assert!(!e.to_string().contains("alice"), "case {i}: {e}");
        assert_eq!(t.snapshot(), before, "case {i} changed state");
    }
    // Exactly the maximum is fine; a DENY may last longer than the maximum.
    t.who(Role::Patient, "Patients", "alice");
    let _: CreateRuleResponse = t.call(
        "createRule",
        &CreateRule {
            valid_until_ms: T0 + 30 * DAY,
            ..ok.clone()
        },
    );
    let _: CreateRuleResponse = t.call(
        "createRule",
        &CreateRule {
            action: Action::Deny,
            valid_until_ms: T0 + 3000 * DAY,
            ..ok.clone()
        },
    );
}

#[test]
fn rules_are_listed_and_limited_tags_reported() {
    let mut t = setup();
    t.who(Role::Patient, "Patients", "alice");
    let r: CreateRuleResponse = t.call(
        "createRule",
        &CreateRule {
            grantee: pro("HospA", "who"),
            action: Action::Allow,
            tags: s(&["LEG", "GENETIC", "LEG"]),
            purpose: "p".into(),
            valid_from_ms: T0,
            valid_until_ms: T0 + DAY,
        },
    );
    assert_eq!(r.limited_tags, s(&["GENETIC"]));
    let mine: RuleList = t.call("listRules", &ListRules { patient: None });
    assert_eq!(mine.rules.len(), 1);
    assert_eq!(mine.rules[0].rule_id, r.rule_id);
    assert_eq!(mine.rules[0].tags, s(&["GENETIC", "LEG"]));
    assert_eq!(mine.rules[0].grantor, alice());
    t.who(Role::Auditor, "Audit", "aud");
    let theirs: RuleList = t.call(
        "listRules",
        &ListRules {
            patient: Some(alice()),
        },
    );
    assert_eq!(theirs, mine);
    t.who(Role::Doctor, "HospA", "who");
    assert!(matches!(
        t.err(
            "listRules",
            &ListRules {
                patient: Some(alice())
            }
        ),
        ContractError::Denied(_)
    ));
}

#[test]
fn rule_ids_are_deterministic() {
    let mut a = setup();
    let mut b = setup();
    let ra = rule(
        &mut a,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0,
        T0 + DAY,
    );
    let rb = rule(
        &mut b,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0,
        T0 + DAY,
    );
    assert_eq!(ra, rb);
    assert_eq!(ra, rule_id(&a.tx_id()));
    assert_eq!(a.mem.state, b.mem.state);
}

#[test]
fn full_rule_set_prunes_dead_rules_or_refuses() {
    let mut t = setup();
    for i in 0..MAX_RULES_PER_PATIENT as u64 {
        rule(
            &mut t,
            pro("HospA", "who"),
            Action::Allow,
            &["LEG"],
            T0,
            T0 + 1 + i,
        );
    }
    // All live: refused, nothing changes.
    let before = t.snapshot();
    t.who(Role::Patient, "Patients", "alice");
    let req = CreateRule {
        grantee: pro("HospA", "who"),
        action: Action::Allow,
        tags: s(&["LEG"]),
        purpose: String::new(),
        valid_from_ms: T0,
        valid_until_ms: T0 + DAY,
    };
    assert!(matches!(
        t.err("createRule", &req),
        ContractError::Refused(_)
    ));
    assert_eq!(t.snapshot(), before);
    // Ten have expired: they are pruned to make room.
    t.now = T0 + 10;
    let _: CreateRuleResponse = t.call("createRule", &req);
    let list: RuleList = t.call("listRules", &ListRules { patient: None });
    assert_eq!(list.rules.len(), MAX_RULES_PER_PATIENT - 10 + 1);
    assert!(list.rules.iter().all(|r| r.valid_until_ms > T0 + 10));
}

// ---------------------------------------------------------------------------------------------
// Audit trail
// ---------------------------------------------------------------------------------------------

#[test]
fn audit_trail_is_for_the_patient_and_auditors_in_time_order() {
    let mut t = setup();
    rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0,
        T0 + DAY,
    );
    let mut expected = Vec::new();
    for i in 0..5u64 {
        t.now = T0 + 100 - i * 10; // requests arrive with decreasing times
        expected.push(ask(
            &mut t,
            Role::Doctor,
            "HospA",
            "who",
            &["LEG"],
            &["HospA"],
        ));
    }
    expected.reverse();
    let req = GetAuditTrail {
        patient: alice(),
        after: None,
        limit: None,
    };
    t.who(Role::Patient, "Patients", "alice");
    let own: AuditTrail = t.call("getAuditTrail", &req);
    assert_eq!(own.records, expected);
    assert_eq!(own.next, None);
    t.who(Role::Auditor, "Regulator", "aud");
    let audited: AuditTrail = t.call("getAuditTrail", &req);
    assert_eq!(audited, own);
    // Pages of two.
    let mut got = Vec::new();
    let mut after = None;
    loop {
        let page: AuditTrail = t.call(
            "getAuditTrail",
            &GetAuditTrail {
                after,
                limit: Some(2),
                ..req.clone()
            },
        );
        assert!(page.records.len() <= 2);
        got.extend(page.records);
        match page.next {
            None => break,
            Some(n) => after = Some(n),
        }
    }
    assert_eq!(got, expected);
    // Nobody else.
    let before = t.snapshot();
    for (role, org, id) in [
        (Role::Doctor, "HospA", "who"),
        (Role::Patient, "Patients", "bob"),
        (Role::Patient, "Other", "alice"),
        (Role::Admin, "HospA", "admin"),
        (Role::Node, "HospA", "node0"),
    ] {
        t.who(role, org, id);
        assert!(
            matches!(t.err("getAuditTrail", &req), ContractError::Denied(_)),
            "{id}@{org}"
        );
    }
    assert_eq!(t.snapshot(), before);
    assert!(ConsentContract.is_query("getAuditTrail"));
    assert!(!ConsentContract.is_query("requestAccess"));
}

#[test]
fn audit_trails_of_patients_are_apart() {
    let mut t = setup();
    t.who(Role::Patient, "Patients", "al");
    let _: Patient = t.call("registerPatient", &RegisterPatient { patient_id: None });
    ask(&mut t, Role::Doctor, "HospA", "who", &["LEG"], &["HospA"]);
    t.who(Role::Patient, "Patients", "al");
    let al: AuditTrail = t.call(
        "getAuditTrail",
        &GetAuditTrail {
            patient: Identity::new("Patients", "al"),
            after: None,
            limit: None,
        },
    );
    assert!(al.records.is_empty());
    assert_eq!(trail(&mut t).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Bundle keys and lineage
// ---------------------------------------------------------------------------------------------

fn delivery(request_id: Hash32, hospital: &str, rule_ids: Vec<Hash32>) -> DeliverBundleKey {
    DeliverBundleKey {
        request_id,
        hospital: hospital.into(),
        bundle_id: format!("bundle-{hospital}"),
        sealed_key: ByteBuf::from(vec![7; 80]),
        bundle_hash: sha256(hospital.as_bytes()),
        lineage: PackageLineage {
            rule_ids,
            contributing_hospitals: vec![hospital.into()],
        },
    }
}

#[test]
fn deliver_bundle_key_only_by_the_right_node_for_a_grant_once() {
    let mut t = setup();
    let r = rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG", "CARDIO"],
        T0,
        T0 + DAY,
    );
    // CARDIO only at HospA (HospB's law forbids it).
    let granted = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "who",
        &["CARDIO"],
        &["HospA", "HospB"],
    );
    assert_eq!(granted.decision.grant_of("HospB"), None);
    let denied = ask(&mut t, Role::Doctor, "HospB", "onc", &["LEG"], &["HospA"]);
    let ok = delivery(granted.request_id, "HospA", vec![r]);
    let before = t.snapshot();
    let cases: Vec<(Role, &str, DeliverBundleKey, &str)> = vec![
        (Role::Doctor, "HospA", ok.clone(), "not a node"),
        (Role::Admin, "HospA", ok.clone(), "not a node"),
        (Role::Node, "HospB", ok.clone(), "node of another hospital"),
        (
            Role::Node,
            "HospB",
            delivery(granted.request_id, "HospB", vec![r]),
            "hospital not granted",
        ),
        (
            Role::Node,
            "HospA",
            delivery(denied.request_id, "HospA", vec![r]),
            "denied request",
        ),
        (
            Role::Node,
            "HospA",
            delivery(sha256(b"nope"), "HospA", vec![r]),
            "unknown request",
        ),
        (
            Role::Node,
            "HospA",
            delivery(granted.request_id, "HospA", vec![sha256(b"x")]),
            "rule not used",
        ),
        (
            Role::Node,
            "HospA",
            delivery(granted.request_id, "HospA", vec![]),
            "no rule",
        ),
        (
            Role::Node,
            "HospA",
            DeliverBundleKey {
                lineage: PackageLineage {
                    rule_ids: vec![r],
                    contributing_hospitals: s(&["HospA", "HospB"]),
                },
                ..ok.clone()
            },
            "hospital not in grant",
        ),
        (
            Role::Node,
            "HospA",
            DeliverBundleKey {
                sealed_key: ByteBuf::new(),
                ..ok.clone()
            },
            "empty key",
        ),
        (
            Role::Node,
            "HospA",
            DeliverBundleKey {
                sealed_key: ByteBuf::from(vec![0; MAX_SEALED_KEY_LEN + 1]),
                ..ok.clone()
            },
            "key too long",
        ),
    ];
    for (role, org, req, why) in &cases {
        t.who(*role, org, "node0");
        let e = t.err("deliverBundleKey", req);
        assert!(!matches!(e, ContractError::State(_)), "{why}: {e}");
        assert_eq!(t.snapshot(), before, "{why} changed state");
    }
    t.who(Role::Node, "HospA", "node0");
    t.now = T0 + 7;
    let k: BundleKey = t.call("deliverBundleKey", &ok);
    assert_eq!(k.node, Identity::new("HospA", "node0"));
    assert_eq!(k.delivered_ms, T0 + 7);
    let (name, payload) = t.mem.events.last().unwrap().clone();
    assert_eq!(name, EVENT_BUNDLE_KEY_DELIVERED);
    let ev: BundleKeyDeliveredEvent = cbor::from_slice(&payload, 1024).unwrap();
    assert_eq!(ev.request_id, granted.request_id);
    assert_eq!(ev.hospital, "HospA");
    // Once.
    let before = t.snapshot();
    t.who(Role::Node, "HospA", "node1");
    assert!(matches!(
        t.err("deliverBundleKey", &ok),
        ContractError::Refused(_)
    ));
    assert_eq!(t.snapshot(), before);
    // Read by the requester and the patient only.
    let get = GetBundleKeys {
        request_id: granted.request_id,
    };
    t.who(Role::Doctor, "HospA", "who");
    let keys: BundleKeys = t.call("getBundleKeys", &get);
    assert_eq!(keys.keys, vec![k.clone()]);
    t.who(Role::Patient, "Patients", "alice");
    let keys2: BundleKeys = t.call("getBundleKeys", &get);
    assert_eq!(keys2, keys);
    for (role, org, id) in [
        (Role::Doctor, "HospB", "onc"),
        (Role::Nurse, "HospA", "who"),
        (Role::Auditor, "Audit", "aud"),
        (Role::Node, "HospA", "node0"),
    ] {
        t.who(role, org, id);
        assert!(
            matches!(t.err("getBundleKeys", &get), ContractError::Denied(_)),
            "{id}@{org}"
        );
    }
}

#[test]
fn two_hospitals_deliver_and_the_lineage_names_both() {
    let mut t = setup();
    let r1 = rule(
        &mut t,
        pro("HospA", "who"),
        Action::Allow,
        &["LEG"],
        T0,
        T0 + DAY,
    );
    let r2 = rule(
        &mut t,
        dept("HospA", "cardiology"),
        Action::Allow,
        &["LEG", "BASIC PERSONAL"],
        T0,
        T0 + DAY,
    );
    let rec = ask(
        &mut t,
        Role::Doctor,
        "HospA",
        "who",
        &["LEG", "BASIC PERSONAL"],
        &["HospA", "HospB"],
    );
    let Decision::Granted {
        rule_ids, grants, ..
    } = &rec.decision
    else {
        panic!("denied: {:?}", rec.decision)
    };
    let mut both = vec![r1, r2];
    both.sort();
    assert_eq!(rule_ids, &both);
    assert_eq!(grants.len(), 2);
    t.who(Role::Node, "HospA", "node0");
    let _: BundleKey = t.call(
        "deliverBundleKey",
        &delivery(rec.request_id, "HospA", vec![r1, r2]),
    );
    t.who(Role::Node, "HospB", "node0");
    let _: BundleKey = t.call(
        "deliverBundleKey",
        &delivery(rec.request_id, "HospB", vec![r2]),
    );
    t.who(Role::Auditor, "Audit", "aud");
    let l: Lineage = t.call(
        "getLineage",
        &GetLineage {
            request_id: rec.request_id,
        },
    );
    assert_eq!(l.rule_ids, both);
    assert_eq!(l.hospitals, s(&["HospA", "HospB"]));
    let from: Vec<&str> = l.packages.iter().map(|p| p.hospital.as_str()).collect();
    assert_eq!(from, ["HospA", "HospB"]);
    assert_eq!(l.packages[1].lineage.rule_ids, vec![r2]);
    assert_eq!(l.packages[0].bundle_hash, sha256(b"HospA"));
    t.who(Role::Doctor, "HospB", "onc");
    assert!(matches!(
        t.err(
            "getLineage",
            &GetLineage {
                request_id: rec.request_id
            }
        ),
        ContractError::Denied(_)
    ));
    // The hospital nodes may read the record to package it; others may not.
    t.who(Role::Node, "HospB", "node0");
    let _: AccessRecord = t.call(
        "getRequest",
        &GetRequest {
            request_id: rec.request_id,
        },
    );
    t.who(Role::Node, "HospC", "node0");
    assert!(matches!(
        t.err(
            "getRequest",
            &GetRequest {
                request_id: rec.request_id
            }
        ),
        ContractError::Denied(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// Encodings and robustness
// ---------------------------------------------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 ._-]{1,12}"
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn hash() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn bytes() -> impl Strategy<Value = ByteBuf> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(ByteBuf::from)
}

fn names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(name(), 0..4)
}

fn identity() -> impl Strategy<Value = Identity> {
    (name(), name()).prop_map(|(org, id)| Identity { org, id })
}

fn role() -> impl Strategy<Value = Role> {
    proptest::sample::select(Role::ALL.to_vec())
}

fn grantee() -> impl Strategy<Value = Grantee> {
    prop_oneof![
        (name(), name()).prop_map(|(org, id)| Grantee::Professional { org, id }),
        (name(), name()).prop_map(|(org, department)| Grantee::Department { org, department }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![Just(Action::Allow), Just(Action::Deny)]
}

fn refusal() -> impl Strategy<Value = Refusal> {
    prop_oneof![
        Just(Refusal::RequesterNotProfessional),
        Just(Refusal::PatientNotRegistered),
        Just(Refusal::TooManyRules),
        name().prop_map(|hospital| Refusal::UnknownHospital { hospital }),
        name().prop_map(|tag| Refusal::NoRule { tag }),
        (hash(), name()).prop_map(|(rule_id, tag)| Refusal::RuleDenies { rule_id, tag }),
        (hash(), name()).prop_map(|(rule_id, tag)| Refusal::RuleExpired { rule_id, tag }),
        (hash(), name()).prop_map(|(rule_id, tag)| Refusal::RuleNotYetValid { rule_id, tag }),
        (hash(), name()).prop_map(|(rule_id, tag)| Refusal::RuleRevoked { rule_id, tag }),
        (name(), name()).prop_map(|(hospital, tag)| Refusal::LawForbids { hospital, tag }),
    ]
}

fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![
        (
            proptest::collection::vec(
                (name(), names()).prop_map(|(hospital, tags)| HospitalGrant { hospital, tags }),
                0..3
            ),
            proptest::collection::vec(hash(), 0..3),
            proptest::collection::vec(refusal(), 0..3),
            proptest::option::of(bytes()),
        )
            .prop_map(|(grants, rule_ids, refusals, requester_pre_key)| {
                Decision::Granted {
                    grants,
                    rule_ids,
                    refusals,
                    requester_pre_key,
                }
            }),
        (text(), proptest::collection::vec(refusal(), 0..3))
            .prop_map(|(reason, refusals)| Decision::Denied { reason, refusals }),
    ]
}

fn record() -> impl Strategy<Value = AccessRecord> {
    (
        hash(),
        any::<u64>(),
        identity(),
        identity(),
        role(),
        proptest::option::of(name()),
        names(),
        names(),
        text(),
        decision(),
    )
        .prop_map(
            |(
                request_id,
                time_ms,
                patient,
                requester,
                requester_role,
                requester_department,
                tags,
                hospitals,
                purpose,
                decision,
            )| {
                AccessRecord {
                    request_id,
                    time_ms,
                    patient,
                    requester,
                    requester_role,
                    requester_department,
                    tags,
                    hospitals,
                    purpose,
                    decision,
                }
            },
        )
}

fn rule_value() -> impl Strategy<Value = Rule> {
    (
        hash(),
        identity(),
        grantee(),
        action(),
        names(),
        text(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<Option<u64>>(),
    )
        .prop_map(
            |(
                rule_id,
                grantor,
                grantee,
                action,
                tags,
                purpose,
                valid_from_ms,
                valid_until_ms,
                created_ms,
                revoked_ms,
            )| Rule {
                rule_id,
                grantor,
                grantee,
                action,
                tags,
                purpose,
                valid_from_ms,
                valid_until_ms,
                created_ms,
                revoked_ms,
            },
        )
}

fn lineage() -> impl Strategy<Value = PackageLineage> {
    (proptest::collection::vec(hash(), 0..3), names()).prop_map(
        |(rule_ids, contributing_hospitals)| PackageLineage {
            rule_ids,
            contributing_hospitals,
        },
    )
}

fn deliver() -> impl Strategy<Value = DeliverBundleKey> {
    (hash(), name(), name(), bytes(), hash(), lineage()).prop_map(
        |(request_id, hospital, bundle_id, sealed_key, bundle_hash, lineage)| DeliverBundleKey {
            request_id,
            hospital,
            bundle_id,
            sealed_key,
            bundle_hash,
            lineage,
        },
    )
}

fn bundle_key() -> impl Strategy<Value = BundleKey> {
    (deliver(), identity(), any::<u64>()).prop_map(|(d, node, delivered_ms)| BundleKey {
        request_id: d.request_id,
        hospital: d.hospital,
        bundle_id: d.bundle_id,
        sealed_key: d.sealed_key,
        bundle_hash: d.bundle_hash,
        lineage: d.lineage,
        node,
        delivered_ms,
    })
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = cbor::to_vec(v).unwrap();
    assert_eq!(cbor::to_vec(v).unwrap(), bytes, "deterministic");
    let back: T = cbor::from_slice(&bytes, usize::MAX).unwrap();
    assert_eq!(&back, v);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn requests_round_trip(
        hospital in name(), deps in names(), tags in names(), days in any::<u32>(),
        id in name(), pid in proptest::option::of(name()), g in grantee(), a in action(),
        purpose in text(), from in any::<u64>(), until in any::<u64>(), h in hash(),
        p in identity(), op in proptest::option::of(identity()), limit in any::<Option<u32>>(),
        d in deliver(),
    ) {
        round_trip(&RegisterHospital { hospital: hospital.clone(), departments: deps.clone(), allowed_tags: tags.clone(), max_rule_days: days });
        round_trip(&RegisterStaff { id: id.clone(), department: hospital.clone() });
        round_trip(&RemoveStaff { id: id.clone() });
        round_trip(&RegisterPatient { patient_id: pid });
        round_trip(&CreateRule { grantee: g, action: a, tags: tags.clone(), purpose: purpose.clone(), valid_from_ms: from, valid_until_ms: until });
        round_trip(&RevokeRule { rule_id: h });
        round_trip(&ListRules { patient: op });
        round_trip(&RequestAccess { patient: p.clone(), tags, hospitals: deps, purpose });
        round_trip(&GetRequest { request_id: h });
        round_trip(&GetAuditTrail { patient: p, after: Some(AuditCursor { time_ms: from, request_id: h }), limit });
        round_trip(&d);
        round_trip(&GetBundleKeys { request_id: h });
        round_trip(&GetLineage { request_id: h });
        round_trip(&GetHospital { hospital });
    }

    #[test]
    fn responses_and_records_round_trip(
        rec in record(), r in rule_value(), k in bundle_key(), p in identity(), key in proptest::option::of(bytes()),
        t in any::<u64>(), t2 in any::<u64>(), deps in names(), tags in names(), days in any::<u32>(),
        h in hash(), limited in names(), l in lineage(), name in name(),
    ) {
        round_trip(&Hospital { hospital: name.clone(), departments: deps.clone(), allowed_tags: tags.clone(), max_rule_days: days, registered_ms: t, updated_ms: t2 });
        round_trip(&StaffMember { member: p.clone(), department: name.clone(), updated_ms: t });
        round_trip(&Patient { patient: p.clone(), pre_public_key: key, registered_ms: t });
        round_trip(&CreateRuleResponse { rule_id: h, limited_tags: limited });
        round_trip(&r);
        round_trip(&RuleList { rules: vec![r.clone(), r] });
        round_trip(&rec);
        round_trip(&AuditTrail { records: vec![rec.clone()], next: Some(AuditCursor { time_ms: t, request_id: h }) });
        round_trip(&k);
        round_trip(&BundleKeys { keys: vec![k.clone()] });
        round_trip(&Lineage { request_id: h, rule_ids: vec![h], hospitals: deps, packages: vec![PackageRecord { hospital: name.clone(), bundle_id: name.clone(), bundle_hash: h, lineage: l }] });
        round_trip(&BundleKeyDeliveredEvent { request_id: h, hospital: name.clone(), bundle_id: name });
        round_trip(&RequestIndex { patient: p, time_ms: t });
        round_trip(&Done {});
    }

    #[test]
    fn arbitrary_argument_bytes_never_panic(
        f in proptest::sample::select(FUNCTIONS.to_vec()),
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..3),
        r in role(),
    ) {
        let mut t = setup();
        t.who(r, "HospA", "who");
        let _ = t.raw(f, &args);
    }

    #[test]
    fn arbitrary_requests_never_panic(
        r in role(), org in prop_oneof![Just("HospA".to_string()), Just("Patients".to_string()), name()],
        id in prop_oneof![Just("alice".to_string()), Just("who".to_string()), name()],
        g in grantee(), a in action(), tags in names(), hospitals in names(), from in any::<u64>(),
        until in any::<u64>(), days in any::<u32>(), h in hash(), d in deliver(), now in any::<u64>(),
        limit in any::<Option<u32>>(),
    ) {
        let mut t = setup();
        rule(&mut t, pro("HospA", "who"), Action::Allow, &["LEG"], T0, T0 + DAY);
        t.now = now;
        t.who(r, &org, &id);
        let p = Identity::new(org.clone(), id.clone());
        let calls: Vec<(&str, Vec<u8>)> = vec![
            ("registerHospital", cbor::to_vec(&RegisterHospital { hospital: org.clone(), departments: hospitals.clone(), allowed_tags: tags.clone(), max_rule_days: days }).unwrap()),
            ("registerStaff", cbor::to_vec(&RegisterStaff { id: id.clone(), department: "cardiology".into() }).unwrap()),
            ("registerPatient", cbor::to_vec(&RegisterPatient { patient_id: None }).unwrap()),
            ("createRule", cbor::to_vec(&CreateRule { grantee: g, action: a, tags: tags.clone(), purpose: String::new(), valid_from_ms: from, valid_until_ms: until }).unwrap()),
            ("revokeRule", cbor::to_vec(&RevokeRule { rule_id: h }).unwrap()),
            ("requestAccess", cbor::to_vec(&RequestAccess { patient: alice(), tags, hospitals, purpose: String::new() }).unwrap()),
            ("getAuditTrail", cbor::to_vec(&GetAuditTrail { patient: p, after: Some(AuditCursor { time_ms: from, request_id: h }), limit }).unwrap()),
            ("deliverBundleKey", cbor::to_vec(&d).unwrap()),
            ("getBundleKeys", cbor::to_vec(&GetBundleKeys { request_id: h }).unwrap()),
            ("getLineage", cbor::to_vec(&GetLineage { request_id: h }).unwrap()),
            ("listRules", cbor::to_vec(&ListRules { patient: None }).unwrap()),
            ("removeStaff", cbor::to_vec(&RemoveStaff { id }).unwrap()),
        ];
        for (f, arg) in calls {
            let before = t.snapshot();
            match t.raw(f, &[arg]) {
                Ok(_) => {}
                Err(e) => {
                    prop_assert!(!matches!(e, ContractError::State(_)), "{f}: {e}");
                    prop_assert_eq!(t.snapshot(), before, "{} failed and changed state", f);
                }
            }
        }
    }
}
