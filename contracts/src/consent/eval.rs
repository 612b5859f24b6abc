//! Rule evaluation: a pure function of the facts the contract loaded from state.
//!
//! See the module docs of [`super`] for the algorithm.

use std::collections::{BTreeMap, BTreeSet};

use serde_bytes::ByteBuf;
use sphr_crypto::hash::Hash32;

use super::types::{Action, Decision, Grantee, Hospital, HospitalGrant, Identity, Refusal, Rule};

/// How many refusals the one-line reason of a denial spells out.
const REASON_REFUSALS: usize = 3;

/// Where a rule stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// In force.
    Live,
    /// Before its `valid_from_ms`.
    NotYetValid,
    /// At or after its `valid_until_ms`.
    Expired,
    /// Revoked by its grantor: counts for nothing, whatever the tx time.
    Revoked,
}

/// The status of `rule` at `now_ms`.
pub(super) fn status(rule: &Rule, now_ms: u64) -> Status {
    if rule.revoked_ms.is_some() {
        Status::Revoked
    } else if now_ms < rule.valid_from_ms {
        Status::NotYetValid
    } else if now_ms >= rule.valid_until_ms {
        Status::Expired
    } else {
        Status::Live
    }
}

/// Whether `rule`'s grantee covers the requester (a professional grant names them; a
/// department grant names the department their admin registered them in).
pub(super) fn covers(rule: &Rule, requester: &Identity, department: Option<&str>) -> bool {
    match &rule.grantee {
        Grantee::Professional { org, id } => *org == requester.org && *id == requester.id,
        Grantee::Department { org, department: d } => {
            *org == requester.org && department == Some(d.as_str())
        }
    }
}

/// What a registered professional's request is evaluated against.
pub(super) struct Facts<'a> {
    /// The tx time.
    pub now_ms: u64,
    /// The requester.
    pub requester: &'a Identity,
    /// The requester's current department, if any.
    pub department: Option<&'a str>,
    /// Every rule of the patient, in rule id order.
    pub rules: &'a [Rule],
    /// The hospitals asked, sorted, each with its registration if registered.
    pub hospitals: &'a [(String, Option<Hospital>)],
    /// The tags asked, sorted, without duplicates.
    pub tags: &'a [String],
    /// The requester's PRE public key, copied into a grant.
    pub requester_pre_key: Option<&'a [u8]>,
}

/// A denial for `refusals`.
pub(super) fn denied(refusals: Vec<Refusal>) -> Decision {
    let mut reason = refusals
        .iter()
        .take(REASON_REFUSALS)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if reason.is_empty() {
        reason = "nothing was granted".to_string();
    }
    if refusals.len() > REASON_REFUSALS {
        reason.push_str(&format!("; and {} more", refusals.len() - REASON_REFUSALS));
    }
    Decision::Denied { reason, refusals }
}

/// Evaluates a request: for each tag, DENY beats ALLOW, only live rules count, and the law of
/// each hospital holding the data limits what is granted from it.
pub(super) fn decide(f: &Facts<'_>) -> Decision {
    let mut refusals = Vec::new();
    for (name, h) in f.hospitals {
        if h.is_none() {
            refusals.push(Refusal::UnknownHospital {
                hospital: name.clone(),
            });
        }
    }
    let mine: Vec<&Rule> = f
        .rules
        .iter()
        .filter(|r| covers(r, f.requester, f.department))
        .collect();
    let mut grants: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut used: BTreeSet<Hash32> = BTreeSet::new();
    for tag in f.tags {
        let about: Vec<&Rule> = mine
            .iter()
            .copied()
            .filter(|r| r.tags.iter().any(|t| t == tag))
            .collect();
        let live = |r: &Rule| status(r, f.now_ms) == Status::Live;
        if let Some(r) = about.iter().find(|r| r.action == Action::Deny && live(r)) {
            refusals.push(Refusal::RuleDenies {
                rule_id: r.rule_id,
                tag: tag.clone(),
            });
            continue;
        }
        let allows: Vec<&Rule> = about
            .iter()
            .copied()
            .filter(|r| r.action == Action::Allow)
            .collect();
        let live_allows: Vec<&Rule> = allows.iter().copied().filter(|r| live(r)).collect();
        if live_allows.is_empty() {
            let tag = tag.clone();
            refusals.push(match allows.first() {
                None => Refusal::NoRule { tag },
                Some(r) => match status(r, f.now_ms) {
                    Status::Revoked => Refusal::RuleRevoked {
                        rule_id: r.rule_id,
                        tag,
                    },
                    Status::NotYetValid => Refusal::RuleNotYetValid {
                        rule_id: r.rule_id,
                        tag,
                    },
                    // Live cannot happen here (live_allows is empty).
                    Status::Expired | Status::Live => Refusal::RuleExpired {
                        rule_id: r.rule_id,
                        tag,
                    },
                },
            });
            continue;
        }
        for (name, h) in f.hospitals {
            let Some(h) = h else { continue };
            if h.allowed_tags.iter().any(|t| t == tag) {
                grants.entry(name).or_default().push(tag.clone());
                used.extend(live_allows.iter().map(|r| r.rule_id));
            } else {
                refusals.push(Refusal::LawForbids {
                    hospital: name.clone(),
                    tag: tag.clone(),
                });
            }
        }
    }
    if grants.is_empty() {
        return denied(refusals);
    }
    Decision::Granted {
        grants: grants
            .into_iter()
            .map(|(hospital, tags)| HospitalGrant {
                hospital: hospital.to_string(),
                tags,
            })
            .collect(),
        rule_ids: used.into_iter().collect(),
        refusals,
        requester_pre_key: f.requester_pre_key.map(|k| ByteBuf::from(k.to_vec())),
    }
}
