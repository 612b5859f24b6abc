//! HL7 FHIR R4 export: a patient's consent rules as `Consent`, their access records as
//! `AuditEvent`, and a decrypted SPHR bundle as a `Bundle` of type `collection`.
//!
//! ```text
//!  consent.listRules     -> Rule          -> Consent     (id = rule id, hex)
//!  consent.getAuditTrail -> AccessRecord  -> AuditEvent  (id = request id, hex)
//!  sphr_vault::Bundle    -> SatRow        -> Patient | Encounter | Condition | Procedure | Basic
//!                                            (id = UUID-v5-like from SHA-256 of patient hub key,
//!                                             source, satellite, row parent, row values)
//! ```
//!
//! Everything is plain `serde_json` built here (no FHIR library), pretty printed by the
//! callers. Ids are derived from the records alone, so the same record always exports to the
//! same id. Times are UTC instants (`2024-05-01T10:00:00.000Z`). The mapping, element by
//! element, is in `docs/fhir.md`.
//!
//! The exports carry patient data (they are the patient's, or an auditor's, own view): they go
//! to the caller only, never into logs or metrics.

use serde_json::{Map, Value as Json, json};
use sphr_contracts::consent::types::{AccessRecord, Action, Decision, Grantee, Refusal, Rule};
use sphr_crypto::hash::{Hash32, sha256_parts};
use sphr_vault::{Bundle, HubKind, SatRow, SatelliteRows};
use sphr_vault::{Field, Value};

/// Identifier system of certificate identities (`subject@org`).
pub const SYSTEM_IDENTITY: &str = "urn:sphr:identity";
/// Code system of organisation names (a bundle's hospital).
pub const SYSTEM_ORG: &str = "urn:sphr:org";
/// Identifier system of a hospital department (`department@org`).
pub const SYSTEM_DEPARTMENT: &str = "urn:sphr:department";
/// Code system of sphr tags (data classes).
pub const SYSTEM_TAG: &str = "urn:sphr:tag";
/// Identifier system of consent rules (rule id, hex).
pub const SYSTEM_RULE: &str = "urn:sphr:consent-rule";
/// Identifier system of access requests (request id, hex).
pub const SYSTEM_REQUEST: &str = "urn:sphr:access-request";
/// Identifier system of a patient's Person hub key in a vault (hex).
pub const SYSTEM_PERSON_HUB: &str = "urn:sphr:person-hub";
/// Identifier system of SPHR bundles (bundle id, hex).
pub const SYSTEM_BUNDLE: &str = "urn:sphr:bundle";
/// Code system of vault satellites (`sat_<hub>_<major>_<minor>`).
pub const SYSTEM_SATELLITE: &str = "urn:sphr:satellite";
/// Code system of vault sources.
pub const SYSTEM_SOURCE: &str = "urn:sphr:source";
/// Code system of certificate roles.
pub const SYSTEM_ROLE: &str = "urn:sphr:role";
/// Code system of free-text purposes (the text is the display).
pub const SYSTEM_PURPOSE: &str = "urn:sphr:purpose";
/// Code system of OPCS-4 operation codes as sphr exports them (swap for the receiving system's
/// OPCS-4 URI if it has one).
pub const SYSTEM_OPCS4: &str = "urn:sphr:code:opcs-4";
/// ICD-10 (HL7's canonical URI).
pub const SYSTEM_ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
/// Extension holding one vault column that has no FHIR element of its own.
pub const EXT_COLUMN: &str = "urn:sphr:fhir:column";
/// Extension holding when a consent rule was revoked.
pub const EXT_REVOKED: &str = "urn:sphr:fhir:revoked";
/// Extension holding the consent rule's stated purpose as free text.
pub const EXT_PURPOSE_TEXT: &str = "urn:sphr:fhir:purpose-text";

/// Domain of the SHA-256 behind generated UUIDs.
const UUID_DOMAIN: &[u8] = b"sphr-fhir/uuid/v1";

/// A UUID (version 5 layout, SHA-256 instead of SHA-1) over `parts`: the same parts give the
/// same id.
pub fn stable_uuid(parts: &[&[u8]]) -> String {
    let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    all.push(UUID_DOMAIN);
    all.extend_from_slice(parts);
    let h = sha256_parts(&all);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.0[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// Unix milliseconds as a FHIR `instant` in UTC, e.g. `2024-05-01T10:00:00.000Z`.
pub fn instant(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn identity_ref(kind: &str, org: &str, id: &str) -> Json {
    json!({
        "type": kind,
        "identifier": { "system": SYSTEM_IDENTITY, "value": format!("{id}@{org}") },
        "display": format!("{id}@{org}"),
    })
}

fn tag_codings(tags: &[String]) -> Vec<Json> {
    tags.iter()
        .map(|t| json!({ "system": SYSTEM_TAG, "code": t }))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Consent
// ---------------------------------------------------------------------------------------------

/// The FHIR status of a rule at `now_ms`: `inactive` once revoked or expired, else `active`
/// (a rule not valid yet is active; its period says from when).
pub fn consent_status(rule: &Rule, now_ms: u64) -> &'static str {
    if rule.revoked_ms.is_some() || now_ms >= rule.valid_until_ms {
        "inactive"
    } else {
        "active"
    }
}

/// One consent rule as a FHIR R4 `Consent`.
pub fn consent(rule: &Rule, now_ms: u64) -> Json {
    let id = rule.rule_id.to_hex();
    let (provision_type, policy) = match rule.action {
        Action::Allow => ("permit", "OPTIN"),
        Action::Deny => ("deny", "OPTOUT"),
    };
    let actor_ref = match &rule.grantee {
        Grantee::Professional { org, id } => identity_ref("Practitioner", org, id),
        Grantee::Department { org, department } => json!({
            "type": "Organization",
            "identifier": { "system": SYSTEM_DEPARTMENT, "value": format!("{department}@{org}") },
            "display": format!("department {department} of {org}"),
        }),
    };
    let mut provision = Map::new();
    provision.insert("type".into(), json!(provision_type));
    provision.insert(
        "period".into(),
        json!({ "start": instant(rule.valid_from_ms), "end": instant(rule.valid_until_ms) }),
    );
    provision.insert(
        "actor".into(),
        json!([{
            "role": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP",
                "display": "information recipient",
            }]},
            "reference": actor_ref,
        }]),
    );
    if !rule.purpose.is_empty() {
        provision.insert(
            "purpose".into(),
            json!([{ "system": SYSTEM_PURPOSE, "display": rule.purpose }]),
        );
    }
    provision.insert("class".into(), Json::Array(tag_codings(&rule.tags)));
    let mut c = Map::new();
    c.insert("resourceType".into(), json!("Consent"));
    c.insert("id".into(), json!(id));
    let mut ext = Vec::new();
    if !rule.purpose.is_empty() {
        ext.push(json!({ "url": EXT_PURPOSE_TEXT, "valueString": rule.purpose }));
    }
    if let Some(r) = rule.revoked_ms {
        ext.push(json!({ "url": EXT_REVOKED, "valueDateTime": instant(r) }));
    }
    if !ext.is_empty() {
        c.insert("extension".into(), Json::Array(ext));
    }
    c.insert(
        "identifier".into(),
        json!([{ "system": SYSTEM_RULE, "value": id }]),
    );
    c.insert("status".into(), json!(consent_status(rule, now_ms)));
    c.insert(
        "scope".into(),
        json!({ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
            "display": "Privacy Consent",
        }]}),
    );
    c.insert(
        "category".into(),
        json!([{ "coding": [{
            "system": "http://loinc.org",
            "code": "59284-0",
            "display": "Patient Consent",
        }]}]),
    );
    c.insert(
        "patient".into(),
        identity_ref("Patient", &rule.grantor.org, &rule.grantor.id),
    );
    c.insert("dateTime".into(), json!(instant(rule.created_ms)));
    c.insert(
        "policyRule".into(),
        json!({ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": policy,
        }]}),
    );
    c.insert("provision".into(), Json::Object(provision));
    Json::Object(c)
}

/// A `searchset` Bundle of resources, as a FHIR search answers (`GET /v1/fhir/Consent?...`).
pub fn searchset(id_parts: &[&[u8]], resources: Vec<Json>, now_ms: u64) -> Json {
    let entries: Vec<Json> = resources
        .into_iter()
        .map(|r| {
            let url = format!(
                "urn:sphr:fhir:{}/{}",
                r["resourceType"].as_str().unwrap_or("Resource"),
                r["id"].as_str().unwrap_or("")
            );
            json!({ "fullUrl": url, "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "id": stable_uuid(id_parts),
        "type": "searchset",
        "timestamp": instant(now_ms),
        "total": entries.len(),
        "entry": entries,
    })
}

/// A patient's rules as a `searchset` Bundle of `Consent` resources.
pub fn consent_searchset(patient: &str, rules: &[Rule], now_ms: u64) -> Json {
    let resources = rules.iter().map(|r| consent(r, now_ms)).collect();
    searchset(&[b"Consent", patient.as_bytes()], resources, now_ms)
}

// ---------------------------------------------------------------------------------------------
// AuditEvent
// ---------------------------------------------------------------------------------------------

/// The AuditEvent outcome of a decision: `0` (success) when anything was granted, `8` (serious
/// failure) when the requester is not a registered professional at all, `4` (minor failure)
/// for any other denial.
pub fn audit_outcome(decision: &Decision) -> &'static str {
    match decision {
        Decision::Granted { .. } => "0",
        Decision::Denied { refusals, .. } => {
            if refusals
                .iter()
                .any(|r| matches!(r, Refusal::RequesterNotProfessional))
            {
                "8"
            } else {
                "4"
            }
        }
    }
}

/// The outcome text: what was granted and what was refused, or the denial reason.
pub fn audit_outcome_desc(decision: &Decision) -> String {
    match decision {
        Decision::Granted {
            grants, refusals, ..
        } => {
            let granted: Vec<String> = grants
                .iter()
                .map(|g| format!("{}: {}", g.hospital, g.tags.join(", ")))
                .collect();
            let mut s = format!("granted ({})", granted.join("; "));
            if !refusals.is_empty() {
                let r: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
                s.push_str(&format!("; refused: {}", r.join("; ")));
            }
            s
        }
        Decision::Denied { reason, .. } => format!("denied: {reason}"),
    }
}

/// One access record as a FHIR R4 `AuditEvent`.
pub fn audit_event(rec: &AccessRecord) -> Json {
    let id = rec.request_id.to_hex();
    let mut role = json!({
        "coding": [{ "system": SYSTEM_ROLE, "code": rec.requester_role.as_str() }],
    });
    if let Some(d) = &rec.requester_department {
        role["text"] = json!(format!("department {d}"));
    }
    let mut detail = vec![json!({ "type": "hospitals", "valueString": rec.hospitals.join(", ") })];
    if let Decision::Granted {
        grants, rule_ids, ..
    } = &rec.decision
    {
        for g in grants {
            detail.push(json!({
                "type": format!("granted:{}", g.hospital),
                "valueString": g.tags.join(", "),
            }));
        }
        if !rule_ids.is_empty() {
            let ids: Vec<String> = rule_ids.iter().map(Hash32::to_hex).collect();
            detail.push(json!({ "type": "rules", "valueString": ids.join(", ") }));
        }
    }
    let mut patient_entity = json!({
        "what": identity_ref("Patient", &rec.patient.org, &rec.patient.id),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
            "code": "1",
            "display": "Person",
        },
        "role": {
            "system": "http://terminology.hl7.org/CodeSystem/object-role",
            "code": "1",
            "display": "Patient",
        },
        "detail": detail,
    });
    if !rec.tags.is_empty() {
        patient_entity["securityLabel"] = Json::Array(tag_codings(&rec.tags));
    }
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{ "system": "urn:sphr:contract:consent", "code": "requestAccess" }],
        "action": "R",
        "recorded": instant(rec.time_ms),
        "outcome": audit_outcome(&rec.decision),
        "outcomeDesc": audit_outcome_desc(&rec.decision),
        "agent": [{
            "type": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                "code": "humanuser",
                "display": "human user",
            }]},
            "role": [role],
            "who": identity_ref("Practitioner", &rec.requester.org, &rec.requester.id),
            "requestor": true,
        }],
        "source": {
            "site": "sphr consent contract",
            "observer": { "display": "sphr network (consent contract, on chain)" },
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }],
        },
        "entity": [
            patient_entity,
            {
                "what": { "identifier": { "system": SYSTEM_REQUEST, "value": id } },
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
            },
        ],
    });
    if !rec.purpose.is_empty() {
        ev["purposeOfEvent"] = json!([{ "text": rec.purpose }]);
    }
    ev
}

/// A patient's access records as a `searchset` Bundle of `AuditEvent` resources.
pub fn audit_searchset(patient: &str, records: &[AccessRecord], now_ms: u64) -> Json {
    let resources = records.iter().map(audit_event).collect();
    searchset(&[b"AuditEvent", patient.as_bytes()], resources, now_ms)
}

// ---------------------------------------------------------------------------------------------
// Bundle
// ---------------------------------------------------------------------------------------------

/// The FHIR resource type a satellite's rows become (before the per-row fallback to `Basic`).
pub fn resource_type_of(sat: &SatelliteRows) -> &'static str {
    let name = sat.satellite.to_ascii_lowercase();
    if sat.hub == HubKind::Person {
        "Patient"
    } else if name.contains("admission") {
        "Encounter"
    } else if name.contains("condition") || name.contains("diagnos") {
        "Condition"
    } else if name.contains("operation") || name.contains("procedure") {
        "Procedure"
    } else {
        "Basic"
    }
}

fn value_json(v: &Value) -> Option<(&'static str, Json)> {
    match v {
        Value::Null => None,
        Value::Int(i) => Some(match i32::try_from(*i) {
            Ok(small) => ("valueInteger", json!(small)),
            Err(_) => ("valueDecimal", json!(i)),
        }),
        Value::Float(f) => Some(("valueDecimal", json!(f))),
        Value::Date(d) => Some(("valueDate", json!(date_text(d)))),
        Value::Text(t) => Some(("valueString", json!(t))),
    }
}

fn date_text(d: &sphr_vault::Date) -> String {
    let (y, m, day) = d.ymd();
    format!("{y:04}-{m:02}-{day:02}")
}

fn column_ext(f: &Field) -> Option<Json> {
    let (key, v) = value_json(&f.value)?;
    let mut value = Map::new();
    value.insert("url".into(), json!("value"));
    value.insert(key.into(), v);
    Some(json!({
        "url": EXT_COLUMN,
        "extension": [{ "url": "name", "valueString": f.name }, Json::Object(value)],
    }))
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Text(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Whether `code` looks like an ICD-10 code (`A00`, `M17.1`, `S82.10`).
fn looks_icd10(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() >= 3
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && (b[2].is_ascii_digit() || b[2].is_ascii_uppercase())
        && (b.len() == 3
            || (b[3] == b'.' && b.len() > 4 && b[4..].iter().all(|c| c.is_ascii_alphanumeric())))
}

fn code_concept(system: &str, code: &str, plausible: bool) -> Json {
    if plausible {
        json!({ "coding": [{ "system": system, "code": code }], "text": code })
    } else {
        json!({ "text": code })
    }
}

struct RowCtx<'a> {
    bundle: &'a Bundle,
    sat: &'a SatelliteRows,
    row: &'a SatRow,
    subject: Json,
}

impl<'a> RowCtx<'a> {
    fn id(&self, extra: &str) -> String {
        let fields = sphr_crypto::cbor::to_vec(&self.row.fields).unwrap_or_default();
        stable_uuid(&[
            self.bundle.patient.as_bytes(),
            self.sat.source.as_bytes(),
            self.sat.satellite.as_bytes(),
            self.row.parent.as_bytes(),
            &fields,
            extra.as_bytes(),
        ])
    }

    /// `id`, `meta` (source, satellite, load time) and the column extensions of every field
    /// not in `used`.
    fn base(&self, rtype: &str, id: &str, used: &[&str]) -> Map<String, Json> {
        let mut r = Map::new();
        r.insert("resourceType".into(), json!(rtype));
        r.insert("id".into(), json!(id));
        r.insert(
            "meta".into(),
            json!({
                "lastUpdated": instant(self.row.load_time_ms),
                "tag": [
                    { "system": SYSTEM_SOURCE, "code": self.sat.source },
                    { "system": SYSTEM_SATELLITE, "code": self.sat.satellite },
                ],
            }),
        );
        let ext: Vec<Json> = self
            .row
            .fields
            .iter()
            .filter(|f| !used.contains(&f.name.as_str()))
            .filter_map(column_ext)
            .collect();
        if !ext.is_empty() {
            r.insert("extension".into(), Json::Array(ext));
        }
        r
    }

    fn field(&self, names: &[&str]) -> Option<&'a Field> {
        let row: &'a SatRow = self.row;
        row.fields
            .iter()
            .find(|f| !f.value.is_null() && names.iter().any(|n| f.name.eq_ignore_ascii_case(n)))
    }
}

fn patient_row(cx: &RowCtx<'_>) -> Vec<Json> {
    let mut used = Vec::new();
    let gender = cx.field(&["sex", "gender"]).map(|f| {
        used.push(f.name.as_str());
        match text_of(&f.value)
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "1" | "m" | "male" => "male",
            "2" | "f" | "female" => "female",
            _ => "unknown",
        }
    });
    let birth = cx
        .field(&["date_of_birth", "birth_date", "dob"])
        .and_then(|f| match &f.value {
            Value::Date(d) => {
                used.push(f.name.as_str());
                Some(date_text(d))
            }
            _ => None,
        });
    let postcode = cx
        .field(&["postcode", "post_code", "postal_code"])
        .and_then(|f| {
            let t = text_of(&f.value)?;
            used.push(f.name.as_str());
            Some(t)
        });
    // A coded sex other than male/female keeps its code as an extension too.
    if gender == Some("unknown") {
        used.retain(|n| !n.eq_ignore_ascii_case("sex") && !n.eq_ignore_ascii_case("gender"));
    }
    let id = cx.id("");
    let mut r = cx.base("Patient", &id, &used);
    r.insert(
        "identifier".into(),
        json!([{ "system": SYSTEM_PERSON_HUB, "value": cx.bundle.patient.to_hex() }]),
    );
    if let Some(g) = gender {
        r.insert("gender".into(), json!(g));
    }
    if let Some(b) = birth {
        r.insert("birthDate".into(), json!(b));
    }
    if let Some(p) = postcode {
        r.insert("address".into(), json!([{ "postalCode": p }]));
    }
    vec![Json::Object(r)]
}

fn encounter_row<'a>(cx: &RowCtx<'a>) -> Vec<Json> {
    let mut used: Vec<&'a str> = Vec::new();
    let date = |names: &[&str], used: &mut Vec<&'a str>| {
        cx.field(names).and_then(|f| match &f.value {
            Value::Date(d) => {
                used.push(f.name.as_str());
                Some(date_text(d))
            }
            _ => None,
        })
    };
    let start = date(&["admission_date", "admit_date", "start_date"], &mut used);
    let end = date(&["discharge_date", "end_date"], &mut used);
    let length = cx
        .field(&["length_of_stay", "los"])
        .and_then(|f| match f.value {
            Value::Int(d) if d >= 0 => {
                used.push(f.name.as_str());
                Some(d)
            }
            _ => None,
        });
    let priority = cx.field(&["admission_type"]).and_then(|f| {
        let t = text_of(&f.value)?.to_ascii_lowercase();
        let code = match t.as_str() {
            "elective" => "EL",
            "emergency" => "EM",
            "urgent" => "UR",
            _ => return None,
        };
        used.push(f.name.as_str());
        Some(json!({ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
            "code": code,
            "display": t,
        }]}))
    });
    let specialty = cx.field(&["specialty", "speciality"]).and_then(|f| {
        let t = text_of(&f.value)?;
        used.push(f.name.as_str());
        Some(json!({ "coding": [{ "system": "urn:sphr:specialty", "code": t }], "text": t }))
    });
    let id = cx.id("");
    let mut r = cx.base("Encounter", &id, &used);
    r.insert(
        "status".into(),
        json!(if end.is_some() { "finished" } else { "unknown" }),
    );
    r.insert(
        "class".into(),
        json!({
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        }),
    );
    if let Some(p) = priority {
        r.insert("priority".into(), p);
    }
    if let Some(s) = specialty {
        r.insert("serviceType".into(), s);
    }
    r.insert("subject".into(), cx.subject.clone());
    if start.is_some() || end.is_some() {
        let mut period = Map::new();
        if let Some(s) = start {
            period.insert("start".into(), json!(s));
        }
        if let Some(e) = end {
            period.insert("end".into(), json!(e));
        }
        r.insert("period".into(), Json::Object(period));
    }
    if let Some(d) = length {
        r.insert(
            "length".into(),
            json!({ "value": d, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d" }),
        );
    }
    vec![Json::Object(r)]
}

/// One Condition (or Procedure) per coded column whose name says so.
fn coded_rows(cx: &RowCtx<'_>, procedure: bool) -> Vec<Json> {
    let words: &[&str] = if procedure {
        &["operation", "procedure"]
    } else {
        &["condition", "diagnos"]
    };
    let coded: Vec<(&Field, String)> = cx
        .row
        .fields
        .iter()
        .filter(|f| {
            let n = f.name.to_ascii_lowercase();
            words.iter().any(|w| n.contains(w))
        })
        .filter_map(|f| Some((f, text_of(&f.value)?)))
        .collect();
    if coded.is_empty() {
        return basic_row(cx);
    }
    let coded_names: Vec<&str> = coded.iter().map(|(f, _)| f.name.as_str()).collect();
    coded
        .iter()
        .map(|(f, code)| {
            let id = cx.id(&f.name);
            let mut r = cx.base(
                if procedure { "Procedure" } else { "Condition" },
                &id,
                &coded_names,
            );
            // The column the code came from, e.g. main_condition or other_condition_1.
            let col = json!({
                "url": EXT_COLUMN,
                "extension": [
                    { "url": "name", "valueString": f.name },
                    { "url": "value", "valueString": code },
                ],
            });
            match r.get_mut("extension").and_then(Json::as_array_mut) {
                Some(ext) => ext.insert(0, col),
                None => {
                    r.insert("extension".into(), json!([col]));
                }
            }
            if procedure {
                r.insert("status".into(), json!("completed"));
                r.insert(
                    "code".into(),
                    code_concept(SYSTEM_OPCS4, code, looks_icd10(code)),
                );
            } else {
                r.insert(
                    "category".into(),
                    json!([{ "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                        "display": "Encounter Diagnosis",
                    }]}]),
                );
                r.insert(
                    "code".into(),
                    code_concept(SYSTEM_ICD10, code, looks_icd10(code)),
                );
            }
            r.insert("subject".into(), cx.subject.clone());
            Json::Object(r)
        })
        .collect()
}

fn basic_row(cx: &RowCtx<'_>) -> Vec<Json> {
    let id = cx.id("");
    let mut r = cx.base("Basic", &id, &[]);
    r.insert(
        "code".into(),
        json!({
            "coding": [{ "system": SYSTEM_SATELLITE, "code": cx.sat.satellite }],
            "text": format!("{} row of source {}", cx.sat.satellite, cx.sat.source),
        }),
    );
    r.insert("subject".into(), cx.subject.clone());
    vec![Json::Object(r)]
}

/// The resources one satellite row becomes (see `docs/fhir.md`).
pub fn row_resources(bundle: &Bundle, sat: &SatelliteRows, row: &SatRow) -> Vec<Json> {
    let cx = RowCtx {
        bundle,
        sat,
        row,
        subject: json!({
            "type": "Patient",
            "identifier": { "system": SYSTEM_PERSON_HUB, "value": bundle.patient.to_hex() },
        }),
    };
    match resource_type_of(sat) {
        "Patient" => patient_row(&cx),
        "Encounter" => encounter_row(&cx),
        "Condition" => coded_rows(&cx, false),
        "Procedure" => coded_rows(&cx, true),
        _ => basic_row(&cx),
    }
}

/// A decrypted SPHR bundle as a FHIR R4 Bundle of type `collection`: every satellite row
/// becomes one resource (a row holding several coded conditions or operations, one per code).
pub fn bundle_collection(bundle: &Bundle) -> Json {
    let mut entries = Vec::new();
    for sat in &bundle.satellites {
        for row in &sat.rows {
            for r in row_resources(bundle, sat, row) {
                let url = format!("urn:uuid:{}", r["id"].as_str().unwrap_or(""));
                entries.push(json!({ "fullUrl": url, "resource": r }));
            }
        }
    }
    let id = bundle.id.to_hex();
    let mut meta_tags = tag_codings(&bundle.tags);
    meta_tags.push(json!({ "system": SYSTEM_ORG, "code": bundle.hospital }));
    json!({
        "resourceType": "Bundle",
        "id": stable_uuid(&[b"Bundle", bundle.id.as_bytes()]),
        "meta": { "tag": meta_tags },
        "identifier": { "system": SYSTEM_BUNDLE, "value": id },
        "type": "collection",
        "timestamp": instant(bundle.created_ms),
        "entry": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphr_contracts::consent::types::{HospitalGrant, Identity};
    use sphr_crypto::cert::Role;

    #[test]
    fn instants_are_utc() {
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(instant(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(instant(1_714_557_600_000), "2024-05-01T10:00:00.000Z");
        assert_eq!(instant(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn uuids_are_stable_and_v5_shaped() {
        let a = stable_uuid(&[b"x", b"y"]);
        assert_eq!(a, stable_uuid(&[b"x", b"y"]));
        assert_ne!(a, stable_uuid(&[b"xy"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "5");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    fn rule(action: Action, revoked: Option<u64>) -> Rule {
        Rule {
            rule_id: Hash32([7; 32]),
            grantor: Identity::new("PatientOrg", "patient1"),
            grantee: Grantee::Professional {
                org: "HospitalOrg".into(),
                id: "doctor1".into(),
            },
            action,
            tags: vec!["ADMISSIONS".into(), "CONDITIONS".into()],
            purpose: "follow-up care".into(),
            valid_from_ms: 1_714_557_600_000,
            valid_until_ms: 1_714_557_600_000 + 30 * 86_400_000,
            created_ms: 1_714_557_000_000,
            revoked_ms: revoked,
        }
    }

    #[test]
    fn consent_maps_every_rule_field() {
        let r = rule(Action::Allow, None);
        let c = consent(&r, r.valid_from_ms + 1);
        assert_eq!(c["resourceType"], "Consent");
        assert_eq!(c["id"], r.rule_id.to_hex());
        assert_eq!(c["status"], "active");
        assert_eq!(c["patient"]["identifier"]["value"], "patient1@PatientOrg");
        let p = &c["provision"];
        assert_eq!(p["type"], "permit");
        assert_eq!(p["period"]["start"], "2024-05-01T10:00:00.000Z");
        assert_eq!(p["period"]["end"], "2024-05-31T10:00:00.000Z");
        assert_eq!(
            p["actor"][0]["reference"]["identifier"]["value"],
            "doctor1@HospitalOrg"
        );
        assert_eq!(p["class"][0]["code"], "ADMISSIONS");
        assert_eq!(p["class"][1]["code"], "CONDITIONS");
        assert_eq!(p["purpose"][0]["display"], "follow-up care");
        let d = consent(&rule(Action::Deny, None), 0);
        assert_eq!(d["provision"]["type"], "deny");
        assert_eq!(d["policyRule"]["coding"][0]["code"], "OPTOUT");
        // Revoked or expired: inactive.
        let rv = rule(Action::Allow, Some(1_714_558_000_000));
        assert_eq!(consent(&rv, rv.valid_from_ms)["status"], "inactive");
        assert_eq!(consent(&r, r.valid_until_ms)["status"], "inactive");
        let dept = Rule {
            grantee: Grantee::Department {
                org: "HospitalOrg".into(),
                department: "cardiology".into(),
            },
            ..r.clone()
        };
        let dc = consent(&dept, 0);
        assert_eq!(
            dc["provision"]["actor"][0]["reference"]["identifier"]["system"],
            SYSTEM_DEPARTMENT
        );
        assert_eq!(
            dc["provision"]["actor"][0]["reference"]["identifier"]["value"],
            "cardiology@HospitalOrg"
        );
    }

    fn record(decision: Decision) -> AccessRecord {
        AccessRecord {
            request_id: Hash32([9; 32]),
            time_ms: 1_714_557_600_000,
            patient: Identity::new("PatientOrg", "patient1"),
            requester: Identity::new("HospitalOrg", "doctor1"),
            requester_role: Role::Doctor,
            requester_department: Some("cardiology".into()),
            tags: vec!["ADMISSIONS".into()],
            hospitals: vec!["HospitalOrg".into()],
            purpose: "care".into(),
            decision,
        }
    }

    #[test]
    fn audit_events_carry_who_when_what_and_outcome() {
        let granted = record(Decision::Granted {
            grants: vec![HospitalGrant {
                hospital: "HospitalOrg".into(),
                tags: vec!["ADMISSIONS".into()],
            }],
            rule_ids: vec![Hash32([7; 32])],
            refusals: vec![],
            requester_pre_key: None,
        });
        let e = audit_event(&granted);
        assert_eq!(e["resourceType"], "AuditEvent");
        assert_eq!(e["id"], Hash32([9; 32]).to_hex());
        assert_eq!(e["outcome"], "0");
        assert_eq!(e["recorded"], "2024-05-01T10:00:00.000Z");
        assert_eq!(
            e["agent"][0]["who"]["identifier"]["value"],
            "doctor1@HospitalOrg"
        );
        assert_eq!(e["entity"][0]["securityLabel"][0]["code"], "ADMISSIONS");
        assert_eq!(e["purposeOfEvent"][0]["text"], "care");
        let denied = record(Decision::Denied {
            reason: "no rule grants tag ADMISSIONS".into(),
            refusals: vec![Refusal::NoRule {
                tag: "ADMISSIONS".into(),
            }],
        });
        let d = audit_event(&denied);
        assert_eq!(d["outcome"], "4");
        assert!(
            d["outcomeDesc"]
                .as_str()
                .unwrap()
                .contains("no rule grants tag ADMISSIONS")
        );
        let not_pro = record(Decision::Denied {
            reason: "requester is not a registered professional".into(),
            refusals: vec![Refusal::RequesterNotProfessional],
        });
        assert_eq!(audit_event(&not_pro)["outcome"], "8");
    }

    fn field(name: &str, value: Value) -> Field {
        Field {
            name: name.into(),
            value,
        }
    }

    fn sat(name: &str, hub: HubKind, fields: Vec<Field>) -> SatelliteRows {
        SatelliteRows {
            source: "smr01".into(),
            satellite: name.into(),
            hub,
            rows: vec![SatRow {
                parent: Hash32([3; 32]),
                load_time_ms: 1_714_557_600_000,
                fields,
            }],
        }
    }

    fn test_bundle() -> Bundle {
        let date = |s| Value::Date(sphr_vault::Date::parse(s).unwrap());
        Bundle {
            version: sphr_vault::BUNDLE_VERSION,
            id: Hash32([5; 32]),
            patient: Hash32([6; 32]),
            hospital: "HospitalOrg".into(),
            sources: vec!["smr01".into()],
            tags: vec!["ADMISSIONS".into()],
            rule_ids: vec![],
            created_ms: 1_714_557_600_000,
            satellites: vec![
                sat(
                    "sat_person_demographic_details",
                    HubKind::Person,
                    vec![
                        field("sex", Value::Text("2".into())),
                        field("age_in_years", Value::Int(72)),
                        field("postcode", Value::Text("KY16 9AJ".into())),
                    ],
                ),
                sat(
                    "sat_time_admissions_date",
                    HubKind::Time,
                    vec![
                        field("admission_date", date("2022-03-02")),
                        field("discharge_date", date("09/03/2022")),
                        field("length_of_stay", Value::Int(7)),
                    ],
                ),
                sat(
                    "sat_object_conditions_details",
                    HubKind::Object,
                    vec![
                        field("main_condition", Value::Text("M17.1".into())),
                        field("other_condition_1", Value::Text("I10".into())),
                        field("other_condition_2", Value::Null),
                    ],
                ),
                sat(
                    "sat_object_operations_details",
                    HubKind::Object,
                    vec![
                        field("main_operation_a", Value::Text("W40.1".into())),
                        field("main_operation_b", Value::Null),
                    ],
                ),
                sat(
                    "sat_location_ward_details",
                    HubKind::Location,
                    vec![field("ward", Value::Text("ward 7".into()))],
                ),
            ],
        }
    }

    #[test]
    fn bundle_rows_map_by_column_names() {
        let b = test_bundle();
        let fb = bundle_collection(&b);
        assert_eq!(fb["type"], "collection");
        let entries = fb["entry"].as_array().unwrap();
        let types: Vec<&str> = entries
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "Patient",
                "Encounter",
                "Condition",
                "Condition",
                "Procedure",
                "Basic"
            ]
        );
        let patient = &entries[0]["resource"];
        assert_eq!(patient["gender"], "female");
        assert_eq!(patient["address"][0]["postalCode"], "KY16 9AJ");
        assert_eq!(patient["identifier"][0]["value"], b.patient.to_hex());
        // age has no element: an extension.
        assert_eq!(
            patient["extension"][0]["extension"][0]["valueString"],
            "age_in_years"
        );
        assert_eq!(patient["extension"][0]["extension"][1]["valueInteger"], 72);
        let enc = &entries[1]["resource"];
        assert_eq!(enc["period"]["start"], "2022-03-02");
        assert_eq!(enc["period"]["end"], "2022-03-09");
        assert_eq!(enc["length"]["value"], 7);
        assert_eq!(enc["status"], "finished");
        let c = &entries[2]["resource"];
        assert_eq!(c["code"]["coding"][0]["system"], SYSTEM_ICD10);
        assert_eq!(c["code"]["coding"][0]["code"], "M17.1");
        assert_eq!(entries[3]["resource"]["code"]["coding"][0]["code"], "I10");
        assert_eq!(entries[4]["resource"]["code"]["coding"][0]["code"], "W40.1");
        assert_eq!(
            entries[5]["resource"]["code"]["coding"][0]["code"],
            "sat_location_ward_details"
        );
        // Every id is unique and stable; fullUrl matches it.
        let ids: std::collections::BTreeSet<&str> = entries
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), entries.len());
        for e in entries {
            assert_eq!(
                e["fullUrl"].as_str().unwrap(),
                format!("urn:uuid:{}", e["resource"]["id"].as_str().unwrap())
            );
        }
        assert_eq!(bundle_collection(&b), fb);
    }
}
