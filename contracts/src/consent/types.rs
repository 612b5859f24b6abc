//! The consent contract's wire types: one CBOR request struct per function, the responses, and
//! the records kept in state. Clients build these and encode them with `sphr_crypto::cbor`.
//!
//! Every string that names something (org, subject id, department) follows the certificate
//! rules: 1 to [`MAX_NAME_LEN`] bytes, no control character, no `@`. Tags are labels of 1 to
//! [`MAX_TAG_LEN`] bytes with no control character, compared byte for byte (no case folding).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;

/// Largest CBOR argument accepted by any function.
pub const MAX_ARG_BYTES: usize = 64 * 1024;
/// Longest org, subject id, department or bundle id.
pub const MAX_NAME_LEN: usize = sphr_crypto::cert::MAX_NAME_LEN;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 64;
/// Most departments a hospital may register.
pub const MAX_DEPARTMENTS: usize = 64;
/// Most tags a hospital's law may allow.
pub const MAX_ALLOWED_TAGS: usize = 256;
/// Most tags in one rule.
pub const MAX_RULE_TAGS: usize = 32;
/// Most tags in one access request.
pub const MAX_REQUEST_TAGS: usize = 32;
/// Most hospitals one access request may name.
pub const MAX_REQUEST_HOSPITALS: usize = 8;
/// Longest purpose text (rule or request).
pub const MAX_PURPOSE_LEN: usize = 256;
/// Longest rule duration a hospital may set (about ten years).
pub const MAX_RULE_DAYS_LIMIT: u32 = 3660;
/// Most rules a patient holds in state; dead (revoked or expired) rules are pruned to make room.
pub const MAX_RULES_PER_PATIENT: usize = 256;
/// Longest sealed bundle key.
pub const MAX_SEALED_KEY_LEN: usize = 4096;
/// Most rule ids in one package's lineage.
pub const MAX_LINEAGE_RULES: usize = 64;
/// Most audit records one `getAuditTrail` call returns.
pub const MAX_AUDIT_PAGE: u32 = 100;
/// Milliseconds in a day.
pub const MS_PER_DAY: u64 = 86_400_000;

/// Event emitted when an access request is granted; the payload is the 32 raw bytes of the
/// request id and nothing else.
pub const EVENT_ACCESS_GRANTED: &str = "accessGranted";
/// Event emitted when a hospital node delivers a bundle key; the payload is a CBOR
/// [`BundleKeyDeliveredEvent`].
pub const EVENT_BUNDLE_KEY_DELIVERED: &str = "bundleKeyDelivered";

/// A certificate identity: the subject `id` within `org`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The issuing organisation.
    pub org: String,
    /// The subject id within the org.
    pub id: String,
}

impl Identity {
    /// The identity of subject `id` in `org`.
    pub fn new(org: impl Into<String>, id: impl Into<String>) -> Self {
        Identity {
            org: org.into(),
            id: id.into(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.org)
    }
}

// ---------------------------------------------------------------------------------------------
// Hospitals and staff
// ---------------------------------------------------------------------------------------------

/// `registerHospital`: an org's admin registers (or updates) the org as a hospital.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterHospital {
    /// The org name; must be the caller's org.
    pub hospital: String,
    /// Its departments (a rule may grant a whole department).
    pub departments: Vec<String>,
    /// The tags its law lets it share.
    pub allowed_tags: Vec<String>,
    /// The longest validity window a rule granting to this hospital may have.
    pub max_rule_days: u32,
}

/// A registered hospital (the response of `registerHospital` and `getHospital`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hospital {
    /// The org name.
    pub hospital: String,
    /// Departments, sorted, without duplicates.
    pub departments: Vec<String>,
    /// Tags its law lets it share, sorted, without duplicates.
    pub allowed_tags: Vec<String>,
    /// The longest rule validity window, in days.
    pub max_rule_days: u32,
    /// When it was first registered (tx time, ms).
    pub registered_ms: u64,
    /// When it was last updated (tx time, ms).
    pub updated_ms: u64,
}

/// `registerStaff`: an org's admin places one of its professionals in a department.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterStaff {
    /// The professional's subject id in the caller's org.
    pub id: String,
    /// A department of the caller's hospital.
    pub department: String,
}

/// `removeStaff`: an org's admin removes one of its professionals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveStaff {
    /// The professional's subject id in the caller's org.
    pub id: String,
}

/// A professional registered by their hospital's admin (the response of `registerStaff`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffMember {
    /// The professional.
    pub member: Identity,
    /// Their department.
    pub department: String,
    /// When registered or last moved (tx time, ms).
    pub updated_ms: u64,
}

// ---------------------------------------------------------------------------------------------
// Patients and rules
// ---------------------------------------------------------------------------------------------

/// `registerPatient`: the caller registers itself as a patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterPatient {
    /// If given, must equal the caller's subject id (a guard against using the wrong
    /// certificate).
    pub patient_id: Option<String>,
}

/// A registered patient (the response of `registerPatient`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    /// The patient's certificate identity.
    pub patient: Identity,
    /// The PRE public key from the patient's certificate, if it carries one.
    pub pre_public_key: Option<ByteBuf>,
    /// When first registered (tx time, ms).
    pub registered_ms: u64,
}

/// Who a rule is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Grantee {
    /// One professional, by certificate identity.
    Professional {
        /// Their hospital.
        org: String,
        /// Their subject id.
        id: String,
    },
    /// Every registered member of a hospital's department.
    Department {
        /// The hospital.
        org: String,
        /// The department.
        department: String,
    },
}

impl Grantee {
    /// The grantee's hospital.
    pub fn org(&self) -> &str {
        match self {
            Grantee::Professional { org, .. } | Grantee::Department { org, .. } => org,
        }
    }
}

/// What a rule does to the tags it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Grants the tags.
    Allow,
    /// Forbids the tags; beats any ALLOW.
    Deny,
}

/// `createRule`: the calling patient grants or denies tags to a grantee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRule {
    /// A professional or a department of a registered hospital.
    pub grantee: Grantee,
    /// ALLOW or DENY.
    pub action: Action,
    /// The tags of the patient's record the rule is about.
    pub tags: Vec<String>,
    /// Free text, at most [`MAX_PURPOSE_LEN`] bytes.
    pub purpose: String,
    /// Valid from (Unix ms, inclusive).
    pub valid_from_ms: u64,
    /// Valid until (Unix ms, exclusive).
    pub valid_until_ms: u64,
}

/// The response of `createRule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRuleResponse {
    /// The new rule's id.
    pub rule_id: Hash32,
    /// Tags of an ALLOW rule that the grantee hospital's own law does not allow: advisory
    /// only. The rule is stored with all its tags; at request time the law of each hospital
    /// holding the data decides what is shared.
    pub limited_tags: Vec<String>,
}

/// A rule in state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Its id.
    pub rule_id: Hash32,
    /// The patient who made it.
    pub grantor: Identity,
    /// Who it is about.
    pub grantee: Grantee,
    /// ALLOW or DENY.
    pub action: Action,
    /// Tags, sorted, without duplicates.
    pub tags: Vec<String>,
    /// The patient's stated purpose.
    pub purpose: String,
    /// Valid from (Unix ms, inclusive).
    pub valid_from_ms: u64,
    /// Valid until (Unix ms, exclusive).
    pub valid_until_ms: u64,
    /// When created (tx time, ms).
    pub created_ms: u64,
    /// When revoked (tx time, ms); a revoked rule counts for nothing.
    pub revoked_ms: Option<u64>,
}

/// `revokeRule`: the grantor revokes one of their rules. The response is the revoked [`Rule`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeRule {
    /// The rule to revoke.
    pub rule_id: Hash32,
}

/// `listRules`: a patient's rules, for the patient themself or an auditor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRules {
    /// Whose rules; `None` means the caller's.
    pub patient: Option<Identity>,
}

/// The response of `listRules`: rules in rule id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleList {
    /// The rules, live and dead (revoked or expired rules stay until pruned).
    pub rules: Vec<Rule>,
}

// ---------------------------------------------------------------------------------------------
// Access requests
// ---------------------------------------------------------------------------------------------

/// `requestAccess`: a professional asks for tags of a patient's record held at hospitals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAccess {
    /// The patient.
    pub patient: Identity,
    /// The tags wanted.
    pub tags: Vec<String>,
    /// The hospitals holding the data.
    pub hospitals: Vec<String>,
    /// Free text, at most [`MAX_PURPOSE_LEN`] bytes.
    pub purpose: String,
}

/// The tags granted from one hospital.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HospitalGrant {
    /// The hospital holding the data.
    pub hospital: String,
    /// The tags it may share for this request, sorted.
    pub tags: Vec<String>,
}

/// Why a tag, a hospital, or a whole request was not granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Refusal {
    /// The requester's role is not a professional one, or their admin has not registered them
    /// as staff of a registered hospital.
    RequesterNotProfessional,
    /// The patient is not registered.
    PatientNotRegistered,
    /// The patient has more rules than one evaluation reads; refused rather than risk missing
    /// a DENY.
    TooManyRules,
    /// A hospital named in the request is not registered.
    UnknownHospital {
        /// The hospital.
        hospital: String,
    },
    /// No rule grants the tag to the requester.
    NoRule {
        /// The tag.
        tag: String,
    },
    /// A live DENY rule covers the tag.
    RuleDenies {
        /// The rule.
        rule_id: Hash32,
        /// The tag.
        tag: String,
    },
    /// The only ALLOW rule for the tag has expired.
    RuleExpired {
        /// The rule.
        rule_id: Hash32,
        /// The tag.
        tag: String,
    },
    /// The only ALLOW rule for the tag is not valid yet.
    RuleNotYetValid {
        /// The rule.
        rule_id: Hash32,
        /// The tag.
        tag: String,
    },
    /// The only ALLOW rule for the tag was revoked.
    RuleRevoked {
        /// The rule.
        rule_id: Hash32,
        /// The tag.
        tag: String,
    },
    /// The hospital holding the data may not share the tag under its law.
    LawForbids {
        /// The hospital.
        hospital: String,
        /// The tag.
        tag: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::RequesterNotProfessional => {
                f.write_str("requester is not a registered professional")
            }
            Refusal::PatientNotRegistered => f.write_str("patient is not registered"),
            Refusal::TooManyRules => {
                f.write_str("the patient has more rules than one evaluation may read")
            }
            Refusal::UnknownHospital { hospital } => {
                write!(f, "hospital {hospital} is not registered")
            }
            Refusal::NoRule { tag } => write!(f, "no rule grants tag {tag}"),
            Refusal::RuleDenies { rule_id, tag } => write!(f, "rule {rule_id} denies tag {tag}"),
            Refusal::RuleExpired { rule_id, tag } => {
                write!(f, "rule {rule_id} expired (tag {tag})")
            }
            Refusal::RuleNotYetValid { rule_id, tag } => {
                write!(f, "rule {rule_id} is not valid yet (tag {tag})")
            }
            Refusal::RuleRevoked { rule_id, tag } => {
                write!(f, "rule {rule_id} was revoked (tag {tag})")
            }
            Refusal::LawForbids { hospital, tag } => {
                write!(f, "hospital {hospital}'s law does not allow tag {tag}")
            }
        }
    }
}

/// The outcome of an access request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    /// At least one tag was granted from at least one hospital.
    Granted {
        /// What each hospital may share, by hospital name; only hospitals with a tag.
        grants: Vec<HospitalGrant>,
        /// The live ALLOW rules that granted the tags, sorted.
        rule_ids: Vec<Hash32>,
        /// What was asked for and not granted, with the reason.
        refusals: Vec<Refusal>,
        /// The requester's PRE public key from their certificate, to seal bundle keys to.
        requester_pre_key: Option<ByteBuf>,
    },
    /// Nothing was granted.
    Denied {
        /// A one-line summary of the refusals.
        reason: String,
        /// Every refusal.
        refusals: Vec<Refusal>,
    },
}

impl Decision {
    /// Whether anything was granted.
    pub fn is_granted(&self) -> bool {
        matches!(self, Decision::Granted { .. })
    }

    /// The grant of `hospital`, if any.
    pub fn grant_of(&self, hospital: &str) -> Option<&HospitalGrant> {
        match self {
            Decision::Granted { grants, .. } => grants.iter().find(|g| g.hospital == hospital),
            Decision::Denied { .. } => None,
        }
    }
}

/// An access record: written by every `requestAccess`, granted or denied, and returned by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// The request id (from the tx id).
    pub request_id: Hash32,
    /// The tx time (ms).
    pub time_ms: u64,
    /// The patient.
    pub patient: Identity,
    /// Who asked.
    pub requester: Identity,
    /// The requester's certificate role.
    pub requester_role: Role,
    /// The requester's registered department, if any.
    pub requester_department: Option<String>,
    /// Tags asked for, sorted, without duplicates.
    pub tags: Vec<String>,
    /// Hospitals asked, sorted, without duplicates.
    pub hospitals: Vec<String>,
    /// The requester's stated purpose.
    pub purpose: String,
    /// The decision.
    pub decision: Decision,
}

/// `getRequest`: one access record, for its patient, its requester, an auditor, or a node of a
/// hospital it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// The request.
    pub request_id: Hash32,
}

/// Where an audit trail page ends: the last record returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCursor {
    /// Its tx time.
    pub time_ms: u64,
    /// Its request id.
    pub request_id: Hash32,
}

/// `getAuditTrail`: a patient's access records in time order, for the patient or an auditor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetAuditTrail {
    /// The patient.
    pub patient: Identity,
    /// Start after this record (the `next` of the previous page).
    pub after: Option<AuditCursor>,
    /// Page size, at most [`MAX_AUDIT_PAGE`] (the default).
    pub limit: Option<u32>,
}

/// The response of `getAuditTrail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTrail {
    /// Records in (time, request id) order.
    pub records: Vec<AccessRecord>,
    /// Where the next page starts, if there is more.
    pub next: Option<AuditCursor>,
}

// ---------------------------------------------------------------------------------------------
// Bundle keys and lineage
// ---------------------------------------------------------------------------------------------

/// Where a package's data came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageLineage {
    /// The rules that granted it (a subset of the grant's rule ids).
    pub rule_ids: Vec<Hash32>,
    /// The hospitals that contributed data (a subset of the granted hospitals).
    pub contributing_hospitals: Vec<String>,
}

/// `deliverBundleKey`: a node of `hospital` puts a sealed bundle key on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverBundleKey {
    /// The granted request.
    pub request_id: Hash32,
    /// The hospital the node belongs to.
    pub hospital: String,
    /// The bundle's id at that hospital's node (for the download).
    pub bundle_id: String,
    /// The bundle key, already sealed by the node to the requester's key.
    pub sealed_key: ByteBuf,
    /// SHA-256 of the sealed bundle.
    pub bundle_hash: Hash32,
    /// The package's lineage.
    pub lineage: PackageLineage,
}

/// A delivered bundle key (the response of `deliverBundleKey`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleKey {
    /// The request.
    pub request_id: Hash32,
    /// The hospital whose node delivered it.
    pub hospital: String,
    /// The bundle's id at that node.
    pub bundle_id: String,
    /// The sealed key.
    pub sealed_key: ByteBuf,
    /// SHA-256 of the sealed bundle.
    pub bundle_hash: Hash32,
    /// The package's lineage.
    pub lineage: PackageLineage,
    /// The delivering node.
    pub node: Identity,
    /// When delivered (tx time, ms).
    pub delivered_ms: u64,
}

/// `getBundleKeys`: the sealed keys delivered for a request, for its requester or patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetBundleKeys {
    /// The request.
    pub request_id: Hash32,
}

/// The response of `getBundleKeys`, by hospital name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleKeys {
    /// The delivered keys.
    pub keys: Vec<BundleKey>,
}

/// `getLineage`: the lineage of a request's packages, for its patient, requester or an auditor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetLineage {
    /// The request.
    pub request_id: Hash32,
}

/// One delivered package in a [`Lineage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// The delivering hospital.
    pub hospital: String,
    /// The bundle id.
    pub bundle_id: String,
    /// SHA-256 of the sealed bundle.
    pub bundle_hash: Hash32,
    /// Its lineage.
    pub lineage: PackageLineage,
}

/// The response of `getLineage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The request.
    pub request_id: Hash32,
    /// The rules the grant used.
    pub rule_ids: Vec<Hash32>,
    /// The hospitals granted.
    pub hospitals: Vec<String>,
    /// The packages delivered so far, by hospital name.
    pub packages: Vec<PackageRecord>,
}

/// The payload of the `bundleKeyDelivered` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleKeyDeliveredEvent {
    /// The request.
    pub request_id: Hash32,
    /// The delivering hospital.
    pub hospital: String,
    /// The bundle id at that hospital's node.
    pub bundle_id: String,
}

/// `getHospital`: a registered hospital, for anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetHospital {
    /// The hospital.
    pub hospital: String,
}

/// The response of functions that return nothing (`removeStaff`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}
