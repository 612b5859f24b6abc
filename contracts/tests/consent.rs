//! The consent contract through its public API only, on a small ledger double that applies a
//! transaction's writes and events only when the call succeeds (as the committer does):
//! the ten steps of seed 000, section 3.4.1, with two hospitals and a real PRE-sealed key.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use sphr_contracts::consent::{
    AccessRecord, Action, AuditTrail, BundleKey, BundleKeys, CreateRule, CreateRuleResponse,
    Decision, DeliverBundleKey, EVENT_ACCESS_GRANTED, EVENT_BUNDLE_KEY_DELIVERED, GetAuditTrail,
    GetBundleKeys, GetLineage, GetRequest, Grantee, Hospital, Identity, Lineage, PackageLineage,
    Patient, RegisterHospital, RegisterPatient, RegisterStaff, RequestAccess, StaffMember,
};
use sphr_contracts::{Caller, Contract, ContractError, Ctx, KvPairs, MAX_RANGE_LEN, Registry};
use sphr_crypto::cbor;
use sphr_crypto::cert::Role;
use sphr_crypto::hash::{Hash32, sha256, sha256_parts};
use sphr_crypto::keys::SecretKey;
use sphr_crypto::pre::{self, PrePublicKey, PreSecretKey, Sealed};

const T0: u64 = 1_700_000_000_000;
const DAY: u64 = 86_400_000;

/// Committed state and events; each call runs in a [`Tx`] and commits only on success.
struct Ledger {
    contract: Arc<dyn Contract>,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    events: Vec<(String, Vec<u8>)>,
    txs: u64,
    now: u64,
}

struct Tx<'a> {
    committed: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    events: Vec<(String, Vec<u8>)>,
    caller: Caller,
    tx_id: Hash32,
    now: u64,
}

impl Ctx for Tx<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError> {
        Ok(match self.writes.get(key) {
            Some(w) => w.clone(),
            None => self.committed.get(key).cloned(),
        })
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ContractError> {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), ContractError> {
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }
    fn range(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<KvPairs, ContractError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = self
            .committed
            .range(start.to_vec()..end.to_vec())
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        for (k, w) in self.writes.range(start.to_vec()..end.to_vec()) {
            merged.insert(k.clone(), w.clone());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .take(limit.min(MAX_RANGE_LEN))
            .collect())
    }
    fn caller(&self) -> &Caller {
        &self.caller
    }
    fn tx_id(&self) -> Hash32 {
        self.tx_id
    }
    fn tx_time_ms(&self) -> u64 {
        self.now
    }
    fn emit(&mut self, name: &str, payload: &[u8]) -> Result<(), ContractError> {
        self.events.push((name.to_string(), payload.to_vec()));
        Ok(())
    }
}

/// A certificate holder, as the contract sees it.
struct Person {
    org: &'static str,
    id: &'static str,
    role: Role,
    pre: Option<PreSecretKey>,
}

impl Person {
    fn new(role: Role, org: &'static str, id: &'static str) -> Self {
        Person {
            org,
            id,
            role,
            pre: None,
        }
    }

    fn with_pre_key(mut self) -> Self {
        self.pre = Some(PreSecretKey::generate().unwrap());
        self
    }

    fn caller(&self) -> Caller {
        Caller {
            id: self.id.into(),
            org: self.org.into(),
            role: self.role,
            public_key: SecretKey::from_bytes(&sha256(self.id.as_bytes()).0).public_key(),
            pre_public_key: self
                .pre
                .as_ref()
                .map(|k| k.public_key().to_bytes().to_vec()),
        }
    }

    fn identity(&self) -> Identity {
        Identity::new(self.org, self.id)
    }
}

impl Ledger {
    fn new() -> Self {
        Ledger {
            contract: Registry::with_builtin().get("consent").unwrap().clone(),
            state: BTreeMap::new(),
            events: Vec::new(),
            txs: 0,
            now: T0,
        }
    }

    fn try_call<Q: Serialize, R: DeserializeOwned>(
        &mut self,
        who: &Person,
        function: &str,
        req: &Q,
    ) -> Result<R, ContractError> {
        self.txs += 1;
        let mut tx = Tx {
            committed: &self.state,
            writes: BTreeMap::new(),
            events: Vec::new(),
            caller: who.caller(),
            tx_id: sha256_parts(&[b"test tx", &self.txs.to_be_bytes()]),
            now: self.now,
        };
        let out = self
            .contract
            .invoke(&mut tx, function, &[cbor::to_vec(req).unwrap()])?;
        let (writes, events) = (tx.writes, tx.events);
        for (k, w) in writes {
            match w {
                Some(v) => self.state.insert(k, v),
                None => self.state.remove(&k),
            };
        }
        self.events.extend(events);
        Ok(cbor::from_slice(&out, 1 << 20).unwrap())
    }

    fn call<Q: Serialize, R: DeserializeOwned>(&mut self, who: &Person, f: &str, req: &Q) -> R {
        self.try_call(who, f, req)
            .unwrap_or_else(|e| panic!("{f} failed: {e}"))
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn ten_steps_with_two_hospitals() {
    let mut l = Ledger::new();
    assert!(l.contract.is_query("getAuditTrail"));
    let admin_a = Person::new(Role::Admin, "ZMC", "admin");
    let admin_b = Person::new(Role::Admin, "NHS-Tayside", "admin");
    let node_a = Person::new(Role::Node, "ZMC", "peer0");
    let node_b = Person::new(Role::Node, "NHS-Tayside", "peer0");
    let patient = Person::new(Role::Patient, "Patients", "p-0001").with_pre_key();
    let specialist = Person::new(Role::Doctor, "ZMC", "dr-ortho").with_pre_key();
    let other = Person::new(Role::Doctor, "NHS-Tayside", "dr-gp").with_pre_key();
    let auditor = Person::new(Role::Auditor, "Regulator", "aud");

    // 1. Hospitals, with what their law lets them share, and their staff.
    let _: Hospital = l.call(
        &admin_a,
        "registerHospital",
        &RegisterHospital {
            hospital: "ZMC".into(),
            departments: s(&["orthopaedics"]),
            allowed_tags: s(&["LEG", "OPERATION", "BASIC PERSONAL"]),
            max_rule_days: 90,
        },
    );
    let _: Hospital = l.call(
        &admin_b,
        "registerHospital",
        &RegisterHospital {
            hospital: "NHS-Tayside".into(),
            departments: s(&["general practice"]),
            allowed_tags: s(&["LEG", "BASIC PERSONAL"]),
            max_rule_days: 365,
        },
    );
    let _: StaffMember = l.call(
        &admin_a,
        "registerStaff",
        &RegisterStaff {
            id: "dr-ortho".into(),
            department: "orthopaedics".into(),
        },
    );
    let _: StaffMember = l.call(
        &admin_b,
        "registerStaff",
        &RegisterStaff {
            id: "dr-gp".into(),
            department: "general practice".into(),
        },
    );

    // 2. The patient.
    let p: Patient = l.call(
        &patient,
        "registerPatient",
        &RegisterPatient { patient_id: None },
    );
    assert!(p.pre_public_key.is_some());

    // 3. A rule for the specialist.
    let rule: CreateRuleResponse = l.call(
        &patient,
        "createRule",
        &CreateRule {
            grantee: Grantee::Professional {
                org: "ZMC".into(),
                id: "dr-ortho".into(),
            },
            action: Action::Allow,
            tags: s(&["LEG", "OPERATION", "BASIC PERSONAL"]),
            purpose: "second opinion on a leg operation".into(),
            valid_from_ms: T0,
            valid_until_ms: T0 + 30 * DAY,
        },
    );
    assert!(rule.limited_tags.is_empty());

    // 4-5. The specialist asks both hospitals; the rules are checked on chain.
    l.now += 1000;
    let record: AccessRecord = l.call(
        &specialist,
        "requestAccess",
        &RequestAccess {
            patient: patient.identity(),
            tags: s(&["LEG", "OPERATION", "BASIC PERSONAL"]),
            hospitals: s(&["ZMC", "NHS-Tayside"]),
            purpose: "second opinion".into(),
        },
    );
    let Decision::Granted {
        grants,
        rule_ids,
        refusals,
        requester_pre_key,
    } = &record.decision
    else {
        panic!("denied: {:?}", record.decision)
    };
    assert_eq!(rule_ids, &vec![rule.rule_id]);
    assert_eq!(grants.len(), 2);
    assert_eq!(
        record.decision.grant_of("ZMC").unwrap().tags,
        s(&["BASIC PERSONAL", "LEG", "OPERATION"])
    );
    assert_eq!(
        record.decision.grant_of("NHS-Tayside").unwrap().tags,
        s(&["BASIC PERSONAL", "LEG"])
    );
    assert_eq!(
        refusals.len(),
        1,
        "NHS-Tayside's law does not share OPERATION"
    );
    let (name, payload) = l.events.last().unwrap();
    assert_eq!(name, EVENT_ACCESS_GRANTED);
    assert_eq!(payload.as_slice(), record.request_id.as_bytes());

    // 6-7. Each hospital's node reads the request, seals a fresh bundle key to the requester
    // and puts it on chain.
    let requester_key = PrePublicKey::from_bytes(requester_pre_key.as_ref().unwrap()).unwrap();
    let mut bundle_keys = BTreeMap::new();
    for node in [&node_a, &node_b] {
        let seen: AccessRecord = l.call(
            node,
            "getRequest",
            &GetRequest {
                request_id: record.request_id,
            },
        );
        assert_eq!(seen, record);
        let bundle_key = sha256(node.org.as_bytes()).0;
        let sealed = pre::seal(&requester_key, &bundle_key, record.request_id.as_bytes()).unwrap();
        let _: BundleKey = l.call(
            node,
            "deliverBundleKey",
            &DeliverBundleKey {
                request_id: record.request_id,
                hospital: node.org.into(),
                bundle_id: format!("{}-bundle-1", node.org),
                sealed_key: ByteBuf::from(sealed.to_bytes()),
                bundle_hash: sha256(format!("sealed bundle of {}", node.org).as_bytes()),
                lineage: PackageLineage {
                    rule_ids: vec![rule.rule_id],
                    contributing_hospitals: vec![node.org.into()],
                },
            },
        );
        bundle_keys.insert(node.org.to_string(), bundle_key);
        assert_eq!(l.events.last().unwrap().0, EVENT_BUNDLE_KEY_DELIVERED);
    }

    // 8. The specialist reads the sealed keys from the chain and opens them.
    let keys: BundleKeys = l.call(
        &specialist,
        "getBundleKeys",
        &GetBundleKeys {
            request_id: record.request_id,
        },
    );
    assert_eq!(keys.keys.len(), 2);
    for k in &keys.keys {
        let sealed = Sealed::from_bytes(&k.sealed_key).unwrap();
        let opened = pre::open(
            specialist.pre.as_ref().unwrap(),
            &sealed,
            record.request_id.as_bytes(),
        )
        .unwrap();
        assert_eq!(opened, bundle_keys[&k.hospital]);
    }
    // Nobody else reads them.
    let e = l
        .try_call::<_, BundleKeys>(
            &other,
            "getBundleKeys",
            &GetBundleKeys {
                request_id: record.request_id,
            },
        )
        .unwrap_err();
    assert!(matches!(e, ContractError::Denied(_)));

    // Lineage names both hospitals and the rule.
    let lineage: Lineage = l.call(
        &patient,
        "getLineage",
        &GetLineage {
            request_id: record.request_id,
        },
    );
    assert_eq!(lineage.rule_ids, vec![rule.rule_id]);
    let from: Vec<&str> = lineage
        .packages
        .iter()
        .map(|p| p.hospital.as_str())
        .collect();
    assert_eq!(from, ["NHS-Tayside", "ZMC"]);

    // A professional with no rule is DENIED, and the denial is on the trail with its reason.
    l.now += 1000;
    let denied: AccessRecord = l.call(
        &other,
        "requestAccess",
        &RequestAccess {
            patient: patient.identity(),
            tags: s(&["LEG"]),
            hospitals: s(&["ZMC"]),
            purpose: String::new(),
        },
    );
    assert!(
        matches!(&denied.decision, Decision::Denied { reason, .. } if reason == "no rule grants tag LEG")
    );
    let trail: AuditTrail = l.call(
        &auditor,
        "getAuditTrail",
        &GetAuditTrail {
            patient: patient.identity(),
            after: None,
            limit: None,
        },
    );
    assert_eq!(trail.records, vec![record, denied]);
    let e = l
        .try_call::<_, AuditTrail>(
            &specialist,
            "getAuditTrail",
            &GetAuditTrail {
                patient: patient.identity(),
                after: None,
                limit: None,
            },
        )
        .unwrap_err();
    assert!(matches!(e, ContractError::Denied(_)));
}

#[test]
fn a_failed_call_commits_nothing() {
    let mut l = Ledger::new();
    let admin = Person::new(Role::Admin, "ZMC", "admin");
    let before = l.state.clone();
    let e = l
        .try_call::<_, Hospital>(
            &admin,
            "registerHospital",
            &RegisterHospital {
                hospital: "Elsewhere".into(),
                departments: vec![],
                allowed_tags: vec![],
                max_rule_days: 1,
            },
        )
        .unwrap_err();
    assert!(matches!(e, ContractError::Denied(_)));
    assert_eq!(l.state, before);
    assert!(l.events.is_empty());
}
