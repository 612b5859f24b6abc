//! State keys of the consent contract (inside its own namespace).
//!
//! Names (org, subject id, department) never hold a NUL byte (they are checked on input: no
//! control characters), so NUL separates them, and the prefix of one owner never covers the
//! keys of another (`rule\0A\0b\0` is not a prefix of any key of `A`/`bc`).

use serde::{Deserialize, Serialize};
use sphr_crypto::hash::Hash32;

use super::types::Identity;

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(p);
    }
    out
}

/// `hospital\0<org>`
pub(super) fn hospital(org: &str) -> Vec<u8> {
    key(&[b"hospital", org.as_bytes()])
}

/// `staff\0<org>\0<id>`
pub(super) fn staff(member: &Identity) -> Vec<u8> {
    key(&[b"staff", member.org.as_bytes(), member.id.as_bytes()])
}

/// `patient\0<org>\0<id>`
pub(super) fn patient(p: &Identity) -> Vec<u8> {
    key(&[b"patient", p.org.as_bytes(), p.id.as_bytes()])
}

/// `rule\0<org>\0<id>\0`: all rules of one patient.
pub(super) fn rule_prefix(p: &Identity) -> Vec<u8> {
    key(&[b"rule", p.org.as_bytes(), p.id.as_bytes(), b""])
}

/// `rule\0<org>\0<id>\0<rule id: 32 bytes>`
pub(super) fn rule(p: &Identity, rule_id: &Hash32) -> Vec<u8> {
    let mut k = rule_prefix(p);
    k.extend_from_slice(rule_id.as_bytes());
    k
}

/// `audit\0<org>\0<id>\0`: the audit trail of one patient.
pub(super) fn audit_prefix(p: &Identity) -> Vec<u8> {
    key(&[b"audit", p.org.as_bytes(), p.id.as_bytes(), b""])
}

/// `audit\0<org>\0<id>\0<time ms: u64 big-endian><request id: 32 bytes>`: key order is time
/// order.
pub(super) fn audit(p: &Identity, time_ms: u64, request_id: &Hash32) -> Vec<u8> {
    let mut k = audit_prefix(p);
    k.extend_from_slice(&time_ms.to_be_bytes());
    k.extend_from_slice(request_id.as_bytes());
    k
}

/// `request\0<request id>`: where a request's record is.
pub(super) fn request(request_id: &Hash32) -> Vec<u8> {
    key(&[b"request", request_id.as_bytes()])
}

/// `bundle\0<request id>\0`: all bundle keys of one request.
pub(super) fn bundle_prefix(request_id: &Hash32) -> Vec<u8> {
    key(&[b"bundle", request_id.as_bytes(), b""])
}

/// `bundle\0<request id>\0<hospital>`
pub(super) fn bundle(request_id: &Hash32, hospital: &str) -> Vec<u8> {
    let mut k = bundle_prefix(request_id);
    k.extend_from_slice(hospital.as_bytes());
    k
}

/// The smallest key after every key that starts with `prefix`.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if let Some(next) = last.checked_add(1) {
            end.push(next);
            return end;
        }
    }
    // Only a prefix of 0xff bytes gets here (none of ours starts with one): every key that
    // fits the key limit sorts before this.
    vec![0xff; crate::MAX_KEY_LEN + 1]
}

/// The value at [`request`]: where the record of a request is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RequestIndex {
    /// The request's patient.
    pub patient: Identity,
    /// The request's tx time.
    pub time_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_overlap_owners() {
        let a = Identity::new("A", "b");
        let b = Identity::new("A", "bc");
        let r = Hash32([0xff; 32]);
        assert!(rule(&a, &r).starts_with(&rule_prefix(&a)));
        assert!(!rule(&b, &r).starts_with(&rule_prefix(&a)));
        assert!(rule(&a, &r) < prefix_end(&rule_prefix(&a)));
        assert!(audit(&a, u64::MAX, &r) < prefix_end(&audit_prefix(&a)));
        assert!(audit(&a, 1, &r) < audit(&a, 2, &Hash32::ZERO));
        assert_eq!(prefix_end(b"ab\xff"), b"ac".to_vec());
    }
}
